//! `portico -c FILE --explain 'METHOD URL'` (README, command table): for many requests —
//! overlapping routes, priorities, host rules, header and method conditions, listener-bound
//! routes, targets that need normalization, and ones Portico refuses — the route it names is
//! the one the running gateway with the same config file really chooses (each route's
//! `headers` plugin echoes its name; the backend records the target it received).

use std::net::SocketAddr;
use std::process::Command;

use crate::common::*;
use serde_json::Value;

/// Routes that overlap in every way the ranking knows (docs/configuration.md, "Routes").
/// Each answers with `X-Route: <its name>`.
fn config(backend: &Backend) -> String {
    let routes: &[(&str, &str)] = &[
        ("catch", "hosts: [catch.test]"),
        ("api", "path: { prefix: /api }"),
        (
            "api-v2-beta",
            "path: { prefix: /api/v2 }, headers: { X-Env: beta }",
        ),
        ("api-v2-post", "path: { prefix: /api/v2 }, methods: [POST]"),
        ("wild", "hosts: [\"*.example.com\"], path: { prefix: /api }"),
        ("exact-host", "hosts: [api.example.com]"),
        ("status", "path: { exact: /api/status }"),
        ("files", "path: { regex: \"^/files/[0-9]+$\" }"),
        (
            "internal-admin",
            "listeners: [internal], path: { prefix: /admin }",
        ),
        ("low", "path: { prefix: /low }"),
        ("low-deeper", "path: { prefix: /low/deeper }"),
        ("dup-first", "path: { prefix: /dup }"),
        ("dup-second", "path: { prefix: /dup }"),
        ("static", "path: { prefix: /static }"),
    ];
    let mut yaml = format!(
        "server: {{ upgrade_sock: \"${{PORTICO_TEST_DIR}}/u.sock\", pid_file: \"${{PORTICO_TEST_DIR}}/p.pid\", grace_period: 0s, shutdown_timeout: 1s }}\n\
         admin: {{ listen: 127.0.0.1:{} }}\n\
         listeners:\n  - {{ name: web, listen: 127.0.0.1:{} }}\n  - {{ name: internal, listen: 127.0.0.1:{} }}\n\
         upstreams:\n  app: {{ backends: [ {{ addr: \"{}\" }} ] }}\nroutes:\n",
        free_port(),
        free_port(),
        free_port(),
        backend.addr()
    );
    for (name, rule) in routes {
        // `low` outranks the more specific `low-deeper` by priority.
        let priority = if *name == "low" { 10 } else { 0 };
        yaml.push_str(&format!(
            "  - name: {name}\n    priority: {priority}\n    match: {{ {rule} }}\n    upstream: app\n    plugins: [ {{ headers: {{ response: {{ set: {{ X-Route: {name} }} }} }} }} ]\n"
        ));
    }
    yaml
}

/// One request: method, target as sent, Host, other headers, listener.
struct Case {
    method: &'static str,
    target: &'static str,
    host: &'static str,
    headers: &'static [&'static str],
    listener: &'static str,
}

const fn case(method: &'static str, target: &'static str, host: &'static str) -> Case {
    Case {
        method,
        target,
        host,
        headers: &[],
        listener: "web",
    }
}

const fn with(mut c: Case, headers: &'static [&'static str]) -> Case {
    c.headers = headers;
    c
}

const fn on(mut c: Case, listener: &'static str) -> Case {
    c.listener = listener;
    c
}

