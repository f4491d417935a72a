//! Upstream resilience through the real binary: active and passive health, retries and
//! failover, backups, balancing, timeouts, and what `/status` and `/metrics` say about each
//! backend (docs/upstreams.md).
//!
//! Timing on a loaded 2-core machine is noisy, so every bound is the contract's own bound
//! plus slack, waits poll with a deadline, and health checks run every 200 ms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The health check interval of every test that checks.
const INTERVAL: Duration = Duration::from_millis(200);

/// `base` (a [`Config`], whose ports a reload keeps) with one route `all` to upstream
/// `app`, whose settings are `app` (the inside of its mapping).
fn with_app(base: &Config, app: &str) -> String {
    base.clone()
        .upstream("app", app)
        .route("name: all, upstream: app")
        .build()
}

fn http_check(healthy_after: u32, unhealthy_after: u32) -> String {
    format!(
        "health_check: {{ kind: http, path: /healthz, interval: {}ms, timeout: 500ms, \
         healthy_after: {healthy_after}, unhealthy_after: {unhealthy_after} }}",
        INTERVAL.as_millis()
    )
}

async fn start(app: &str) -> Gateway {
    Gateway::start(&with_app(&Config::new(), app)).await
}

async fn get(gw: &Gateway, path: &str) -> Response {
    gw.get(path, &[]).await
}

fn backend_of(r: &Response) -> String {
    r.header("x-backend").unwrap_or("-").to_string()
}

/// Who answered each of `n` GETs of `path`, counted by backend name ("-": Portico itself).
async fn spread(gw: &Gateway, path: &str, n: usize) -> HashMap<String, usize> {
    let mut conn = HttpConn::plain(gw.listener("web")).await.unwrap();
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = conn.get(path).await.unwrap();
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        *seen.entry(backend_of(&r)).or_insert(0) += 1;
    }
    seen
}

/// The `/status` entry of backend `addr` in upstream `app`.
async fn backend_status(gw: &Gateway, addr: SocketAddr) -> Value {
    status_of(gw, &addr.to_string()).await
}

/// The `/status` entry of the backend written as `addr` in upstream `app`.
async fn status_of(gw: &Gateway, addr: &str) -> Value {
    let json = gw.admin_get("/status").await.unwrap().json();
    json["upstreams"]["app"]["backends"]
        .as_array()
        .expect("upstreams.app.backends")
        .iter()
        .find(|b| b["addr"] == addr)
        .unwrap_or_else(|| panic!("{addr} not in /status: {json}"))
        .clone()
}

