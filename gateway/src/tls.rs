//! TLS termination: certificates chosen by SNI from a store that a reload can replace, and
//! the listener's TLS settings (versions, ALPN, client certificates).
//!
//! The settings start from Mozilla's "intermediate" profile (OpenSSL through Pingora) and are
//! then narrowed: TLS 1.2 and 1.3 only; on TLS 1.2 only ECDHE key exchange with AES-GCM or
//! ChaCha20-Poly1305 (forward secrecy, AEAD); the curves Mozilla lists (plus the hybrid
//! post-quantum X25519MLKEM768 for clients that offer it); the server's cipher order; no
//! renegotiation; and resumption through a server-side session cache instead of session
//! tickets, whose key OpenSSL would keep for the process's whole life (a stolen ticket key
//! decrypts every session it ever protected). OCSP responses are stapled when configured.

use crate::client_auth::ClientAuth;
use crate::client_cert::ClientCert;
use crate::listener::TlsConnection;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ssl::ClientHelloResponse;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{TlsAccept, ALPN};
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::ext;
use pingora_core::tls::nid::Nid;
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::ssl::SslSession;
use pingora_core::tls::ssl::{
    select_next_proto, AlpnError, NameType, SslOptions, SslSessionCacheMode, SslVerifyMode,
    SslVersion,
};
use pingora_core::tls::x509::X509;
use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One certificate chain and its key, with the names it serves.
#[derive(Clone)]
pub struct CertifiedKey {
    pub names: Vec<String>,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// The DER OCSP response stapled to handshakes that ask for one.
    pub ocsp: Option<Vec<u8>>,
}

/// The certificates of one listener, indexed by name, and how it checks clients'
/// certificates: what a reload replaces in one step.
pub struct CertStore {
    certs: Vec<CertifiedKey>,
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `.example.com`.
    wildcard: HashMap<String, usize>,
    /// `tls.client_ca` and `tls.client_auth`; `None`: no client certificate is asked for.
    client_auth: Option<Arc<ClientAuth>>,
}

impl CertStore {
    /// The first certificate is the default, for clients without SNI or an unknown name.
    pub fn new(certs: Vec<CertifiedKey>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in certs.iter().enumerate() {
            for n in &c.names {
                match n.strip_prefix('*') {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_insert(i),
                    None => exact.entry(n.clone()).or_insert(i),
                };
            }
        }
        CertStore {
            certs,
            exact,
            wildcard,
            client_auth: None,
        }
    }

    pub fn with_client_auth(mut self, client_auth: Option<Arc<ClientAuth>>) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// Every certificate, the default first.
    pub fn certs(&self) -> &[CertifiedKey] {
        &self.certs
    }

    /// An exact name first, then a wildcard covering one label (as TLS wildcards do), then
    /// the default.
    pub fn pick(&self, sni: Option<&str>) -> Option<&CertifiedKey> {
        let i = sni
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| {
                self.exact.get(&name).copied().or_else(|| {
                    let dot = name.find('.').filter(|&d| d > 0)?;
                    self.wildcard.get(&name[dot..]).copied()
                })
            })
            .unwrap_or(0);
        self.certs.get(i)
    }
}

/// Reads a PEM chain and key, checks that they belong together, and lists the names the
/// certificate is valid for.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?;
    let key_pem =
        std::fs::read(key).map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    let chain = X509::stack_from_pem(&cert_pem)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", cert.display()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| format!("{} holds no certificate", cert.display()))?;
    let key_parsed = PKey::private_key_from_pem(&key_pem)
        .map_err(|e| format!("{} is not a PEM private key: {e}", key.display()))?;
    let matches = leaf
        .public_key()
        .map(|pk| pk.public_eq(&key_parsed))
        .unwrap_or(false);
    if !matches {
        return Err(format!(
            "key {} does not match certificate {}",
            key.display(),
            cert.display()
        ));
    }
    let mut names: Vec<String> = leaf
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(|d| d.to_ascii_lowercase()))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names = leaf
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .map(|e| String::from_utf8_lossy(e.data().as_slice()).to_ascii_lowercase())
            .collect();
    }
    Ok(CertifiedKey {
        names,
        chain,
        key: key_parsed,
        ocsp: None,
    })
}

