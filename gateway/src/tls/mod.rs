//! TLS termination: certificates chosen by SNI from a store that a reload can replace, and
//! the listener's TLS settings (versions, ALPN, client certificates).
//!
//! The library is BoringSSL, through Pingora (docs/security.md, "The TLS library"). The
//! settings start from Mozilla's "intermediate" profile and are then narrowed: TLS 1.2 and 1.3
//! only; on TLS 1.2 only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (forward
//! secrecy, AEAD); the curves Mozilla lists (plus the hybrid post-quantum X25519MLKEM768 for
//! clients that offer it); the server's cipher order; no renegotiation; resumption from
//! tickets under keys BoringSSL rotates, and from a server-side cache for TLS 1.2 session ids.
//! OCSP responses are stapled when configured.

mod certs;
mod challenge;
mod ciphers;
pub mod client_auth;
pub mod client_cert;
mod connection;
mod session_cache;
mod settings;
mod sni;

pub use certs::{generate_dev_cert, load_certified_key, with_ocsp_staple, CertStore, CertifiedKey};
pub use challenge::{is_challenge, HandshakeChallenge};
pub use client_auth::ClientAuth;
pub use client_cert::ClientCert;
pub use connection::TlsConnection;
pub use settings::listener_settings;
pub use sni::CertResolver;
