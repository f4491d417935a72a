//! The plugin chain runner: every hook of one request (early request, request, upstream
//! request, response, response body, log) with no plugins and with five built-ins (headers,
//! cors, ip_filter, rate_limit, access_log to /dev/null). The difference is what the five
//! plugins add to each request; the end-to-end figure is benches/compare.sh's `portico5` row.
//!
//! The hooks need a real Pingora `Session`: one is built over a Unix socket pair with a
//! request head already read from it, and reused for every iteration.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gateway::plugin::{BuildContext, Chain, ChainEntry, Chains, Registry, RequestState};
use gateway::{RequestHeader, ResponseHeader, Session};
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

const FIVE: &[(&str, &str)] = &[
    (
        "headers",
        "{ request: { set: { X-Bench: \"1\" } }, response: { remove: [X-Powered-By] } }",
    ),
    (
        "cors",
        "{ allow_origins: [\"*\"], allow_methods: [GET, POST], allow_headers: [Content-Type] }",
    ),
    ("ip_filter", "{ allow: [127.0.0.0/8] }"),
    (
        "rate_limit",
        "{ per_second: 1000000000, burst: 1000000000, key: client_ip }",
    ),
    ("access_log", "{ path: /dev/null }"),
];

fn chain(registry: &Registry, plugins: &[(&str, &str)]) -> Chain {
    let cx = BuildContext::new(PathBuf::from("."), None);
    Chain::new(
        plugins
            .iter()
            .map(|(name, yaml)| {
                let value = serde_yaml::from_str(yaml).expect("plugin config");
                let (name, plugin) = registry.build(name, value, &cx).expect("plugin builds");
                ChainEntry { name, plugin }
            })
            .collect(),
    )
}

/// A session whose request head has been read, as Pingora hands it to the proxy phases.
async fn session() -> (Session, tokio::net::UnixStream) {
    let (server, mut client) = tokio::net::UnixStream::pair().expect("socket pair");
    client
        .write_all(
            b"GET /api/items/42?page=2 HTTP/1.1\r\nHost: bench.example.com\r\nOrigin: https://app.example.com\r\n\
              User-Agent: criterion\r\nAccept: */*\r\n\r\n",
        )
        .await
        .expect("write request");
    let stream: L4Stream = server.into();
    let mut session = Session::new_h1(Box::new(stream));
    assert!(
        session.read_request().await.expect("read request"),
        "a request head"
    );
    (session, client)
}

/// One request through every hook of the chains, as proxy.rs calls them.
async fn one_request(chains: &Chains<'_>, session: &mut Session) {
    let mut state = RequestState::new(Arc::from("https"), IpAddr::V4(Ipv4Addr::LOCALHOST));
    state.request_id = "0123456789abcdef0123456789abcdef".into();
    state.host = "bench.example.com".into();
    chains.early_request(session, &mut state).await;
    assert!(
        chains.request(session, &mut state).await.is_none(),
        "no plugin answers"
    );
    let mut upstream: RequestHeader = session.req_header().clone();
    chains
        .upstream_request(session, &mut upstream, &mut state)
        .await;
    let mut resp = ResponseHeader::build(200, Some(4)).expect("response");
    resp.insert_header("Content-Length", "41").expect("header");
    chains.response(session, &mut resp, &mut state).await;
    let mut body = Some(bytes::Bytes::from_static(
        b"hello from the origin, a short text body\n",
    ));
    chains.response_body(session, &mut body, true, &mut state);
    state.status = 200;
    chains.log(session, &state).await;
}

fn runner(c: &mut Criterion) {
    let mut registry = Registry::new();
    plugins::register_builtins(&mut registry);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut session, _client) = rt.block_on(session());
    let mut group = c.benchmark_group("plugin_chain");
    for (label, plugins) in [("none", &[][..]), ("five_builtins", FIVE)] {
        let global = chain(&registry, plugins);
        let chains = Chains {
            global: &global,
            route: None,
        };
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        one_request(&chains, &mut session).await;
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    // Let the access log writer drain before the process exits.
    std::thread::sleep(Duration::from_millis(50));
}

criterion_group!(benches, runner);
criterion_main!(benches);
