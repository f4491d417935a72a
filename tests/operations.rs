//! Running Portico: the admin endpoints, the Prometheus metrics, hot reload (SIGHUP and
//! `POST /reload`), graceful shutdown for a load balancer, the zero-downtime binary upgrade
//! (`-u` + SIGQUIT), and the logs (SIGUSR1 reopens the access log, `RUST_LOG`, no noise for
//! clients that go away). Everything through the real binary.
//!
//! The load tests print what they sent and what failed, e.g.
//! `reload under load: 2410 requests sent, 2410 ok, 0 failed (12 reloads)`.

use crate::common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A gateway config with the upstream `app` on `b`, and the route `main` to it.
fn main_route(b: &Backend) -> Config {
    Config::new().app(b).route("name: main, upstream: app")
}

/// Two plain clients on new connections each time, two on keep-alive connections.
fn plain_clients(addr: SocketAddr) -> [Client; 4] {
    [
        Client::fresh(addr),
        Client::fresh(addr),
        Client::keep_alive(addr),
        Client::keep_alive(addr),
    ]
}

// ------------------------------------------------------------------------------------------
// Admin endpoints

#[tokio::test]
async fn every_admin_endpoint_answers_and_the_token_guards_status_and_reload() {
    let b = Backend::http("a");
    let yaml = Config::with_app(&b)
        .admin("token: s3cret")
        .route("name: api, upstream: app")
        .build();
    let gw = Gateway::start(&yaml).await;

    let r = gw.admin_get("/healthz").await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    let r = gw.admin_get("/readyz").await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
    // Health, readiness and metrics stay open to the load balancer and Prometheus.
    let r = gw.admin_get("/metrics").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("portico_build_info"));

    for (headers, what) in [
        (vec![], "no token"),
        (vec![("authorization", "Bearer wrong")], "a wrong token"),
        (vec![("authorization", "s3cret")], "no Bearer"),
    ] {
        let r = gw.admin_request("GET", "/status", &headers).await.unwrap();
        assert_eq!(r.status, 401, "/status with {what}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let r = gw.admin_request("POST", "/reload", &headers).await.unwrap();
        assert_eq!(r.status, 401, "/reload with {what}");
    }
    // Two Authorization headers are 400 here too, even when both hold the token.
    let two = "Authorization: Bearer s3cret\r\nAuthorization: Bearer s3cret\r\n";
    for target in ["/status", "/healthz"] {
        let request = format!("GET {target} HTTP/1.1\r\nHost: a\r\n{two}Connection: close\r\n\r\n");
        let answer = raw_exchange(gw.admin_addr(), request.as_bytes(), None).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
    }
    assert_eq!(validate_config(&yaml).await.0, 0);

    let auth = [("authorization", "Bearer s3cret")];
    let r = gw.admin_request("GET", "/status", &auth).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let s = r.json();
    let version = s["version"].as_str().unwrap().to_string();
    assert!(!version.is_empty());
    assert!(
        s["loaded_at"].as_str().unwrap().ends_with('Z'),
        "{}",
        s["loaded_at"]
    );
    assert_eq!(s["listeners"][0]["name"], "web");
    assert_eq!(s["listeners"][0]["listen"], gw.listener("web").to_string());
    assert_eq!(s["routes"][0]["name"], "api");
    assert_eq!(s["routes"][0]["upstream"], "app");
    let backend = &s["upstreams"]["app"]["backends"][0];
    assert_eq!(backend["addr"], b.addr().to_string());
    assert_eq!(backend["backup"], false);
    assert_eq!(backend["state"], "healthy");
    assert!(backend["last_error"].is_null());
    assert!(backend["changed_at"].as_str().unwrap().ends_with('Z'));

    let r = gw.admin_request("POST", "/reload", &auth).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["version"],
        version.as_str(),
        "the same file, the same version"
    );

    assert_eq!(gw.admin_get("/reload").await.unwrap().status, 405);
    assert_eq!(gw.admin_post("/healthz").await.unwrap().status, 405);
    assert_eq!(gw.admin_get("/nothing-here").await.unwrap().status, 404);
}

