//! The plugins that shape traffic or answer it themselves, through the real binary:
//! `rate_limit` (local, and shared through Redis), `redirect`, `respond` and `cors`.
//!
//! Rate limits are checked by counting, not timing: a bucket refills at `per_second`, so a
//! test allows for the tokens that came back while it ran (its elapsed time × the rate).

use crate::common::*;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// rate_limit

/// Sends `GET path` with `headers` on one connection until a 429 or `max` requests; returns
/// the answers.
async fn until_refused(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    max: usize,
) -> Vec<Response> {
    let mut conn = HttpConn::plain(gw.listener("web")).await.unwrap();
    let mut answers = Vec::new();
    for _ in 0..max {
        let r = conn
            .request("GET", path, headers, Body::empty())
            .await
            .unwrap();
        let refused = r.status == 429;
        answers.push(r);
        if refused {
            break;
        }
    }
    answers
}

/// Tokens a bucket at `per_second` may have regained during `elapsed`, rounded up.
fn refilled(per_second: u32, elapsed: Duration) -> usize {
    (elapsed.as_secs_f64() * f64::from(per_second)).ceil() as usize
}

#[tokio::test]
async fn rate_limit_allows_the_burst_then_answers_429_with_retry_after() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route("name: api, upstream: app, plugins: [ { rate_limit: { per_second: 1, burst: 4 } } ]")
        .start()
        .await;

    let started = Instant::now();
    let answers = until_refused(&gw, "/", &[], 30).await;
    let elapsed = started.elapsed();
    let (refusal, allowed) = answers.split_last().unwrap();
    assert_eq!(
        refusal.status,
        429,
        "never refused in {} requests",
        answers.len()
    );
    // A bucket of per_second + burst = 5, plus what came back while the test ran.
    assert!(
        allowed.len() >= 5 && allowed.len() <= 5 + refilled(1, elapsed),
        "{} allowed in {elapsed:?}",
        allowed.len()
    );
    for r in allowed {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-limit"), Some("5"));
    }
    // A fresh bucket: the first request leaves 4.
    assert_eq!(allowed[0].header("ratelimit-remaining"), Some("4"));
    assert_eq!(
        allowed.last().unwrap().header("ratelimit-remaining"),
        Some("0")
    );

    assert_eq!(
        refusal.header("retry-after"),
        Some("1"),
        "one token at 1/s comes within a second"
    );
    assert_eq!(refusal.header("ratelimit-limit"), Some("5"));
    assert_eq!(refusal.header("ratelimit-remaining"), Some("0"));
    assert_eq!(refusal.text(), "Too Many Requests\n");
    assert_eq!(
        b.hits() as usize,
        allowed.len(),
        "a refused request never reaches the backend"
    );

    // Retry-After is honest: after it, a request goes through again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(gw.get("/", &[]).await.status, 200);
}

#[tokio::test]
async fn rate_limit_by_header_gives_each_value_its_own_bucket() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route("name: api, upstream: app, plugins: [ { rate_limit: { per_second: 1, burst: 1, key: \"header:X-Client\" } } ]")
        .start()
        .await;

    let started = Instant::now();
    let a = until_refused(&gw, "/", &[("x-client", "a")], 30).await;
    let elapsed = started.elapsed();
    assert_eq!(a.last().unwrap().status, 429);
    let a_allowed = a.len() - 1;
    assert!(
        a_allowed >= 2 && a_allowed <= 2 + refilled(1, elapsed),
        "{a_allowed} allowed in {elapsed:?}"
    );

    // Client b has a bucket of its own, still full; so do requests without the header
    // (keyed on their address instead, apart from any header value).
    let r = gw.get("/", &[("x-client", "b")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining"), Some("1"));
    let r = gw.get("/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining"), Some("1"));
    // ...while a is still refused.
    assert_eq!(gw.get("/", &[("x-client", "a")]).await.status, 429);
}

#[tokio::test]
async fn rate_limit_by_route_shares_one_bucket_per_route() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .server("trusted_proxies: [127.0.0.1/32]")
        .plugin("rate_limit: { per_second: 1, burst: 1, key: route }")
        .route("name: one, match: { path: { prefix: /one } }, upstream: app")
        .route("name: two, match: { path: { prefix: /two } }, upstream: app")
        .start()
        .await;
    // Different client addresses, one route: one bucket.
    let started = Instant::now();
    let mut allowed = 0;
    for i in 0..30 {
        let ip = format!("203.0.113.{i}");
        if gw.get("/one", &[("x-forwarded-for", &ip)]).await.status == 429 {
            break;
        }
        allowed += 1;
    }
    assert!(
        allowed >= 2 && allowed <= 2 + refilled(1, started.elapsed()),
        "{allowed}"
    );
    // The other route's bucket is untouched.
    let r = gw.get("/two", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-remaining"), Some("1"));
}

