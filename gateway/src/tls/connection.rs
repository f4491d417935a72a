//! What Portico keeps about a TLS connection, from its handshake to its last request.

use super::client_cert::ClientCert;
use crate::net::connection::FirstRequest;
use std::sync::Arc;

/// What Portico keeps about a TLS connection, attached at its handshake and reachable from
/// each of its requests, HTTP/2 streams included.
pub struct TlsConnection {
    /// Whether its first request head arrived (the first-request watchdog stops then).
    pub first_request: FirstRequest,
    /// The client's verified certificate, on a listener with `client_ca`.
    pub client_cert: Option<Arc<ClientCert>>,
}

impl TlsConnection {
    /// The connection a request came on, when it came over TLS.
    pub fn of(session: &pingora_proxy::Session) -> Option<&TlsConnection> {
        session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|t| t.extension.get::<TlsConnection>())
    }
}