/// Polls `/status` until backend `addr` is in `state`; returns how long that took.
async fn wait_state(gw: &Gateway, addr: SocketAddr, state: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let b = backend_status(gw, addr).await;
        if b["state"] == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{addr} not {state} within {limit:?}: {b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the series `name{labels}` in `/metrics`, 0 when absent.
async fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    gw.metrics().await.value(name, labels).unwrap_or(0.0)
}

async fn healthy_gauge(gw: &Gateway, addr: SocketAddr) -> f64 {
    let addr = addr.to_string();
    metric(
        gw,
        "portico_upstream_backend_healthy",
        &[("upstream", "app"), ("backend", &addr)],
    )
    .await
}

async fn attempts(gw: &Gateway, addr: SocketAddr, outcome: &str) -> f64 {
    let addr = addr.to_string();
    metric(
        gw,
        "portico_upstream_requests_total",
        &[
            ("upstream", "app"),
            ("backend", &addr),
            ("outcome", outcome),
        ],
    )
    .await
}

/// Failed attempts on backend `addr`, whatever the failure (a refused connection, or a
/// pooled connection found closed).
async fn failed_attempts(gw: &Gateway, addr: SocketAddr) -> f64 {
    let mut n = 0.0;
    for outcome in ["connect_error", "error", "timeout"] {
        n += attempts(gw, addr, outcome).await;
    }
    n
}

/// A backend that answers every request (HTTP/1.1, keep-alive), its health checks
/// included, with 200 after `delay`, carrying `X-Backend: <name>`: the one slow server
/// among fast ones. Health checks are not counted as hits.
struct SlowBackend {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowBackend {
    fn start(name: &str, port: u16, delay: Duration) -> SlowBackend {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let (name, counter) = (name.to_string(), hits.clone());
        let task = tokio::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((mut tcp, _)) = listener.accept().await {
                let (name, hits) = (name.clone(), counter.clone());
                tokio::spawn(async move {
                    while let Ok(head) = crate::common::backend::read_raw_head(&mut tcp).await {
                        if head.path != HEALTH_PATH {
                            hits.fetch_add(1, Ordering::SeqCst);
                        }
                        tokio::time::sleep(delay).await;
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nx-backend: {name}\r\ncontent-length: 5\r\n\r\nslow\n"
                        );
                        if tcp.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SlowBackend { addr, hits, task }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Active health checks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_endpoint_takes_a_backend_out_and_passing_checks_bring_it_back() {
    let (healthy_after, unhealthy_after) = (2u32, 3u32);
    let a = Backend::http("a");
    let b = Backend::http("b");
    let app = format!(
        "backends: {}, {}",
        addr_list(&[a.addr(), b.addr()]),
        http_check(healthy_after, unhealthy_after)
    );
    let gw = start(&app).await;
    wait_state(&gw, a.addr(), "healthy", Duration::from_secs(5)).await;
    wait_state(&gw, b.addr(), "healthy", Duration::from_secs(5)).await;
    let seen = spread(&gw, "/", 10).await;
    assert_eq!(
        (seen["a"], seen["b"]),
        (5, 5),
        "round robin over both: {seen:?}"
    );

    // Out: within interval x unhealthy_after + 1 s, no more traffic to a.
    let bound = INTERVAL * unhealthy_after + Duration::from_secs(1);
    let mut conn = HttpConn::plain(gw.listener("web")).await.unwrap();
    let t0 = Instant::now();
    a.set_healthy(false);
    let mut last_a = Duration::ZERO;
    let mut after_bound = 0;
    while t0.elapsed() < bound + Duration::from_secs(1) {
        let r = conn.get("/").await.unwrap();
        assert_eq!(
            r.status, 200,
            "a failing health check must not fail requests"
        );
        if backend_of(&r) == "a" {
            last_a = t0.elapsed();
        } else if t0.elapsed() > bound {
            after_bound += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("detection: last request to a {last_a:?} after its health endpoint failed (bound {bound:?})");
    assert!(
        last_a < bound,
        "a still got traffic {last_a:?} after failing (bound {bound:?})"
    );
    assert!(after_bound > 10, "b took the traffic after the bound");
    let st = backend_status(&gw, a.addr()).await;
    assert_eq!(st["state"], "unhealthy");
    assert!(
        st["last_error"].as_str().unwrap_or("").contains("503"),
        "{st}"
    );

    // Back: after healthy_after passing checks, not after one.
    let t1 = Instant::now();
    a.set_healthy(true);
    let limit = INTERVAL * healthy_after + Duration::from_secs(1);
    let recovery = loop {
        let r = conn.get("/").await.unwrap();
        assert_eq!(r.status, 200);
        if backend_of(&r) == "a" {
            break t1.elapsed();
        }
        assert!(t1.elapsed() < limit, "a not back within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!("recovery: a took traffic {recovery:?} after its health endpoint passed again (bound {limit:?})");
    // Two passing checks are at least one interval apart.
    assert!(
        recovery >= INTERVAL * (healthy_after - 1) - Duration::from_millis(50),
        "back after one check: {recovery:?}"
    );
    let st = backend_status(&gw, a.addr()).await;
    assert_eq!(
        (st["state"].as_str(), st["last_error"].is_null()),
        (Some("healthy"), true),
        "{st}"
    );

    // Logged once per transition, not once per check.
    let log = gw.stderr_text();
    let down = format!("backend {} is unhealthy", a.addr());
    let up = format!("backend {} is healthy", a.addr());
    assert_eq!(log.matches(&down).count(), 1, "{log}");
    assert_eq!(
        log.matches(&up).count(),
        2,
        "first check, then recovery: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_check_follows_a_backend_stopped_and_restarted_on_its_port() {
    let mut a = Backend::http("a");
    let b = Backend::http("b");
    let port = a.addr().port();
    let app = format!(
        "backends: {}, health_check: {{ kind: tcp, interval: 200ms, timeout: 500ms, healthy_after: 2, unhealthy_after: 2 }}",
        addr_list(&[a.addr(), b.addr()])
    );
    let gw = start(&app).await;
    wait_state(&gw, a.addr(), "healthy", Duration::from_secs(5)).await;
    wait_state(&gw, b.addr(), "healthy", Duration::from_secs(5)).await;

    a.stop().await;
    let down = wait_state(
        &gw,
        a.addr(),
        "unhealthy",
        INTERVAL * 2 + Duration::from_secs(1),
    )
    .await;
    let st = backend_status(&gw, a.addr()).await;
    assert!(
        st["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("tcp connect"),
        "{st}"
    );
    let seen = spread(&gw, "/", 6).await;
    assert_eq!(seen.get("b"), Some(&6), "{seen:?}");

    let a = Backend::http_on("a", port);
    let up = wait_state(
        &gw,
        a.addr(),
        "healthy",
        INTERVAL * 2 + Duration::from_secs(1),
    )
    .await;
    println!("tcp check: down noticed in {down:?}, restart noticed in {up:?}");
    let seen = spread(&gw, "/", 6).await;
    assert_eq!((seen["a"], seen["b"]), (3, 3), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_go_over_the_pools_tls_with_its_sni_and_ca() {
    let ca = TestCa::new("checks CA");
    let good = Backend::https("good", &ca.issue(&["app.internal"]));
    let wrong = Backend::https("wrong", &ca.issue(&["other.internal"]));
    let app = format!(
        "backends: {}, tls: {{ sni: app.internal, ca: \"{}\" }}, {}",
        addr_list(&[good.addr(), wrong.addr()]),
        ca.cert_path().display(),
        http_check(2, 2)
    );
    let gw = start(&app).await;
    wait_state(&gw, good.addr(), "healthy", Duration::from_secs(5)).await;
    // A certificate that does not match the SNI fails the check, as it would a request.
    wait_state(&gw, wrong.addr(), "unhealthy", Duration::from_secs(5)).await;
    assert_eq!(wrong.health_checks(), 0, "no check got past the handshake");
    assert_eq!(spread(&gw, "/", 4).await.get("good"), Some(&4));
    let checked = good.health_checks();
    assert!(checked >= 1);

    good.set_healthy(false);
    wait_state(&gw, good.addr(), "unhealthy", Duration::from_secs(2)).await;
    let st = backend_status(&gw, good.addr()).await;
    assert_eq!(
        st["last_error"], "health check /healthz answered 503",
        "{st}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_backends_wait_for_their_first_check_and_a_reload_keeps_health() {
    let a = Backend::http("a");
    let b = Backend::http("b");
    b.set_healthy(false); // failing from the start: never sent traffic
    let app =
        |addrs: &[SocketAddr]| format!("backends: {}, {}", addr_list(addrs), http_check(2, 2));
    let ports = Config::new();
    let mut gw = Gateway::start(&with_app(&ports, &app(&[a.addr(), b.addr()]))).await;

    // The very first requests are answered, never 503 "not checked yet".
    let first = get(&gw, "/").await;
    assert_eq!(
        (first.status, backend_of(&first)),
        (200, "a".to_string()),
        "{}",
        first.text()
    );
    wait_state(&gw, b.addr(), "unhealthy", Duration::from_secs(3)).await;
    let seen = spread(&gw, "/", 10).await;
    assert_eq!(seen.get("a"), Some(&10), "{seen:?}");
    assert_eq!(b.hits(), 0);
    assert!(b.health_checks() >= 1);

    // /status and the gauge tell the two apart.
    let st_a = backend_status(&gw, a.addr()).await;
    let st_b = backend_status(&gw, b.addr()).await;
    assert_eq!(
        (st_a["state"].as_str(), st_a["backup"].as_bool()),
        (Some("healthy"), Some(false)),
        "{st_a}"
    );
    assert!(st_a["last_error"].is_null(), "{st_a}");
    assert_eq!(st_b["state"], "unhealthy");
    assert_eq!(
        st_b["last_error"], "health check /healthz answered 503",
        "{st_b}"
    );
    for s in [&st_a, &st_b] {
        let at = s["changed_at"].as_str().unwrap();
        assert!(
            at.len() >= 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
            "RFC 3339: {at}"
        );
    }
    assert_eq!(healthy_gauge(&gw, a.addr()).await, 1.0);
    assert_eq!(healthy_gauge(&gw, b.addr()).await, 0.0);

    // b passes its checks: it joins, and its change time moves.
    b.set_healthy(true);
    wait_state(
        &gw,
        b.addr(),
        "healthy",
        INTERVAL * 2 + Duration::from_secs(1),
    )
    .await;
    let st_b2 = backend_status(&gw, b.addr()).await;
    let (then, now) = (
        st_b["changed_at"].as_str().unwrap(),
        st_b2["changed_at"].as_str().unwrap(),
    );
    assert!(
        st_b2["last_error"].is_null() && now >= then,
        "{st_b} then {st_b2}"
    );
    assert_eq!(healthy_gauge(&gw, b.addr()).await, 1.0);

    // A reload adding c (passing) and d (failing): a and b keep serving without a gap, d
    // never gets traffic, c joins on its first passing check.
    let c = Backend::http("c");
    let d = Backend::http("d");
    d.set_healthy(false);
    gw.rewrite_config(&with_app(
        &ports,
        &app(&[a.addr(), b.addr(), c.addr(), d.addr()]),
    ));
    let reload = gw.admin_post("/reload").await.unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert_eq!(backend_status(&gw, a.addr()).await["state"], "healthy");
    assert_eq!(backend_status(&gw, b.addr()).await["state"], "healthy");
    let seen = spread(&gw, "/", 9).await;
    assert!(seen.contains_key("a") && seen.contains_key("b"), "{seen:?}");
    wait_state(&gw, c.addr(), "healthy", Duration::from_secs(2)).await;
    wait_state(&gw, d.addr(), "unhealthy", Duration::from_secs(2)).await;
    let seen = spread(&gw, "/", 9).await;
    assert_eq!(
        (seen.get("a"), seen.get("b"), seen.get("c")),
        (Some(&3), Some(&3), Some(&3)),
        "{seen:?}"
    );
    assert_eq!(d.hits(), 0);

    // A reload that drops the checks: the backend they held out takes traffic again.
    gw.rewrite_config(&with_app(&ports, &backends(&[a.addr(), d.addr()])));
    assert_eq!(gw.admin_post("/reload").await.unwrap().status, 200);
    wait_state(&gw, d.addr(), "healthy", Duration::from_secs(2)).await;
    let seen = spread(&gw, "/", 4).await;
    assert_eq!(seen.get("d"), Some(&2), "{seen:?}");

    // b was removed by that reload; added back (failing now), it is new again: no traffic
    // on the strength of what was known before it left.
    b.set_healthy(false);
    let b_hits = b.hits();
    gw.rewrite_config(&with_app(&ports, &app(&[a.addr(), b.addr()])));
    assert_eq!(gw.admin_post("/reload").await.unwrap().status, 200);
    let seen = spread(&gw, "/", 6).await;
    assert_eq!(seen.get("a"), Some(&6), "{seen:?}");
    assert_eq!(b.hits(), b_hits);
}

// ---------------------------------------------------------------------------------------
// Retries and failover

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_mid_stream_fails_no_request() {
    const CLIENTS: usize = 6;
    const EACH: usize = 50;
    let a = Backend::http("a");
    let mut b = Backend::http("b");
    let c = Backend::http("c");
    // No active checks: retries and passive ejection alone must hide the loss.
    let gw = start(&format!(
        "backends: {}",
        addr_list(&[a.addr(), b.addr(), c.addr()])
    ))
    .await;
    let web = gw.listener("web");
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (done, failures) = (done.clone(), failures.clone());
        clients.push(tokio::spawn(async move {
            let mut conn = HttpConn::plain(web).await.unwrap();
            for _ in 0..EACH {
                match conn.get("/sleep/5").await {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{} {}", r.status, r.text())),
                    Err(e) => {
                        failures.lock().unwrap().push(e.to_string());
                        conn = HttpConn::plain(web).await.unwrap();
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::SeqCst) < CLIENTS * EACH / 3 {
        assert!(Instant::now() < deadline, "the stream stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.stop().await;
    let killed_at = done.load(Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    println!(
        "killed b after {killed_at} of {} requests; hits a={} b={} c={}; failures: {}",
        CLIENTS * EACH,
        a.hits(),
        b.hits(),
        c.hits(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(done.load(Ordering::SeqCst), CLIENTS * EACH);
    assert!(b.hits() > 0 && a.hits() > b.hits() && c.hits() > b.hits());
}

#[tokio::test]
async fn post_is_never_repeated_after_a_reset_but_a_get_is() {
    let reset = Backend::reset_after_body("reset");
    let ok = Backend::http("ok");
    let app = format!(
        "backends: {}, passive: {{ failures: 100, eject_for: 30s }}",
        addr_list(&[reset.addr(), ok.addr()])
    );
    let gw = start(&app).await;
    let web = gw.listener("web");

    // Round robin starts at the first backend: the resetting one.
    let r = http_request(
        web,
        "POST",
        "/upload",
        &[("content-type", "text/plain")],
        "payload",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("request id"), "{}", r.text());
    assert_eq!(
        reset.seen_paths(),
        ["/upload"],
        "the POST reached the backend exactly once"
    );
    assert_eq!(ok.hits(), 0, "the POST was not repeated elsewhere");

    // The next turn goes to `ok`; the one after to `reset`, and a GET is safe to repeat.
    assert_eq!(backend_of(&get(&gw, "/a").await), "ok");
    let r = get(&gw, "/b").await;
    assert_eq!((r.status, backend_of(&r)), (200, "ok".to_string()));
    assert_eq!(reset.seen_paths(), ["/upload", "/b"]);
    assert_eq!(ok.seen_paths(), ["/a", "/b"]);
}

#[tokio::test]
async fn retries_never_try_a_backend_twice() {
    let dead: Vec<Backend> = (0..4)
        .map(|i| Backend::reset_after_body(&format!("r{i}")))
        .collect();
    let addrs: Vec<SocketAddr> = dead.iter().map(|b| b.addr()).collect();

    // retries: 2 with 3 backends that all fail: each is tried exactly once.
    let app = format!(
        "backends: {}, retries: 2, passive: {{ failures: 100, eject_for: 30s }}",
        addr_list(&addrs[..3])
    );
    let gw = start(&app).await;
    let t = Instant::now();
    let r = get(&gw, "/once").await;
    let took = t.elapsed();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(
        dead[..3].iter().map(|b| b.hits()).collect::<Vec<_>>(),
        [1, 1, 1]
    );
    assert_eq!(
        metric(
            &gw,
            "portico_upstream_retries_total",
            &[("upstream", "app")]
        )
        .await,
        2.0
    );
    drop(gw);

    // retries: 1 with 4: two attempts, on two different backends.
    let app = format!(
        "backends: {}, retries: 1, passive: {{ failures: 100, eject_for: 30s }}",
        addr_list(&addrs)
    );
    let gw = start(&app).await;
    let before: u64 = dead.iter().map(|b| b.hits()).sum();
    assert_eq!(get(&gw, "/twice").await.status, 502);
    let per: Vec<usize> = dead
        .iter()
        .map(|b| b.seen_paths().iter().filter(|p| *p == "/twice").count())
        .collect();
    assert_eq!(per.iter().sum::<usize>(), 2, "{per:?}");
    assert!(per.iter().all(|&n| n <= 1), "{per:?}");
    assert_eq!(dead.iter().map(|b| b.hits()).sum::<u64>(), before + 2);
}

#[tokio::test]
async fn connection_refused_is_retried_on_another_backend() {
    // Three refusing ports and retries: 2: three connect errors, one per backend, fast.
    let mut gone: Vec<Backend> = (0..3).map(|i| Backend::http(&format!("gone{i}"))).collect();
    let addrs: Vec<SocketAddr> = gone.iter().map(|b| b.addr()).collect();
    for b in &mut gone {
        b.stop().await;
    }
    let gw = start(&format!(
        "backends: {}, passive: {{ failures: 100, eject_for: 30s }}",
        addr_list(&addrs)
    ))
    .await;
    let t = Instant::now();
    let r = get(&gw, "/").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    for a in &addrs {
        assert_eq!(attempts(&gw, *a, "connect_error").await, 1.0, "{a}");
    }
    drop(gw);

    // One refusing, one serving: every request lands on the one that serves.
    let ok = Backend::http("ok");
    let app = format!(
        "backends: {}, passive: {{ failures: 100, eject_for: 30s }}",
        addr_list(&[addrs[0], ok.addr()])
    );
    let gw = start(&app).await;
    let seen = spread(&gw, "/", 10).await;
    assert_eq!(seen.get("ok"), Some(&10), "{seen:?}");
    let refused = attempts(&gw, addrs[0], "connect_error").await;
    assert!((1.0..=10.0).contains(&refused), "{refused}");
    assert_eq!(attempts(&gw, ok.addr(), "ok").await, 10.0);
}

#[tokio::test]
async fn read_timeout_answers_504() {
    let a = Backend::http("a");
    let b = Backend::http("b");
    // A third backend that is out: the retry budget is left, but no backend is.
    let c = Backend::http("c");
    c.set_healthy(false);
    let app = format!(
        "backends: {}, timeouts: {{ read: 1s }}, passive: {{ failures: 100, eject_for: 30s }}, {}",
        addr_list(&[a.addr(), b.addr(), c.addr()]),
        http_check(2, 2)
    );
    let gw = start(&app).await;
    wait_state(&gw, c.addr(), "unhealthy", Duration::from_secs(2)).await;
    let t = Instant::now();
    // A read timeout of a second or more runs on tokio's timer, as the defaults do
    // (docs/deployment.md, "Timers"); a shorter one on Pingora's own.
    let r = get(&gw, "/sleep/6000").await;
    let took = t.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("timed out"), "{}", r.text());
    // A GET that timed out before its first byte is safe to repeat: once on each backend.
    assert_eq!((a.hits(), b.hits(), c.hits()), (1, 1, 0));
    assert!(
        took >= Duration::from_millis(2000) && took < Duration::from_millis(4500),
        "{took:?}"
    );
    assert_eq!(attempts(&gw, a.addr(), "timeout").await, 1.0);
    // A backend that answers in time is unaffected.
    assert_eq!(get(&gw, "/sleep/10").await.status, 200);
}

// ---------------------------------------------------------------------------------------
// Backups and nothing healthy

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_serves_only_while_every_primary_is_down_then_503_at_once() {
    let a = Backend::http("a");
    let b = Backend::http("b");
    let c = Backend::http("backup");
    let app = format!(
        "backends: {}, backup: {}, {}",
        addr_list(&[a.addr(), b.addr()]),
        addr_list(&[c.addr()]),
        http_check(2, 2)
    );
    let gw = start(&app).await;
    for addr in [a.addr(), b.addr(), c.addr()] {
        wait_state(&gw, addr, "healthy", Duration::from_secs(5)).await;
    }
    assert_eq!(backend_status(&gw, c.addr()).await["backup"], true);
    let seen = spread(&gw, "/", 10).await;
    assert_eq!(
        (seen.get("a"), seen.get("b"), seen.get("backup")),
        (Some(&5), Some(&5), None)
    );

    // One primary down: the other takes everything, the backup still nothing.
    a.set_healthy(false);
    wait_state(&gw, a.addr(), "unhealthy", Duration::from_secs(2)).await;
    assert_eq!(spread(&gw, "/", 6).await.get("b"), Some(&6));

    // Every primary down: the backup serves.
    b.set_healthy(false);
    wait_state(&gw, b.addr(), "unhealthy", Duration::from_secs(2)).await;
    assert_eq!(spread(&gw, "/", 6).await.get("backup"), Some(&6));

    // A primary back: traffic returns to it at once.
    a.set_healthy(true);
    wait_state(&gw, a.addr(), "healthy", Duration::from_secs(2)).await;
    let backup_hits = c.hits();
    assert_eq!(spread(&gw, "/", 6).await.get("a"), Some(&6));
    assert_eq!(c.hits(), backup_hits);

    // Nothing healthy: 503 at once, with Retry-After.
    a.set_healthy(false);
    c.set_healthy(false);
    wait_state(&gw, a.addr(), "unhealthy", Duration::from_secs(2)).await;
    wait_state(&gw, c.addr(), "unhealthy", Duration::from_secs(2)).await;
    let t = Instant::now();
    let r = get(&gw, "/").await;
    let took = t.elapsed();
    println!("nothing healthy: {} in {took:?}", r.status);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u32>().is_ok()),
        "{:?}",
        r.headers
    );
    assert!(
        r.text().contains("no healthy backend") && r.text().contains("request id"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn backup_takes_over_when_every_primary_refuses() {
    // No checks: the primaries are found dead by trying them, then the backup answers.
    let mut p1 = Backend::http("p1");
    let mut p2 = Backend::http("p2");
    let backup = Backend::http("backup");
    let primaries = [p1.addr(), p2.addr()];
    p1.stop().await;
    p2.stop().await;
    let app = format!(
        "backends: {}, backup: {}",
        addr_list(&primaries),
        addr_list(&[backup.addr()])
    );
    let gw = start(&app).await;
    let seen = spread(&gw, "/", 8).await;
    assert_eq!(seen.get("backup"), Some(&8), "{seen:?}");
    for p in primaries {
        // Tried until passive ejection (5 failures) took them out.
        assert!(failed_attempts(&gw, p).await >= 1.0);
    }
}

// ---------------------------------------------------------------------------------------
// Passive ejection

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_without_active_checks_then_one_probe() {
    let eject_for = Duration::from_secs(2);
    let mut a = Backend::http("a");
    let b = Backend::http("b");
    let a_addr = a.addr();
    let app = format!(
        "backends: {}, passive: {{ failures: 2, eject_for: 2s }}",
        addr_list(&[a_addr, b.addr()])
    );
    let gw = start(&app).await;
    assert_eq!(spread(&gw, "/", 4).await.get("a"), Some(&2));
    assert_eq!(healthy_gauge(&gw, a_addr).await, 1.0);

    // a dies: two failed attempts (each retried on b) eject it.
    a.stop().await;
    let seen = spread(&gw, "/", 8).await;
    assert_eq!(seen.get("b"), Some(&8), "{seen:?}");
    assert_eq!(failed_attempts(&gw, a_addr).await, 2.0);
    let st = backend_status(&gw, a_addr).await;
    let ejected_at = Instant::now();
    assert_eq!(st["state"], "ejected", "{st}");
    assert!(
        st["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{st}"
    );
    assert_eq!(healthy_gauge(&gw, a_addr).await, 0.0);
    assert_eq!(healthy_gauge(&gw, b.addr()).await, 1.0);

    // After eject_for, one probe; it fails, so a is ejected again and no other request
    // goes near it, even a burst.
    tokio::time::sleep(eject_for.saturating_sub(ejected_at.elapsed()) + Duration::from_millis(100))
        .await;
    assert_eq!(spread(&gw, "/", 4).await.get("b"), Some(&4));
    assert_eq!(failed_attempts(&gw, a_addr).await, 3.0, "exactly one probe");
    let reejected_at = Instant::now();
    let seen = burst(&gw, 10).await;
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
    assert_eq!(failed_attempts(&gw, a_addr).await, 3.0);
    assert_eq!(backend_status(&gw, a_addr).await["state"], "ejected");

    // a comes back slow. While ejected it gets nothing; once eject_for is over, a burst of
    // concurrent requests sends it exactly one (the probe) until the probe has answered.
    let slow = SlowBackend::start("a", a_addr.port(), Duration::from_millis(1000));
    assert_eq!(spread(&gw, "/", 4).await.get("b"), Some(&4));
    assert_eq!(slow.hits(), 0);
    tokio::time::sleep(
        eject_for.saturating_sub(reejected_at.elapsed()) + Duration::from_millis(100),
    )
    .await;
    let seen = burst(&gw, 10).await;
    assert_eq!(seen.get("a"), Some(&1), "one probe: {seen:?}");
    assert_eq!(slow.hits(), 1);
    let st = backend_status(&gw, a_addr).await;
    assert_eq!(
        (st["state"].as_str(), st["last_error"].is_null()),
        (Some("healthy"), true),
        "{st}"
    );
    assert_eq!(healthy_gauge(&gw, a_addr).await, 1.0);
    // Full traffic again.
    let seen = spread(&gw, "/", 4).await;
    assert_eq!(seen.get("a"), Some(&2), "{seen:?}");
    assert!(gw.stderr_text().contains(&format!(
        "backend {a_addr} is back after a successful probe"
    )));
}

/// With active checks, a passive ejection lasts only until `healthy_after` checks have
/// passed since it began: a restarted backend rejoins within a few check intervals, not
/// after `eject_for` (here a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_active_checks_a_passively_ejected_backend_rejoins_once_checks_pass() {
    let mut a = Backend::http("a");
    let b = Backend::http("b");
    let a_addr = a.addr();
    let app = format!(
        "backends: {}, passive: {{ failures: 1, eject_for: 60s, count_5xx: true }}, {}",
        addr_list(&[a_addr, b.addr()]),
        http_check(2, 3)
    );
    let gw = start(&app).await;
    assert_eq!(spread(&gw, "/", 4).await.get("a"), Some(&2));

    // a dies: its first failed attempt (retried on b) ejects it, before the checks notice.
    a.stop().await;
    assert_eq!(spread(&gw, "/", 2).await.get("b"), Some(&2));
    let st = backend_status(&gw, a_addr).await;
    assert_eq!(st["state"], "ejected", "{st}");

    // Restarted on its port: two passing checks (200 ms apart) bring it back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = Backend::http_on("a", a_addr.port());
    let back = wait_state(&gw, a_addr, "healthy", Duration::from_secs(3)).await;
    println!("restarted backend healthy again {back:?} after its restart");
    let st = backend_status(&gw, a_addr).await;
    assert!(st["last_error"].is_null(), "{st}");
    assert_eq!(healthy_gauge(&gw, a_addr).await, 1.0);
    let seen = spread(&gw, "/", 4).await;
    assert_eq!(seen.get("a"), Some(&2), "{seen:?}");
    assert!(a.hits() >= 2);

    // Ejected for a 5xx answer while its checks never stopped passing: back after two
    // checks, again long before a minute.
    let r = get(&gw, "/status/500").await;
    assert_eq!(r.status, 500);
    let out = if backend_of(&r) == "a" {
        a_addr
    } else {
        b.addr()
    };
    assert_eq!(backend_status(&gw, out).await["state"], "ejected");
    let back = wait_state(&gw, out, "healthy", Duration::from_secs(3)).await;
    println!("5xx-ejected backend healthy again after {back:?}");
    assert!(gw.stderr_text().contains(&format!(
        "backend {out} is no longer ejected: 2 health checks passed since its ejection"
    )));
    assert_eq!(spread(&gw, "/", 4).await.len(), 2);
}

/// `n` concurrent GETs, each on its own connection; who answered, by backend.
async fn burst(gw: &Gateway, n: usize) -> HashMap<String, usize> {
    let web = gw.listener("web");
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(http_get(web, "/"))).collect();
    let mut seen = HashMap::new();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        *seen.entry(backend_of(&r)).or_insert(0) += 1;
    }
    seen
}

#[tokio::test]
async fn count_5xx_ejects_and_with_every_backend_out_503_comes_at_once() {
    let a = Backend::http("a");
    let b = Backend::http("b");
    let app = format!(
        "backends: {}, passive: {{ failures: 2, eject_for: 30s, count_5xx: true }}",
        addr_list(&[a.addr(), b.addr()])
    );
    let gw = start(&app).await;
    // A 5xx answer is passed on (a response arrived: nothing to retry), and counted.
    for _ in 0..4 {
        assert_eq!(get(&gw, "/status/500").await.status, 500);
    }
    for addr in [a.addr(), b.addr()] {
        let st = backend_status(&gw, addr).await;
        assert_eq!(
            (st["state"].as_str(), st["last_error"].as_str()),
            (Some("ejected"), Some("answered 500")),
            "{st}"
        );
    }
    let hits = (a.hits(), b.hits());
    let t = Instant::now();
    let r = get(&gw, "/").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(r.header("retry-after").is_some());
    assert_eq!((a.hits(), b.hits()), hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_probe_ends_an_ejection() {
    let a = Backend::http("a");
    let b = Backend::http("backup");
    let app = format!(
        "backends: {}, backup: {}, passive: {{ failures: 2, eject_for: 30s, count_5xx: true }}",
        addr_list(&[a.addr()]),
        addr_list(&[b.addr()])
    );
    let gw = start(&app).await;
    let web = gw.listener("web");
    // A slow request is under way on a when two 5xx answers eject it...
    let slow = tokio::spawn(http_get(web, "/sleep/1500"));
    let t = Instant::now();
    while a.hits() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..2 {
        assert_eq!(get(&gw, "/status/500").await.status, 500);
    }
    assert_eq!(backend_status(&gw, a.addr()).await["state"], "ejected");
    // ...and its late success does not bring a back: that is the probe's job.
    let r = slow.await.unwrap().unwrap();
    assert_eq!((r.status, backend_of(&r)), (200, "a".to_string()));
    assert_eq!(backend_status(&gw, a.addr()).await["state"], "ejected");
    assert_eq!(spread(&gw, "/", 3).await.get("backup"), Some(&3));
}

// ---------------------------------------------------------------------------------------
// Balancing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_sends_most_requests_to_the_fast_backends() {
    const CLIENTS: usize = 6;
    const EACH: usize = 15;
    let slow = SlowBackend::start("slow", 0, Duration::from_millis(700));
    let f1 = Backend::http("f1");
    let f2 = Backend::http("f2");
    let app = format!(
        "backends: {}, balance: least_conn",
        addr_list(&[slow.addr, f1.addr(), f2.addr()])
    );
    let gw = start(&app).await;
    let web = gw.listener("web");
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut conn = HttpConn::plain(web).await.unwrap();
                for _ in 0..EACH {
                    assert_eq!(conn.get("/").await.unwrap().status, 200);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let total = (CLIENTS * EACH) as u64;
    println!(
        "least_conn: slow {} f1 {} f2 {} of {total}",
        slow.hits(),
        f1.hits(),
        f2.hits()
    );
    assert_eq!(slow.hits() + f1.hits() + f2.hits(), total);
    // Round robin would give the slow one a third.
    assert!(
        slow.hits() * 6 < total,
        "slow got {} of {total}",
        slow.hits()
    );
    assert!(f1.hits() * 3 > total && f2.hits() * 3 > total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_respects_weights() {
    let a = Backend::http("a");
    let b = Backend::http("b");
    let app = format!(
        "backends: [{{ addr: \"{}\", weight: 3 }}, {{ addr: \"{}\", weight: 1 }}], balance: least_conn",
        a.addr(),
        b.addr()
    );
    let gw = start(&app).await;
    // 16 requests held open together: in flight per unit of weight stays level, 12 to 4.
    let web = gw.listener("web");
    let tasks: Vec<_> = (0..16)
        .map(|_| tokio::spawn(http_get(web, "/sleep/1500")))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status, 200);
    }
    println!(
        "least_conn weights 3:1, held open -> a {} b {}",
        a.hits(),
        b.hits()
    );
    assert_eq!(a.hits() + b.hits(), 16);
    assert!(
        a.hits() >= 2 * b.hits() && b.hits() >= 2,
        "a {} b {}",
        a.hits(),
        b.hits()
    );
    // One at a time every count is 0, a tie each time: the weights still decide.
    let seen = spread(&gw, "/", 40).await;
    assert_eq!(
        (seen.get("a"), seen.get("b")),
        (Some(&30), Some(&10)),
        "{seen:?}"
    );
}

/// The backend each of `keys` lands on, sent as `X-Key` over a few connections at once.
async fn key_map(gw: &Gateway, keys: &[String]) -> Vec<String> {
    let web = gw.listener("web");
    let chunks: Vec<Vec<(usize, String)>> = (0..4)
        .map(|c| {
            keys.iter()
                .cloned()
                .enumerate()
                .skip(c)
                .step_by(4)
                .collect()
        })
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            tokio::spawn(async move {
                let mut conn = HttpConn::plain(web).await.unwrap();
                let mut out = Vec::new();
                for (i, key) in chunk {
                    let r = conn
                        .request("GET", "/", &[("x-key", &key)], Body::empty())
                        .await
                        .unwrap();
                    assert_eq!(r.status, 200);
                    out.push((i, backend_of(&r)));
                }
                out
            })
        })
        .collect();
    let mut map = vec![String::new(); keys.len()];
    for t in tasks {
        for (i, b) in t.await.unwrap() {
            map[i] = b;
        }
    }
    map
}

fn counts(map: &[String]) -> HashMap<&str, usize> {
    let mut c = HashMap::new();
    for b in map {
        *c.entry(b.as_str()).or_insert(0) += 1;
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_keys_and_moves_about_one_nth() {
    let backends: Vec<Backend> = ["h0", "h1", "h2", "h3"]
        .iter()
        .map(|n| Backend::http(n))
        .collect();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let app = |addrs: &[SocketAddr]| {
        format!(
            "backends: {}, balance: consistent_hash, hash_key: \"header:X-Key\", {}",
            addr_list(addrs),
            http_check(2, 2)
        )
    };
    let ports = Config::new();
    let mut gw = Gateway::start(&with_app(&ports, &app(&addrs))).await;
    for a in &addrs {
        wait_state(&gw, *a, "healthy", Duration::from_secs(5)).await;
    }
    let keys: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();

    let before = key_map(&gw, &keys).await;
    let spread = counts(&before);
    println!("consistent_hash over 4: {spread:?}");
    assert_eq!(spread.len(), 4, "{spread:?}");
    assert!(
        spread.values().all(|&n| (100..=400).contains(&n)),
        "{spread:?}"
    );
    assert_eq!(
        key_map(&gw, &keys).await,
        before,
        "a key stays on its backend"
    );

    // One of four goes (its health checks fail): its keys, and only its keys, move.
    let gone = "h2";
    backends[2].set_healthy(false);
    wait_state(&gw, addrs[2], "unhealthy", Duration::from_secs(2)).await;
    let after = key_map(&gw, &keys).await;
    let moved: Vec<usize> = (0..keys.len()).filter(|&i| after[i] != before[i]).collect();
    println!(
        "h2 down: {} of 1000 keys moved, {:?}",
        moved.len(),
        counts(&after)
    );
    assert!(
        moved.iter().all(|&i| before[i] == gone),
        "a key of a remaining backend moved"
    );
    assert_eq!(moved.len(), spread[gone], "every key of h2 moved");
    assert!(
        (150..=350).contains(&moved.len()),
        "about 1/4 moved: {}",
        moved.len()
    );
    assert!(after.iter().all(|b| b != gone));
    // They spread over the others rather than piling on one.
    let landed = counts(&moved.iter().map(|&i| after[i].clone()).collect::<Vec<_>>()).len();
    assert!(landed >= 2, "moved keys all went to one backend");

    // It comes back: every key is home again.
    backends[2].set_healthy(true);
    wait_state(&gw, addrs[2], "healthy", Duration::from_secs(2)).await;
    assert_eq!(key_map(&gw, &keys).await, before);

    // Removed from the config by a reload: the same keys move, the rest stay.
    let mut rest = addrs.clone();
    rest.remove(2);
    gw.rewrite_config(&with_app(&ports, &app(&rest)));
    assert_eq!(gw.admin_post("/reload").await.unwrap().status, 200);
    let reloaded = key_map(&gw, &keys).await;
    let moved_by_reload: Vec<usize> = (0..keys.len())
        .filter(|&i| reloaded[i] != before[i])
        .collect();
    assert_eq!(
        moved_by_reload, moved,
        "a reload moves only the removed backend's keys"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_requests_wait_for_the_first_checks_instead_of_503() {
    // Each health check takes 400 ms, so the gateway is ready before any check is back.
    let slow = SlowBackend::start("slow", 0, Duration::from_millis(400));
    let app = format!(
        "backends: {}, health_check: {{ path: /healthz, interval: 5s, timeout: 2s }}",
        addr_list(&[slow.addr])
    );
    let gw = start(&app).await;
    let r = get(&gw, "/").await;
    assert_eq!(
        (r.status, backend_of(&r)),
        (200, "slow".to_string()),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_the_client_abandoned_does_not_keep_the_backend_out() {
    let mut a = Backend::http("a");
    let b = Backend::http("b");
    let a_addr = a.addr();
    let app = format!(
        "backends: {}, passive: {{ failures: 1, eject_for: 1s }}",
        addr_list(&[a_addr, b.addr()])
    );
    let gw = start(&app).await;
    a.stop().await;
    assert_eq!(spread(&gw, "/", 2).await.get("b"), Some(&2));
    assert_eq!(backend_status(&gw, a_addr).await["state"], "ejected");

    // a returns, slow; the probe's client gives up long before a answers.
    let slow = SlowBackend::start("a", a_addr.port(), Duration::from_millis(1500));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let web = gw.listener("web");
    let mut probes = 0;
    while slow.hits() == 0 {
        let gave_up = tokio::time::timeout(Duration::from_millis(200), http_get(web, "/")).await;
        probes += gave_up.is_err() as usize;
        assert!(probes <= 3, "no probe reached a");
    }
    assert_eq!(backend_status(&gw, a_addr).await["state"], "ejected");
    // Whether the probe ran to its end or was dropped with the client, a is probed again
    // and back in service soon, not left waiting for a verdict that never comes.
    let t = Instant::now();
    loop {
        let seen = burst(&gw, 2).await;
        if seen.contains_key("a") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(6), "a never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "abandoned probe: a back {:?} later, {} probes",
        t.elapsed(),
        slow.hits()
    );
}

/// The length of every line [`PrivateHosts::set`] writes.
const HOSTS_LINE_LEN: usize = "127.0.0.11 moving.portico.test".len();

/// An `/etc/hosts` of the test's own, seen only by a portico started under [`PrivateHosts::wrapper`]
/// (a mount namespace with this file bound over `/etc/hosts`, and name lookups limited to
/// files so that a missing name fails at once instead of asking a DNS server). Rewriting the
/// file moves a name the way a DNS change would, without touching the machine's own.
struct PrivateHosts {
    hosts: std::path::PathBuf,
    nsswitch: std::path::PathBuf,
    /// `unshare`'s options: `-m` (root, or CAP_SYS_ADMIN), else `-r -m` (a user namespace,
    /// which Debian allows any user).
    unshare: &'static [&'static str],
}

impl PrivateHosts {
    /// The first way that works here. Where none does (a container without CAP_SYS_ADMIN
    /// and without user namespaces) the test fails, or with `PORTICO_TEST_SKIP` naming
    /// `mount-namespaces` says loudly that it did not run (see [`machine_allows`]).
    fn new(dir: &TestDir) -> Option<PrivateHosts> {
        if !tools_present(&["unshare"]) {
            return None;
        }
        let hosts = dir.write("hosts", " ".repeat(HOSTS_LINE_LEN + 21));
        let nsswitch = dir.write("nsswitch.conf", "hosts: files\n");
        // The very wrapper portico will run under, around `true`: every step it takes
        // (unshare, either bind mount) must work here.
        let works = |private: &PrivateHosts| {
            let wrapper = private.wrapper();
            std::process::Command::new(&wrapper[0])
                .args(&wrapper[1..])
                .arg("true")
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let found = [&["-m"][..], &["-r", "-m"]]
            .into_iter()
            .map(|unshare| PrivateHosts {
                hosts: hosts.clone(),
                nsswitch: nsswitch.clone(),
                unshare,
            })
            .find(works);
        let why = "no private /etc/hosts here: neither `unshare -m` nor `unshare -r -m` with \
                   bind mounts is allowed (root or CAP_SYS_ADMIN, or user namespaces, needed)";
        if !machine_allows("mount-namespaces", found.is_some(), why) {
            return None;
        }
        found
    }

    /// Writes the file in place: the bind mount follows the inode, so it must not be replaced.
    /// Every content has the same length and goes out in one write without truncating first,
    /// so a lookup at that moment never sees an empty or shortened file.
    fn set(&self, line: &str) {
        use std::io::Write;
        assert_eq!(line.len(), HOSTS_LINE_LEN, "{line:?}");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.hosts)
            .unwrap();
        file.write_all(format!("127.0.0.1 localhost\n{line}\n").as_bytes())
            .unwrap();
    }

    fn wrapper(&self) -> Vec<String> {
        let script = "mount --bind \"$0\" /etc/hosts && mount --bind \"$1\" /etc/nsswitch.conf \
                      && shift && exec \"$@\"";
        let mut wrapper = vec!["unshare".to_string()];
        wrapper.extend(self.unshare.iter().map(|o| o.to_string()));
        wrapper.extend([
            "sh".into(),
            "-c".into(),
            script.into(),
            self.hosts.display().to_string(),
            self.nsswitch.display().to_string(),
        ]);
        wrapper
    }
}

/// A backend given by name follows the name to a new address without a reload; the move lifts
/// an ejection earned at the old address; a name that stops resolving keeps its last address.
#[tokio::test]
async fn a_backend_given_by_name_follows_its_address_and_survives_failed_lookups() {
    let dir = TestDir::new();
    let Some(hosts) = PrivateHosts::new(&dir) else {
        return;
    };
    let mut a = Backend::http_at("a", [127, 0, 0, 11].into(), 0);
    let port = a.port();
    let _b = Backend::http_at("b", [127, 0, 0, 12].into(), port);
    let name = format!("moving.portico.test:{port}");
    hosts.set("127.0.0.11 moving.portico.test");
    let ports = Config::new();
    let app = format!(
        "backends: [{{ addr: \"{name}\" }}], dns_refresh: 1s, passive: {{ failures: 1, eject_for: 60s }}"
    );
    let gw = Gateway::start_under(dir, &with_app(&ports, &app), &hosts.wrapper()).await;
    assert_eq!(backend_of(&get(&gw, "/").await), "a");
    let st = status_of(&gw, &name).await;
    assert_eq!(st["address"], format!("127.0.0.11:{port}"), "{st}");

    // The backend at the old address dies: one failure ejects it, and with nothing left the
    // gateway answers 503 at once.
    a.stop().await;
    assert_eq!(get(&gw, "/").await.status, 502);
    assert_eq!(status_of(&gw, &name).await["state"], "ejected");
    assert_eq!(get(&gw, "/").await.status, 503);

    // The name moves. Within a refresh or two the backend is at the new address and back in
    // service, long before its 60 s ejection would have ended.
    hosts.set("127.0.0.12 moving.portico.test");
    let moved_at = Instant::now();
    loop {
        let r = get(&gw, "/").await;
        if r.status == 200 {
            assert_eq!(backend_of(&r), "b");
            break;
        }
        assert!(
            moved_at.elapsed() < Duration::from_secs(5),
            "not moved within 5 s (refresh 1 s): {} {}",
            r.status,
            gw.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = status_of(&gw, &name).await;
    assert_eq!(
        (st["address"].as_str(), st["state"].as_str(), &st["addr"]),
        (
            Some(&*format!("127.0.0.12:{port}")),
            Some("healthy"),
            &Value::from(name.clone())
        ),
        "{st}"
    );
    let log = gw.stderr_text();
    assert!(
        log.contains(&format!(
            "backend {name} moved from 127.0.0.11:{port} to 127.0.0.12:{port}"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("backend {name} is no longer ejected")),
        "{log}"
    );
    let labels = [
        ("upstream", "app"),
        ("backend", name.as_str()),
        ("outcome", "ok"),
    ];
    assert_eq!(
        metric(&gw, "portico_upstream_requests_total", &labels).await,
        2.0
    );

    // The name stops resolving: the backend stays where it was, and says so once however
    // many refreshes fail.
    hosts.set("127.0.0.12 absent.portico.test");
    assert!(
        gw.wait_for_stderr(
            &format!("backend {name} cannot be resolved"),
            Duration::from_secs(5)
        )
        .await,
        "{}",
        gw.stderr_text()
    );
    for _ in 0..3 {
        assert_eq!(backend_of(&get(&gw, "/").await), "b");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(backend_of(&get(&gw, "/").await), "b");
    hosts.set("127.0.0.12 moving.portico.test");
    assert!(
        gw.wait_for_stderr(
            &format!("backend {name} resolves again"),
            Duration::from_secs(5)
        )
        .await
    );
    assert_eq!(gw.stderr_text().matches("cannot be resolved").count(), 1);
}
