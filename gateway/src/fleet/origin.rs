//! Where the running config comes from, as the start and the reload path see it: a file, or a
//! key in etcd that is followed (docs/deployment.md, "A fleet"). Everything the gateway asks
//! of its config's origin goes through [`Origin`]: the first read, a reload's read, a new
//! revision turned into a config, what to remember once one is applied, and what `/status`
//! shows. Compiling and swapping the config stay the reload path's.

use super::cache::write_cache;
use super::etcd::{Document, Etcd};
use super::follow::{Follower, Update};
use super::source::ConfigSource;
use super::start::{start, START_WITHIN};
use super::FleetError;
use crate::config::{self, ConfigErrors};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// The cache a start looks at when etcd cannot be reached: this variable's value, else
/// [`DEFAULT_CACHE`]. The cache's place is a config key (`server.config_cache`), but a start
/// without etcd has no config to read it from (docs/deployment.md, "When etcd is down").
pub const ENV_CONFIG_CACHE: &str = "PORTICO_CONFIG_CACHE";
/// `server.config_cache`'s default.
pub const DEFAULT_CACHE: &str = "./portico-config-cache.yaml";

/// The `-c` argument, opened.
pub enum Origin {
    File(PathBuf),
    Etcd(Box<Followed>),
}

/// A key in etcd, with the revision served and the follower.
pub struct Followed {
    etcd: Etcd,
    /// The working directory at start: relative paths in a config from etcd resolve against it
    /// (a daemon later moves to `/`), the cache's among them.
    base: PathBuf,
    /// Where a start looks for the cache ([`ENV_CONFIG_CACHE`]).
    start_cache: PathBuf,
    /// The cache last written, so that a mismatch with `start_cache` is said once.
    written_to: Mutex<Option<PathBuf>>,
    /// The document last applied (or being started with).
    served: Mutex<Document>,
    /// Its revision, for `/status` without the lock (and for the follower's messages).
    revision: Arc<AtomicI64>,
    follower: Mutex<Option<Follower>>,
}

/// A config read and parsed: not yet compiled, checked against the running one or applied.
pub struct Fetched {
    pub source: config::Source,
    /// For a config from etcd: the document it was read from.
    document: Option<Document>,
}

impl Fetched {
    /// The etcd revision it was read at (`None` for a file).
    pub fn revision(&self) -> Option<i64> {
        self.document.as_ref().map(|d| d.revision)
    }
}

