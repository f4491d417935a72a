//! The listeners' side of the CA's challenges, answered from storage by every instance
//! (docs/acme.md): HTTP-01 on plain listeners before anything else looks at the request,
//! TLS-ALPN-01 in the TLS listeners' handshakes.

use super::fleet::{http01_live, live};
use super::{http01_token, offers_acme_tls, Challenge};
use foreign_types::ForeignTypeRef;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef};
use pingora_http::ResponseHeader;
use std::sync::LazyLock;

/// Whether a plain listener's request is the CA's HTTP-01 request: a live manager uses
/// HTTP-01 and the path is `/.well-known/acme-challenge/TOKEN`. One flag load and one
/// prefix comparison, no allocation.
pub fn is_http01(path: &str) -> bool {
    http01_live() && http01_token(path).is_some()
}

/// Answers an HTTP-01 request (see [`is_http01`]) with the key authorization from storage,
/// or 404 for a token no live manager knows; no plugin sees it. Returns the status sent.
pub async fn answer_http01(session: &mut pingora_proxy::Session) -> pingora_core::Result<u16> {
    let token = http01_token(session.req_header().uri.path())
        .unwrap_or_default()
        .to_string();
    let mut answer = None;
    for s in live().iter() {
        if s.acme.challenge() == Challenge::Http01 {
            answer = s.acme.http01_answer(&token).await;
            if answer.is_some() {
                break;
            }
        }
    }
    let (status, body) = match answer {
        Some(key_authorization) => (200, key_authorization),
        None => (404, "404 no such ACME challenge\n".to_string()),
    };
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header(http::header::CONTENT_TYPE, "text/plain")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body.into()), true).await?;
    }
    Ok(status)
}

/// Where a handshake stands with TLS-ALPN-01 (kept on the connection's `SSL`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum AlpnChallenge {
    Offered,
    Answered,
}

static STATE: LazyLock<Index<Ssl, AlpnChallenge>> =
    LazyLock::new(|| Ssl::new_ex_index().expect("an OpenSSL ex_data index"));

/// The ALPN extension's type (RFC 7301).
const ALPN_EXTENSION: std::ffi::c_uint = 16;

/// In the client hello callback: notes whether the client offers `acme-tls/1` (only
/// there can OpenSSL show what a client offers) when a live manager uses TLS-ALPN-01.
pub fn note_tls_alpn01(ssl: &mut SslRef) {
    if !live()
        .iter()
        .any(|s| s.acme.challenge() == Challenge::TlsAlpn01)
    {
        return;
    }
    let mut data: *const u8 = std::ptr::null();
    let mut len: usize = 0;
    // SAFETY: `ssl` is the live connection's, inside its client hello callback, which is
    // where OpenSSL allows this call; the data it points to lives as long as the callback.
    let found = unsafe {
        openssl_sys::SSL_client_hello_get0_ext(ssl.as_ptr(), ALPN_EXTENSION, &mut data, &mut len)
    };
    if found != 1 || data.is_null() || len < 2 {
        return;
    }
    // SAFETY: OpenSSL says `len` bytes are readable at `data`.
    let ext = unsafe { std::slice::from_raw_parts(data, len) };
    // A two-byte list length, then the list in wire format.
    if offers_acme_tls(&ext[2..]) {
        ssl.set_ex_data(*STATE, AlpnChallenge::Offered);
    }
}

/// In the certificate callback: when the client offered `acme-tls/1`, serves the
/// challenge certificate for its SNI from storage and returns true; false otherwise (the
/// listener's own certificates are then served, and `acme-tls/1` is not chosen).
pub async fn answer_tls_alpn01(ssl: &mut SslRef) -> bool {
    if ssl.ex_data(*STATE) != Some(&AlpnChallenge::Offered) {
        return false;
    }
    let Some(sni) = ssl
        .servername(openssl::ssl::NameType::HOST_NAME)
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
    else {
        return false;
    };
    let mut found = None;
    for s in live().iter() {
        if s.acme.challenge() == Challenge::TlsAlpn01 && s.acme.names().contains(&sni) {
            found = s.acme.tls_alpn01_cert(&sni).await;
            if found.is_some() {
                break;
            }
        }
    }
    let Some((cert, key)) = found else {
        log::warn!("acme: a TLS-ALPN-01 handshake for {sni:?}, but no challenge is pending for it");
        return false;
    };
    let served = openssl::x509::X509::from_pem(cert.as_bytes())
        .and_then(|c| {
            let k = openssl::pkey::PKey::private_key_from_pem(key.as_bytes())?;
            pingora_core::tls::ext::ssl_use_certificate(ssl, &c)?;
            pingora_core::tls::ext::ssl_use_private_key(ssl, &k)
        })
        .is_ok();
    if served {
        ssl.set_ex_data(*STATE, AlpnChallenge::Answered);
    }
    served
}

/// In the ALPN callback: whether this handshake serves a TLS-ALPN-01 challenge certificate
/// (then `acme-tls/1` is the protocol chosen).
pub fn tls_alpn01_answered(ssl: &SslRef) -> bool {
    ssl.ex_data(*STATE) == Some(&AlpnChallenge::Answered)
}
