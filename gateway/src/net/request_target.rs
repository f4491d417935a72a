//! One reading of a request's target, host and credentials before anything routes on them
//! (docs/security.md, "One reading of every request"). [`read`] refuses what has no single
//! reading (the answer is 400 with `Connection: close`, before any plugin runs) and rewrites
//! the request to the reading it routes on, so that the route, the plugins, the redirect
//! listener and the backend all see the same request:
//!
//! - the target must be origin-form (`/path`), absolute-form with an `http` or `https`
//!   scheme (routed on its authority, forwarded in origin-form with that authority as
//!   `Host`), or `*` on an OPTIONS request (routed as `/` would be, forwarded as `*`);
//! - the path is normalized by [`crate::net::path::normalize`]; the query string is kept byte for
//!   byte;
//! - an HTTP/1.1 request needs exactly one well-formed `Host` (HTTP/1.0 may leave it out and
//!   then matches only routes without `hosts`); HTTP/2 routes by `:authority`, and a `Host`
//!   beside it must say the same;
//! - more than one `Authorization` header is refused: the auth plugins read one, a backend
//!   might read another.

use crate::config::PathConfig;
use crate::net::path::{self, PathError};
use http::{header, Method, Version};
use pingora_http::authority::{raw_target_authority, RawTargetAuthority};
use pingora_http::RequestHeader;
use std::borrow::Cow;
use std::net::Ipv6Addr;

/// Why a request has no single reading (the answer is 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Path(PathError),
    /// Neither origin-form, `http(s)://` absolute-form nor `*`.
    TargetForm,
    /// `*` on a method other than OPTIONS.
    AsteriskNotOptions,
    /// An HTTP/1.1 request without `Host`.
    MissingHost,
    RepeatedHost,
    /// Empty, a port that is not 1-65535, or characters outside a host name or IP literal.
    MalformedHost,
    /// `Host` and the target's authority (or HTTP/2's `:authority`) disagree.
    HostDisagrees,
    RepeatedAuthorization,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Path(e) => e.reason(),
            Refusal::TargetForm => {
                "the request target is not /path, http(s)://host/path or * (OPTIONS only)"
            }
            Refusal::AsteriskNotOptions => "the request target * is for OPTIONS only",
            Refusal::MissingHost => "an HTTP/1.1 request without Host",
            Refusal::RepeatedHost => "more than one Host header",
            Refusal::MalformedHost => "a malformed Host (or authority)",
            Refusal::HostDisagrees => "Host differs from the request's authority",
            Refusal::RepeatedAuthorization => "more than one Authorization header",
        }
    }
}

impl From<PathError> for Refusal {
    fn from(e: PathError) -> Self {
        Refusal::Path(e)
    }
}

/// What a request is routed on.
#[derive(Debug, PartialEq, Eq)]
pub struct Reading {
    /// Lowercased, without the port and a trailing dot; empty for HTTP/1.0 without `Host`.
    pub host: String,
    /// The path routes match when it is not the request's (rewritten) path: the path without
    /// its segments' `;parameters`.
    pub matching: Option<String>,
}

/// Whether a request carries more than one `Authorization` header: two credentials are two
/// readings of who asks (an auth plugin or the admin token would check one, a backend or a
/// proxy in front maybe the other), refused wherever Portico reads credentials.
pub fn repeated_credentials(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
}

/// Checks `req` and rewrites its target to the one reading (only when that differs from
/// what was sent). See the module documentation.
pub fn read(req: &mut RequestHeader, cfg: &PathConfig) -> Result<Reading, Refusal> {
    if repeated_credentials(&req.headers) {
        return Err(Refusal::RepeatedAuthorization);
    }
    let mut hosts = req.headers.get_all(header::HOST).iter();
    let host_header = hosts.next().map(|h| h.as_bytes());
    if hosts.next().is_some() {
        return Err(Refusal::RepeatedHost);
    }
    if host_header.is_none() && req.version == Version::HTTP_11 {
        return Err(Refusal::MissingHost);
    }
    let raw = req.raw_path();
    let (target_authority, path_and_query) = target_parts(raw, &req.method)?;
    // HTTP/2 names its host in `:authority`, absolute-form in the target; `Host` must agree.
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes())
        .or(target_authority);
    if let (Some(a), Some(h)) = (authority, host_header) {
        if a != h {
            return Err(Refusal::HostDisagrees);
        }
    }
    let (host, dotted) = match authority.or(host_header) {
        Some(named) => read_host(named).ok_or(Refusal::MalformedHost)?,
        None => (String::new(), false),
    };
    if path_and_query == b"*" {
        // The server as a whole: routed as its root would be, forwarded as `*`.
        if dotted {
            drop_trailing_dot(req)?;
        }
        return Ok(Reading {
            host,
            matching: Some("/".into()),
        });
    }
    let q = path_and_query
        .iter()
        .position(|&c| c == b'?')
        .unwrap_or(path_and_query.len());
    let (path, query) = path_and_query.split_at(q);
    // `http://host` and `http://host?q` have an empty path, which is `/`.
    let (path, matching) =
        path::normalize(if path.is_empty() { b"/" } else { path }, cfg)?.into_parts();
    if target_authority.is_none() && matches!(path, Cow::Borrowed(_)) {
        // The common case: the request already says what it means.
        if dotted {
            drop_trailing_dot(req)?;
        }
        return Ok(Reading { host, matching });
    }
    let mut target = Vec::with_capacity(path.len() + query.len());
    target.extend_from_slice(path.as_bytes());
    target.extend_from_slice(query);
    // A Host-less HTTP/1.0 request in absolute-form: the backend learns the host from Host.
    let add_host = match (target_authority, host_header) {
        (Some(a), None) => {
            Some(http::HeaderValue::from_bytes(a).map_err(|_| Refusal::MalformedHost)?)
        }
        _ => None,
    };
    set_target(req, &target)?;
    if let Some(h) = add_host {
        req.insert_header(header::HOST, h)
            .map_err(|_| Refusal::MalformedHost)?;
    }
    if dotted {
        drop_trailing_dot(req)?;
    }
    Ok(Reading { host, matching })
}