impl Origin {
    /// Opens the `-c` argument and reads the config to start with. For etcd, that is the
    /// newest revision, or the cache when etcd cannot be reached (printing the one stderr line
    /// that says so). The error is what to print before exiting 1.
    pub fn open(arg: &Path) -> Result<(Origin, Fetched), ConfigErrors> {
        let text = arg.to_string_lossy();
        let source = ConfigSource::parse(&text).map_err(whole)?;
        let etcd_source = match source {
            ConfigSource::File(path) => {
                // Resolved now: a daemon changes its working directory to `/`.
                let path = std::fs::canonicalize(&path).unwrap_or(path);
                let fetched = load_file(&path)?;
                return Ok((Origin::File(path), fetched));
            }
            ConfigSource::Etcd(s) => s,
        };
        let etcd = Etcd::from_env(etcd_source).map_err(whole)?;
        let base = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let cache = std::env::var(ENV_CONFIG_CACHE)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_CACHE.to_string());
        let start_cache = resolve(&base, &cache);
        let started = start(&etcd, &start_cache, START_WITHIN).map_err(whole)?;
        if let Some(line) = &started.notice {
            eprintln!("{line}");
        }
        let fetched = parse(&base, started.document.clone())?;
        let followed = Followed {
            etcd,
            base,
            start_cache,
            written_to: Mutex::new(None),
            revision: Arc::new(AtomicI64::new(started.document.revision)),
            served: Mutex::new(started.document),
            follower: Mutex::new(None),
        };
        Ok((Origin::Etcd(Box::new(followed)), fetched))
    }

    /// A reload's read (SIGHUP, `POST /reload`): the file again, or the key in etcd again. An
    /// etcd that cannot be reached makes the reload fail; its follower catches up later.
    pub fn fetch(&self) -> Result<Fetched, ConfigErrors> {
        match self {
            Origin::File(path) => load_file(path),
            Origin::Etcd(f) => {
                let document = f.etcd.read(START_WITHIN).map_err(whole)?;
                parse(&f.base, document)
            }
        }
    }

    /// The config being served, read again (a daemon builds it anew after its fork): the file,
    /// or the document already in hand, without asking etcd.
    pub fn current(&self) -> Result<Fetched, ConfigErrors> {
        match self {
            Origin::File(path) => load_file(path),
            Origin::Etcd(f) => parse(&f.base, f.served.lock().unwrap().clone()),
        }
    }

    /// True when `fetched` is older than the revision served: a reload's read and the
    /// follower crossed, and the newer one was applied first.
    pub fn is_stale(&self, fetched: &Fetched) -> bool {
        match (self.revision(), fetched.revision()) {
            (Some(served), Some(read)) => read < served,
            _ => false,
        }
    }

    /// Remembers `fetched` as the config served from now on (its revision for `/status`):
    /// called just before the swap, so that `/status` and what is served agree.
    pub fn serving(&self, fetched: &Fetched) {
        if let (Origin::Etcd(f), Some(document)) = (self, &fetched.document) {
            *f.served.lock().unwrap() = document.clone();
            f.revision.store(document.revision, Ordering::SeqCst);
        }
    }

    /// Once `fetched` is served, writes it to the cache (`server.config_cache` of that very
    /// config), for etcd. A cache that cannot be written is logged: serving goes on, only a
    /// start while etcd is down would miss it.
    pub fn applied(&self, fetched: &Fetched) {
        let (Origin::Etcd(f), Some(document)) = (self, &fetched.document) else {
            return;
        };
        let cache = resolve(&f.base, &fetched.source.config.server.config_cache);
        if let Err(e) = write_cache(&cache, document) {
            log::error!("{e}");
        }
        let mut written_to = f.written_to.lock().unwrap();
        if written_to.as_ref() != Some(&cache) {
            if cache != f.start_cache {
                log::warn!(
                    "config cache {}: a start while etcd is down looks at {}; set {ENV_CONFIG_CACHE}={} for this instance",
                    cache.display(),
                    f.start_cache.display(),
                    cache.display()
                );
            }
            *written_to = Some(cache);
        }
    }

    /// Starts following the key (nothing for a file). Each new revision, parsed as a config,
    /// goes to `reload` (the reload path: check, swap, count) on a thread of its own, outside
    /// any async runtime, like a start's compile (plugins may start threads or runtimes of
    /// their own). A revision that cannot be a config (the key deleted, not text) goes as an
    /// error, so it is counted as a failed reload too. Call it in the process that serves
    /// (after a daemon's fork: a fork keeps no thread).
    pub fn follow<R>(&self, mut reload: R)
    where
        R: FnMut(Result<Fetched, ConfigErrors>) -> Result<String, ConfigErrors> + Send + 'static,
    {
        let Origin::Etcd(f) = self else {
            return;
        };
        let (tx, rx) = std::sync::mpsc::channel::<Update>();
        let (base, served, source) = (f.base.clone(), f.revision.clone(), f.etcd.source().clone());
        std::thread::Builder::new()
            .name("portico-reload".into())
            .spawn(move || {
                while let Ok(update) = rx.recv() {
                    let (revision, fetched) = match update {
                        Update::Document(document) => (document.revision, parse(&base, document)),
                        Update::Unusable { revision, reason } => {
                            (revision, Err(ConfigErrors::single("", reason, None)))
                        }
                    };
                    log::info!("{source}: revision {revision}: reloading");
                    if reload(fetched).is_err() {
                        log::error!(
                            "{source}: revision {revision} refused; still serving revision {}",
                            served.load(Ordering::SeqCst)
                        );
                    }
                }
            })
            .expect("spawning the config reload thread");
        let from = f.revision.load(Ordering::SeqCst);
        *f.follower.lock().unwrap() = Some(f.etcd.follow(from, move |update| {
            let _ = tx.send(update);
        }));
    }

    /// `/status` `source`.
    pub fn kind(&self) -> &'static str {
        match self {
            Origin::File(_) => "file",
            Origin::Etcd(_) => "etcd",
        }
    }

    /// `/status` `revision`: the etcd revision served; `None` for a file.
    pub fn revision(&self) -> Option<i64> {
        match self {
            Origin::File(_) => None,
            Origin::Etcd(f) => Some(f.revision.load(Ordering::SeqCst)),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Etcd(followed) => write!(f, "{}", followed.etcd.source()),
        }
    }
}

impl Origin {
    /// `portico -c FILE -t --push URL`, once `-t` has accepted FILE: stores the file's text,
    /// byte for byte, at the URL's key. Returns the new revision.
    pub fn push(&self, url: &str) -> Result<i64, FleetError> {
        let refuse = |reason: String| FleetError::Url {
            url: url.to_string(),
            reason,
        };
        let Origin::File(file) = self else {
            return Err(refuse(
                "--push stores a config file: give it with -c FILE".into(),
            ));
        };
        let ConfigSource::Etcd(source) = ConfigSource::parse(url)? else {
            return Err(refuse("--push takes an etcd:// URL".into()));
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| refuse(format!("cannot read {}: {e}", file.display())))?;
        Etcd::from_env(source)?.push(&text, START_WITHIN)
    }
}

fn load_file(path: &Path) -> Result<Fetched, ConfigErrors> {
    Ok(Fetched {
        source: config::load_file(path)?,
        document: None,
    })
}

/// A document as a config: `${VAR}`s from this process's environment, relative paths against
/// the working directory at start.
fn parse(base: &Path, document: Document) -> Result<Fetched, ConfigErrors> {
    let source = config::load_str(&document.text, base.to_path_buf())?;
    Ok(Fetched {
        source,
        document: Some(document),
    })
}

/// `p` against `base`, without `./` steps (the cache's path is shown in messages).
fn resolve(base: &Path, p: &str) -> PathBuf {
    config::resolve(base, p)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// An etcd error as a config error about the whole config (no key path, no line).
fn whole(e: FleetError) -> ConfigErrors {
    ConfigErrors::single("", e.to_string(), None)
}
