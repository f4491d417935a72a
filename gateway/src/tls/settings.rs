//! A TLS listener's settings: versions, ciphers, groups, session resumption, ALPN, and the
//! callbacks that pick certificates and staple OCSP responses.

use super::challenge::{select_alpn, HandshakeChallenge};
use super::sni::{CertResolver, SniCallback};
use crate::config::{Alpn, TlsVersion};
use foreign_types::ForeignTypeRef;
use openssl::error::ErrorStack;
use openssl::ssl::ClientHelloResponse;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::ALPN;
use pingora_core::tls::ssl::{NameType, SslOptions, SslSessionCacheMode, SslVersion};
use std::sync::Arc;

extern "C" {
    /// Not in `openssl-sys` (only the context's); the OpenSSL that Pingora links provides it.
    fn SSL_set_session_id_context(
        ssl: *mut openssl_sys::SSL,
        sid_ctx: *const u8,
        len: std::ffi::c_uint,
    ) -> std::ffi::c_int;
}

/// TLS 1.2 suites: ECDHE only (forward secrecy), AEAD only, in the server's order of
/// preference. TLS 1.3 suites are all forward-secret AEADs (Mozilla's list, left as it is).
pub const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

/// Key exchange groups: Mozilla's (X25519, P-256, P-384) after the hybrid post-quantum one.
/// OpenSSL's default list would add X448, P-521 and finite-field groups.
pub const GROUPS: &str = "X25519MLKEM768:X25519:P-256:P-384";

/// The same without the hybrid group, for an OpenSSL older than 3.5 (a build against the
/// system's library with `OPENSSL_NO_VENDOR=1`), which does not know it.
const CLASSIC_GROUPS: &str = "X25519:P-256:P-384";

/// Builds the TLS settings of a listener.
///
/// Client certificates are asked for per connection, from the resolver's store (see
/// [`super::ClientAuth`]), not here. `challenge`, if any, answers the handshakes that are
/// a CA's challenge (ACME's TLS-ALPN-01) before the listener's own ALPN and certificates.
pub fn listener_settings(
    resolver: Arc<CertResolver>,
    min_version: TlsVersion,
    alpn: Alpn,
    challenge: Option<Arc<dyn HandshakeChallenge>>,
) -> Result<TlsSettings, String> {
    let callback = SniCallback {
        resolver: resolver.clone(),
        challenge: challenge.clone(),
    };
    let mut settings =
        TlsSettings::with_callbacks(Box::new(callback)).map_err(|e| e.to_string())?;
    // TLS 1.0 and 1.1 are never offered, whatever the config says.
    let min = match min_version {
        TlsVersion::Tls13 => SslVersion::TLS1_3,
        TlsVersion::Tls12 => SslVersion::TLS1_2,
    };
    settings
        .set_min_proto_version(Some(min))
        .map_err(|e| e.to_string())?;
    settings
        .set_cipher_list(TLS12_CIPHERS)
        .map_err(|e| e.to_string())?;
    if settings.set_groups_list(GROUPS).is_err() {
        settings
            .set_groups_list(CLASSIC_GROUPS)
            .map_err(|e| e.to_string())?;
    }
    // PRIORITIZE_CHACHA: a client that lists ChaCha20 first (no AES hardware) still gets it.
    settings.set_options(
        SslOptions::CIPHER_SERVER_PREFERENCE
            | SslOptions::PRIORITIZE_CHACHA
            | SslOptions::NO_RENEGOTIATION
            | SslOptions::NO_TICKET
            | SslOptions::NO_COMPRESSION,
    );
    // OpenSSL reads whatever has arrived into its own record buffer in one call, so the
    // listener needs no read buffer of its own under TLS (see `server.rs`); without it, each
    // record would take two reads (header, then body).
    settings.set_read_ahead(true);
    // Resumption from a server-side cache: TLS 1.2 session ids, TLS 1.3 stateful tickets.
    settings.set_session_cache_mode(SslSessionCacheMode::SERVER | SslSessionCacheMode::NO_INTERNAL);
    // One TLS 1.3 ticket per handshake instead of OpenSSL's two: this cache lets a ticket be
    // presented again (see `SessionCache`), so a second one only doubles the work of every
    // full handshake (serializing and storing the session) and the cache's memory.
    settings.set_num_tickets(1).map_err(|e| e.to_string())?;
    let cache = resolver.sessions.clone();
    let store = cache.clone();
    settings.set_new_session_callback(move |_, session| store.insert(session));
    // SAFETY: the sessions handed back were all made by this same context (the callback
    // above), which is what OpenSSL requires of a session returned here.
    unsafe { settings.set_get_session_callback(move |_, id| cache.get(id)) };
    // Needed for resumption when client certificates are verified. Set again per handshake,
    // before the session is looked up, from the current checks (`session_context`).
    settings
        .set_session_id_context(&resolver.session_context())
        .map_err(|e| e.to_string())?;
    let contexts = resolver.clone();
    settings.set_client_hello_callback(move |ssl, _alert| {
        let context = contexts.session_context();
        // SAFETY: `ssl` is the live connection's, borrowed for the call; OpenSSL copies the
        // 32 bytes (its maximum context length).
        let set = unsafe {
            SSL_set_session_id_context(ssl.as_ptr(), context.as_ptr(), context.len() as _)
        };
        if set == 1 {
            Ok(ClientHelloResponse::SUCCESS)
        } else {
            Err(ErrorStack::get())
        }
    });
    let staples = resolver.clone();
    settings
        .set_status_callback(move |ssl| {
            let store = staples.store.load();
            let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
            let Some(ck) = store.pick(sni.as_deref()) else {
                return Ok(false);
            };
            // A reload between choosing the certificate and this call could pick another one.
            match (&ck.ocsp, ssl.certificate()) {
                (Some(der), Some(served)) if *served == *ck.chain[0] => {
                    ssl.set_ocsp_status(der)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .map_err(|e| e.to_string())?;
    let alpn = match (alpn.h2, alpn.http1) {
        (true, true) => ALPN::H2H1,
        (true, false) => ALPN::H2,
        _ => ALPN::H1,
    };
    settings.set_alpn(alpn.clone());
    if let Some(challenge) = challenge {
        // Pingora's choice, unless the handshake is a challenge (answered by the
        // certificate callback, which OpenSSL runs after this one).
        settings.set_alpn_select_callback(move |_, offered| match challenge.alpn(offered) {
            Some(protocol) => Ok(protocol),
            None => select_alpn(&alpn, offered),
        });
    }
    Ok(settings)
}
