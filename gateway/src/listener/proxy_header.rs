//! The PROXY protocol header as a listener reads it: on TLS listeners before the handshake,
//! on plain ones before the first request; its source is adopted only from a trusted proxy.

use super::admission::LogGate;
use crate::net::proxy_header::{proxy_header_len, read_proxy_header};
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::listeners::PreTlsProcess;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, UniqueID};
use pingora_core::{Error, ErrorType, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// A client that sends nothing must not hold a connection open forever.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that sends PROXY headers from outside `trusted_proxies` may open connections as
/// fast as it likes: one warning per listener per minute says so.
const UNTRUSTED_PROXY_WARN_EVERY: u64 = 60;

/// Replaces the connection's peer address with the PROXY header's source, but only when the
/// TCP peer is a trusted proxy; an untrusted peer's header is read and ignored.
fn adopt_source<T: GetSocketDigest + UniqueID + ?Sized>(
    snapshot: &ArcSwap<Snapshot>,
    listener: &str,
    untrusted_warning: &LogGate,
    stream: &mut T,
    source: Option<SocketAddr>,
) {
    let Some(digest) = stream.get_socket_digest() else {
        return;
    };
    let peer = digest.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
    let trusted = peer.is_some_and(|ip| snapshot.load().is_trusted(ip));
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
            if let Some(held) = untrusted_warning.pass(UNTRUSTED_PROXY_WARN_EVERY) {
                let held = match held {
                    0 => String::new(),
                    n => format!("; {n} more since the last such line"),
                };
                log::warn!("listener {listener}: PROXY header from untrusted peer {peer:?} ignored (add it to server.trusted_proxies; logged at most once a minute{held})");
            }
        }
        _ => {}
    }
}

/// [`read_proxy_header`] for a listener's raw connection, which has no read buffer (see
/// `endpoint` in runtime/services.rs): the header is read in a few large reads instead of a system
/// call per byte, and whatever came after it (the TLS handshake, or the first request) is
/// put back.
async fn read_proxy_header_unbuffered(
    stream: &mut L4Stream,
) -> std::result::Result<Option<SocketAddr>, String> {
    let mut buf = [0u8; 256];
    let mut have = 0;
    let total = loop {
        if let Some(total) = proxy_header_len(&buf[..have])? {
            break total;
        }
        // (A v1 header is known complete or too long within 107 bytes, a v2 header's length
        // within 16, so the buffer never fills up here.)
        let n = stream
            .read(&mut buf[have..])
            .await
            .map_err(|e| format!("reading PROXY header: {e}"))?;
        if n == 0 {
            return Err("reading PROXY header: the connection closed".into());
        }
        have += n;
    };
    let mut header = buf[..have.min(total)].to_vec();
    if total > have {
        // A v2 header longer than the buffer (many TLVs): the rest, and not a byte more.
        header.resize(total, 0);
        stream
            .read_exact(&mut header[have..])
            .await
            .map_err(|e| format!("reading PROXY header: {e}"))?;
    } else {
        stream.rewind(&buf[total..have]);
    }
    read_proxy_header(&mut &header[..]).await
}

/// The pre-TLS step of a TLS listener with `proxy_protocol: true`.
pub struct ProxyHeaderBeforeTls {
    pub listener: Arc<str>,
    pub(crate) snapshot: Arc<ArcSwap<Snapshot>>,
    pub(crate) untrusted_warning: LogGate,
}

/// Reads the PROXY header from a new connection and adopts its source; the error (logged)
/// means the connection is closed.
pub(super) async fn take_proxy_header(
    snapshot: &ArcSwap<Snapshot>,
    listener: &str,
    untrusted_warning: &LogGate,
    stream: &mut L4Stream,
) -> Result<()> {
    match tokio::time::timeout(PROXY_HEADER_TIMEOUT, read_proxy_header_unbuffered(stream)).await {
        Ok(Ok(source)) => {
            adopt_source(snapshot, listener, untrusted_warning, stream, source);
            Ok(())
        }
        Ok(Err(why)) => {
            log::warn!(
                "listener {listener}: closing connection from {:?}: {why}",
                stream
                    .get_socket_digest()
                    .and_then(|d| d.peer_addr().cloned())
            );
            Error::e_explain(ErrorType::InvalidHTTPHeader, why)
        }
        Err(_) => {
            log::warn!(
                "listener {listener}: closing connection from {:?}: no PROXY header within {PROXY_HEADER_TIMEOUT:?}",
                stream.get_socket_digest().and_then(|d| d.peer_addr().cloned())
            );
            Error::e_explain(ErrorType::ReadTimedout, "no PROXY header in time")
        }
    }
}

#[async_trait]
impl PreTlsProcess for ProxyHeaderBeforeTls {
    async fn process(&self, stream: &mut L4Stream) -> Result<()> {
        take_proxy_header(
            &self.snapshot,
            &self.listener,
            &self.untrusted_warning,
            stream,
        )
        .await
    }
}
