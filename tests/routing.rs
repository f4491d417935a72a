//! Route choice as a client sees it: every rule of SPEC's route order, through the real
//! binary. Each route sends a different Host to the one backend (`upstreams.*.host`), so the
//! backend's echo says which route matched.

mod common;

use common::*;

/// One upstream per route, all on `backend`, each announcing the route's name as its Host.
fn config(admin: u16, port: u16, backend: &Backend, routes: &[(&str, &str)]) -> String {
    let mut y = format!(
        "server: {{ grace_period: 0s, shutdown_timeout: 1s, upgrade_sock: \"${{PORTICO_TEST_DIR}}/u.sock\", pid_file: \"${{PORTICO_TEST_DIR}}/p.pid\" }}\n\
         admin: {{ listen: 127.0.0.1:{admin} }}\n\
         listeners:\n  - {{ name: web, listen: 127.0.0.1:{port} }}\n\
         upstreams:\n"
    );
    for (name, _) in routes {
        y += &format!(
            "  {name}: {{ backends: [ {{ addr: \"{}\" }} ], host: {name} }}\n",
            backend.addr()
        );
    }
    y += "routes:\n";
    for (name, rule) in routes {
        y += &format!("  - {{ name: {name}, upstream: {name}{rule} }}\n");
    }
    y
}

