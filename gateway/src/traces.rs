//! OpenTelemetry traces (`server.tracing`, docs/operations.md "Tracing"): a server span per
//! request and a client span per upstream attempt, W3C `traceparent`/`tracestate` in and out,
//! parent-based sampling with a ratio for roots, exported over OTLP/HTTP in batches by the
//! SDK's batch processor on its own thread.
//!
//! A slow or dead collector never delays a request: ending a span only hands it to a bounded
//! queue. [`Bounded`] keeps the count of spans handed over and not yet exported at most
//! `max_queue`, and counts what it turns away in `portico_tracing_spans_dropped_total` (the
//! SDK's own queue drops silently). With tracing off, [`tracer`] is one atomic load and
//! nothing else runs.

use crate::config::TracingConfig;
use crate::metrics;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, Span, SpanData,
    SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

static TRACER: OnceLock<(SdkTracerProvider, SdkTracer)> = OnceLock::new();

/// The tracer, once [`start`] made it; `None` with tracing off.
pub fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get().map(|(_, t)| t)
}

/// Builds the exporter and the batch thread. Called once in the serving process (after a
/// `-d` fork, which threads do not survive), off any async runtime (the blocking HTTP client
/// runs its own). A reload does not change tracing: it is read at start.
pub fn start(cfg: &TracingConfig) -> Result<(), String> {
    let mut endpoint = cfg.otlp.endpoint.trim_end_matches('/').to_string();
    if !endpoint.ends_with("/v1/traces") {
        endpoint.push_str("/v1/traces");
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(cfg.otlp.timeout.get())
        .with_headers(cfg.otlp.headers.clone().into_iter().collect())
        .build()
        .map_err(|e| format!("server.tracing.otlp: {e}"))?;
    let pending = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        pending: pending.clone(),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            // Never reached: `Bounded` turns spans away first, and counts them.
            .with_max_queue_size(cfg.max_queue + 1)
            .with_max_export_batch_size(512.min(cfg.max_queue.max(1)))
            .with_scheduled_delay(Duration::from_millis(500))
            .build(),
    )
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batch,
            pending,
            max: cfg.max_queue,
        })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("portico");
    TRACER
        .set((provider, tracer))
        .map_err(|_| "tracing started twice".to_string())
}

/// Hands spans to the batch processor while fewer than `max` wait for export.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    pending: Arc<AtomicUsize>,
    max: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx)
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            metrics::TRACING_SPANS_DROPPED.inc();
            return;
        }
        self.inner.on_end(span)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// The OTLP exporter, telling [`Bounded`] when spans have left (or failed to).
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(n, Ordering::AcqRel);
        if let Err(e) = &result {
            log::debug!("tracing: {n} span(s) not exported: {e}");
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// One request's spans.
pub struct RequestTrace {
    server: Span,
    /// The server span as a parent.
    cx: Context,
    /// The current upstream attempt's span.
    attempt: Option<Span>,
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Outgoing<'a>(&'a mut pingora_http::RequestHeader);

impl Injector for Outgoing<'_> {
    fn set(&mut self, key: &str, value: String) {
        let _ = self.0.insert_header(key.to_string(), value);
    }
}

/// What the server span records about the request.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub client: std::net::IpAddr,
    pub version: http::Version,
}

impl RequestTrace {
    /// The server span of a request, child of the client's `traceparent` when it sent one.
    pub fn start(tracer: &SdkTracer, headers: &http::HeaderMap, req: Incoming) -> RequestTrace {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        let route = req.route.unwrap_or("unmatched");
        let version = match req.version {
            http::Version::HTTP_10 => "1.0",
            http::Version::HTTP_2 => "2",
            _ => "1.1",
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", req.method.to_string()),
            KeyValue::new("url.path", req.path.to_string()),
            KeyValue::new("client.address", req.client.to_string()),
            KeyValue::new("network.protocol.version", version),
        ];
        if let Some(r) = req.route {
            attributes.push(KeyValue::new("http.route", r.to_string()));
        }
        if let Some(u) = req.upstream {
            attributes.push(KeyValue::new("portico.upstream", u.to_string()));
        }
        let server = tracer
            .span_builder(format!("HTTP {} {route}", req.method))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        let cx = Context::new().with_remote_span_context(server.span_context().clone());
        RequestTrace {
            server,
            cx,
            attempt: None,
        }
    }

    /// The trace id and the server span's id, in hex, for the access log.
    pub fn ids(&self) -> (String, String) {
        let sc = self.server.span_context();
        (sc.trace_id().to_string(), sc.span_id().to_string())
    }

    /// A client span for an attempt on `backend`; ends the previous attempt's, if open.
    pub fn attempt(&mut self, backend: &str) {
        let Some(tracer) = tracer() else { return };
        self.end_attempt(None);
        let span = tracer
            .span_builder("HTTP upstream")
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("server.address", backend.to_string())])
            .start_with_context(tracer, &self.cx);
        self.attempt = Some(span);
    }

    /// `traceparent` (the attempt's span as the parent, sampled or not) and `tracestate`
    /// on the request to the backend.
    pub fn inject(&self, upstream: &mut pingora_http::RequestHeader) {
        if let Some(span) = &self.attempt {
            let cx = Context::new().with_remote_span_context(span.span_context().clone());
            TraceContextPropagator::new().inject_context(&cx, &mut Outgoing(upstream));
        }
    }

    /// Ends the current attempt's span, failed with `error` or with the backend's status.
    pub fn end_attempt(&mut self, error: Option<&str>) {
        if let Some(mut span) = self.attempt.take() {
            if let Some(e) = error {
                span.set_attribute(KeyValue::new("error.type", e.to_string()));
                span.set_status(Status::error(e.to_string()));
            }
            span.end();
        }
    }

    /// The backend's answer status on the current attempt.
    pub fn attempt_status(&mut self, status: u16) {
        if let Some(span) = &mut self.attempt {
            span.set_attribute(KeyValue::new("http.response.status_code", status as i64));
        }
    }

    /// Ends the request: the status the client got (0: none).
    pub fn finish(mut self: Box<Self>, status: u16) {
        self.end_attempt(None);
        if status > 0 {
            self.server
                .set_attribute(KeyValue::new("http.response.status_code", status as i64));
        }
        if status >= 500 {
            self.server.set_status(Status::error(""));
        }
        self.server.end();
    }
}

/// The trace of a request that was just routed, when tracing is on; its ids go into
/// `state` for the access log.
pub fn begin(
    session: &pingora_proxy::Session,
    state: &mut crate::plugin::RequestState,
) -> Option<Box<RequestTrace>> {
    let tracer = tracer()?;
    let req = session.req_header();
    let trace = RequestTrace::start(
        tracer,
        &req.headers,
        Incoming {
            method: req.method.as_str(),
            path: req.uri.path(),
            route: state.route.as_deref(),
            upstream: state.upstream.as_deref(),
            client: state.client_ip,
            version: req.version,
        },
    );
    state.trace = Some(trace.ids());
    Some(Box::new(trace))
}
