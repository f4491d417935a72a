//! Certificates: loading a chain and its key, OCSP staples, the development certificate, and
//! a listener's certificates indexed by the names they serve.

use super::client_auth::ClientAuth;
use const_oid::db::rfc5912::{ID_SHA_1, ID_SHA_256};
use const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC;
use der::{Decode, Encode};
use pingora_core::tls::nid::Nid;
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::x509::X509;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::Certificate;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus, SingleResponse};

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
    pub(super) client_auth: Option<Arc<ClientAuth>>,
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
    let Some(path) = staple else { return Ok(ck) };
    let der = std::fs::read(path)
        .map_err(|e| format!("cannot read OCSP staple {}: {e}", path.display()))?;
    let basic = basic_ocsp_response(&der)
        .map_err(|e| format!("{} is not a DER OCSP response: {e}", path.display()))?
        .ok_or_else(|| format!("{} is not a successful OCSP response", path.display()))?;
    // The response names the certificate by its issuer: checkable when the chain has it.
    if let (Some(leaf), Some(issuer)) = (ck.chain.first(), ck.chain.get(1)) {
        let Some(single) = ocsp_status_of(&basic, leaf, issuer)? else {
            return Err(format!(
                "{} is an OCSP response about another certificate",
                path.display()
            ));
        };
        if let CertStatus::Revoked(_) = single.cert_status {
            return Err(format!(
                "{} says the certificate is revoked",
                path.display()
            ));
        }
        if let Err(e) = ocsp_current(single, OCSP_LEEWAY) {
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

/// How far the clocks of the responder and of this machine may disagree (OpenSSL's
/// `openssl ocsp -validity_period` default is the same five minutes).
const OCSP_LEEWAY: Duration = Duration::from_secs(300);

/// The basic response inside an OCSP response (RFC 6960 4.2.1), or `None` when the responder
/// answered with an error status instead.
fn basic_ocsp_response(der: &[u8]) -> Result<Option<BasicOcspResponse>, der::Error> {
    let response = OcspResponse::from_der(der)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Ok(None);
    }
    match response.response_bytes {
        Some(bytes) if bytes.response_type == ID_PKIX_OCSP_BASIC => {
            BasicOcspResponse::from_der(bytes.response.as_bytes()).map(Some)
        }
        _ => Ok(None),
    }
}

/// The answer in `basic` about `leaf`, issued by `issuer`: the one whose certificate id has
/// the leaf's serial number and the issuer's name and key, hashed by SHA-1 (what `openssl
/// ocsp` asks with) or SHA-256.
fn ocsp_status_of<'a>(
    basic: &'a BasicOcspResponse,
    leaf: &X509,
    issuer: &X509,
) -> Result<Option<&'a SingleResponse>, String> {
    let parse = |c: &X509| -> Result<Certificate, String> {
        let der = c.to_der().map_err(|e| e.to_string())?;
        Certificate::from_der(&der).map_err(|e| e.to_string())
    };
    let (leaf, issuer) = (parse(leaf)?, parse(issuer)?);
    let name = issuer
        .tbs_certificate
        .subject
        .to_der()
        .map_err(|e| e.to_string())?;
    let key = issuer
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    let serial = &leaf.tbs_certificate.serial_number;
    Ok(basic.tbs_response_data.responses.iter().find(|single| {
        let id = &single.cert_id;
        let hash: fn(&[u8]) -> Vec<u8> = if id.hash_algorithm.oid == ID_SHA_1 {
            |b| boring::sha::sha1(b).to_vec()
        } else if id.hash_algorithm.oid == ID_SHA_256 {
            |b| boring::sha::sha256(b).to_vec()
        } else {
            return false;
        };
        id.serial_number == *serial
            && id.issuer_name_hash.as_bytes() == hash(&name)
            && id.issuer_key_hash.as_bytes() == hash(key)
    }))
}

/// Whether an answer is current: issued before now and not past its next update, each
/// within `leeway`.
fn ocsp_current(single: &SingleResponse, leeway: Duration) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let this_update = single.this_update.0.to_unix_duration();
    if this_update > now + leeway {
        return Err("its thisUpdate is in the future".into());
    }
    if let Some(next) = &single.next_update {
        let next = next.0.to_unix_duration();
        if next < this_update {
            return Err("its nextUpdate is before its thisUpdate".into());
        }
        if next + leeway < now {
            return Err("its nextUpdate has passed".into());
        }
    }
    Ok(())
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
