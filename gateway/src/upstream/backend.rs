//! One backend of a pool: where it is reached, its weight and health, its requests in flight.

use super::health::Health;
use arc_swap::ArcSwap;
use pingora_core::upstreams::peer::HttpPeer;
use prometheus::IntCounter;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};

pub struct Backend {
    /// As written in the config; the `backend` label and `/status` key.
    pub addr: Arc<str>,
    /// Where `addr` is reached now: it changes while the config stays loaded when `addr` is
    /// a host name whose address moves (resolve.rs).
    pub endpoint: ArcSwap<Endpoint>,
    pub weight: u32,
    pub backup: bool,
    pub health: Arc<Health>,
    /// Requests in flight, for `least_conn`.
    pub inflight: AtomicUsize,
    /// Its `portico_upstream_requests_total{outcome="ok"}` series, looked up on its first
    /// answer (so a snapshot a reload rejects leaves no series behind) instead of by three
    /// labels on every answer.
    pub answered: OnceLock<IntCounter>,
}

/// Where a backend is reached now.
pub struct Endpoint {
    pub socket: SocketAddr,
    /// The peer every request to this backend starts from (TLS, timeouts, HTTP version).
    pub peer: HttpPeer,
}

impl Endpoint {
    pub fn new(socket: SocketAddr, peer: HttpPeer) -> Self {
        Endpoint { socket, peer }
    }

    /// The same peer at another address. The connection pool is keyed by address, so
    /// connections to the old one are never handed out for the new one.
    pub fn moved_to(&self, socket: SocketAddr) -> Self {
        let mut peer = self.peer.clone();
        peer._address = pingora_core::protocols::l4::socket::SocketAddr::Inet(socket);
        Endpoint { socket, peer }
    }
}
