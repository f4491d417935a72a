//! What happens to a connection before HTTP: the PROXY protocol header (on TLS listeners
//! before the handshake, on plain ones before the first request) and connection accounting.

use crate::metrics;
use crate::proxy::Gateway;
use crate::Shared;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::PreTlsProcess;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream, UniqueID};
use pingora_core::server::ShutdownWatch;
use pingora_core::{Error, ErrorType, Result};
use pingora_proxy::HttpProxy;
use std::net::{IpAddr, SocketAddr};
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

tokio::task_local! {
    /// Set by the proxy once a request head has been read on this connection's task: the
    /// header-timeout watchdog stops watching from then on.
    static HEAD_SEEN: Cell<bool>;
}

/// Called when a request head has been read completely.
pub(crate) fn head_received() {
    let _ = HEAD_SEEN.try_with(|seen| seen.set(true));
}

/// A client that sends nothing must not hold a connection open forever.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Reads one PROXY header (v1 or v2) from the start of a stream, without reading past it.
/// Returns the source address it names (`None` for `UNKNOWN`/`LOCAL`, such as a load
/// balancer's own health check).
pub async fn read_proxy_header<S: AsyncRead + Unpin>(stream: &mut S) -> std::result::Result<Option<SocketAddr>, String> {
    let mut head = [0u8; 12];
    stream.read_exact(&mut head[..6]).await.map_err(|e| format!("reading PROXY header: {e}"))?;
    if &head[..6] == b"PROXY " {
        // v1: one text line of at most 107 bytes; read byte by byte so nothing past the
        // CRLF is consumed (the stream is buffered, so this does not cost a syscall a byte).
        let mut line = head[..6].to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= 107 {
                return Err("PROXY v1 header longer than 107 bytes".into());
            }
            line.push(stream.read_u8().await.map_err(|e| format!("reading PROXY header: {e}"))?);
        }
        let header = ppp::v1::Header::try_from(&line[..]).map_err(|e| format!("invalid PROXY v1 header: {e:?}"))?;
        return Ok(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
            ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
            ppp::v1::Addresses::Unknown => None,
        });
    }
    stream.read_exact(&mut head[6..]).await.map_err(|e| format!("reading PROXY header: {e}"))?;
    if &head != V2_SIGNATURE {
        return Err("the connection did not start with a PROXY protocol header".into());
    }
    let mut rest = [0u8; 4];
    stream.read_exact(&mut rest).await.map_err(|e| format!("reading PROXY header: {e}"))?;
    let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
    let mut full = Vec::with_capacity(16 + len);
    full.extend_from_slice(&head);
    full.extend_from_slice(&rest);
    full.resize(16 + len, 0);
    stream.read_exact(&mut full[16..]).await.map_err(|e| format!("reading PROXY header: {e}"))?;
    let header = ppp::v2::Header::try_from(&full[..]).map_err(|e| format!("invalid PROXY v2 header: {e:?}"))?;
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        ppp::v2::Addresses::IPv6(a) => Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
        _ => None,
    })
}

/// Replaces the connection's peer address with the PROXY header's source, but only when the
/// TCP peer is a trusted proxy; an untrusted peer's header is read and ignored.
fn adopt_source<T: GetSocketDigest + UniqueID + ?Sized>(shared: &Shared, listener: &str, stream: &mut T, source: Option<SocketAddr>) {
    let Some(digest) = stream.get_socket_digest() else { return };
    let peer = digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
    let trusted = peer.is_some_and(|ip| shared.snapshot.load().is_trusted(ip));
    match (trusted, source) {
        (true, Some(src)) => {
            // On an L4 stream the unique id is its file descriptor.
            let fresh = SocketDigest::from_raw_fd(stream.id());
            let _ = fresh.peer_addr.set(Some(src.into()));
            if let Some(local) = digest.local_addr() {
                let _ = fresh.local_addr.set(Some(local.clone()));
            }
            stream.set_socket_digest(fresh);
        }
        (false, Some(_)) => {
            log::warn!("listener {listener}: PROXY header from untrusted peer {peer:?} ignored (add it to server.trusted_proxies)");
        }
        _ => {}
    }
}

/// The pre-TLS step of a TLS listener with `proxy_protocol: true`.
pub struct ProxyHeaderBeforeTls {
    pub listener: Arc<str>,
    pub(crate) shared: Arc<Shared>,
}

#[async_trait]
impl PreTlsProcess for ProxyHeaderBeforeTls {
    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        match tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_proxy_header(stream)).await {
            Ok(Ok(source)) => {
                adopt_source(&self.shared, &self.listener, stream, source);
                Ok(())
            }
            Ok(Err(why)) => {
                log::warn!("listener {}: closing connection from {:?}: {why}", self.listener, stream.get_socket_digest().and_then(|d| d.peer_addr().cloned()));
                Error::e_explain(ErrorType::InvalidHTTPHeader, why)
            }
            Err(_) => Error::e_explain(ErrorType::ReadTimedout, "no PROXY header in time"),
        }
    }
}

/// The application of one listener: Pingora's HTTP proxy, plus what happens once per
/// connection (counting it, and the PROXY header on plain listeners).
pub struct ListenerApp {
    pub name: Arc<str>,
    pub proxy: Arc<HttpProxy<Gateway>>,
    /// Read a PROXY header first (plain listeners; TLS ones read it before the handshake).
    pub proxy_header: bool,
    /// The whole request head must arrive within this (`server.limits.header_timeout`).
    pub header_timeout: Duration,
    pub(crate) shared: Arc<Shared>,
}

/// Decrements the connection gauge however the connection ends.
struct Open(prometheus::IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Resolves when `limit` passes before a request head was read; never otherwise.
async fn head_watchdog(limit: Duration) {
    tokio::time::sleep(limit).await;
    if HEAD_SEEN.with(|seen| seen.get()) {
        std::future::pending::<()>().await;
    }
}

#[async_trait]
impl ServerApp for ListenerApp {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        let gauge = metrics::DOWNSTREAM_CONNECTIONS.with_label_values(&[&self.name]);
        gauge.inc();
        let _open = Open(gauge);
        if self.proxy_header {
            match tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_proxy_header(&mut stream)).await {
                Ok(Ok(source)) => adopt_source(&self.shared, &self.name, &mut *stream, source),
                Ok(Err(why)) => {
                    log::warn!("listener {}: closing connection: {why}", self.name);
                    return None;
                }
                Err(_) => {
                    log::warn!("listener {}: closing connection: no PROXY header within {PROXY_HEADER_TIMEOUT:?}", self.name);
                    return None;
                }
            }
        }
        // Keep-alive requests on this connection are served here, so that one call is one
        // connection for the gauge.
        let mut next = Some(stream);
        while let Some(s) = next {
            // HTTP/2 multiplexes requests on their own tasks and has its own timers; the
            // watchdog is for HTTP/1 heads (slowloris).
            let h2 = s.selected_alpn_proto() == Some(pingora_core::protocols::ALPN::H2);
            let serve = self.proxy.process_new(s, shutdown);
            if h2 {
                next = serve.await;
                continue;
            }
            let seen = HEAD_SEEN.scope(Cell::new(false), async {
                tokio::select! {
                    r = serve => Some(r),
                    _ = head_watchdog(self.header_timeout) => None,
                }
            });
            next = match seen.await {
                Some(r) => r,
                None => {
                    log::debug!("listener {}: request head not complete within {:?}, closing", self.name, self.header_timeout);
                    None
                }
            };
        }
        None
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await
    }
}