/// Sends `n` requests to `path` with `headers` on one connection; returns the last answer's
/// `RateLimit-Remaining`.
async fn remaining_after(gw: &Gateway, n: usize, path: &str, headers: &[(&str, &str)]) -> u64 {
    let mut conn = HttpConn::plain(gw.listener("web")).await.unwrap();
    let mut last = None;
    for _ in 0..n {
        let r = conn
            .request("GET", path, headers, Body::empty())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{path} {headers:?}");
        last = r.header("ratelimit-remaining").map(|v| v.parse().unwrap());
    }
    last.expect("RateLimit-Remaining")
}

// The limits below hold 100 tokens refilled at 1 a second: a fresh bucket answers 99, one
// that took 20 answers at most 80 plus a token for each second the test has run, so "fewer
// than 95" tells a remembered bucket from a new one for far longer than the test takes.

/// Route `name` (for the paths under `/name`) with such a limit, `more` added to its settings.
fn limited(name: &str, more: &str) -> String {
    format!(
        "name: {name}, match: {{ path: {{ prefix: /{name} }} }}, upstream: app, \
         plugins: [ {{ rate_limit: {{ per_second: 1, burst: 99{more} }} }} ]"
    )
}

#[tokio::test]
async fn rate_limit_counts_ipv6_clients_by_their_64_and_ipv4_clients_by_address() {
    let b = Backend::http("app");
    // The clients' addresses come through X-Forwarded-For from a trusted proxy: loopback
    // has no two addresses in one /64 to connect from.
    let gw = Config::with_app(&b)
        .server("trusted_proxies: [127.0.0.1/32]")
        .route(&limited("by64", ""))
        .route(&limited("by128", ", ipv6_prefix: 128"))
        .start()
        .await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];

    assert!(remaining_after(&gw, 20, "/by64", &from("2001:db8::1")).await <= 80);
    // Another address of the same /64: the same bucket.
    let shared = remaining_after(&gw, 1, "/by64", &from("2001:db8::ffff:2")).await;
    assert!(
        shared < 95,
        "2001:db8::ffff:2 got a bucket of its own: {shared} left"
    );
    // The next /64: a bucket of its own.
    assert_eq!(
        remaining_after(&gw, 1, "/by64", &from("2001:db8:0:1::1")).await,
        99
    );
    // IPv4 clients are counted one address each.
    assert!(remaining_after(&gw, 20, "/by64", &from("192.0.2.1")).await <= 80);
    assert_eq!(
        remaining_after(&gw, 1, "/by64", &from("192.0.2.2")).await,
        99
    );

    // ipv6_prefix: 128 counts each address.
    assert!(remaining_after(&gw, 20, "/by128", &from("2001:db8::1")).await <= 80);
    assert_eq!(
        remaining_after(&gw, 1, "/by128", &from("2001:db8::2")).await,
        99
    );

    // The backend is told the client's whole address, not its network.
    let r = gw.get("/by128", &from("2001:db8::ffff:2")).await;
    assert_eq!(r.json()["headers"]["x-real-ip"], "2001:db8::ffff:2");
}

#[tokio::test]
async fn rate_limit_keeps_at_most_max_keys_buckets_forgetting_the_least_recently_used() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route(&limited("small", ", key: \"header:X-Client\", max_keys: 2"))
        .route(&limited("default", ", key: \"header:X-Client\""))
        .start()
        .await;
    let client = |name: &'static str| [("x-client", name)];

    for path in ["/small", "/default"] {
        assert!(remaining_after(&gw, 20, path, &client("a")).await <= 80);
        assert!(remaining_after(&gw, 20, path, &client("b")).await <= 80);
        // a is remembered, and is now the most recently used.
        let a = remaining_after(&gw, 1, path, &client("a")).await;
        assert!(a < 95, "{path}: a was forgotten: {a} left");
        assert_eq!(remaining_after(&gw, 1, path, &client("c")).await, 99);
    }
    // With room for two buckets, c took b's (the least recently used): b starts again full,
    // taking a's in turn.
    assert_eq!(remaining_after(&gw, 1, "/small", &client("b")).await, 99);
    assert_eq!(remaining_after(&gw, 1, "/small", &client("a")).await, 99);
    // With the default room, nothing was forgotten.
    let b_left = remaining_after(&gw, 1, "/default", &client("b")).await;
    assert!(b_left < 95, "b was forgotten: {b_left} left");
    let a_left = remaining_after(&gw, 1, "/default", &client("a")).await;
    assert!(a_left < 95, "a was forgotten: {a_left} left");
}