/// Adds the OCSP response in `staple` (DER, as `openssl ocsp -respout` writes it) to `ck`.
/// A file that is no successful OCSP response, or one about another certificate or saying
/// it is revoked, is an error; an outdated one is left out with a warning (a stale staple
/// makes strict clients fail, none makes them ask the responder themselves).
pub fn with_ocsp_staple(
    mut ck: CertifiedKey,
    staple: Option<&Path>,
) -> Result<CertifiedKey, String> {
    use openssl::ocsp::{OcspCertId, OcspCertStatus, OcspResponse, OcspResponseStatus};
    let Some(path) = staple else { return Ok(ck) };
    let der = std::fs::read(path)
        .map_err(|e| format!("cannot read OCSP staple {}: {e}", path.display()))?;
    let resp = OcspResponse::from_der(&der)
        .map_err(|e| format!("{} is not a DER OCSP response: {e}", path.display()))?;
    if resp.status() != OcspResponseStatus::SUCCESSFUL {
        return Err(format!(
            "{} is not a successful OCSP response",
            path.display()
        ));
    }
    let basic = resp
        .basic()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // The response names the certificate by its issuer: checkable when the chain has it.
    if let (Some(leaf), Some(issuer)) = (ck.chain.first(), ck.chain.get(1)) {
        let id = OcspCertId::from_cert(openssl::hash::MessageDigest::sha1(), leaf, issuer)
            .map_err(|e| e.to_string())?;
        let Some(status) = basic.find_status(&id) else {
            return Err(format!(
                "{} is an OCSP response about another certificate",
                path.display()
            ));
        };
        if status.status == OcspCertStatus::REVOKED {
            return Err(format!(
                "{} says the certificate is revoked",
                path.display()
            ));
        }
        if let Err(e) = status.check_validity(300, None) {
            log::warn!(
                "OCSP staple {} is outdated, not stapling it: {e}",
                path.display()
            );
            return Ok(ck);
        }
    }
    ck.ocsp = Some(der);
    Ok(ck)
}

/// Writes a self-signed development certificate for `localhost` when none exists yet, so the
/// default config serves HTTPS on a fresh clone.
pub fn generate_dev_cert(cert: &Path, key: &Path) -> Result<(), String> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a development certificate: {e}"))?;
    for p in [cert, key] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    std::fs::write(cert, ck.cert.pem())
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    std::fs::write(key, ck.key_pair.serialize_pem())
        .map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    log::warn!(
        "generated a self-signed development certificate at {} (not for production)",
        cert.display()
    );
    Ok(())
}

/// The SNI callback of one listener; reload swaps the store it reads.
pub struct CertResolver {
    pub listener: Arc<str>,
    store: ArcSwap<CertStore>,
    /// The listener's TLS sessions, for resumption.
    sessions: Arc<SessionCache>,
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
            .chain(&self.configured.certs)
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
    /// current client certificate checks. OpenSSL resumes only a session made under the
    /// same context, so one made before the checks changed never resumes after, not even
    /// one whose handshake was under way while the cache was emptied.
    fn session_context(&self) -> [u8; 32] {
        let mut h = openssl::sha::Sha256::new();
        h.update(self.listener.as_bytes());
        if let Some(auth) = &self.store.load().client_auth {
            h.update(&auth.fingerprint);
        }
        h.finish()
    }
}

extern "C" {
    /// Not in `openssl-sys` (only the context's); the OpenSSL that Pingora links provides it.
    fn SSL_set_session_id_context(
        ssl: *mut openssl_sys::SSL,
        sid_ctx: *const u8,
        len: std::ffi::c_uint,
    ) -> std::ffi::c_int;
}

/// The handle Pingora's listener holds on a [`CertResolver`].
struct SniCallback(Arc<CertResolver>);

#[async_trait]
impl TlsAccept for SniCallback {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        if crate::acme::answer_tls_alpn01(ssl).await {
            return;
        }
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
        // What the connection's requests read (see `listener.rs`): its first-request flag,
        // and its client certificate, read once here rather than per request.
        let client_cert = ClientCert::from_handshake(ssl).map(Arc::new);
        Some(Arc::new(TlsConnection::new(client_cert)))
    }
}