fn cases() -> Vec<Case> {
    vec![
        case("GET", "/api/x", "a.test"),
        case("GET", "/api", "a.test"),
        case("GET", "/apix", "a.test"),
        case("GET", "/api/v2/x", "a.test"),
        with(case("GET", "/api/v2/x", "a.test"), &["X-Env: beta"]),
        with(case("GET", "/api/v2/x", "a.test"), &["X-Env: alpha"]),
        case("POST", "/api/v2/x", "a.test"),
        with(case("POST", "/api/v2/x", "a.test"), &["X-Env: beta"]),
        case("GET", "/api/x", "b.example.com"),
        case("GET", "/api/x", "B.Example.COM.:8080"),
        case("GET", "/api/x", "example.com"),
        case("GET", "/api/x", "api.example.com"),
        case("GET", "/other", "api.example.com"),
        case("GET", "/api/status", "a.test"),
        case("GET", "/api/status/", "a.test"),
        case("GET", "/files/42", "a.test"),
        case("GET", "/files/42x", "a.test"),
        case("GET", "/anything", "catch.test"),
        case("GET", "/anything", "a.test"),
        case("GET", "/admin/x", "a.test"),
        on(case("GET", "/admin/x", "a.test"), "internal"),
        on(case("GET", "/api/x", "a.test"), "internal"),
        case("GET", "/low/deeper/x", "a.test"),
        case("GET", "/dup/1", "a.test"),
        // Targets the server normalizes before routing (docs/security.md).
        case("GET", "/static/../api/x", "a.test"),
        case("GET", "//api///x", "a.test"),
        case("GET", "/%61pi/x", "a.test"),
        case("GET", "/api/./status", "a.test"),
        case("GET", "/static/%2e%2e/files/7", "a.test"),
        case("GET", "/api;v=1/x", "a.test"),
        case("GET", "/files/7?q=/api", "a.test"),
        case("GET", "http://api.example.com/static/x", "api.example.com"),
        // Refused before routing: Portico answers 400 itself.
        case("GET", "/api%2Fx", "a.test"),
        case("GET", "/../etc", "a.test"),
    ]
}

/// What the running gateway did with the request: its status and the route that answered.
async fn live(addr: SocketAddr, c: &Case) -> (u16, Option<String>) {
    let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", c.method, c.target, c.host);
    for h in c.headers {
        head.push_str(&format!("{h}\r\n"));
    }
    head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    let answer =
        String::from_utf8_lossy(&raw_exchange(addr, head.as_bytes(), None).await).into_owned();
    let status: u16 = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status for {} {}: {answer:?}", c.method, c.target));
    let route = answer
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("x-route"))
        })
        .map(|(_, v)| v.trim().to_string());
    (status, route)
}

