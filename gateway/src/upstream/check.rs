//! Active health checks: one task per checked backend, restarted whenever a new config
//! snapshot is swapped in (health records survive; only the tasks are replaced).

use super::{Health, Pool};
use crate::config::CheckKind;
use pingora_core::connectors::http::Connector;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_http::RequestHeader;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Runs the active checks of the pools it is given; `update` hands it a new set on reload.
pub struct HealthChecker {
    pools: watch::Sender<Vec<Arc<Pool>>>,
    rx: Mutex<Option<watch::Receiver<Vec<Arc<Pool>>>>>,
}

impl HealthChecker {
    pub fn new(pools: Vec<Arc<Pool>>) -> Self {
        let (tx, rx) = watch::channel(pools);
        HealthChecker {
            pools: tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    pub fn update(&self, pools: Vec<Arc<Pool>>) {
        self.pools.send_replace(pools);
    }
}

#[async_trait::async_trait]
impl BackgroundService for HealthChecker {
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
                if pool.health_check.is_none() {
                    // Health records outlive reloads: a pool whose checks a reload removed
                    // must not keep a backend out on their last word.
                    for b in &pool.backends {
                        b.health.forget_checks(&pool.name, &b.addr);
                    }
                    continue;
                }
                for i in 0..pool.backends.len() {
                    tasks.push(tokio::spawn(check_loop(pool.clone(), i, connector.clone())));
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

async fn check_loop(pool: Arc<Pool>, i: usize, connector: Arc<Connector>) {
    let Some(hc) = pool.health_check.clone() else {
        return;
    };
    let backend = &pool.backends[i];
    let mut tick = tokio::time::interval(hc.interval.get());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result =
            match tokio::time::timeout(hc.timeout.get(), check_once(&pool, i, &connector)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "health check timed out after {:?}",
                    hc.timeout.get()
                )),
            };
        backend.health.record_check(
            &pool.name,
            &backend.addr,
            result,
            hc.healthy_after,
            hc.unhealthy_after,
        );
        crate::metrics::set_backend_health(
            &pool.name,
            &backend.addr,
            backend.health.state() == super::State::Healthy,
        );
    }
}

async fn check_once(pool: &Pool, i: usize, connector: &Connector) -> Result<(), String> {
    let hc = pool.health_check.as_ref().expect("checked pools only");
    let backend = &pool.backends[i];
    match hc.kind {
        CheckKind::Tcp => tokio::net::TcpStream::connect(backend.socket)
            .await
            .map(|_| ())
            .map_err(|e| format!("tcp connect: {e}")),
        CheckKind::Http => {
            let mut peer = backend.peer.clone();
            peer.options.connection_timeout = Some(hc.timeout.get());
            peer.options.read_timeout = Some(hc.timeout.get());
            peer.options.write_timeout = Some(hc.timeout.get());
            let (mut session, _) = connector
                .get_http_session(&peer)
                .await
                .map_err(|e| e.to_string())?;
            let mut req =
                RequestHeader::build("GET", hc.path.as_bytes(), None).map_err(|e| e.to_string())?;
            let host = pool.host.clone().unwrap_or_else(|| {
                if peer.sni.is_empty() {
                    backend.addr.to_string()
                } else {
                    peer.sni.clone()
                }
            });
            req.insert_header("Host", host).map_err(|e| e.to_string())?;
            req.insert_header("User-Agent", "portico-health-check")
                .map_err(|e| e.to_string())?;
            session
                .write_request_header(Box::new(req))
                .await
                .map_err(|e| e.to_string())?;
            session
                .finish_request_body()
                .await
                .map_err(|e| e.to_string())?;
            session
                .read_response_header()
                .await
                .map_err(|e| e.to_string())?;
            let status = session
                .response_header()
                .map(|r| r.status.as_u16())
                .unwrap_or(0);
            let ok = if hc.expect_status.is_empty() {
                (200..400).contains(&status)
            } else {
                hc.expect_status.contains(&status)
            };
            if ok {
                Ok(())
            } else {
                Err(format!("health check {} answered {status}", hc.path))
            }
        }
    }
}

/// Keeps tasks from piling up: a check interval shorter than this is refused at load time.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