#[tokio::test]
async fn protect_metrics_puts_metrics_behind_the_token_and_prometheus_scrapes_with_it() {
    if !tools_present(&["promtool", "prometheus"]) {
        return;
    }
    let b = Backend::http("a");
    let yaml = Config::with_app(&b)
        .admin("token: s3cret, protect_metrics: true")
        .route("name: api, upstream: app")
        .build();
    assert_eq!(validate_config(&yaml).await.0, 0);
    let gw = Gateway::start(&yaml).await;

    for (headers, what) in [
        (vec![], "no token"),
        (vec![("authorization", "Bearer wrong")], "a wrong token"),
        (
            vec![("authorization", "Bearer s3cre")],
            "a prefix of the token",
        ),
        (vec![("authorization", "Basic czNjcmV0")], "another scheme"),
    ] {
        let r = gw.admin_request("GET", "/metrics", &headers).await.unwrap();
        assert_eq!(r.status, 401, "/metrics with {what}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(!r.text().contains("portico_"), "{what}");
    }
    // Load balancers probe health and readiness without a token.
    assert_eq!(gw.admin_get("/healthz").await.unwrap().status, 200);
    assert_eq!(gw.admin_get("/readyz").await.unwrap().status, 200);

    let r = gw
        .admin_request("GET", "/metrics", &[("authorization", "Bearer s3cret")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    promtool_check_metrics(&r.text());
    // The scheme is case-insensitive (RFC 9110); the token is not given twice.
    let r = gw
        .admin_request("GET", "/metrics", &[("authorization", "bearer s3cret")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let raw = raw_exchange(
        gw.admin_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer wrong\r\n\
          Authorization: Bearer s3cret\r\nConnection: close\r\n\r\n",
        None,
    )
    .await;
    assert!(
        raw.starts_with(b"HTTP/1.1 400"),
        "two Authorization headers, one of them right: {}",
        String::from_utf8_lossy(&raw)
    );

    // A real Prometheus, as deployed: the job with the token scrapes, the other one is told 401.
    let admin = gw.admin_addr();
    let prometheus = Prometheus::start(&format!(
        "  - job_name: with_token\n    authorization: {{ credentials: s3cret }}\n    static_configs: [ {{ targets: [\"{admin}\"] }} ]\n\
         \x20 - job_name: without_token\n    static_configs: [ {{ targets: [\"{admin}\"] }} ]\n"
    ));
    let mut targets = prometheus.scraped_targets(2).await;
    targets.sort();
    assert_eq!(
        (
            targets[0].0.as_str(),
            targets[0].1.as_str(),
            targets[0].2.as_str()
        ),
        ("with_token", "up", ""),
        "{targets:?}"
    );
    assert_eq!(targets[1].0, "without_token");
    assert_eq!(targets[1].1, "down");
    assert!(targets[1].2.contains("401"), "{targets:?}");
}

#[tokio::test]
async fn a_non_loopback_admin_address_needs_a_token() {
    let without = format!(
        "admin: {{ listen: 0.0.0.0:{} }}\nlisteners:\n  - {{ name: web, listen: 127.0.0.1:{} }}\n\
         routes:\n  - {{ name: r, plugins: [ {{ respond: {{ status: 200 }} }} ] }}\n",
        free_port(),
        free_port()
    );
    let (code, stderr) = validate_config(&without).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("admin.token: ")),
        "{stderr}"
    );

    let with = without.replace(" }\nlisteners", ", token: t0ken }\nlisteners");
    let (code, stderr) = validate_config(&with).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn a_listener_that_cannot_bind_is_never_ready_and_ends_the_process() {
    // Something else holds the listener's port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let admin = free_port();
    let dir = TestDir::new();
    let yaml = Config::admin_only()
        .admin_at(admin)
        .listener_at("web", port, "")
        .route("name: r, plugins: [ { respond: { status: 200 } } ]")
        .build();
    let config_path = dir.write("portico.yaml", &yaml);
    let stderr_path = dir.join("stderr.log");
    let mut child = Command::new(PORTICO_BIN)
        .arg("-c")
        .arg(&config_path)
        .env("PORTICO_TEST_DIR", dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    // Pingora retries an address in use for a while; meanwhile the instance is not ready.
    let deadline = Instant::now() + Duration::from_secs(45);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Ok(Ok(r)) =
            tokio::time::timeout(Duration::from_secs(1), http_get(admin, "/readyz")).await
        {
            assert_ne!(r.status, 200, "ready without its listener");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after 45 s without its listener");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    drop(taken);
    assert_eq!(status.code(), Some(1));
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        stderr.contains(&format!("listener web: cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

// ------------------------------------------------------------------------------------------
// Metrics

/// The metric table of docs/operations.md: what an operator watches, and the build.
fn documented_metrics() -> impl Iterator<Item = &'static str> {
    OPERATOR_METRICS.into_iter().chain(["portico_build_info"])
}

#[tokio::test]
async fn metrics_pass_promtool_and_count_the_requests_sent() {
    if !tools_present(&["promtool"]) {
        return;
    }
    let ca = TestCa::new("metrics CA");
    let cert = ca.issue(&["gw.test"]);
    let live = Backend::http("live");
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into(); // nothing listens there
    let gw = Config::new()
        .listener("secure", &tls(&[&cert], ""))
        .app(&live)
        .upstream(
            "flaky",
            &format!(
                "{}, passive: {{ failures: 1, eject_for: 1m }}",
                backends(&[dead, live.addr()])
            ),
        )
        .route("name: api, match: { path: { prefix: /api } }, upstream: app")
        .route("name: flaky, match: { path: { prefix: /flaky } }, upstream: flaky")
        .route("name: locked, match: { path: { prefix: /locked } }, upstream: app, plugins: [ { key_auth: { keys: { ci: k3y } } } ]")
        .start()
        .await;
    let web = gw.listener("web");

    // Before any traffic, the series the config implies are there, at zero.
    let first = gw.metrics().await;
    for name in [
        "# TYPE portico_request_duration_seconds histogram",
        "portico_request_duration_seconds_count{route=\"flaky\"} 0",
        "portico_downstream_connections{listener=\"web\"} 0",
        "portico_tls_handshake_errors_total{listener=\"secure\"} 0",
        "portico_upstream_retries_total{upstream=\"app\"} 0",
        "portico_upstream_backend_healthy{backend=",
    ] {
        assert!(
            first.contains(name),
            "{name} is in the first scrape:\n{first}"
        );
    }
    for (name, labels, value) in [
        (
            "portico_build_info",
            ("version", env!("CARGO_PKG_VERSION")),
            1.0,
        ),
        ("portico_config_reloads_total", ("result", "success"), 0.0),
        ("portico_config_reloads_total", ("result", "failure"), 0.0),
    ] {
        assert_eq!(first.value(name, &[labels]), Some(value), "{name}");
    }

    // Mixed traffic, each kind a known number of times: (times, method, path (`N`: the
    // count), headers, body, status).
    let traffic: [(usize, &str, &str, Pairs, &str, u16); 5] = [
        (7, "GET", "/api/get/N", &[], "", 200),
        (3, "POST", "/api/post", &[], "x", 200),
        (2, "GET", "/nowhere", &[], "", 404),
        (4, "GET", "/locked", &[], "", 401),
        (1, "GET", "/locked", &[("x-api-key", "k3y")], "", 200),
    ];
    for (times, method, path, headers, body, status) in traffic {
        for i in 0..times {
            let path = path.replace('N', &i.to_string());
            let r = gw.send(method, &path, headers, body).await;
            assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        }
    }
    // The dead backend fails once, is retried on the live one and ejected (failures: 1).
    for _ in 0..4 {
        let r = http_get(web, "/flaky").await.unwrap();
        assert_eq!((r.status, r.header("x-backend")), (200, Some("live")));
    }
    // Over TLS, and one client that is not speaking TLS at all.
    assert_eq!(
        https_get(
            gw.listener("secure"),
            "gw.test",
            &TlsClientOpts::trusting(ca.cert_path()),
            "/api/tls"
        )
        .await
        .unwrap()
        .status,
        200
    );
    let garbage = raw_exchange(
        gw.listener("secure"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        None,
    )
    .await;
    assert!(!String::from_utf8_lossy(&garbage).starts_with("HTTP/1.1 200"));
    // A keep-alive connection held open while scraping.
    let mut held = HttpConn::plain(web).await.unwrap();
    assert_eq!(held.get("/api/held").await.unwrap().status, 200);

    // A request is counted when its logging phase runs, just after its answer went out: the
    // scrape may come first, so it is repeated until the last request shows (bounded).
    let get_200 = [("route", "api"), ("method", "GET"), ("status", "200")];
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = gw.metrics().await;
        let counted = text.value("portico_requests_total", &get_200) == Some(9.0)
            && text
                .value(
                    "portico_tls_handshake_errors_total",
                    &[("listener", "secure")],
                )
                .is_some();
        if counted || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    for name in documented_metrics() {
        let kind = if name.ends_with("_seconds") {
            "histogram"
        } else if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} ({kind}) is in the exposition:\n{text}"
        );
    }
    promtool_check_metrics(&text);

    let (live, dead) = (live.addr().to_string(), dead.to_string());
    // (family, labels, value, what it counts)
    let expected: &[(&str, Pairs, f64, &str)] = &[
        (
            "portico_requests_total",
            &get_200,
            9.0,
            "7 GETs, the TLS one and the held one",
        ),
        (
            "portico_requests_total",
            &[("route", "api"), ("method", "POST"), ("status", "200")],
            3.0,
            "",
        ),
        (
            "portico_requests_total",
            &[("route", "unmatched"), ("method", "GET"), ("status", "404")],
            2.0,
            "",
        ),
        (
            "portico_requests_total",
            &[("route", "locked"), ("method", "GET"), ("status", "401")],
            4.0,
            "",
        ),
        (
            "portico_requests_total",
            &[("route", "locked"), ("method", "GET"), ("status", "200")],
            1.0,
            "",
        ),
        (
            "portico_requests_total",
            &[("route", "flaky"), ("method", "GET"), ("status", "200")],
            4.0,
            "",
        ),
        (
            "portico_request_duration_seconds_count",
            &[("route", "api")],
            12.0,
            "",
        ),
        (
            "portico_request_duration_seconds_count",
            &[("route", "unmatched")],
            2.0,
            "",
        ),
        (
            "portico_request_duration_seconds_count",
            &[("route", "locked")],
            5.0,
            "",
        ),
        (
            "portico_request_duration_seconds_count",
            &[("route", "flaky")],
            4.0,
            "",
        ),
        (
            "portico_request_duration_seconds_bucket",
            &[("route", "api"), ("le", "+Inf")],
            12.0,
            "",
        ),
        (
            "portico_upstream_requests_total",
            &[("upstream", "app"), ("backend", &live), ("outcome", "ok")],
            13.0,
            "12 api + 1 authorized locked",
        ),
        (
            "portico_upstream_requests_total",
            &[("upstream", "flaky"), ("backend", &live), ("outcome", "ok")],
            4.0,
            "",
        ),
        (
            "portico_upstream_requests_total",
            &[
                ("upstream", "flaky"),
                ("backend", &dead),
                ("outcome", "connect_error"),
            ],
            1.0,
            "",
        ),
        (
            "portico_upstream_retries_total",
            &[("upstream", "flaky")],
            1.0,
            "",
        ),
        (
            "portico_upstream_backend_healthy",
            &[("upstream", "app"), ("backend", &live)],
            1.0,
            "",
        ),
        (
            "portico_upstream_backend_healthy",
            &[("upstream", "flaky"), ("backend", &live)],
            1.0,
            "",
        ),
        (
            "portico_upstream_backend_healthy",
            &[("upstream", "flaky"), ("backend", &dead)],
            0.0,
            "an ejected backend takes no traffic",
        ),
        (
            "portico_plugin_rejections_total",
            &[("plugin", "key_auth"), ("route", "locked")],
            4.0,
            "",
        ),
        (
            "portico_tls_handshake_errors_total",
            &[("listener", "secure")],
            1.0,
            "",
        ),
    ];
    for (name, labels, value, what) in expected {
        assert_eq!(
            text.value(name, labels),
            Some(*value),
            "{name} {labels:?} ({what}):\n{text}"
        );
    }
    for le in ["0.0005", "30"] {
        assert!(
            text.contains(&format!(
                "portico_request_duration_seconds_bucket{{route=\"api\",le=\"{le}\"}}"
            )),
            "buckets from under a millisecond to tens of seconds: {le}"
        );
    }
    assert!(text.sum("portico_downstream_connections", &[("listener", "web")]) >= 1.0);
    drop(held);

    // Every label value is bounded: no raw path made it into a label.
    assert!(!text.contains("/api/get"), "{text}");
    assert!(!text.contains("nowhere"));
    // The failed handshake was counted, not logged as an error.
    assert!(
        !gw.stderr_text().contains("Downstream handshake error"),
        "{}",
        gw.stderr_text()
    );
}

// ------------------------------------------------------------------------------------------
// Reload

/// Upstreams `ua` (on `a`) and `ub` (on `b`), a 2 s shutdown; no route yet.
fn two_upstreams(a: &Backend, b: &Backend) -> Config {
    Config::new()
        .server("shutdown_timeout: 2s")
        .upstream("ua", &backends(&[a.addr()]))
        .upstream("ub", &backends(&[b.addr()]))
}

/// The reloads `/metrics` counts: (successful, failed).
async fn reloads(gw: &Gateway) -> (Option<f64>, Option<f64>) {
    let m = gw.metrics().await;
    let count = |result| m.value("portico_config_reloads_total", &[("result", result)]);
    (count("success"), count("failure"))
}

/// `base` with the route `main` to upstream `target`.
fn main_to(base: &Config, target: &str) -> Config {
    base.clone()
        .route(&format!("name: main, upstream: {target}"))
}

#[tokio::test]
async fn a_reload_changes_the_route_for_the_next_request_by_sighup_and_by_post() {
    let (a, b) = (Backend::http("a"), Backend::http("b"));
    let base = two_upstreams(&a, &b);
    let mut gw = main_to(&base, "ua").start().await;
    let web = gw.listener("web");
    assert_eq!(
        http_get(web, "/").await.unwrap().header("x-backend"),
        Some("a")
    );
    let v1 = gw.admin_get("/status").await.unwrap().json()["version"]
        .as_str()
        .unwrap()
        .to_string();

    // SIGHUP: the reload finishes in the background; its log line says when.
    gw.rewrite_config(
        &main_to(&base, "ub")
            .route("name: extra, match: { path: { prefix: /extra } }, plugins: [ { respond: { status: 299, body: added } } ]")
            .build(),
    );
    gw.signal(SIGHUP);
    assert!(
        gw.wait_for_stderr("config reloaded", IO_TIMEOUT).await,
        "no reload after SIGHUP"
    );
    assert_eq!(
        http_get(web, "/").await.unwrap().header("x-backend"),
        Some("b"),
        "the next request takes the new route"
    );
    let r = http_get(web, "/extra").await.unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (299, "added"),
        "a new route serves at once"
    );
    let v2 = gw.admin_get("/status").await.unwrap().json()["version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(v1, v2, "the version follows the file");

    // POST /reload: done when it answers.
    gw.rewrite_config(&main_to(&base, "ua").build());
    let r = gw.admin_post("/reload").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["version"],
        v1.as_str(),
        "the first file again, the first version again"
    );
    assert_eq!(
        http_get(web, "/").await.unwrap().header("x-backend"),
        Some("a")
    );
    assert_eq!(
        http_get(web, "/extra").await.unwrap().status,
        200,
        "the removed route is gone (main matches all)"
    );
    assert_eq!(
        http_get(web, "/extra").await.unwrap().header("x-backend"),
        Some("a")
    );

    assert_eq!(reloads(&gw).await, (Some(2.0), Some(0.0)));
}

#[tokio::test]
async fn an_invalid_reload_keeps_the_old_routes_and_counts_a_failure() {
    let (a, b) = (Backend::http("a"), Backend::http("b"));
    let base = two_upstreams(&a, &b);
    let mut gw = main_to(&base, "ua").start().await;
    let web = gw.listener("web");
    let v1 = gw.admin_get("/status").await.unwrap().json()["version"].clone();

    // A route to an upstream that does not exist, and a bad duration, in one file.
    let bad = main_to(&base, "billing").server("shutdown_timeout: soon");
    gw.rewrite_config(&bad.build());
    let r = gw.admin_post("/reload").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let errors: Vec<String> = r.json()["errors"]
        .as_array()
        .expect("errors: [...]")
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert!(!errors.is_empty());
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("server.shutdown_timeout")),
        "{errors:?}"
    );
    // Fix the duration: the other error (found by the compile step) names its key too.
    gw.rewrite_config(&main_to(&base, "billing").build());
    let r = gw.admin_post("/reload").await.unwrap();
    assert_eq!(r.status, 400);
    let errors = r.json()["errors"].clone();
    assert!(
        errors.as_array().unwrap().iter().any(|e| e
            .as_str()
            .unwrap()
            .starts_with("routes[0].upstream: no upstream named \"billing\"")),
        "{errors}"
    );

    assert_eq!(
        http_get(web, "/").await.unwrap().header("x-backend"),
        Some("a"),
        "the old route still serves"
    );
    assert_eq!(
        gw.admin_get("/status").await.unwrap().json()["version"],
        v1,
        "the old version stays"
    );

    // By SIGHUP: an error log line, and the counter again.
    let refusals = |gw: &Gateway| {
        gw.stderr_text()
            .lines()
            .filter(|l| l.contains("config reload refused"))
            .count()
    };
    let before = refusals(&gw);
    gw.signal(SIGHUP);
    let deadline = Instant::now() + IO_TIMEOUT;
    while refusals(&gw) == before {
        assert!(Instant::now() < deadline, "no error line after SIGHUP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stderr = gw.stderr_text();
    let err_line = stderr
        .lines()
        .rfind(|l| l.contains("config reload refused"))
        .unwrap();
    assert!(
        err_line.contains(" ERROR ") && err_line.contains("routes[0].upstream: no upstream named"),
        "{err_line}"
    );
    assert_eq!(
        http_get(web, "/").await.unwrap().header("x-backend"),
        Some("a")
    );

    assert_eq!(reloads(&gw).await, (Some(0.0), Some(3.0)));

    // And a good file afterwards loads as usual.
    gw.rewrite_config(&main_to(&base, "ub").build());
    assert_eq!(gw.admin_post("/reload").await.unwrap().status, 200);
    assert_eq!(
        http_get(web, "/").await.unwrap().header("x-backend"),
        Some("b")
    );
}

#[tokio::test]
async fn a_new_listener_address_is_refused_as_needing_an_upgrade() {
    let (a, b) = (Backend::http("a"), Backend::http("b"));
    let base = two_upstreams(&a, &b);
    let mut gw = main_to(&base, "ua").start().await;
    let web = gw.listener("web");
    let moved = main_to(&base, "ub").listener("web", "");
    gw.rewrite_config(&moved.build());
    let r = gw.admin_post("/reload").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let errors = r.json()["errors"].clone();
    let first = errors[0].as_str().unwrap();
    assert!(first.starts_with("listeners[0].listen: "), "{errors}");
    assert!(
        first.contains("portico -u"),
        "it says what to do instead: {first}"
    );
    assert_eq!(errors.as_array().unwrap().len(), 1, "{errors}");
    // Nothing of that file was applied, not even its valid route change.
    assert_eq!(
        http_get(web, "/").await.unwrap().header("x-backend"),
        Some("a")
    );

    // The admin address cannot move by reload either.
    let admin_moved = main_to(&base, "ub").admin_at(free_port());
    gw.rewrite_config(&admin_moved.build());
    let r = gw.admin_post("/reload").await.unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.json()["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("admin.listen: "),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_a_steady_stream_of_requests_drops_none() {
    let (a, b) = (Backend::http("a"), Backend::http("b"));
    let base = two_upstreams(&a, &b);
    let configs = [main_to(&base, "ua").build(), main_to(&base, "ub").build()];
    let mut gw = Gateway::start(&configs[0]).await;
    let load = Load::start("/steady", &plain_clients(gw.listener("web")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reloads_done = 12;
    for i in 0..reloads_done {
        gw.rewrite_config(&configs[(i + 1) % 2]);
        if i % 2 == 0 {
            let r = gw.admin_post("/reload").await.unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
        } else {
            gw.signal(SIGHUP);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = load.finish().await;
    counts.report(&format!(
        "reload under load ({reloads_done} reloads, half by SIGHUP, half by POST /reload)"
    ));
    assert!(
        counts.sent > 50,
        "the stream was too thin to mean anything: {}",
        counts.sent
    );
    assert!(
        counts.failures.is_empty(),
        "{} of {} requests failed: {:?}",
        counts.failures.len(),
        counts.sent,
        counts.failures
    );
    assert_eq!(counts.ok, counts.sent);
    assert!(
        counts.backends.get("a").copied().unwrap_or(0) > 0
            && counts.backends.get("b").copied().unwrap_or(0) > 0,
        "{:?}",
        counts.backends
    );
    assert_eq!(reloads(&gw).await.0, Some(reloads_done as f64));
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_after_a_reload() {
    let ca = TestCa::new("reload CA");
    let first = ca.issue(&["old.test"]);
    let second = ca.issue(&["new.test", "gw.test"]);
    let dir = TestDir::new();
    std::fs::copy(&first.cert, dir.join("site.crt")).unwrap();
    std::fs::copy(&first.key, dir.join("site.key")).unwrap();
    let yaml = Config::admin_only()
        .listener(
            "tls",
            "tls: { certificates: [ { cert: site.crt, key: site.key } ] }",
        )
        .route("name: hi, plugins: [ { respond: { status: 200, body: hi } } ]")
        .build();
    let mut gw = Gateway::start_in(dir, &yaml, &[], &[]).await;
    let addr = gw.listener("tls");
    let trust = TlsClientOpts::trusting(ca.cert_path());
    let names = |sni: &'static str| {
        let trust = trust.clone();
        async move {
            tls_connect(addr, sni, &trust)
                .await
                .unwrap()
                .peer_dns_names()
        }
    };
    assert_eq!(names("old.test").await, ["old.test"]);
    // A connection made before the reload lives on with the old certificate.
    let mut before = HttpConn::tls(addr, "old.test", &trust.clone().alpn(&["http/1.1"]))
        .await
        .unwrap();

    // Renewed in place (written beside and renamed, as certbot and friends do).
    let d = gw.dir().to_path_buf();
    let renew = |with: &CertFiles| {
        std::fs::copy(&with.cert, d.join("site.crt.new")).unwrap();
        std::fs::copy(&with.key, d.join("site.key.new")).unwrap();
        std::fs::rename(d.join("site.key.new"), d.join("site.key")).unwrap();
        std::fs::rename(d.join("site.crt.new"), d.join("site.crt")).unwrap();
    };
    renew(&second);
    let r = gw.admin_post("/reload").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(names("new.test").await, ["new.test", "gw.test"]);
    let r = https_get(addr, "gw.test", &trust, "/").await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hi"));
    assert_eq!(before.get("/").await.unwrap().status, 200);

    // By SIGHUP too, back to the first certificate.
    renew(&first);
    let yaml_again = std::fs::read_to_string(gw.config_path()).unwrap();
    gw.rewrite_config(&yaml_again);
    let reloads_before = gw.stderr_text().matches("config reloaded").count();
    gw.signal(SIGHUP);
    // The POST above already logged one reload: wait for this one's own line.
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    while gw.stderr_text().matches("config reloaded").count() <= reloads_before {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(names("old.test").await, ["old.test"]);

    // A broken certificate file is refused, and the running one stays.
    std::fs::write(d.join("site.crt"), "not a certificate").unwrap();
    let r = gw.admin_post("/reload").await.unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.json()["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("listeners[0].tls.certificates[0]"),
        "{}",
        r.text()
    );
    assert_eq!(names("old.test").await, ["old.test"]);
}

// ------------------------------------------------------------------------------------------
// Graceful shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readyz_503_at_once_serves_through_the_grace_period_and_finishes_in_flight_requests(
) {
    let b = Backend::http("a");
    let grace = Duration::from_secs(2);
    let yaml = main_route(&b)
        .server("grace_period: 2s")
        .server("shutdown_timeout: 10s")
        .build();
    let mut gw = Gateway::start(&yaml).await;
    let web = gw.listener("web");

    // A request that is still running when the listeners stop, 2 s into the shutdown.
    let slow = tokio::spawn(async move { http_get(web, "/sleep/3500").await });
    let load = Load::start(
        "/during-grace",
        &[Client::fresh(web), Client::keep_alive(web)],
    );
    let deadline = Instant::now() + IO_TIMEOUT;
    while b.seen_paths().iter().all(|p| p != "/sleep/3500") {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let term = Instant::now();
    gw.signal(SIGTERM);
    // "At once": the very first probe after the signal is delivered already sees it.
    let mut probes = 0;
    let status = loop {
        probes += 1;
        let r = gw.admin_get("/readyz").await.unwrap();
        if r.status == 503 || term.elapsed() > Duration::from_secs(1) {
            break r.status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let readyz_after = term.elapsed();
    assert_eq!(status, 503, "/readyz after SIGTERM");
    assert!(
        readyz_after < Duration::from_secs(1),
        "/readyz took {readyz_after:?} ({probes} probes) to turn 503"
    );
    assert_eq!(
        gw.admin_get("/healthz").await.unwrap().status,
        200,
        "alive while draining"
    );
    // Keep-alive clients are told to reconnect (through the load balancer, elsewhere).
    let r = HttpConn::plain(web)
        .await
        .unwrap()
        .get("/polite")
        .await
        .unwrap();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));

    // The load balancer has not noticed yet: everything sent in the grace period is served.
    tokio::time::sleep(grace - Duration::from_millis(400)).await;
    let counts = load.finish().await;
    counts.report("during the SIGTERM grace period");
    assert!(counts.failures.is_empty(), "{:?}", counts.failures);
    assert!(counts.sent > 10, "{}", counts.sent);

    let r = slow
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/sleep/3500");
    let finished = term.elapsed();
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits once drained");
    let exited = term.elapsed();
    println!("sigterm: /readyz 503 after {readyz_after:?}; slow request done after {finished:?}; exit after {exited:?} with {status:?}");
    assert_eq!(status.code(), Some(0), "a graceful shutdown exits with 0");
    assert!(
        exited < Duration::from_secs(7),
        "exits when the last request is done, not after shutdown_timeout: {exited:?}"
    );
    assert!(!gw.dir().join("p.pid").exists(), "the pid file is removed");
    assert!(connect_tcp(web).await.is_err(), "nothing listens any more");
}

#[tokio::test]
async fn a_request_still_running_at_shutdown_timeout_is_cut_and_the_process_exits_anyway() {
    let b = Backend::http("a");
    let yaml = main_route(&b).build();
    let mut gw = Gateway::start(&yaml).await;
    let web = gw.listener("web");
    let slow = tokio::spawn(async move { http_get(web, "/sleep/8000").await });
    let deadline = Instant::now() + IO_TIMEOUT;
    while b.hits() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    gw.signal(SIGTERM);
    let status = gw
        .wait_exit(Duration::from_secs(8))
        .await
        .expect("exits after shutdown_timeout");
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(slow.await.unwrap().is_err(), "the slow request was cut");
}

// ------------------------------------------------------------------------------------------
// Zero-downtime upgrade

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_a_steady_stream_of_requests_drops_none() {
    let ca = TestCa::new("upgrade CA");
    let cert = ca.issue(&["gw.test"]);
    let b = Backend::http("a");
    let mut old = main_route(&b)
        .server("grace_period: 1s")
        .server("shutdown_timeout: 10s")
        .listener("secure", &tls(&[&cert], ""))
        .start()
        .await;
    let pid_file = old.dir().join("p.pid");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        old.pid().to_string()
    );
    let web = old.listener("web");
    let secure = old.listener("secure");
    let plain = Load::start("/upgrade", &plain_clients(web));
    let tls = Load::start(
        "/upgrade-tls",
        &[
            Client::tls(secure, "gw.test"),
            Client::tls(secure, "gw.test"),
        ],
    );
    // A request in flight across the hand-over (longer than the old process's 5 s of
    // accepting next to the new one) finishes on the old process.
    let slow = tokio::spawn(async move { http_get(web, "/sleep/7000").await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut new = old.spawn_upgrade();
    let t = Instant::now();
    old.signal(SIGQUIT);
    assert!(
        new.wait_ready(Duration::from_secs(15)).await,
        "the new process did not become ready"
    );
    let old_status = old
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("the old process exits after handing over");
    let handover = t.elapsed();
    assert_eq!(old_status.code(), Some(0));
    assert!(new.is_running(), "the new process serves on");
    // Only the new process is left: what is answered now comes from it.
    let after_old = plain.sent() + tls.sent();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let plain = plain.finish().await;
    let tls = tls.finish().await;
    plain.report("upgrade, plain HTTP clients");
    tls.report("upgrade, TLS clients (a new connection each)");
    println!(
        "upgrade: old process exited {handover:?} after SIGQUIT; {} requests sent after that",
        plain.sent + tls.sent - after_old
    );
    let r = slow
        .await
        .unwrap()
        .expect("the request in flight during the upgrade completes");
    assert_eq!(r.status, 200);

    assert!(
        plain.failures.is_empty() && tls.failures.is_empty(),
        "dropped requests: {:?} {:?}",
        plain.failures,
        tls.failures
    );
    assert!(
        plain.sent > 50 && tls.sent > 10,
        "too thin a stream: {} {}",
        plain.sent,
        tls.sent
    );
    assert!(
        plain.sent + tls.sent > after_old + 5,
        "the new process served after the old one left"
    );
    assert_eq!(new.admin_get("/readyz").await.unwrap().status, 200);
    assert_eq!(http_get(web, "/").await.unwrap().status, 200);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        new.pid().to_string(),
        "the pid file names the new process"
    );
    assert!(
        old.stderr_text().contains("handing the listening sockets"),
        "{}",
        old.stderr_text()
    );
    assert!(
        !old.dir().join("u.sock").exists(),
        "the upgrade socket is gone once used"
    );
}

#[tokio::test]
async fn a_listener_moves_to_a_new_address_through_an_upgrade() {
    let b = Backend::http("a");
    let first = main_route(&b).server("shutdown_timeout: 2s");
    let mut old = first.start().await;
    let old_addr = old.listener("web");
    old.rewrite_config(&first.listener("web", "").build());
    let mut new = old.spawn_upgrade();
    old.signal(SIGQUIT);
    assert!(new.wait_ready(Duration::from_secs(15)).await);
    assert_eq!(
        old.wait_exit(Duration::from_secs(15))
            .await
            .and_then(|s| s.code()),
        Some(0)
    );
    assert_eq!(
        http_get(new.listener("web"), "/").await.unwrap().status,
        200,
        "the new address serves"
    );
    assert!(
        connect_tcp(old_addr).await.is_err(),
        "the old address is closed, not left without an acceptor"
    );
    assert!(new.is_running());
}

#[tokio::test]
async fn sigquit_without_a_new_process_waiting_is_ignored() {
    let b = Backend::http("a");
    let yaml = main_route(&b).build();
    let mut gw = Gateway::start(&yaml).await;
    gw.signal(SIGQUIT);
    assert!(
        gw.wait_for_stderr("SIGQUIT ignored", Duration::from_secs(10))
            .await,
        "{}",
        gw.stderr_text()
    );
    assert!(gw.is_running());
    assert_eq!(http_get(gw.listener("web"), "/").await.unwrap().status, 200);
    assert_eq!(gw.admin_get("/readyz").await.unwrap().status, 200);
}

// ------------------------------------------------------------------------------------------
// Logs

#[tokio::test]
async fn sigusr1_reopens_the_access_log_file() {
    let b = Backend::http("a");
    let yaml = main_route(&b)
        .plugin("access_log: { path: access.log }")
        .build();
    let gw = Gateway::start(&yaml).await;
    let web = gw.listener("web");
    let log = gw.dir().join("access.log");
    let rotated = gw.dir().join("access.log.1");

    assert_eq!(http_get(web, "/before-rotation").await.unwrap().status, 200);
    wait_for_file_line(&log, "/before-rotation").await;
    std::fs::rename(&log, &rotated).unwrap();
    gw.signal(SIGUSR1);
    assert!(gw.wait_for_stderr("SIGUSR1", IO_TIMEOUT).await);
    assert_eq!(http_get(web, "/after-rotation").await.unwrap().status, 200);
    wait_for_file_line(&log, "/after-rotation").await;

    let old_lines = std::fs::read_to_string(&rotated).unwrap();
    let new_lines = std::fs::read_to_string(&log).unwrap();
    assert!(
        old_lines.contains("/before-rotation") && !old_lines.contains("/after-rotation"),
        "{old_lines}"
    );
    assert!(
        new_lines.contains("/after-rotation") && !new_lines.contains("/before-rotation"),
        "{new_lines}"
    );
    let line: serde_json::Value =
        serde_json::from_str(new_lines.lines().next().unwrap()).expect("a JSON line");
    assert_eq!(line["path"], "/after-rotation");
    assert_eq!(line["status"], 200);
    assert_eq!(line["route"], "main");
}

async fn wait_for_file_line(path: &Path, needle: &str) {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(needle)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never got a line with {needle}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn clients_that_go_away_leave_no_error_in_the_log() {
    let ca = TestCa::new("noise CA");
    let cert = ca.issue(&["gw.test"]);
    let b = Backend::http("a");
    let gw = main_route(&b)
        .listener("secure", &tls(&[&cert], ""))
        .start()
        .await;
    let (web, secure) = (gw.listener("web"), gw.listener("secure"));
    // Half a request head, then gone.
    let mut s = connect_tcp(web).await.unwrap();
    s.write_all(b"GET /half HTTP/1.1\r\nHo").await.unwrap();
    drop(s);
    // A whole request, gone before the (slow) answer.
    let mut s = connect_tcp(web).await.unwrap();
    s.write_all(b"GET /sleep/300 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    // Gone in the middle of a large download.
    let mut s = connect_tcp(web).await.unwrap();
    s.write_all(b"GET /bytes/50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(s);
    // A TCP connection to the TLS port that never says anything, and one that hangs up mid-handshake.
    drop(connect_tcp(secure).await.unwrap());
    let mut s = connect_tcp(secure).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40]).await.unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(http_get(web, "/still-fine").await.unwrap().status, 200);

    let stderr = gw.stderr_text();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "error lines for clients that went away:\n{}",
        errors.join("\n")
    );
}

#[tokio::test]
async fn rust_log_sets_the_log_level() {
    let b = Backend::http("a");
    let yaml = main_route(&b).build();
    let quiet = Gateway::start_with(&yaml.clone(), &[], &[("RUST_LOG", "warn")]).await;
    assert_eq!(
        http_get(quiet.listener("web"), "/").await.unwrap().status,
        200
    );
    assert!(
        !quiet.stderr_text().contains(" INFO "),
        "{}",
        quiet.stderr_text()
    );
    drop(quiet);
    let yaml = main_route(&b).build();
    let chatty = Gateway::start_with(&yaml, &[], &[("RUST_LOG", "info")]).await;
    assert!(
        chatty.stderr_text().contains(" INFO "),
        "{}",
        chatty.stderr_text()
    );
}

// ------------------------------------------------------------------------------------------
// Daemon

/// Kills the daemon named in a pid file when a test ends, however it ends.
struct DaemonGuard(std::path::PathBuf);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill")
                .args(["-9", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[tokio::test]
async fn the_daemon_serves_writes_its_access_log_and_stops_on_sigterm() {
    let b = Backend::http("a");
    let dir = TestDir::new();
    let yaml = main_route(&b)
        .plugin("access_log: { path: access.log }")
        .build();
    let config_path = dir.write("portico.yaml", &yaml);
    let pid_file = dir.join("p.pid");
    let _guard = DaemonGuard(pid_file.clone());
    let status = Command::new(PORTICO_BIN)
        .arg("-c")
        .arg(&config_path)
        .arg("-d")
        .env("PORTICO_TEST_DIR", dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the foreground part of -d exits 0");
    let parsed: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let admin: SocketAddr = parsed["admin"]["listen"].as_str().unwrap().parse().unwrap();
    let web: SocketAddr = parsed["listeners"][0]["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if matches!(http_get(admin, "/readyz").await, Ok(r) if r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http_get(web, "/from-the-daemon").await.unwrap().status, 200);
    wait_for_file_line(&dir.join("access.log"), "/from-the-daemon").await;

    // The upgrade as the systemd unit in docs/operations.md does it: `-d -u` in the
    // background, SIGQUIT to the old daemon, then wait for the new one's foreground part.
    let old_pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let load = Load::start(
        "/daemon-upgrade",
        &[Client::fresh(web), Client::keep_alive(web)],
    );
    let mut upgrade = Command::new(PORTICO_BIN)
        .arg("-c")
        .arg(&config_path)
        .args(["-d", "-u"])
        .env("PORTICO_TEST_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(Command::new("kill")
        .args(["-QUIT", &old_pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = upgrade.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "portico -d -u did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "portico -d -u: {status:?}");
    wait_until_gone(&old_pid).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = load.finish().await;
    counts.report("daemon upgrade (-d -u)");
    assert!(counts.failures.is_empty(), "{:?}", counts.failures);
    let new_pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(new_pid, old_pid, "the pid file names the new daemon");
    assert_eq!(
        http_get(web, "/from-the-new-daemon").await.unwrap().status,
        200
    );
    wait_for_file_line(&dir.join("access.log"), "/from-the-new-daemon").await;

    assert!(Command::new("kill")
        .args(["-TERM", &new_pid])
        .status()
        .unwrap()
        .success());
    wait_until_gone(&new_pid).await;
    assert!(
        !pid_file.exists(),
        "the pid file is removed on a graceful exit"
    );
}

async fn wait_until_gone(pid: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "process {pid} did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------------------------------
// The operations guide

/// The fenced block of `docs/operations.md` whose first line is `first_line`.
fn guide_block(first_line: &str) -> String {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let start = guide
        .find(&format!("```yaml\n{first_line}\n"))
        .unwrap_or_else(|| panic!("no yaml block starting with {first_line}"));
    let body = &guide[start + "```yaml\n".len()..];
    body[..body.find("```").unwrap()].to_string()
}

#[tokio::test]
async fn the_scrape_config_and_alert_rules_in_the_guide_pass_promtool() {
    if !tools_present(&["promtool"]) {
        return;
    }
    let dir = TestDir::new();
    dir.write("portico-alerts.yml", guide_block("# portico-alerts.yml"));
    dir.write("prometheus.yml", guide_block("# prometheus.yml"));
    for (what, file) in [
        ("config", "prometheus.yml"),
        ("rules", "portico-alerts.yml"),
    ] {
        let (ok, out) = run_tool(
            "promtool",
            &["check", what, file],
            dir.path(),
            &Default::default(),
        )
        .await;
        assert!(ok, "promtool check {what}:\n{out}");
    }
    // Every metric an alert uses is one Portico exports (or one the guide's metrics table lists
    // as coming with a feature, such as certificate expiry with TLS listeners).
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let rules = guide_block("# portico-alerts.yml");
    for word in rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("portico_"))
    {
        let base = word.trim_end_matches("_bucket");
        assert!(
            documented_metrics().any(|m| m == base) || guide.contains(&format!("| `{base}` |")),
            "the alert rules use {word}, which Portico does not export"
        );
    }
}

/// The README's first command runs `conf/portico.yaml` as shipped. The same file, with only
/// its ports and its pid/upgrade-socket paths moved (so tests can run side by side), must
/// start, make its development certificate, answer the hello route over HTTPS (and HTTP/2),
/// redirect plain HTTP to HTTPS, log the request, and report ready.
#[tokio::test]
async fn the_shipped_default_config_serves_hello_over_https() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/portico.yaml"))
            .expect("conf/portico.yaml");
    let (https, http, admin) = (free_port(), free_port(), free_port());
    let dir = TestDir::new();
    let yaml = shipped
        .replace("0.0.0.0:8443", &format!("127.0.0.1:{https}"))
        .replace("redirect_https: 8443", &format!("redirect_https: {https}"))
        .replace("0.0.0.0:8080", &format!("127.0.0.1:{http}"))
        .replace("127.0.0.1:9901", &format!("127.0.0.1:{admin}"))
        .replace(
            "/tmp/portico.pid",
            &dir.path().join("portico.pid").display().to_string(),
        )
        .replace(
            "/tmp/portico_upgrade.sock",
            &dir.path().join("upgrade.sock").display().to_string(),
        );
    let settings = yaml.lines().filter(|l| !l.trim_start().starts_with('#'));
    for line in settings {
        for old in [
            ":8443",
            ":8080",
            ":9901",
            "https: 8443",
            "/tmp/portico.pid",
            "/tmp/portico_upgrade.sock",
        ] {
            assert!(
                !line.contains(old),
                "the shipped config changed shape: {line}"
            );
        }
    }
    let gw = Gateway::start_in(dir, &yaml, &[], &[]).await;
    assert!(
        gw.dir().join("certs/dev.crt").exists(),
        "the dev certificate was made"
    );

    let hello = https_get(
        gw.listener("https"),
        "localhost",
        &TlsClientOpts::insecure(),
        "/anything",
    )
    .await
    .unwrap();
    assert_eq!(hello.status, 200);
    assert!(
        hello.text().starts_with("Hello from Portico."),
        "{}",
        hello.text()
    );
    assert!(hello.header("x-request-id").is_some());
    let h2 = h2_request(
        gw.listener("https"),
        "localhost",
        &TlsClientOpts::insecure(),
        "localhost",
        "/",
    )
    .await
    .unwrap();
    assert_eq!((h2.status, h2.version.as_str()), (200, "HTTP/2.0"));

    let redirect = http_get(gw.listener("http"), "/path?q=1").await.unwrap();
    assert_eq!(redirect.status, 308);
    assert_eq!(
        redirect.header("location"),
        Some(format!("https://127.0.0.1:{https}/path?q=1").as_str())
    );
    let ready = http_get(gw.admin_addr(), "/readyz").await.unwrap();
    assert_eq!(ready.status, 200);
    // The global access_log plugin writes one JSON line per request to stdout.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !gw.stdout_text().contains("\"/anything\"") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gw.stdout_text().contains("\"/anything\""),
        "{}",
        gw.stdout_text()
    );
}