/// TLS 1.2 suites: ECDHE only (forward secrecy), AEAD only, in the server's order of
/// preference. TLS 1.3 suites are all forward-secret AEADs (Mozilla's list, left as it is).
pub const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// Key exchange groups: Mozilla's (X25519, P-256, P-384) after the hybrid post-quantum one.
/// OpenSSL's default list would add X448, P-521 and finite-field groups.
pub const GROUPS: &str = "X25519MLKEM768:X25519:P-256:P-384";

/// The same without the hybrid group, for an OpenSSL older than 3.5 (a build against the
/// system's library with `OPENSSL_NO_VENDOR=1`), which does not know it.
const CLASSIC_GROUPS: &str = "X25519:P-256:P-384";

/// Sessions kept for resumption per listener (OpenSSL's default cache size), each valid for
/// OpenSSL's default session lifetime.
const SESSION_CACHE_SIZE: usize = 20480;

/// TLS sessions kept for resumption, shared by the listener's threads.
///
/// OpenSSL's built-in cache forgets a session whenever its connection ends without the
/// server's close_notify, which is how most HTTP connections end (the client closes an idle
/// keep-alive connection), and marks the session object itself as not resumable: resumption
/// would hardly ever work. This one keeps each session serialized (as nginx's shared cache
/// does), hands out a fresh copy per lookup, and keeps it until it expires (OpenSSL checks
/// the lifetime on every lookup) or `capacity` newer ones pushed it out. The lock is taken once or twice per full handshake and once per resumption, never
/// per request. A TLS 1.3 ticket may be presented more than once; without 0-RTT (off) that
/// is harmless, and resumption still runs a fresh (EC)DHE exchange.
pub struct SessionCache {
    capacity: usize,
    inner: Mutex<Sessions>,
}

/// Serialized sessions by id, and their ids oldest first.
#[derive(Default)]
struct Sessions {
    by_id: HashMap<Vec<u8>, Vec<u8>>,
    order: VecDeque<Vec<u8>>,
}

impl SessionCache {
    pub fn new(capacity: usize) -> Self {
        SessionCache {
            capacity,
            inner: Mutex::new(Sessions::default()),
        }
    }

    pub fn insert(&self, session: SslSession) {
        let id = session.id().to_vec();
        let Ok(der) = session.to_der() else { return };
        let mut s = self.inner.lock().unwrap();
        while s.by_id.len() >= self.capacity {
            let Some(oldest) = s.order.pop_front() else {
                break;
            };
            s.by_id.remove(&oldest);
        }
        if s.by_id.insert(id.clone(), der).is_none() {
            s.order.push_back(id);
        }
    }

