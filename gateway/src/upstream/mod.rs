//! Upstream pools: backends, how one is picked, their health, and failover.

mod balance;
mod check;
mod health;

pub use balance::hash_key;
pub use check::HealthChecker;
pub use health::{Admission, Detail, Health, State};

use crate::config::{Balance, HealthCheckConfig, PassiveConfig};
use balance::Ring;
use pingora_core::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Backend {
    /// As written in the config; the `backend` label and `/status` key.
    pub addr: Arc<str>,
    pub socket: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    pub health: Arc<Health>,
    /// Requests in flight, for `least_conn`.
    pub inflight: AtomicUsize,
    /// The peer every request to this backend starts from (TLS, timeouts, HTTP version).
    pub peer: HttpPeer,
}

pub struct Pool {
    pub name: Arc<str>,
    pub backends: Vec<Backend>,
    pub balance: Balance,
    pub hash_key: Option<String>,
    pub retries: usize,
    pub passive: PassiveConfig,
    pub health_check: Option<HealthCheckConfig>,
    /// The Host header to send instead of the client's.
    pub host: Option<String>,
    /// Timeouts, also used by active checks.
    pub connect_timeout: Duration,
    rr: AtomicUsize,
    /// Backend indexes repeated by weight and interleaved, for weighted round robin.
    slots: Vec<usize>,
    ring: Option<Ring>,
}

impl Pool {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: Arc<str>,
        backends: Vec<Backend>,
        balance: Balance,
        hash_key: Option<String>,
        retries: usize,
        passive: PassiveConfig,
        health_check: Option<HealthCheckConfig>,
        host: Option<String>,
        connect_timeout: Duration,
    ) -> Self {
        let slots = balance::weighted_slots(&backends);
        let ring = (balance == Balance::ConsistentHash).then(|| Ring::new(&backends));
        Pool {
            name,
            backends,
            balance,
            hash_key,
            retries,
            passive,
            health_check,
            host,
            connect_timeout,
            rr: AtomicUsize::new(0),
            slots,
            ring,
        }
    }

    /// Picks a backend for one attempt. `tried` holds the backends this request already
    /// tried (never the same one twice); `key` is the consistent-hash key. Backups are
    /// chosen only when no primary is available.
    pub fn select(&self, key: Option<u64>, tried: &[usize]) -> Option<(usize, Admission)> {
        for backup in [false, true] {
            if let Some(found) = self.select_tier(backup, key, tried) {
                return Some(found);
            }
        }
        None
    }

    fn select_tier(&self, backup: bool, key: Option<u64>, tried: &[usize]) -> Option<(usize, Admission)> {
        let eligible = |i: usize| {
            let b = &self.backends[i];
            b.backup == backup && !tried.contains(&i)
        };
        let admit = |i: usize| match self.backends[i].health.try_acquire() {
            Admission::No => None,
            a => Some((i, a)),
        };
        match self.balance {
            Balance::ConsistentHash if !backup => {
                let ring = self.ring.as_ref()?;
                ring.walk(key.unwrap_or(0)).filter(|&i| eligible(i)).find_map(admit)
            }
            Balance::LeastConn => {
                // Fewest in flight per unit of weight; start the scan at a moving offset so
                // ties spread instead of piling on the first backend.
                let n = self.backends.len();
                let start = self.rr.fetch_add(1, Ordering::Relaxed);
                let mut best: Option<usize> = None;
                for k in 0..n {
                    let i = (start + k) % n;
                    if !eligible(i) || !self.backends[i].health.is_available() {
                        continue;
                    }
                    best = match best {
                        None => Some(i),
                        Some(j) => {
                            let (a, b) = (&self.backends[i], &self.backends[j]);
                            let lhs = a.inflight.load(Ordering::Relaxed) as u64 * b.weight as u64;
                            let rhs = b.inflight.load(Ordering::Relaxed) as u64 * a.weight as u64;
                            if lhs < rhs { Some(i) } else { Some(j) }
                        }
                    };
                }
                best.and_then(admit).or_else(|| self.scan_from(0, eligible, admit))
            }
            Balance::Random => {
                let start = rand::random::<usize>();
                self.scan_slots(start, eligible, admit)
            }
            Balance::RoundRobin | Balance::ConsistentHash => {
                let start = self.rr.fetch_add(1, Ordering::Relaxed);
                self.scan_slots(start, eligible, admit)
            }
        }
    }

    fn scan_slots(
        &self,
        start: usize,
        eligible: impl Fn(usize) -> bool,
        admit: impl Fn(usize) -> Option<(usize, Admission)>,
    ) -> Option<(usize, Admission)> {
        let n = self.slots.len();
        (0..n).map(|k| self.slots[(start + k) % n]).filter(|&i| eligible(i)).find_map(admit)
    }

    fn scan_from(
        &self,
        start: usize,
        eligible: impl Fn(usize) -> bool,
        admit: impl Fn(usize) -> Option<(usize, Admission)>,
    ) -> Option<(usize, Admission)> {
        let n = self.backends.len();
        (0..n).map(|k| (start + k) % n).filter(|&i| eligible(i)).find_map(admit)
    }

    pub fn report_success(&self, i: usize) {
        self.backends[i].health.report_success(&self.name, &self.backends[i].addr);
    }

    /// Returns true when this failure ejected the backend.
    pub fn report_failure(&self, i: usize, error: &str) -> bool {
        let b = &self.backends[i];
        b.health.report_failure(&self.name, &b.addr, error, self.passive.failures, self.passive.eject_for.get())
    }
}

/// The shortest health check interval a config may ask for.
pub fn check_min_interval() -> Duration {
    check::MIN_INTERVAL
}
