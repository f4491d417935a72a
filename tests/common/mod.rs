//! The test kit: what a black-box test of Portico needs around the real `portico` binary,
//! and nothing from the gateway crates themselves, so the tests exercise only what users
//! see (the contract in docs/configuration.md, PLUGINS.md and docs/operations.md).
//!
//! The three test binaries (tests/blackbox.rs, tests/soak.rs, tests/ha_pair.rs) include it
//! with `mod common;`, and their modules `use crate::common::*;`:
//!
//! - [`config`]: gateway configs built in a few lines ([`Config`]);
//! - [`gateway`]: starting, signalling, reconfiguring and stopping the `portico` process;
//! - [`certs`]: a throw-away CA and leaf/client certificates made at test time (rcgen);
//! - [`backend`]: small upstream servers running inside the test process (HTTP, HTTPS, mTLS,
//!   WebSocket echo, a resetting one) that describe every request they see;
//! - [`client`]: TLS, HTTP/1.1, HTTP/2 and raw-socket clients;
//! - [`h2_frames`]: HTTP/2 frame by frame, for what a client library will not send;
//! - [`body`]: request bodies, including the deterministic byte pattern used to check large
//!   uploads and downloads end to end without holding them in memory;
//! - [`metrics`]: reading `/metrics` ([`Metrics`]) and checking it with promtool;
//! - [`load`]: a steady stream of requests from concurrent clients, counted ([`Load`]);
//! - [`tools`]: the programs some tests run (Redis, Prometheus, HAProxy, ...): a missing one
//!   fails the test with the line that installs it;
//! - [`pebble`]: a real ACME CA (Pebble and its DNS server), for tests/acme.rs (imported by
//!   name: it is shared with the gateway crate's own ACME tests).
//!
//! Every wait is bounded (see [`IO_TIMEOUT`]) so that a broken gateway fails a test instead
//! of hanging the whole suite.

// Each test file uses only part of the harness; the rest would otherwise warn in that file.
#![allow(dead_code)]

pub mod backend;
pub mod body;
pub mod certs;
pub mod client;
pub mod config;
pub mod gateway;
pub mod h2_frames;
pub mod load;
pub mod metrics;
pub mod pebble;
pub mod ports;
pub mod tools;

pub use ports::free_port;

// Flat re-exports so a test needs only `use crate::common::*;` (the HTTP/2 framing, whose
// short names would crowd that, is imported on its own). A binary that uses nothing from
// one of them would warn about it otherwise. `self::`: a bare `gateway` would also name the
// gateway crate, and naming it links it (with its BoringSSL) into binaries that link OpenSSL.
#[allow(unused_imports)]
pub use self::{
    backend::*, body::*, certs::*, client::*, config::*, gateway::*, load::*, metrics::*, tools::*,
};

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Upper bound for any single network wait in the harness (connect, handshake, one request,
/// one body chunk). Generous for a debug build on a loaded 2-core machine, short enough that a
/// hung gateway shows up as a failure within seconds.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The error type of every fallible harness call: tests usually `.unwrap()` or `.expect()`
/// it, or assert `.is_err()` when a refusal is the expected outcome.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Private alias: a public `Result` would shadow std's in test files that `use common::*`.
type Result<T> = std::result::Result<T, BoxError>;

/// Runs `fut` with the given time limit, turning the deadline into an error that says what
/// was being waited for.
pub(crate) async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {limit:?}: {what}").into()),
    }
}

/// A fresh directory for one test's files: `$TMPDIR/portico-test-<pid>-<n>`.
///
/// Removed on drop, except when the test is failing (panicking) or `PORTICO_KEEP_TEST_DIRS`
/// is set, so that configs, certificates and gateway logs can be inspected afterwards.
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new() -> TestDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("portico-test-{}-{n}", std::process::id()));
        // A leftover from an earlier run with a recycled pid must not leak into this test.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create test dir {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside this directory (the file need not exist).
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `name` inside this directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("PORTICO_KEEP_TEST_DIRS").is_some() {
            eprintln!("keeping test dir {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
