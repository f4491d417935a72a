//! The Pingora services a listener runs as: its endpoint, a gentler stop, and readiness
//! once its socket listens.

use crate::lifecycle::Lifecycle;
use crate::listener::ListenerApp;
use async_trait::async_trait;
use pingora_core::apps::ServerApp;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora_core::protocols::Stream;
use pingora_core::server::ListenFds;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::listening::Service;
use pingora_core::services::{ServiceReadyNotifier, ServiceWithDependents};
use std::sync::Arc;
use std::time::Duration;

/// How long a stopped listener still lets connections it already accepted deliver their
/// first request (a TLS handshake and a request head take milliseconds), before the idle
/// keep-alive connections are closed.
pub(super) const SETTLE: Duration = Duration::from_secs(1);

/// A listening endpoint without Pingora's L4 read buffer (64 KiB per connection, resident
/// for its whole life). BoringSSL has no read-ahead: it reads a record's header, then its body;
/// between requests the listener reads the next request's first bytes itself, in one call, and
/// puts them back in front of the stream (`listener/h1.rs`), so a request in one record costs
/// one read. Pingora reads a request head into its own buffer, and a PROXY header is read in
/// large reads with the rest put back (see `benches/README.md` for what it costs and saves).
pub(super) fn endpoint(addr: std::net::SocketAddr) -> ListenerConfig {
    ListenerConfig::tcp(addr.to_string())
        .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE))
}

/// A listener's application with a gentler stop. When a listener stops accepting, Pingora's
/// clean-up closes every connection still waiting for a request head — including ones
/// accepted a moment earlier whose TLS handshake or first request is still on its way, which
/// during an upgrade would be dropped connections. Waiting `settle` first lets those
/// requests in (they are answered with `Connection: close`).
pub(super) struct Settle {
    pub(super) app: Arc<ListenerApp>,
    pub(super) settle: Duration,
    pub(super) lifecycle: Arc<Lifecycle>,
}

#[async_trait]
impl ServerApp for Settle {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(self.settle).await;
        self.app.cleanup().await;
        self.lifecycle.listener_settled();
    }
}

/// A listener's service that is ready (for `/readyz`, which waits for it) only once its
/// socket listens — bound now, or received from the old process in an upgrade — and that
/// ends the process when the socket cannot be had (Pingora retries an address in use for a
/// while, then gives up with a panic that would otherwise leave the process running
/// without this listener).
pub(super) struct Bound {
    pub(super) name: String,
    pub(super) addr: String,
    pub(super) service: Option<Service<Settle>>,
}

#[async_trait]
impl ServiceWithDependents for Bound {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready: ServiceReadyNotifier,
    ) {
        let Some(mut service) = self.service.take() else {
            return;
        };
        let table = fds.clone();
        let mut run = tokio::spawn(async move {
            pingora_core::services::Service::start_service(
                &mut service,
                fds,
                shutdown,
                listeners_per_fd,
            )
            .await
        });
        let listening = async {
            while table
                .as_ref()
                .is_none_or(|t| t.lock().get(&self.addr).is_none())
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::select! {
            _ = listening => ready.notify_ready(),
            result = &mut run => {
                if let Err(e) = result {
                    log::error!("listener {}: cannot listen on {}: {e}; exiting", self.name, self.addr);
                    std::process::exit(1);
                }
                return;
            }
        }
        if let Err(e) = run.await {
            log::error!("listener {}: stopped: {e}; exiting", self.name);
            std::process::exit(1);
        }
    }

    fn name(&self) -> &str {
        self.service
            .as_ref()
            .map_or("listener", |s| ServiceWithDependents::name(s))
    }

    fn threads(&self) -> Option<usize> {
        self.service
            .as_ref()
            .and_then(ServiceWithDependents::threads)
    }

    /// Pingora closes inherited sockets that no service claims (a listener removed by an
    /// upgrade) by these.
    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.service
            .as_ref()
            .and_then(ServiceWithDependents::listen_addresses)
    }
}
