//! How chains of plugins run, through the real binary: the global chain before the route's,
//! a plugin's answer stopping everything after it, every such answer counted in
//! `portico_plugin_rejections_total`, and a bad plugin config refused with the route and the
//! plugin named.

use crate::common::*;

#[tokio::test]
async fn the_global_chain_runs_before_the_routes_in_config_order() {
    let b = Backend::http("app");
    let headers = |name: &str, n: &str| {
        format!(
            "headers: {{ request: {{ set: {{ X-Order: {name} }}, add: {{ X-Trail: {name}{n} }} }}, \
             response: {{ set: {{ X-Resp: {name} }}, add: {{ X-Resp-Trail: {name} }} }} }}"
        )
    };
    let gw = Config::new()
        .upstream("app", &backends(&[b.addr()]))
        .plugin(&headers("global", "-1"))
        .plugin("headers: { request: { add: { X-Trail: global-2 } } }")
        .route(&format!(
            "name: api, upstream: app, plugins: [ {{ {} }} ]",
            headers("route", "")
        ))
        .start()
        .await;
    let r = gw.get("/", &[]).await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    // The route's plugin ran last, so its `set` is what the upstream got.
    assert_eq!(h["x-order"], "route");
    assert_eq!(
        h["x-trail"], "global-1, global-2, route",
        "config order, global first"
    );
    // The same order on the response.
    assert_eq!(r.header("x-resp"), Some("route"));
    assert_eq!(r.header_all("x-resp-trail"), ["global", "route"]);
}

#[tokio::test]
async fn a_global_plugin_answers_before_the_route_chain_runs() {
    let b = Backend::http("app");
    let gw = Config::new()
        .plugin("key_auth: { keys: { ci: gl0bal } }")
        .route("name: fixed, plugins: [ { respond: { body: \"from the route\\n\" } } ]")
        .start()
        .await;
    let r = gw.get("/", &[]).await;
    assert_eq!(
        r.status,
        401,
        "the global key_auth answered first: {}",
        r.text()
    );
    let r = gw.get("/", &[("x-api-key", "gl0bal")]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "from the route\n"));
    // The global chain runs on requests no route matches too, before the 404.
    let gw = Config::new()
        .upstream("app", &backends(&[b.addr()]))
        .plugin("ip_filter: { deny: [127.0.0.1] }")
        .route("name: api, match: { path: { prefix: /api } }, upstream: app")
        .start()
        .await;
    assert_eq!(gw.get("/unrouted", &[]).await.status, 403);
    assert_eq!(gw.get("/api", &[]).await.status, 403);
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn a_refusing_plugin_stops_the_chain_and_the_upstream_sees_nothing() {
    let b = Backend::http("app");
    let gw = Config::new()
        .upstream("app", &backends(&[b.addr()]))
        .yaml(
            "
routes:
  - name: api
    upstream: app
    plugins:
      - key_auth: { keys: { ci: s3cret } }
      - rate_limit: { per_second: 1, burst: 0 }
      - headers: { request: { set: { X-After-Auth: yes } } }
",
        )
        .start()
        .await;
    // Refused by key_auth five times: rate_limit, next in the chain, never counts them
    // (its bucket holds one token), and the backend sees nothing.
    for _ in 0..5 {
        let r = gw.get("/", &[]).await;
        assert_eq!(r.status, 401);
        assert!(
            r.header("ratelimit-limit").is_none(),
            "rate_limit ran after a refusal"
        );
    }
    assert_eq!(b.hits(), 0);

    let r = gw.get("/", &[("x-api-key", "s3cret")]).await;
    assert_eq!(r.status, 200, "the bucket is still full");
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    assert_eq!(r.json()["headers"]["x-after-auth"], "yes");
    // Now rate_limit refuses, and the plugin after it does not run either.
    let r = gw.get("/", &[("x-api-key", "s3cret")]).await;
    assert_eq!(r.status, 429);
    assert_eq!(b.hits(), 1);
}

#[tokio::test]
async fn every_plugin_answer_is_counted_by_plugin_and_route() {
    let b = Backend::http("app");
    let gw = Config::new()
        .server("trusted_proxies: [127.0.0.1/32]")
        .upstream("app", &backends(&[b.addr()]))
        .plugin("ip_filter: { deny: [203.0.113.0/24] }")
        .route("name: locked, match: { path: { prefix: /locked } }, upstream: app, plugins: [ { key_auth: { keys: { ci: k3y } } } ]")
        .route("name: moved, match: { path: { prefix: /moved } }, plugins: [ { redirect: { url: \"https://elsewhere.test\" } } ]")
        .route("name: open, match: { path: { prefix: /open } }, upstream: app")
        .start()
        .await;
    // (times, path, headers, status)
    let denied = [("x-forwarded-for", "203.0.113.5")];
    let key = [("x-api-key", "k3y")];
    let traffic: [(usize, &str, Pairs, u16); 6] = [
        (3, "/locked", &[], 401),
        (1, "/locked", &key, 200),
        (2, "/moved/x", &[], 301),
        (1, "/open", &denied, 403),
        (1, "/nowhere", &denied, 403),
        (1, "/open", &[], 200),
    ];
    for (times, path, headers, status) in traffic {
        for _ in 0..times {
            assert_eq!(
                gw.get(path, headers).await.status,
                status,
                "{path} {headers:?}"
            );
        }
    }

    let text = gw.metrics().await;
    let count = |plugin: &str, route: &str| {
        text.value(
            "portico_plugin_rejections_total",
            &[("plugin", plugin), ("route", route)],
        )
    };
    assert_eq!(count("key_auth", "locked"), Some(3.0), "{text}");
    assert_eq!(count("redirect", "moved"), Some(2.0));
    assert_eq!(count("ip_filter", "open"), Some(1.0));
    assert_eq!(
        count("ip_filter", "unmatched"),
        Some(1.0),
        "a global plugin's answer to an unrouted request"
    );
    assert_eq!(
        count("key_auth", "open"),
        None,
        "requests the plugins let through are not counted"
    );
    assert!(
        text.contains("# TYPE portico_plugin_rejections_total counter"),
        "{text}"
    );
}

