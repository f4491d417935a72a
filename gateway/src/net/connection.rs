//! What a client connection knows across its requests: whether a request head has arrived
//! yet. The header-timeout watchdog of an HTTP/1 connection and the first-request watchdog of
//! an HTTP/2 one (`listener::watchdog`) stop watching once it has.

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

tokio::task_local! {
    /// Set once the request head being waited for has been read, on the task serving the
    /// request: an HTTP/1 connection serves its requests one after another on one task.
    static HEAD_SEEN: Cell<bool>;
}

/// Runs `request` (one HTTP/1 request) with its head not yet seen; [`head_seen`] tells, from
/// outside it, whether it has been.
pub fn watch_head<F: Future>(request: F) -> impl Future<Output = F::Output> {
    HEAD_SEEN.scope(Cell::new(false), request)
}

/// Whether the head of the request run by [`watch_head`] on this task has been read.
pub fn head_seen() -> bool {
    HEAD_SEEN.try_with(Cell::get).unwrap_or(false)
}

/// Called once a request head has been read completely.
pub fn mark_head_seen() {
    let _ = HEAD_SEEN.try_with(|seen| seen.set(true));
}

/// Whether a connection's first request has arrived. HTTP/2 requests run on tasks of their
/// own, so a TLS connection keeps this in its TLS digest (`tls::connection`), where every
/// stream's request reaches it.
#[derive(Debug, Default)]
pub struct FirstRequest(AtomicBool);

impl FirstRequest {
    pub fn arrived(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn has_arrived(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
