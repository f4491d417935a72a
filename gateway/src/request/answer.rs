//! Answers Portico or a plugin makes instead of a backend: written like a backend's (the
//! request id added, the response hooks run), and the failure phase's choice of answer when
//! proxying failed.

use super::body;
use super::ctx::Ctx;
use super::failover::is_timeout;
use super::leftover;
use super::local_error::{error_response, LocalError};
use crate::config::HeaderCase;
use crate::metrics;
use crate::plugin::Response;
use pingora_core::{Error, ErrorSource, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{FailToProxy, Session};

/// Writes an answer Portico or a plugin made: the request id is added and the response
/// hooks run, as for an upstream answer. The request body it leaves unread decides whether
/// the connection stays open (see `leftover`).
pub(super) async fn write(session: &mut Session, ctx: &mut Ctx, resp: Response) -> Result<()> {
    leftover::read_small_body(session).await;
    let size = Some(resp.headers.len() + 3);
    let mut header = match ctx.snapshot.config.server.header_case {
        HeaderCase::Preserve => ResponseHeader::build(resp.status, size)?,
        HeaderCase::Normalize => ResponseHeader::build_no_case(resp.status, size)?,
    };
    for (k, v) in &resp.headers {
        header.append_header(k.clone(), v.as_str())?;
    }
    // A 204 or 304 has no body, and a 204 not even a Content-Length (RFC 9110 8.6).
    let bodiless = matches!(resp.status, 204 | 304);
    if !bodiless {
        header.insert_header(http::header::CONTENT_LENGTH, resp.body.len().to_string())?;
    }
    header.insert_header(
        ctx.snapshot.request_id.wire.clone(),
        ctx.request_id_value()?,
    )?;
    let snap = ctx.snapshot.clone();
    snap.chains(ctx.route)
        .response(session, &mut header, &mut ctx.state)
        .await;
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

/// Answers with a local error's response.
pub(super) async fn local(session: &mut Session, ctx: &mut Ctx, e: LocalError) -> Result<()> {
    let resp = e.response(&ctx.state.request_id);
    write(session, ctx, resp).await
}

/// Answers with a plugin's response, counted as that plugin's rejection.
pub(super) async fn plugin(
    session: &mut Session,
    ctx: &mut Ctx,
    plugin: &'static str,
    resp: Response,
) -> Result<()> {
    let route = ctx.state.route.as_deref().unwrap_or("unmatched");
    metrics::PLUGIN_REJECTIONS
        .with_label_values(&[plugin, route])
        .inc();
    write(session, ctx, resp).await
}

/// The redirect listener's answer (`redirect_https`): the same host and target on https.
pub(super) fn to_https(session: &Session, ctx: &Ctx, port: u16) -> Response {
    let host = &ctx.state.host;
    let target = session
        .req_header()
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    Response::text(308, "308 redirecting to https\n").with_header("Location", location)
}

/// The failure phase: answers the client for a request that could not be proxied (a local
/// error, a `request_body` hook's answer, or the backend's failure), unless the client
/// already got a response or is gone.
pub(super) async fn failure(session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
    if let Some((plugin_name, resp)) = ctx.body.answer.take() {
        // Nothing more of the body is forwarded; the connection closes after the answer.
        let status = resp.status;
        session.set_keepalive(None);
        if session.response_written().is_none() {
            if let Err(err) = plugin(session, ctx, plugin_name, resp).await {
                log::debug!("cannot send the plugin's answer: {err}");
            }
        }
        ctx.state.status = status;
        return FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        };
    }
    let (status, resp) = match LocalError::of(e) {
        Some(local) => (local.status(), local.response(&ctx.state.request_id)),
        None => {
            let (status, message) = classify(e, ctx);
            (
                status,
                error_response(status, message, &ctx.state.request_id),
            )
        }
    };
    if status > 0 && !ctx.responded && session.response_written().is_none() {
        // After a failure on the way through the upstream Pingora keeps the connection
        // or not by its own reckoning (`can_reuse_downstream` is not asked there), and
        // mostly not: a client told keep-alive would send its next request into a
        // closed connection. So the answer says close, and the connection is closed.
        session.set_keepalive(None);
        if let Err(err) = write(session, ctx, resp).await {
            log::debug!("cannot send the error response: {err}");
        }
    }
    ctx.state.status = if status > 0 { status } else { ctx.state.status };
    FailToProxy {
        error_code: status,
        can_reuse_downstream: false,
    }
}

/// The status and message for a failure that is not Portico's own answer: the backend's
/// (502, 504 on a timeout) or the client's (408, 400; 0 when the client is gone and nothing
/// can be sent).
fn classify(e: &Error, ctx: &Ctx) -> (u16, &'static str) {
    match e.etype() {
        // Not made by Portico (its own carry a `LocalError`); kept as Pingora means it.
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
    }
}

/// Whether an error is a `request_body` hook's answer (not an operator's problem).
pub(super) fn is_plugin_answer(e: &Error) -> bool {
    e.etype() == &body::REFUSED
}
