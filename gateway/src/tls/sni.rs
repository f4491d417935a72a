//! Choosing a certificate per handshake by SNI, from a store a reload replaces, and what the
//! handshake leaves for the connection's requests.

use super::certs::{CertStore, CertifiedKey};
use super::challenge::HandshakeChallenge;
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
use std::sync::{Arc, Mutex};

/// Sessions kept for resumption by session id per listener (the TLS library's default cache
/// size), each valid for the library's default session lifetime.
const SESSION_CACHE_SIZE: usize = 20480;

/// The SNI callback of one listener; reload swaps the store it reads.
pub struct CertResolver {
    pub listener: Arc<str>,
    pub(super) store: ArcSwap<CertStore>,
    /// The listener's TLS sessions, for resumption.
    pub(super) sessions: Arc<SessionCache>,
    /// What `store` is made of: the configured certificates and those obtained over ACME
    /// (docs/acme.md), kept apart so that a reload's store keeps the ACME ones. Locked only
    /// when either changes, never by a handshake.
    parts: Mutex<StoreParts>,
}

struct StoreParts {
    configured: Arc<CertStore>,
    /// Served before the configured certificates (an issued ACME certificate wins for its
    /// names and is the default).
    first: Vec<CertifiedKey>,
    /// Served after them (a placeholder: the default only when nothing is configured).
    last: Vec<CertifiedKey>,
}

impl StoreParts {
    fn merged(&self) -> Arc<CertStore> {
        if self.first.is_empty() && self.last.is_empty() {
            return self.configured.clone();
        }
        let certs = self
            .first
            .iter()
            .chain(self.configured.certs())
            .chain(&self.last)
            .cloned()
            .collect();
        Arc::new(CertStore::new(certs).with_client_auth(self.configured.client_auth.clone()))
    }
}

impl CertResolver {
    pub fn new(listener: &str, store: Arc<CertStore>) -> Self {
        CertResolver {
            listener: listener.into(),
            store: ArcSwap::new(store.clone()),
            sessions: Arc::new(SessionCache::new(SESSION_CACHE_SIZE)),
            parts: Mutex::new(StoreParts {
                configured: store,
                first: Vec::new(),
                last: Vec::new(),
            }),
        }
    }

    /// The configured certificates (`tls.certificates`), without the ACME ones.
    pub fn configured(&self) -> Arc<CertStore> {
        self.parts.lock().unwrap().configured.clone()
    }

    /// Serves certificates obtained over ACME around the configured ones from the next
    /// handshake on: `first` before them, `last` after (acme/fleet.rs).
    pub fn set_acme(&self, first: Vec<CertifiedKey>, last: Vec<CertifiedKey>) {
        let mut parts = self.parts.lock().unwrap();
        parts.first = first;
        parts.last = last;
        self.swap(parts.merged());
    }

    /// Replaces only the certificates served after the configured ones: a new ACME
    /// placeholder leaves an earlier issued certificate in front until its own is issued.
    pub fn set_acme_last(&self, last: Vec<CertifiedKey>) {
        let mut parts = self.parts.lock().unwrap();
        parts.last = last;
        self.swap(parts.merged());
    }

    /// Serves `store` from the next handshake on. A resumed TLS session keeps the client
    /// certificate checked at its first handshake, so a client must not resume its way
    /// around a new CA (or a newly required certificate): sessions are bound to the checks
    /// they were made under (see [`CertResolver::session_context`]), and when those change
    /// the cache is emptied as well, its sessions being of no more use.
    pub fn replace(&self, store: Arc<CertStore>) {
        let mut parts = self.parts.lock().unwrap();
        parts.configured = store;
        self.swap(parts.merged());
    }

    fn swap(&self, store: Arc<CertStore>) {
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
    /// current client certificate checks. BoringSSL resumes only a session (or ticket) made under the
    /// same context, so one made before the checks changed never resumes after, not even
    /// one whose handshake was under way while the cache was emptied.
    pub(super) fn session_context(&self) -> [u8; 32] {
        let mut h = boring::sha::Sha256::new();
        h.update(self.listener.as_bytes());
        if let Some(auth) = &self.store.load().client_auth {
            h.update(&auth.fingerprint);
        }
        h.finish()
    }
}

/// The handle Pingora's listener holds on a [`CertResolver`], and on what answers the CA's
/// challenge handshakes, if anything does.
pub(super) struct SniCallback {
    pub(super) resolver: Arc<CertResolver>,
    pub(super) challenge: Option<Arc<dyn HandshakeChallenge>>,
}

#[async_trait]
impl TlsAccept for SniCallback {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        if let Some(challenge) = &self.challenge {
            if challenge.answer(ssl).await {
                return;
            }
        }
        let store = self.resolver.store.load();
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
                self.resolver.listener
            );
        }
        if let Some(auth) = &store.client_auth {
            if let Err(e) = auth.apply(ssl) {
                // Without the checks the client would get in unchecked: no handshake.
                log::error!(
                    "listener {}: cannot set up client certificate checks: {e}",
                    self.resolver.listener
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