#[tokio::test]
async fn rate_limit_in_redis_holds_one_limit_across_two_gateways() {
    if !tools_present(&["redis-server"]) {
        return;
    }
    let redis = Redis::start().await;
    let b = Backend::http("app");
    let route = format!(
        "name: api, upstream: app, plugins: [ {{ rate_limit: {{ per_second: 1, burst: 4, \
         redis: {{ url: \"{}\", timeout: 1s, on_error: deny }} }} }} ]",
        redis.url()
    );
    // The same route and limit on two instances (each its own ports).
    let gw1 = Config::new().app(&b).route(&route).start().await;
    let gw2 = Config::new().app(&b).route(&route).start().await;

    let started = Instant::now();
    let mut answers = Vec::new();
    for i in 0..12 {
        let gw = if i % 2 == 0 { &gw1 } else { &gw2 };
        answers.push((i % 2 + 1, gw.get("/", &[]).await));
    }
    let elapsed = started.elapsed();
    let allowed: Vec<_> = answers.iter().filter(|(_, r)| r.status == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|(_, r)| r.status == 429).collect();
    assert_eq!(allowed.len() + refused.len(), 12);
    // Each alone would allow 5 of its 6 (10 in all); together they hold the one limit of 5.
    assert!(
        allowed.len() >= 5 && allowed.len() <= 5 + refilled(1, elapsed),
        "{} allowed in {elapsed:?}",
        allowed.len()
    );
    assert!(
        refused.iter().any(|(g, _)| *g == 1) && refused.iter().any(|(g, _)| *g == 2),
        "both gateways refuse"
    );
    // The second request, on the other gateway, already sees the first one's token gone.
    assert_eq!(answers[0].1.header("ratelimit-remaining"), Some("4"));
    let second: u64 = answers[1]
        .1
        .header("ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        second <= 3,
        "gateway 2 did not see gateway 1's request: {second} left"
    );
    let r = &refused[0].1;
    assert_eq!(r.header("ratelimit-limit"), Some("5"));
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(b.hits() as usize, allowed.len());
}

#[tokio::test]
async fn rate_limit_redis_outage_follows_on_error_within_the_timeout() {
    if !tools_present(&["redis-server"]) {
        return;
    }
    let redis = Redis::start().await;
    let b = Backend::http("app");
    let route = |name: &str, on_error: &str| {
        format!(
            "name: {name}, match: {{ path: {{ prefix: /{on_error} }} }}, upstream: app, plugins: [ \
             {{ rate_limit: {{ per_second: 100, redis: {{ url: \"{}\", timeout: 300ms, on_error: {on_error} }} }} }} ]",
            redis.url()
        )
    };
    let gw = Config::with_app(&b)
        .route(&route("lenient", "allow"))
        .route(&route("strict", "deny"))
        .start()
        .await;

    // While Redis answers, both routes are limited through it.
    for path in ["/allow", "/deny"] {
        let r = gw.get(path, &[]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("ratelimit-limit"), Some("100"), "{path}");
    }

    // Redis hangs (stopped, its socket still open): each request waits the timeout, then
    // on_error decides.
    redis.signal("STOP");
    let timeout = Duration::from_millis(300);
    let slack = Duration::from_secs(2); // a debug build on a busy 2-core machine
    let started = Instant::now();
    let r = gw.get("/allow", &[]).await;
    let waited = started.elapsed();
    assert_eq!(r.status, 200, "on_error: allow lets the request through");
    assert!(
        r.header("ratelimit-limit").is_none(),
        "an unchecked request carries no limit headers"
    );
    assert!(waited < timeout + slack, "answered after {waited:?}");
    let started = Instant::now();
    let r = gw.get("/deny", &[]).await;
    let waited = started.elapsed();
    assert_eq!(r.status, 429, "on_error: deny refuses");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        waited >= timeout - Duration::from_millis(50),
        "refused after {waited:?}, before the timeout"
    );
    assert!(waited < timeout + slack, "answered after {waited:?}");

    // Redis gone altogether: the same answers, without waiting for the timeout.
    redis.signal("KILL");
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(gw.get("/allow", &[]).await.status, 200);
        assert_eq!(gw.get("/deny", &[]).await.status, 429);
        assert!(
            started.elapsed() < 2 * timeout + slack,
            "{:?}",
            started.elapsed()
        );
    }
    assert!(
        gw.stderr_text().contains("rate_limit: redis at"),
        "the outage is logged"
    );
}