/// Validates a config whose only route (`api`) has `plugin` as its first plugin; returns
/// the error line for it, after checking that `portico -t` refused the config.
async fn refused(plugin: &str) -> String {
    let yaml = Config::new()
        .yaml(&format!(
            "routes:\n  - name: api\n    plugins:\n      - {plugin}\n      - respond: {{}}\n"
        ))
        .build();
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 1, "portico -t accepted `{plugin}`:\n{stderr}");
    let name = plugin.split(':').next().unwrap();
    let prefix = format!("routes[0].plugins[0].{name}: route \"api\", plugin {name}: ");
    let line = stderr.lines().find(|l| l.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{stderr}"))
        .to_string()
}

#[tokio::test]
async fn bad_plugin_configs_are_refused_naming_the_route_and_the_plugin() {
    let line = refused("rate_limit: { per_second: 0 }").await;
    assert!(line.contains("per_second: must be at least 1"), "{line}");
    assert!(
        line.ends_with("(line 8)"),
        "the line of the plugin in the file: {line}"
    );

    let line = refused("ip_filter: { allow: [10.0.0.0/8], deny: [10.0.0.0/33] }").await;
    assert!(
        line.contains("deny[0]") && line.contains("10.0.0.0/33"),
        "{line}"
    );

    let line = refused("basic_auth: { users: { alice: hunter2 } }").await;
    assert!(line.contains("users.alice: not a bcrypt hash"), "{line}");
    assert!(
        !line.contains("hunter2"),
        "the plain-text password is echoed: {line}"
    );

    let line = refused("respond: { status: 204, body: gone }").await;
    assert!(line.contains("body: a 204 answer has no body"), "{line}");
    let line = refused("respond: { stauts: 200 }").await;
    assert!(line.contains("unknown field `stauts`"), "{line}");
    let line = refused("client_cert: { subjects: [\"CN=a\", \"nonsense\"] }").await;
    assert!(line.contains("subjects[1]: \"nonsense\""), "{line}");

    let line = refused("key_auth: { keys: {} }").await;
    assert!(line.contains("keys:"), "{line}");
    let line = refused("jwt_auth: { algorithms: [RS256], public_key: missing.pem }").await;
    assert!(line.contains("public_key: cannot read"), "{line}");
    let line = refused("jwt_auth: { algorithms: [HS512], secret: x }").await;
    assert!(line.contains("unknown algorithm \"HS512\""), "{line}");
    let line = refused("rewrite: { regex: \"^/(.*)$\", replace: \"/$2\" }").await;
    assert!(line.contains("replace: $2 refers to no group"), "{line}");
    let line = refused("redirect: { url: \"https://x.test\", status: 200 }").await;
    assert!(
        line.contains("status: 200 is not a redirect status"),
        "{line}"
    );
    let line = refused("cors: { allow_origins: [\"https://a.test/\"] }").await;
    assert!(line.contains("allow_origins:"), "{line}");
    let line = refused("compression: { algorithms: [deflate] }").await;
    assert!(line.contains("unknown algorithm \"deflate\""), "{line}");
    let line = refused("headers: { request: { set: { \"Bad Name\": x } } }").await;
    assert!(line.contains("request.set"), "{line}");
    let line = refused("access_log: { path: /nonexistent-dir/access.log }").await;
    assert!(line.contains("path: cannot open"), "{line}");
    let line = refused("no_such_plugin: {}").await;
    assert!(
        line.contains("unknown plugin \"no_such_plugin\"") && line.contains("rate_limit"),
        "names the known ones: {line}"
    );
}

#[tokio::test]
async fn a_bad_global_plugin_and_a_missing_secret_are_refused_too() {
    let yaml = Config::new()
        .plugin("cors: { allow_methods: [\"GE T\"] }")
        .route("name: api, plugins: [ { respond: {} } ]")
        .build();
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 1);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("plugins[0].cors: global plugin cors: allow_methods:")),
        "{stderr}"
    );

    // A secret from an environment variable that is not set: refused, and nothing starts.
    let yaml = Config::new()
        .route(
            "name: api, plugins: [ { key_auth: { keys: { ci: \"${PORTICO_TEST_UNSET_KEY}\" } } } ]",
        )
        .build();
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("PORTICO_TEST_UNSET_KEY"), "{stderr}");
    let (code, _) = Gateway::start_expect_failure(&yaml).await;
    assert_eq!(code, Some(1));
}
