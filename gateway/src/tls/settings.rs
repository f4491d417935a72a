//! A TLS listener's settings: versions, ciphers, groups, session resumption, ALPN, and the
//! callbacks that pick certificates and staple OCSP responses.

use super::challenge::{mark_challenge, offered_alpn, select_alpn, HandshakeChallenge};
use super::ciphers::{client_prefers_chacha, prefer_chacha, set_server_order};
use super::session_cache::keep_sessions;
use super::sni::{CertResolver, SniCallback};
use crate::config::{Alpn, TlsVersion};
use boring::ssl::{ExtensionType, SelectCertError};
use foreign_types::ForeignTypeRef;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::ALPN;
use pingora_core::tls::ssl::{NameType, SslOptions, SslSessionCacheMode, SslVersion};
use std::sync::Arc;

/// Key exchange groups: Mozilla's (X25519, P-256, P-384) after the hybrid post-quantum one.
const GROUPS: &str = "X25519MLKEM768:X25519:P-256:P-384";

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
    set_server_order(&mut settings)?;
    settings
        .set_curves_list(GROUPS)
        .map_err(|e| e.to_string())?;
    // BoringSSL never renegotiates as a server and has no TLS compression: nothing to turn off.
    settings.set_options(SslOptions::CIPHER_SERVER_PREFERENCE);
    // Resumption (docs/security.md, "TLS"): session tickets, sealed with keys BoringSSL makes
    // itself and replaces every 48 hours, for TLS 1.3 (BoringSSL resumes TLS 1.3 from tickets
    // only) and TLS 1.2 clients that take them; TLS 1.2 session ids from Portico's cache.
    settings.set_session_cache_mode(SslSessionCacheMode::SERVER | SslSessionCacheMode::NO_INTERNAL);
    // One TLS 1.3 ticket per handshake instead of the library's two: a ticket may be presented
    // again, so a second one only doubles the work of every full handshake.
    // SAFETY: the context is the one being built, not yet shared.
    unsafe { boring_sys::SSL_CTX_set_num_tickets(settings.as_ptr(), 1) };
    let cache = resolver.sessions.clone();
    keep_sessions(&mut settings, cache.clone());
    // SAFETY: the sessions handed back were all made by this same context (the callback
    // above), which is what the library requires of a session returned here.
    unsafe { settings.set_get_session_callback(move |_, id| Ok(cache.get(id))) };
    // Needed for resumption when client certificates are verified. Set again per handshake,
    // before the session is looked up, from the current checks (`session_context`).
    settings
        .set_session_id_context(&resolver.session_context())
        .map_err(|e| e.to_string())?;
    let contexts = resolver.clone();
    // BoringSSL runs this callback before it picks a suite or decides whether to resume: here a
    // ChaCha20-first client gets ChaCha20 first; a session (or ticket) made under other checks
    // is refused, whatever its age; a CA's challenge handshake is marked, before the
    // certificate callback needs to know.
    let early = challenge.clone();
    settings.set_select_certificate_callback(move |mut hello| {
        if client_prefers_chacha(&hello) && !prefer_chacha(hello.ssl_mut()) {
            return Err(SelectCertError::ERROR);
        }
        let challenged = early.as_ref().is_some_and(|c| {
            let alpn = hello.get_extension(ExtensionType::APPLICATION_LAYER_PROTOCOL_NEGOTIATION);
            c.alpn(offered_alpn(alpn.unwrap_or_default())).is_some()
        });
        if challenged {
            mark_challenge(hello.ssl_mut());
        }
        let context = contexts.session_context();
        // SAFETY: the connection is live and borrowed for the call; BoringSSL copies the 32
        // bytes (its maximum context length).
        let set = unsafe {
            boring_sys::SSL_set_session_id_context(
                hello.ssl_mut().as_ptr(),
                context.as_ptr(),
                context.len(),
            )
        };
        if set == 1 {
            Ok(())
        } else {
            Err(SelectCertError::ERROR)
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
                (Some(der), Some(served)) if same_certificate(served, &ck.chain[0]) => {
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
        // Pingora's choice, unless the handshake is a challenge (whose certificate the
        // certificate callback has served by now, told by the ClientHello callback's mark).
        settings.set_alpn_select_callback(move |_, offered| match challenge.alpn(offered) {
            Some(protocol) => Ok(protocol),
            None => select_alpn(&alpn, offered),
        });
    }
    Ok(settings)
}

/// Whether two certificates are the same one (the library's types have no equality).
fn same_certificate(a: &boring::x509::X509Ref, b: &boring::x509::X509Ref) -> bool {
    match (
        a.digest(boring::hash::MessageDigest::sha256()),
        b.digest(boring::hash::MessageDigest::sha256()),
    ) {
        (Ok(a), Ok(b)) => *a == *b,
        _ => false,
    }
}
