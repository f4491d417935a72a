//! `server.tracing` (docs/operations.md, "Tracing"): the real binary exports to an OTLP/HTTP
//! receiver run here, which decodes the protobuf with the protocol's own types
//! (`opentelemetry-proto`). Checked: the span tree (server span, one client span per
//! attempt), attributes, the client's `traceparent` as parent, parent-based sampling with a
//! ratio for roots, the `traceparent` the backend receives, the access log's ids, and that
//! a collector that never answers delays no request (spans beyond `max_queue` are dropped
//! and counted).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;

/// An OTLP/HTTP receiver: every span posted to `/v1/traces`, or (hanging) one that reads
/// requests and never answers.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    service_names: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    async fn start(hang: bool) -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let service_names = Arc::new(Mutex::new(Vec::new()));
        let (s, n) = (spans.clone(), service_names.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (s, n) = (s.clone(), n.clone());
                tokio::spawn(async move {
                    if hang {
                        // Holds the connection open, reading, never answering.
                        let _keep = stream;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (s, n) = (s.clone(), n.clone());
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            for rs in export.resource_spans {
                                for kv in rs.resource.iter().flat_map(|r| &r.attributes) {
                                    if kv.key == "service.name" {
                                        if let Some(AnyValue::StringValue(v)) =
                                            kv.value.as_ref().and_then(|v| v.value.clone())
                                        {
                                            n.lock().unwrap().push(v);
                                        }
                                    }
                                }
                                for ss in rs.scope_spans {
                                    s.lock().unwrap().extend(ss.spans);
                                }
                            }
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Collector {
            addr,
            spans,
            service_names,
        }
    }

    /// The spans of `trace_id` (hex) once `n` arrived, within 10 s.
    async fn wait_for(&self, trace_id: &str, n: usize) -> Vec<Span> {
        self.wait_matching(|s| hex(&s.trace_id) == trace_id, n)
            .await
    }

    /// The spans `matches` picks once `n` arrived, within 10 s.
    async fn wait_matching(&self, matches: impl Fn(&Span) -> bool, n: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| matches(s))
                .cloned()
                .collect();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} spans arrived: {:?}",
                spans.len(),
                self.spans.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn trace_ids(&self) -> Vec<String> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| hex(&s.trace_id))
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.clone())
        .map(|v| match v {
            AnyValue::StringValue(s) => s,
            AnyValue::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

fn config(collector: SocketAddr, tracing_extra: &str, upstream: &str) -> String {
    format!(
        "server:\n  upgrade_sock: \"${{PORTICO_TEST_DIR}}/u.sock\"\n  pid_file: \"${{PORTICO_TEST_DIR}}/p.pid\"\n  grace_period: 0s\n  shutdown_timeout: 1s\n  \
         tracing: {{ otlp: {{ endpoint: \"http://{collector}\" }}, service_name: portico-test{tracing_extra} }}\n\
         admin: {{ listen: 127.0.0.1:{} }}\n\
         listeners:\n  - {{ name: web, listen: 127.0.0.1:{} }}\n\
         plugins: [ {{ access_log: {{}} }} ]\n\
         upstreams:\n  app: {upstream}\n\
         routes:\n  - {{ name: api, match: {{ path: {{ prefix: /api }} }}, upstream: app }}\n",
        free_port(),
        free_port()
    )
}

/// A GET with extra header lines; returns the status and the body as JSON (the echo).
async fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, Value) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t.test\r\n{headers}Connection: close\r\n\r\n");
    let answer = raw_exchange(addr, req.as_bytes(), None).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The access log line (stdout) of the request whose backend echo is `echo`.
async fn log_line(gw: &Gateway, path: &str) -> Value {
    assert!(
        gw.wait_for_stdout(&format!("\"path\":\"{path}\""), Duration::from_secs(5))
            .await
    );
    gw.stdout_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["path"] == path)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_form_a_tree_under_the_clients_parent_and_the_backend_gets_the_attempts_id() {
    let collector = Collector::start(false).await;
    let live = Backend::http("live");
    let dead = free_port();
    let gw = Gateway::start(&config(
        collector.addr,
        ", sample_ratio: 1.0",
        &format!(
            "{{ backends: [ {{ addr: \"127.0.0.1:{dead}\" }}, {{ addr: \"{}\" }} ], retries: 1 }}",
            live.addr()
        ),
    ))
    .await;
    let web = gw.listener("web");

    // With the client's parent: the server span continues its trace.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let mut retried = None;
    for i in 0..4 {
        let path = format!("/api/{i}");
        let (status, echo) = get(
            web,
            &path,
            &format!("traceparent: 00-{trace}-{parent}-01\r\ntracestate: vendor=abc\r\n"),
        )
        .await;
        assert_eq!(status, 200);
        let server_span = &collector
            .wait_matching(
                |s| {
                    s.kind == SpanKind::Server as i32
                        && attr(s, "url.path").as_deref() == Some(&path)
                },
                1,
            )
            .await[0];
        // Attempts end before the request: its client spans were exported with or before
        // the server span.
        let clients: Vec<Span> = collector
            .wait_for(trace, 2)
            .await
            .into_iter()
            .filter(|s| s.parent_span_id == server_span.span_id)
            .collect();
        assert_eq!(server_span.name, "HTTP GET api");
        assert_eq!(
            hex(&server_span.parent_span_id),
            parent,
            "the client's span is the parent"
        );
        assert_eq!(
            attr(server_span, "http.request.method").as_deref(),
            Some("GET")
        );
        assert_eq!(attr(server_span, "http.route").as_deref(), Some("api"));
        assert_eq!(
            attr(server_span, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(
            attr(server_span, "client.address").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            attr(server_span, "network.protocol.version").as_deref(),
            Some("1.1")
        );
        assert_eq!(
            attr(server_span, "portico.upstream").as_deref(),
            Some("app")
        );
        assert!(!clients.is_empty(), "a client span per attempt");
        for c in &clients {
            assert_eq!(c.kind, SpanKind::Client as i32);
            assert_eq!(hex(&c.trace_id), trace);
        }
        // The backend's traceparent names the attempt that reached it.
        let ok = clients
            .iter()
            .find(|c| attr(c, "server.address").as_deref() == Some(&live.addr().to_string()))
            .expect("a client span for the live backend");
        assert_eq!(attr(ok, "error.type"), None);
        assert_eq!(
            echo["headers"]["traceparent"],
            format!("00-{trace}-{}-01", hex(&ok.span_id)).as_str()
        );
        assert_eq!(echo["headers"]["tracestate"], "vendor=abc");
        // The access log carries the trace and the server span.
        let line = log_line(&gw, &path).await;
        assert_eq!(line["trace_id"], trace);
        assert_eq!(line["span_id"], hex(&server_span.span_id).as_str());
        if clients.len() == 2 {
            retried = Some(clients);
        }
    }
    // Retries show: a failed attempt on the dead backend, then the one that answered.
    let clients = retried.expect("one of the requests tried the dead backend first");
    let failed = clients
        .iter()
        .find(|c| attr(c, "server.address").as_deref() == Some(&format!("127.0.0.1:{dead}")))
        .unwrap();
    assert_eq!(attr(failed, "error.type").as_deref(), Some("connect_error"));

    // Without a parent, ratio 1.0: a root span, exported.
    let (_, echo) = get(web, "/api/root", "").await;
    let tp = echo["headers"]["traceparent"].as_str().unwrap().to_string();
    let root_trace = &tp[3..35];
    assert!(tp.ends_with("-01"), "{tp}");
    let spans = collector.wait_for(root_trace, 2).await;
    let server_span = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert!(server_span.parent_span_id.is_empty());
    assert_eq!(collector.service_names.lock().unwrap()[0], "portico-test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_parent_and_the_ratio_for_roots() {
    let collector = Collector::start(false).await;
    let live = Backend::http("live");
    let gw = Gateway::start(&config(
        collector.addr,
        ", sample_ratio: 0.0",
        &format!("{{ backends: [ {{ addr: \"{}\" }} ] }}", live.addr()),
    ))
    .await;
    let web = gw.listener("web");

    // A root at ratio 0: not sampled, but the backend still gets a traceparent (flag 00).
    let (_, echo) = get(web, "/api/root", "").await;
    let tp = echo["headers"]["traceparent"].as_str().unwrap().to_string();
    assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");
    let root_trace = tp[3..35].to_string();
    // A parent that was not sampled: neither is this; the backend's parent is a new span.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let (_, echo) = get(
        web,
        "/api/unsampled",
        &format!("traceparent: 00-{unsampled}-b7ad6b7169203331-00\r\n"),
    )
    .await;
    let tp = echo["headers"]["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with(&format!("00-{unsampled}-")) && tp.ends_with("-00"),
        "{tp}"
    );
    assert!(!tp.contains("b7ad6b7169203331"), "{tp}");
    // A sampled parent: sampled here too, whatever the ratio.
    let sampled = "1af7651916cd43dd8448eb211c80319c";
    let (_, echo) = get(
        web,
        "/api/sampled",
        &format!("traceparent: 00-{sampled}-b7ad6b7169203331-01\r\n"),
    )
    .await;
    assert!(echo["headers"]["traceparent"]
        .as_str()
        .unwrap()
        .ends_with("-01"));
    collector.wait_for(sampled, 2).await;
    // Exported after the unsampled ones ended: had they been exported, they would be here.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let ids = collector.trace_ids();
    assert!(!ids.contains(&root_trace), "an unsampled root was exported");
    assert!(
        !ids.contains(&unsampled.to_string()),
        "an unsampled child was exported"
    );
    // Unsampled requests still carry their ids in the access log.
    let line = log_line(&gw, "/api/unsampled").await;
    assert_eq!(line["trace_id"], unsampled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_hangs_delays_no_request_and_drops_are_counted() {
    let collector = Collector::start(true).await;
    let live = Backend::http("live");
    let gw = Gateway::start(&config(
        collector.addr,
        ", sample_ratio: 1.0, max_queue: 8",
        &format!("{{ backends: [ {{ addr: \"{}\" }} ] }}", live.addr()),
    ))
    .await;
    let web = gw.listener("web");
    let mut slowest = Duration::ZERO;
    for i in 0..60 {
        let started = Instant::now();
        let (status, _) = get(web, &format!("/api/{i}"), "").await;
        assert_eq!(status, 200);
        slowest = slowest.max(started.elapsed());
    }
    // The exporter waits 2 s (otlp.timeout) on the hung collector per batch; no request
    // waits for it.
    assert!(
        slowest < Duration::from_millis(500),
        "a request took {slowest:?} with a hung collector"
    );
    let metrics = gw.admin_get("/metrics").await.unwrap().text();
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("portico_tracing_spans_dropped_total "))
        .expect("portico_tracing_spans_dropped_total")
        .parse()
        .unwrap();
    // 120 spans, at most 8 waiting (some may have left in a batch the collector holds).
    assert!(dropped >= 60.0, "dropped {dropped}\n{metrics}");
}
