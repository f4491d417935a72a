//! One reading of a request's path (RFC 3986 section 6), the reading routes match and the
//! backend receives, so that whatever guards a route guards every spelling of it
//! (docs/security.md, "One reading of every request").
//!
//! [`normalize`] turns the path (without the query) into its one spelling:
//!
//! - an escape of an unreserved character (`A-Z a-z 0-9 - . _ ~`) is decoded (`%61` is `a`,
//!   `%2e` is `.`); every other escape gets upper-case hex (`%3a` is `%3A`);
//! - a raw byte that may not appear in a path (non-ASCII, `"<>[]^{|}` and the backtick) is
//!   percent-encoded with upper-case hex, as a client should have sent it: the backend then
//!   reads one spelling whichever was sent (`/caf%C3%A9` for `/café`);
//! - dot segments (`.`, `..`) are removed; a `..` that would climb above the root is refused;
//! - with `server.path.merge_slashes` (the default) runs of `/` become one.
//!
//! Refused outright (400, before any plugin runs): a `%` not followed by two hex digits, a
//! control character raw or escaped (`%00`-`%1F`, `%7F`), a backslash raw or escaped (`%5C`:
//! Windows servers and many URL parsers read it as `/`), and an escaped slash `%2F` unless
//! `server.path.escaped_slashes` is `keep` (it stays `%2F`, data inside its segment) or
//! `decode` (it becomes `/` before dot segments are removed).
//!
//! For matching only, a segment's parameters are removed (`/admin;jsessionid=1/x` matches as
//! `/admin/x`, as Java servlet containers read it; the backend still receives the
//! parameters). A segment that is `.` or `..` once its parameters are removed (`..;`, which
//! Tomcat reads as `..`) is refused: a servlet container and any other backend would read
//! the request as two different paths, and no route choice is right for both. For the same
//! reason a `..` that removes a segment that is only parameters (`/a/;x/../b`) is refused: a
//! servlet container reads `;x` as an empty segment and lets the `..` remove `a`.
//!
//! A path with nothing to change, the common case, costs one pass over its bytes with a
//! table and no allocation.

use crate::config::{EscapedSlashes, PathConfig};
use std::borrow::Cow;

/// Why a path is refused (the answer is 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A control character (0x00-0x1F, 0x7F), raw or escaped.
    ControlCharacter,
    /// A backslash, raw or escaped (`%5C`).
    Backslash,
    /// `%2F` while `server.path.escaped_slashes` is `reject`.
    EscapedSlash,
    /// A `..` segment with nothing left to remove.
    AboveRoot,
    /// A segment that is `.` or `..` once its `;parameters` are removed.
    DotSegmentWithParameters,
    /// A `..` that removes a segment that is only `;parameters`.
    DotDotOverParameters,
    /// The path does not start with `/`.
    NotAbsolute,
}

impl PathError {
    pub fn reason(self) -> &'static str {
        match self {
            PathError::BadEscape => "a % in the path is not followed by two hex digits",
            PathError::ControlCharacter => "a control character (raw or escaped) in the path",
            PathError::Backslash => "a backslash (raw or %5C) in the path",
            PathError::EscapedSlash => {
                "an escaped slash (%2F) in the path (server.path.escaped_slashes is reject)"
            }
            PathError::AboveRoot => "a .. segment in the path climbs above the root",
            PathError::DotSegmentWithParameters => {
                "a path segment that is . or .. once its ;parameters are removed"
            }
            PathError::DotDotOverParameters => {
                "a .. segment in the path removes a segment that is only ;parameters"
            }
            PathError::NotAbsolute => "the path does not start with /",
        }
    }
}

/// A path in its one spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath<'a> {
    /// What the backend receives (the query string goes after it as it was sent). Borrowed
    /// when the request's own spelling was already this one.
    pub path: Cow<'a, str>,
    /// What routes match when it differs from `path`: the segments without `;parameters`.
    matching: Option<String>,
}

impl<'a> NormalPath<'a> {
    /// The path routes match: [`NormalPath::path`] without its segments' `;parameters`.
    pub fn matching(&self) -> &str {
        self.matching.as_deref().unwrap_or(&self.path)
    }

    /// [`NormalPath::path`], and the path routes match only when it differs from it.
    pub fn into_parts(self) -> (Cow<'a, str>, Option<String>) {
        (self.path, self.matching)
    }
}

