//! Config values with a meaning beyond their text, read into their types once, when the file
//! is read: nothing is parsed again per request or per handshake.
//!
//! A value that does not read is kept as a complaint (with a placeholder value that is never
//! used) rather than failing the file at once: `snapshot::compile` reports it together with
//! every other error of the file, each at its key path and line, and a config with a
//! complaint never compiles.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;

/// A value read into `T`, or what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    value: T,
    invalid: Option<Invalid>,
}

/// Why a value did not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Where inside the value, appended to its key path (`[1]` for a list's second entry).
    pub at: String,
    pub message: String,
    /// The value as written.
    pub written: String,
}

impl<T> Parsed<T> {
    pub fn new(value: T) -> Self {
        Parsed {
            value,
            invalid: None,
        }
    }

    /// The value; a placeholder when [`Parsed::invalid`] (which keeps the config from
    /// compiling).
    pub fn get(&self) -> &T {
        &self.value
    }

    pub fn invalid(&self) -> Option<&Invalid> {
        self.invalid.as_ref()
    }
}

impl<T> std::ops::Deref for Parsed<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// How a config value reads into its type.
pub trait Parse: Sized {
    /// Its shape in the file.
    type Raw: DeserializeOwned;
    /// What stands in for a value that did not read (never used: see the module's doc).
    fn placeholder() -> Self;
    /// The value, or where in it and why it does not read.
    fn parse(raw: &Self::Raw) -> Result<Self, (String, String)>;
    /// The raw value as text, for error messages.
    fn written(raw: &Self::Raw) -> String;
}

impl<'de, T: Parse> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = T::Raw::deserialize(d)?;
        Ok(match T::parse(&raw) {
            Ok(value) => Parsed::new(value),
            Err((at, message)) => Parsed {
                value: T::placeholder(),
                invalid: Some(Invalid {
                    at,
                    message,
                    written: T::written(&raw),
                }),
            },
        })
    }
}

/// A listening address (`listeners[].listen`, `admin.listen`): an IP and a port.
impl Parse for SocketAddr {
    type Raw = String;

    fn placeholder() -> Self {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }

    fn parse(raw: &String) -> Result<Self, (String, String)> {
        raw.parse().map_err(|_| {
            (
                String::new(),
                format!("{raw:?} is not an address such as 0.0.0.0:8443"),
            )
        })
    }

    fn written(raw: &String) -> String {
        raw.clone()
    }
}

/// `upstreams.*.hash_key`: what a consistent-hash pool hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address (the default).
    ClientIp,
    /// The value of this request header (empty when missing).
    Header(http::HeaderName),
    /// The value of this cookie (empty when missing).
    Cookie(String),
    /// The request path, without the query.
    Path,
}

impl Parse for HashKey {
    type Raw = String;

    fn placeholder() -> Self {
        HashKey::ClientIp
    }

    fn parse(raw: &String) -> Result<Self, (String, String)> {
        let key = match raw.as_str() {
            "client_ip" => Some(HashKey::ClientIp),
            "path" => Some(HashKey::Path),
            k => match (k.strip_prefix("header:"), k.strip_prefix("cookie:")) {
                (Some(h), _) => http::HeaderName::from_bytes(h.as_bytes())
                    .ok()
                    .map(HashKey::Header),
                (_, Some(c)) if !c.is_empty() => Some(HashKey::Cookie(c.to_string())),
                _ => None,
            },
        };
        key.ok_or_else(|| {
            (
                String::new(),
                format!("{raw:?} is not one of client_ip, header:NAME, cookie:NAME, path"),
            )
        })
    }

    fn written(raw: &String) -> String {
        raw.clone()
    }
}

/// `listeners[].tls.min_version`: the oldest TLS version a listener accepts (TLS 1.0 and 1.1
/// are never offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl Parse for TlsVersion {
    type Raw = String;

    fn placeholder() -> Self {
        TlsVersion::Tls12
    }

    fn parse(raw: &String) -> Result<Self, (String, String)> {
        match raw.as_str() {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            _ => Err((
                String::new(),
                format!("{raw:?} is not supported: use \"1.2\" or \"1.3\""),
            )),
        }
    }

    fn written(raw: &String) -> String {
        raw.clone()
    }
}

/// `listeners[].tls.alpn`: the HTTP versions a TLS listener offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alpn {
    pub h2: bool,
    pub http1: bool,
}

impl Parse for Alpn {
    type Raw = Vec<String>;

    fn placeholder() -> Self {
        Alpn {
            h2: true,
            http1: true,
        }
    }

