//! The application of one listener: what happens once per connection, before Pingora's
//! HTTP proxy takes its requests.

use super::admission::{ConnCounts, LogGate};
use super::proxy_header::take_proxy_header;
use super::watchdog::first_request_watchdog;
use crate::metrics;
use crate::request::Gateway;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The application of one listener: Pingora's HTTP proxy, plus what happens once per
/// connection (counting it, and the PROXY header on plain listeners).
pub struct ListenerApp {
    pub name: Arc<str>,
    pub proxy: Arc<HttpProxy<Gateway>>,
    /// Read a PROXY header first (plain listeners; TLS ones read it before the handshake).
    pub proxy_header: bool,
    /// Its limits (`server.limits`) are read from the current snapshot per connection.
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    /// This listener's open connections, for `max_connections` and `max_connections_per_ip`.
    pub(crate) conns: ConnCounts,
    /// Set when the service stops (`cleanup`): connections waiting for a request close.
    pub(crate) closing: Closing,
    /// Paces the warning about PROXY headers from untrusted peers.
    pub(crate) untrusted_warning: LogGate,
}

/// Tells connections parked between requests (see [`ListenerApp::next_request`]) that the
/// service is stopping, as Pingora tells the ones it is reading a request head from.
#[derive(Default)]
pub(crate) struct Closing {
    closed: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Closing {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Resolves once `close` was called (also if it was before).
    pub(super) async fn closed(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a `close` in between is not missed.
        notified.as_mut().enable();
        if !self.closed.load(Ordering::Acquire) {
            notified.await;
        }
    }
}

/// Acknowledges at once what the client has sent. BoringSSL keeps a TLS 1.3 connection's
/// session ticket until the server first writes, so after the handshake the server is silent
/// and the kernel delays its ACK of the client's Finished by up to 40 ms; a client with
/// Nagle's algorithm on (no TCP_NODELAY, as many libraries leave it) holds its first request
/// until that ACK comes. One system call per TLS 1.3 connection, instead of 40 ms on the
/// first request of such clients (`tests/tls_audit.rs` has one).
fn ack_now(stream: &Stream) {
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is this live connection's; the option value is a c_int that
    // outlives the call. A failure only leaves the kernel's delayed ACK in place.
    unsafe {
        libc::setsockopt(
            stream.id(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Decrements the connection gauge however the connection ends.
struct Open(prometheus::IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl ServerApp for ListenerApp {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let gauge = metrics::DOWNSTREAM_CONNECTIONS.with_label_values(&[&self.name]);
        gauge.inc();
        let _open = Open(gauge);
        if self.proxy_header {
            // A plain listener hands over the raw connection (TLS ones read the header before
            // the handshake, in `ProxyHeaderBeforeTls`).
            let Ok(mut raw) = stream.into_any().downcast::<L4Stream>() else {
                log::error!(
                    "listener {}: a PROXY header on a connection that is not plain TCP",
                    self.name
                );
                return None;
            };
            // Boxed, like the request below: its state (a read buffer among it) is needed
            // once, and inline it would size this future, which every idle connection keeps.
            Box::pin(take_proxy_header(
                &self.snapshot,
                &self.name,
                &self.untrusted_warning,
                &mut raw,
            ))
            .await
            .ok()?;
            stream = raw;
        }
        // One look at the config, keeping only figures: the snapshot or the limits themselves
        // would stay in this future, which a parked connection keeps.
        let (ip, max_connections, max_per_ip, header_timeout, idle_timeout) = {
            let snapshot = self.snapshot.load();
            // Counted by the client's address: the PROXY header's source from a trusted
            // proxy, otherwise the peer. A trusted proxy's own connections carry many clients.
            let ip = stream
                .get_socket_digest()
                .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
                .map(crate::net::ip::canonical_ip)
                .filter(|ip| !snapshot.is_trusted(*ip));
            let limits = &snapshot.config.server.limits;
            (
                ip,
                limits.max_connections,
                limits.max_connections_per_ip,
                limits.header_timeout.get(),
                limits.idle_timeout.get(),
            )
        };
        let _admitted = match self.conns.admit(ip, max_connections, max_per_ip) {
            Ok(a) => a,
            Err(limit) => {
                if self.conns.should_warn() {
                    log::warn!("listener {}: closing a connection from {ip:?}: {limit} reached (logged once per 10 s)", self.name);
                }
                return None;
            }
        };
        if stream
            .get_ssl_digest()
            .is_some_and(|tls| tls.version == "TLSv1.3")
        {
            ack_now(&stream);
        }
        let h2c = self.proxy.server_options().is_some_and(|o| o.h2c);
        if stream.selected_alpn_proto() == Some(pingora_core::protocols::ALPN::H2) || h2c {
            // HTTP/2 multiplexes requests on tasks of their own and has its own idle timer.
            let tls = stream.get_ssl_digest();
            tokio::select! {
                _ = self.proxy.process_new(stream, shutdown) => {}
                _ = first_request_watchdog(header_timeout, tls) => {
                    log::debug!("listener {}: no HTTP/2 request within {header_timeout:?}, closing", self.name);
                }
            }
        } else {
            self.serve_h1(stream, shutdown, header_timeout, idle_timeout)
                .await;
        }
        None
    }

    async fn cleanup(&self) {
        self.closing.close();
        self.proxy.cleanup().await
    }
}
