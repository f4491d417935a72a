//! Certificates generated at test time (rcgen, ECDSA P-256), written as PEM files because
//! that is how the gateway's config and the backends take them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::{Backend, TestDir, TlsClientOpts};

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertFiles {
    /// The SHA-256 digest of the certificate's DER (the first in the file), lowercase hex.
    pub fn sha256_hex(&self) -> String {
        let pem = std::fs::read(&self.cert).expect("read cert file");
        let cert = openssl::x509::X509::from_pem(&pem).expect("a PEM certificate");
        let der = cert.to_der().expect("DER");
        openssl::sha::sha256(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A self-signed certificate authority that issues server and client certificates.
///
/// Its files live in its own [`TestDir`], so the CA must outlive every process that still
/// reads them (the gateway re-reads certificates on reload).
pub struct TestCa {
    name: String,
    dir: TestDir,
    cert: Certificate,
    key: KeyPair,
    cert_path: PathBuf,
    issued: AtomicUsize,
}

/// Validity of what a leaf is issued for.
enum Validity {
    /// rcgen's default: from 1975 to 4096, so a test never trips over the clock.
    Current,
    /// Over long ago, for tests of certificate verification.
    Expired,
}

impl TestCa {
    /// A new CA whose subject CN is `name`.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        let dir = TestDir::new();
        let cert_path = dir.write("ca.crt", cert.pem());
        dir.write("ca.key", key.serialize_pem());
        TestCa {
            name: name.to_string(),
            dir,
            cert,
            key,
            cert_path,
            issued: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate (PEM): the trust anchor for clients, or `client_ca` for mTLS.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The directory holding the CA's and its certificates' files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `dns_names` (wildcards such as `*.example.com` and IP
    /// addresses allowed); the first name is also the subject CN.
    pub fn issue(&self, dns_names: &[&str]) -> CertFiles {
        self.issue_leaf(
            dns_names,
            ExtendedKeyUsagePurpose::ServerAuth,
            Validity::Current,
        )
    }

    /// A server certificate for `dns_names` that expired long ago.
    pub fn issue_expired(&self, dns_names: &[&str]) -> CertFiles {
        self.issue_leaf(
            dns_names,
            ExtendedKeyUsagePurpose::ServerAuth,
            Validity::Expired,
        )
    }

    /// A client certificate (mTLS) with subject CN `cn` and no alternative names.
    pub fn issue_client(&self, cn: &str) -> CertFiles {
        self.issue_client_with_sans(cn, &[], &[])
    }

    /// A client certificate with subject CN `cn` and, as subject alternative names, the URI
    /// names `uris` (SPIFFE IDs, say) and then the DNS names `dns`, in that order.
    pub fn issue_client_with_sans(&self, cn: &str, uris: &[&str], dns: &[&str]) -> CertFiles {
        let key = KeyPair::generate().expect("generate client key");
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI(u.to_string().try_into().expect("an IA5 URI")))
            .chain(
                dns.iter()
                    .map(|d| SanType::DnsName(d.to_string().try_into().expect("an IA5 name"))),
            )
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign client cert");
        self.write_pair(&format!("client-{cn}"), &cert, &key)
    }

    fn issue_leaf(
        &self,
        dns_names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> CertFiles {
        assert!(
            !dns_names.is_empty(),
            "a certificate needs at least one name"
        );
        let key = KeyPair::generate().expect("generate leaf key");
        let names: Vec<String> = dns_names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("valid certificate names");
        params
            .distinguished_name
            .push(DnType::CommonName, dns_names[0]);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        if let Validity::Expired = validity {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign leaf cert");
        self.write_pair(dns_names[0], &cert, &key)
    }

    fn write_pair(&self, stem: &str, cert: &Certificate, key: &KeyPair) -> CertFiles {
        // The counter keeps two certificates for the same name apart.
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{}-{n}", file_stem(stem));
        write_cert_files(self.dir.path(), &stem, cert, key)
    }
}

/// A self-signed server certificate for `dns_names`, written into `dir`; its own cert file
/// is the only trust anchor that accepts it.
pub fn self_signed_cert(dir: &Path, dns_names: &[&str]) -> CertFiles {
    assert!(
        !dns_names.is_empty(),
        "a certificate needs at least one name"
    );
    let names: Vec<String> = dns_names.iter().map(|n| n.to_string()).collect();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(names).expect("self-signed cert");
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = format!("self-signed-{}-{n}", file_stem(dns_names[0]));
    write_cert_files(dir, &stem, &cert, &key_pair)
}

fn write_cert_files(dir: &Path, stem: &str, cert: &Certificate, key: &KeyPair) -> CertFiles {
    let files = CertFiles {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    std::fs::write(&files.cert, cert.pem()).expect("write cert file");
    std::fs::write(&files.key, key.serialize_pem()).expect("write key file");
    files
}

/// A file-name-safe version of a certificate name (`*.example.com` -> `_.example.com`).
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What a test of a TLS listener puts around the gateway: a backend `app`, a throw-away CA,
/// and a server certificate of it for one host.
pub struct TlsSite {
    pub backend: Backend,
    pub ca: TestCa,
    pub cert: CertFiles,
}

impl TlsSite {
    /// The CA is named `ca_name` (in certificates and error messages), the certificate is for
    /// `host`.
    pub fn new(ca_name: &str, host: &str) -> TlsSite {
        let ca = TestCa::new(ca_name);
        let cert = ca.issue(&[host]);
        TlsSite {
            backend: Backend::http("app"),
            ca,
            cert,
        }
    }

    /// Client options that trust the CA and offer `alpn`.
    pub fn client(&self, alpn: &[&str]) -> TlsClientOpts {
        TlsClientOpts::trusting(self.ca.cert_path()).alpn(alpn)
    }
}
