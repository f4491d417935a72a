//! The request's way through Portico, one `ProxyHttp` phase after another:
//! route lookup in the current snapshot → global chain → route chain → a healthy backend
//! (retrying on another after a failure) → response hooks → logging and metrics, once.

use crate::forwarded;
use crate::metrics;
use crate::plugin::{Chains, RequestState, Response};
use crate::route::RequestKey;
use crate::snapshot::Snapshot;
use crate::upstream::{hash_key, Admission, Pool, Probe};
use crate::Shared;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// One listener's proxy. All listeners share the snapshot; each knows its own name and
/// whether it speaks TLS or only redirects.
pub struct Gateway {
    pub listener: Arc<str>,
    /// The listener's position in `listeners` (fixed: a reload cannot add, remove or
    /// reorder listeners), which picks its routes and its entries in the snapshot.
    pub index: usize,
    pub tls: bool,
    pub redirect_https: Option<u16>,
    /// The listener's own port, as the backend is told it (`X-Forwarded-Port`).
    pub port: http::HeaderValue,
    pub(crate) shared: Arc<Shared>,
}

/// Per-request context: the snapshot the request started on, and its bookkeeping.
pub struct Ctx {
    snapshot: Arc<Snapshot>,
    pub state: RequestState,
    route: Option<usize>,
    /// Backends tried so far, in order; the last is the current one.
    tried: Vec<usize>,
    /// Whether the current attempt holds an in-flight slot on its backend.
    inflight: bool,
    /// Set once any response header reached the client (no retry after that).
    responded: bool,
    /// The request id as a header value, made once for the upstream request and the
    /// response to share (see `request_id_value`).
    request_id_value: Option<http::HeaderValue>,
    /// Set when Portico (or a plugin) answered instead of a backend: what is left of the
    /// request body is dealt with after logging (see `leftover`).
    answered: bool,
    /// The error that ended the last attempt, for the answer when no backend is left.
    last_error: Option<ErrorType>,
    /// Held while the current attempt is the one probing request to a backend whose
    /// ejection expired; settled when its outcome is reported, freed if the request ends
    /// without one.
    probe: Option<Probe>,
    /// An ACME HTTP-01 request, answered before anything else (acme/answer.rs).
    acme_challenge: bool,
    /// With `server.tracing`: the request's server span and its current attempt's span
    /// (boxed: the context stays as small as without tracing).
    trace: Option<Box<crate::traces::RequestTrace>>,
    /// Counts this request as in flight until the context is dropped (after logging), so
    /// that a draining process waits for it.
    _in_flight: crate::server::InFlight,
}

impl Ctx {
    fn route(&self) -> Option<&crate::route::Route> {
        self.route.map(|i| &self.snapshot.routes.routes()[i])
    }

    fn pool(&self) -> Option<&Arc<Pool>> {
        self.route().and_then(|r| r.upstream.as_ref())
    }

    /// The request id as a header value: made on first use and then shared, so a proxied
    /// request copies it once rather than for the upstream request and again for the
    /// response; made again if a plugin changed the id in between.
    fn request_id_value(&mut self) -> Result<http::HeaderValue> {
        if let Some(v) = &self.request_id_value {
            if v.as_bytes() == self.state.request_id.as_bytes() {
                return Ok(v.clone());
            }
        }
        let v = forwarded::request_id_value(&self.state.request_id).ok_or_else(|| {
            Error::explain(ErrorType::InvalidHTTPHeader, "invalid request id value")
        })?;
        self.request_id_value = Some(v.clone());
        Ok(v)
    }

    fn release_inflight(&mut self) {
        if self.inflight {
            if let (Some(pool), Some(&i)) = (self.pool(), self.tried.last()) {
                pool.backends[i].inflight.fetch_sub(1, Ordering::Relaxed);
            }
            self.inflight = false;
        }
    }
}

