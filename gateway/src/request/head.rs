//! Request and response heads as Portico edits them: Pingora's form, which keeps each header
//! name as it was spelled, or the bare `http` parts when there is no spelling to keep.
//!
//! Pingora keeps a second map beside a head's headers for HTTP/1 peers: each name as the
//! client or the backend spelled it. An HTTP/2 client's request has none (HTTP/2 names are
//! lower case), for an HTTP/2 client the response's has no reader, and with
//! `server.header_case: normalize` no spelling is kept at all. Every header set through
//! Pingora's `insert_header` is parsed from its name and the name copied, into both maps when
//! there are two, and each map grows on its own when the head filled it. Where no spelling is
//! kept, Portico sets its own headers on the bare parts under ready-made names after making
//! room once (benches/README.md, "The heads for HTTP/2 clients"). Plugins still get Pingora's
//! form.

use crate::config::HeaderCase;
use crate::net::spelled_name::SpelledName;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use pingora_core::Result;
use pingora_http::{RequestHeader, ResponseHeader};

/// Room for the headers set after the peer's own: on the request X-Forwarded-For, -Proto,
/// -Host and -Port, X-Real-IP, the request id and `Host` for an HTTP/2 client; on the
/// response the request id, `Date` and what the plugins' response hooks add (`rate_limit`
/// two). More still works, at the cost of a grow.
const ADDED_HEADERS: usize = 8;

/// A head whose headers Portico sets: Pingora's form takes the name as an HTTP/1 peer sees
/// it, the bare parts the same name ready-made.
pub(super) trait Head {
    fn headers(&self) -> &HeaderMap;
    fn uri(&self) -> &Uri;
    fn set(&mut self, name: &SpelledName, value: HeaderValue) -> Result<()>;
    fn remove(&mut self, name: &HeaderName);
}

impl Head for RequestHeader {
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    fn uri(&self) -> &Uri {
        &self.uri
    }
    fn set(&mut self, name: &SpelledName, value: HeaderValue) -> Result<()> {
        self.insert_header(name.wire.clone(), value)
    }
    fn remove(&mut self, name: &HeaderName) {
        self.remove_header(name);
    }
}

impl Head for http::request::Parts {
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    fn uri(&self) -> &Uri {
        &self.uri
    }
    fn set(&mut self, name: &SpelledName, value: HeaderValue) -> Result<()> {
        self.headers.insert(name.name.clone(), value);
        Ok(())
    }
    fn remove(&mut self, name: &HeaderName) {
        self.headers.remove(name);
    }
}

/// A request as bare parts while Portico sets its headers: made only when nothing of the
/// request is lost that way (see [`BareRequest::can_take`]), and put back into Pingora's form,
/// without spellings, when dropped.
pub(super) struct BareRequest<'a> {
    req: &'a mut RequestHeader,
    parts: Option<http::request::Parts>,
    /// Only read by Pingora for an HTTP/2 backend; `From` would reset it to the default.
    send_end_stream: Option<bool>,
}

impl<'a> BareRequest<'a> {
    /// No spellings to keep (an HTTP/2 client's request, or any with `header_case:
    /// normalize`), and a target the URI says the same way: Pingora's `From` keeps neither.
    pub(super) fn can_take(req: &RequestHeader, case: HeaderCase) -> bool {
        !keeps_spellings(case, req.has_case()) && target_is_the_uris(req)
    }

    pub(super) fn take(req: &'a mut RequestHeader) -> BareRequest<'a> {
        let send_end_stream = req.send_end_stream();
        let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
        let mut parts = http::request::Parts::from(std::mem::replace(req, empty));
        parts.headers.reserve(ADDED_HEADERS);
        BareRequest {
            req,
            parts: Some(parts),
            send_end_stream,
        }
    }

    pub(super) fn parts(&mut self) -> &mut http::request::Parts {
        self.parts.as_mut().expect("present until dropped")
    }
}

impl Drop for BareRequest<'_> {
    fn drop(&mut self) {
        if let Some(parts) = self.parts.take() {
            *self.req = parts.into();
            if let Some(end) = self.send_end_stream {
                self.req.set_send_end_stream(end);
            }
        }
    }
}

/// Whether the request's target on the wire is what its URI gives, which is all that
/// `RequestHeader::from(parts)` keeps (an absolute-form or non-UTF-8 target is kept apart).
fn target_is_the_uris(req: &RequestHeader) -> bool {
    let uri = &req.uri;
    let from_uri = uri
        .path_and_query()
        .map(|p| p.as_str().as_bytes())
        .or_else(|| uri.authority().map(|a| a.as_str().as_bytes()))
        .unwrap_or_default();
    req.raw_path_is_utf8() && req.raw_path() == from_uri
}

/// Whether a head keeps its names' spellings: only with `header_case: preserve`, and only
/// where its HTTP/1 peer gave them (an HTTP/2 client's request has none, and for an HTTP/2
/// client the response's have no reader).
fn keeps_spellings(case: HeaderCase, spelled_for_peer: bool) -> bool {
    case == HeaderCase::Preserve && spelled_for_peer
}

/// Sets the request id (`id_name`) on the response to the client: spelled, through Pingora's
/// form, where the spellings are kept, otherwise on the bare parts after dropping them
/// ([`without_spellings`]).
pub(super) fn set_response_id(
    resp: &mut ResponseHeader,
    case: HeaderCase,
    http2_client: bool,
    id_name: &SpelledName,
    id: HeaderValue,
) -> Result<()> {
    if keeps_spellings(case, !http2_client) {
        resp.insert_header(id_name.wire.clone(), id)
    } else {
        without_spellings(resp, &id_name.name, id);
        Ok(())
    }
}