// ---------------------------------------------------------------------------------------
// redirect

#[tokio::test]
async fn redirect_answers_with_location_and_never_reaches_the_backend() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route("name: moved, match: { path: { prefix: /old } }, upstream: app, plugins: [ { redirect: { url: \"https://new.example.test/\" } } ]")
        .route("name: temporary, match: { path: { prefix: /promo } }, upstream: app, plugins: [ \
                { redirect: { url: \"https://shop.example.test/landing?from=promo\", status: 302, keep_path: false } } ]")
        .route("name: rest, upstream: app")
        .start()
        .await;

    let r = gw.get("/old/a/b?x=1&y=2", &[]).await;
    assert_eq!(r.status, 301, "the default status");
    assert_eq!(
        r.header("location"),
        Some("https://new.example.test/old/a/b?x=1&y=2")
    );
    assert!(r.body.is_empty());
    assert!(r.header("x-request-id").is_some());

    let r = gw
        .send("POST", "/promo/summer?utm=1", &[], Body::empty())
        .await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("https://shop.example.test/landing?from=promo")
    );

    assert_eq!(b.hits(), 0);
    assert_eq!(
        gw.get("/elsewhere", &[]).await.status,
        200,
        "other routes are proxied"
    );
}

/// The status and `Location` of the answer to a raw HTTP/1.1 request line for `target`.
async fn raw_redirect(gw: &Gateway, target: &str) -> (u16, Option<String>) {
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: old.example.test\r\nConnection: close\r\n\r\n");
    let raw = raw_exchange(gw.listener("web"), request.as_bytes(), None).await;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{target}: no status in {text:?}"));
    let location = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_string())
    });
    (status, location)
}

#[tokio::test]
async fn redirect_never_answers_with_a_protocol_relative_location() {
    // With slashes merged (the default) the gateway's path reading already collapses `//`;
    // with `merge_slashes: false` the plugin's own rule is what keeps `//` out of Location.
    for path_settings in [None, Some("path: { merge_slashes: false }")] {
        redirect_keeps_leading_slashes_single(path_settings).await;
    }
}

async fn redirect_keeps_leading_slashes_single(path_settings: Option<&str>) {
    let b = Backend::http("app");
    let config = match path_settings {
        Some(entry) => Config::new().server(entry),
        None => Config::new(),
    };
    let gw = config
        .app(&b)
        .route("name: base, match: { path: { prefix: /base } }, upstream: app, plugins: [ { redirect: { url: /new/ } } ]")
        .route("name: root, upstream: app, plugins: [ { redirect: { url: / } } ]")
        .start()
        .await;

    // A request path that starts with two slashes, appended to a url of just `/`, would
    // make `//evil.example/x`: a browser goes to evil.example.
    for target in ["//evil.example/x", "///evil.example/x"] {
        let (status, location) = raw_redirect(&gw, target).await;
        assert_eq!(status, 301, "{target}");
        assert_eq!(location.as_deref(), Some("/evil.example/x"), "{target}");
    }
    let (status, location) = raw_redirect(&gw, "/a/b?c=1").await;
    assert_eq!((status, location.as_deref()), (301, Some("/a/b?c=1")));
    // `/\` reads as `//` to a browser: refused (400) or answered without it.
    let (status, location) = raw_redirect(&gw, "/\\evil.example/x").await;
    match status {
        301 => assert_eq!(location.as_deref(), Some("/evil.example/x")),
        400 => assert_eq!(location, None),
        other => panic!("/\\evil.example/x: {other}"),
    }
    let (_, location) = raw_redirect(&gw, "/base/x").await;
    assert_eq!(location.as_deref(), Some("/new/base/x"));
    assert_eq!(b.hits(), 0);

    // A configured url that itself starts with `//` is refused when the config is read.
    let bad = Config::new()
        .route("name: r, plugins: [ { redirect: { url: //evil.example/, keep_path: false } } ]")
        .build();
    let (code, stderr) = validate_config(&bad).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("routes[0].plugins[0].redirect: ")
                && l.contains("url: \"//evil.example/\" starts with //")),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// respond

