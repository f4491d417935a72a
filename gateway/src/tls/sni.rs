//! Choosing a certificate per handshake by SNI, from a store a reload replaces, and what the
//! handshake leaves for the connection's requests.

use super::certs::CertStore;
use super::client_cert::ClientCert;
use super::connection::TlsConnection;
use super::session_cache::SessionCache;
use crate::net::connection::FirstRequest;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::ext;
use pingora_core::tls::ssl::{NameType, SslVerifyMode};
use std::any::Any;
use std::sync::Arc;

/// Sessions kept for resumption per listener (OpenSSL's default cache size), each valid for
/// OpenSSL's default session lifetime.
const SESSION_CACHE_SIZE: usize = 20480;

/// The SNI callback of one listener; reload swaps the store it reads.
pub struct CertResolver {
    pub listener: Arc<str>,
    pub(super) store: ArcSwap<CertStore>,
    /// The listener's TLS sessions, for resumption.
    pub(super) sessions: Arc<SessionCache>,
}

impl CertResolver {
    pub fn new(listener: &str, store: Arc<CertStore>) -> Self {
        CertResolver {
            listener: listener.into(),
            store: ArcSwap::new(store),
            sessions: Arc::new(SessionCache::new(SESSION_CACHE_SIZE)),
        }
    }

    /// Serves `store` from the next handshake on. A resumed TLS session keeps the client
    /// certificate checked at its first handshake, so a client must not resume its way
    /// around a new CA (or a newly required certificate): sessions are bound to the checks
    /// they were made under (see [`CertResolver::session_context`]), and when those change
    /// the cache is emptied as well, its sessions being of no more use.
    pub fn replace(&self, store: Arc<CertStore>) {
        let fingerprint = |s: &CertStore| s.client_auth.as_ref().map(|a| a.fingerprint);
        let changed = fingerprint(&self.store.load()) != fingerprint(&store);
        self.store.store(store);
        if changed {
            self.sessions.clear();
            log::info!(
                "listener {}: client certificate checks changed; TLS sessions made before are not resumed",
                self.listener
            );
        }
    }

    /// The TLS session id context of a handshake starting now: the listener's name and its
    /// current client certificate checks. OpenSSL resumes only a session made under the
    /// same context, so one made before the checks changed never resumes after, not even
    /// one whose handshake was under way while the cache was emptied.
    pub(super) fn session_context(&self) -> [u8; 32] {
        let mut h = openssl::sha::Sha256::new();
        h.update(self.listener.as_bytes());
        if let Some(auth) = &self.store.load().client_auth {
            h.update(&auth.fingerprint);
        }
        h.finish()
    }
}

/// The handle Pingora's listener holds on a [`CertResolver`].
pub(super) struct SniCallback(pub(super) Arc<CertResolver>);

#[async_trait]
impl TlsAccept for SniCallback {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let store = self.0.store.load();
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let Some(ck) = store.pick(sni.as_deref()) else {
            return;
        };
        let result = ext::ssl_use_certificate(ssl, &ck.chain[0])
            .and_then(|_| ext::ssl_use_private_key(ssl, &ck.key))
            .and_then(|_| {
                ck.chain[1..]
                    .iter()
                    .try_for_each(|c| ext::ssl_add_chain_cert(ssl, c))
            });
        if let Err(e) = result {
            log::error!(
                "listener {}: cannot set certificate for {sni:?}: {e}",
                self.0.listener
            );
        }
        if let Some(auth) = &store.client_auth {
            if let Err(e) = auth.apply(ssl) {
                // Without the checks the client would get in unchecked: no handshake.
                log::error!(
                    "listener {}: cannot set up client certificate checks: {e}",
                    self.0.listener
                );
                ssl.set_verify_callback(
                    SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
                    |_, _| false,
                );
            }
        }
    }

    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        // What the connection's requests read: its first-request flag, and its client
        // certificate, read once here rather than per request.
        Some(Arc::new(TlsConnection {
            first_request: FirstRequest::default(),
            client_cert: ClientCert::from_handshake(ssl).map(Arc::new),
        }))
    }
}