/// The one spelling of `path` (the request target's path, without `?query`), or why there
/// is none. See the module documentation for the rules.
///
/// ```
/// use gateway::config::PathConfig;
/// use gateway::net::path::{normalize, PathError};
/// let cfg = PathConfig::default();
/// let p = normalize(b"//%61dmin/./x/../y;v=1", &cfg).unwrap();
/// assert_eq!(p.path, "/admin/y;v=1");
/// assert_eq!(p.matching(), "/admin/y");
/// assert_eq!(normalize(b"/a/../..", &cfg), Err(PathError::AboveRoot));
/// assert_eq!(normalize(b"/a%2Fb", &cfg), Err(PathError::EscapedSlash));
/// ```
pub fn normalize<'a>(path: &'a [u8], cfg: &PathConfig) -> Result<NormalPath<'a>, PathError> {
    if path.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let (path, params): (Cow<'a, str>, bool) = match already_normal(path, cfg) {
        // Every byte is ASCII (anything else is OTHER in the table), so this cannot fail.
        Some(params) => (
            Cow::Borrowed(std::str::from_utf8(path).map_err(|_| PathError::BadEscape)?),
            params,
        ),
        None => {
            let p = rebuild(path, cfg)?;
            let params = p.contains(';');
            (Cow::Owned(p), params)
        }
    };
    let matching = if params {
        Some(without_parameters(&path, cfg)?)
    } else {
        None
    };
    Ok(NormalPath { path, matching })
}

// Byte classes: what the first pass must look at more closely.
const PLAIN: u8 = 0;
const SLASH: u8 = 1;
const DOT: u8 = 2;
const PERCENT: u8 = 3;
const SEMICOLON: u8 = 4;
/// Never in a path as it is written: a control, space, `"#<>?[\]^` backtick `{|}`, DEL or
/// any non-ASCII byte.
const OTHER: u8 = 5;

static CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if is_unreserved(c) && c != b'.' {
            PLAIN
        } else {
            match c {
                // sub-delims but `;`, and the other pchar punctuation
                b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':'
                | b'@' => PLAIN,
                b'/' => SLASH,
                b'.' => DOT,
                b'%' => PERCENT,
                b';' => SEMICOLON,
                _ => OTHER,
            }
        };
        b += 1;
    }
    t
};

const fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn is_control(c: u8) -> bool {
    c < 0x20 || c == 0x7f
}

/// The fast path: whether `p` is already in its one spelling (then with whether it has
/// `;parameters`), judged in one pass; `None` sends it to [`rebuild`], which also finds
/// the errors.
fn already_normal(p: &[u8], cfg: &PathConfig) -> Option<bool> {
    let mut params = false;
    let mut i = 0;
    while i < p.len() {
        match CLASS[p[i] as usize] {
            PLAIN => {}
            SLASH => {
                if cfg.merge_slashes && p.get(i + 1) == Some(&b'/') {
                    return None;
                }
            }
            // p[0] is '/', so a dot is never first.
            DOT => {
                if p[i - 1] == b'/' && dot_segment_at(&p[i..]) {
                    return None;
                }
            }
            PERCENT => {
                // Kept as it is: an upper-case escape of a byte that is not unreserved,
                // not a control or backslash, and not a slash unless slashes are kept.
                let d = match (p.get(i + 1), p.get(i + 2)) {
                    (Some(&h), Some(&l)) => (upper_hex(h)? << 4) | upper_hex(l)?,
                    _ => return None,
                };
                let kept_slash = d == b'/' && cfg.escaped_slashes == EscapedSlashes::Keep;
                if is_unreserved(d) || is_control(d) || d == b'\\' || (d == b'/' && !kept_slash) {
                    return None;
                }
                i += 2;
            }
            SEMICOLON => params = true,
            _ => return None,
        }
        i += 1;
    }
    Some(params)
}

/// Whether `rest` (starting at a segment's first byte) begins with a `.` or `..` segment,
/// or one that is `.` or `..` before its `;parameters`.
fn dot_segment_at(rest: &[u8]) -> bool {
    matches!(
        rest,
        [b'.'] | [b'.', b'/' | b';', ..] | [b'.', b'.'] | [b'.', b'.', b'/' | b';', ..]
    )
}

fn upper_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex(c: u8) -> Option<u8> {
    upper_hex(c.to_ascii_uppercase())
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut Vec<u8>, c: u8) {
    out.extend_from_slice(&[b'%', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]);
}

