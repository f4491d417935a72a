//! The plugins that decide who gets in, through the real binary: `ip_filter`, `basic_auth`,
//! `key_auth` and `jwt_auth`. For each, what an admitted and a refused client see, and what
//! the backend receives (or that it receives nothing).

use crate::common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------
// ip_filter

/// The office route's target and filter.
const OFFICE: &str =
    "upstream: app, plugins: [ { ip_filter: { allow: [10.0.0.0/8], deny: [10.6.6.0/24] } } ]";

#[tokio::test]
async fn ip_filter_deny_wins_and_a_non_empty_allow_admits_only_its_members() {
    let b = Backend::http("app");
    // 127.0.0.1 is a trusted proxy, so the test presents other client addresses through
    // X-Forwarded-For.
    let gw = Config::with_app(&b)
        .server("trusted_proxies: [127.0.0.1/32]")
        .route(&format!("name: office, match: {{ path: {{ prefix: /office }} }}, {OFFICE}"))
        .route("name: open, match: { path: { prefix: /open } }, upstream: app, plugins: [ { ip_filter: { deny: [192.0.2.7] } } ]")
        .start()
        .await;
    let from = |ip: &'static str| [("x-forwarded-for", ip)];

    let r = gw.get("/office", &from("10.1.2.3")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["headers"]["x-real-ip"],
        "10.1.2.3",
        "the backend sees the resolved client"
    );

    // Inside allow, but denied: deny wins.
    let r = gw.get("/office", &from("10.6.6.9")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.text(), "Forbidden\n");
    assert!(
        r.header("x-request-id").is_some(),
        "a plugin's answer carries the request id"
    );
    // Outside a non-empty allow list, including the proxy itself.
    assert_eq!(gw.get("/office", &from("192.168.1.1")).await.status, 403);
    assert_eq!(
        gw.get("/office", &[]).await.status,
        403,
        "127.0.0.1 is not in allow"
    );

    // Deny only: everyone else is admitted.
    assert_eq!(gw.get("/open", &from("192.0.2.7")).await.status, 403);
    assert_eq!(gw.get("/open", &from("192.0.2.8")).await.status, 200);
    assert_eq!(gw.get("/open", &[]).await.status, 200);

    assert_eq!(
        b.seen_paths(),
        ["/office", "/open", "/open"],
        "refused requests never reach the backend"
    );
}

#[tokio::test]
async fn ip_filter_reads_an_ipv4_mapped_client_as_the_ipv4_address_it_is() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .server("trusted_proxies: [127.0.0.1/32]")
        .route(&format!("name: office, {OFFICE}"))
        .start()
        .await;
    // The spelling a dual-stack socket gives an IPv4 client neither escapes `deny` nor
    // falls outside `allow`.
    for (client, status) in [
        ("::ffff:10.6.6.9", 403),
        ("::ffff:10.1.2.3", 200),
        ("::ffff:a01:203", 200),
        ("::ffff:192.168.1.1", 403),
    ] {
        let r = gw.get("/", &[("x-forwarded-for", client)]).await;
        assert_eq!(r.status, status, "{client}");
    }
    assert_eq!(b.hits(), 2);
}

#[tokio::test]
async fn ip_filter_ignores_x_forwarded_for_from_an_untrusted_peer() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route("name: internal, match: { path: { prefix: /internal } }, upstream: app, plugins: [ { ip_filter: { allow: [10.0.0.0/8] } } ]")
        .route("name: local, upstream: app, plugins: [ { ip_filter: { allow: [127.0.0.1] } } ]")
        .start()
        .await;
    // No trusted proxies: the header is the client's word, and the TCP peer counts.
    let r = gw
        .get("/internal", &[("x-forwarded-for", "10.1.2.3")])
        .await;
    assert_eq!(r.status, 403);
    let r = gw.get("/local", &[("x-forwarded-for", "10.1.2.3")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(b.hits(), 1);
}

// ---------------------------------------------------------------------------------------
// basic_auth

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        openssl::base64::encode_block(format!("{user}:{password}").as_bytes())
    )
}

