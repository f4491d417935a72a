//! The folder backend: one file per key, written whole by renaming a finished temporary
//! file over it, so a reader on this machine or on another one mounting the same volume
//! never sees half a certificate. The folder holds private keys: it is made 0700 and its
//! files 0600.
//!
//! The lock is a file made with `link(2)`, which fails when the name exists, holding its
//! owner and when its lease runs out (wall-clock milliseconds: instances sharing a volume
//! need clocks that agree to within the lease). A lock whose lease has run out (its holder
//! died) is taken over.

use super::{is_safe_segment, Storage, StorageError, StorageResult};
use async_trait::async_trait;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    pub fn new(root: PathBuf) -> Self {
        DirStorage { root }
    }

    fn path(&self, key: &str) -> StorageResult<PathBuf> {
        if !key.split('/').all(is_safe_segment) {
            return Err(StorageError(format!("invalid storage key {key:?}")));
        }
        Ok(self.root.join(key))
    }

    fn lock_path(&self, name: &str) -> StorageResult<PathBuf> {
        self.path(&format!("locks/{name}"))
    }

    /// Runs blocking file work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> StorageResult<T> {
        let root = self.root.display().to_string();
        match tokio::task::spawn_blocking(work).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StorageError(format!("storage folder {root}: {e}"))),
            Err(e) => Err(StorageError(format!("storage folder {root}: {e}"))),
        }
    }
}

#[async_trait]
impl Storage for DirStorage {
    async fn get(&self, key: &str) -> StorageResult<Option<Vec<u8>>> {
        let path = self.path(key)?;
        self.blocking(move || match fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn put(&self, key: &str, value: &[u8], _ttl: Option<Duration>) -> StorageResult<()> {
        let path = self.path(key)?;
        let value = value.to_vec();
        self.blocking(move || write_atomically(&path, &value)).await
    }

    async fn delete(&self, key: &str) -> StorageResult<()> {
        let path = self.path(key)?;
        self.blocking(move || match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    async fn try_lock(&self, name: &str, owner: &str, lease: Duration) -> StorageResult<bool> {
        let path = self.lock_path(name)?;
        let owner = owner.to_string();
        self.blocking(move || try_lock(&path, &owner, lease)).await
    }

    async fn renew_lock(&self, name: &str, owner: &str, lease: Duration) -> StorageResult<bool> {
        let path = self.lock_path(name)?;
        let owner = owner.to_string();
        self.blocking(move || match read_lock(&path)? {
            Some(held) if held.owner == owner => {
                write_atomically(&path, lock_text(&owner, lease).as_bytes())?;
                Ok(true)
            }
            _ => Ok(false),
        })
        .await
    }

    async fn unlock(&self, name: &str, owner: &str) -> StorageResult<()> {
        let path = self.lock_path(name)?;
        let owner = owner.to_string();
        self.blocking(move || match read_lock(&path)? {
            Some(held) if held.owner == owner => match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            _ => Ok(()),
        })
        .await
    }

    fn describe(&self) -> String {
        format!("folder {}", self.root.display())
    }
}

fn create_dirs(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// A temporary file beside `path`, written and synced, whose name no other writer uses.
fn temporary(path: &Path, value: &[u8]) -> std::io::Result<PathBuf> {
    let dir = path.parent().expect("storage paths are below the root");
    create_dirs(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("value");
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = f.write_all(value).and_then(|_| f.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

fn write_atomically(path: &Path, value: &[u8]) -> std::io::Result<()> {
    let tmp = temporary(path, value)?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

struct HeldLock {
    owner: String,
    /// Wall-clock milliseconds since the epoch.
    expires: u128,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

fn lock_text(owner: &str, lease: Duration) -> String {
    format!("{owner}\n{}\n", now_ms() + lease.as_millis())
}

/// The lock's holder; `None` when there is no lock. A file that cannot be read as one (made
/// by something else) counts as expired.
fn read_lock(path: &Path) -> std::io::Result<Option<HeldLock>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lines = text.lines();
    let owner = lines.next().unwrap_or_default().to_string();
    let expires = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    Ok(Some(HeldLock { owner, expires }))
}

fn try_lock(path: &Path, owner: &str, lease: Duration) -> std::io::Result<bool> {
    // Twice at most: once more after taking over an expired lock.
    for _ in 0..2 {
        let tmp = temporary(path, lock_text(owner, lease).as_bytes())?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {}
        }
        let Some(held) = read_lock(path)? else {
            continue; // released in between
        };
        if held.owner == owner {
            write_atomically(path, lock_text(owner, lease).as_bytes())?;
            return Ok(true);
        }
        if held.expires > now_ms() {
            return Ok(false);
        }
        // Expired: move it aside, and check that what was moved is the expired lock and not
        // one another instance took over in the meantime (then put that one back).
        let aside = path.with_extension(format!("{:016x}.expired", rand::random::<u64>()));
        match fs::rename(path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
        let moved = read_lock(&aside)?;
        let same = moved.is_some_and(|m| m.owner == held.owner && m.expires == held.expires);
        if !same {
            let _ = fs::hard_link(&aside, path);
            let _ = fs::remove_file(&aside);
            return Ok(false);
        }
        let _ = fs::remove_file(&aside);
        log::info!(
            "acme: took over the expired lock {} of {}",
            path.display(),
            held.owner
        );
    }
    Ok(false)
}