async fn route_of(
    gw: &Gateway,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut h = vec![("host", host)];
    h.extend_from_slice(headers);
    let r = http_request(gw.listener("web"), method, path, &h, Body::empty())
        .await
        .unwrap();
    if r.status == 404 {
        return "404".into();
    }
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["headers"]["host"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn hosts_exact_then_longer_wildcard_then_shorter_then_none() {
    let b = Backend::http("b");
    let gw = Gateway::start(&config(
        free_port(),
        free_port(),
        &b,
        &[
            ("none", ""),
            ("wild", ", match: { hosts: [\"*.example.com\"] }"),
            ("wildlong", ", match: { hosts: [\"*.api.example.com\"] }"),
            (
                "exact",
                ", match: { hosts: [www.example.com, API.Example.org] }",
            ),
        ],
    ))
    .await;
    assert_eq!(
        route_of(&gw, "GET", "www.example.com", "/", &[]).await,
        "exact"
    );
    assert_eq!(
        route_of(&gw, "GET", "WWW.EXAMPLE.COM:8080", "/", &[]).await,
        "exact",
        "case and port ignored"
    );
    assert_eq!(
        route_of(&gw, "GET", "api.example.org", "/", &[]).await,
        "exact"
    );
    assert_eq!(
        route_of(&gw, "GET", "a.example.com", "/", &[]).await,
        "wild"
    );
    assert_eq!(
        route_of(&gw, "GET", "a.b.example.com", "/", &[]).await,
        "wild",
        "one label or more"
    );
    assert_eq!(
        route_of(&gw, "GET", "v1.api.example.com", "/", &[]).await,
        "wildlong"
    );
    assert_eq!(
        route_of(&gw, "GET", "example.com", "/", &[]).await,
        "none",
        "*.example.com does not match example.com"
    );
    assert_eq!(route_of(&gw, "GET", "other.net", "/", &[]).await, "none");
}

#[tokio::test]
async fn paths_exact_then_longer_prefix_then_regex_then_none_and_segments() {
    let b = Backend::http("b");
    let gw = Gateway::start(&config(
        free_port(),
        free_port(),
        &b,
        &[
            ("none", ""),
            ("regex", ", match: { path: { regex: \"/api/v[0-9]+/.*\" } }"),
            ("api", ", match: { path: { prefix: /api } }"),
            ("apiv2", ", match: { path: { prefix: /api/v2 } }"),
            ("exact", ", match: { path: { exact: /api/v2/health } }"),
            ("slash", ", match: { path: { prefix: /docs/ } }"),
        ],
    ))
    .await;
    assert_eq!(
        route_of(&gw, "GET", "h", "/api/v2/health", &[]).await,
        "exact"
    );
    assert_eq!(
        route_of(&gw, "GET", "h", "/api/v2/health?x=1", &[]).await,
        "exact",
        "query ignored"
    );
    assert_eq!(
        route_of(&gw, "GET", "h", "/api/v2/other", &[]).await,
        "apiv2"
    );
    assert_eq!(route_of(&gw, "GET", "h", "/api/v2", &[]).await, "apiv2");
    assert_eq!(
        route_of(&gw, "GET", "h", "/api/v3/x", &[]).await,
        "api",
        "a prefix beats a regex"
    );
    assert_eq!(route_of(&gw, "GET", "h", "/api", &[]).await, "api");
    assert_eq!(route_of(&gw, "GET", "h", "/api/", &[]).await, "api");
    assert_eq!(
        route_of(&gw, "GET", "h", "/apix", &[]).await,
        "none",
        "prefixes match whole segments"
    );
    assert_eq!(route_of(&gw, "GET", "h", "/api/v2x", &[]).await, "api");
    assert_eq!(
        route_of(&gw, "GET", "h", "/docs", &[]).await,
        "none",
        "/docs/ requires the slash"
    );
    assert_eq!(route_of(&gw, "GET", "h", "/docs/a", &[]).await, "slash");
}

#[tokio::test]
async fn regex_must_match_the_whole_path() {
    let b = Backend::http("b");
    let gw = Gateway::start(&config(
        free_port(),
        free_port(),
        &b,
        &[("regex", ", match: { path: { regex: \"/v[0-9]+\" } }")],
    ))
    .await;
    assert_eq!(route_of(&gw, "GET", "h", "/v12", &[]).await, "regex");
    assert_eq!(route_of(&gw, "GET", "h", "/v12/x", &[]).await, "404");
    assert_eq!(route_of(&gw, "GET", "h", "/x/v12", &[]).await, "404");
}

#[tokio::test]
async fn priority_beats_specificity_and_methods_and_headers_filter() {
    let b = Backend::http("b");
    let gw = Gateway::start(&config(
        free_port(),
        free_port(),
        &b,
        &[
            (
                "specific",
                ", match: { hosts: [a.test], path: { exact: /x } }",
            ),
            (
                "urgent",
                ", priority: 10, match: { path: { prefix: / } }, plugins: []",
            ),
            ("posts", ", priority: 20, match: { methods: [POST] }"),
            (
                "canary",
                ", priority: 20, match: { headers: { x-canary: \"1\" } }",
            ),
        ],
    ))
    .await;
    assert_eq!(route_of(&gw, "GET", "a.test", "/x", &[]).await, "urgent");
    assert_eq!(route_of(&gw, "POST", "a.test", "/x", &[]).await, "posts");
    assert_eq!(
        route_of(&gw, "GET", "a.test", "/x", &[("x-canary", "1")]).await,
        "canary"
    );
    assert_eq!(
        route_of(&gw, "GET", "a.test", "/x", &[("x-canary", "2")]).await,
        "urgent"
    );
}

#[tokio::test]
async fn more_conditions_win_then_file_order() {
    let b = Backend::http("b");
    let gw = Gateway::start(&config(
        free_port(),
        free_port(),
        &b,
        &[
            ("first", ", match: { path: { prefix: /p } }"),
            ("second", ", match: { path: { prefix: /p } }"),
            (
                "withmethod",
                ", match: { path: { prefix: /p }, methods: [PUT] }",
            ),
        ],
    ))
    .await;
    assert_eq!(
        route_of(&gw, "GET", "h", "/p", &[]).await,
        "first",
        "a tie goes to the earlier route"
    );
    assert_eq!(
        route_of(&gw, "PUT", "h", "/p", &[]).await,
        "withmethod",
        "more conditions win"
    );
}

#[tokio::test]
async fn no_route_is_404_with_a_request_id() {
    let b = Backend::http("b");
    let gw = Gateway::start(&config(
        free_port(),
        free_port(),
        &b,
        &[("only", ", match: { hosts: [only.test] }")],
    ))
    .await;
    let r = http_request(
        gw.listener("web"),
        "GET",
        "/",
        &[("host", "other.test")],
        Body::empty(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
    let id = r
        .header("x-request-id")
        .expect("request id on Portico's own errors")
        .to_string();
    assert!(
        r.text().contains(&id),
        "body names the request id: {}",
        r.text()
    );
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn http2_requests_route_by_authority() {
    let ca = TestCa::new("routing CA");
    let cert = ca.issue(&["a.test", "b.test"]);
    let b = Backend::http("b");
    let (admin, port) = (free_port(), free_port());
    let yaml = format!(
        "server: {{ grace_period: 0s, shutdown_timeout: 1s, upgrade_sock: \"${{PORTICO_TEST_DIR}}/u.sock\", pid_file: \"${{PORTICO_TEST_DIR}}/p.pid\" }}\n\
         admin: {{ listen: 127.0.0.1:{admin} }}\n\
         listeners:\n  - name: tls\n    listen: 127.0.0.1:{port}\n    tls: {{ certificates: [ {{ cert: {cert}, key: {key} }} ] }}\n\
         upstreams:\n  ua: {{ backends: [ {{ addr: \"{addr}\" }} ], host: ua }}\n  ub: {{ backends: [ {{ addr: \"{addr}\" }} ], host: ub }}\n\
         routes:\n  - {{ name: a, upstream: ua, match: {{ hosts: [a.test] }} }}\n  - {{ name: b, upstream: ub, match: {{ hosts: [b.test] }} }}\n",
        addr = b.addr(),
        cert = cert.cert.display(),
        key = cert.key.display()
    );
    let gw = Gateway::start(&yaml).await;
    let trust = TlsClientOpts::trusting(ca.cert_path());
    // SNI says a.test, the authority says b.test: the authority decides.
    let r = h2_request(gw.listener("tls"), "a.test", &trust, "b.test", "/x")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.version, "HTTP/2.0");
    assert_eq!(r.json()["headers"]["host"], "ub");
    let r = h2_request(gw.listener("tls"), "a.test", &trust, "a.test", "/x")
        .await
        .unwrap();
    assert_eq!(r.json()["headers"]["host"], "ua");
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "a.test");
}
