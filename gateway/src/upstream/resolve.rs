//! Backends given by name (`app.internal:9001`): resolved by the system resolver when the
//! config is loaded, then again every `dns_refresh`, so that a backend whose address moves
//! (a cloud load balancer, a database failover, a rescheduled container) is followed without
//! a reload. A failed lookup keeps the last address: a resolver outage must not take down
//! backends that are still where they were.

use super::pool::Pool;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};

/// A lookup that takes longer than this counts as failed (the resolver's own retries can take
/// much longer); the next one starts at the next refresh.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `addr` is a host name (to be resolved) rather than an address.
pub(super) fn is_name(addr: &str) -> bool {
    addr.parse::<SocketAddr>().is_err()
}

/// `host:port` to the address to use: an address as written, a name by the system resolver
/// (its first answer).
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    if let Ok(s) = addr.parse::<SocketAddr>() {
        return Ok(s);
    }
    if !addr.contains(':') {
        return Err(format!("{addr:?} has no port: write host:port"));
    }
    addr.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr:?} resolves to no address"))
}

/// Resolves one backend's name every `dns_refresh` and moves it when its address is no
/// longer among the answers. An address still among them is kept, so a name that answers
/// with several addresses in turn does not make the backend hop between them.
pub(super) async fn refresh_loop(pool: Arc<Pool>, i: usize) {
    let backend = &pool.backends[i];
    let every = pool.dns_refresh;
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let answer =
            match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(&*backend.addr))
                .await
            {
                Ok(Ok(found)) => Ok(found.collect::<Vec<_>>()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
            };
        let current = backend.endpoint.load();
        match answer {
            Ok(found) if !found.is_empty() => {
                if failing {
                    failing = false;
                    log::info!(
                        "upstream {}: backend {} resolves again",
                        pool.name,
                        backend.addr
                    );
                }
                if found.contains(&current.socket) {
                    continue;
                }
                let to = found[0];
                log::info!(
                    "upstream {}: backend {} moved from {} to {to}",
                    pool.name,
                    backend.addr,
                    current.socket
                );
                backend.endpoint.store(Arc::new(current.moved_to(to)));
                backend.health.moved(&pool.name, &backend.addr);
            }
            failed => {
                if !failing {
                    failing = true;
                    let why = failed.err().unwrap_or_else(|| "no address".into());
                    log::warn!(
                        "upstream {}: backend {} cannot be resolved ({why}); it stays at {}",
                        pool.name,
                        backend.addr,
                        current.socket
                    );
                }
            }
        }
    }
}
