//! Starting from etcd: the newest revision when etcd answers; the cache when it cannot be
//! reached; otherwise the reason, and no start (docs/fleet.md, "When etcd is down").

use super::cache::read_cache;
use super::etcd::{Document, Etcd};
use super::FleetError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a start waits for etcd (all members together) before it turns to the cache.
pub const START_WITHIN: Duration = Duration::from_secs(4);

/// The config an instance starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub document: Document,
    /// The cache file, when the document came from it rather than from etcd.
    pub from_cache: Option<PathBuf>,
    /// For a start from the cache: the one line to print on stderr, naming the cache, the
    /// revision and why etcd was not used.
    pub notice: Option<String>,
}

/// Reads the document from etcd within `within`. If no member can be reached, takes the cache
/// at `cache` instead, provided it holds the same key of the same cluster. A refusal (wrong
/// password), an empty key or an unusable cache is an error, as is no cache at all: the
/// caller exits 1 with it.
pub fn start(etcd: &Etcd, cache: &Path, within: Duration) -> Result<Start, FleetError> {
    let unreachable = match etcd.read(within) {
        Ok(document) => {
            return Ok(Start {
                document,
                from_cache: None,
                notice: None,
            })
        }
        Err(e) if e.is_unreachable() => e,
        Err(e) => return Err(e),
    };
    let cached = match read_cache(cache) {
        Ok(Some(d)) if d.source.same_document(etcd.source()) => Ok(d),
        Ok(Some(d)) => Err(format!("holds {}, not this key of this cluster", d.source)),
        Ok(None) => Err("does not exist".to_string()),
        Err(e) => Err(format!("is unusable: {e}")),
    };
    match cached {
        Ok(document) => {
            let notice = format!(
                "started from cache {} (revision {} of {}): {unreachable}",
                cache.display(),
                document.revision,
                document.source
            );
            Ok(Start {
                document,
                from_cache: Some(cache.to_path_buf()),
                notice: Some(notice),
            })
        }
        Err(reason) => Err(FleetError::NoCache {
            unreachable: Box::new(unreachable),
            path: cache.to_path_buf(),
            reason,
        }),
    }
}
