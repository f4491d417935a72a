//! `listeners[].tls.acme`: which certificate to obtain, from which directory, and where the
//! instances that share it keep their state (docs/acme.md). Obtaining it is `acme`'s job; the
//! config only reads and checks these keys.

use serde::{Deserialize, Deserializer};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One certificate obtained and renewed automatically.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The ACME directory URL (Let's Encrypt's, its staging one, or a private CA's).
    pub directory: String,
    /// The account's contact address; optional (the CA then has no one to warn).
    #[serde(default)]
    pub email: Option<String>,
    /// The names of the one certificate, the first as its subject.
    pub domains: Vec<String>,
    #[serde(default)]
    pub challenge: Challenge,
    /// A PEM file of CA certificates to trust the directory's HTTPS with (a private CA), on
    /// top of the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Renew once less than this is left, capped at half the certificate's lifetime.
    #[serde(default = "default_renew_before")]
    pub renew_before: RenewBefore,
    pub storage: StorageConfig,
}

/// How the CA checks that this gateway answers for a name.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum Challenge {
    /// A file at `/.well-known/acme-challenge/TOKEN` on port 80 (a plain listener).
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A certificate made for the challenge, served on port 443 to ALPN `acme-tls/1`.
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// `storage`: exactly one of `redis` or `dir`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub redis: Option<RedisStorageConfig>,
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedisStorageConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`).
    pub url: String,
}

/// `renew_before`: a duration in the config's format (`250ms`, `2s`, `1m`, `1h`) or in days
/// (`30d`), since certificates are counted in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewBefore(pub Duration);

const DAY: Duration = Duration::from_secs(86_400);

fn default_renew_before() -> RenewBefore {
    RenewBefore(30 * DAY)
}

impl<'de> Deserialize<'de> for RenewBefore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Seconds(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(text) => parse_days_or_duration(&text)
                .map(RenewBefore)
                .map_err(serde::de::Error::custom),
            Raw::Seconds(n) => Ok(RenewBefore(Duration::from_secs(n))),
        }
    }
}

/// `30d`, or anything the config's own durations accept.
fn parse_days_or_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    match t.strip_suffix('d') {
        Some(days) => days
            .parse::<f64>()
            .ok()
            .filter(|d| d.is_finite() && *d >= 0.0 && *d < 100_000.0)
            .map(|d| Duration::from_secs_f64(d * DAY.as_secs_f64()))
            .ok_or_else(|| {
                format!("invalid duration {text:?}: expected a number of days such as 30d")
            }),
        None => super::parse_duration(t).map_err(|e| format!("{e}, or d (days)")),
    }
}

impl AcmeConfig {
    /// The config with relative `ca` and `storage.dir` made absolute against `base` (the
    /// config file's folder), as the other file paths of the config are.
    pub fn resolved(mut self, base: &Path) -> Self {
        let absolute = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        self.ca = self.ca.map(absolute);
        self.storage.dir = self.storage.dir.map(absolute);
        self
    }

    /// The domains as the certificate and the CA see them: lowercase, without a final dot.
    pub fn names(&self) -> Vec<String> {
        self.domains
            .iter()
            .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
            .collect()
    }

    /// Every problem with the values, as (key path below `acme`, message): `domains[1]`,
    /// `storage`, `ca` ... Reads the `ca` file (not the network).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |path: &str, message: String| errors.push((path.to_string(), message));
        match self.directory.parse::<http::Uri>() {
            Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {}
            Ok(_) => err(
                "directory",
                format!(
                    "{:?} is not an https:// URL (ACME directories are served over HTTPS)",
                    self.directory
                ),
            ),
            Err(e) => err(
                "directory",
                format!("{:?} is not a URL: {e}", self.directory),
            ),
        }
        if let Some(email) = &self.email {
            let ok = email.split_once('@').is_some_and(|(user, host)| {
                !user.is_empty()
                    && host.contains('.')
                    && !email.contains(|c: char| c.is_whitespace() || c.is_control())
            });
            if !ok {
                err("email", format!("{email:?} is not an email address"));
            }
        }
        if self.domains.is_empty() {
            err(
                "domains",
                "lists no domain: the certificate needs at least one name".into(),
            );
        }
        let names = self.names();
        for (i, (raw, name)) in self.domains.iter().zip(&names).enumerate() {
            if let Err(why) = check_domain(name) {
                err(&format!("domains[{i}]"), format!("{raw:?} {why}"));
            } else if names[..i].contains(name) {
                err(&format!("domains[{i}]"), format!("{raw:?} is listed twice"));
            }
        }
        if let Some(ca) = &self.ca {
            match std::fs::read(ca) {
                Err(e) => err("ca", format!("cannot read {}: {e}", ca.display())),
                Ok(pem) => match boring::x509::X509::stack_from_pem(&pem) {
                    Ok(certs) if !certs.is_empty() => {}
                    _ => err("ca", format!("{} holds no PEM certificate", ca.display())),
                },
            }
        }
        if self.renew_before.0.is_zero() {
            err(
                "renew_before",
                "must be more than 0 (the certificate would expire before it is renewed)".into(),
            );
        }
        match (&self.storage.redis, &self.storage.dir) {
            (Some(_), Some(_)) => err("storage", "set either redis or dir, not both".into()),
            (None, None) => err(
                "storage",
                "set redis: { url: ... } (instances sharing a Redis) or dir: PATH".into(),
            ),
            (Some(redis), None) => {
                if redis.url.starts_with("rediss://") {
                    err(
                        "storage.redis.url",
                        "rediss:// (TLS to Redis) is not supported: reach Redis over a private network with redis://".into(),
                    );
                } else if let Err(e) = redis::Client::open(redis.url.as_str()) {
                    err(
                        "storage.redis.url",
                        format!("{:?} is not a Redis URL: {e}", redis.url),
                    );
                }
            }
            (None, Some(dir)) => {
                if dir.as_os_str().is_empty() {
                    err(
                        "storage.dir",
                        "is empty: give the folder for the account and certificates".into(),
                    );
                }
            }
        }
        errors
    }
}

/// A name the CA can issue for with HTTP-01 or TLS-ALPN-01: letters, digits and hyphens in
/// dot-separated labels. Wildcards need DNS-01, IP addresses another identifier type.
fn check_domain(name: &str) -> Result<(), &'static str> {
    if name.starts_with("*.") {
        return Err("is a wildcard: wildcard certificates need the DNS-01 challenge, which Portico does not answer");
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err("is an IP address: list DNS names");
    }
    if name.is_empty() || name.len() > 253 {
        return Err("is not a DNS name (1 to 253 characters)");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !name.split('.').all(label_ok) {
        return Err(
            "is not a DNS name (labels of letters, digits and inner hyphens, separated by dots)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AcmeConfig, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    const GOOD: &str = "directory: https://acme.example/dir\n\
                        domains: [a.example.com, B.example.com.]\n\
                        storage: { dir: /var/lib/portico/acme }\n";

    #[test]
    fn defaults_and_names() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.challenge, Challenge::Http01);
        assert_eq!(c.renew_before.0, 30 * DAY);
        assert_eq!(c.names(), ["a.example.com", "b.example.com"]);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
    }

    #[test]
    fn renew_before_reads_days_and_the_config_durations() {
        let with = |v: &str| parse(&format!("{GOOD}renew_before: {v}\n")).map(|c| c.renew_before.0);
        assert_eq!(with("30d").unwrap(), 30 * DAY);
        assert_eq!(with("1.5d").unwrap(), DAY + DAY / 2);
        assert_eq!(with("12h").unwrap(), DAY / 2);
        assert_eq!(with("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(with("60").unwrap(), Duration::from_secs(60));
        assert!(with("30 days").unwrap_err().contains("30 days"));
        assert!(with("xd").is_err());
    }

    #[test]
    fn unknown_keys_and_challenges_are_refused_by_serde() {
        assert!(parse(&format!("{GOOD}challenge: dns-01\n"))
            .unwrap_err()
            .contains("dns-01"));
        assert!(parse(&format!("{GOOD}challenge: tls-alpn-01\n")).is_ok());
        assert!(parse(&format!("{GOOD}renew: 3d\n"))
            .unwrap_err()
            .contains("renew"));
        let bad_storage = GOOD.replace("{ dir: /var/lib/portico/acme }", "{ disk: /x }");
        assert!(parse(&bad_storage).unwrap_err().contains("disk"));
    }

    fn errors(yaml: &str) -> Vec<(String, String)> {
        parse(yaml).unwrap().validate()
    }

    fn paths(errors: &[(String, String)]) -> Vec<&str> {
        errors.iter().map(|(p, _)| p.as_str()).collect()
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = errors(
            "directory: http://acme.example/dir\nemail: nobody\n\
             domains: ['*.example.com', 127.0.0.1, 'bad_name.example', ok.example, OK.example]\n\
             ca: /nonexistent/ca.pem\nrenew_before: 0s\n\
             storage: { dir: /x, redis: { url: 'redis://127.0.0.1' } }\n",
        );
        assert_eq!(
            paths(&e),
            [
                "directory",
                "email",
                "domains[0]",
                "domains[1]",
                "domains[2]",
                "domains[4]",
                "ca",
                "renew_before",
                "storage"
            ]
        );
        assert!(e[2].1.contains("DNS-01"), "{e:?}");
        assert!(e[5].1.contains("twice"), "{e:?}");
        assert!(e[6].1.contains("/nonexistent/ca.pem"), "{e:?}");

        let e = errors("directory: https://a.example/dir\ndomains: []\nstorage: {}\n");
        assert_eq!(paths(&e), ["domains", "storage"]);
        let e = errors("directory: https://a.example/dir\ndomains: [a.example]\nstorage: { redis: { url: 'http://x' } }\n");
        assert_eq!(paths(&e), ["storage.redis.url"]);
        let e = errors("directory: https://a.example/dir\ndomains: [a.example]\nstorage: { redis: { url: 'rediss://r.example' } }\n");
        assert_eq!(paths(&e), ["storage.redis.url"]);
        assert!(e[0].1.contains("not supported"), "{e:?}");
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("portico-acme-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let good = dir.join("good.pem");
        let ca = rcgen::generate_simple_self_signed(vec!["ca.example".into()]).unwrap();
        std::fs::write(&good, ca.cert.pem()).unwrap();
        let with_ca = |name: &str| errors(&format!("{GOOD}ca: {name}\n"));
        assert_eq!(
            paths(&with_ca("not.pem")),
            ["ca"],
            "relative, not resolved yet"
        );
        let resolved = |name: &str| {
            parse(&format!("{GOOD}ca: {name}\n"))
                .unwrap()
                .resolved(&dir)
                .validate()
        };
        assert_eq!(paths(&resolved("not.pem")), ["ca"]);
        assert!(resolved("good.pem").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
