//! A header name as Portico writes it: ready-made for the `http` header maps, and spelled for
//! an HTTP/1 wire (a `HeaderName` is lower case; Pingora writes the spelling it is given).

use bytes::Bytes;
use http::HeaderName;

/// The same header name twice: `name` for lookups and maps without spellings, `wire` for
/// an HTTP/1 peer, made once rather than per request.
#[derive(Debug, Clone)]
pub struct SpelledName {
    pub name: HeaderName,
    pub wire: Bytes,
}

impl SpelledName {
    /// A name known at compile time; `name` must be `wire` in lower case, which is checked
    /// when the static is built (a mismatch would have HTTP/1 and HTTP/2 peers told different
    /// names).
    pub const fn from_static(name: &'static str, wire: &'static str) -> SpelledName {
        assert!(
            lower_case_of(name.as_bytes(), wire.as_bytes()),
            "a SpelledName's name must be its wire form in lower case"
        );
        SpelledName {
            name: HeaderName::from_static(name),
            wire: Bytes::from_static(wire.as_bytes()),
        }
    }

    /// A name from the config, spelled as the config spells it; `None` if it is no header
    /// name.
    pub fn parse(wire: &str) -> Option<SpelledName> {
        let name = HeaderName::from_bytes(wire.as_bytes()).ok()?;
        Some(SpelledName {
            name,
            wire: Bytes::from(wire.to_owned()),
        })
    }
}

/// Whether `lower` is `wire` with its ASCII letters in lower case.
const fn lower_case_of(lower: &[u8], wire: &[u8]) -> bool {
    if lower.len() != wire.len() {
        return false;
    }
    let mut i = 0;
    while i < lower.len() {
        if lower[i] != wire[i].to_ascii_lowercase() {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsed_name_keeps_its_spelling_and_is_looked_up_in_lower_case() {
        let id = SpelledName::parse("X-Trace-ID").unwrap();
        assert_eq!(id.name.as_str(), "x-trace-id");
        assert_eq!(&id.wire[..], b"X-Trace-ID");
        assert!(SpelledName::parse("Bad Name").is_none());
    }

    #[test]
    fn the_lower_case_check_compares_every_byte() {
        assert!(lower_case_of(b"x-real-ip", b"X-Real-IP"));
        assert!(!lower_case_of(b"x-real-ip", b"X-Real-IQ"));
        assert!(!lower_case_of(b"x-real-ip", b"X-Real-IP2"));
    }
}