impl Gateway {
    /// Writes an answer Portico or a plugin made: the request id is added and the response
    /// hooks run, as for an upstream answer. The request body it leaves unread decides
    /// whether the connection stays open (see `leftover`).
    async fn answer(&self, session: &mut Session, ctx: &mut Ctx, resp: Response) -> Result<()> {
        crate::leftover::read_small_body(session).await;
        let mut header = ResponseHeader::build(resp.status, Some(resp.headers.len() + 3))?;
        for (k, v) in &resp.headers {
            header.append_header(k.clone(), v.as_str())?;
        }
        // A 204 or 304 has no body, and a 204 not even a Content-Length (RFC 9110 8.6).
        let bodiless = matches!(resp.status, 204 | 304);
        if !bodiless {
            header.insert_header(http::header::CONTENT_LENGTH, resp.body.len().to_string())?;
        }
        header.insert_header(
            ctx.snapshot.request_id_wire.clone(),
            ctx.request_id_value()?,
        )?;
        let snap = ctx.snapshot.clone();
        let chains = chains_of(&snap, ctx.route);
        chains.response(session, &mut header, &mut ctx.state).await;
        let head_only = bodiless || session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(header), head_only || resp.body.is_empty())
            .await?;
        if !head_only && !resp.body.is_empty() {
            session.write_response_body(Some(resp.body), true).await?;
        }
        ctx.state.status = resp.status;
        ctx.answered = true;
        Ok(())
    }
}

/// The global chain, then the route's. Borrowing from a clone of the snapshot `Arc` (not
/// from `ctx`) lets hooks take `&mut ctx.state` while the chain is borrowed.
fn chains_of(snap: &Snapshot, route: Option<usize>) -> Chains<'_> {
    Chains {
        global: &snap.global,
        route: route.map(|i| &snap.routes.routes()[i].chain),
    }
}

