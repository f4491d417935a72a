//! `client_cert`: admits clients by their TLS client certificate, on a listener with
//! `tls.client_ca` (where the certificate has been verified against that CA).
//!
//! ```yaml
//! - client_cert:
//!     subjects: ["CN=billing,O=Example"]                          # RFC 4514 DNs
//!     sans: ["spiffe://example.org/billing", "billing.internal"]  # URI or DNS names
//!     fingerprints: []                                            # SHA-256, hex
//! ```
//!
//! A client that sent no certificate gets 401 (on a listener with `client_auth: optional`,
//! or one without `client_ca`); one whose certificate matches no entry gets 403. A
//! certificate is admitted when it matches any entry of any list; with every list empty, any
//! verified certificate is.
//!
//! - `subjects` compare as X.509 names do (see `gateway::client_cert::DistinguishedName`):
//!   attribute types in any case or as OIDs, values without regard to ASCII case or extra
//!   spaces, RDN order significant.
//! - `sans` entries match a URI name exactly or a DNS name without regard to case; a
//!   wildcard name in the certificate matches only the same wildcard written here.
//! - `fingerprints` are SHA-256 digests of the certificate's DER, in hex of any case, with or
//!   without `:` between bytes (`openssl x509 -fingerprint -sha256` prints them with).

use async_trait::async_trait;
use gateway::client_cert::{parse_fingerprint, DistinguishedName};
use gateway::plugin::{ClientCert, Hooks};
use gateway::{BuildContext, Flow, Plugin, PluginConfig, RequestState, Response, Session};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    #[serde(default)]
    pub subjects: Vec<String>,
    #[serde(default)]
    pub sans: Vec<String>,
    #[serde(default)]
    pub fingerprints: Vec<String>,
}

pub struct ClientCertAuth {
    subjects: Vec<DistinguishedName>,
    sans: Vec<String>,
    fingerprints: Vec<[u8; 32]>,
}

impl ClientCertAuth {
    fn admits(&self, cert: &ClientCert) -> bool {
        let any = self.subjects.is_empty() && self.sans.is_empty() && self.fingerprints.is_empty();
        any || self.subjects.iter().any(|s| s == cert.subject_dn())
            || self.sans.iter().any(|san| {
                cert.uris.iter().any(|u| u == san)
                    || cert.dns_names.iter().any(|d| d.eq_ignore_ascii_case(san))
            })
            || self.fingerprints.contains(&cert.sha256)
    }
}

#[async_trait]
impl Plugin for ClientCertAuth {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, _session: &mut Session, state: &mut RequestState) -> Flow {
        match &state.client_cert {
            None => Flow::Respond(Response::text(401, "a client certificate is required\n")),
            Some(cert) if self.admits(cert) => Flow::Continue,
            Some(_) => Flow::Respond(Response::text(403, "Forbidden\n")),
        }
    }
}

impl PluginConfig for ClientCertAuth {
    const NAME: &'static str = "client_cert";
    type Config = ClientCertConfig;

    fn build(config: ClientCertConfig, _cx: &BuildContext) -> Result<Self, String> {
        let subjects = config
            .subjects
            .iter()
            .enumerate()
            .map(|(i, s)| match s.parse::<DistinguishedName>() {
                Ok(dn) if dn == DistinguishedName::default() => Err(format!(
                    "subjects[{i}]: an empty subject (use sans or fingerprints)"
                )),
                Ok(dn) => Ok(dn),
                Err(e) => Err(format!("subjects[{i}]: {s:?} is not an RFC 4514 name: {e}")),
            })
            .collect::<Result<_, _>>()?;
        let sans = config
            .sans
            .iter()
            .enumerate()
            .map(|(i, s)| match s.trim() {
                "" => Err(format!("sans[{i}]: an empty name")),
                s => Ok(s.to_string()),
            })
            .collect::<Result<_, _>>()?;
        let fingerprints = config
            .fingerprints
            .iter()
            .enumerate()
            .map(|(i, f)| parse_fingerprint(f).map_err(|e| format!("fingerprints[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(ClientCertAuth {
            subjects,
            sans,
            fingerprints,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(yaml: &str) -> Result<ClientCertAuth, String> {
        let config: ClientCertConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        ClientCertAuth::build(config, &BuildContext::new(".".into(), None))
    }

    /// A certificate for `CN=billing,O=Example` with a URI and a DNS name, and its DER.
    fn cert() -> (ClientCert, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing");
        params.subject_alt_names = vec![
            rcgen::SanType::URI("spiffe://example.org/billing".try_into().unwrap()),
            rcgen::SanType::DnsName("Billing.Internal".try_into().unwrap()),
        ];
        let der = params.self_signed(&key).unwrap().der().to_vec();
        (ClientCert::from_der(&der).unwrap(), der)
    }

    #[test]
    fn matches_by_subject_san_or_fingerprint() {
        let (c, der) = cert();
        for yes in [
            "{}",
            "{ subjects: [\"cn=Billing, o=example\"] }",
            "{ subjects: [\"CN=other\", \"CN=billing,O=Example\"] }",
            "{ sans: [\"spiffe://example.org/billing\"] }",
            "{ sans: [\"billing.internal\"] }",
            "{ subjects: [\"CN=other\"], sans: [\"billing.internal\"] }",
        ] {
            assert!(plugin(yes).unwrap().admits(&c), "{yes}");
        }
        for no in [
            "{ subjects: [\"CN=billing\"] }",
            "{ subjects: [\"O=Example,CN=billing\"] }",
            "{ sans: [\"spiffe://example.org/Billing\", \"other.internal\"] }",
            "{ fingerprints: [\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"] }",
        ] {
            assert!(!plugin(no).unwrap().admits(&c), "{no}");
        }
        let hex: Vec<String> = boring::sha::sha256(&der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        for f in [hex.concat(), hex.join(":"), hex.concat().to_lowercase()] {
            let p = plugin(&format!("{{ fingerprints: [\"{f}\"] }}")).unwrap();
            assert!(p.admits(&c), "{f}");
        }
    }

    #[test]
    fn bad_entries_are_refused_with_their_position() {
        for (yaml, at) in [
            ("{ subjects: [\"CN=a\", \"nonsense\"] }", "subjects[1]"),
            ("{ subjects: [\"\"] }", "subjects[0]"),
            ("{ sans: [\" \"] }", "sans[0]"),
            ("{ fingerprints: [\"abcd\"] }", "fingerprints[0]"),
        ] {
            let err = plugin(yaml).err().unwrap_or_else(|| panic!("{yaml}"));
            assert!(err.starts_with(at), "{yaml}: {err}");
        }
        assert!(plugin("{ subject: [] }").is_err(), "unknown key");
    }
}
