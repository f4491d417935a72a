//! `rewrite`: changes the path of the request sent upstream.
//!
//! ```yaml
//! - rewrite: { strip_prefix: /api }                       # /api/x -> /x, /api -> /
//! - rewrite: { regex: "^/old/(.*)$", replace: "/new/$1" } # capture groups: $1, $name
//! ```
//!
//! Exactly one of the two forms. The query string is kept as it was; the client's request
//! (what routing, auth and the access log see) is not changed, only the upstream's.
//! `strip_prefix` works on whole path segments, like route prefixes: `/api` strips
//! `/api/x` and `/api`, not `/apix`. `regex` replaces its first match in the path; a path it
//! does not match goes upstream unchanged.
//!
//! In a config file `${...}` is an environment variable, replaced before any plugin sees the
//! value, so the regex crate's braced group syntax cannot be written as is: a group followed
//! by a letter, digit or `_` (`${1}x`) is written with the brace escaped in a double-quoted
//! YAML string, `"/$\x7B1}x"`, which reaches the plugin as `/${1}x`.

use async_trait::async_trait;
use gateway::plugin::Hooks;
use gateway::{BuildContext, Plugin, PluginConfig, RequestHeader, RequestState, Session};
use regex::Regex;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    #[serde(default)]
    pub strip_prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub replace: Option<String>,
}

enum Rule {
    /// The prefix without a trailing `/`.
    StripPrefix(String),
    Regex {
        regex: Regex,
        replace: String,
    },
}

pub struct Rewrite {
    rule: Rule,
}

impl Rewrite {
    /// The new path, or `None` when this path is left alone.
    fn rewrite_path(&self, path: &str) -> Option<String> {
        match &self.rule {
            Rule::StripPrefix(prefix) => {
                let rest = path.strip_prefix(prefix.as_str())?;
                if rest.is_empty() {
                    Some("/".to_string())
                } else if rest.starts_with('/') {
                    Some(rest.to_string())
                } else {
                    None // `/apix` under prefix `/api`: not the same segment
                }
            }
            Rule::Regex { regex, replace } => {
                if !regex.is_match(path) {
                    return None;
                }
                let new = regex.replace(path, replace.as_str());
                Some(if new.starts_with('/') {
                    new.into_owned()
                } else {
                    format!("/{new}")
                })
            }
        }
    }
}

/// `uri` with its path replaced, keeping scheme, authority (HTTP/2 requests carry them) and
/// query.
fn with_path(uri: &http::Uri, path: &str) -> Result<http::Uri, String> {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|e| format!("{e}"))?);
    http::Uri::from_parts(parts).map_err(|e| e.to_string())
}

#[async_trait]
impl Plugin for Rewrite {
    fn hooks(&self) -> Hooks {
        Hooks::UPSTREAM_REQUEST
    }

    async fn upstream_request(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        state: &mut RequestState,
    ) {
        let Some(path) = self.rewrite_path(upstream.uri.path()) else {
            return;
        };
        match with_path(&upstream.uri, &path) {
            Ok(uri) => upstream.set_uri(uri),
            // Only a regex replacement can produce this; sending the original path is better
            // than failing the request.
            Err(e) => log::warn!(
                "rewrite: {path:?} is not a valid path ({e}); request {} sent unchanged",
                state.request_id
            ),
        }
    }
}

impl PluginConfig for Rewrite {
    const NAME: &'static str = "rewrite";
    type Config = RewriteConfig;

    fn build(config: RewriteConfig, _cx: &BuildContext) -> Result<Self, String> {
        let rule = match (config.strip_prefix, config.regex, config.replace) {
            (Some(prefix), None, None) => {
                if !prefix.starts_with('/') {
                    return Err(format!("strip_prefix: {prefix:?} must start with /"));
                }
                let trimmed = prefix.trim_end_matches('/');
                if trimmed.is_empty() {
                    return Err("strip_prefix: \"/\" would strip nothing".into());
                }
                Rule::StripPrefix(trimmed.to_string())
            }
            (None, Some(pattern), Some(replace)) => {
                let regex = Regex::new(&pattern).map_err(|e| format!("regex: {e}"))?;
                check_replacement(&regex, &replace)?;
                Rule::Regex { regex, replace }
            }
            (None, Some(_), None) => return Err("replace: required with regex".into()),
            (None, None, Some(_)) => return Err("regex: required with replace".into()),
            (None, None, None) => {
                return Err("one of strip_prefix, or regex with replace, is required".into())
            }
            (Some(_), _, _) => {
                return Err(
                    "strip_prefix cannot be combined with regex/replace: use one form".into(),
                )
            }
        };
        Ok(Rewrite { rule })
    }
}

