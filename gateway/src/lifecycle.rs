//! Where the process is in its life, as the request path and the shutdown sequence share it:
//! draining (SIGTERM: `/readyz` says 503), winding down (responses say `Connection: close`),
//! requests in flight and listeners settled (the process leaves once both allow). One value,
//! made at start and handed to whoever needs it as an `Arc`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    winding_down: AtomicBool,
    /// Requests between their head being read and the end of their logging phase, across
    /// all listeners.
    in_flight: AtomicUsize,
    /// Listeners whose shutdown clean-up has finished (`listener::Settle`).
    listeners_settled: AtomicUsize,
}

impl Lifecycle {
    pub fn new() -> Arc<Lifecycle> {
        Arc::new(Lifecycle::default())
    }

    /// SIGTERM: `/readyz` answers 503 from now on, and responses close their connections.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.wind_down();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// This process is on its way out (SIGTERM, or SIGQUIT with a new process waiting):
    /// responses carry `Connection: close`, so keep-alive clients reconnect through the load
    /// balancer (or to the new process) instead of holding on to this one.
    pub fn wind_down(&self) {
        self.winding_down.store(true, Ordering::SeqCst);
    }

    pub fn is_winding_down(&self) -> bool {
        self.winding_down.load(Ordering::Relaxed)
    }

    /// Counts one request in flight until the returned guard is dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn listener_settled(&self) {
        self.listeners_settled.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether `listeners` listeners have settled and no request is in flight.
    pub fn is_idle(&self, listeners: usize) -> bool {
        self.listeners_settled.load(Ordering::SeqCst) >= listeners && self.in_flight() == 0
    }
}

/// One request in flight, for as long as it lives (it sits in the request's context).
#[derive(Debug)]
pub struct InFlight(Arc<Lifecycle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_once_every_listener_settled_and_no_request_is_in_flight() {
        let life = Lifecycle::new();
        let request = life.request_started();
        life.listener_settled();
        assert!(!life.is_idle(1), "a request is in flight");
        drop(request);
        assert!(life.is_idle(1));
        assert!(!life.is_idle(2), "a listener has not settled");
    }
}
