//! The `upstreams` section: each pool, its backends' peers (TLS, timeouts, HTTP version) and
//! their health records.

use super::health_book::HealthBook;
use crate::config::{self, Balance, Config, HashKey, Problems, UpstreamConfig};
use crate::tls;
use crate::upstream::{Backend, Endpoint, Pool};
use arc_swap::ArcSwap;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::CertKey;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

pub(super) fn compile(
    cfg: &Config,
    base: &Path,
    health: &HealthBook,
    p: &mut Problems,
) -> BTreeMap<String, Arc<Pool>> {
    let mut pools = BTreeMap::new();
    for (name, u) in &cfg.upstreams {
        let at = format!("upstreams.{name}");
        if let Some(pool) = compile_pool(name, u, &at, base, health, p) {
            pools.insert(name.clone(), Arc::new(pool));
        }
    }
    pools
}

fn compile_pool(
    name: &str,
    u: &UpstreamConfig,
    at: &str,
    base: &Path,
    health: &HealthBook,
    p: &mut Problems,
) -> Option<Pool> {
    let before = p.is_empty();
    if u.backends.is_empty() {
        p.add(format!("{at}.backends"), "at least one backend is required");
    }
    // Hashed by the client's address unless `hash_key` says otherwise.
    let hash_key = match (u.balance, &u.hash_key) {
        (Balance::ConsistentHash, None) => Some(HashKey::ClientIp),
        (Balance::ConsistentHash, Some(k)) => {
            p.parsed(&format!("{at}.hash_key"), k);
            Some(k.get().clone())
        }
        (_, Some(_)) => {
            p.add(
                format!("{at}.hash_key"),
                "hash_key is only used with balance: consistent_hash",
            );
            None
        }
        _ => None,
    };
    let refresh = u.dns_refresh.get();
    if !refresh.is_zero() && refresh < std::time::Duration::from_secs(1) {
        // DNS answers live for whole seconds; asking more often only loads the resolver.
        p.add(
            format!("{at}.dns_refresh"),
            "must be 0 (resolve only at load) or at least 1s",
        );
    }
    if let Some(hc) = &u.health_check {
        if hc.interval.get() < crate::upstream::CHECK_MIN_INTERVAL {
            p.add(
                format!("{at}.health_check.interval"),
                "must be at least 100ms",
            );
        }
        if hc.healthy_after == 0 || hc.unhealthy_after == 0 {
            p.add(
                format!("{at}.health_check"),
                "healthy_after and unhealthy_after must be at least 1",
            );
        }
        if !hc.path.starts_with('/') {
            p.add(format!("{at}.health_check.path"), "must start with /");
        }
    }
    if let Some(h) = &u.host {
        if http::HeaderValue::from_str(h).is_err() {
            p.add(
                format!("{at}.host"),
                format!("{h:?} is not a valid Host value"),
            );
        }
    }

    // The TLS pieces every backend's peer shares.
    let mut ca = None;
    let mut client = None;
    if let Some(t) = &u.tls {
        if let Some(c) = &t.ca {
            let path = config::resolve(base, c);
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|pem| {
                    pingora_core::tls::x509::X509::stack_from_pem(&pem).map_err(|e| e.to_string())
                }) {
                Ok(v) if !v.is_empty() => ca = Some(Arc::new(v.into_boxed_slice())),
                Ok(_) => p.add(
                    format!("{at}.tls.ca"),
                    format!("{} holds no PEM certificate", path.display()),
                ),
                Err(e) => p.add(
                    format!("{at}.tls.ca"),
                    format!("cannot read {}: {e}", path.display()),
                ),
            }
        }
        match (&t.client_cert, &t.client_key) {
            (Some(c), Some(k)) => {
                match tls::load_certified_key(&config::resolve(base, c), &config::resolve(base, k))
                {
                    Ok(ck) => client = Some(Arc::new(CertKey::new(ck.chain, ck.key))),
                    Err(e) => p.add(format!("{at}.tls.client_cert"), e),
                }
            }
            (None, None) => {}
            _ => p.add(
                format!("{at}.tls"),
                "client_cert and client_key go together",
            ),
        }
    }

    let mut backends = Vec::new();
    let mut seen = HashSet::new();
    let checked = u.health_check.is_some();
    for (backup, list, key) in [
        (false, &u.backends, "backends"),
        (true, &u.backup, "backup"),
    ] {
        for (i, b) in list.iter().enumerate() {
            let bat = format!("{at}.{key}[{i}]");
            if !seen.insert(b.addr.clone()) {
                p.add(
                    format!("{bat}.addr"),
                    format!("duplicate backend {:?}", b.addr),
                );
                continue;
            }
            if b.weight == 0 || b.weight > 1000 {
                p.add(format!("{bat}.weight"), "must be between 1 and 1000");
            }
            let socket = match crate::upstream::resolve(&b.addr) {
                Ok(s) => s,
                Err(e) => {
                    p.add(format!("{bat}.addr"), e);
                    continue;
                }
            };
            let host_part = b
                .addr
                .rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']))
                .unwrap_or(&b.addr);
            let mut peer = match &u.tls {
                Some(t) => {
                    // An empty SNI would silently switch verification off in Pingora, so
                    // fall back to the backend's host name or address.
                    let sni = t.sni.clone().unwrap_or_else(|| host_part.to_string());
                    let mut peer = match &client {
                        Some(ck) => HttpPeer::new_mtls(socket, sni, ck.clone()),
                        None => HttpPeer::new(socket, true, sni),
                    };
                    peer.options.verify_cert = t.verify;
                    peer.options.verify_hostname = t.verify;
                    peer.options.ca = ca.clone();
                    peer
                }
                None => HttpPeer::new(socket, false, String::new()),
            };
            peer.options.connection_timeout = Some(u.timeouts.connect.get());
            peer.options.total_connection_timeout = Some(u.timeouts.connect.get() * 2);
            peer.options.read_timeout = Some(u.timeouts.read.get());
            peer.options.write_timeout = Some(u.timeouts.write.get());
            peer.options.idle_timeout = Some(u.timeouts.idle.get());
            if u.http2 {
                // Prior knowledge without TLS (h2c), ALPN h2 with TLS: gRPC needs HTTP/2 end to end.
                peer.options.set_http_version(2, 2);
            }
            let h = health.get(name, &b.addr, backup, checked);
            backends.push(Backend {
                addr: b.addr.as_str().into(),
                endpoint: ArcSwap::from_pointee(Endpoint::new(socket, peer)),
                weight: b.weight.max(1),
                backup,
                health: h,
                inflight: Default::default(),
                answered: Default::default(),
            });
        }
    }
    if before && !p.is_empty() {
        return None;
    }
    Some(Pool::new(
        name.into(),
        backends,
        u.balance,
        hash_key,
        u.retries,
        u.passive.clone(),
        u.health_check.clone(),
        u.dns_refresh.get(),
        u.host.clone(),
    ))
}
