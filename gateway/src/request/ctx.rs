//! What Portico keeps about one request while it runs: the snapshot it started on, the route
//! it took, its attempts at backends, and what the plugins see (`RequestState`).

use super::client;
use crate::lifecycle::InFlight;
use crate::plugin::{RequestState, Response};
use crate::route::{RequestKey, Route};
use crate::snapshot::Snapshot;
use crate::traces::RequestTrace;
use crate::upstream::{Pool, Probe};
use pingora_core::{Error, ErrorType, Result};
use pingora_proxy::Session;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Per-request context: the snapshot the request started on, and its bookkeeping.
pub struct Ctx {
    pub(super) snapshot: Arc<Snapshot>,
    pub state: RequestState,
    /// The matched route's position in the snapshot's route table.
    pub(super) route: Option<usize>,
    /// Backends tried so far, in order; the last is the current one.
    pub(super) tried: Vec<usize>,
    /// Whether the current attempt holds an in-flight slot on its backend.
    pub(super) inflight: bool,
    /// Set once any response header reached the client (no retry after that).
    pub(super) responded: bool,
    /// The request id as a header value, made once for the upstream request and the
    /// response to share (see `request_id_value`).
    request_id_value: Option<http::HeaderValue>,
    /// Set when Portico (or a plugin) answered instead of a backend: what is left of the
    /// request body is dealt with after logging (see `leftover`).
    pub(super) answered: bool,
    /// The error that ended the last attempt, for the answer when no backend is left.
    pub(super) last_error: Option<ErrorType>,
    /// Held while the current attempt is the one probing request to a backend whose
    /// ejection expired; settled when its outcome is reported, freed if the request ends
    /// without one.
    pub(super) probe: Option<Probe>,
    /// How far the `request_body` hooks have seen the body (see `body.rs`).
    pub(super) body: BodySeen,
    /// An ACME HTTP-01 request, answered before anything else (acme/answer.rs).
    pub(super) acme_challenge: bool,
    /// With `server.tracing`: the request's server span and its current attempt's span
    /// (boxed: the context stays as small as without tracing).
    pub(super) trace: Option<Box<RequestTrace>>,
    /// Counts this request as in flight until the context is dropped (after logging), so
    /// that a draining process waits for it.
    _in_flight: InFlight,
}

/// What the `request_body` hooks have seen of the request body, so that a retry's resend of
/// it does not run them again.
#[derive(Default)]
pub(super) struct BodySeen {
    /// The count of body bytes read from the client when the hooks last ran.
    pub(super) read: usize,
    /// The hooks were told the body ended.
    pub(super) ended: bool,
    /// A hook changed a piece of the body: what a retry would resend is not what went out.
    pub(super) changed: bool,
    /// A hook's answer, written by the failure phase, and the hook's plugin.
    pub(super) answer: Option<(&'static str, Response)>,
}

impl Ctx {
    pub(super) fn new(snapshot: Arc<Snapshot>, listener: Arc<str>, in_flight: InFlight) -> Ctx {
        Ctx {
            snapshot,
            state: RequestState::new(listener, IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            route: None,
            tried: Vec::new(),
            inflight: false,
            responded: false,
            request_id_value: None,
            answered: false,
            last_error: None,
            probe: None,
            body: BodySeen::default(),
            acme_challenge: false,
            trace: None,
            _in_flight: in_flight,
        }
    }

    pub(super) fn route(&self) -> Option<&Route> {
        self.route.map(|i| &self.snapshot.routes.routes()[i])
    }

    pub(super) fn pool(&self) -> Option<&Arc<Pool>> {
        self.route().and_then(|r| r.upstream.as_ref())
    }

    /// Looks the request up in the route table of listener `listener` (its position in
    /// `listeners`), by its host and `matching` path (when it differs from the request's).
    pub(super) fn choose_route(
        &mut self,
        listener: usize,
        session: &Session,
        matching: Option<&str>,
    ) {
        let req = session.req_header();
        let key = RequestKey {
            host: &self.state.host,
            path: matching.unwrap_or(req.uri.path()),
            method: &req.method,
            headers: &req.headers,
        };
        if let Some(index) = self.snapshot.routes.lookup_index(listener, &key) {
            let route = &self.snapshot.routes.routes()[index];
            self.state.route = Some(route.name.clone());
            self.state.upstream = route.upstream.as_ref().map(|p| p.name.clone());
            self.route = Some(index);
        }
    }

    /// The largest body this request may have (0: no limit).
    pub(super) fn body_limit(&self) -> u64 {
        self.route()
            .and_then(|r| r.max_body_bytes)
            .unwrap_or(self.snapshot.config.server.limits.max_body_bytes)
    }

    /// The request id as a header value: made on first use and then shared, so a proxied
    /// request copies it once rather than for the upstream request and again for the
    /// response; made again if a plugin changed the id in between.
    pub(super) fn request_id_value(&mut self) -> Result<http::HeaderValue> {
        if let Some(v) = &self.request_id_value {
            if v.as_bytes() == self.state.request_id.as_bytes() {
                return Ok(v.clone());
            }
        }
        let v = client::request_id_value(&self.state.request_id).ok_or_else(|| {
            Error::explain(ErrorType::InvalidHTTPHeader, "invalid request id value")
        })?;
        self.request_id_value = Some(v.clone());
        Ok(v)
    }

    pub(super) fn release_inflight(&mut self) {
        if self.inflight {
            if let (Some(pool), Some(&i)) = (self.pool(), self.tried.last()) {
                pool.backends[i].inflight.fetch_sub(1, Ordering::Relaxed);
            }
            self.inflight = false;
        }
    }
}
