//! Handshakes that are a certificate authority's challenge rather than a client's: ACME's
//! TLS-ALPN-01 (RFC 8737, docs/acme.md). The CA offers its own ALPN protocol and expects a
//! certificate made for the challenge. `tls` only lends the two moments this needs, the ALPN
//! choice and the certificate choice; what answers is `acme`'s, handed to
//! [`super::listener_settings`] by the runtime, so that `tls` does not depend on `acme`.

use async_trait::async_trait;
use boring::ex_data::Index;
use boring::ssl::{Ssl, SslRef};
use pingora_core::listeners::ALPN;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::ssl::{select_next_proto, AlpnError};
use std::sync::OnceLock;

/// Answers the challenge handshakes of a TLS listener.
#[async_trait]
pub trait HandshakeChallenge: Send + Sync {
    /// The protocol to choose when the ClientHello's offered list (wire format: each protocol
    /// preceded by its length) makes it a challenge, `None` for any other handshake. Asked
    /// twice per handshake: when the ClientHello arrives (which marks the connection, see
    /// [`is_challenge`]) and in the ALPN callback. A scan of the list, no allocation.
    fn alpn(&self, offered: &[u8]) -> Option<&'static [u8]>;

    /// In the certificate callback, for a connection marked as a challenge: serves its
    /// certificate and returns true; false otherwise (the listener's own certificates are
    /// then served).
    async fn answer(&self, ssl: &mut TlsRef) -> bool;
}

/// The connections whose ClientHello was a challenge. BoringSSL asks for the certificate
/// before it negotiates ALPN, so the certificate callback cannot read the protocol chosen: the
/// ClientHello callback marks the connection instead.
fn challenge_index() -> Index<Ssl, ()> {
    static INDEX: OnceLock<Index<Ssl, ()>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().expect("a TLS ex_data index"))
}

/// Marks the connection as a challenge handshake (from the ClientHello callback).
pub(super) fn mark_challenge(ssl: &mut SslRef) {
    ssl.set_ex_data(challenge_index(), ());
}

/// Whether the connection's ClientHello was a challenge (see [`HandshakeChallenge::alpn`]).
pub fn is_challenge(ssl: &SslRef) -> bool {
    ssl.ex_data(challenge_index()).is_some()
}

/// The protocol list of a ClientHello's ALPN extension, as the ALPN callback is handed it
/// (without the extension's own two-byte length).
pub(super) fn offered_alpn(extension: &[u8]) -> &[u8] {
    extension.get(2..).unwrap_or_default()
}

/// Pingora's ALPN choice for `alpn` (its callbacks are private): the server's preference
/// among what the client offers; nothing in common is no ALPN, or a fatal alert when only h2
/// is served.
pub(super) fn select_alpn<'a>(alpn: &ALPN, offered: &'a [u8]) -> Result<&'a [u8], AlpnError> {
    let (ours, none): (&[u8], _) = match alpn {
        ALPN::H2 => (b"\x02h2", AlpnError::ALERT_FATAL),
        ALPN::H1 => (b"\x08http/1.1", AlpnError::NOACK),
        _ => (b"\x02h2\x08http/1.1", AlpnError::NOACK),
    };
    if offered.is_empty() {
        return Err(none);
    }
    select_next_proto(ours, offered).ok_or(none)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_preference_among_what_is_offered() {
        let offered = b"\x08http/1.1\x02h2";
        assert_eq!(select_alpn(&ALPN::H2H1, offered).unwrap(), b"h2");
        assert_eq!(select_alpn(&ALPN::H1, offered).unwrap(), b"http/1.1");
        assert!(select_alpn(&ALPN::H2, b"\x08http/1.1").is_err());
        assert!(select_alpn(&ALPN::H1, b"").is_err());
    }
}
