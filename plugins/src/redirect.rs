//! `redirect`: answers every request with a redirect instead of proxying it.
//!
//! ```yaml
//! - redirect: { url: "https://new.example.com", status: 301, keep_path: true }
//! ```
//!
//! `Location` is `url`, followed by the request's `path?query` when `keep_path` (the
//! default) is true. `status` is one of 301 (the default), 302, 303, 307, 308.
//!
//! A `Location` never starts with `//` (nor `/\`, which browsers read the same way): that
//! would be a protocol-relative URL, sending the browser to whatever host follows, an open
//! redirect. So a relative `url` must start with a single `/`, and the leading slashes of an
//! appended request path are collapsed to one (`url: /` and a request for `//evil.example`
//! give `/evil.example`).

use async_trait::async_trait;
use gateway::plugin::Hooks;
use gateway::{BuildContext, Flow, Plugin, PluginConfig, RequestState, Response, Session};
use serde::Deserialize;

const STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    pub url: String,
    #[serde(default = "default_status")]
    pub status: u16,
    #[serde(default = "default_keep_path")]
    pub keep_path: bool,
}

fn default_status() -> u16 {
    301
}

fn default_keep_path() -> bool {
    true
}

pub struct Redirect {
    /// `url` without a trailing `/`, so that appending the request path gives one slash.
    base: String,
    status: u16,
    keep_path: bool,
}

impl Redirect {
    fn location(&self, path_and_query: &str) -> String {
        if !self.keep_path {
            return self.base.clone();
        }
        // Whatever the client put before its path's first segment, one `/` goes there (see
        // the module's doc).
        let tail = path_and_query.trim_start_matches(['/', '\\']);
        let mut location = String::with_capacity(self.base.len() + 1 + tail.len());
        location.push_str(&self.base);
        location.push('/');
        location.push_str(tail);
        location
    }
}

#[async_trait]
impl Plugin for Redirect {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, session: &mut Session, _state: &mut RequestState) -> Flow {
        let uri = &session.req_header().uri;
        let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
        Flow::Respond(
            Response::empty(self.status).with_header("Location", self.location(path_and_query)),
        )
    }
}

impl PluginConfig for Redirect {
    const NAME: &'static str = "redirect";
    type Config = RedirectConfig;

    fn build(config: RedirectConfig, _cx: &BuildContext) -> Result<Self, String> {
        if !STATUSES.contains(&config.status) {
            return Err(format!(
                "status: {} is not a redirect status (301, 302, 303, 307 or 308)",
                config.status
            ));
        }
        let uri: http::Uri = config
            .url
            .parse()
            .map_err(|e| format!("url: {:?} is not a valid URL: {e}", config.url))?;
        let absolute = uri.scheme().is_some() && uri.authority().is_some();
        if !absolute && !config.url.starts_with('/') {
            return Err(format!(
                "url: {:?} must be absolute (https://host...) or start with /",
                config.url
            ));
        }
        if !absolute && config.url[1..].starts_with(['/', '\\']) {
            return Err(format!(
                "url: {:?} starts with // (or /\\), which browsers read as another host; write https://host/... for that, or a path with one leading /",
                config.url
            ));
        }
        if config.keep_path && uri.query().is_some() {
            return Err("url: cannot carry a query string when keep_path is true (the request's own path and query are appended)".into());
        }
        if http::HeaderValue::from_str(&config.url).is_err() {
            return Err(format!(
                "url: {:?} cannot be sent in a Location header",
                config.url
            ));
        }
        let mut base = config.url;
        if config.keep_path {
            while base.ends_with('/') {
                base.pop();
            }
        }
        Ok(Redirect {
            base,
            status: config.status,
            keep_path: config.keep_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(yaml: &str) -> Result<Redirect, String> {
        let config: RedirectConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        Redirect::build(config, &BuildContext::new(".".into(), None))
    }

    #[test]
    fn keeps_path_and_query_by_default() {
        let p = plugin("url: https://new.example.com/").unwrap();
        assert_eq!(p.status, 301);
        assert_eq!(p.location("/a/b?x=1"), "https://new.example.com/a/b?x=1");
        assert_eq!(p.location("/"), "https://new.example.com/");
        let p = plugin("url: https://new.example.com/base").unwrap();
        assert_eq!(p.location("/a"), "https://new.example.com/base/a");
    }

    #[test]
    fn a_location_never_starts_with_two_slashes() {
        let p = plugin("url: /").unwrap();
        assert_eq!(p.location("/a?b"), "/a?b");
        for path in [
            "//evil.example/x",
            "///evil.example/x",
            "/\\evil.example/x",
            "/\\/evil.example/x",
        ] {
            assert_eq!(p.location(path), "/evil.example/x", "{path}");
        }
        let p = plugin("url: /base/").unwrap();
        assert_eq!(p.location("//evil.example"), "/base/evil.example");
        let p = plugin("url: https://new.example.com").unwrap();
        assert_eq!(p.location("//a"), "https://new.example.com/a");
        assert_eq!(p.location("*"), "https://new.example.com/*");
        for url in [
            "//evil.example",
            "//evil.example/x",
            "\"/\\\\evil.example\"",
            "///x",
        ] {
            let err = plugin(&format!("url: {url}"))
                .err()
                .unwrap_or_else(|| panic!("{url}"));
            assert!(err.starts_with("url:"), "{err}");
        }
        let err = plugin("{ url: //evil.example, keep_path: false }")
            .err()
            .unwrap();
        assert!(err.contains("starts with //"), "{err}");
    }

    #[test]
    fn without_keep_path_the_url_is_used_as_is() {
        let p = plugin(
            "{ url: \"https://x.example/landing?from=old\", keep_path: false, status: 302 }",
        )
        .unwrap();
        assert_eq!(p.location("/a?b"), "https://x.example/landing?from=old");
        assert_eq!(p.status, 302);
    }

    #[test]
    fn refuses_bad_config() {
        assert!(plugin("{ url: https://x.example, status: 200 }")
            .err()
            .unwrap()
            .starts_with("status:"));
        assert!(plugin("{ url: \"not a url\" }")
            .err()
            .unwrap()
            .starts_with("url:"));
        assert!(plugin("{ url: example.com }")
            .err()
            .unwrap()
            .starts_with("url:"));
        assert!(plugin("{ url: \"https://x.example/?a=1\" }")
            .err()
            .unwrap()
            .starts_with("url:"));
        assert!(plugin("{ status: 301 }").is_err());
    }
}
