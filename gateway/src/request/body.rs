//! The request body on its way to the backend: its size limit, keeping it for a retry, and
//! the plugins' `request_body` hooks (PLUGINS.md, "Hooks").

use super::ctx::Ctx;
use super::local_error::LocalError;
use crate::plugin::Hooks;
use bytes::Bytes;
use pingora_core::{Error, ErrorType, Result};
use pingora_proxy::Session;

/// The error that stops proxying when a `request_body` hook answered; the answer itself
/// waits in the request's context for the failure phase to write.
pub(super) const REFUSED: ErrorType = ErrorType::Custom("request body refused by a plugin");

/// Whether the request declares (`Content-Length`) a body larger than its limit: refused
/// before anything else looks at it.
pub(super) fn declared_too_large(session: &Session, ctx: &Ctx) -> bool {
    let limit = ctx.body_limit();
    if limit == 0 || ctx.route.is_none() {
        return false;
    }
    session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit)
}

/// Keeps the request body (up to Pingora's retry buffer) so that a request that is safe to
/// repeat can go to another backend after a failure.
pub(super) fn keep_for_retry(session: &mut Session) {
    if session.req_header().method.is_idempotent() {
        session.as_downstream_mut().enable_retry_buffering();
    }
}

/// One piece of the body, read from the client and about to go to the backend: counted
/// against the limit (a body without `Content-Length` is counted as it streams), then handed
/// to the `request_body` hooks, which may change it or answer instead.
///
/// The hooks see each piece once. When an attempt is retried on another backend, Pingora
/// resends the body read so far (or, for a request without one, its end) before reading
/// more; that resend is not shown to the hooks again. A request whose body a hook changed is
/// not retried once its body started to go out (`failover.rs`): what Pingora would resend is
/// the body as the client sent it.
pub(super) async fn filter(
    session: &mut Session,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
    ctx: &mut Ctx,
) -> Result<()> {
    let limit = ctx.body_limit();
    let read = session.body_bytes_read();
    if limit > 0 && body.is_some() && read as u64 > limit {
        return Err(LocalError::BodyTooLarge.into());
    }
    if !ctx
        .snapshot
        .chains(ctx.route)
        .implements(Hooks::REQUEST_BODY)
    {
        return Ok(());
    }
    let new = read > ctx.body.read || (end_of_stream && !ctx.body.ended);
    if !new {
        return Ok(());
    }
    ctx.body.read = read;
    ctx.body.ended |= end_of_stream;
    // Where the piece's bytes are: a hook that changes or replaces it moves them.
    let before = body.as_ref().map(|b| (b.as_ptr() as usize, b.len()));
    let snap = ctx.snapshot.clone();
    if let Some(answer) = snap
        .chains(ctx.route)
        .request_body(session, body, end_of_stream, &mut ctx.state)
        .await
    {
        let plugin = answer.0;
        ctx.body.answer = Some(answer);
        return Error::e_explain(REFUSED, plugin);
    }
    if body.as_ref().map(|b| (b.as_ptr() as usize, b.len())) != before {
        ctx.body.changed = true;
    }
    Ok(())
}
