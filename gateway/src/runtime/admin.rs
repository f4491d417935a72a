//! The admin listener: health and readiness for load balancers, metrics for Prometheus,
//! status and reload for operators.
//!
//! With `admin.token`, `/status` and `POST /reload` (and `/metrics` with
//! `admin.protect_metrics`) need `Authorization: Bearer TOKEN` (docs/configuration.md,
//! `admin`); `/healthz` and `/readyz` never do, since load balancers probe them bare.

use super::shared::Shared;
use crate::metrics;
use crate::net::request_target::{self, Refusal};
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

pub struct Admin {
    pub(crate) shared: Arc<Shared>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store")
        .body(body)
        .expect("static parts are valid")
}

fn json_reply(status: StatusCode, value: serde_json::Value) -> Response<Vec<u8>> {
    reply(
        status,
        "application/json",
        format!("{value}\n").into_bytes(),
    )
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    reply(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        let (authorized, protect_metrics) = {
            let snap = self.shared.snapshot.load();
            let admin = &snap.config.admin;
            let authorized = match admin.token.as_deref() {
                None | Some("") => true,
                Some(token) => bearer_matches(&req.headers, token),
            };
            (authorized, admin.protect_metrics)
        };
        // As on the listeners (docs/security.md), whichever endpoint it is.
        let repeated = request_target::repeated_credentials(&req.headers);
        let _ = session.drain_request_body().await;
        if repeated {
            let reason = Refusal::RepeatedAuthorization.reason();
            return text(StatusCode::BAD_REQUEST, &format!("{reason}\n"));
        }
        match (method.as_str(), path.as_str()) {
            ("GET" | "HEAD", "/healthz") => text(StatusCode::OK, "ok\n"),
            ("GET" | "HEAD", "/readyz") => {
                if self.shared.lifecycle.is_draining() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else {
                    text(StatusCode::OK, "ready\n")
                }
            }
            ("GET" | "HEAD", "/metrics") if protect_metrics && !authorized => unauthorized(),
            ("GET" | "HEAD", "/metrics") => {
                let snap = self.shared.snapshot.load();
                snap.publish_backend_health();
                let listeners = snap.listener_names();
                crate::acme::refresh_metrics(&listeners, &self.shared.cert_resolvers);
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics::render(),
                )
            }
            ("GET" | "HEAD", "/status") if !authorized => unauthorized(),
            ("GET" | "HEAD", "/status") => json_reply(StatusCode::OK, status(&self.shared)),
            ("POST", "/reload") if !authorized => unauthorized(),
            ("POST", "/reload") => {
                let shared = self.shared.clone();
                // Reading files and compiling a big config is blocking work.
                let result =
                    tokio::task::spawn_blocking(move || super::reload::reload(&shared)).await;
                match result {
                    Ok(Ok(version)) => json_reply(StatusCode::OK, json!({ "version": version })),
                    Ok(Err(errors)) => json_reply(
                        StatusCode::BAD_REQUEST,
                        json!({ "errors": errors.messages() }),
                    ),
                    Err(e) => json_reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({ "errors": [e.to_string()] }),
                    ),
                }
            }
            (_, "/healthz" | "/readyz" | "/metrics" | "/status" | "/reload") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

fn unauthorized() -> Response<Vec<u8>> {
    let mut r = text(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
    r.headers_mut()
        .insert("WWW-Authenticate", http::HeaderValue::from_static("Bearer"));
    r
}

/// Whether the request carries `Authorization: Bearer TOKEN` with this token (a request with
/// two `Authorization` headers is answered 400 before this is asked). Compared as SHA-256
/// digests in constant time, so neither the token's length nor how much of a guess was right
/// shows in the time to answer.
fn bearer_matches(headers: &http::HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return false;
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    presented.is_some_and(|t| {
        boring::memcmp::eq(
            &boring::sha::sha256(t.as_bytes()),
            &boring::sha::sha256(token.as_bytes()),
        )
    })
}

fn status(shared: &Shared) -> serde_json::Value {
    let snap = shared.snapshot.load();
    let listeners: Vec<_> = snap
        .config
        .listeners
        .iter()
        .map(|l| json!({ "name": l.name, "listen": l.listen.to_string() }))
        .collect();
    let routes: Vec<_> = snap
        .config
        .routes
        .iter()
        .map(|r| json!({ "name": r.name, "upstream": r.upstream }))
        .collect();
    let mut upstreams = serde_json::Map::new();
    for (name, pool) in &snap.pools {
        let backends: Vec<_> = pool
            .backends
            .iter()
            .map(|b| {
                let d = b.health.detail();
                json!({
                    "addr": &*b.addr,
                    "address": b.endpoint.load().socket.to_string(),
                    "backup": b.backup,
                    "state": b.health.state().as_str(),
                    "last_error": d.last_error,
                    "changed_at": rfc3339(d.changed_at),
                    "inflight": b.inflight.load(Ordering::Relaxed),
                })
            })
            .collect();
        upstreams.insert(name.clone(), json!({ "backends": backends }));
    }
    let names: Vec<&str> = snap
        .config
        .listeners
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    json!({
        "source": shared.origin.kind(),
        "revision": shared.origin.revision(),
        "version": snap.version,
        "loaded_at": rfc3339(snap.loaded_at),
        "listeners": listeners,
        "certificates": crate::acme::status_json(&names, &shared.cert_resolvers),
        "routes": routes,
        "upstreams": upstreams,
    })
}
