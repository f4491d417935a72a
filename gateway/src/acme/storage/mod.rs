//! Where the instances that share one certificate keep it: the ACME account, the issued
//! certificates, the answers to the CA's pending challenges and the order lock.
//!
//! Two backends behind one small trait, a key-value store with a leased lock: Redis (the
//! pair: both instances reach it) and a folder (one instance, or a volume several mount).
//! Every call returns an error rather than panicking when the backend is unreachable; the
//! callers keep serving what they loaded and try again.

mod dir;
mod redis;
mod store;

pub use dir::DirStorage;
pub use redis::RedisStorage;
pub use store::{is_safe_segment, Storage, StorageError, StorageResult};

use super::StorageConfig;
use std::sync::Arc;

/// Opens the configured backend without any I/O: a Redis connection is made on first use
/// (and again after a failure), a folder is created on first write.
pub fn open(config: &StorageConfig) -> Result<Arc<dyn Storage>, String> {
    match (&config.redis, &config.dir) {
        (Some(redis), None) => Ok(Arc::new(RedisStorage::new(&redis.url)?)),
        (None, Some(dir)) => Ok(Arc::new(DirStorage::new(dir.clone()))),
        _ => Err("storage: set exactly one of redis or dir".into()),
    }
}

/// The keys, in one place. `id`: a certificate's [`super::certificate::CertificateId`].
pub mod keys {
    /// The account, per directory URL (a staging account is not a production one).
    pub fn account(directory_id: &str) -> String {
        format!("accounts/{directory_id}")
    }
    /// The certificate chain and its key, PEM.
    pub fn certificate(id: &str) -> String {
        format!("certificates/{id}")
    }
    /// When the next order may be placed after failures, shared so that a pair backs off
    /// together instead of each instance trying in turn.
    pub fn backoff(id: &str) -> String {
        format!("backoff/{id}")
    }
    /// The order lock's name.
    pub fn order_lock(id: &str) -> String {
        format!("order-{id}")
    }
    /// The key authorization answering the HTTP-01 challenge `token`.
    pub fn http01(token: &str) -> String {
        format!("challenges/http-01/{token}")
    }
    /// The certificate and key answering the TLS-ALPN-01 challenge for `domain`.
    pub fn tls_alpn01(domain: &str) -> String {
        format!("challenges/tls-alpn-01/{domain}")
    }
}
