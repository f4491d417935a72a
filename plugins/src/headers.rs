//! `headers`: set, add or remove headers on the request sent upstream and on the response
//! sent to the client.
//!
//! ```yaml
//! - headers:
//!     request:  { set: {X-Env: prod}, add: {}, remove: [X-Debug] }
//!     response: { set: {}, add: {}, remove: [Server] }
//! ```
//!
//! Within one side, `remove` runs first, then `set` (replacing any value), then `add`
//! (appending a value next to existing ones). Request changes apply to the upstream request
//! only: plugins that run on the client's request (auth, rate limits) see it unchanged.

use crate::header_list::{header_list, header_names, HeaderList};
use async_trait::async_trait;
use gateway::{
    BuildContext, Plugin, PluginConfig, RequestHeader, RequestState, ResponseHeader, Session,
};
use http::HeaderName;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersConfig {
    #[serde(default)]
    pub request: HeaderEdits,
    #[serde(default)]
    pub response: HeaderEdits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdits {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

/// One side's edits, checked.
struct Edits {
    set: HeaderList,
    add: HeaderList,
    remove: Vec<HeaderName>,
}

impl Edits {
    fn build(edits: &HeaderEdits, side: &str) -> Result<Self, String> {
        Ok(Edits {
            set: header_list(&edits.set, &format!("{side}.set"))?,
            add: header_list(&edits.add, &format!("{side}.add"))?,
            remove: header_names(&edits.remove, &format!("{side}.remove"))?,
        })
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

pub struct Headers {
    request: Edits,
    response: Edits,
}

/// The three header operations, for both request and response headers (Pingora's two
/// header types share them, but not through a trait).
trait EditHeaders {
    fn remove(&mut self, name: &HeaderName);
    fn set(&mut self, name: &HeaderName, value: &http::HeaderValue);
    fn add(&mut self, name: &HeaderName, value: &http::HeaderValue);
}

// Names and values were checked at load, so the insert calls cannot fail.
impl EditHeaders for RequestHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn set(&mut self, name: &HeaderName, value: &http::HeaderValue) {
        let _ = self.insert_header(name.clone(), value.clone());
    }
    fn add(&mut self, name: &HeaderName, value: &http::HeaderValue) {
        let _ = self.append_header(name.clone(), value.clone());
    }
}

impl EditHeaders for ResponseHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn set(&mut self, name: &HeaderName, value: &http::HeaderValue) {
        let _ = self.insert_header(name.clone(), value.clone());
    }
    fn add(&mut self, name: &HeaderName, value: &http::HeaderValue) {
        let _ = self.append_header(name.clone(), value.clone());
    }
}

fn apply(edits: &Edits, headers: &mut impl EditHeaders) {
    for name in &edits.remove {
        headers.remove(name);
    }
    for (name, value) in &edits.set {
        headers.set(name, value);
    }
    for (name, value) in &edits.add {
        headers.add(name, value);
    }
}

#[async_trait]
impl Plugin for Headers {
    async fn upstream_request(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        _state: &mut RequestState,
    ) {
        apply(&self.request, upstream);
    }

    async fn response(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        _state: &mut RequestState,
    ) {
        apply(&self.response, response);
    }
}

impl PluginConfig for Headers {
    const NAME: &'static str = "headers";
    type Config = HeadersConfig;

    fn build(config: HeadersConfig, _cx: &BuildContext) -> Result<Self, String> {
        let plugin = Headers {
            request: Edits::build(&config.request, "request")?,
            response: Edits::build(&config.response, "response")?,
        };
        if plugin.request.is_empty() && plugin.response.is_empty() {
            log::warn!("headers plugin configured without any edit");
        }
        Ok(plugin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(yaml: &str) -> Result<Headers, String> {
        let config: HeadersConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        Headers::build(config, &BuildContext::new(".".into(), None))
    }

    #[test]
    fn edits_the_upstream_request_in_order() {
        let p =
            plugin("request: { set: {X-Env: prod}, add: {X-Tag: b}, remove: [X-Debug, X-Env] }")
                .unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-Debug", "1").unwrap();
        req.insert_header("X-Env", "dev").unwrap();
        req.insert_header("X-Tag", "a").unwrap();
        apply(&p.request, &mut req);
        assert!(req.headers.get("x-debug").is_none());
        assert_eq!(req.headers.get("x-env").unwrap(), "prod");
        let tags: Vec<_> = req
            .headers
            .get_all("x-tag")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(tags, ["a", "b"]);
    }

    #[test]
    fn edits_the_response() {
        let p = plugin("response: { remove: [Server], set: {Cache-Control: no-store} }").unwrap();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("Server", "nginx").unwrap();
        apply(&p.response, &mut resp);
        assert!(resp.headers.get("server").is_none());
        assert_eq!(resp.headers.get("cache-control").unwrap(), "no-store");
    }

    #[test]
    fn refuses_bad_config() {
        assert!(plugin("request: { set: {\"Bad Name\": x} }")
            .err()
            .unwrap()
            .contains("request.set"));
        assert!(plugin("request: { sett: {} }").is_err());
    }
}
