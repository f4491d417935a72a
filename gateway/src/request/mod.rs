//! The request's way through Portico: Pingora's `ProxyHttp` phases, in the order they run,
//! each a few lines that call the file doing the work.
//!
//! read (`read.rs`: the connection, the client, the head's checks, the one reading of the
//! target) → route (the snapshot's route table) → global chain → route chain (their
//! `request` hooks; an answer is written by `answer.rs`) → peer (`failover.rs`: a healthy
//! backend, another one after a failure) → request body (`body.rs`: its limit, the
//! `request_body` hooks) → upstream request (`client.rs`: what the backend is told about the
//! client) → response hooks → log (metrics and the `log` hooks, once; then `leftover.rs`).

mod answer;
mod body;
pub mod client;
mod ctx;
mod failover;
mod head;
mod leftover;
mod local_error;
mod read;

pub use ctx::Ctx;
pub use local_error::LocalError;

use crate::lifecycle::Lifecycle;
use crate::metrics;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::sync::Arc;

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
    /// The live snapshot, which a reload replaces.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub lifecycle: Arc<Lifecycle>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    /// Boxed: Pingora keeps the context in its request future, which it moves into a box of
    /// its own per request (and per HTTP/2 stream), and that future holds room for the
    /// context three times over; inline, the 568-byte context made it ~1.6 KiB larger to copy
    /// and to keep per request in flight (benches/README.md, "The timeouts, and the request
    /// context").
    type CTX = Box<Ctx>;

    /// Pingora's response compression (off until a plugin switches it on), then the module
    /// that ends the brotli streams it leaves open (see `plugin::brotli_end`).
    fn init_downstream_modules(&self, modules: &mut pingora_core::modules::http::HttpModules) {
        modules.add_module(
            pingora_core::modules::http::compression::ResponseCompressionBuilder::enable(0),
        );
        modules.add_module(crate::plugin::BrotliEnd::builder());
    }

    fn new_ctx(&self) -> Box<Ctx> {
        let snapshot = self.snapshot.load_full();
        Box::new(Ctx::new(
            snapshot,
            self.listener.clone(),
            self.lifecycle.request_started(),
        ))
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Box<Ctx>) -> Result<()> {
        read::connection(session, ctx, &self.lifecycle);
        let matching = read::request(session, ctx)?;
        // The CA's HTTP-01 request is answered before anything else (docs/acme.md).
        if !self.tls && crate::acme::is_http01(session.req_header().uri.path()) {
            ctx.acme_challenge = true;
            return Ok(());
        }
        if self.redirect_https.is_some() {
            return Ok(());
        }
        ctx.choose_route(self.index, session, matching.as_deref());
        ctx.trace = crate::traces::begin(session, &mut ctx.state);
        let snap = ctx.snapshot.clone();
        let chains = snap.chains(ctx.route);
        chains.early_request(session, &mut ctx.state).await;
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Box<Ctx>) -> Result<bool> {
        if ctx.acme_challenge {
            ctx.state.status = crate::acme::answer_http01(session).await?;
            ctx.answered = true;
            return Ok(true);
        }
        if let Some(port) = self.redirect_https {
            let resp = answer::to_https(session, ctx, port);
            answer::write(session, ctx, resp).await?;
            return Ok(true);
        }
        if body::declared_too_large(session, ctx) {
            answer::local(session, ctx, LocalError::BodyTooLarge).await?;
            return Ok(true);
        }
        // The global chain runs on every request, matched or not (an IP filter or a global
        // redirect applies before any 404); the route's chain after it.
        let snap = ctx.snapshot.clone();
        if let Some((plugin, resp)) = snap
            .chains(ctx.route)
            .request(session, &mut ctx.state)
            .await
        {
            answer::plugin(session, ctx, plugin, resp).await?;
            return Ok(true);
        }
        let unroutable = match ctx.route() {
            None => Some(LocalError::NoRoute),
            Some(r) if r.upstream.is_none() => Some(LocalError::NoUpstream),
            Some(_) => None,
        };
        if let Some(e) = unroutable {
            answer::local(session, ctx, e).await?;
            return Ok(true);
        }
        body::keep_for_retry(session);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<Ctx>,
    ) -> Result<()> {
        body::filter(session, body, end_of_stream, ctx).await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Box<Ctx>,
    ) -> Result<Box<HttpPeer>> {
        failover::pick(session, ctx).await
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Box<Ctx>,
    ) -> Result<()> {
        let snap = ctx.snapshot.clone();
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let request_id = ctx.request_id_value()?;
        let (tls, port) = (self.tls, &self.port);
        client::set_upstream_headers(&snap, upstream, peer, &ctx.state, tls, port, &request_id)?;
        if snap.mtls.get(self.index).copied().unwrap_or(false) {
            crate::tls::client_cert::set_xfcc(upstream, ctx.state.client_cert.as_deref())?;
        }
        failover::set_host(upstream, ctx)?;
        let chains = snap.chains(ctx.route);
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
        ctx: &mut Box<Ctx>,
    ) -> Result<()> {
        failover::answered(resp, ctx);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Box<Ctx>,
    ) -> Result<()> {
        if self.lifecycle.is_winding_down() {
            session.set_keepalive(None);
        }
        ctx.responded = true;
        let id = ctx.request_id_value()?;
        let case = ctx.snapshot.config.server.header_case;
        let http2 = session.as_downstream().is_http2();
        head::set_response_id(resp, case, http2, &ctx.snapshot.request_id, id)?;
        ctx.state.status = resp.status.as_u16();
        let snap = ctx.snapshot.clone();
        snap.chains(ctx.route)
            .response(session, resp, &mut ctx.state)
            .await;
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        eos: bool,
        ctx: &mut Box<Ctx>,
    ) -> Result<Option<std::time::Duration>> {
        if !(ctx.snapshot.global.is_empty() && ctx.route().is_none_or(|r| r.chain.is_empty())) {
            let snap = ctx.snapshot.clone();
            snap.chains(ctx.route)
                .response_body(session, body, eos, &mut ctx.state);
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<Ctx>,
        e: Box<Error>,
    ) -> Box<Error> {
        failover::connect_failed(ctx, e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Box<Ctx>,
        _client_reused: bool,
    ) -> Box<Error> {
        failover::proxy_failed(peer, session, e, ctx)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<Ctx>,
    ) -> FailToProxy {
        answer::failure(session, e, ctx).await
    }

    fn request_summary(&self, session: &Session, ctx: &Box<Ctx>) -> String {
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

    fn suppress_error_log(&self, _session: &Session, _ctx: &Box<Ctx>, e: &Error) -> bool {
        // A client going away mid-response is not an operator's problem, nor is a plugin
        // refusing a request body.
        let client_gone = e.esource() == &ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
            );
        client_gone || answer::is_plugin_answer(e)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Box<Ctx>) {
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
        snap.chains(ctx.route).log(session, &ctx.state).await;
        // After the request was logged and counted, so its duration does not include this.
        if ctx.answered {
            leftover::linger(session).await;
        }
    }
}
