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
//! The module depends on crates only (instant-acme for the protocol, rcgen for keys, CSRs
//! and challenge certificates, OpenSSL for HTTPS, redis for the shared storage), not on the
//! rest of the gateway.

mod certificate;
mod challenge;
mod config;
mod https;
mod manager;
mod order;
pub mod storage;

pub use certificate::{certificate_id, Certificate};
pub use challenge::tls_alpn01_certificate;
pub use config::{AcmeConfig, Challenge, RedisStorageConfig, RenewBefore, StorageConfig};
pub use manager::{orders_total, Acme, AcmeStatus, OrderCounts};

/// The ALPN protocol of TLS-ALPN-01 handshakes (RFC 8737): a listener that sees it offered
/// answers with [`Acme::tls_alpn01_cert`] and nothing else.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 requests; the rest of the path is the token.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";