/// `portico --explain` on the gateway's own config file: exit code, stdout, stderr.
fn explain(gw: &Gateway, c: &Case, extra: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(PORTICO_BIN);
    cmd.arg("-c")
        .arg(gw.config_path())
        .arg("--explain")
        .arg(format!("{} {}", c.method, c.target))
        .arg("-H")
        .arg(format!("Host: {}", c.host))
        .args(["--listener", c.listener])
        .args(extra)
        .env("PORTICO_TEST_DIR", gw.dir());
    for h in c.headers {
        cmd.arg("-H").arg(h);
    }
    let out = cmd.output().expect("run portico --explain");
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn explain_names_the_route_the_running_gateway_chooses() {
    let backend = Backend::http("app");
    let gw = Gateway::start(&config(&backend)).await;
    let mut routed = 0;
    for c in cases() {
        let what = format!(
            "{} {} Host {} {:?} on {}",
            c.method, c.target, c.host, c.headers, c.listener
        );
        let seen_before = backend.seen_paths().len();
        let (status, live_route) = live(gw.listener(c.listener), &c).await;
        // Nothing is started: the gateway holds every address of this config, and
        // --explain still answers.
        let (code, stdout, stderr) = explain(&gw, &c, &["--json"]);
        let json: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{what}: --json printed no JSON ({e}): {stdout}{stderr}"));
        let explained = json["route"].as_str().map(str::to_string);
        assert_eq!(
            explained, live_route,
            "{what}: --explain vs the live gateway (status {status})\n{stdout}"
        );
        match &live_route {
            Some(name) => {
                routed += 1;
                assert_eq!(code, 0, "{what}");
                assert_eq!(status, 200, "{what}");
                assert!(
                    json["plugins"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p == "headers"),
                    "{what}"
                );
                assert_eq!(json["upstream"], "app", "{what}");
                assert_eq!(
                    json["backends"][0]["addr"],
                    backend.addr().to_string().as_str()
                );
                // The normalized target is what the backend received.
                let seen = backend.seen_paths();
                assert_eq!(seen.len(), seen_before + 1, "{what}");
                assert_eq!(
                    json["normalized"]["target"].as_str().unwrap(),
                    seen.last().unwrap(),
                    "{what}: the target --explain reads is the one the backend got"
                );
                // The chosen route is among the candidates, marked chosen; the others say why
                // they lost.
                let candidates = json["candidates"].as_array().unwrap();
                for cand in candidates {
                    let verdict = cand["verdict"].as_str().unwrap();
                    if cand["route"] == name.as_str() {
                        assert_eq!(verdict, "chosen", "{what}");
                    } else {
                        assert!(
                            verdict.starts_with("lost to ") || verdict.starts_with("out: "),
                            "{what}: {verdict}"
                        );
                    }
                }
            }
            None => {
                assert_eq!(code, 3, "{what}: exit code\n{stdout}{stderr}");
                assert!(status == 404 || status == 400, "{what}: {status}");
                let answer = json["answer"].as_str().unwrap();
                assert!(
                    answer.starts_with(&status.to_string()),
                    "{what}: {answer} vs {status}"
                );
                assert_eq!(json["upstream"], Value::Null);
                assert_eq!(backend.seen_paths().len(), seen_before, "{what}");
            }
        }
    }
    assert!(routed >= 25, "only {routed} cases routed");
}

#[tokio::test]
async fn the_text_form_says_why_the_route_won() {
    let backend = Backend::http("app");
    let gw = Gateway::start(&config(&backend)).await;

    let c = with(
        case("GET", "//api/v2/../v2/x?q=1", "a.test"),
        &["X-Env: beta"],
    );
    let (code, out, err) = explain(&gw, &c, &[]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "normalized: host \"a.test\", target \"/api/v2/x?q=1\", routes match the path \"/api/v2/x\"",
        "route:      api-v2-beta (routes[2])",
        "api (routes[1]): priority 0, host any, path prefix /api, 0 condition(s): lost to api-v2-beta: less specific path (prefix /api < prefix /api/v2)",
        "api-v2-post (routes[3]): priority 0, host any, path prefix /api/v2, 1 condition(s): out: its conditions (methods POST) do not all hold",
        "not on this listener: internal-admin",
        "plugins:    headers",
        "upstream:   app",
        format!("backend {}", backend.addr()).as_str(),
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    let (code, out, _) = explain(&gw, &case("GET", "/low/deeper", "a.test"), &[]);
    assert_eq!(code, 0);
    assert!(
        out.contains("lost to low: lower priority (0 < 10)"),
        "{out}"
    );
    let (_, out, _) = explain(&gw, &case("GET", "/dup", "a.test"), &[]);
    assert!(
        out.contains("lost to dup-first: equal rank, later in the file (routes[12])"),
        "{out}"
    );
    let (_, out, _) = explain(&gw, &case("GET", "/api", "x.example.com"), &[]);
    assert!(
        out.contains("lost to wild: less specific host (any < wildcard *.example.com)"),
        "{out}"
    );
    let (_, out, _) = explain(&gw, &case("GET", "/api/x", "api.example.com"), &[]);
    assert!(
        out.contains("lost to exact-host: less specific host (wildcard *.example.com < exact)"),
        "{out}"
    );

    let (code, out, _) = explain(&gw, &case("GET", "/nowhere", "a.test"), &[]);
    assert_eq!(code, 3);
    assert!(
        out.contains("route:      none") && out.contains("404"),
        "{out}"
    );
}

#[tokio::test]
async fn a_bad_config_or_request_is_an_error_and_nothing_starts() {
    let dir = TestDir::new();
    let bad = dir.write(
        "bad.yaml",
        "listeners: []\nroutes:\n  - { name: r, upstream: missing }\n",
    );
    let out = Command::new(PORTICO_BIN)
        .arg("-c")
        .arg(&bad)
        .args(["--explain", "GET http://a.test/", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("routes[0].upstream"));
    assert!(out.stdout.is_empty());

    // A config whose listener and admin addresses are free stays free: nothing listens.
    let port = free_port();
    let admin = free_port();
    let good = dir.write(
        "good.yaml",
        format!(
            "admin: {{ listen: 127.0.0.1:{admin} }}\nlisteners: [ {{ name: web, listen: 127.0.0.1:{port} }} ]\n\
             upstreams: {{ app: {{ backends: [ {{ addr: \"127.0.0.1:9\" }} ] }} }}\nroutes: [ {{ name: r, upstream: app }} ]\n"
        ),
    );
    let out = Command::new(PORTICO_BIN)
        .arg("-c")
        .arg(&good)
        .args(["--explain", "GET http://a.test/x", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["route"], "r");
    assert_eq!(json["plugins"], serde_json::json!([]));
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    assert!(std::net::TcpListener::bind(("127.0.0.1", admin)).is_ok());

    for args in [
        &["--explain", "GET"][..],
        &["--explain", "GET /x", "--listener", "nope"][..],
        &["--explain", "GET /x", "-H", "no colon"][..],
        &["--json"][..],
    ] {
        let out = Command::new(PORTICO_BIN)
            .arg("-c")
            .arg(&good)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}