/// A short body naming the error and the request id, so a user can quote it.
fn error_response(status: u16, message: &str, request_id: &str) -> Response {
    Response::text(
        status,
        format!("{status} {message}\nrequest id: {request_id}\n"),
    )
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    /// Pingora's response compression (off until a plugin switches it on), then the module
    /// that ends the brotli streams it leaves open (see `plugin::brotli_end`).
    fn init_downstream_modules(&self, modules: &mut pingora_core::modules::http::HttpModules) {
        modules.add_module(
            pingora_core::modules::http::compression::ResponseCompressionBuilder::enable(0),
        );
        modules.add_module(crate::plugin::BrotliEnd::builder());
    }

    fn new_ctx(&self) -> Ctx {
        Ctx {
            snapshot: self.shared.snapshot.load_full(),
            state: RequestState::new(self.listener.clone(), IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            route: None,
            tried: Vec::new(),
            inflight: false,
            responded: false,
            request_id_value: None,
            answered: false,
            last_error: None,
            probe: None,
            acme_challenge: false,
            trace: None,
            _in_flight: crate::server::InFlight::start(),
        }
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        crate::listener::head_received(session);
        if self.tls {
            ctx.state.client_cert =
                crate::listener::tls_connection(session).and_then(|c| c.client_cert.clone());
        }
        if crate::server::winding_down() {
            // Draining: `Connection: close`, so keep-alive clients reconnect elsewhere.
            session.set_keepalive(None);
        }
        let snap = ctx.snapshot.clone();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.state.request_id = forwarded::request_id(session.req_header(), &snap.request_id_header);
        ctx.state.client_ip = match forwarded::client_ip(&snap, peer, session.req_header()) {
            Ok(ip) => ip,
            // Refused before any plugin runs: an IP filter or rate limit must not see the
            // trusted proxy in place of the client.
            Err(_) => {
                return Error::e_explain(
                    ErrorType::HTTPStatus(400),
                    "an X-Forwarded-For entry from a trusted proxy is not an address",
                )
            }
        };
        crate::framing::check_request(session, &snap.config.server.limits)?;
        let limit = snap.config.server.limits.max_header_bytes;
        if limit > 0 && head_size(session.req_header()) > limit {
            return Error::e_explain(ErrorType::HTTPStatus(431), "request head too large");
        }
        // One reading of the target, host and credentials, set on the request before the
        // redirect listener and any plugin look at it (docs/security.md).
        let reading =
            match crate::request_target::read(session.req_header_mut(), &snap.config.server.path) {
                Ok(reading) => reading,
                Err(refusal) => {
                    // A malformed request: its connection is not worth keeping.
                    session.set_keepalive(None);
                    return Error::e_explain(ErrorType::HTTPStatus(400), refusal.reason());
                }
            };
        ctx.state.host = reading.host;
        if !self.tls && crate::acme::is_http01(session.req_header().uri.path()) {
            ctx.acme_challenge = true;
            return Ok(());
        }
        if self.redirect_https.is_some() {
            return Ok(());
        }
        let req = session.req_header();
        let key = RequestKey {
            host: &ctx.state.host,
            path: reading.matching.as_deref().unwrap_or(req.uri.path()),
            method: &req.method,
            headers: &req.headers,
        };
        if let Some(index) = snap.routes.lookup_index(self.index, &key) {
            let route = &snap.routes.routes()[index];
            ctx.route = Some(index);
            ctx.state.route = Some(route.name.clone());
            ctx.state.upstream = route.upstream.as_ref().map(|p| p.name.clone());
        }
        ctx.trace = crate::traces::begin(session, &mut ctx.state);
        let chains = chains_of(&snap, ctx.route);
        chains.early_request(session, &mut ctx.state).await;
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if ctx.acme_challenge {
            ctx.state.status = crate::acme::answer_http01(session).await?;
            ctx.answered = true;
            return Ok(true);
        }
        if let Some(port) = self.redirect_https {
            let req = session.req_header();
            let host = ctx.state.host.clone();
            let target = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let location = if port == 443 {
                format!("https://{host}{target}")
            } else {
                format!("https://{host}:{port}{target}")
            };
            let resp =
                Response::text(308, "308 redirecting to https\n").with_header("Location", location);
            self.answer(session, ctx, resp).await?;
            return Ok(true);
        }
        // A body declared too large is refused before anything else looks at it.
        let limit = ctx
            .route()
            .and_then(|r| r.max_body_bytes)
            .unwrap_or(ctx.snapshot.config.server.limits.max_body_bytes);
        if limit > 0 && ctx.route.is_some() {
            let declared = session
                .req_header()
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                let resp = error_response(413, "request body too large", &ctx.state.request_id);
                self.answer(session, ctx, resp).await?;
                return Ok(true);
            }
        }
        // The global chain runs on every request, matched or not (an IP filter or a global
        // redirect applies before any 404); the route's chain after it.
        let snap = ctx.snapshot.clone();
        let chains = chains_of(&snap, ctx.route);
        if let Some((plugin, resp)) = chains.request(session, &mut ctx.state).await {
            let route = ctx.state.route.as_deref().unwrap_or("unmatched");
            metrics::PLUGIN_REJECTIONS
                .with_label_values(&[plugin, route])
                .inc();
            self.answer(session, ctx, resp).await?;
            return Ok(true);
        }
        if ctx.route.is_none() {
            let resp = error_response(404, "no route matches this request", &ctx.state.request_id);
            self.answer(session, ctx, resp).await?;
            return Ok(true);
        }
        if ctx.pool().is_none() {
            let resp = error_response(502, "this route has no upstream", &ctx.state.request_id);
            self.answer(session, ctx, resp).await?;
            return Ok(true);
        }
        // Keep the request body (up to Pingora's retry buffer) so that a request that is safe
        // to repeat can go to another backend after a failure.
        if session.req_header().method.is_idempotent() {
            session.as_downstream_mut().enable_retry_buffering();
        }
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        _eos: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // A body without Content-Length (chunked) is counted as it streams.
        let limit = ctx
            .route()
            .and_then(|r| r.max_body_bytes)
            .unwrap_or(ctx.snapshot.config.server.limits.max_body_bytes);
        if limit > 0 && body.is_some() && session.body_bytes_read() as u64 > limit {
            return Error::e_explain(ErrorType::HTTPStatus(413), "request body too large");
        }
        Ok(())
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.release_inflight();
        let pool = ctx
            .pool()
            .cloned()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "route has no upstream"))?;
        let key = match pool.balance {
            crate::config::Balance::ConsistentHash => {
                Some(consistent_key(&pool, session, &ctx.state))
            }
            _ => None,
        };
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
                None => Error::e_explain(ErrorType::HTTPStatus(503), "no healthy backend"),
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

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let snap = ctx.snapshot.clone();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let request_id = ctx.request_id_value()?;
        forwarded::set_upstream_headers(
            &snap,
            upstream,
            peer,
            &ctx.state,
            self.tls,
            &self.port,
            &request_id,
        )?;
        if snap.mtls.get(self.index).copied().unwrap_or(false) {
            crate::client_cert::set_xfcc(upstream, ctx.state.client_cert.as_deref())?;
        }
        if let Some(host) = ctx.pool().and_then(|p| p.host.clone()) {
            upstream.insert_header(http::header::HOST, host)?;
        }
        let chains = chains_of(&snap, ctx.route);
        chains
            .upstream_request(session, upstream, &mut ctx.state)
            .await;
        if let Some(trace) = &ctx.trace {
            trace.inject(upstream);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let probe = ctx.probe.take();
        if let (Some(pool), Some(&i)) = (ctx.pool(), ctx.tried.last()) {
            let backend = &pool.backends[i];
            let failed = pool.passive.count_5xx && resp.status.is_server_error();
            if failed {
                pool.report_failure(i, &format!("answered {}", resp.status.as_u16()), probe);
            } else {
                pool.report_success(i, probe);
            }
            metrics::UPSTREAM_REQUESTS
                .with_label_values(&[&pool.name, &backend.addr, "ok"])
                .inc();
        }
        if let Some(t) = ctx.state.upstream_started {
            ctx.state.upstream_time = Some(t.elapsed());
        }
        if let Some(trace) = &mut ctx.trace {
            trace.attempt_status(resp.status.as_u16());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if crate::server::winding_down() {
            session.set_keepalive(None);
        }
        ctx.responded = true;
        resp.insert_header(
            ctx.snapshot.request_id_wire.clone(),
            ctx.request_id_value()?,
        )?;
        ctx.state.status = resp.status.as_u16();
        let snap = ctx.snapshot.clone();
        let chains = chains_of(&snap, ctx.route);
        chains.response(session, resp, &mut ctx.state).await;
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        eos: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        if !(ctx.snapshot.global.is_empty() && ctx.route().is_none_or(|r| r.chain.is_empty())) {
            let snap = ctx.snapshot.clone();
            let chains = chains_of(&snap, ctx.route);
            chains.response_body(session, body, eos, &mut ctx.state);
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
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
            // Nothing was sent, so any request may go to another backend.
            e.set_retry(ctx.tried.len() <= pool.retries && ctx.tried.len() < pool.backends.len());
        }
        ctx.last_error = Some(e.etype().clone());
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        _client_reused: bool,
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
            // whole in the retry buffer, before any response reached the client.
            let safe = session.req_header().method.is_idempotent()
                && !session.as_ref().retry_buffer_truncated()
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

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (status, message) = match e.etype() {
            ErrorType::HTTPStatus(413) => (413, "request body too large"),
            ErrorType::HTTPStatus(431) => (431, "request header fields too large"),
            ErrorType::HTTPStatus(414) => (414, "request line too long"),
            ErrorType::HTTPStatus(400) => (400, "bad request"),
            ErrorType::HTTPStatus(503) => (503, "no healthy backend"),
            ErrorType::HTTPStatus(c) => (*c, "error"),
            _ if is_timeout(e) && e.esource() == &ErrorSource::Upstream => {
                (504, "the backend timed out")
            }
            _ => match e.esource() {
                ErrorSource::Upstream => (502, "the backend failed"),
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        (0, "")
                    }
                    ErrorType::ReadTimedout => (408, "request timeout"),
                    _ => (400, "bad request"),
                },
                _ => match ctx.last_error {
                    Some(_) => (502, "the backend failed"),
                    None => (500, "internal error"),
                },
            },
        };
        if status > 0 && !ctx.responded && session.response_written().is_none() {
            // After a failure on the way through the upstream Pingora keeps the connection
            // or not by its own reckoning (`can_reuse_downstream` is not asked there), and
            // mostly not: a client told keep-alive would send its next request into a
            // closed connection. So the answer says close, and the connection is closed.
            session.set_keepalive(None);
            let mut resp = error_response(status, message, &ctx.state.request_id);
            if status == 503 {
                resp = resp.with_header("Retry-After", "1");
            }
            if let Err(err) = self.answer(session, ctx, resp).await {
                log::debug!("cannot send the error response: {err}");
            }
        }
        ctx.state.status = if status > 0 { status } else { ctx.state.status };
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    fn request_summary(&self, session: &Session, ctx: &Ctx) -> String {
        // Pingora's error lines quote this; the query string may carry secrets (API keys,
        // tokens), so it is left out, as in the access log.
        let req = session.req_header();
        format!(
            "{} {} host={} request_id={}",
            req.method,
            req.uri.path(),
            ctx.state.host,
            ctx.state.request_id
        )
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        // A client going away mid-response is not an operator's problem.
        e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            )
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        ctx.release_inflight();
        if let Some(resp) = session.response_written() {
            ctx.state.status = resp.status.as_u16();
        }
        ctx.state.bytes_sent = session.body_bytes_sent() as u64;
        let method = metrics::method_label(&session.req_header().method);
        let route_metrics = match ctx.route() {
            Some(r) => &r.metrics,
            None => metrics::unmatched(),
        };
        route_metrics.record(method, ctx.state.status, ctx.state.elapsed());
        if let Some(trace) = ctx.trace.take() {
            trace.finish(ctx.state.status);
        }
        let snap = ctx.snapshot.clone();
        let chains = chains_of(&snap, ctx.route);
        chains.log(session, &ctx.state).await;
        // After the request was logged and counted, so its duration does not include this.
        if ctx.answered {
            crate::leftover::linger(session).await;
        }
    }
}

