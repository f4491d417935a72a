//! The response head as Portico hands it on to an HTTP/2 client.
//!
//! Pingora keeps a second map beside a response's headers: each name as the backend spelled
//! it, so that an HTTP/1 client sees the backend's case. HTTP/2 sends every name in lower
//! case, so for an HTTP/2 client that map has no reader, yet each header that Portico, a
//! plugin or Pingora adds or removes afterwards touches both maps, and each map grows on its
//! own when the backend's head filled it (measured in benches/README.md, "The response head
//! for HTTP/2 clients"). HTTP/1 clients keep the backend's spelling.

use pingora_http::ResponseHeader;

/// Room for what is added after the backend's head: the request id, `Date`, and a few from
/// the plugins' response hooks (`rate_limit` adds two, `headers` and `cors` what they are
/// configured with); more still works, at the cost of a grow.
const ADDED_HEADERS: usize = 8;

/// Drops the map of header-name spellings (`ResponseHeader::from` keeps none) and makes room
/// for the headers added next, in one step. Only for HTTP/2 clients.
pub(super) fn for_http2(resp: &mut ResponseHeader) {
    if !resp.has_case() {
        return;
    }
    let empty = http::Response::new(()).into_parts().0;
    let mut parts = http::response::Parts::from(std::mem::replace(resp, empty.into()));
    parts.headers.reserve(ADDED_HEADERS);
    *resp = parts.into();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_status_headers_and_order_and_forgets_the_spelling() {
        let mut resp = ResponseHeader::build(404, Some(3)).unwrap();
        resp.append_header("X-Backend-Name", "a").unwrap();
        resp.append_header("Set-Cookie", "x=1").unwrap();
        resp.append_header("set-cookie", "y=2").unwrap();
        resp.set_reason_phrase(Some("Gone Fishing")).unwrap();
        for_http2(&mut resp);
        assert!(!resp.has_case());
        assert_eq!(resp.status, 404);
        let cookies: Vec<_> = resp.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["x=1", "y=2"]);
        assert_eq!(resp.headers["x-backend-name"], "a");
        assert!(resp.headers.capacity() >= 3 + ADDED_HEADERS);
        // HTTP/2 has no reason phrase; the default one is what remains.
        assert_eq!(resp.get_reason_phrase(), Some("Not Found"));
        // Adding afterwards works on the one map.
        resp.insert_header("X-Request-Id", "abc").unwrap();
        assert_eq!(resp.headers["x-request-id"], "abc");
    }

    #[test]
    fn a_head_without_spellings_is_left_as_it_is() {
        let mut resp = ResponseHeader::build_no_case(200, Some(1)).unwrap();
        resp.insert_header("a", "1").unwrap();
        let before = resp.headers.capacity();
        for_http2(&mut resp);
        assert_eq!(resp.headers.capacity(), before);
        assert_eq!(resp.headers["a"], "1");
    }
}
