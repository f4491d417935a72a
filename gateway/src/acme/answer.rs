//! The listeners' side of the CA's challenges, answered from storage by every instance
//! (docs/acme.md): HTTP-01 on plain listeners before anything else looks at the request,
//! TLS-ALPN-01 in the TLS listeners' handshakes.

use super::fleet::{http01_live, live};
use super::{http01_token, offers_acme_tls, Challenge, ACME_TLS_ALPN};
use crate::tls::HandshakeChallenge;
use async_trait::async_trait;
use boring::ssl::SslRef;
use pingora_http::ResponseHeader;

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

/// When the ClientHello arrives, and in the ALPN callback: whether to choose `acme-tls/1`, i.e. the client offers it (only the CA does) and a live manager
/// uses TLS-ALPN-01. A scan of the offered list, no allocation.
pub fn tls_alpn01_wanted(offered: &[u8]) -> bool {
    offers_acme_tls(offered)
        && live()
            .iter()
            .any(|s| s.acme.challenge() == Challenge::TlsAlpn01)
}

/// In the certificate callback: when the ClientHello offered `acme-tls/1` and it is wanted
/// (see [`tls_alpn01_wanted`]; the ALPN choice itself comes after), serves the challenge
/// certificate for the SNI from storage and returns true; false otherwise (the listener's
/// own certificates are then served).
pub async fn answer_tls_alpn01(ssl: &mut SslRef) -> bool {
    if !crate::tls::is_challenge(ssl) {
        return false;
    }
    let Some(sni) = ssl
        .servername(boring::ssl::NameType::HOST_NAME)
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
    boring::x509::X509::from_pem(cert.as_bytes())
        .and_then(|c| {
            let k = boring::pkey::PKey::private_key_from_pem(key.as_bytes())?;
            pingora_core::tls::ext::ssl_use_certificate(ssl, &c)?;
            pingora_core::tls::ext::ssl_use_private_key(ssl, &k)
        })
        .is_ok()
}

/// TLS-ALPN-01 for the TLS listeners: what the runtime hands `tls::listener_settings`, so
/// that `tls` answers the CA's handshakes without depending on `acme`.
pub struct TlsAlpn01;

#[async_trait]
impl HandshakeChallenge for TlsAlpn01 {
    fn alpn(&self, offered: &[u8]) -> Option<&'static [u8]> {
        tls_alpn01_wanted(offered).then_some(ACME_TLS_ALPN)
    }

    async fn answer(&self, ssl: &mut SslRef) -> bool {
        answer_tls_alpn01(ssl).await
    }
}
