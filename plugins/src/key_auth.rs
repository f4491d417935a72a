//! `key_auth`: API keys, in a header and/or a query parameter.
//!
//! ```yaml
//! - key_auth: { header: X-Api-Key, query: null, keys: { ci: "${CI_KEY}" } }
//! ```
//!
//! `header` defaults to `X-Api-Key`; `query` (a query parameter name) is off by default; at
//! least one of them must be set, and the header is looked at first. A missing or unknown
//! key gets 401. On success the var `consumer` holds the key's name (`ci` above). The key is
//! removed from the request before it goes upstream (both the header and the query
//! parameter), so backends and their logs never see it. The query parameter is removed from
//! the client's request as soon as the key is accepted, so later plugins and Portico's own
//! error log lines (which quote the request's path and query) never see it either.
//!
//! Keys are compared as SHA-256 digests in constant time, against every configured key, so
//! the time to answer does not tell how much of a guess was right.

use async_trait::async_trait;
use gateway::plugin::Hooks;
use gateway::{
    BuildContext, Flow, Plugin, PluginConfig, RequestHeader, RequestState, Response, Session,
};
use http::HeaderName;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthConfig {
    #[serde(default = "default_header")]
    pub header: Option<String>,
    #[serde(default)]
    pub query: Option<String>,
    pub keys: BTreeMap<String, String>,
}

fn default_header() -> Option<String> {
    Some("X-Api-Key".into())
}

pub struct KeyAuth {
    header: Option<HeaderName>,
    query: Option<String>,
    /// (name, SHA-256 of the key).
    keys: Vec<(String, [u8; 32])>,
}

impl KeyAuth {
    /// The name of the key `presented`, if it is one.
    fn consumer(&self, presented: &str) -> Option<&str> {
        let digest = boring::sha::sha256(presented.as_bytes());
        let mut found = None;
        // No early exit: every key is compared, whichever matches.
        for (name, key) in &self.keys {
            if boring::memcmp::eq(&digest, key) {
                found = Some(name.as_str());
            }
        }
        found
    }

    fn presented(&self, req: &RequestHeader) -> Option<String> {
        if let Some(name) = &self.header {
            if let Some(v) = req.headers.get(name).and_then(|v| v.to_str().ok()) {
                return Some(v.trim().to_string());
            }
        }
        let param = self.query.as_deref()?;
        query_param(req.uri.query()?, param)
    }
}

/// The decoded value of the first `name=` parameter in a query string.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == name)
            .then(|| percent_decode(v))
            .flatten()
    })
}

/// The query string without any `name=` parameter; `None` when nothing is left.
fn without_param(query: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
            percent_decode(k).as_deref() != Some(name)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Form-style decoding (`%41` and `+` for a space), as browsers and HTTP clients encode
/// query parameters. `None` for malformed escapes or non-UTF-8 results.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[async_trait]
impl Plugin for KeyAuth {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST | Hooks::UPSTREAM_REQUEST
    }

    async fn request(&self, session: &mut Session, state: &mut RequestState) -> Flow {
        let consumer = self
            .presented(session.req_header())
            .and_then(|key| self.consumer(&key).map(str::to_string));
        match consumer {
            Some(name) => {
                state.set_var("consumer", name);
                // Off the client's request too, not only the upstream's: Pingora's error log
                // line for a failed request quotes the client's path and query.
                if let Some(uri) = self.without_key(&session.req_header().uri) {
                    session.req_header_mut().set_uri(uri);
                }
                Flow::Continue
            }
            None => Flow::Respond(Response::text(
                401,
                "Unauthorized: a valid API key is required\n",
            )),
        }
    }

    async fn upstream_request(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        _state: &mut RequestState,
    ) {
        if let Some(name) = &self.header {
            upstream.remove_header(name);
        }
        // Already done on the client's request (see `request`); kept for a request some
        // other plugin gave the parameter back to.
        if let Some(uri) = self.without_key(&upstream.uri) {
            upstream.set_uri(uri);
        }
    }
}

impl KeyAuth {
    /// `uri` without the key's query parameter; `None` when it has none.
    fn without_key(&self, uri: &http::Uri) -> Option<http::Uri> {
        let param = self.query.as_deref()?;
        let query = uri.query()?;
        query_param(query, param)?;
        let path_and_query = match without_param(query, param) {
            Some(rest) => format!("{}?{rest}", uri.path()),
            None => uri.path().to_string(),
        };
        let mut parts = uri.clone().into_parts();
        // A path and a subset of a valid query still parse; if not, the URI stays as it was.
        parts.path_and_query = Some(path_and_query.parse().ok()?);
        http::Uri::from_parts(parts).ok()
    }
}

impl PluginConfig for KeyAuth {
    const NAME: &'static str = "key_auth";
    type Config = KeyAuthConfig;