/// The slow path: one spelling per byte first, then dot segments and slashes.
fn rebuild(p: &[u8], cfg: &PathConfig) -> Result<String, PathError> {
    let mut s = Vec::with_capacity(p.len() + 8);
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        if c == b'%' {
            let d = match (
                p.get(i + 1).and_then(|&h| hex(h)),
                p.get(i + 2).and_then(|&l| hex(l)),
            ) {
                (Some(h), Some(l)) => (h << 4) | l,
                _ => return Err(PathError::BadEscape),
            };
            match d {
                _ if is_control(d) => return Err(PathError::ControlCharacter),
                b'\\' => return Err(PathError::Backslash),
                b'/' => match cfg.escaped_slashes {
                    EscapedSlashes::Reject => return Err(PathError::EscapedSlash),
                    EscapedSlashes::Keep => push_escaped(&mut s, d),
                    EscapedSlashes::Decode => s.push(b'/'),
                },
                _ if is_unreserved(d) => s.push(d),
                _ => push_escaped(&mut s, d),
            }
            i += 3;
            continue;
        }
        match c {
            _ if is_control(c) => return Err(PathError::ControlCharacter),
            b'\\' => return Err(PathError::Backslash),
            _ if CLASS[c as usize] == OTHER => push_escaped(&mut s, c),
            _ => s.push(c),
        }
        i += 1;
    }
    // Only ASCII was pushed: every other byte was escaped.
    let s = String::from_utf8(s).map_err(|_| PathError::BadEscape)?;
    resolve_segments(&s, cfg.merge_slashes)
}

