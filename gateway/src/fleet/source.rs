//! Where the config comes from: a file path, or `etcd://HOST:PORT[,HOST:PORT]/KEY` (`etcds://`
//! for TLS). The key is the URL's path exactly as written (`/portico/config`), nothing decoded;
//! several endpoints are members of one etcd cluster, tried in turn (docs/fleet.md).

use super::FleetError;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// The `-c` argument: a config file, or a key in etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    Etcd(EtcdSource),
}

impl ConfigSource {
    /// Reads a `-c` argument. Anything that starts like a URL (`scheme://`) must be a valid
    /// `etcd://` or `etcds://` URL; everything else is a file path.
    pub fn parse(arg: &str) -> Result<ConfigSource, FleetError> {
        match scheme_of(arg) {
            None => Ok(ConfigSource::File(PathBuf::from(arg))),
            Some(_) => EtcdSource::parse(arg).map(ConfigSource::Etcd),
        }
    }
}

/// A key in an etcd cluster: the endpoints to try and the key, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSource {
    tls: bool,
    endpoints: Vec<EtcdEndpoint>,
    key: String,
}

/// One member of the cluster: a host name or IP address, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdEndpoint {
    /// As written, without the brackets of an IPv6 address.
    host: String,
    port: u16,
}

impl EtcdSource {
    /// Reads `etcd://HOST:PORT[,HOST:PORT...]/KEY` or the same with `etcds://`.
    pub fn parse(url: &str) -> Result<EtcdSource, FleetError> {
        let bad = |reason: String| FleetError::Url {
            url: url.to_string(),
            reason,
        };
        let tls = match scheme_of(url) {
            Some(s) if s.eq_ignore_ascii_case("etcd") => false,
            Some(s) if s.eq_ignore_ascii_case("etcds") => true,
            Some(s) => {
                return Err(bad(format!(
                    "unknown scheme {s}:// (a config is a file path, etcd://… or etcds://… for TLS)"
                )))
            }
            None => {
                return Err(bad(
                    "not a URL: it must start with etcd:// or etcds://".into()
                ))
            }
        };
        let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
        if let Some(c) = rest.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(format!("contains {c:?}")));
        }
        let Some(slash) = rest.find('/') else {
            return Err(bad(
                "no key: add it as the path, e.g. /portico/config".into()
            ));
        };
        let (authority, key) = rest.split_at(slash);
        if key == "/" {
            return Err(bad("the key is empty: add it after the /".into()));
        }
        if let Some(c) = key.chars().find(|c| matches!(c, '?' | '#')) {
            return Err(bad(format!(
                "{c:?} in the key: queries and fragments are not part of an etcd URL"
            )));
        }
        if authority.contains('@') {
            return Err(bad(
                "credentials do not go in the URL (it shows in process lists): set PORTICO_ETCD_USER and PORTICO_ETCD_PASSWORD".into(),
            ));
        }
        if authority.is_empty() {
            return Err(bad("no endpoint before the key".into()));
        }
        let mut endpoints: Vec<EtcdEndpoint> = Vec::new();
        for part in authority.split(',') {
            let endpoint = EtcdEndpoint::parse(part).map_err(&bad)?;
            if endpoints.contains(&endpoint) {
                return Err(bad(format!("endpoint {endpoint} is listed twice")));
            }
            endpoints.push(endpoint);
        }
        Ok(EtcdSource {
            tls,
            endpoints,
            key: key.to_string(),
        })
    }

    /// True for `etcds://`: every endpoint is spoken to over TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// The members to try, in the order given.
    pub fn endpoints(&self) -> &[EtcdEndpoint] {
        &self.endpoints
    }

    /// The key, exactly as written in the URL (with its leading `/`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// True when `other` names the same document: the same key in the same cluster, taken to
    /// be the same when at least one endpoint is common (so adding or removing a member on the
    /// command line keeps the cache usable, while another cluster's cache is not taken).
    pub fn same_document(&self, other: &EtcdSource) -> bool {
        self.key == other.key && self.endpoints.iter().any(|e| other.endpoints.contains(e))
    }
}

impl fmt::Display for EtcdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tls { "etcds://" } else { "etcd://" })?;
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{endpoint}")?;
        }
        f.write_str(&self.key)
    }
}

impl EtcdEndpoint {
    fn parse(text: &str) -> Result<EtcdEndpoint, String> {
        if text.is_empty() {
            return Err("an empty endpoint (two commas, or a comma at an end)".into());
        }
        let (host, port) = if let Some(inner) = text.strip_prefix('[') {
            let Some((v6, after)) = inner.split_once(']') else {
                return Err(format!("endpoint {text:?}: no ] after the IPv6 address"));
            };
            if v6.parse::<Ipv6Addr>().is_err() {
                return Err(format!("endpoint {text:?}: {v6:?} is not an IPv6 address"));
            }
            let Some(port) = after.strip_prefix(':') else {
                return Err(format!("endpoint {text:?} has no port (write [{v6}]:2379)"));
            };
            (v6, port)
        } else {
            let Some((host, port)) = text.rsplit_once(':') else {
                return Err(format!("endpoint {text:?} has no port (write {text}:2379)"));
            };
            if host.contains(':') {
                return Err(format!(
                    "endpoint {text:?}: an IPv6 address goes in brackets, e.g. [::1]:2379"
                ));
            }
            if !valid_host(host) {
                return Err(format!(
                    "endpoint {text:?}: {host:?} is not a host name or IPv4 address"
                ));
            }
            (host, port)
        };
        match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(EtcdEndpoint {
                host: host.to_string(),
                port: p,
            }),
            _ => Err(format!(
                "endpoint {text:?}: the port {port:?} is not a number from 1 to 65535"
            )),
        }
    }

    /// The host name or address, without brackets (what TLS verifies the certificate against).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for EtcdEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The scheme of `scheme://…`, if the text starts like a URL.
