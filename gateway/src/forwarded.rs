//! Who the client is, and what the backend is told about it: the client IP (through trusted
//! proxies), the request id, and the X-Forwarded-* headers.

use crate::plugin::RequestState;
use crate::snapshot::{canonical_ip, Snapshot};
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
    let n: u128 = rand::random();
    format!("{n:032x}")
}

/// Sets X-Forwarded-For/-Proto/-Host, X-Real-IP and the request id on the upstream request.
pub fn set_upstream_headers(
    snap: &Snapshot,
    upstream: &mut RequestHeader,
    peer: Option<IpAddr>,
    state: &RequestState,
    tls: bool,
) -> pingora_core::Result<()> {
    let peer = canonical_ip(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    // A trusted peer's chain is kept and extended; anyone else's is replaced, so a client
    // cannot plant addresses in it.
    let xff = if snap.is_trusted(peer) {
        let prior: Vec<&str> = forwarded_for(upstream).collect();
        if prior.is_empty() { peer.to_string() } else { format!("{}, {peer}", prior.join(", ")) }
    } else {
        peer.to_string()
    };
    upstream.insert_header("X-Forwarded-For", xff)?;
    upstream.insert_header("X-Forwarded-Proto", if tls { "https" } else { "http" })?;
    let host = upstream
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| upstream.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string));
    if let Some(h) = host {
        // An HTTP/2 client sends no Host header, only the :authority; an HTTP/1.1 backend
        // needs the Host header.
        if !upstream.headers.contains_key(http::header::HOST) {
            upstream.insert_header(http::header::HOST, h.as_str())?;
        }
        upstream.insert_header("X-Forwarded-Host", h)?;
    }
    upstream.insert_header("X-Real-IP", state.client_ip.to_string())?;
    upstream.insert_header(snap.request_id_header.clone(), state.request_id.as_str())?;
    Ok(())
}
