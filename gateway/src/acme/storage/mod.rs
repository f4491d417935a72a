//! Where the instances that share one certificate keep it: the ACME account, the issued
//! certificates, the answers to the CA's pending challenges and the order lock.
//!
//! Two backends behind one small trait, a key-value store with a leased lock: Redis (the
//! pair: both instances reach it) and a folder (one instance, or a volume several mount).
//! Every call returns an error rather than panicking when the backend is unreachable; the
//! callers keep serving what they loaded and try again.

mod dir;
mod redis;

pub use dir::DirStorage;
pub use redis::RedisStorage;

use super::config::StorageConfig;
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A storage call that failed: the backend is unreachable, slow or refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageError {}

pub type StorageResult<T> = Result<T, StorageError>;

/// A key-value store with a leased lock, shared by every instance that uses the same
/// backend. Keys are `/`-separated segments of `[A-Za-z0-9._-]` (see [`is_safe_segment`]).
#[async_trait]
pub trait Storage: Send + Sync {
    async fn get(&self, key: &str) -> StorageResult<Option<Vec<u8>>>;
    /// Writes `value` whole: a reader sees the old value or the new one, never a part.
    /// `ttl`: how long the value is of use; Redis forgets it then, a folder keeps it until
    /// it is deleted (the values given a `ttl` here are small).
    async fn put(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> StorageResult<()>;
    async fn delete(&self, key: &str) -> StorageResult<()>;
    /// Takes the lock `name` for `owner` for `lease`, unless another owner holds it and its
    /// lease has not run out. True when `owner` now holds it.
    async fn try_lock(&self, name: &str, owner: &str, lease: Duration) -> StorageResult<bool>;
    /// Extends `owner`'s lease; false when `owner` no longer holds the lock.
    async fn renew_lock(&self, name: &str, owner: &str, lease: Duration) -> StorageResult<bool>;
    /// Releases the lock if `owner` holds it; another owner's lock is left alone.
    async fn unlock(&self, name: &str, owner: &str) -> StorageResult<()>;
    /// Where the storage is, for logs (a Redis URL without its password, a folder).
    fn describe(&self) -> String;
}

/// Opens the configured backend without any I/O: a Redis connection is made on first use
/// (and again after a failure), a folder is created on first write.
pub fn open(config: &StorageConfig) -> Result<Arc<dyn Storage>, String> {
    match (&config.redis, &config.dir) {
        (Some(redis), None) => Ok(Arc::new(RedisStorage::new(&redis.url)?)),
        (None, Some(dir)) => Ok(Arc::new(DirStorage::new(dir.clone()))),
        _ => Err("storage: set exactly one of redis or dir".into()),
    }
}

/// A key segment that is safe as a file name and as part of a Redis key: no `/`, no `..`,
/// nothing a shell or a path would read specially. Challenge tokens (base64url), domain
/// names and hex ids all are.
pub fn is_safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_segments_are_safe() {
        for ok in ["abc", "a.example.com", "Zm9v-bar_baz", "0123abcdef"] {
            assert!(is_safe_segment(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            "a\0",
            "é",
            &"a".repeat(256),
        ] {
            assert!(!is_safe_segment(bad), "{bad:?}");
        }
    }
}