    fn parse(raw: &Vec<String>) -> Result<Self, (String, String)> {
        let mut alpn = Alpn {
            h2: false,
            http1: false,
        };
        for (j, a) in raw.iter().enumerate() {
            match a.as_str() {
                "h2" => alpn.h2 = true,
                "http/1.1" => alpn.http1 = true,
                _ => {
                    return Err((
                        format!("[{j}]"),
                        format!("{a:?} is not supported: use h2 and/or http/1.1"),
                    ))
                }
            }
        }
        if raw.is_empty() {
            return Err((String::new(), "must name at least one protocol".into()));
        }
        Ok(alpn)
    }

    fn written(raw: &Vec<String>) -> String {
        raw.join(", ")
    }
}

/// `routes[].match.path`: `{ prefix: /api }`, `{ exact: /health }` or
/// `{ regex: "^/v[0-9]+/" }`, exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// Whole segments: `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`.
    Prefix(String),
    Exact(String),
    /// Must match the whole path (compiled with the route).
    Regex(String),
}

/// `match.path` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatchKeys {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

impl Parse for PathMatch {
    type Raw = PathMatchKeys;

    fn placeholder() -> Self {
        PathMatch::Prefix("/".into())
    }

    fn parse(raw: &PathMatchKeys) -> Result<Self, (String, String)> {
        let m = match (&raw.prefix, &raw.exact, &raw.regex) {
            (Some(s), None, None) => PathMatch::Prefix(s.clone()),
            (None, Some(s), None) => PathMatch::Exact(s.clone()),
            (None, None, Some(s)) => return Ok(PathMatch::Regex(s.clone())),
            _ => {
                return Err((
                    String::new(),
                    "give exactly one of prefix, exact or regex".into(),
                ))
            }
        };
        match &m {
            PathMatch::Prefix(s) | PathMatch::Exact(s) if !s.starts_with('/') => {
                Err((String::new(), format!("{s:?} must start with /")))
            }
            _ => Ok(m),
        }
    }

    fn written(raw: &PathMatchKeys) -> String {
        format!("{raw:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        key: Parsed<HashKey>,
        version: Parsed<TlsVersion>,
        alpn: Parsed<Alpn>,
        path: Parsed<PathMatch>,
        listen: Parsed<SocketAddr>,
    }

    fn doc(text: &str) -> Doc {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn values_read_into_their_types_once() {
        let d = doc("{ key: \"header:X-Key\", version: 1.3, alpn: [http/1.1], path: { prefix: /api }, listen: \"127.0.0.1:80\" }");
        assert_eq!(
            *d.key,
            HashKey::Header(http::HeaderName::from_static("x-key"))
        );
        assert_eq!(
            *d.version,
            TlsVersion::Tls13,
            "an unquoted 1.3 is the text it was"
        );
        assert_eq!(
            *d.alpn,
            Alpn {
                h2: false,
                http1: true
            }
        );
        assert_eq!(*d.path, PathMatch::Prefix("/api".into()));
        assert_eq!(d.listen.port(), 80);
        assert!(d.key.invalid().is_none());
        assert_eq!(*doc("{ key: \"cookie:sid\", version: \"1.2\", alpn: [h2], path: { regex: x }, listen: \"[::1]:1\" }").key, HashKey::Cookie("sid".into()));
    }

    #[test]
    fn a_value_that_does_not_read_keeps_its_complaint() {
        let d = doc("{ key: \"cookie:\", version: \"1.1\", alpn: [h2, h3], path: { prefix: /a, exact: /b }, listen: \"127.0.0.1:notaport\" }");
        let complaint = |i: Option<&Invalid>| i.map(|i| (i.at.clone(), i.message.clone()));
        assert_eq!(
            complaint(d.key.invalid()),
            Some((
                "".into(),
                "\"cookie:\" is not one of client_ip, header:NAME, cookie:NAME, path".into()
            ))
        );
        assert_eq!(
            complaint(d.version.invalid()),
            Some((
                "".into(),
                "\"1.1\" is not supported: use \"1.2\" or \"1.3\"".into()
            ))
        );
        assert_eq!(
            complaint(d.alpn.invalid()),
            Some((
                "[1]".into(),
                "\"h3\" is not supported: use h2 and/or http/1.1".into()
            ))
        );
        assert_eq!(
            complaint(d.path.invalid()),
            Some((
                "".into(),
                "give exactly one of prefix, exact or regex".into()
            ))
        );
        assert_eq!(d.listen.invalid().unwrap().written, "127.0.0.1:notaport");
        let d = doc("{ key: path, version: \"1.2\", alpn: [], path: { exact: health }, listen: \"0.0.0.0:1\" }");
        assert_eq!(
            complaint(d.alpn.invalid()),
            Some(("".into(), "must name at least one protocol".into()))
        );
        assert_eq!(
            complaint(d.path.invalid()),
            Some(("".into(), "\"health\" must start with /".into()))
        );
    }
}
