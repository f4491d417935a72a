//! The answers to the CA's challenges, as every instance gives them: read from storage (the
//! instance that ordered wrote them there), with a short local cache so that the CA's burst
//! of validation requests (several vantage points, retries) costs one storage read.

use super::storage::{is_safe_segment, keys, Storage, StorageError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a found answer is kept locally. An HTTP-01 token is never reused, so its answer
/// can be kept a while; a TLS-ALPN-01 answer is found by domain, and the next order for the
/// same domain (a retry seconds later) has another one, so it is kept only briefly.
const HTTP01_CACHE: Duration = Duration::from_secs(30);
const TLS_ALPN01_CACHE: Duration = Duration::from_secs(2);
/// A challenge request waits no longer for storage: the CA retries, a client asking for
/// a token should not hold a connection.
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Answers kept locally at most (an order has one per domain).
const CACHE_SIZE: usize = 256;

/// An answer found, and when.
type Cached = (Instant, Arc<Vec<u8>>);

/// Reads challenge answers from storage, through a small cache.
pub struct Answers {
    storage: Arc<dyn Storage>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Answers {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Answers {
            storage,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key authorization for HTTP-01 `token`, or `None` (unknown token, storage down).
    pub async fn http01(&self, token: &str) -> Option<String> {
        // RFC 8555 8.3: base64url characters only; anything else is not a token.
        if token.is_empty()
            || token.len() > 255
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        let value = self.read(&keys::http01(token), HTTP01_CACHE).await?;
        String::from_utf8(value.to_vec()).ok()
    }

    /// The TLS-ALPN-01 certificate and key (PEM) for `domain`, or `None`.
    pub async fn tls_alpn01(&self, domain: &str) -> Option<(String, String)> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if !is_safe_segment(&domain) {
            return None;
        }
        let value = self
            .read(&keys::tls_alpn01(&domain), TLS_ALPN01_CACHE)
            .await?;
        let text = std::str::from_utf8(&value).ok()?;
        let key_start = text.find("-----BEGIN PRIVATE KEY-----")?;
        Some((text[..key_start].to_string(), text[key_start..].to_string()))
    }

    /// Keeps an answer this instance just stored, so that it answers even while storage is
    /// slow, and replaces whatever answer it cached before for the same key.
    pub fn remember(&self, key: &str, value: &[u8]) {
        self.insert(key, Arc::new(value.to_vec()));
    }

    pub fn forget(&self, key: &str) {
        self.cache.lock().unwrap().remove(key);
    }

    async fn read(&self, key: &str, keep: Duration) -> Option<Arc<Vec<u8>>> {
        if let Some((at, value)) = self.cache.lock().unwrap().get(key) {
            if at.elapsed() < keep {
                return Some(value.clone());
            }
        }
        // Only answers found are cached: a token asked before its answer was stored must
        // still be found once it is.
        let read = tokio::time::timeout(READ_TIMEOUT, self.storage.get(key)).await;
        match read
            .unwrap_or_else(|_| Err(StorageError(format!("no answer within {READ_TIMEOUT:?}"))))
        {
            Ok(Some(value)) => {
                let value = Arc::new(value);
                self.insert(key, value.clone());
                Some(value)
            }
            Ok(None) => None,
            Err(e) => {
                log::warn!("acme: cannot read the challenge answer {key}: {e}");
                None
            }
        }
    }

    fn insert(&self, key: &str, value: Arc<Vec<u8>>) {
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_SIZE {
            let now = Instant::now();
            cache.retain(|_, (at, _)| now.duration_since(*at) < HTTP01_CACHE);
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
        }
        cache.insert(key.to_string(), (Instant::now(), value));
    }
}

/// The self-signed certificate answering a TLS-ALPN-01 challenge (RFC 8737): valid for
/// `domain` only, carrying the SHA-256 of the key authorization in the critical
/// acmeIdentifier extension. Returns the certificate and its key, PEM.
pub fn tls_alpn01_certificate(
    domain: &str,
    key_authorization_sha256: &[u8],
) -> Result<(String, String), String> {
    let mut params = rcgen::CertificateParams::new(vec![domain.to_string()])
        .map_err(|e| format!("TLS-ALPN-01 certificate for {domain}: {e}"))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(
        key_authorization_sha256,
    )];
    let key = rcgen::KeyPair::generate().map_err(|e| format!("TLS-ALPN-01 key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("TLS-ALPN-01 certificate for {domain}: {e}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::storage::DirStorage;

    fn temp_storage() -> (Arc<dyn Storage>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "portico-acme-answers-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        (Arc::new(DirStorage::new(dir.clone())), dir)
    }

    #[tokio::test]
    async fn answers_come_from_storage_and_bad_tokens_never_reach_it() {
        let (storage, dir) = temp_storage();
        let answers = Answers::new(storage.clone());
        assert_eq!(answers.http01("tok_en-1").await, None);
        storage
            .put(&keys::http01("tok_en-1"), b"tok_en-1.thumb", None)
            .await
            .unwrap();
        assert_eq!(
            answers.http01("tok_en-1").await.as_deref(),
            Some("tok_en-1.thumb"),
            "a miss is not cached"
        );
        for bad in ["../x", "a/b", "a.b", "", "a b"] {
            assert_eq!(answers.http01(bad).await, None, "{bad:?}");
        }
        // Cached: still answered while storage no longer has it (the CA's retries).
        storage.delete(&keys::http01("tok_en-1")).await.unwrap();
        assert!(answers.http01("tok_en-1").await.is_some());

        let (cert, key) = tls_alpn01_certificate("a.example", &[7u8; 32]).unwrap();
        let stored = format!("{cert}{key}");
        storage
            .put(&keys::tls_alpn01("a.example"), stored.as_bytes(), None)
            .await
            .unwrap();
        let (c, k) = answers.tls_alpn01("A.example.").await.unwrap();
        assert_eq!((c.as_str(), k.as_str()), (cert.as_str(), key.as_str()));
        assert_eq!(answers.tls_alpn01("../a.example").await, None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_tls_alpn01_certificate_carries_the_digest_in_a_critical_extension() {
        let digest = [0xabu8; 32];
        let (cert, _) = tls_alpn01_certificate("a.example", &digest).unwrap();
        let x509 = boring::x509::X509::from_pem(cert.as_bytes()).unwrap();
        let der = x509.to_der().unwrap();
        // id-pe-acmeIdentifier 1.3.6.1.5.5.7.1.31, critical, OCTET STRING of the digest.
        let oid = [
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f, 0x01, 0x01, 0xff,
        ];
        assert!(
            der.windows(oid.len()).any(|w| w == oid),
            "extension present and critical"
        );
        let mut value = vec![0x04, 0x20];
        value.extend_from_slice(&digest);
        assert!(der.windows(value.len()).any(|w| w == value.as_slice()));
    }
}
