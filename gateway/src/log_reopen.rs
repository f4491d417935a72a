//! Log rotation: SIGUSR1 bumps a generation counter; whoever writes a log file compares the
//! generation it opened the file at with the current one and reopens when they differ.
//! Checking an atomic per write is cheaper than any lock, and no signal handler touches a file.

use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The current log-file generation.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// Asks every log writer to reopen its file (called on SIGUSR1).
pub fn request_reopen() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}
