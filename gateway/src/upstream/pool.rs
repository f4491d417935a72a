//! A pool of backends and how one is picked for an attempt: by the pool's balance, healthy
//! ones first, backups only when no primary is left, never the same one twice per request.

use super::backend::Backend;
use super::balance::{self, Ring};
use super::health::{Admission, Probe};
use crate::config::{Balance, HashKey, HealthCheckConfig, PassiveConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Pool {
    pub name: Arc<str>,
    pub backends: Vec<Backend>,
    pub balance: Balance,
    /// What a consistent-hash pool hashes; `None` for the other balances.
    pub hash_key: Option<HashKey>,
    pub retries: usize,
    pub passive: PassiveConfig,
    pub health_check: Option<HealthCheckConfig>,
    /// How often backends given by name are resolved again; zero: only at load.
    pub dns_refresh: Duration,
    /// The Host header to send instead of the client's.
    pub host: Option<String>,
    rr: AtomicUsize,
    /// Per tier (primaries, then backups): backend indexes repeated by weight and
    /// interleaved, for weighted round robin and random.
    slots: [Vec<usize>; 2],
    ring: Option<Ring>,
}

impl Pool {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: Arc<str>,
        backends: Vec<Backend>,
        balance: Balance,
        hash_key: Option<HashKey>,
        retries: usize,
        passive: PassiveConfig,
        health_check: Option<HealthCheckConfig>,
        dns_refresh: Duration,
        host: Option<String>,
    ) -> Self {
        let slots = [
            balance::weighted_slots(&backends, false),
            balance::weighted_slots(&backends, true),
        ];
        let ring = (balance == Balance::ConsistentHash).then(|| Ring::new(&backends));
        Pool {
            name,
            backends,
            balance,
            hash_key,
            retries,
            passive,
            health_check,
            dns_refresh,
            host,
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

    fn select_tier(
        &self,
        backup: bool,
        key: Option<u64>,
        tried: &[usize],
    ) -> Option<(usize, Admission)> {
        let eligible = |i: usize| !tried.contains(&i);
        let admit = |i: usize| match self.backends[i].health.try_acquire() {
            Admission::No => None,
            a => Some((i, a)),
        };
        let slots = &self.slots[backup as usize];
        match self.balance {
            Balance::ConsistentHash if !backup => {
                let ring = self.ring.as_ref()?;
                ring.walk(key.unwrap_or(0))
                    .filter(|&i| eligible(i))
                    .find_map(admit)
            }
            Balance::LeastConn => self.least_conn(backup, eligible, admit),
            Balance::Random => draw(slots, rand::random::<usize>, eligible, admit),
            // The backups of a consistent-hash pool own no keys: they take turns.
            Balance::RoundRobin | Balance::ConsistentHash => draw(
                slots,
                || self.rr.fetch_add(1, Ordering::Relaxed),
                eligible,
                admit,
            ),
        }
    }

    /// Fewest requests in flight per unit of weight. Ties, the usual case under light load,
    /// go round robin by weight among the tied backends, so that weights hold there too.
    fn least_conn(
        &self,
        backup: bool,
        eligible: impl Fn(usize) -> bool,
        admit: impl Fn(usize) -> Option<(usize, Admission)>,
    ) -> Option<(usize, Admission)> {
        let in_tier = |i: usize| self.backends[i].backup == backup && eligible(i);
        let candidates = || {
            (0..self.backends.len())
                .filter(|&i| in_tier(i) && self.backends[i].health.is_available())
        };
        let load = |i: usize| {
            (
                self.backends[i].inflight.load(Ordering::Relaxed) as u64,
                self.backends[i].weight as u64,
            )
        };
        let lighter = |a: &usize, b: &usize| {
            let ((a_in, a_w), (b_in, b_w)) = (load(*a), load(*b));
            (a_in * b_w).cmp(&(b_in * a_w))
        };
        let best = candidates().min_by(lighter)?;
        let tied = |i: &usize| lighter(i, &best).is_eq();
        // Counts move under our feet; a tie that vanished just leaves `best`.
        let total: u64 = candidates().filter(tied).map(|i| load(i).1).sum();
        let mut turn = self.rr.fetch_add(1, Ordering::Relaxed) as u64 % total.max(1);
        let pick = candidates()
            .filter(tied)
            .find(|&i| {
                let w = load(i).1;
                let hit = turn < w;
                turn = turn.saturating_sub(w);
                hit
            })
            .unwrap_or(best);
        // Another request may have taken a probe slot in between: then any other will do.
        admit(pick).or_else(|| candidates().find_map(&admit))
    }

    /// Active checks are configured and some backend has not had its first result yet: at
    /// start (or after a binary upgrade) every checked backend is in that state for the
    /// time of one check.
    pub fn awaiting_first_checks(&self) -> bool {
        self.health_check.is_some() && self.backends.iter().any(|b| b.health.is_pending())
    }

    /// Waits (bounded by one check timeout) until every backend has had its first check
    /// result. A request that finds no backend admitted while checks are still pending
    /// waits for them rather than getting a 503 that only says "not checked yet".
    pub async fn first_checks(&self) {
        let Some(hc) = &self.health_check else { return };
        let deadline = tokio::time::Instant::now() + hc.timeout.get() + Duration::from_millis(100);
        while self.awaiting_first_checks() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// An attempt on backend `i` succeeded; `probe` is its hold when it was the probe.
    pub fn report_success(&self, i: usize, probe: Option<Probe>) {
        let b = &self.backends[i];
        b.health
            .report_success(&self.name, &b.addr, probe.is_some());
        if let Some(p) = probe {
            p.settle();
        }
    }

    /// An attempt on backend `i` failed; returns true when this failure ejected it.
    pub fn report_failure(&self, i: usize, error: &str, probe: Option<Probe>) -> bool {
        let b = &self.backends[i];
        let p = &self.passive;
        let ejected = b.health.report_failure(
            &self.name,
            &b.addr,
            error,
            probe.is_some(),
            p.failures,
            p.eject_for.get(),
        );
        if let Some(p) = probe {
            p.settle();
        }
        ejected
    }
}

/// Weighted round robin (`next` counts up) or random (`next` draws) over `slots`. A slot
/// whose backend cannot take the request draws again rather than passing its turn to the
/// next slot, so the backends left share a missing one's traffic evenly instead of its
/// neighbour taking all of it. After as many draws as slots, a scan makes sure a usable
/// backend is found whenever there is one.
fn draw(
    slots: &[usize],
    next: impl Fn() -> usize,
    eligible: impl Fn(usize) -> bool,
    admit: impl Fn(usize) -> Option<(usize, Admission)>,
) -> Option<(usize, Admission)> {
    let n = slots.len();
    if n == 0 {
        return None;
    }
    for _ in 0..n {
        let i = slots[next() % n];
        if let Some(found) = Some(i).filter(|&i| eligible(i)).and_then(&admit) {
            return Some(found);
        }
    }
    let start = next();
    (0..n)
        .map(|k| slots[(start + k) % n])
        .filter(|&i| eligible(i))
        .find_map(admit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::backend::Endpoint;
    use crate::upstream::health::{Health, State};
    use arc_swap::ArcSwap;
    use pingora_core::upstreams::peer::HttpPeer;
    use std::net::SocketAddr;

    fn pool(balance: Balance, backends: &[(u32, bool)]) -> Pool {
        let backends = backends
            .iter()
            .enumerate()
            .map(|(i, &(weight, backup))| {
                let socket: SocketAddr = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
                Backend {
                    addr: socket.to_string().into(),
                    endpoint: ArcSwap::from_pointee(Endpoint::new(
                        socket,
                        HttpPeer::new(socket, false, String::new()),
                    )),
                    weight,
                    backup,
                    health: Arc::new(Health::new(false)),
                    inflight: AtomicUsize::new(0),
                    answered: Default::default(),
                }
            })
            .collect();
        let passive = PassiveConfig::default();
        Pool::new(
            "t".into(),
            backends,
            balance,
            None,
            2,
            passive,
            None,
            Duration::ZERO,
            None,
        )
    }

    fn counts(pool: &Pool, n: usize) -> Vec<usize> {
        let mut c = vec![0; pool.backends.len()];
        for _ in 0..n {
            c[pool.select(None, &[]).unwrap().0] += 1;
        }
        c
    }

    fn eject(pool: &Pool, i: usize) {
        let b = &pool.backends[i];
        b.health
            .report_failure("t", &b.addr, "test", false, 1, Duration::from_secs(60));
    }

    #[test]
    fn round_robin_follows_weights_and_skips_backups() {
        let p = pool(Balance::RoundRobin, &[(3, false), (1, false), (1, true)]);
        assert_eq!(counts(&p, 400), [300, 100, 0]);
    }

    #[test]
    fn a_missing_backend_share_is_spread_not_handed_to_its_neighbour() {
        for balance in [Balance::RoundRobin, Balance::LeastConn] {
            let p = pool(balance, &[(1, false), (1, false), (1, false), (1, false)]);
            eject(&p, 1);
            assert_eq!(counts(&p, 300), [100, 0, 100, 100], "{balance:?}");
        }
        let p = pool(
            Balance::Random,
            &[(1, false), (1, false), (1, false), (1, false)],
        );
        eject(&p, 1);
        let c = counts(&p, 3000);
        assert!(
            c[1] == 0 && c.iter().all(|&n| n == 0 || (800..1200).contains(&n)),
            "{c:?}"
        );
    }

    #[test]
    fn backups_only_when_no_primary_is_left_and_never_the_same_backend_twice() {
        let p = pool(Balance::RoundRobin, &[(1, false), (1, false), (1, true)]);
        let first = p.select(None, &[]).unwrap().0;
        let second = p.select(None, &[first]).unwrap().0;
        assert!(first < 2 && second < 2 && first != second);
        assert_eq!(p.select(None, &[first, second]).unwrap().0, 2);
        assert!(p.select(None, &[0, 1, 2]).is_none());
        eject(&p, 0);
        eject(&p, 1);
        assert_eq!(counts(&p, 3), [0, 0, 3]);
    }

    #[test]
    fn least_conn_prefers_fewer_in_flight_per_weight() {
        let p = pool(Balance::LeastConn, &[(2, false), (1, false)]);
        p.backends[0].inflight.store(3, Ordering::Relaxed);
        p.backends[1].inflight.store(1, Ordering::Relaxed);
        // 3/2 > 1/1: the second; 2/2 == 1/1 would be a tie, broken by weight.
        assert_eq!(p.select(None, &[]).unwrap().0, 1);
        p.backends[0].inflight.store(2, Ordering::Relaxed);
        assert_eq!(counts(&p, 30), [20, 10]);
    }

    #[test]
    fn an_expired_ejection_admits_one_probe_until_its_verdict() {
        let p = pool(Balance::RoundRobin, &[(1, false)]);
        let h = p.backends[0].health.clone();
        h.report_failure("t", "a", "test", false, 1, Duration::ZERO);
        assert_eq!(h.state(), State::Ejected);
        assert_eq!(h.try_acquire(), Admission::Probe);
        assert_eq!(h.try_acquire(), Admission::No);
        // A probe dropped without a verdict frees the slot...
        drop(Probe::new(h.clone()));
        assert_eq!(h.try_acquire(), Admission::Probe);
        // ...a late success of another request does not end the ejection, the probe's does.
        h.report_success("t", "a", false);
        assert_eq!(h.state(), State::Ejected);
        p.report_success(0, Some(Probe::new(h.clone())));
        assert_eq!(
            (h.state(), h.try_acquire()),
            (State::Healthy, Admission::Yes)
        );
    }

    #[test]
    fn passing_checks_since_an_ejection_end_it() {
        let h = Health::new(true);
        let ok = |h: &Health, started: u64| h.record_check("t", "a", started, Ok(()), 2, 3);
        assert_eq!(ok(&h, h.clock()), Some(true), "its first check");
        // A check that started before the ejection, and one that failed, do not count.
        let before = h.clock();
        std::thread::sleep(Duration::from_millis(2));
        h.report_failure("t", "a", "test", false, 1, Duration::from_secs(60));
        assert_eq!(h.state(), State::Ejected);
        assert_eq!(ok(&h, before), None);
        assert_eq!(ok(&h, h.clock()), None);
        let failed = h.record_check("t", "a", h.clock(), Err("down".into()), 2, 3);
        assert_eq!((failed, h.state()), (None, State::Ejected));
        assert_eq!(ok(&h, h.clock()), None);
        assert_eq!(h.state(), State::Ejected);
        // The second in a row: back, long before `eject_for`.
        assert_eq!(ok(&h, h.clock()), Some(true));
        assert_eq!(
            (h.state(), h.try_acquire()),
            (State::Healthy, Admission::Yes)
        );
        assert_eq!(h.detail().last_error, None);
    }
}
