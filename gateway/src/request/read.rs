//! The first look at a request, before any plugin sees it (docs/security.md, "One reading of
//! every request"): what its connection says, who the client is, whether its head is framed
//! and sized within the limits, and the one reading of its target and host.

use super::client;
use super::ctx::Ctx;
use super::local_error::LocalError;
use crate::config::LimitsConfig;
use crate::lifecycle::Lifecycle;
use crate::net::{connection, framing, request_target};
use crate::tls::TlsConnection;
use pingora_http::RequestHeader;
use pingora_proxy::Session;

/// What the connection tells about its request: that a head arrived (the watchdogs stop),
/// the client's certificate, and whether to close after it (the process is winding down:
/// keep-alive clients then reconnect elsewhere).
pub(super) fn connection(session: &mut Session, ctx: &mut Ctx, lifecycle: &Lifecycle) {
    connection::mark_head_seen();
    // HTTP/2 requests run on tasks of their own: they reach the connection through its TLS
    // digest (plain listeners speak only HTTP/1).
    if let Some(conn) = TlsConnection::of(session) {
        conn.first_request.arrived();
        ctx.state.client_cert = conn.client_cert.clone();
    }
    if lifecycle.is_winding_down() {
        session.set_keepalive(None);
    }
}

/// Reads the request: its id, the client's address, the checks of its head, and the one
/// reading of its target (set on the request before the redirect listener and any plugin look
/// at it). Returns the path routes match, when it is not the request's own.
pub(super) fn request(session: &mut Session, ctx: &mut Ctx) -> Result<Option<String>, LocalError> {
    let snap = &ctx.snapshot;
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    ctx.state.request_id = client::request_id(session.req_header(), &snap.request_id.name);
    // Refused before any plugin runs: an IP filter or rate limit must not see the trusted
    // proxy in place of the client.
    ctx.state.client_ip = client::client_ip(snap, peer, session.req_header()).map_err(|_| {
        LocalError::BadRequest("an X-Forwarded-For entry from a trusted proxy is not an address")
    })?;
    let limits = &snap.config.server.limits;
    check_head(session, limits)?;
    if limits.max_header_bytes > 0 && head_size(session.req_header()) > limits.max_header_bytes {
        return Err(LocalError::HeadTooLarge);
    }
    let reading = match request_target::read(session.req_header_mut(), &snap.config.server.path) {
        Ok(reading) => reading,
        Err(refusal) => {
            // A malformed request: its connection is not worth keeping.
            session.set_keepalive(None);
            return Err(LocalError::BadRequest(refusal.reason()));
        }
    };
    ctx.state.host = reading.host;
    Ok(reading.matching)
}

/// The checks of a request head that come before anything else looks at it: its framing
/// (400, HTTP/1 only: HTTP/2 frames bodies itself and the h2 codec refuses connection-specific
/// headers), the request line's length (414) and the number of header fields (431).
fn check_head(session: &Session, limits: &LimitsConfig) -> Result<(), LocalError> {
    let req = session.req_header();
    let line = match session.as_downstream().as_http1() {
        Some(h1) => {
            let raw = h1.get_headers_raw_bytes();
            framing::check_h1_head(&raw).map_err(|r| LocalError::BadRequest(r.reason()))?;
            framing::request_line_len(&raw)
        }
        None => req.method.as_str().len() + 1 + req.raw_path().len(),
    };
    if limits.max_request_line_bytes > 0 && line > limits.max_request_line_bytes {
        return Err(LocalError::RequestLineTooLong);
    }
    if limits.max_header_count > 0 && req.headers.len() > limits.max_header_count {
        return Err(LocalError::TooManyHeaders);
    }
    Ok(())
}

/// The size of the request head as received: request line and header lines.
fn head_size(req: &RequestHeader) -> usize {
    // The URI's text length, counted without formatting it (this runs on every request).
    let uri = &req.uri;
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1);
    let line = req.method.as_str().len() + target + 12;
    line + req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
}
