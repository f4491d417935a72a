//! A certificate as the manager hands it out: its chain and key in PEM, and what `/status`,
//! the expiry metric and the renewal schedule read from it.

use boring::asn1::{Asn1Time, Asn1TimeRef};
use boring::pkey::PKey;
use boring::x509::X509;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The chain, PEM, leaf first, as the CA sent it.
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The DNS names the leaf is valid for.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// A self-signed stand-in served until the first certificate is issued.
    pub placeholder: bool,
}

impl Certificate {
    /// Reads a chain and its key, checking that they belong together.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Self, String> {
        let chain = X509::stack_from_pem(chain_pem.as_bytes())
            .map_err(|e| format!("not a PEM certificate chain: {e}"))?;
        let leaf = chain.first().ok_or("the chain holds no certificate")?;
        let key = PKey::private_key_from_pem(key_pem.as_bytes())
            .map_err(|e| format!("not a PEM private key: {e}"))?;
        let matches = leaf
            .public_key()
            .map(|pk| pk.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err("the private key does not match the certificate".into());
        }
        let names = leaf
            .subject_alt_names()
            .map(|sans| {
                sans.iter()
                    .filter_map(|n| n.dnsname().map(|d| d.to_ascii_lowercase()))
                    .collect()
            })
            .unwrap_or_default();
        let serial = leaf
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
            .map_err(|e| format!("unreadable serial number: {e}"))?;
        Ok(Certificate {
            chain_pem: chain_pem.to_string(),
            key_pem: key_pem.to_string(),
            names,
            not_before: system_time(leaf.not_before())?,
            not_after: system_time(leaf.not_after())?,
            serial,
            placeholder: false,
        })
    }

    /// A self-signed certificate for `names`, valid from a day ago for 90 days, with a key
    /// of its own: served until the first certificate is issued (a client sees an untrusted
    /// certificate for the right names rather than no TLS at all).
    pub fn placeholder(names: &[String]) -> Result<Self, String> {
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .map_err(|e| format!("placeholder certificate: {e}"))?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CommonName,
            "Portico placeholder (no certificate issued yet)",
        );
        params.distinguished_name = dn;
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(86_400)).into();
        params.not_after = (now + Duration::from_secs(90 * 86_400)).into();
        let key = rcgen::KeyPair::generate().map_err(|e| format!("placeholder key: {e}"))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("placeholder certificate: {e}"))?;
        let mut c = Certificate::from_pem(&cert.pem(), &key.serialize_pem())?;
        c.placeholder = true;
        Ok(c)
    }

    /// When renewal starts: once less than `renew_before` is left, but never later than
    /// the middle of the lifetime, so that a short-lived certificate is renewed at its
    /// midpoint rather than as soon as it is issued, again and again.
    pub fn renews_at(&self, renew_before: Duration) -> SystemTime {
        let lifetime = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_after - renew_before.min(lifetime / 2)
    }

    /// Whether the certificate is valid for every one of `names`.
    pub fn covers(&self, names: &[String]) -> bool {
        names.iter().all(|n| self.names.contains(n))
    }

    /// The form kept in storage: the chain, then the key, in one PEM file (readable with
    /// `openssl x509 -in FILE`).
    pub fn to_stored(&self) -> Vec<u8> {
        let mut out = self.chain_pem.trim_end().to_string();
        out.push('\n');
        out.push_str(self.key_pem.trim_end());
        out.push('\n');
        out.into_bytes()
    }

    /// Reads what [`Certificate::to_stored`] wrote.
    pub fn from_stored(stored: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(stored).map_err(|_| "not PEM text".to_string())?;
        let key_start = text
            .find("-----BEGIN PRIVATE KEY-----")
            .or_else(|| text.find("-----BEGIN EC PRIVATE KEY-----"))
            .or_else(|| text.find("-----BEGIN RSA PRIVATE KEY-----"))
            .ok_or("no private key")?;
        Certificate::from_pem(&text[..key_start], &text[key_start..])
    }
}

pub(crate) fn system_time(t: &Asn1TimeRef) -> Result<SystemTime, String> {
    let epoch = Asn1Time::from_unix(0).map_err(|e| e.to_string())?;
    let diff = epoch
        .diff(t)
        .map_err(|e| format!("unreadable validity date: {e}"))?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    u64::try_from(secs)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| "a validity date before 1970".to_string())
}

/// Names the certificate in storage: the same directory and the same set of names (in any
/// order) give the same id, on every instance. The directory is part of it so that moving
/// from a staging directory to the real one orders anew instead of serving the staging
/// certificate.
pub fn certificate_id(directory: &str, names: &[String]) -> String {
    let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut text = directory.to_string();
    for n in sorted {
        text.push('\n');
        text.push_str(n);
    }
    short_hash(&text)
}

/// The account's storage id: one account per directory.
pub fn directory_id(directory: &str) -> String {
    short_hash(directory)
}

fn short_hash(text: &str) -> String {
    let digest = boring::sha::sha256(text.as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_placeholder_is_a_certificate_for_the_names() {
        let c = Certificate::placeholder(&names(&["a.example", "b.example"])).unwrap();
        assert!(c.placeholder);
        assert_eq!(c.names, names(&["a.example", "b.example"]));
        assert!(c.covers(&names(&["b.example"])));
        assert!(!c.covers(&names(&["c.example"])));
        let back = Certificate::from_stored(&c.to_stored()).unwrap();
        assert_eq!(back.serial, c.serial);
        assert_eq!(back.not_after, c.not_after);
        assert!(!back.placeholder);
    }

    #[test]
    fn renewal_starts_at_renew_before_or_the_midpoint() {
        let mut c = Certificate::placeholder(&names(&["a.example"])).unwrap();
        let day = Duration::from_secs(86_400);
        c.not_before = UNIX_EPOCH + 1000 * day;
        c.not_after = c.not_before + 90 * day;
        assert_eq!(c.renews_at(30 * day), c.not_after - 30 * day);
        // A 7-day certificate with renew_before 30d: at its midpoint, not at once.
        c.not_after = c.not_before + 7 * day;
        assert_eq!(c.renews_at(30 * day), c.not_before + 7 * day / 2);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = Certificate::placeholder(&names(&["a.example"])).unwrap();
        let b = Certificate::placeholder(&names(&["a.example"])).unwrap();
        let err = Certificate::from_pem(&a.chain_pem, &b.key_pem).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(Certificate::from_stored(b"junk").is_err());
    }

    #[test]
    fn ids_follow_the_directory_and_the_set_of_names() {
        let d = "https://acme.example/dir";
        let id = certificate_id(d, &names(&["a.example", "b.example"]));
        assert_eq!(id, certificate_id(d, &names(&["b.example", "a.example"])));
        assert_ne!(id, certificate_id(d, &names(&["a.example"])));
        assert_ne!(
            id,
            certificate_id(
                "https://staging.example/dir",
                &names(&["a.example", "b.example"])
            )
        );
        assert_eq!(id.len(), 24);
    }
}
