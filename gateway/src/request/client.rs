//! Who the client is, and what the backend is told about it: the client IP (through trusted
//! proxies), the request id, and the headers that describe the client (X-Forwarded-*,
//! `Forwarded`, X-Real-IP).
//!
//! Those headers are believed only from Portico or a trusted proxy (docs/security.md, "What
//! a backend can believe about the client"): from any other peer the ones Portico does not
//! write itself are removed and the ones it does write are replaced.

use super::head::{BareRequest, Head};
use crate::net::ip::canonical_ip;
use crate::net::spelled_name::SpelledName;
use crate::plugin::RequestState;
use crate::snapshot::Snapshot;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora_http::RequestHeader;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The headers Portico writes about the client, spelled as HTTP/1 peers see them.
static X_FORWARDED_FOR: SpelledName =
    SpelledName::from_static("x-forwarded-for", "X-Forwarded-For");
static X_FORWARDED_PROTO: SpelledName =
    SpelledName::from_static("x-forwarded-proto", "X-Forwarded-Proto");
static X_FORWARDED_HOST: SpelledName =
    SpelledName::from_static("x-forwarded-host", "X-Forwarded-Host");
static X_FORWARDED_PORT: SpelledName =
    SpelledName::from_static("x-forwarded-port", "X-Forwarded-Port");
static X_REAL_IP: SpelledName = SpelledName::from_static("x-real-ip", "X-Real-IP");
static FORWARDED: SpelledName = SpelledName::from_static("forwarded", "Forwarded");
static HOST: SpelledName = SpelledName::from_static("host", "Host");

/// Headers about the client or the original request that Portico does not write itself
/// (X-Forwarded-Port is replaced, not only removed): a backend behind a proxy may believe
/// them (Spring and Symfony read `X-Forwarded-Prefix`, IIS rewrites by `X-Original-URL`, an
/// mTLS-aware app trusts `X-Forwarded-Client-Cert`), so a client must not be able to send
/// them through.
static CLIENT_CLAIMS: [HeaderName; 6] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-forwarded-client-cert"),
];

/// An `X-Forwarded-For` entry from a trusted peer that is no address: the request is refused
/// (400) rather than the client taken to be the trusted proxy itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAnAddress;

