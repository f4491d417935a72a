//! Active health checks: one task per checked backend (started by [`super::Upkeep`]).

use super::pool::Pool;
use crate::config::CheckKind;
use pingora_core::connectors::http::Connector;
use pingora_http::RequestHeader;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn check_loop(pool: Arc<Pool>, i: usize, connector: Arc<Connector>) {
    let Some(hc) = pool.health_check.clone() else {
        return;
    };
    let backend = &pool.backends[i];
    let mut tick = tokio::time::interval(hc.interval.get());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = backend.health.clock();
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
            started,
            result,
            hc.healthy_after,
            hc.unhealthy_after,
        );
        crate::metrics::set_backend_health(
            &pool.name,
            &backend.addr,
            backend.health.state() == super::health::State::Healthy,
        );
    }
}

async fn check_once(pool: &Pool, i: usize, connector: &Connector) -> Result<(), String> {
    let hc = pool.health_check.as_ref().expect("checked pools only");
    let backend = &pool.backends[i];
    match hc.kind {
        CheckKind::Tcp => tokio::net::TcpStream::connect(backend.endpoint.load().socket)
            .await
            .map(|_| ())
            .map_err(|e| format!("tcp connect: {e}")),
        CheckKind::Http => {
            let mut peer = backend.endpoint.load().peer.clone();
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