#[tokio::test]
async fn basic_auth_admits_the_right_password_and_challenges_everything_else() {
    let b = Backend::http("app");
    // Cost 4, the lowest bcrypt allows: the test is about the plugin, not about bcrypt's
    // speed on a busy machine.
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    let gw = Config::with_app(&b)
        .route(&format!(
            "name: staff, upstream: app, plugins: [ {{ basic_auth: {{ realm: staff area, users: {{ alice: \"{hash}\" }} }} }} ]"
        ))
        .start()
        .await;

    let good = basic("alice", "correct horse");
    let r = gw.get("/", &[("authorization", &good)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["headers"]["authorization"],
        good.as_str(),
        "passed on unchanged"
    );
    // Again: answered from the plugin's memory of verified credentials, same outcome.
    assert_eq!(gw.get("/", &[("authorization", &good)]).await.status, 200);

    for refused in [
        vec![("authorization", basic("alice", "wrong"))],
        vec![("authorization", basic("mallory", "correct horse"))],
        vec![("authorization", "Bearer abc".to_string())],
        vec![],
    ] {
        let headers: Vec<(&str, &str)> = refused.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = gw.get("/", &headers).await;
        assert_eq!(r.status, 401, "{refused:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"staff area\""),
            "{refused:?}"
        );
        assert_eq!(r.text(), "Unauthorized\n");
    }
    assert_eq!(b.hits(), 2);
}

/// A cost-12 bcrypt hash of "correct horse", made once with `bcrypt::hash(.., 12)`: making it
/// at test time would cost the test seconds of CPU before it starts.
const COST_12_HASH: &str = "$2b$12$d5OSCRn87DcNpg/A1KxGBOmXcISmFokFJMQx4lCDz6RCKWwDEro62";

#[tokio::test]
async fn basic_auth_bounds_bcrypt_checks_at_once_and_answers_the_rest_503_without_waiting() {
    let b = Backend::http("app");
    // One worker thread: were bcrypt run on it, the other route would wait for it too.
    let gw = Config::with_app(&b)
        .server("threads: 1")
        .route(&format!(
            "name: staff, match: {{ path: {{ prefix: /staff }} }}, upstream: app, plugins: [ \
             {{ basic_auth: {{ users: {{ alice: \"{COST_12_HASH}\" }}, max_concurrent: 1 }} }} ]"
        ))
        .route("name: public, upstream: app")
        .start()
        .await;
    let web = gw.listener("web");

    // Eight wrong passwords at once. A cost-12 check takes a quarter of a second in a release
    // build, seconds in this debug one: the first request's check holds the only slot while
    // the others arrive.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let wrong = basic("alice", "wrong");
    for _ in 0..8 {
        let (tx, wrong) = (tx.clone(), wrong.clone());
        tokio::spawn(async move {
            let r = http_request(
                web,
                "GET",
                "/staff",
                &[("authorization", &wrong)],
                Body::empty(),
            )
            .await
            .unwrap();
            let _ = tx.send((r, Instant::now()));
        });
    }
    drop(tx);
    // As soon as one is refused as busy, a request to the other route, measured against the
    // check still running: it is answered first.
    let mut answers = Vec::new();
    while let Some((r, at)) = rx.recv().await {
        let busy = r.status == 503;
        answers.push((r, at));
        if busy {
            break;
        }
    }
    assert_eq!(
        answers.last().unwrap().0.status,
        503,
        "no request was refused as busy: {:?}",
        answers.iter().map(|(r, _)| r.status).collect::<Vec<_>>()
    );
    let r = gw.get("/public", &[]).await;
    assert_eq!(r.status, 200);
    let public_at = Instant::now();
    while let Some(answer) = rx.recv().await {
        answers.push(answer);
    }

    let checked: Vec<Instant> = answers
        .iter()
        .filter(|(r, _)| r.status == 401)
        .map(|(_, at)| *at)
        .collect();
    let busy: Vec<&(Response, Instant)> = answers.iter().filter(|(r, _)| r.status == 503).collect();
    assert_eq!(checked.len() + busy.len(), 8, "only 401s and 503s");
    assert!(
        !checked.is_empty(),
        "the check that ran refused the password"
    );
    let first_check_done = *checked.iter().min().unwrap();
    assert!(
        public_at < first_check_done,
        "the other route waited for bcrypt"
    );
    for (r, at) in busy {
        assert!(
            *at < first_check_done,
            "a busy answer waited for the running check"
        );
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.header("www-authenticate").is_none());
        assert_eq!(
            r.text(),
            "Service Unavailable: too many password checks at once\n"
        );
    }
    assert_eq!(b.seen_paths(), ["/public"]);
}