/// The authority (absolute-form only) and the path and query of a request target.
fn target_parts<'a>(
    raw: &'a [u8],
    method: &Method,
) -> Result<(Option<&'a [u8]>, &'a [u8]), Refusal> {
    if raw.first() == Some(&b'/') {
        return Ok((None, raw));
    }
    if raw == b"*" {
        return match *method {
            Method::OPTIONS => Ok((None, raw)),
            _ => Err(Refusal::AsteriskNotOptions),
        };
    }
    match raw_target_authority(raw) {
        RawTargetAuthority::Absolute {
            scheme,
            authority,
            path_and_query,
        } if scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https") => {
            Ok((Some(authority), path_and_query))
        }
        _ => Err(Refusal::TargetForm),
    }
}

/// Replaces the request's target with `target` (origin-form), keeping an HTTP/2 request's
/// scheme and authority.
fn set_target(req: &mut RequestHeader, target: &[u8]) -> Result<(), Refusal> {
    if req.uri.authority().is_none() {
        return req.set_raw_path(target).map_err(|_| Refusal::TargetForm);
    }
    let mut parts = http::uri::Parts::default();
    parts.scheme = req.uri.scheme().cloned();
    parts.authority = req.uri.authority().cloned();
    parts.path_and_query =
        Some(http::uri::PathAndQuery::try_from(target).map_err(|_| Refusal::TargetForm)?);
    let uri = http::Uri::from_parts(parts).map_err(|_| Refusal::TargetForm)?;
    req.set_uri(uri);
    Ok(())
}

/// `api.example.com.` (a fully qualified name) is the host `api.example.com`: the request's
/// `Host` and authority lose the dot, so that plugins, the log and the backend read the host
/// routes matched (`api.example.com.:8443` keeps its port and case: `api.example.com:8443`).
fn drop_trailing_dot(req: &mut RequestHeader) -> Result<(), Refusal> {
    fn without_dot(raw: &[u8]) -> Vec<u8> {
        // A name has no `:` but the port's, and the dot is the name's last byte.
        let end = raw.iter().position(|&c| c == b':').unwrap_or(raw.len());
        let mut out = raw.to_vec();
        if end > 0 && raw[end - 1] == b'.' {
            out.remove(end - 1);
        }
        out
    }
    if let Some(h) = req.headers.get(header::HOST) {
        let value = http::HeaderValue::from_bytes(&without_dot(h.as_bytes()))
            .map_err(|_| Refusal::MalformedHost)?;
        req.insert_header(header::HOST, value)
            .map_err(|_| Refusal::MalformedHost)?;
    }
    if let Some(a) = req.uri.authority() {
        let authority = http::uri::Authority::try_from(without_dot(a.as_str().as_bytes()))
            .map_err(|_| Refusal::MalformedHost)?;
        let mut parts = http::uri::Parts::default();
        parts.scheme = req.uri.scheme().cloned();
        parts.authority = Some(authority);
        parts.path_and_query = req.uri.path_and_query().cloned();
        let uri = http::Uri::from_parts(parts).map_err(|_| Refusal::MalformedHost)?;
        req.set_uri(uri);
    }
    Ok(())
}