/// The client IP: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// address of its X-Forwarded-For that is not itself a trusted proxy.
///
/// Every entry of a trusted peer's chain must be an address (`IP`, `IP:port`, `[IPv6]`,
/// `[IPv6]:port`), also those left of the client: they reach the backend too.
pub fn client_ip(
    snap: &Snapshot,
    peer: Option<IpAddr>,
    req: &RequestHeader,
) -> Result<IpAddr, NotAnAddress> {
    let peer = canonical_ip(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    if snap.trusted_proxies.is_empty() || !snap.is_trusted(peer) {
        return Ok(peer);
    }
    let mut client = peer;
    let mut found = false;
    for hop in forwarded_for(&req.headers).rev() {
        let ip = hop_address(hop).ok_or(NotAnAddress)?;
        if !found {
            client = canonical_ip(ip);
            found = !snap.is_trusted(client);
        }
    }
    Ok(client)
}

/// The entries of every X-Forwarded-For line, as one list, in order; empty list elements
/// (`a,,b`) are skipped, as RFC 9110 5.6.1 asks of a recipient.
fn forwarded_for(headers: &HeaderMap) -> impl DoubleEndedIterator<Item = &[u8]> {
    headers
        .get_all(&X_FORWARDED_FOR.name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|s| s.trim_ascii())
        .filter(|s| !s.is_empty())
}

/// The address an X-Forwarded-For entry names: `192.0.2.1`, `192.0.2.1:443`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`; `None` for anything else (`unknown`, a name,
/// garbage).
fn hop_address(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    text.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// The client's own request id when it sent a sane one (1 to 128 visible ASCII
/// characters), otherwise a new random one.
pub fn request_id(req: &RequestHeader, header: &http::HeaderName) -> String {
    if let Some(v) = req.headers.get(header) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= REQUEST_ID_MAX && b.iter().all(|c| (0x21..=0x7e).contains(c))
        {
            // Visible ASCII is valid UTF-8.
            return String::from_utf8_lossy(b).into_owned();
        }
    }
    // 32 hex digits, written directly: this runs on every request without an id.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u128 = rand::random();
    let mut id = String::with_capacity(32);
    for b in n.to_be_bytes() {
        id.push(HEX[(b >> 4) as usize] as char);
        id.push(HEX[(b & 15) as usize] as char);
    }
    id
}

/// Sets the headers that describe the client on the upstream request: X-Forwarded-For,
/// -Proto, -Host and -Port, X-Real-IP, the request id (`request_id`, made by
/// [`request_id_value`]), and, when a trusted peer sent a
/// `Forwarded` header, Portico's own element at its end (RFC 7239).
///
/// From a peer outside `trusted_proxies` the client's own claims ([`CLIENT_CLAIMS`]) are
/// removed first and every value set here is Portico's. A trusted peer's X-Forwarded-For
/// chain and `Forwarded` list are kept and extended; its X-Forwarded-Proto, -Host and -Port
/// and the other claims are its statement about the client and pass unchanged (Portico
/// fills in whichever of the first three it left out). A trusted peer that sent no
/// `Forwarded` gets none added: an element naming only that proxy would tell the backend
/// that the proxy is the client.
///
/// This runs on every request, so values are built without the formatter: the peer's
/// address text is made once for both X-Forwarded-For and X-Real-IP, the Host value and the
/// listener's port are shared rather than copied; and a request that keeps no spellings (an
/// HTTP/2 client's, or any with `server.header_case: normalize`) is edited as bare parts
/// (`head::BareRequest`).
pub fn set_upstream_headers(
    snap: &Snapshot,
    upstream: &mut RequestHeader,
    peer: Option<IpAddr>,
    state: &RequestState,
    tls: bool,
    listener_port: &HeaderValue,
    request_id: &HeaderValue,
) -> pingora_core::Result<()> {
    if BareRequest::can_take(upstream, snap.config.server.header_case) {
        let mut bare = BareRequest::take(upstream);
        set_client_headers(
            snap,
            bare.parts(),
            peer,
            state,
            tls,
            listener_port,
            request_id,
        )
    } else {
        set_client_headers(snap, upstream, peer, state, tls, listener_port, request_id)
    }
}

fn set_client_headers<H: Head>(
    snap: &Snapshot,
    upstream: &mut H,
    peer: Option<IpAddr>,
    state: &RequestState,
    tls: bool,
    listener_port: &HeaderValue,
    request_id: &HeaderValue,
) -> pingora_core::Result<()> {
    let peer = canonical_ip(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    let trusted = !snap.trusted_proxies.is_empty() && snap.is_trusted(peer);
    // One pass over the request's names rather than a lookup per claim: this runs on every
    // request, and a request from a client seldom carries any of them. Every claim starts
    // with `x` or `f`, so most names (a browser's are mostly standard ones) are passed over
    // after one byte instead of six comparisons.
    let may_claim = |k: &HeaderName| matches!(k.as_str().as_bytes().first(), Some(b'x' | b'f'));
    if !trusted
        && upstream
            .headers()
            .keys()
            .any(|k| may_claim(k) && CLIENT_CLAIMS.contains(k))
    {
        for name in &CLIENT_CLAIMS {
            upstream.remove(name);
        }
    }
    // Whether a trusted peer already said it; never for anyone else.
    let stated =
        |upstream: &H, named: &SpelledName| trusted && upstream.headers().contains_key(&named.name);

    let peer_value = ip_value(peer);
    // A trusted peer's chain is kept and extended; anyone else's is replaced, so a client
    // cannot plant addresses in it.
    let xff = if stated(upstream, &X_FORWARDED_FOR) {
        let mut chain = Vec::with_capacity(64);
        for hop in forwarded_for(upstream.headers()) {
            chain.extend_from_slice(hop);
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(peer_value.as_bytes());
        HeaderValue::from_bytes(&chain).map_err(|_| bad_value("X-Forwarded-For"))?
    } else {
        peer_value.clone()
    };
    upstream.set(&X_FORWARDED_FOR, xff)?;

    let proto = if tls { "https" } else { "http" };
    if !stated(upstream, &X_FORWARDED_PROTO) {
        upstream.set(&X_FORWARDED_PROTO, HeaderValue::from_static(proto))?;
    }
    let host = match upstream.uri().authority() {
        Some(a) => {
            // An HTTP/2 client sends no Host header, only the :authority; an HTTP/1.1 backend
            // needs the Host header.
            let h = HeaderValue::from_str(a.as_str()).map_err(|_| bad_value("Host"))?;
            if !upstream.headers().contains_key(&HOST.name) {
                upstream.set(&HOST, h.clone())?;
            }
            Some(h)
        }
        // The client's own Host value, shared with the request rather than copied.
        None => upstream
            .headers()
            .get(&HOST.name)
            .filter(|h| h.to_str().is_ok())
            .cloned(),
    };
    if !stated(upstream, &X_FORWARDED_HOST) {
        match &host {
            Some(h) => upstream.set(&X_FORWARDED_HOST, h.clone())?,
            // No host to tell (an HTTP/1.0 request without Host): then not the client's.
            None => upstream.remove(&X_FORWARDED_HOST.name),
        }
    }
    if !stated(upstream, &X_FORWARDED_PORT) {
        upstream.set(&X_FORWARDED_PORT, listener_port.clone())?;
    }
    if stated(upstream, &FORWARDED) {
        let list = forwarded_list(upstream.headers(), peer, proto, host.as_ref());
        upstream.set(
            &FORWARDED,
            HeaderValue::from_bytes(&list).map_err(|_| bad_value("Forwarded"))?,
        )?;
    }

    let real_ip = if state.client_ip == peer {
        peer_value
    } else {
        ip_value(state.client_ip)
    };
    upstream.set(&X_REAL_IP, real_ip)?;
    upstream.set(&snap.request_id, request_id.clone())
}

/// Every `Forwarded` line the trusted peer sent, as one list, with Portico's element
/// appended: `for=<peer>;proto=<scheme>;host=<host>` (RFC 7239 section 4). One line rather
/// than a new one, since many frameworks read only the first.
fn forwarded_list(
    headers: &HeaderMap,
    peer: IpAddr,
    proto: &str,
    host: Option<&HeaderValue>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for v in headers.get_all(&FORWARDED.name) {
        let v = v.as_bytes().trim_ascii();
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(b"for=");
    let mut buf = [0u8; IP_TEXT_MAX];
    match peer {
        IpAddr::V4(_) => out.extend_from_slice(ip_text(peer, &mut buf)),
        // An IPv6 node is bracketed, and so must be a quoted-string (RFC 7239 section 6).
        IpAddr::V6(_) => {
            out.extend_from_slice(b"\"[");
            out.extend_from_slice(ip_text(peer, &mut buf));
            out.extend_from_slice(b"]\"");
        }
    }
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(proto.as_bytes());
    if let Some(host) = host {
        out.extend_from_slice(b";host=");
        push_token_or_quoted(&mut out, host.as_bytes());
    }
    out
}

/// A parameter value as RFC 7230's `token` when it is one, otherwise as a quoted-string
/// (a host with a port has a `:`, which no token may contain).
fn push_token_or_quoted(out: &mut Vec<u8>, value: &[u8]) {
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if !value.is_empty() && value.iter().all(tchar) {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// A header value's bytes in one allocation that several headers share (a clone only counts
/// a reference), where a value made from a `&str` or `&[u8]` is copied into a new buffer at
/// each insert, and a clone of that copy allocates again.
struct Inline<const N: usize>([u8; N], usize);

impl<const N: usize> AsRef<[u8]> for Inline<N> {
    fn as_ref(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

/// An address's text as a header value for both X-Forwarded-For and X-Real-IP.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let mut text = Inline([0; IP_TEXT_MAX], 0);
    text.1 = ip_text(ip, &mut text.0).len();
    HeaderValue::from_maybe_shared(Bytes::from_owner(text))
        .expect("an address's text is a valid header value")
}

/// The longest request id [`request_id`] keeps.
const REQUEST_ID_MAX: usize = 128;

/// The request id as a header value for the upstream request (every attempt's) and the
/// response to share; `None` when it is no valid header value, which only a plugin that
/// changed it can cause.
pub fn request_id_value(id: &str) -> Option<HeaderValue> {
    if id.len() > REQUEST_ID_MAX {
        return HeaderValue::from_str(id).ok();
    }
    let mut text = Inline([0; REQUEST_ID_MAX], id.len());
    text.0[..id.len()].copy_from_slice(id.as_bytes());
    HeaderValue::from_maybe_shared(Bytes::from_owner(text)).ok()
}

fn bad_value(name: &str) -> Box<pingora_core::Error> {
    pingora_core::Error::explain(
        pingora_core::ErrorType::InvalidHTTPHeader,
        format!("invalid {name} value"),
    )
}

/// The longest text form of an IP address (`ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`).
const IP_TEXT_MAX: usize = 45;

/// An IP address in its usual text form, written into `buf` without a `String` or the
/// formatter for IPv4 (the common case on the request path).
fn ip_text(ip: IpAddr, buf: &mut [u8; IP_TEXT_MAX]) -> &[u8] {
    match ip {
        IpAddr::V4(a) => {
            let mut n = 0;
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            &buf[..n]
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // 45 bytes hold any IPv6 address's text.
            let _ = write!(cursor, "{ip}");
            let n = cursor.position() as usize;
            &buf[..n]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_claim_passes_the_first_byte_filter() {
        // `set_client_headers` looks at a name only when it starts with `x` or `f`; a claim
        // added to the list that does not would slip through.
        for claim in &CLIENT_CLAIMS {
            assert!(
                matches!(claim.as_str().as_bytes()[0], b'x' | b'f'),
                "{claim}"
            );
        }
    }

    #[test]
    fn ip_text_is_the_display_form() {
        let mut buf = [0u8; IP_TEXT_MAX];
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "9.99.199.249",
            "::1",
            "2001:db8::8a2e:370:7334",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(
                std::str::from_utf8(ip_text(ip, &mut buf)).unwrap(),
                ip.to_string()
            );
        }
    }

    #[test]
    fn forwarded_for_entries() {
        for (hop, want) in [
            ("192.0.2.1", Some("192.0.2.1")),
            ("192.0.2.1:443", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("unknown", None),
            ("_obfuscated", None),
            ("192.0.2.1:", None),
            ("192.0.2.1:65536", None),
            ("[192.0.2.1]", None),
            ("[2001:db8::1", None),
            ("host.example:80", None),
            ("", None),
        ] {
            assert_eq!(
                hop_address(hop.as_bytes()),
                want.map(|w| w.parse().unwrap()),
                "{hop:?}"
            );
        }
    }

    #[test]
    fn forwarded_parameter_values() {
        for (value, want) in [
            ("shop.test", "shop.test"),
            ("shop.test:8443", "\"shop.test:8443\""),
            ("[::1]:8443", "\"[::1]:8443\""),
            ("a\"b\\c", "\"a\\\"b\\\\c\""),
            ("", "\"\""),
        ] {
            let mut out = Vec::new();
            push_token_or_quoted(&mut out, value.as_bytes());
            assert_eq!(String::from_utf8(out).unwrap(), want, "{value:?}");
        }
    }

    #[test]
    fn generated_request_ids_are_32_hex_digits() {
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let id = request_id(&req, &http::HeaderName::from_static("x-request-id"));
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
