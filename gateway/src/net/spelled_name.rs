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
    /// A name known at compile time; `name` must be `wire` in lower case.
    pub const fn from_static(name: &'static str, wire: &'static str) -> SpelledName {
        SpelledName {
            name: HeaderName::from_static(name),
            wire: Bytes::from_static(wire.as_bytes()),
        }
    }

    /// A name from the config, spelled as the config spells it.
    pub fn new(name: HeaderName, wire: &str) -> SpelledName {
        SpelledName {
            name,
            wire: Bytes::from(wire.to_owned()),
        }
    }
}
