//! A fleet: every instance follows one config stored in etcd (docs/fleet.md).
//!
//! This module reaches etcd and, of the gateway, only `config`: it knows the document as text
//! and a revision, and turns it into a parsed config ([`Origin`]); compiling, checking and
//! applying it (the reload path), counting failures and `/status` are the caller's. The
//! parts, as [`Origin`] strings them together:
//!
//! ```no_run
//! use gateway::fleet::{self, ConfigSource, Etcd, Update};
//! use std::path::Path;
//!
//! # fn main() -> Result<(), gateway::fleet::FleetError> {
//! let ConfigSource::Etcd(source) = ConfigSource::parse("etcd://127.0.0.1:2379/portico/config")?
//! else { return Ok(()) };
//! let etcd = Etcd::from_env(source)?; // PORTICO_ETCD_USER, _PASSWORD, _CA, _CERT, _KEY
//! let cache = Path::new("./portico-config-cache.yaml");
//! let start = fleet::start(&etcd, cache, fleet::START_WITHIN)?; // else: exit 1 with the error
//! if let Some(line) = &start.notice {
//!     eprintln!("{line}"); // started from the cache
//! }
//! // ... validate start.document.text and serve it; once it is known valid:
//! fleet::write_cache(cache, &start.document)?;
//! let follower = etcd.follow(start.document.revision, |update| match update {
//!     Update::Document(doc) => { /* reload from doc.text; if valid, write_cache */ }
//!     Update::Unusable { revision, reason } => { /* a failed reload */ }
//! });
//! # drop(follower);
//! // `portico -c FILE -t --push etcd://…`: validate FILE, then
//! let revision = etcd.push("server: {}\n", fleet::START_WITHIN)?;
//! # Ok(()) }
//! ```

mod access;
mod cache;
mod dial;
mod error;
mod etcd;
mod follow;
mod origin;
mod source;
mod start;

pub use access::{Access, ENV_CA, ENV_CERT, ENV_KEY, ENV_PASSWORD, ENV_USER};
pub use cache::{read_cache, write_cache};
pub use error::FleetError;
pub use etcd::{Document, Etcd};
pub use follow::{Follower, Update, MAX_BACKOFF};
pub use origin::{Fetched, Followed, Origin, DEFAULT_CACHE, ENV_CONFIG_CACHE};
pub use source::{ConfigSource, EtcdEndpoint, EtcdSource};
pub use start::{start, Start, START_WITHIN};

/// Runs one etcd operation to completion from synchronous code (the CLI, a start, a reload),
/// on a thread of its own so that it works whether or not the caller is inside a Tokio
/// runtime. These are rare (a start, a push), so a thread and a small runtime each is cheap.
/// The future is made on that thread, so it need not be `Send`.
fn block_on<F, Fut>(make: F) -> Fut::Output
where
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future,
    Fut::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for an etcd call")
                    .block_on(make())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