/// Removes dot segments (RFC 3986 section 5.2.4) and, with `merge`, empty segments but a
/// trailing one. `s` starts with `/`. A segment that is a dot segment only once its
/// `;parameters` are removed is refused, wherever it is: even one that a later `..` would
/// remove (`/a/..;/../admin`) reads as another path to a servlet container (`/admin`).
fn resolve_segments(s: &str, merge: bool) -> Result<String, PathError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut segments = s[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "." => {}
            ".." => match kept.pop() {
                None => return Err(PathError::AboveRoot),
                // `/a/;x/../b`: to a servlet container `;x` is an empty segment (merged
                // away), so its `..` removes `a`; to anyone else it removes `;x`.
                Some(removed) if removed.starts_with(';') => {
                    return Err(PathError::DotDotOverParameters)
                }
                Some(_) => {}
            },
            "" if merge && !last => continue,
            _ => {
                if matches!(seg.split_once(';'), Some(("." | "..", _))) {
                    return Err(PathError::DotSegmentWithParameters);
                }
                kept.push(seg);
                continue;
            }
        }
        // A dot segment at the end leaves the path ending in `/` (`/a/b/..` is `/a/`).
        if last {
            kept.push("");
        }
    }
    let mut out = String::with_capacity(s.len());
    for seg in &kept {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// `path` (already normal) with each segment's `;parameters` removed, for matching.
fn without_parameters(path: &str, cfg: &PathConfig) -> Result<String, PathError> {
    let mut stripped = String::with_capacity(path.len());
    for seg in path[1..].split('/') {
        stripped.push('/');
        stripped.push_str(seg.split_once(';').map_or(seg, |(name, _)| name));
    }
    // `path` has no segment that is a dot segment without its parameters (refused above);
    // segments that were only parameters are empty now, and merged like any other.
    resolve_segments(&stripped, cfg.merge_slashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(merge: bool, slashes: EscapedSlashes) -> PathConfig {
        PathConfig {
            merge_slashes: merge,
            escaped_slashes: slashes,
        }
    }

    fn norm(p: &str) -> Result<(String, String), PathError> {
        let n = normalize(p.as_bytes(), &PathConfig::default())?;
        Ok((n.path.to_string(), n.matching().to_string()))
    }

    #[test]
    fn spellings_of_one_path() {
        let cases: &[(&str, &str, &str)] = &[
            ("/admin/x", "/admin/x", "/admin/x"),
            ("/%61dmin/x", "/admin/x", "/admin/x"),
            ("//admin/x", "/admin/x", "/admin/x"),
            ("/public/../admin/x", "/admin/x", "/admin/x"),
            ("/public/%2e%2E/admin/x", "/admin/x", "/admin/x"),
            ("/./admin/./x", "/admin/x", "/admin/x"),
            ("/admin;a/x", "/admin;a/x", "/admin/x"),
            ("/admin;jsessionid=1/x", "/admin;jsessionid=1/x", "/admin/x"),
            ("/;a/admin", "/;a/admin", "/admin"),
            ("/a/b/..", "/a/", "/a/"),
            ("/a/.", "/a/", "/a/"),
            ("/a/..", "/", "/"),
            ("/", "/", "/"),
            ("//", "/", "/"),
            ("/a//", "/a/", "/a/"),
            ("/a%3ab%7e", "/a%3Ab~", "/a%3Ab~"),
            ("/a%20b", "/a%20b", "/a%20b"),
            ("/caf\u{e9}", "/caf%C3%A9", "/caf%C3%A9"),
            ("/a{b}|c", "/a%7Bb%7D%7Cc", "/a%7Bb%7D%7Cc"),
            ("/a%3Bb/x", "/a%3Bb/x", "/a%3Bb/x"),
            ("/...", "/...", "/..."),
            ("/.a/..b", "/.a/..b", "/.a/..b"),
            ("/API", "/API", "/API"),
        ];
        for (input, path, matching) in cases {
            assert_eq!(
                norm(input),
                Ok((path.to_string(), matching.to_string())),
                "{input}"
            );
        }
    }

    #[test]
    fn refusals() {
        use PathError::*;
        let cases: &[(&str, PathError)] = &[
            ("/a%", BadEscape),
            ("/a%4", BadEscape),
            ("/a%G1", BadEscape),
            ("/a%00", ControlCharacter),
            ("/a%1f", ControlCharacter),
            ("/a%7F", ControlCharacter),
            ("/a\u{1}b", ControlCharacter),
            ("/a\tb", ControlCharacter),
            ("/a%5Cb", Backslash),
            ("/a%5cb", Backslash),
            ("/a\\b", Backslash),
            ("/a%2Fb", EscapedSlash),
            ("/a%2fb", EscapedSlash),
            ("/..", AboveRoot),
            ("/a/../..", AboveRoot),
            ("/%2e%2e/a", AboveRoot),
            ("/public/..;/admin", DotSegmentWithParameters),
            ("/public/.;x/admin", DotSegmentWithParameters),
            ("/public/%2e%2e;/admin", DotSegmentWithParameters),
            // Found by fuzzing: a `..;` that a later `..` removes still hides a `..`.
            ("/x/..;a/../admin", DotSegmentWithParameters),
            ("/x/y/..;a/../../admin", DotSegmentWithParameters),
            ("/c/;x=public/../admin/x", DotDotOverParameters),
            ("/admin;a/b/../;x/../..", DotDotOverParameters),
            ("a/b", NotAbsolute),
            ("", NotAbsolute),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input), Err(*want), "{input:?}");
        }
    }

    #[test]
    fn escaped_slashes_and_merging() {
        let keep = cfg(true, EscapedSlashes::Keep);
        let n = normalize(b"/a%2fb/../c", &keep).unwrap();
        assert_eq!(n.path, "/c");
        let n = normalize(b"/a%2F..%2Fb", &keep).unwrap();
        assert_eq!(
            n.path, "/a%2F..%2Fb",
            "a kept %2F is data inside its segment"
        );
        assert!(matches!(n.path, Cow::Borrowed(_)));
        let decode = cfg(true, EscapedSlashes::Decode);
        assert_eq!(normalize(b"/a%2F..%2Fb", &decode).unwrap().path, "/b");
        assert_eq!(normalize(b"/x%2F%2Fy", &decode).unwrap().path, "/x/y");
        let no_merge = cfg(false, EscapedSlashes::Reject);
        let n = normalize(b"//a//b/", &no_merge).unwrap();
        assert_eq!(n.path, "//a//b/");
        assert!(matches!(n.path, Cow::Borrowed(_)));
        assert_eq!(normalize(b"/a//../b", &no_merge).unwrap().path, "/a/b");
        assert_eq!(normalize(b"/;x/a", &no_merge).unwrap().matching(), "//a");
    }

    #[test]
    fn the_common_path_is_borrowed() {
        for p in [
            "/",
            "/small",
            "/api/v1/items-2_x~y",
            "/a%20b/c%3A",
            "/a;b=c/d",
            "/.well-known/x",
        ] {
            let n = normalize(p.as_bytes(), &PathConfig::default()).unwrap();
            assert!(matches!(n.path, Cow::Borrowed(_)), "{p}");
        }
    }

    #[test]
    fn output_is_a_fixed_point() {
        let cfgs = [
            PathConfig::default(),
            cfg(false, EscapedSlashes::Keep),
            cfg(true, EscapedSlashes::Decode),
        ];
        for c in &cfgs {
            for p in ["//a/./b/../%7e%2e/", "/a%2f%2E%2E/x", "/\u{e9}/%c3%a9;p/.."] {
                let Ok(once) = normalize(p.as_bytes(), c) else {
                    continue;
                };
                let twice = normalize(once.path.as_bytes(), c).unwrap();
                assert_eq!(twice.path, once.path, "{p}");
                assert!(matches!(twice.path, Cow::Borrowed(_)), "{p}");
                assert_eq!(twice.matching(), once.matching(), "{p}");
            }
        }
    }
}
