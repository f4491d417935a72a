//! Route choice as a client sees it: every rule of the route order (docs/configuration.md,
//! "How a route is chosen"), through the real binary. Each route sends a different Host to
//! the one backend (`upstreams.*.host`), so the backend's echo says which route matched.

use crate::common::*;

/// Upstream `name` on `backend`, announcing `name` as the Host.
fn named(backend: &Backend, name: &str) -> String {
    format!("{}, host: {name}", backends(&[backend.addr()]))
}

/// A gateway with one route per `(name, more route entries)`, each to an upstream of its own
/// name on `backend`.
async fn gateway(backend: &Backend, routes: &[(&str, &str)]) -> Gateway {
    let mut config = Config::new();
    for (name, rule) in routes {
        config = config
            .upstream(name, &named(backend, name))
            .route(&format!("name: {name}, upstream: {name}{rule}"));
    }
    config.start().await
}

/// A request and the route that must answer it ("404": none), and why when it is not plain.
struct Case<'a> {
    method: &'a str,
    host: &'a str,
    path: &'a str,
    headers: &'a [(&'a str, &'a str)],
    route: &'a str,
    why: &'a str,
}

/// `GET` to `host` and `path`, routed to `route`.
const fn get<'a>(host: &'a str, path: &'a str, route: &'a str, why: &'a str) -> Case<'a> {
    Case {
        method: "GET",
        host,
        path,
        headers: &[],
        route,
        why,
    }
}

/// Sends every case to `gw`'s `web` listener and checks the route that answered.
async fn check(gw: &Gateway, cases: &[Case<'_>]) {
    for c in cases {
        let mut headers = vec![("host", c.host)];
        headers.extend_from_slice(c.headers);
        let r = gw.send(c.method, c.path, &headers, Body::empty()).await;
        let route = match r.status {
            404 => "404".to_string(),
            200 => r.json()["headers"]["host"].as_str().unwrap().to_string(),
            other => panic!("{other}: {}", r.text()),
        };
        assert_eq!(
            route, c.route,
            "{} {}{} {:?}: {}",
            c.method, c.host, c.path, c.headers, c.why
        );
    }
}

#[tokio::test]
async fn hosts_exact_then_longer_wildcard_then_shorter_then_none() {
    let b = Backend::http("b");
    let routes = [
        ("none", ""),
        ("wild", ", match: { hosts: [\"*.example.com\"] }"),
        ("wildlong", ", match: { hosts: [\"*.api.example.com\"] }"),
        (
            "exact",
            ", match: { hosts: [www.example.com, API.Example.org] }",
        ),
    ];
    let gw = gateway(&b, &routes).await;
    check(
        &gw,
        &[
            get("www.example.com", "/", "exact", ""),
            get(
                "WWW.EXAMPLE.COM:8080",
                "/",
                "exact",
                "case and port ignored",
            ),
            get("api.example.org", "/", "exact", ""),
            get("a.example.com", "/", "wild", ""),
            get("a.b.example.com", "/", "wild", "one label or more"),
            get("v1.api.example.com", "/", "wildlong", ""),
            get(
                "example.com",
                "/",
                "none",
                "*.example.com does not match example.com",
            ),
            get("other.net", "/", "none", ""),
        ],
    )
    .await;
}

#[tokio::test]
async fn paths_exact_then_longer_prefix_then_regex_then_none_and_segments() {
    let b = Backend::http("b");
    let routes = [
        ("none", ""),
        ("regex", ", match: { path: { regex: \"/api/v[0-9]+/.*\" } }"),
        ("api", ", match: { path: { prefix: /api } }"),
        ("apiv2", ", match: { path: { prefix: /api/v2 } }"),
        ("exact", ", match: { path: { exact: /api/v2/health } }"),
        ("slash", ", match: { path: { prefix: /docs/ } }"),
    ];
    let gw = gateway(&b, &routes).await;
    check(
        &gw,
        &[
            get("h", "/api/v2/health", "exact", ""),
            get("h", "/api/v2/health?x=1", "exact", "query ignored"),
            get("h", "/api/v2/other", "apiv2", ""),
            get("h", "/api/v2", "apiv2", ""),
            get("h", "/api/v3/x", "api", "a prefix beats a regex"),
            get("h", "/api", "api", ""),
            get("h", "/api/", "api", ""),
            get("h", "/apix", "none", "prefixes match whole segments"),
            get("h", "/api/v2x", "api", ""),
            get("h", "/docs", "none", "/docs/ requires the slash"),
            get("h", "/docs/a", "slash", ""),
        ],
    )
    .await;
}

#[tokio::test]
async fn regex_must_match_the_whole_path() {
    let b = Backend::http("b");
    let gw = gateway(
        &b,
        &[("regex", ", match: { path: { regex: \"/v[0-9]+\" } }")],
    )
    .await;
    check(
        &gw,
        &[
            get("h", "/v12", "regex", ""),
            get("h", "/v12/x", "404", ""),
            get("h", "/x/v12", "404", ""),
        ],
    )
    .await;
}

#[tokio::test]
async fn priority_beats_specificity_and_methods_and_headers_filter() {
    let b = Backend::http("b");
    let routes = [
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
    ];
    let gw = gateway(&b, &routes).await;
    let post = Case {
        method: "POST",
        ..get("a.test", "/x", "posts", "")
    };
    let canary = Case {
        headers: &[("x-canary", "1")],
        ..get("a.test", "/x", "canary", "")
    };
    let not_canary = Case {
        headers: &[("x-canary", "2")],
        ..get("a.test", "/x", "urgent", "")
    };
    check(
        &gw,
        &[get("a.test", "/x", "urgent", ""), post, canary, not_canary],
    )
    .await;
}

#[tokio::test]
async fn more_conditions_win_then_file_order() {
    let b = Backend::http("b");
    let routes = [
        ("first", ", match: { path: { prefix: /p } }"),
        ("second", ", match: { path: { prefix: /p } }"),
        (
            "withmethod",
            ", match: { path: { prefix: /p }, methods: [PUT] }",
        ),
    ];
    let gw = gateway(&b, &routes).await;
    let put = Case {
        method: "PUT",
        ..get("h", "/p", "withmethod", "more conditions win")
    };
    check(
        &gw,
        &[
            get("h", "/p", "first", "a tie goes to the earlier route"),
            put,
        ],
    )
    .await;
}

#[tokio::test]
async fn no_route_is_404_with_a_request_id() {
    let b = Backend::http("b");
    let gw = gateway(&b, &[("only", ", match: { hosts: [only.test] }")]).await;
    let r = gw.get("/", &[("host", "other.test")]).await;
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
    let gw = Config::admin_only()
        .listener("tls", &tls(&[&cert], ""))
        .upstream("ua", &named(&b, "ua"))
        .upstream("ub", &named(&b, "ub"))
        .route("name: a, upstream: ua, match: { hosts: [a.test] }")
        .route("name: b, upstream: ub, match: { hosts: [b.test] }")
        .start()
        .await;
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
