//! Which backend an attempt goes to, what its outcome does to the backend's health, and
//! whether a failed attempt is tried again on another backend (docs/upstreams.md).

use super::ctx::Ctx;
use super::local_error::LocalError;
use crate::config::HashKey;
use crate::metrics;
use crate::plugin::RequestState;
use crate::upstream::{hash_key, Admission, Probe};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Picks the backend of the next attempt: one not tried yet, by the pool's balance, healthy
/// ones first.
pub(super) async fn pick(session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
    ctx.release_inflight();
    let pool = ctx.pool().cloned().ok_or(LocalError::NoUpstream)?;
    let key = pool
        .hash_key
        .as_ref()
        .map(|k| consistent_key(k, session, &ctx.state));
    let mut picked = pool.select(key, &ctx.tried);
    if picked.is_none() && ctx.tried.is_empty() && pool.awaiting_first_checks() {
        // Just started: the backends are not out, only not checked yet.
        pool.first_checks().await;
        picked = pool.select(key, &ctx.tried);
    }
    let Some((i, admission)) = picked else {
        // Nothing left to try: the error of the last attempt (an upstream one, so that a
        // timeout still answers 504), or 503 when nothing was up.
        return match ctx.last_error.clone() {
            Some(e) => Err(Error::explain(e, "no other backend left to retry").into_up()),
            None => Err(LocalError::NoHealthyBackend.into()),
        };
    };
    if !ctx.tried.is_empty() {
        metrics::RETRIES.with_label_values(&[&pool.name]).inc();
    }
    // Replacing an earlier attempt's guard frees its slot if that attempt had no verdict.
    ctx.probe = (admission == Admission::Probe).then(|| {
        log::info!(
            "upstream {}: probing ejected backend {}",
            pool.name,
            pool.backends[i].addr
        );
        Probe::new(pool.backends[i].health.clone())
    });
    ctx.tried.push(i);
    pool.backends[i].inflight.fetch_add(1, Ordering::Relaxed);
    ctx.inflight = true;
    ctx.state.backend = Some(pool.backends[i].addr.clone());
    if let Some(trace) = &mut ctx.trace {
        trace.attempt(&pool.backends[i].addr);
    }
    if ctx.state.upstream_started.is_none() {
        ctx.state.upstream_started = Some(Instant::now());
    }
    Ok(Box::new(pool.backends[i].endpoint.load().peer.clone()))
}

/// The pool's own `Host` for the backend, instead of the client's.
pub(super) fn set_host(upstream: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
    if let Some(host) = ctx.pool().and_then(|p| p.host.clone()) {
        upstream.insert_header(http::header::HOST, host)?;
    }
    Ok(())
}

/// The backend answered: a success for its health (or a failure, a 5xx with `count_5xx`).
pub(super) fn answered(resp: &ResponseHeader, ctx: &mut Ctx) {
    let probe = ctx.probe.take();
    if let (Some(pool), Some(&i)) = (ctx.pool(), ctx.tried.last()) {
        let backend = &pool.backends[i];
        let failed = pool.passive.count_5xx && resp.status.is_server_error();
        if failed {
            pool.report_failure(i, &format!("answered {}", resp.status.as_u16()), probe);
        } else {
            pool.report_success(i, probe);
        }
        backend
            .answered
            .get_or_init(|| {
                metrics::UPSTREAM_REQUESTS.with_label_values(&[&pool.name, &backend.addr, "ok"])
            })
            .inc();
    }
    if let Some(t) = ctx.state.upstream_started {
        ctx.state.upstream_time = Some(t.elapsed());
    }
    if let Some(trace) = &mut ctx.trace {
        trace.attempt_status(resp.status.as_u16());
    }
}

/// The attempt could not connect: nothing was sent, so any request may go to another
/// backend.
pub(super) fn connect_failed(ctx: &mut Ctx, mut e: Box<Error>) -> Box<Error> {
    if let (Some(pool), Some(&i)) = (ctx.pool().cloned().as_ref(), ctx.tried.last()) {
        let outcome = if is_timeout(&e) {
            "timeout"
        } else {
            "connect_error"
        };
        metrics::UPSTREAM_REQUESTS
            .with_label_values(&[&pool.name, &pool.backends[i].addr, outcome])
            .inc();
        pool.report_failure(i, &e.to_string(), ctx.probe.take());
        if let Some(trace) = &mut ctx.trace {
            trace.end_attempt(Some(outcome));
        }
        e.set_retry(ctx.tried.len() <= pool.retries && ctx.tried.len() < pool.backends.len());
    }
    ctx.last_error = Some(e.etype().clone());
    e
}

/// The attempt failed after connecting: counted against the backend when the backend is at
/// fault, and retried only when that is safe.
pub(super) fn proxy_failed(
    peer: &HttpPeer,
    session: &Session,
    e: Box<Error>,
    ctx: &mut Ctx,
) -> Box<Error> {
    let mut e = e.more_context(format!("backend {peer}"));
    let upstream_fault = e.esource() == &ErrorSource::Upstream;
    if let (Some(pool), Some(&i)) = (ctx.pool().cloned().as_ref(), ctx.tried.last()) {
        if upstream_fault {
            let outcome = if is_timeout(&e) { "timeout" } else { "error" };
            metrics::UPSTREAM_REQUESTS
                .with_label_values(&[&pool.name, &pool.backends[i].addr, outcome])
                .inc();
            pool.report_failure(i, &e.to_string(), ctx.probe.take());
            if let Some(trace) = &mut ctx.trace {
                trace.end_attempt(Some(outcome));
            }
        }
        // Repeat only what is safe to repeat: an idempotent method whose body is still
        // whole in the retry buffer (and as the client sent it: no `request_body` hook
        // changed it), before any response reached the client.
        let safe = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated()
            && !ctx.body.changed
            && !ctx.responded
            && upstream_fault;
        // A failure on a reused (pooled) connection gets no attempt beyond `retries`
        // either: it could only go to yet another backend, never back to this one.
        let budget = ctx.tried.len() <= pool.retries && ctx.tried.len() < pool.backends.len();
        e.set_retry(safe && budget);
    } else {
        e.set_retry(false);
    }
    ctx.last_error = Some(e.etype().clone());
    e
}

pub(super) fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout
    )
}

/// The consistent-hash key of a request, by the pool's `hash_key`.
fn consistent_key(key: &HashKey, session: &Session, state: &RequestState) -> u64 {
    let req = session.req_header();
    match key {
        HashKey::Path => hash_key(req.uri.path().as_bytes()),
        HashKey::Header(name) => {
            hash_key(req.headers.get(name).map(|v| v.as_bytes()).unwrap_or(b""))
        }
        HashKey::Cookie(name) => {
            let v = req
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .unwrap_or("");
            hash_key(v.as_bytes())
        }
        HashKey::ClientIp => match state.client_ip {
            IpAddr::V4(a) => hash_key(&a.octets()),
            IpAddr::V6(a) => hash_key(&a.octets()),
        },
    }
}
