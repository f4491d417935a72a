//! Certificates obtained and renewed automatically over ACME (RFC 8555), shared by every
//! instance that uses the same storage (docs/acme.md).
//!
//! One [`Acme`] manager per configured certificate (`listeners[].tls.acme`). It serves a
//! self-signed placeholder until the first certificate is issued, publishes each new
//! certificate on a [`tokio::sync::watch`] channel, and answers the CA's challenges for the
//! listeners from storage, whichever instance placed the order:
//!
//! ```no_run
//! # async fn demo(config: gateway::acme::AcmeConfig) -> Result<(), String> {
//! use gateway::acme::Acme;
//! let acme = Acme::new(config)?;
//! acme.spawn();
//! let mut certificates = acme.subscribe();
//! while certificates.changed().await.is_ok() {
//!     let certificate = certificates.borrow_and_update().clone();
//!     // swap the listener's certificates for `certificate.chain_pem` / `key_pem`
//! }
//! # Ok(()) }
//! ```
//!
//! The listeners reach it through small hooks: [`go_live`] when a config starts serving,
//! [`Service`] running the managers, [`is_http01`]/[`answer_http01`] on plain listeners,
//! [`TlsAlpn01`] (over [`tls_alpn01_wanted`]/[`answer_tls_alpn01`]) in TLS handshakes,
//! [`status_json`] and [`refresh_metrics`] for the admin listener. Of the gateway it uses
//! only `config`, `metrics` and `tls`; the protocol is instant-acme's, keys, CSRs and
//! challenge certificates rcgen's, storage Redis or a folder.

mod answer;
mod certificate;
mod challenge;
mod check;
mod fleet;
mod https;
mod manager;
mod order;
mod report;
pub mod storage;

/// The config's side (`listeners[].tls.acme`), which `config` reads and checks.
pub use crate::config::acme::{
    AcmeConfig, Challenge, RedisStorageConfig, RenewBefore, StorageConfig,
};
pub use answer::{answer_http01, answer_tls_alpn01, is_http01, tls_alpn01_wanted, TlsAlpn01};
pub use certificate::{certificate_id, Certificate};
pub use challenge::tls_alpn01_certificate;
pub use check::check_listeners;
pub use fleet::{go_live, live, Served, Service};
pub use manager::{orders_total, Acme, AcmeStatus, OrderCounts};
pub use report::{refresh_metrics, served, status_json, ServedCertificate};

/// The ALPN protocol of TLS-ALPN-01 handshakes (RFC 8737): a listener that sees it offered
/// answers with [`Acme::tls_alpn01_cert`] and nothing else.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 requests; the rest of the path is the token.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// The token of an HTTP-01 request's path, `None` for any other path: one prefix comparison,
/// no allocation, so that every plain request can be checked before routing.
pub fn http01_token(path: &str) -> Option<&str> {
    path.strip_prefix(HTTP01_PREFIX)
        .filter(|token| !token.is_empty() && !token.contains(['/', '?']))
}

/// Whether a ClientHello's ALPN list (wire format: each protocol preceded by its length, as
/// the ALPN callback is handed it) offers `acme-tls/1`.
pub fn offers_acme_tls(alpn_wire: &[u8]) -> bool {
    let mut rest = alpn_wire;
    while let Some((&len, tail)) = rest.split_first() {
        let Some((protocol, after)) = tail.split_at_checked(len as usize) else {
            return false;
        };
        if protocol == ACME_TLS_ALPN {
            return true;
        }
        rest = after;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_paths_and_nothing_else() {
        assert_eq!(
            http01_token("/.well-known/acme-challenge/abc_-1"),
            Some("abc_-1")
        );
        for other in [
            "/",
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/a/b",
            "/.well-known/acme-challenge/a?x",
            "/.well-known/acme",
            "/api",
        ] {
            assert_eq!(http01_token(other), None, "{other}");
        }
    }

    #[test]
    fn acme_tls_is_found_in_a_wire_format_list() {
        assert!(offers_acme_tls(b"\x02h2\x0aacme-tls/1"));
        assert!(offers_acme_tls(b"\x0aacme-tls/1"));
        assert!(!offers_acme_tls(b"\x02h2\x08http/1.1"));
        assert!(!offers_acme_tls(b"\x0bacme-tls/1"), "a truncated list");
        assert!(!offers_acme_tls(b""));
    }
}
