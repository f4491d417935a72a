//! A backend's health: what active checks and passive ejection decided, read lock-free on
//! every request.
//!
//! The record outlives config reloads (it is looked up by upstream name and address when a
//! new snapshot is built), so a reload neither forgets that a backend is down nor sends
//! traffic to a backend that has not passed its checks.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The states reported by `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy,
    /// Failed active checks (or has not passed its first one yet).
    Unhealthy,
    /// Taken out by passive ejection.
    Ejected,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::Ejected => "ejected",
        }
    }
}

/// What `/status` shows about a backend; changed only on transitions, so a mutex is fine.
#[derive(Debug, Clone)]
pub struct Detail {
    pub last_error: Option<String>,
    pub changed_at: SystemTime,
}

pub struct Health {
    /// False while active checks say the backend is down.
    active_up: AtomicBool,
    /// True from creation until the first active check result (checked pools only).
    pending: AtomicBool,
    /// Milliseconds since `epoch` until which the backend is ejected; 0 when not ejected.
    ejected_until: AtomicU64,
    /// Set while the ejection has expired and one probing request is allowed through.
    probing: AtomicBool,
    /// Consecutive proxy failures (passive).
    failures: AtomicU32,
    /// Consecutive active check results (owned by the one checker task).
    check_ok_streak: AtomicU32,
    check_fail_streak: AtomicU32,
    /// When the current passive ejection began (milliseconds since `epoch`).
    ejected_at: AtomicU64,
    /// Consecutive passing active checks that started after the current ejection began:
    /// `healthy_after` of them end it (docs/upstreams.md, "Passive ejection").
    checks_since_ejection: AtomicU32,
    detail: Mutex<Detail>,
    epoch: Instant,
}

impl Health {
    /// `checked`: active checks are configured, so the backend gets no traffic until it
    /// passes its first check.
    pub fn new(checked: bool) -> Self {
        Health {
            active_up: AtomicBool::new(!checked),
            pending: AtomicBool::new(checked),
            ejected_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            check_ok_streak: AtomicU32::new(0),
            check_fail_streak: AtomicU32::new(0),
            ejected_at: AtomicU64::new(0),
            checks_since_ejection: AtomicU32::new(0),
            detail: Mutex::new(Detail {
                last_error: if checked {
                    Some("not checked yet".into())
                } else {
                    None
                },
                changed_at: SystemTime::now(),
            }),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// The record's own clock, for an active check to say when it started
    /// ([`Health::record_check`]).
    pub fn clock(&self) -> u64 {
        self.now_ms()
    }

    pub fn state(&self) -> State {
        if !self.active_up.load(Ordering::Relaxed) {
            State::Unhealthy
        } else if self.ejected_until.load(Ordering::Relaxed) != 0 {
            State::Ejected
        } else {
            State::Healthy
        }
    }

    /// Active checks are configured and none has reported yet.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// The pool no longer has active checks (a reload removed them): what they last said
    /// no longer counts, so a backend they had taken out takes traffic again.
    pub fn forget_checks(&self, upstream: &str, addr: &str) {
        self.pending.store(false, Ordering::Relaxed);
        self.check_ok_streak.store(0, Ordering::Relaxed);
        self.check_fail_streak.store(0, Ordering::Relaxed);
        if !self.active_up.swap(true, Ordering::Relaxed) {
            log::info!("upstream {upstream}: backend {addr} is no longer actively checked; it takes traffic again");
            self.set_detail(None);
        }
    }

    /// The backend left the config. Its record stays in the book, so should it come back
    /// later it must come back as new: unchecked, not on its old word.
    pub fn retire(&self) {
        self.active_up.store(false, Ordering::Relaxed);
        self.pending.store(true, Ordering::Relaxed);
        self.check_ok_streak.store(0, Ordering::Relaxed);
        self.check_fail_streak.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        self.ejected_until.store(0, Ordering::Relaxed);
        self.probing.store(false, Ordering::Release);
        self.set_detail(Some("not checked yet".into()));
    }

    /// The backend's name now resolves to another address. A passive ejection judged the old
    /// address, so it is lifted; active checks go on judging the new one as they come.
    pub fn moved(&self, upstream: &str, addr: &str) {
        self.failures.store(0, Ordering::Relaxed);
        self.probing.store(false, Ordering::Release);
        if self.ejected_until.swap(0, Ordering::Relaxed) != 0 {
            log::info!("upstream {upstream}: backend {addr} is no longer ejected: it moved");
            self.set_detail(None);
        }
    }

    pub fn detail(&self) -> Detail {
        self.detail.lock().unwrap().clone()
    }

    /// Whether a request may go to this backend now. After an ejection expires, exactly one
    /// request (the probe) is let through until it reports back.
    pub fn try_acquire(&self) -> Admission {
        if !self.active_up.load(Ordering::Relaxed) {
            return Admission::No;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        if until == 0 {
            return Admission::Yes;
        }
        if self.now_ms() < until {
            return Admission::No;
        }
        if self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            Admission::Probe
        } else {
            Admission::No
        }
    }

    /// Like `try_acquire` but without taking the probe slot: for counting candidates.
    pub fn is_available(&self) -> bool {
        if !self.active_up.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || (self.now_ms() >= until && !self.probing.load(Ordering::Relaxed))
    }

    /// A proxied request through this backend succeeded. Only the probe ends an ejection:
    /// a request let in before the ejection that succeeds late proves little. Returns true
    /// when this ended an ejection.
    pub fn report_success(&self, upstream: &str, addr: &str, probe: bool) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        if probe {
            // Also when active checks ended the ejection while the probe was under way.
            self.probing.store(false, Ordering::Release);
            if self.ejected_until.swap(0, Ordering::Relaxed) != 0 {
                log::info!("upstream {upstream}: backend {addr} is back after a successful probe");
                self.set_detail(None);
                return true;
            }
        }
        false
    }

    /// A proxied request through this backend failed (connect error, reset, timeout, or a
    /// 5xx when configured); `probe`: it was the probing request, whose failure ejects the
    /// backend again at once. Returns true when this failure ejected the backend.
    pub fn report_failure(
        &self,
        upstream: &str,
        addr: &str,
        error: &str,
        probe: bool,
        threshold: u32,
        eject_for: Duration,
    ) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if probe {
            self.probing.store(false, Ordering::Release);
        }
        let ejected = self.ejected_until.load(Ordering::Relaxed) != 0;
        if probe || (!ejected && threshold > 0 && n >= threshold) {
            // Active checks count towards the end of this ejection from now on.
            self.ejected_at.store(self.now_ms(), Ordering::Relaxed);
            self.checks_since_ejection.store(0, Ordering::Relaxed);
            self.ejected_until.store(
                self.now_ms() + eject_for.as_millis() as u64,
                Ordering::Relaxed,
            );
            log::warn!("upstream {upstream}: backend {addr} ejected for {eject_for:?} after {n} consecutive failures: {error}");
            self.set_detail(Some(error.to_string()));
            return true;
        }
        false
    }