/// Drops the response's map of spellings, makes room for the headers added next, and sets the
/// request id (`name`) on the bare parts. A reason phrase of the backend's own (`200 Fine`) is
/// kept for an HTTP/1 client; `From` would put the status's usual one in its place.
fn without_spellings(resp: &mut ResponseHeader, name: &HeaderName, id: HeaderValue) {
    let own_reason = resp
        .get_reason_phrase()
        .filter(|r| Some(*r) != resp.status.canonical_reason())
        .map(str::to_owned);
    let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts = http::response::Parts::from(std::mem::replace(resp, empty));
    parts.headers.reserve(ADDED_HEADERS);
    parts.headers.insert(name.clone(), id);
    *resp = parts.into();
    if own_reason.is_some() {
        // Only fails for a phrase with control characters, which Pingora already refused.
        let _ = resp.set_reason_phrase(own_reason.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: HeaderName = HeaderName::from_static("x-request-id");

    #[test]
    fn the_response_keeps_status_headers_and_order_and_forgets_the_spelling() {
        let mut resp = ResponseHeader::build(404, Some(3)).unwrap();
        resp.append_header("X-Backend-Name", "a").unwrap();
        resp.append_header("Set-Cookie", "x=1").unwrap();
        resp.append_header("set-cookie", "y=2").unwrap();
        resp.set_reason_phrase(Some("Gone Fishing")).unwrap();
        without_spellings(&mut resp, &ID, HeaderValue::from_static("abc"));
        assert!(!resp.has_case());
        assert_eq!(resp.status, 404);
        let cookies: Vec<_> = resp.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["x=1", "y=2"]);
        assert_eq!(resp.headers["x-backend-name"], "a");
        assert_eq!(resp.headers["x-request-id"], "abc");
        assert!(resp.headers.capacity() >= 4 + ADDED_HEADERS - 1);
        // The backend's own reason phrase stays, for an HTTP/1 client; the usual one is not
        // kept apart (it is what the status gives anyway).
        assert_eq!(resp.get_reason_phrase(), Some("Gone Fishing"));
        let mut plain = ResponseHeader::build(200, None).unwrap();
        plain.set_reason_phrase(Some("OK")).unwrap();
        without_spellings(&mut plain, &ID, HeaderValue::from_static("abc"));
        assert_eq!(plain.get_reason_phrase(), Some("OK"));
        resp.insert_header("RateLimit-Limit", "10").unwrap();
        assert_eq!(resp.headers["ratelimit-limit"], "10");
    }

    fn set_two(head: &mut impl Head) -> Result<()> {
        static REQUEST_ID: SpelledName = SpelledName::from_static("x-request-id", "X-Request-Id");
        static HOST: SpelledName = SpelledName::from_static("host", "Host");
        head.set(&REQUEST_ID, HeaderValue::from_static("abc"))?;
        head.remove(&http::header::CONNECTION);
        head.set(&HOST, HeaderValue::from_static("a.test"))
    }

    #[test]
    fn a_request_without_spellings_is_edited_bare_and_keeps_what_pingora_reads() {
        let mut req = RequestHeader::build_no_case("POST", b"/a/b?c=%20d", None).unwrap();
        req.insert_header("connection", "x").unwrap();
        req.insert_header("x-other", "1").unwrap();
        req.set_version(http::Version::HTTP_2);
        req.set_send_end_stream(false);
        assert!(BareRequest::can_take(&req, HeaderCase::Preserve));
        set_two(BareRequest::take(&mut req).parts()).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.raw_path(), b"/a/b?c=%20d");
        assert_eq!(req.send_end_stream(), Some(false));
        assert_eq!(req.headers["x-request-id"], "abc");
        assert_eq!(req.headers["host"], "a.test");
        assert_eq!(req.headers["x-other"], "1");
        assert!(!req.headers.contains_key("connection"));
        assert!(!req.has_case());
    }

    #[test]
    fn a_request_with_spellings_or_its_own_target_stays_pingoras() {
        // An HTTP/1 client's request: the spellings are kept, Portico's too.
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-Other", "1").unwrap();
        assert!(!BareRequest::can_take(&req, HeaderCase::Preserve));
        set_two(&mut req).unwrap();
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(
            wire.contains("X-Other: 1\r\n") && wire.contains("X-Request-Id: abc\r\n"),
            "{wire}"
        );

        // An absolute-form target is kept apart from the URI: it must not be lost.
        let mut req = RequestHeader::build_no_case("GET", b"http://a.test/x", None).unwrap();
        assert!(!BareRequest::can_take(&req, HeaderCase::Preserve));
        assert!(!BareRequest::can_take(&req, HeaderCase::Normalize));
        // Were it taken anyway, the target would be lost: the check is what keeps it.
        drop(BareRequest::take(&mut req));
        assert_eq!(req.raw_path(), b"/x");
    }

    #[test]
    fn normalize_drops_an_http1_clients_spellings() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("X-Other", "1").unwrap();
        req.insert_header("HOST", "a.test").unwrap();
        assert!(BareRequest::can_take(&req, HeaderCase::Normalize));
        set_two(BareRequest::take(&mut req).parts()).unwrap();
        assert!(!req.has_case());
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        // Pingora's form without spellings: a dozen common names titled, the rest lower case.
        assert_eq!(wire, "x-other: 1\r\nHost: a.test\r\nx-request-id: abc\r\n");
    }
}