/// The host named by a `Host` header or an authority, as routes compare it: lowercased,
/// without the port and a trailing dot (`API.example.com.:8443` is `api.example.com`).
/// `None` when it is malformed: empty, a port that is not 1-65535 in digits, an empty label,
/// or characters outside a host name (letters, digits, `-`, `_`, `.`) or an IP literal.
///
/// ```
/// use gateway::net::request_target::parse_host;
/// assert_eq!(parse_host(b"API.Example.com.:8443").as_deref(), Some("api.example.com"));
/// assert_eq!(parse_host(b"[::1]:443").as_deref(), Some("[::1]"));
/// assert_eq!(parse_host(b"a:xx"), None);
/// ```
pub fn parse_host(raw: &[u8]) -> Option<String> {
    read_host(raw).map(|(host, _)| host)
}

/// [`parse_host`], and whether the name ended in a dot.
fn read_host(raw: &[u8]) -> Option<(String, bool)> {
    let mut dotted = false;
    let (name, port) = if raw.first() == Some(&b'[') {
        let end = raw.iter().position(|&c| c == b']')?;
        std::str::from_utf8(&raw[1..end])
            .ok()?
            .parse::<Ipv6Addr>()
            .ok()?;
        (&raw[..=end], &raw[end + 1..])
    } else {
        // One pass (this runs on every request): labels of host-name characters, none empty
        // but for one trailing dot (a fully qualified name, the same host), up to a colon.
        let mut label_start = true;
        let mut end = raw.len();
        for (i, &c) in raw.iter().enumerate() {
            match c {
                b':' => {
                    end = i;
                    break;
                }
                b'.' if label_start => return None,
                b'.' => label_start = true,
                _ if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' => label_start = false,
                _ => return None,
            }
        }
        let name = &raw[..end];
        let name = match name.strip_suffix(b".") {
            Some(b"") => return None,
            Some(shorter) => {
                dotted = true;
                shorter
            }
            // Empty.
            None if label_start => return None,
            None => name,
        };
        (name, &raw[end..])
    };
    if let Some(digits) = port.strip_prefix(b":") {
        let mut n = 0u32;
        for &d in digits {
            if !d.is_ascii_digit() || n > 6553 {
                return None;
            }
            n = n * 10 + (d - b'0') as u32;
        }
        if !(1..=65535).contains(&n) {
            return None;
        }
    } else if !port.is_empty() {
        return None;
    }
    // Only ASCII is left, so lowercasing byte by byte keeps it UTF-8.
    let mut host = String::with_capacity(name.len());
    host.extend(name.iter().map(|&c| c.to_ascii_lowercase() as char));
    Some((host, dotted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(
        method: &str,
        target: &[u8],
        version: Version,
        headers: &[(&str, &str)],
    ) -> RequestHeader {
        let mut req = RequestHeader::build(method, target, None).unwrap();
        req.set_version(version);
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    fn read_h1(target: &str, headers: &[(&str, &str)]) -> Result<(Reading, String), Refusal> {
        let mut req = request("GET", target.as_bytes(), Version::HTTP_11, headers);
        let reading = read(&mut req, &PathConfig::default())?;
        Ok((reading, String::from_utf8(req.raw_path().to_vec()).unwrap()))
    }

    /// The Host (and an absolute-form authority) lose a trailing dot, keeping case and port.
    #[test]
    fn a_trailing_dot_leaves_the_host_the_request_carries() {
        for (host, sent) in [
            ("API.Test.:8080", "API.Test:8080"),
            ("api.test.", "api.test"),
            ("api.test", "api.test"),
        ] {
            let mut req = request("GET", b"/x", Version::HTTP_11, &[("host", host)]);
            let reading = read(&mut req, &PathConfig::default()).unwrap();
            assert_eq!(reading.host, "api.test");
            assert_eq!(req.headers.get(header::HOST).unwrap(), sent);
        }
        let mut req = request(
            "GET",
            b"http://api.test.:81/x",
            Version::HTTP_11,
            &[("host", "api.test.:81")],
        );
        let reading = read(&mut req, &PathConfig::default()).unwrap();
        assert_eq!(reading.host, "api.test");
        assert_eq!(req.headers.get(header::HOST).unwrap(), "api.test:81");
        assert_eq!(req.raw_path(), b"/x");
    }

    #[test]
    fn hosts() {
        let good: &[(&str, &str)] = &[
            ("a", "a"),
            ("API.Example.COM", "api.example.com"),
            ("api.example.com.", "api.example.com"),
            ("api.example.com.:8443", "api.example.com"),
            ("a:1", "a"),
            ("a:65535", "a"),
            ("10.0.0.1:80", "10.0.0.1"),
            ("[::1]", "[::1]"),
            ("[2001:DB8::1]:443", "[2001:db8::1]"),
            ("my_service", "my_service"),
        ];
        for (raw, want) in good {
            assert_eq!(parse_host(raw.as_bytes()).as_deref(), Some(*want), "{raw}");
        }
        let bad = [
            "",
            ":80",
            "a:",
            "a:xx",
            "a:0",
            "a:65536",
            "a:123456",
            "a:-1",
            "a b",
            "a/b",
            "a@b",
            "a,b",
            "a..b",
            ".a",
            "a..",
            ".",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[zz]",
            "[::1]:0",
            "a:1:2",
            "caf\u{e9}",
            "%61",
            "a\\b",
        ];
        for raw in bad {
            assert_eq!(parse_host(raw.as_bytes()), None, "{raw:?}");
        }
    }

    #[test]
    fn origin_form_untouched_when_normal() {
        let (r, target) = read_h1("/admin/x?b=%2f&a", &[("host", "Api.test")]).unwrap();
        assert_eq!(
            r,
            Reading {
                host: "api.test".into(),
                matching: None
            }
        );
        assert_eq!(target, "/admin/x?b=%2f&a");
    }

    #[test]
    fn rewritten_to_the_one_reading() {
        let (r, target) = read_h1("//%61dmin/../admin;v=1/x?q=%2F..", &[("host", "a")]).unwrap();
        assert_eq!(target, "/admin;v=1/x?q=%2F..", "the query is kept as sent");
        assert_eq!(r.matching.as_deref(), Some("/admin/x"));
    }

    #[test]
    fn absolute_form_goes_on_in_origin_form() {
        let (r, target) = read_h1(
            "http://api.test:8080//x/../y?q",
            &[("host", "api.test:8080")],
        )
        .unwrap();
        assert_eq!(r.host, "api.test");
        assert_eq!(target, "/y?q");
        let (_, target) = read_h1("HTTPS://api.test", &[("host", "api.test")]).unwrap();
        assert_eq!(target, "/");
        // HTTP/1.0 may leave Host out: the authority becomes the Host.
        let mut req = request("GET", b"http://api.test/x", Version::HTTP_10, &[]);
        let r = read(&mut req, &PathConfig::default()).unwrap();
        assert_eq!(r.host, "api.test");
        assert_eq!(req.raw_path(), b"/x");
        assert_eq!(req.headers.get("host").unwrap(), "api.test");
    }

    /// A target, its headers, and why it is refused.
    type Refused<'a> = (&'a str, &'a [(&'a str, &'a str)], Refusal);

    #[test]
    fn refusals() {
        let cases: &[Refused] = &[
            ("admin/x", &[("host", "a")], Refusal::TargetForm),
            ("a.test:443", &[("host", "a.test:443")], Refusal::TargetForm),
            ("ftp://a/x", &[("host", "a")], Refusal::TargetForm),
            ("*", &[("host", "a")], Refusal::AsteriskNotOptions),
            ("/x", &[], Refusal::MissingHost),
            ("/x", &[("host", "a"), ("host", "a")], Refusal::RepeatedHost),
            ("/x", &[("host", "")], Refusal::MalformedHost),
            ("/x", &[("host", "a:xx")], Refusal::MalformedHost),
            ("http://b/x", &[("host", "a")], Refusal::HostDisagrees),
            (
                "/x",
                &[
                    ("host", "a"),
                    ("authorization", "a"),
                    ("authorization", "b"),
                ],
                Refusal::RepeatedAuthorization,
            ),
            (
                "/a%2Fb",
                &[("host", "a")],
                Refusal::Path(PathError::EscapedSlash),
            ),
            ("/..", &[("host", "a")], Refusal::Path(PathError::AboveRoot)),
        ];
        for (target, headers, want) in cases {
            assert_eq!(
                read_h1(target, headers).err(),
                Some(*want),
                "{target} {headers:?}"
            );
        }
    }

    #[test]
    fn asterisk_for_options_and_http10_without_host() {
        let mut req = request("OPTIONS", b"*", Version::HTTP_11, &[("host", "a")]);
        let r = read(&mut req, &PathConfig::default()).unwrap();
        assert_eq!(r.matching.as_deref(), Some("/"));
        assert_eq!(req.raw_path(), b"*");
        let mut req = request("GET", b"/x", Version::HTTP_10, &[]);
        let r = read(&mut req, &PathConfig::default()).unwrap();
        assert_eq!(r.host, "");
    }

    #[test]
    fn http2_keeps_its_authority() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.set_uri("https://api.test/a/./b".parse().unwrap());
        req.set_version(Version::HTTP_2);
        let r = read(&mut req, &PathConfig::default()).unwrap();
        assert_eq!(r.host, "api.test");
        assert_eq!(req.uri.to_string(), "https://api.test/a/b");
        req.append_header("host", "other.test").unwrap();
        assert_eq!(
            read(&mut req, &PathConfig::default()),
            Err(Refusal::HostDisagrees)
        );
    }
}