    /// Records one active check result, of a check that started at `started` (by
    /// [`Health::clock`]); logs and returns the new state on a transition.
    ///
    /// A passive ejection ends once `healthy_after` checks in a row have passed that started
    /// after it began: a backend that restarted rejoins within a few check intervals instead
    /// of waiting out `eject_for` (docs/upstreams.md). A check already under way when the
    /// backend was ejected says nothing about it since.
    pub fn record_check(
        &self,
        upstream: &str,
        addr: &str,
        started: u64,
        result: Result<(), String>,
        healthy_after: u32,
        unhealthy_after: u32,
    ) -> Option<bool> {
        let up = self.active_up.load(Ordering::Relaxed);
        let first = self.pending.swap(false, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.check_fail_streak.store(0, Ordering::Relaxed);
                let mut rejoined = false;
                let until = self.ejected_until.load(Ordering::Relaxed);
                if until != 0 && started >= self.ejected_at.load(Ordering::Relaxed) {
                    let n = self.checks_since_ejection.fetch_add(1, Ordering::Relaxed) + 1;
                    if n >= healthy_after.max(1)
                        && self
                            .ejected_until
                            .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                    {
                        self.failures.store(0, Ordering::Relaxed);
                        log::info!("upstream {upstream}: backend {addr} is no longer ejected: {n} health checks passed since its ejection");
                        self.set_detail(None);
                        rejoined = up;
                    }
                }
                let n = self.check_ok_streak.fetch_add(1, Ordering::Relaxed) + 1;
                // A new backend joins on its first passing check; a backend that went down
                // (or failed its first check) must pass `healthy_after` in a row.
                if !up && (first || n >= healthy_after) {
                    self.active_up.store(true, Ordering::Relaxed);
                    self.failures.store(0, Ordering::Relaxed);
                    log::info!("upstream {upstream}: backend {addr} is healthy");
                    self.set_detail(None);
                    return Some(true);
                }
                if rejoined {
                    return Some(true);
                }
            }
            Err(e) => {
                self.check_ok_streak.store(0, Ordering::Relaxed);
                self.checks_since_ejection.store(0, Ordering::Relaxed);
                let n = self.check_fail_streak.fetch_add(1, Ordering::Relaxed) + 1;
                if up && n >= unhealthy_after {
                    self.active_up.store(false, Ordering::Relaxed);
                    log::warn!("upstream {upstream}: backend {addr} is unhealthy after {n} failed checks: {e}");
                    self.set_detail(Some(e));
                    return Some(false);
                } else if first && !up {
                    // Never up, so no transition, but the operator should hear of it once.
                    log::warn!(
                        "upstream {upstream}: backend {addr} failed its first health check: {e}"
                    );
                    self.set_detail(Some(e));
                } else if !up && n == 1 {
                    // Keep the newest reason visible while it stays down.
                    self.detail.lock().unwrap().last_error = Some(e);
                }
            }
        }
        None
    }

    fn set_detail(&self, last_error: Option<String>) {
        let mut d = self.detail.lock().unwrap();
        d.last_error = last_error;
        d.changed_at = SystemTime::now();
    }
}

/// The hold of the one probing request on an ejected backend. Its verdict
/// (`report_success` / `report_failure`) frees the slot; when the request ends without
/// one (the client went away, a downstream error), dropping the guard frees it instead, so
/// the backend is never left waiting for a verdict that will not come.
pub struct Probe {
    health: Arc<Health>,
    open: bool,
}

impl Probe {
    pub fn new(health: Arc<Health>) -> Self {
        Probe { health, open: true }
    }

    /// The verdict has been reported: dropping the guard must not touch the slot again.
    pub fn settle(mut self) {
        self.open = false;
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if self.open {
            self.health.probing.store(false, Ordering::Release);
        }
    }
}

/// The answer of [`Health::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Yes,
    /// The one probing request after an ejection expired.
    Probe,
    No,
}
