//! How an instance proves itself to etcd and checks etcd's certificate. These come from the
//! environment, not from config keys: the config is what etcd holds, so what is needed to read
//! it cannot be in it; and each instance has its own credentials (docs/fleet.md, "TLS and auth").

use super::FleetError;
use std::fmt;
use std::path::PathBuf;

/// etcd user name (etcd's own auth, `etcdctl user add`); needs [`ENV_PASSWORD`].
pub const ENV_USER: &str = "PORTICO_ETCD_USER";
/// That user's password.
pub const ENV_PASSWORD: &str = "PORTICO_ETCD_PASSWORD";
/// PEM file of the CA(s) that signed etcd's server certificates (`etcds://` only); without it,
/// the system's trusted CAs.
pub const ENV_CA: &str = "PORTICO_ETCD_CA";
/// PEM certificate (chain) for client-certificate auth (`--client-cert-auth` on etcd).
pub const ENV_CERT: &str = "PORTICO_ETCD_CERT";
/// PEM private key of [`ENV_CERT`].
pub const ENV_KEY: &str = "PORTICO_ETCD_KEY";

/// Credentials and TLS files for etcd. Empty by default: no auth, and for `etcds://` the
/// system's CAs and no client certificate.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// User name and password for etcd's auth.
    pub user: Option<(String, String)>,
    /// CA file that etcd's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate and key files.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl Access {
    /// Reads `PORTICO_ETCD_USER`, `_PASSWORD`, `_CA`, `_CERT` and `_KEY`. An empty variable
    /// counts as unset; half of a pair is an error.
    pub fn from_env() -> Result<Access, FleetError> {
        Access::from_lookup(|name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Access, FleetError> {
        let var = |name| get(name).filter(|v| !v.is_empty());
        let user = match (var(ENV_USER), var(ENV_PASSWORD)) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => return Err(half(ENV_USER, ENV_PASSWORD)),
            (None, Some(_)) => return Err(half(ENV_PASSWORD, ENV_USER)),
        };
        let client_cert = match (var(ENV_CERT), var(ENV_KEY)) {
            (Some(c), Some(k)) => Some((c.into(), k.into())),
            (None, None) => None,
            (Some(_), None) => return Err(half(ENV_CERT, ENV_KEY)),
            (None, Some(_)) => return Err(half(ENV_KEY, ENV_CERT)),
        };
        Ok(Access {
            user,
            ca: var(ENV_CA).map(PathBuf::from),
            client_cert,
        })
    }

    /// True when a TLS setting is present (which a plain `etcd://` URL refuses).
    pub(crate) fn has_tls_files(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some()
    }
}

fn half(set: &str, missing: &str) -> FleetError {
    FleetError::Access(format!(
        "{set} is set but {missing} is not; set both or neither"
    ))
}

// By hand: the password must never reach a log line.
impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn access(vars: &[(&str, &str)]) -> Result<Access, FleetError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Access::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn pairs_come_whole_or_not_at_all() {
        // (variables, the error's mention, or "" when accepted)
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], ""),
            (&[(ENV_USER, "u"), (ENV_PASSWORD, "p")], ""),
            (
                &[(ENV_USER, "u")],
                "PORTICO_ETCD_USER is set but PORTICO_ETCD_PASSWORD is not",
            ),
            (
                &[(ENV_PASSWORD, "p")],
                "PORTICO_ETCD_PASSWORD is set but PORTICO_ETCD_USER",
            ),
            (
                &[(ENV_USER, "u"), (ENV_PASSWORD, "")],
                "PORTICO_ETCD_PASSWORD is not",
            ),
            (
                &[(ENV_CERT, "c.pem")],
                "PORTICO_ETCD_CERT is set but PORTICO_ETCD_KEY",
            ),
            (
                &[(ENV_KEY, "k.pem")],
                "PORTICO_ETCD_KEY is set but PORTICO_ETCD_CERT",
            ),
            (
                &[(ENV_CERT, "c.pem"), (ENV_KEY, "k.pem"), (ENV_CA, "ca.pem")],
                "",
            ),
        ];
        for (vars, want) in cases {
            match access(vars) {
                Ok(_) => assert!(want.is_empty(), "{vars:?} accepted, wanted {want}"),
                Err(e) => {
                    assert!(!want.is_empty(), "{vars:?}: {e}");
                    assert!(e.to_string().contains(want), "{vars:?}: {e}");
                }
            }
        }
        let full = access(&[(ENV_CERT, "c.pem"), (ENV_KEY, "k.pem"), (ENV_CA, "ca.pem")]).unwrap();
        assert_eq!(full.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(
            full.client_cert,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let a = access(&[(ENV_USER, "root"), (ENV_PASSWORD, "s3cret")]).unwrap();
        let shown = format!("{a:?}");
        assert!(
            shown.contains("root") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
