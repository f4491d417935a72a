//! What a storage backend is: a key-value store with a leased lock, and the keys it accepts.

use async_trait::async_trait;
use std::fmt;
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
