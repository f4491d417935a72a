//! Which connections a listener takes: `max_connections` in all and per client address, and
//! log lines paced so that a flood of refused connections does not flood the log too.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// At most one log line per `every` seconds for one kind of event on one listener, so that
/// a flood of bad connections does not flood the log too; the lines left out are counted
/// and the next line says how many.
#[derive(Default)]
pub(crate) struct LogGate {
    /// When a line was last let through (seconds since the epoch).
    last: AtomicU64,
    /// Lines held back since.
    held: AtomicU64,
}

impl LogGate {
    /// `Some(n)`: log now, after `n` lines held back; `None`: hold this one back.
    pub(super) fn pass(&self, every: u64) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now >= last + every)
            && self
                .last
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held.swap(0, Ordering::Relaxed));
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The open connections of one listener, in all and by client address.
#[derive(Default)]
pub(crate) struct ConnCounts {
    total: AtomicUsize,
    /// Locked twice per connection (open, close), never per request.
    by_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Refusals are logged once per 10 s at most.
    warning: LogGate,
}

/// An admitted connection's place in [`ConnCounts`], given back on drop.
pub(super) struct Admitted<'a> {
    counts: &'a ConnCounts,
    ip: Option<IpAddr>,
}

impl ConnCounts {
    /// Takes a place for a connection from `ip` (`None`: not counted per address), or says
    /// which limit is full.
    pub(super) fn admit(
        &self,
        ip: Option<IpAddr>,
        max_total: usize,
        max_per_ip: usize,
    ) -> std::result::Result<Admitted<'_>, &'static str> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        // From here on, dropping the guard gives back what was taken.
        let mut admitted = Admitted {
            counts: self,
            ip: None,
        };
        if max_total > 0 && total > max_total {
            return Err("server.limits.max_connections");
        }
        if let Some(ip) = ip.filter(|_| max_per_ip > 0) {
            let mut by_ip = self.by_ip.lock().unwrap();
            let n = by_ip.entry(ip).or_insert(0);
            if *n >= max_per_ip {
                return Err("server.limits.max_connections_per_ip");
            }
            *n += 1;
            admitted.ip = Some(ip);
        }
        Ok(admitted)
    }

    pub(super) fn should_warn(&self) -> bool {
        self.warning.pass(10).is_some()
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            let mut by_ip = self.counts.by_ip.lock().unwrap();
            if let Some(n) = by_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_gate_passes_one_line_per_period_and_counts_the_rest() {
        let gate = LogGate::default();
        assert_eq!(gate.pass(60), Some(0));
        for _ in 0..5 {
            assert_eq!(gate.pass(60), None);
        }
        // As if the period had passed.
        gate.last.fetch_sub(61, Ordering::Relaxed);
        assert_eq!(gate.pass(60), Some(5));
        assert_eq!(gate.pass(60), None);
    }
}
