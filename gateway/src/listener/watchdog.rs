//! Clocks on a connection that has not sent a request yet.

use crate::net::connection;
use crate::tls::TlsConnection;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Sleep;

/// Resolves when `clock` (the connection's deadline for this head) runs out before the
/// request head was read; never otherwise.
pub(super) async fn head_watchdog(clock: Pin<&mut Sleep>) {
    clock.await;
    if connection::head_seen() {
        std::future::pending::<()>().await;
    }
}

/// Resolves when `limit` passes before the first request of an HTTP/2 connection arrived
/// (a client that never sends its preface would otherwise hold the connection for good;
/// once requests came, Pingora's `h2_idle_timeout` closes it when it has none open).
pub(super) async fn first_request_watchdog(
    limit: Duration,
    tls: Option<Arc<pingora_core::protocols::tls::SslDigest>>,
) {
    tokio::time::sleep(limit).await;
    if tls
        .as_ref()
        .and_then(|d| d.extension.get::<TlsConnection>())
        .is_none_or(|c| c.first_request.has_arrived())
    {
        std::future::pending::<()>().await;
    }
}