// ---------------------------------------------------------------------------------------
// key_auth

#[tokio::test]
async fn key_auth_takes_a_header_or_query_key_and_the_key_never_reaches_the_backend_or_log() {
    const KEY: &str = "k3y-from-the-environment";
    let b = Backend::http("app");
    let yaml = Config::with_app(&b)
        .plugin("access_log: { path: access.log }")
        .route("name: api, upstream: app, plugins: [ { key_auth: { header: X-Api-Key, query: api_key, keys: { ci: \"${CI_KEY}\" } } } ]")
        .build();
    let gw = Gateway::start_with(&yaml, &[], &[("CI_KEY", KEY)]).await;

    let r = gw.get("/by-header", &[("x-api-key", KEY)]).await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    assert_eq!(seen["path"], "/by-header");
    assert!(
        seen["headers"].get("x-api-key").is_none(),
        "the key header is stripped: {seen}"
    );

    let r = gw
        .get(&format!("/by-query?x=1&api_key={KEY}&y=2"), &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["path"],
        "/by-query?x=1&y=2",
        "only the key parameter is removed"
    );
    let r = gw.get(&format!("/only-key?api_key={KEY}"), &[]).await;
    assert_eq!(r.json()["path"], "/only-key");

    for (path, headers) in [
        ("/wrong", vec![("x-api-key", "not-the-key")]),
        ("/wrong?api_key=not-the-key", vec![]),
        ("/missing", vec![]),
    ] {
        let r = gw.get(path, &headers).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.text(), "Unauthorized: a valid API key is required\n");
    }
    assert_eq!(b.hits(), 3);

    // Six requests, six log lines, and the key in none of them.
    let log = gw.dir().join("access.log");
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 6 || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(!text.contains(KEY), "the key is in the access log:\n{text}");
    assert!(
        !text.contains("not-the-key"),
        "a wrong key is in the access log:\n{text}"
    );
    assert!(
        !gw.stderr_text().contains(KEY),
        "the key is in the gateway's log"
    );
}

/// Route `api` to `app`, behind a key taken from the query parameter `api_key` only.
fn query_key_route(key: &str) -> String {
    format!(
        "name: api, upstream: app, plugins: [ {{ key_auth: {{ header: null, query: api_key, keys: {{ ci: {key} }} }} }} ]"
    )
}

#[tokio::test]
async fn key_auth_query_key_stays_out_of_the_gateways_error_log() {
    const KEY: &str = "query-k3y-never-logged";
    // Nothing listens there: the request fails upstream, and Portico logs the failure with
    // a summary of the request.
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Config::new()
        .upstream("app", &backends(&[dead]))
        .route(&query_key_route(KEY))
        .start()
        .await;
    let r = gw.get(&format!("/fails?api_key={KEY}&page=2"), &[]).await;
    assert_eq!(r.status, 502);
    // The error line names the request by path (never its query string, which may carry
    // other secrets too).
    assert!(
        gw.wait_for_stderr("GET /fails", IO_TIMEOUT).await,
        "the failure is logged with the request: {}",
        gw.stderr_text()
    );
    assert!(
        !gw.stderr_text().contains("page=2"),
        "the query string is in the error log"
    );
    assert!(
        !gw.stderr_text().contains(KEY),
        "the key is in the error log:\n{}",
        gw.stderr_text()
    );
}