fn scheme_of(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut bytes = scheme.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (first_ok && rest_ok).then_some(scheme)
}

fn valid_host(host: &str) -> bool {
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_urls_that_parse() {
        // (argument, tls, endpoints as displayed, key)
        let cases: &[(&str, bool, &[&str], &str)] = &[
            (
                "etcd://10.0.0.5:2379/portico/config",
                false,
                &["10.0.0.5:2379"],
                "/portico/config",
            ),
            (
                "etcd://10.0.0.5:2379,10.0.0.6:2379/portico/config",
                false,
                &["10.0.0.5:2379", "10.0.0.6:2379"],
                "/portico/config",
            ),
            (
                "etcds://etcd-1.internal:2379,[::1]:2379/p",
                true,
                &["etcd-1.internal:2379", "[::1]:2379"],
                "/p",
            ),
            ("ETCD://localhost:1/k", false, &["localhost:1"], "/k"),
            // The path as written: no decoding, inner slashes kept.
            (
                "etcd://127.0.0.1:2379//a//b%20c/",
                false,
                &["127.0.0.1:2379"],
                "//a//b%20c/",
            ),
            (
                "etcd://[2001:db8::1]:65535/x",
                false,
                &["[2001:db8::1]:65535"],
                "/x",
            ),
        ];
        for (arg, tls, endpoints, key) in cases {
            let source = match ConfigSource::parse(arg) {
                Ok(ConfigSource::Etcd(s)) => s,
                other => panic!("{arg}: {other:?}"),
            };
            assert_eq!(source.tls(), *tls, "{arg}");
            let shown: Vec<String> = source.endpoints().iter().map(|e| e.to_string()).collect();
            assert_eq!(shown, *endpoints, "{arg}");
            assert_eq!(source.key(), *key, "{arg}");
            // Displaying and parsing again gives the same source.
            assert_eq!(EtcdSource::parse(&source.to_string()).unwrap(), source);
        }
        let v6 = EtcdSource::parse("etcd://[::1]:2379/k").unwrap();
        assert_eq!(v6.endpoints()[0].host(), "::1");
        assert_eq!(v6.endpoints()[0].port(), 2379);
    }

    #[test]
    fn file_paths_stay_files() {
        for arg in [
            "conf/portico.yaml",
            "/etc/portico/portico.yaml",
            "./etcd:2379.yaml",
            "etcd.yaml",
        ] {
            assert_eq!(
                ConfigSource::parse(arg).unwrap(),
                ConfigSource::File(PathBuf::from(arg))
            );
        }
    }

    #[test]
    fn malformed_urls_say_why() {
        // (argument, a part of the message)
        let cases = [
            ("http://127.0.0.1:2379/k", "unknown scheme http://"),
            ("etcd://127.0.0.1:2379", "no key"),
            ("etcd://127.0.0.1:2379/", "the key is empty"),
            ("etcd:///k", "no endpoint"),
            ("etcd://127.0.0.1/k", "has no port (write 127.0.0.1:2379)"),
            ("etcd://127.0.0.1:/k", "not a number"),
            ("etcd://127.0.0.1:0/k", "not a number"),
            ("etcd://127.0.0.1:65536/k", "not a number"),
            ("etcd://127.0.0.1:+80/k", "not a number"),
            ("etcd://::1:2379/k", "goes in brackets"),
            ("etcd://[::1/k", "no ]"),
            ("etcd://[::g]:1/k", "not an IPv6 address"),
            ("etcd://[::1]/k", "has no port"),
            ("etcd://a:1,,b:1/k", "empty endpoint"),
            ("etcd://a:1,/k", "empty endpoint"),
            ("etcd://a:1,a:1/k", "listed twice"),
            ("etcd://bad host:1/k", "contains ' '"),
            ("etcd://-bad:1/k", "not a host name"),
            ("etcd://user:pw@h:1/k", "PORTICO_ETCD_USER"),
            ("etcd://h:1/k?x=1", "queries and fragments"),
            ("etcd://h:1/k#top", "queries and fragments"),
        ];
        for (arg, want) in cases {
            let err = ConfigSource::parse(arg).expect_err(arg).to_string();
            assert!(err.contains(want), "{arg}: {err}");
            assert!(err.contains(arg), "the message names the URL: {err}");
        }
    }

    #[test]
    fn same_document_needs_the_key_and_a_common_member() {
        let s = |u: &str| EtcdSource::parse(u).unwrap();
        let a = s("etcd://a:1,b:1/k");
        assert!(a.same_document(&s("etcds://b:1,c:1/k")));
        assert!(!a.same_document(&s("etcd://a:1,b:1/other")));
        assert!(!a.same_document(&s("etcd://c:1/k")));
    }
}
