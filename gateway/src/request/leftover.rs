//! The request body left unread when Portico answers a request itself (404, 413, a plugin's
//! 401, 502, 503, 504, ...), and what it means for the client's HTTP/1 connection.
//!
//! A client that was told `Connection: keep-alive` sends its next request on the same
//! connection; a connection closed with bytes still unread in the kernel is closed with a
//! reset, which can also destroy the answer the client has not read yet. So (see
//! docs/security.md, "After an answer Portico made itself"):
//!
//! - before an answer on a connection that may stay open, a small declared body is read and
//!   dropped, so that the connection can serve the next request;
//! - an answer that closes the connection says `Connection: close` (Pingora writes it when
//!   keep-alive is off), and what the client still sends is then read and dropped for a
//!   moment, so the close is a clean FIN once the client has finished.
//!
//! HTTP/2 needs neither: a stream ends on its own, and the connection goes on.

use pingora_proxy::Session;
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// A declared body up to this size is read before an answer instead of closing the
/// connection after it: cheaper than the client's new connection (and TLS handshake).
const READ_BEFORE_MAX: u64 = 64 * 1024;
/// How long reading a small body before an answer may take; a client slower than that gets
/// the answer with `Connection: close` instead.
const READ_BEFORE_TIME: Duration = Duration::from_secs(1);
/// After a closing answer: how long what the client still sends is read and dropped at
/// most, and how long a pause in it ends that early. Bounded, so a client that keeps
/// uploading cannot hold the connection (nginx's `lingering_close` does the same).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_IDLE: Duration = Duration::from_millis(500);

/// Before Portico writes an answer of its own: on an HTTP/1 connection that may stay open,
/// reads and drops a request body that was declared small (`Content-Length` up to 64 KiB,
/// not waiting for `100-continue`). Whatever is not read by the end stays unread, and
/// Pingora then answers with `Connection: close`.
pub(crate) async fn read_small_body(session: &mut Session) {
    let downstream = session.as_downstream_mut();
    if downstream.is_http2() || downstream.get_keepalive().is_none() || downstream.is_body_done() {
        return;
    }
    let req = downstream.req_header();
    let small = !req.headers.contains_key(http::header::TRANSFER_ENCODING)
        && !req.headers.contains_key(http::header::EXPECT)
        && req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n <= READ_BEFORE_MAX);
    if small {
        let deadline = Instant::now() + READ_BEFORE_TIME;
        let _ = timeout_at(deadline, downstream.drain_request_body()).await;
    }
}

/// After Portico wrote an answer that closes the HTTP/1 connection: reads and drops what
/// is left of the request body, for [`LINGER_TIME`] at most, so that the connection ends
/// with a FIN rather than a reset. Called once the request is logged, so that its duration
/// in the log and the metrics is the answer's, not this.
pub(crate) async fn linger(session: &mut Session) {
    let downstream = session.as_downstream_mut();
    if downstream.is_http2() || downstream.get_keepalive().is_some() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    while !downstream.is_body_done() {
        let idle = (Instant::now() + LINGER_IDLE).min(deadline);
        match timeout_at(idle, downstream.read_request_body()).await {
            Ok(Ok(Some(_))) => {}
            // The end of the body, a broken one, the client gone, or time up.
            _ => return,
        }
    }
}
