//! TLS termination: certificates chosen by SNI from a store that a reload can replace, and
//! the listener's TLS settings (versions, ALPN, client certificates).

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{TlsAccept, ALPN};
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::ext;
use pingora_core::tls::nid::Nid;
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::ssl::{NameType, SslVerifyMode, SslVersion};
use pingora_core::tls::x509::X509;
use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One certificate chain and its key, with the names it serves.
pub struct CertifiedKey {
    pub names: Vec<String>,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

/// The certificates of one listener, indexed by name.
pub struct CertStore {
    certs: Vec<CertifiedKey>,
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `.example.com`.
    wildcard: HashMap<String, usize>,
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
        CertStore { certs, exact, wildcard }
    }

    /// An exact name first, then a wildcard covering one label (as TLS wildcards do), then
    /// the default.
    pub fn pick(&self, sni: Option<&str>) -> Option<&CertifiedKey> {
        let i = sni
            .map(|s| s.trim_end_matches('.').to_ascii_lowercase())
            .and_then(|name| {
                self.exact.get(&name).copied().or_else(|| {
                    let dot = name.find('.')?;
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
    let cert_pem = std::fs::read(cert).map_err(|e| format!("cannot read certificate {}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("cannot read key {}: {e}", key.display()))?;
    let chain = X509::stack_from_pem(&cert_pem).map_err(|e| format!("{} is not a PEM certificate: {e}", cert.display()))?;
    let leaf = chain.first().ok_or_else(|| format!("{} holds no certificate", cert.display()))?;
    let key_parsed = PKey::private_key_from_pem(&key_pem).map_err(|e| format!("{} is not a PEM private key: {e}", key.display()))?;
    let matches = leaf.public_key().map(|pk| pk.public_eq(&key_parsed)).unwrap_or(false);
    if !matches {
        return Err(format!("key {} does not match certificate {}", key.display(), cert.display()));
    }
    let mut names: Vec<String> = leaf
        .subject_alt_names()
        .map(|sans| sans.iter().filter_map(|n| n.dnsname().map(|d| d.to_ascii_lowercase())).collect())
        .unwrap_or_default();
    if names.is_empty() {
        names = leaf
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .map(|e| String::from_utf8_lossy(e.data().as_slice()).to_ascii_lowercase())
            .collect();
    }
    Ok(CertifiedKey { names, chain, key: key_parsed })
}

/// Writes a self-signed development certificate for `localhost` when none exists yet, so the
/// default config serves HTTPS on a fresh clone.
pub fn generate_dev_cert(cert: &Path, key: &Path) -> Result<(), String> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| format!("cannot generate a development certificate: {e}"))?;
    for p in [cert, key] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    std::fs::write(cert, ck.cert.pem()).map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    std::fs::write(key, ck.key_pair.serialize_pem()).map_err(|e| format!("cannot write {}: {e}", key.display()))?;
    log::warn!("generated a self-signed development certificate at {} (not for production)", cert.display());
    Ok(())
}

/// The SNI callback of one listener; reload swaps the store it reads.
pub struct CertResolver {
    pub listener: Arc<str>,
    pub store: ArcSwap<CertStore>,
}

/// The handle Pingora's listener holds on a [`CertResolver`].
struct SniCallback(Arc<CertResolver>);

#[async_trait]
impl TlsAccept for SniCallback {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let store = self.0.store.load();
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        let Some(ck) = store.pick(sni.as_deref()) else { return };
        let result = ext::ssl_use_certificate(ssl, &ck.chain[0])
            .and_then(|_| ext::ssl_use_private_key(ssl, &ck.key))
            .and_then(|_| ck.chain[1..].iter().try_for_each(|c| ext::ssl_add_chain_cert(ssl, c)));
        if let Err(e) = result {
            log::error!("listener {}: cannot set certificate for {sni:?}: {e}", self.0.listener);
        }
    }

    async fn handshake_complete_callback(&self, _ssl: &TlsRef) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }
}

/// Builds the TLS settings of a listener.
pub fn listener_settings(
    resolver: Arc<CertResolver>,
    min_version: &str,
    alpn: &[String],
    client_ca: Option<&Path>,
) -> Result<TlsSettings, String> {
    let mut settings = TlsSettings::with_callbacks(Box::new(SniCallback(resolver))).map_err(|e| e.to_string())?;
    // TLS 1.0 and 1.1 are never offered, whatever the config says.
    let min = if min_version == "1.3" { SslVersion::TLS1_3 } else { SslVersion::TLS1_2 };
    settings.set_min_proto_version(Some(min)).map_err(|e| e.to_string())?;
    let h2 = alpn.iter().any(|a| a == "h2");
    let h1 = alpn.iter().any(|a| a == "http/1.1");
    match (h2, h1) {
        (true, true) => settings.set_alpn(ALPN::H2H1),
        (true, false) => settings.set_alpn(ALPN::H2),
        _ => settings.set_alpn(ALPN::H1),
    }
    if let Some(ca) = client_ca {
        settings.set_ca_file(ca).map_err(|e| format!("cannot load client CA {}: {e}", ca.display()))?;
        let names = X509::stack_from_pem(&std::fs::read(ca).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let mut list = openssl::stack::Stack::new().map_err(|e| e.to_string())?;
        for c in names {
            list.push(c.subject_name().to_owned().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        }
        settings.set_client_ca_list(list);
        settings.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    Ok(settings)
}