    pub fn get(&self, id: &[u8]) -> Option<SslSession> {
        let der = self.inner.lock().unwrap().by_id.get(id).cloned()?;
        SslSession::from_der(&der).ok()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every session.
    pub fn clear(&self) {
        let mut s = self.inner.lock().unwrap();
        s.by_id.clear();
        s.order.clear();
    }
}

/// Builds the TLS settings of a listener.
///
/// Client certificates are asked for per connection, from the resolver's store (see
/// [`crate::client_auth::ClientAuth`]), not here.
pub fn listener_settings(
    resolver: Arc<CertResolver>,
    min_version: &str,
    alpn: &[String],
) -> Result<TlsSettings, String> {
    let mut settings = TlsSettings::with_callbacks(Box::new(SniCallback(resolver.clone())))
        .map_err(|e| e.to_string())?;
    // TLS 1.0 and 1.1 are never offered, whatever the config says.
    let min = if min_version == "1.3" {
        SslVersion::TLS1_3
    } else {
        SslVersion::TLS1_2
    };
    settings
        .set_min_proto_version(Some(min))
        .map_err(|e| e.to_string())?;
    settings
        .set_cipher_list(TLS12_CIPHERS)
        .map_err(|e| e.to_string())?;
    if settings.set_groups_list(GROUPS).is_err() {
        settings
            .set_groups_list(CLASSIC_GROUPS)
            .map_err(|e| e.to_string())?;
    }
    // PRIORITIZE_CHACHA: a client that lists ChaCha20 first (no AES hardware) still gets it.
    settings.set_options(
        SslOptions::CIPHER_SERVER_PREFERENCE
            | SslOptions::PRIORITIZE_CHACHA
            | SslOptions::NO_RENEGOTIATION
            | SslOptions::NO_TICKET
            | SslOptions::NO_COMPRESSION,
    );
    // OpenSSL reads whatever has arrived into its own record buffer in one call, so the
    // listener needs no read buffer of its own under TLS (see `server.rs`); without it, each
    // record would take two reads (header, then body).
    settings.set_read_ahead(true);
    // Resumption from a server-side cache: TLS 1.2 session ids, TLS 1.3 stateful tickets.
    settings.set_session_cache_mode(SslSessionCacheMode::SERVER | SslSessionCacheMode::NO_INTERNAL);
    // One TLS 1.3 ticket per handshake instead of OpenSSL's two: this cache lets a ticket be
    // presented again (see `SessionCache`), so a second one only doubles the work of every
    // full handshake (serializing and storing the session) and the cache's memory.
    settings.set_num_tickets(1).map_err(|e| e.to_string())?;
    let cache = resolver.sessions.clone();
    let store = cache.clone();
    settings.set_new_session_callback(move |_, session| store.insert(session));
    // SAFETY: the sessions handed back were all made by this same context (the callback
    // above), which is what OpenSSL requires of a session returned here.
    unsafe { settings.set_get_session_callback(move |_, id| cache.get(id)) };
    // Needed for resumption when client certificates are verified. Set again per handshake,
    // before the session is looked up, from the current checks (`session_context`).
    settings
        .set_session_id_context(&resolver.session_context())
        .map_err(|e| e.to_string())?;
    let contexts = resolver.clone();
    settings.set_client_hello_callback(move |ssl, _alert| {
        let context = contexts.session_context();
        // SAFETY: `ssl` is the live connection's, borrowed for the call; OpenSSL copies the
        // 32 bytes (its maximum context length).
        let set = unsafe {
            SSL_set_session_id_context(ssl.as_ptr(), context.as_ptr(), context.len() as _)
        };
        if set == 1 {
            Ok(ClientHelloResponse::SUCCESS)
        } else {
            Err(ErrorStack::get())
        }
    });
    let staples = resolver.clone();
    settings
        .set_status_callback(move |ssl| {
            let store = staples.store.load();
            let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
            let Some(ck) = store.pick(sni.as_deref()) else {
                return Ok(false);
            };
            // A reload between choosing the certificate and this call could pick another one.
            match (&ck.ocsp, ssl.certificate()) {
                (Some(der), Some(served)) if *served == *ck.chain[0] => {
                    ssl.set_ocsp_status(der)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .map_err(|e| e.to_string())?;
    let h2 = alpn.iter().any(|a| a == "h2");
    let h1 = alpn.iter().any(|a| a == "http/1.1");
    let alpn = match (h2, h1) {
        (true, true) => ALPN::H2H1,
        (true, false) => ALPN::H2,
        _ => ALPN::H1,
    };
    settings.set_alpn(alpn.clone());
    // Pingora's choice, unless the CA asks for a TLS-ALPN-01 challenge (answered by the
    // certificate callback, which OpenSSL runs after this one).
    settings.set_alpn_select_callback(move |_, offered| {
        if crate::acme::tls_alpn01_wanted(offered) {
            return Ok(crate::acme::ACME_TLS_ALPN);
        }
        select_alpn(&alpn, offered)
    });
    Ok(settings)
}

/// Pingora's ALPN choice for `alpn` (its callbacks are private): the server's preference
/// among what the client offers; nothing in common is no ALPN, or a fatal alert when only h2
/// is served.
fn select_alpn<'a>(alpn: &ALPN, offered: &'a [u8]) -> Result<&'a [u8], AlpnError> {
    let (ours, none): (&[u8], _) = match alpn {
        ALPN::H2 => (b"\x02h2", AlpnError::ALERT_FATAL),
        ALPN::H1 => (b"\x08http/1.1", AlpnError::NOACK),
        _ => (b"\x02h2\x08http/1.1", AlpnError::NOACK),
    };
    if offered.is_empty() {
        return Err(none);
    }
    select_next_proto(ours, offered).ok_or(none)
}
