//! The pools' background work: active health checks and the re-resolution of backends given
//! by name. One task per backend and duty, restarted whenever a new config snapshot is
//! swapped in (health records survive; only the tasks are replaced).

use super::check::check_loop;
use super::health::Health;
use super::pool::Pool;
use super::resolve::{is_name, refresh_loop};
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Runs the background work of the pools it is given; `update` hands it a new set on reload.
pub struct Upkeep {
    pools: watch::Sender<Vec<Arc<Pool>>>,
    rx: Mutex<Option<watch::Receiver<Vec<Arc<Pool>>>>>,
}

impl Upkeep {
    pub fn new(pools: Vec<Arc<Pool>>) -> Self {
        let (tx, rx) = watch::channel(pools);
        Upkeep {
            pools: tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    pub fn update(&self, pools: Vec<Arc<Pool>>) {
        self.pools.send_replace(pools);
    }
}

#[async_trait::async_trait]
impl BackgroundService for Upkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut rx) = self.rx.lock().unwrap().take() else {
            return;
        };
        let connector = Arc::new(Connector::new(None));
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        let mut live: Vec<Arc<Pool>> = Vec::new();
        loop {
            let pools = rx.borrow_and_update().clone();
            for t in tasks.drain(..) {
                t.abort();
            }
            retire_removed(&live, &pools);
            live = pools.clone();
            for pool in pools.iter() {
                for (i, b) in pool.backends.iter().enumerate() {
                    if pool.health_check.is_some() {
                        tasks.push(tokio::spawn(check_loop(pool.clone(), i, connector.clone())));
                    } else {
                        // Health records outlive reloads: a pool whose checks a reload removed
                        // must not keep a backend out on their last word.
                        b.health.forget_checks(&pool.name, &b.addr);
                    }
                    if !pool.dns_refresh.is_zero() && is_name(&b.addr) {
                        tasks.push(tokio::spawn(refresh_loop(pool.clone(), i)));
                    }
                }
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { break },
                _ = shutdown.changed() => break,
            }
        }
        for t in tasks {
            t.abort();
        }
    }
}

/// Health records are kept by upstream and address across reloads; a backend that a reload
/// removed must not keep its old state for the day it is added back.
fn retire_removed(old: &[Arc<Pool>], new: &[Arc<Pool>]) {
    let kept: HashSet<*const Health> = new
        .iter()
        .flat_map(|p| p.backends.iter().map(|b| Arc::as_ptr(&b.health)))
        .collect();
    for b in old.iter().flat_map(|p| p.backends.iter()) {
        if !kept.contains(&Arc::as_ptr(&b.health)) {
            b.health.retire();
        }
    }
}
