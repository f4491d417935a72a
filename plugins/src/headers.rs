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
//!
//! On the request, a header named in `remove` or `set` is also removed in the spellings a
//! CGI-style backend (PHP, WSGI, Rack) reads as the same header: `X_Debug` for `X-Debug`.
//! Otherwise a client could send back what the config takes away.

use crate::header_list::{header_list, header_names, remove_aliases, HeaderList};
use async_trait::async_trait;
use bytes::Bytes;
use gateway::plugin::Hooks;
use gateway::{
    BuildContext, Plugin, PluginConfig, RequestHeader, RequestState, ResponseHeader, Session,
};
use http::{HeaderName, HeaderValue};
use pingora_http::IntoCaseHeaderName;
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
    set: Vec<(Bytes, HeaderValue)>,
    add: Vec<(Bytes, HeaderValue)>,
    remove: Vec<HeaderName>,
    /// The names in `remove` and `set`: what a client's own value must not reach the
    /// upstream under, in any spelling (see the module's doc).
    replaced: Vec<HeaderName>,
}

impl Edits {
    fn build(edits: &HeaderEdits, side: &str) -> Result<Self, String> {
        let set = header_list(&edits.set, &format!("{side}.set"))?;
        let remove = header_names(&edits.remove, &format!("{side}.remove"))?;
        let mut replaced: Vec<HeaderName> = remove.clone();
        replaced.extend(set.iter().map(|(name, _)| name.clone()));
        Ok(Edits {
            set: wire_names(set),
            add: wire_names(header_list(&edits.add, &format!("{side}.add"))?),
            remove,
            replaced,
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

/// Each name as Pingora writes it on the wire (a dozen common names title-cased, the rest
/// lowercase), made once: handing Pingora these bytes rather than the `HeaderName` saves
/// it copying the name into a new buffer on every request.
fn wire_names(list: HeaderList) -> Vec<(Bytes, HeaderValue)> {
    list.into_iter()
        .map(|(name, value)| {
            let wire = Bytes::copy_from_slice(name.into_case_header_name().as_slice());
            (wire, value)
        })
        .collect()
}

/// The three header operations, for both request and response headers (Pingora's two
/// header types share them, but not through a trait).
trait EditHeaders {
    fn remove(&mut self, name: &HeaderName);
    fn set(&mut self, name: &Bytes, value: &HeaderValue);
    fn add(&mut self, name: &Bytes, value: &HeaderValue);
}

// Names and values were checked at load, so the insert calls cannot fail.
impl EditHeaders for RequestHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn set(&mut self, name: &Bytes, value: &HeaderValue) {
        let _ = self.insert_header(name.clone(), value.clone());
    }
    fn add(&mut self, name: &Bytes, value: &HeaderValue) {
        let _ = self.append_header(name.clone(), value.clone());
    }
}

impl EditHeaders for ResponseHeader {
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
    fn set(&mut self, name: &Bytes, value: &HeaderValue) {
        let _ = self.insert_header(name.clone(), value.clone());
    }
    fn add(&mut self, name: &Bytes, value: &HeaderValue) {
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
    fn hooks(&self) -> Hooks {
        Hooks::UPSTREAM_REQUEST | Hooks::RESPONSE
    }

    async fn upstream_request(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        _state: &mut RequestState,
    ) {
        apply(&self.request, upstream);
        for name in &self.request.replaced {
            remove_aliases(upstream, name);
        }
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

    /// The names reach the wire exactly as when Pingora was handed the `HeaderName`.
    #[test]
    fn names_on_the_wire_are_unchanged() {
        let p = plugin(
            "{ request: { set: {X-Env: prod, cache-control: a}, add: {X-Tag: b} }, response: { set: {X-Env: prod, Server: s}, add: {Set-Cookie: c} } }",
        )
        .unwrap();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        apply(&p.request, &mut req);
        let mut expected = RequestHeader::build("GET", b"/", None).unwrap();
        for name in ["x-env", "cache-control"] {
            let name = HeaderName::from_static(name);
            let value = req.headers.get(&name).unwrap().clone();
            expected.insert_header(name, value).unwrap();
        }
        expected
            .append_header(HeaderName::from_static("x-tag"), "b")
            .unwrap();
        let (mut got, mut want) = (Vec::new(), Vec::new());
        req.header_to_h1_wire(&mut got);
        expected.header_to_h1_wire(&mut want);
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
        );

        let mut resp = ResponseHeader::build(200, None).unwrap();
        apply(&p.response, &mut resp);
        let mut wire = Vec::new();
        resp.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("Server: s\r\n"), "{wire}");
        assert!(wire.contains("x-env: prod\r\n"), "{wire}");
        assert!(wire.contains("Set-Cookie: c\r\n"), "{wire}");
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