/// The size of the request head as received: request line and header lines.
fn head_size(req: &RequestHeader) -> usize {
    // The URI's text length, counted without formatting it (this runs on every request).
    let uri = &req.uri;
    let target = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path().len()
        + uri.query().map_or(0, |q| q.len() + 1);
    let line = req.method.as_str().len() + target + 12;
    line + req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
}

fn is_timeout(e: &Error) -> bool {
    matches!(
        e.etype(),
        ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout
    )
}

/// The consistent-hash key of a request, by the pool's `hash_key`.
fn consistent_key(pool: &Pool, session: &Session, state: &RequestState) -> u64 {
    let req = session.req_header();
    match pool.hash_key.as_deref().unwrap_or("client_ip") {
        "path" => hash_key(req.uri.path().as_bytes()),
        k => {
            if let Some(h) = k.strip_prefix("header:") {
                hash_key(req.headers.get(h).map(|v| v.as_bytes()).unwrap_or(b""))
            } else if let Some(c) = k.strip_prefix("cookie:") {
                let v = req
                    .headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|kv| kv.trim().split_once('='))
                    .find(|(n, _)| *n == c)
                    .map(|(_, v)| v)
                    .unwrap_or("");
                hash_key(v.as_bytes())
            } else {
                match state.client_ip {
                    IpAddr::V4(a) => hash_key(&a.octets()),
                    IpAddr::V6(a) => hash_key(&a.octets()),
                }
            }
        }
    }
}
