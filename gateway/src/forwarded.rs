//! Who the client is, and what the backend is told about it: the client IP (through trusted
//! proxies), the request id, and the X-Forwarded-* headers.

use crate::plugin::RequestState;
use crate::snapshot::{canonical_ip, Snapshot};
use http::HeaderValue;
use pingora_http::RequestHeader;
use std::net::{IpAddr, Ipv4Addr};

/// The client IP: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// address of its X-Forwarded-For that is not itself a trusted proxy.
pub fn client_ip(snap: &Snapshot, peer: Option<IpAddr>, req: &RequestHeader) -> IpAddr {
    let peer = canonical_ip(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    if snap.trusted_proxies.is_empty() || !snap.is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_for(req).rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = canonical_ip(ip);
                if !snap.is_trusted(client) {
                    break;
                }
            }
            // Garbage in the chain: stop believing it here.
            Err(_) => break,
        }
    }
    client
}

fn forwarded_for(req: &RequestHeader) -> impl DoubleEndedIterator<Item = &str> {
    req.headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
}

/// The client's own request id when it sent a sane one (1 to 128 visible ASCII
/// characters), otherwise a new random one.
pub fn request_id(req: &RequestHeader, header: &http::HeaderName) -> String {
    if let Some(v) = req.headers.get(header) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| (0x21..=0x7e).contains(c)) {
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

/// Sets X-Forwarded-For/-Proto/-Host, X-Real-IP and the request id on the upstream request.
///
/// This runs on every request, so values are built without the formatter and, where they
/// exist already (the Host header), shared rather than copied.
pub fn set_upstream_headers(
    snap: &Snapshot,
    upstream: &mut RequestHeader,
    peer: Option<IpAddr>,
    state: &RequestState,
    tls: bool,
) -> pingora_core::Result<()> {
    let peer = canonical_ip(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    let mut buf = [0u8; IP_TEXT_MAX];
    // A trusted peer's chain is kept and extended; anyone else's is replaced, so a client
    // cannot plant addresses in it.
    let prior: Vec<&str> = if snap.is_trusted(peer) {
        forwarded_for(upstream).collect()
    } else {
        Vec::new()
    };
    let xff = if prior.is_empty() {
        HeaderValue::from_bytes(ip_text(peer, &mut buf))
    } else {
        HeaderValue::try_from(format!("{}, {peer}", prior.join(", ")))
    };
    upstream.insert_header(
        "X-Forwarded-For",
        xff.map_err(|_| bad_value("X-Forwarded-For"))?,
    )?;
    let proto = if tls {
        HeaderValue::from_static("https")
    } else {
        HeaderValue::from_static("http")
    };
    upstream.insert_header("X-Forwarded-Proto", proto)?;
    match upstream.uri.authority() {
        Some(a) => {
            // An HTTP/2 client sends no Host header, only the :authority; an HTTP/1.1 backend
            // needs the Host header.
            let h = HeaderValue::from_str(a.as_str()).map_err(|_| bad_value("Host"))?;
            if !upstream.headers.contains_key(http::header::HOST) {
                upstream.insert_header(http::header::HOST, h.clone())?;
            }
            upstream.insert_header("X-Forwarded-Host", h)?;
        }
        None => {
            // The client's own Host value, shared with the request rather than copied.
            if let Some(h) = upstream
                .headers
                .get(http::header::HOST)
                .filter(|h| h.to_str().is_ok())
                .cloned()
            {
                upstream.insert_header("X-Forwarded-Host", h)?;
            }
        }
    }
    let real_ip = HeaderValue::from_bytes(ip_text(state.client_ip, &mut buf))
        .map_err(|_| bad_value("X-Real-IP"))?;
    upstream.insert_header("X-Real-IP", real_ip)?;
    upstream.insert_header(snap.request_id_wire.clone(), state.request_id.as_str())?;
    Ok(())
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
    fn generated_request_ids_are_32_hex_digits() {
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let id = request_id(&req, &http::HeaderName::from_static("x-request-id"));
        assert_eq!(id.len(), 32);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
}