/// Refuses a replacement that names a group the regex does not have. The regex crate reads
/// `$1x` as the group named `1x` and quietly puts nothing there; catching that at load time
/// saves a confusing empty path segment in production.
fn check_replacement(regex: &Regex, replace: &str) -> Result<(), String> {
    let bytes = replace.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let rest = &replace[i + 1..];
        let (name, used) = if rest.starts_with('$') {
            i += 2; // `$$` is a literal `$`
            continue;
        } else if let Some(braced) = rest.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => return Err(format!("replace: unclosed ${{ in {replace:?}")),
            }
        } else {
            let len = rest
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                .count();
            (&rest[..len], len)
        };
        if !name.is_empty() {
            let known = match name.parse::<usize>() {
                Ok(n) => n < regex.captures_len(),
                Err(_) => regex.capture_names().flatten().any(|n| n == name),
            };
            if !known {
                return Err(format!(
                    "replace: ${name} refers to no group of the regex (when a letter, digit or _ follows a group, brace it: \"$\\x7B1}}x\" in a double-quoted string, since ${{...}} in a config file is an environment variable)"
                ));
            }
        }
        i += 1 + used;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(yaml: &str) -> Result<Rewrite, String> {
        let config: RewriteConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        Rewrite::build(config, &BuildContext::new(".".into(), None))
    }

    #[test]
    fn strip_prefix_keeps_a_leading_slash() {
        let p = plugin("strip_prefix: /api").unwrap();
        assert_eq!(p.rewrite_path("/api/x").as_deref(), Some("/x"));
        assert_eq!(p.rewrite_path("/api/").as_deref(), Some("/"));
        assert_eq!(p.rewrite_path("/api").as_deref(), Some("/"));
        assert_eq!(p.rewrite_path("/apix"), None);
        assert_eq!(p.rewrite_path("/other"), None);
        let p = plugin("strip_prefix: /api/").unwrap();
        assert_eq!(p.rewrite_path("/api/v1/x").as_deref(), Some("/v1/x"));
    }

    #[test]
    fn regex_replaces_with_groups() {
        let p = plugin(r#"{ regex: "^/old/(.*)$", replace: "/new/$1" }"#).unwrap();
        assert_eq!(p.rewrite_path("/old/a/b").as_deref(), Some("/new/a/b"));
        assert_eq!(p.rewrite_path("/other"), None);
        let p =
            plugin(r#"{ regex: "^/u/(?P<id>[0-9]+)$", replace: "users/${id}/profile" }"#).unwrap();
        assert_eq!(
            p.rewrite_path("/u/42").as_deref(),
            Some("/users/42/profile")
        );
    }

    #[test]
    fn the_query_string_is_kept() {
        let uri: http::Uri = "/api/items?page=2&q=a%20b".parse().unwrap();
        assert_eq!(
            with_path(&uri, "/items").unwrap().to_string(),
            "/items?page=2&q=a%20b"
        );
        let uri: http::Uri = "https://api.example.com/api/items?x=1".parse().unwrap();
        assert_eq!(
            with_path(&uri, "/items").unwrap().to_string(),
            "https://api.example.com/items?x=1"
        );
    }

    #[test]
    fn refuses_bad_config() {
        assert!(plugin("{}").is_err());
        assert!(plugin("{ strip_prefix: /a, regex: x, replace: y }").is_err());
        assert!(plugin("{ regex: x }")
            .err()
            .unwrap()
            .starts_with("replace:"));
        assert!(plugin("{ regex: \"(\", replace: y }")
            .err()
            .unwrap()
            .starts_with("regex:"));
        assert!(plugin("{ strip_prefix: api }")
            .err()
            .unwrap()
            .starts_with("strip_prefix:"));
        assert!(plugin("{ strip_prefix: / }").is_err());
        let err = plugin(r#"{ regex: "^/(.*)$", replace: "/$1x" }"#)
            .err()
            .unwrap();
        assert!(err.contains("$1x"), "{err}");
        assert!(plugin(r#"{ regex: "^/(.*)$", replace: "/${1}x$$" }"#).is_ok());
        assert!(plugin(r#"{ regex: "^/(.*)$", replace: "/$2" }"#).is_err());
    }
}