#[tokio::test]
async fn respond_answers_with_the_configured_status_headers_and_body() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route("name: maintenance, match: { path: { prefix: /shop } }, upstream: app, plugins: [ { respond: \
                { status: 503, body: \"back soon\\n\", headers: { Content-Type: text/plain, Retry-After: \"120\" } } } ]")
        .route("name: health, match: { path: { exact: /ping } }, plugins: [ { respond: { body: pong } } ]")
        .start()
        .await;

    let r = gw.get("/shop/cart", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "back soon\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("retry-after"), Some("120"));
    assert_eq!(r.header("content-length"), Some("10"));
    assert!(r.header("x-request-id").is_some());

    // HEAD: the same head, no body.
    let r = gw.send("HEAD", "/shop", &[], Body::empty()).await;
    assert_eq!(r.status, 503);
    assert!(r.body.is_empty());

    // A route with no upstream at all, answered with the defaults (200).
    let r = gw.get("/ping", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "pong"));
    assert_eq!(b.hits(), 0, "the upstream is never asked");
}

// ---------------------------------------------------------------------------------------
// cors

#[tokio::test]
async fn cors_answers_preflights_and_marks_allowed_responses() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .yaml(
            "
routes:
  - name: api
    match: { path: { prefix: /api } }
    upstream: app
    plugins:
      - cors:
          allow_origins: [\"https://app.example.test\"]
          allow_methods: [GET, POST]
          allow_headers: [Authorization, Content-Type]
          expose_headers: [X-Backend]
          allow_credentials: true
          max_age: 10m
  - name: public
    match: { path: { prefix: /public } }
    upstream: app
    plugins:
      - cors: {}
",
        )
        .start()
        .await;
    let app = ("origin", "https://app.example.test");
    let evil = ("origin", "https://evil.example.test");

    // Preflight from an allowed origin: answered here, 204.
    let preflight = [
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type"),
    ];
    let r = gw
        .send(
            "OPTIONS",
            "/api/items",
            &[app, preflight[0], preflight[1]],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.test")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("Authorization, Content-Type")
    );
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("vary"), Some("Origin"));
    assert!(r.body.is_empty());
    // On the wire: a 204 carries neither a body nor a Content-Length (RFC 9110 8.6).
    let raw = raw_exchange(
        gw.listener("web"),
        b"OPTIONS /api/items HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example.test\r\n\
          Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n",
        None,
    )
    .await;
    let raw = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(raw.starts_with("http/1.1 204"), "{raw}");
    assert!(
        !raw.contains("content-length") && !raw.contains("transfer-encoding"),
        "{raw}"
    );
    assert!(raw.ends_with("\r\n\r\n"), "{raw}");

    // Preflight from another origin: 403, no CORS headers.
    let r = gw
        .send(
            "OPTIONS",
            "/api/items",
            &[evil, preflight[0]],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "CORS origin not allowed\n");
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(b.hits(), 0, "preflights never reach the backend");

    // A simple request from the allowed origin: proxied, with the CORS headers added.
    let r = gw.get("/api/items", &[app]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/api/items");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.test")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-expose-headers"), Some("X-Backend"));
    assert!(r.header_all("vary").iter().any(|v| v.contains("Origin")));
    // From another origin: proxied too, but without them, so the browser withholds it.
    let r = gw.get("/api/items", &[evil]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("access-control-allow-origin").is_none());
    assert!(r.header("access-control-allow-credentials").is_none());
    // An OPTIONS that is not a preflight (no Access-Control-Request-Method) is proxied.
    assert_eq!(
        gw.send("OPTIONS", "/api/items", &[app], Body::empty())
            .await
            .json()["method"],
        "OPTIONS"
    );
    assert_eq!(b.hits(), 3);

    // The defaults: any origin, answered with `*`.
    let r = gw.get("/public/x", &[evil]).await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r.header("access-control-allow-credentials").is_none());
    let r = gw
        .send(
            "OPTIONS",
            "/public/x",
            &[evil, ("access-control-request-method", "PUT")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-methods"),
        Some("GET, HEAD, POST, PUT, PATCH, DELETE")
    );
}