    fn build(config: KeyAuthConfig, _cx: &BuildContext) -> Result<Self, String> {
        let header = config
            .header
            .as_deref()
            .map(|h| crate::header_list::header_name(h, "header"))
            .transpose()?;
        if header.is_none() && config.query.is_none() {
            return Err("one of header or query must be set".into());
        }
        if config.query.as_deref() == Some("") {
            return Err("query: the parameter name cannot be empty".into());
        }
        if config.keys.is_empty() {
            return Err("keys: at least one key is required".into());
        }
        let mut keys = Vec::with_capacity(config.keys.len());
        for (name, key) in &config.keys {
            if key.trim().is_empty() {
                return Err(format!("keys.{name}: the key is empty"));
            }
            if key.trim() != key {
                return Err(format!(
                    "keys.{name}: the key has leading or trailing spaces"
                ));
            }
            let digest = boring::sha::sha256(key.as_bytes());
            if let Some((other, _)) = keys.iter().find(|(_, d)| *d == digest) {
                return Err(format!("keys.{name}: the same key as {other}"));
            }
            keys.push((name.clone(), digest));
        }
        Ok(KeyAuth {
            header,
            query: config.query,
            keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use gateway::plugin::testing::{self, TestRequest};

    fn plugin(yaml: &str) -> Result<KeyAuth, String> {
        testing::build(yaml)
    }

    fn request(uri: &str, header: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        if let Some(v) = header {
            req.insert_header("X-Api-Key", v).unwrap();
        }
        req
    }

    #[test]
    fn finds_the_consumer_by_header_then_query() {
        let p = plugin("{ query: api_key, keys: { ci: k1, ops: \"k 2\" } }").unwrap();
        assert_eq!(
            p.presented(&request("/", Some("k1"))).as_deref(),
            Some("k1")
        );
        assert_eq!(
            p.presented(&request("/?a=1&api_key=k+2", None)).as_deref(),
            Some("k 2")
        );
        assert_eq!(
            p.presented(&request("/?api%5Fkey=k%201", None)).as_deref(),
            Some("k 1")
        );
        assert_eq!(p.presented(&request("/?other=1", None)), None);
        assert_eq!(p.consumer("k1"), Some("ci"));
        assert_eq!(p.consumer("k 2"), Some("ops"));
        assert_eq!(p.consumer("k3"), None);
        assert_eq!(p.consumer(""), None);
    }

    #[test]
    fn the_query_parameter_is_removed() {
        assert_eq!(
            without_param("a=1&api_key=x&b=2", "api_key").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(without_param("api_key=x", "api_key"), None);
        assert_eq!(without_param("api_key", "api_key"), None);
        assert_eq!(
            without_param("api_keys=x", "api_key").as_deref(),
            Some("api_keys=x")
        );

        let p = plugin("{ query: api_key, keys: { ci: k1 } }").unwrap();
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert_eq!(p.without_key(&uri("/p?a=1&api_key=k1")).unwrap(), "/p?a=1");
        assert_eq!(p.without_key(&uri("/p?api_key=k1")).unwrap(), "/p");
        assert_eq!(
            p.without_key(&uri("https://h.example/p?api_key=k1&b"))
                .unwrap(),
            "https://h.example/p?b"
        );
        assert_eq!(p.without_key(&uri("/p?a=1")), None);
        assert_eq!(
            plugin("{ keys: { ci: k1 } }")
                .unwrap()
                .without_key(&uri("/p?api_key=k1")),
            None
        );
    }

    #[tokio::test]
    async fn the_hook_names_the_consumer_takes_the_key_off_and_refuses_the_rest() {
        let p = plugin("{ query: api_key, keys: { ci: k1 } }").unwrap();
        let mut t = TestRequest::new(b"GET /p?a=1&api_key=k1 HTTP/1.1\r\nHost: h\r\n\r\n").await;
        let flow = p.request(&mut t.session, &mut t.state).await;
        assert!(matches!(flow, Flow::Continue));
        assert_eq!(t.state.var("consumer"), Some("ci"));
        assert_eq!(t.session.req_header().uri, "/p?a=1");

        let mut t = TestRequest::new(b"GET /p HTTP/1.1\r\nHost: h\r\nX-Api-Key: k2\r\n\r\n").await;
        let Flow::Respond(answer) = p.request(&mut t.session, &mut t.state).await else {
            panic!("an unknown key was let through");
        };
        assert_eq!(answer.status, 401);
        assert_eq!(t.state.var("consumer"), None);
    }

    #[test]
    fn query_only_and_header_off() {
        let p = plugin("{ header: null, query: key, keys: { ci: k1 } }").unwrap();
        assert!(p.header.is_none());
        assert_eq!(p.presented(&request("/", Some("k1"))), None);
    }

    #[test]
    fn refuses_bad_config() {
        assert!(plugin("{ keys: {} }").is_err());
        assert!(plugin("{ header: null, keys: { a: b } }").is_err());
        assert!(plugin("{ keys: { a: \"\" } }").is_err());
        assert!(plugin("{ keys: { a: x, b: x } }")
            .err()
            .unwrap()
            .contains("same key"));
        assert!(plugin("{ header: \"Bad Header\", keys: { a: x } }")
            .err()
            .unwrap()
            .starts_with("header:"));
    }
}