#[tokio::test]
async fn key_auth_a_repeated_or_re_spelled_query_key_never_reaches_the_backend() {
    const KEY: &str = "the-k3y";
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route(&query_key_route(KEY))
        .start()
        .await;

    // The first `api_key` decides; every spelling of it is taken off before the backend.
    for (target, backend_sees) in [
        (format!("/a?api_key={KEY}&api_key=other&x=1"), "/a?x=1"),
        (format!("/a?api%5Fkey={KEY}&api_key=other"), "/a"),
        (format!("/a?x=1&api_key={KEY}&api%5fkey=other"), "/a?x=1"),
    ] {
        let r = raw_exchange(
            gw.listener("web"),
            format!("GET {target} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes(),
            None,
        )
        .await;
        let text = String::from_utf8_lossy(&r);
        assert!(text.starts_with("HTTP/1.1 200"), "{target}: {text}");
        assert!(
            text.contains(&format!("\"path\":\"{backend_sees}\"")),
            "{target}: {text}"
        );
        assert!(
            !text.contains(KEY) && !text.contains("other"),
            "{target}: {text}"
        );
    }
    // A wrong first key is not rescued by a right second one.
    let r = gw
        .get(&format!("/a?api_key=wrong&api_key={KEY}"), &[])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(b.hits(), 3);
}

// ---------------------------------------------------------------------------------------
// jwt_auth

const JWT_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn hs256(secret: &str, claims: Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.as_bytes()),
        &claims,
    )
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn jwt_hs256_checks_signature_time_issuer_and_audience_and_forwards_claims() {
    let b = Backend::http("app");
    let yaml = Config::with_app(&b)
        .yaml(
            "
routes:
  - name: api
    upstream: app
    plugins:
      - jwt_auth:
          algorithms: [HS256]
          secret: \"${JWT_SECRET}\"
          issuer: auth.test
          audience: api
          leeway: 5s
          forward_claims: { sub: X-User-Id, admin: X-Admin }
",
        )
        .build();
    let gw = Gateway::start_with(&yaml, &[], &[("JWT_SECRET", JWT_SECRET)]).await;
    let valid = json!({ "sub": "alice", "admin": true, "iss": "auth.test", "aud": "api", "exp": now() + 300 });

    let token = hs256(JWT_SECRET, valid.clone());
    let auth = bearer(&token);
    // A client-sent copy of a forwarded claim header is replaced, never passed on.
    let r = gw
        .get("/", &[("authorization", &auth), ("x-user-id", "mallory")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let h = &r.json()["headers"];
    assert_eq!(h["x-user-id"], "alice");
    assert_eq!(h["x-admin"], "true", "a non-string claim is sent as JSON");
    assert_eq!(h["authorization"], auth.as_str());

    // A valid token without the `admin` claim: the header is not sent at all, and the
    // client's own copy is still removed.
    let no_admin = hs256(
        JWT_SECRET,
        json!({ "sub": "bob", "iss": "auth.test", "aud": "api", "exp": now() + 300 }),
    );
    let r = gw
        .get(
            "/",
            &[("authorization", &bearer(&no_admin)), ("x-admin", "true")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-user-id"], "bob");
    assert!(r.json()["headers"].get("x-admin").is_none());

    let with = |patch: Value| {
        let mut claims = valid.clone();
        claims
            .as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        claims
    };
    let refused = [
        (
            "expired",
            hs256(JWT_SECRET, with(json!({ "exp": now() - 3600 }))),
        ),
        (
            "not yet valid",
            hs256(JWT_SECRET, with(json!({ "nbf": now() + 3600 }))),
        ),
        (
            "wrong issuer",
            hs256(JWT_SECRET, with(json!({ "iss": "evil.test" }))),
        ),
        (
            "wrong audience",
            hs256(JWT_SECRET, with(json!({ "aud": "billing" }))),
        ),
        (
            "no exp",
            hs256(
                JWT_SECRET,
                json!({ "sub": "alice", "iss": "auth.test", "aud": "api" }),
            ),
        ),
        (
            "bad signature",
            hs256("another-secret-another-secret-another", valid.clone()),
        ),
        ("tampered", {
            let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
            let forged = hs256("x", with(json!({ "sub": "root" })));
            parts[1] = forged.split('.').nth(1).unwrap().to_string();
            parts.join(".")
        }),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (why, token) in &refused {
        let r = gw.get("/", &[("authorization", &bearer(token))]).await;
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{why}"
        );
        assert_eq!(r.text(), "Unauthorized: invalid token\n", "{why}");
    }
    // No token at all.
    let r = gw.get("/", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = gw
        .get("/", &[("authorization", &basic("alice", "pw"))])
        .await;
    assert_eq!(r.status, 401);

    assert_eq!(b.hits(), 2, "only the valid tokens reached the backend");
}

#[tokio::test]
async fn jwt_rs256_and_es256_verify_with_public_key_files() {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;

    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let other_rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let p256 = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ec = PKey::from_ec_key(EcKey::generate(&p256).unwrap()).unwrap();
    let rsa_key = EncodingKey::from_rsa_pem(&rsa.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let other_rsa_key =
        EncodingKey::from_rsa_pem(&other_rsa.private_key_to_pem_pkcs8().unwrap()).unwrap();
    let ec_key = EncodingKey::from_ec_pem(&ec.private_key_to_pem_pkcs8().unwrap()).unwrap();

    // The public keys sit next to the config and are named by relative path.
    let dir = TestDir::new();
    let rsa_pem = rsa.public_key_to_pem().unwrap();
    dir.write("keys-rsa.pem", &rsa_pem);
    dir.write("keys-ec.pem", ec.public_key_to_pem().unwrap());
    let b = Backend::http("app");
    let route = |name: &str, algorithm: &str, key: &str| {
        format!(
            "name: {name}, match: {{ path: {{ prefix: /{name} }} }}, upstream: app, plugins: [ \
             {{ jwt_auth: {{ algorithms: [{algorithm}], public_key: {key}, forward_claims: {{ sub: X-User-Id }} }} }} ]"
        )
    };
    let yaml = Config::with_app(&b)
        .route(&route("rs", "RS256", "keys-rsa.pem"))
        .route(&route("es", "ES256", "keys-ec.pem"))
        .build();
    let gw = Gateway::start_in(dir, &yaml, &[], &[]).await;
    let claims = |sub: &str| json!({ "sub": sub, "exp": now() + 300 });

    let rs = sign(Algorithm::RS256, &rsa_key, &claims("rsa-user"));
    let r = gw.get("/rs", &[("authorization", &bearer(&rs))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-user-id"], "rsa-user");

    let es = sign(Algorithm::ES256, &ec_key, &claims("ec-user"));
    let r = gw.get("/es", &[("authorization", &bearer(&es))]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["x-user-id"], "ec-user");

    let refused = [
        (
            "/rs",
            "signed by another RSA key",
            sign(Algorithm::RS256, &other_rsa_key, &claims("x")),
        ),
        (
            "/rs",
            "an ES256 token where RS256 is configured",
            es.clone(),
        ),
        (
            "/es",
            "an RS256 token where ES256 is configured",
            rs.clone(),
        ),
        // The classic confusion: HS256 with the public key as the shared secret.
        (
            "/rs",
            "HS256 signed with the public key",
            sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(&rsa_pem),
                &claims("x"),
            ),
        ),
        (
            "/rs",
            "expired",
            sign(
                Algorithm::RS256,
                &rsa_key,
                &json!({ "sub": "x", "exp": now() - 3600 }),
            ),
        ),
    ];
    for (path, why, token) in &refused {
        let r = gw.get(path, &[("authorization", &bearer(token))]).await;
        assert_eq!(r.status, 401, "{why}");
    }
    assert_eq!(b.hits(), 2);
}

#[tokio::test]
async fn jwt_a_forwarded_claim_that_cannot_be_a_header_value_refuses_the_token() {
    let b = Backend::http("app");
    let yaml = Config::with_app(&b)
        .route("name: api, upstream: app, plugins: [ { jwt_auth: { secret: \"${JWT_SECRET}\", forward_claims: { sub: X-User-Id } } } ]")
        .build();
    let gw = Gateway::start_with(&yaml, &[], &[("JWT_SECRET", JWT_SECRET)]).await;
    let token = |sub: &str| hs256(JWT_SECRET, json!({ "sub": sub, "exp": now() + 300 }));

    for (why, sub) in [
        ("a header injected after CR LF", "alice\r\nX-Admin: true"),
        ("a line feed", "alice\n"),
        ("a NUL", "al\u{0}ice"),
        ("a leading tab, which a header's reader strips", "\talice"),
        ("a trailing space, which a header's reader strips", "alice "),
    ] {
        let r = gw
            .get(
                "/",
                &[
                    ("authorization", &bearer(&token(sub))),
                    ("x-user-id", "alice"),
                ],
            )
            .await;
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\""),
            "{why}"
        );
    }
    assert_eq!(b.hits(), 0, "no refused token reached the backend");

    // What can be sent as it is, is; and a client's X_User_Id, which PHP, WSGI and Rack
    // read as X-User-Id, is removed with X-User-Id.
    let r = gw
        .get(
            "/",
            &[
                ("authorization", &bearer(&token("alice smith"))),
                ("x_user_id", "admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(h["x-user-id"], "alice smith");
    assert!(h.get("x_user_id").is_none(), "{h}");
}
