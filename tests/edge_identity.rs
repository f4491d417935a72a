//! Who a client is at the edge: routes bound to listeners (`match.listeners`), client
//! certificates (`client_ca`, `client_auth`), the identity sent to backends
//! (`X-Forwarded-Client-Cert`), the `client_cert` plugin, and a client CA changed by reload.

use crate::common::*;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A gateway with three listeners: `mtls` (client certificate required), `opt` (client
/// certificate optional), both trusting `clients`, and `plain` (HTTP); upstreams `a`, `b`.
struct Edge {
    server_ca: TestCa,
    clients: TestCa,
    gw: Gateway,
    a: Backend,
    b: Backend,
}

struct Ports {
    admin: u16,
    mtls: u16,
    opt: u16,
    plain: u16,
}

impl Ports {
    fn new() -> Ports {
        Ports {
            admin: free_port(),
            mtls: free_port(),
            opt: free_port(),
            plain: free_port(),
        }
    }
}

/// The gateway of [`Edge`] on ports `p`, its listeners serving `server`, trusting
/// `client_ca`; no routes yet.
fn edge_config(
    p: &Ports,
    server: &CertFiles,
    client_ca: &Path,
    a: &Backend,
    b: &Backend,
) -> Config {
    let ca = client_ca.display();
    Config::admin_only()
        .admin_at(p.admin)
        .listener_at(
            "mtls",
            p.mtls,
            &tls(&[server], &format!("client_ca: \"{ca}\"")),
        )
        .listener_at(
            "opt",
            p.opt,
            &tls(
                &[server],
                &format!("client_ca: \"{ca}\", client_auth: optional"),
            ),
        )
        .listener_at("plain", p.plain, "")
        .upstream("a", &backends(&[a.addr()]))
        .upstream("b", &backends(&[b.addr()]))
}

/// [`Edge`] with `routes` (each the inside of a route's mapping).
async fn edge(routes: &[&str]) -> Edge {
    let server_ca = TestCa::new("edge server CA");
    let clients = TestCa::new("edge clients CA");
    let (a, b) = (Backend::http("a"), Backend::http("b"));
    let server = server_ca.issue(&["api.test"]);
    let mut config = edge_config(&Ports::new(), &server, clients.cert_path(), &a, &b);
    for route in routes {
        config = config.route(route);
    }
    let gw = config.start().await;
    Edge {
        server_ca,
        clients,
        gw,
        a,
        b,
    }
}

impl Edge {
    fn trust(&self) -> TlsClientOpts {
        TlsClientOpts::trusting(self.server_ca.cert_path())
    }

    fn with_cert(&self, cert: &CertFiles) -> TlsClientOpts {
        self.trust().client_cert(cert)
    }
}

fn xfcc(r: &Response) -> Option<String> {
    r.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------------
// match.listeners

#[tokio::test]
async fn a_route_bound_to_a_listener_does_not_exist_on_the_others() {
    let e = edge(&[
        "name: admin, match: { path: { prefix: /admin }, listeners: [mtls] }, upstream: a",
        "name: fallback, match: { listeners: [plain, opt] }, upstream: b",
    ])
    .await;
    let alice = e.clients.issue_client("alice");
    // On the plain listener the bound route is not there: the plain one's fallback answers.
    let raw = raw_exchange(
        e.gw.listener("plain"),
        b"GET /admin/users HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n",
        None,
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"backend\":\"b\""), "{text}");
    // On the optional-certificate listener too, even with a valid certificate.
    let r = https_get(
        e.gw.listener("opt"),
        "api.test",
        &e.with_cert(&alice),
        "/admin/x",
    )
    .await
    .unwrap();
    assert_eq!(r.json()["backend"], "b");
    assert_eq!(e.a.hits(), 0, "the bound route's backend saw nothing");
    // On its own listener it is served, and the fallback (bound elsewhere) does not exist.
    let mtls = e.gw.listener("mtls");
    let r = https_get(mtls, "api.test", &e.with_cert(&alice), "/admin/x")
        .await
        .unwrap();
    assert_eq!((r.status, r.json()["backend"].as_str()), (200, Some("a")));
    let r = https_get(mtls, "api.test", &e.with_cert(&alice), "/other")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(e.a.hits(), 1);
    assert_eq!(e.b.hits(), 2);
}

#[tokio::test]
async fn bad_listener_bindings_and_client_auth_are_config_errors_with_path_and_line() {
    let ca = TestCa::new("config CA");
    let server = ca.issue(&["api.test"]);
    let tls = |extra: &str| {
        format!(
            "listeners:\n  - name: web\n    listen: 127.0.0.1:1\n    tls:\n      certificates: [ {{ cert: {}, key: {} }} ]\n{extra}\
             upstreams:\n  a: {{ backends: [ {{ addr: \"127.0.0.1:2\" }} ] }}\n",
            server.cert.display(),
            server.key.display()
        )
    };
    let cases = [
        (
            tls("") + "routes:\n  - name: r\n    upstream: a\n    match:\n      listeners: [web, nope]\n",
            "routes[0].match.listeners[1]: no listener named \"nope\"",
            "[web, nope]",
        ),
        (
            tls("") + "routes:\n  - name: r\n    upstream: a\n    match:\n      listeners: []\n",
            "routes[0].match.listeners: names no listener",
            "listeners: []",
        ),
        (
            tls("      client_auth: optional\n") + "routes: []\n",
            "listeners[0].tls.client_auth: client_auth needs client_ca",
            "client_auth",
        ),
        (
            tls(&format!(
                "      client_ca: {}\n      client_auth: sometimes\n",
                ca.cert_path().display()
            )) + "routes: []\n",
            "listeners[0].tls.client_auth: unknown variant `sometimes`",
            "client_auth",
        ),
    ];
    for (yaml, want, on) in cases {
        let (code, stderr) = validate_config(&yaml).await;
        assert_eq!(code, 1, "{yaml}\n{stderr}");
        let line = yaml.lines().position(|l| l.contains(on)).unwrap() + 1;
        let found = stderr
            .lines()
            .find(|l| l.starts_with(want))
            .unwrap_or_else(|| panic!("no {want:?} in:\n{stderr}"));
        assert!(found.ends_with(&format!("(line {line})")), "{found}");
    }
}

#[tokio::test]
async fn unbound_routes_are_warned_about_when_listeners_differ_in_client_ca() {
    let server_ca = TestCa::new("warn CA");
    let server = server_ca.issue(&["api.test"]);
    let (a, b) = (Backend::http("a"), Backend::http("b"));
    let yaml = edge_config(&Ports::new(), &server, server_ca.cert_path(), &a, &b)
        .route("name: bound, match: { listeners: [mtls] }, upstream: a")
        .route("name: open, match: { path: { prefix: /x } }, upstream: a")
        .route("name: plain-only, match: { listeners: [plain] }, upstream: b")
        .route("name: open-too, upstream: b")
        .build();
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 0, "a warning is no error:\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("routes["))
        .collect();
    assert_eq!(warnings.len(), 2, "{stderr}");
    assert!(warnings[0].starts_with("routes[1]: "), "{stderr}");
    assert!(warnings[0].contains("\"open\""), "{stderr}");
    assert!(warnings[1].starts_with("routes[3]: "), "{stderr}");
    assert!(warnings[1].contains("client_ca"), "{stderr}");
    // The running server says the same at start.
    let gw = Gateway::start(&yaml).await;
    assert!(
        gw.wait_for_stderr("routes[3]: route \"open-too\"", Duration::from_secs(5))
            .await,
        "{}",
        gw.stderr_text()
    );
    // Listeners alike in client_ca (here: none has one): nothing to warn about.
    let same = format!(
        "server: {{ grace_period: 0s, shutdown_timeout: 1s, upgrade_sock: \"${{PORTICO_TEST_DIR}}/u.sock\", \
         pid_file: \"${{PORTICO_TEST_DIR}}/p.pid\" }}\nlisteners:\n  - {{ name: one, listen: 127.0.0.1:1 }}\n  - {{ name: two, listen: 127.0.0.1:2 }}\n\
         upstreams:\n  a: {{ backends: [ {{ addr: \"{}\" }} ] }}\nroutes:\n  - {{ name: r, upstream: a }}\n",
        a.addr()
    );
    let (code, stderr) = validate_config(&same).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("routes[0]"), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// Client certificates and X-Forwarded-Client-Cert

#[tokio::test]
async fn xfcc_carries_the_verified_certificate_and_replaces_what_the_client_sent() {
    let e = edge(&["name: all, upstream: a"]).await;
    let alice = e.clients.issue_client_with_sans(
        "alice",
        &["spiffe://example.org/alice"],
        &["alice.internal", "alice.example.com"],
    );
    let want = format!(
        "Hash={};Subject=\"CN=alice\";URI=spiffe://example.org/alice;DNS=alice.internal;DNS=alice.example.com",
        alice.sha256_hex()
    );
    let mtls = e.gw.listener("mtls");
    let forged = [
        ("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\""),
        ("X-Forwarded-Client-Cert", "By=spiffe://evil"),
    ];
    let r = https_request(
        mtls,
        "api.test",
        &e.with_cert(&alice),
        "GET",
        "/",
        &forged,
        Body::empty(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(xfcc(&r).as_deref(), Some(want.as_str()));
    // Over HTTP/2 (each stream reads the connection's certificate) just the same.
    let r = h2_request(mtls, "api.test", &e.with_cert(&alice), "api.test", "/h2")
        .await
        .unwrap();
    assert_eq!(r.version, "HTTP/2.0");
    assert_eq!(xfcc(&r).as_deref(), Some(want.as_str()));
    // A certificate without alternative names: no URI or DNS element.
    let bob = e.clients.issue_client("bob");
    let r = https_get(mtls, "api.test", &e.with_cert(&bob), "/")
        .await
        .unwrap();
    let want = format!("Hash={};Subject=\"CN=bob\"", bob.sha256_hex());
    assert_eq!(xfcc(&r).as_deref(), Some(want.as_str()));
    // Two requests on one connection carry the same header (read once per connection).
    let mut conn = HttpConn::tls(mtls, "api.test", &e.with_cert(&bob).alpn(&["http/1.1"]))
        .await
        .unwrap();
    for _ in 0..2 {
        let r = conn.get("/again").await.unwrap();
        assert_eq!(xfcc(&r).as_deref(), Some(want.as_str()));
    }
    // The plain listener has no client certificate to tell about.
    let r = http_get(e.gw.listener("plain"), "/").await.unwrap();
    assert_eq!(xfcc(&r), None);
}

#[tokio::test]
async fn client_auth_optional_admits_clients_without_a_certificate_but_not_bad_ones() {
    let e = edge(&["name: all, upstream: a"]).await;
    let opt = e.gw.listener("opt");
    // No certificate: through the handshake, and a forged header does not reach the backend.
    let r = https_request(
        opt,
        "api.test",
        &e.trust(),
        "GET",
        "/",
        &[("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\"")],
        Body::empty(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(xfcc(&r), None, "{}", r.text());
    // A valid certificate is verified and told about.
    let alice = e.clients.issue_client("alice");
    let r = https_get(opt, "api.test", &e.with_cert(&alice), "/")
        .await
        .unwrap();
    let want = format!("Hash={};Subject=\"CN=alice\"", alice.sha256_hex());
    assert_eq!(xfcc(&r).as_deref(), Some(want.as_str()));
    // A certificate from another CA is still refused.
    let stranger = TestCa::new("stranger CA").issue_client("mallory");
    assert!(https_get(opt, "api.test", &e.with_cert(&stranger), "/")
        .await
        .is_err());
    // `required` (the default) still refuses a client without one.
    assert!(
        https_get(e.gw.listener("mtls"), "api.test", &e.trust(), "/")
            .await
            .is_err()
    );
    assert_eq!(e.a.hits(), 2);
}

#[tokio::test]
async fn client_cert_plugin_admits_by_subject_san_or_fingerprint() {
    let server_ca = TestCa::new("plugin server CA");
    let clients = TestCa::new("plugin clients CA");
    let alice = clients.issue_client_with_sans("alice", &["spiffe://example.org/alice"], &[]);
    let bob = clients.issue_client_with_sans("bob", &[], &["bob.internal"]);
    // Alice's fingerprint as `openssl x509 -fingerprint -sha256` prints it.
    let fp: Vec<String> = (0..32)
        .map(|i| alice.sha256_hex()[2 * i..2 * i + 2].to_uppercase())
        .collect();
    let (a, b) = (Backend::http("a"), Backend::http("b"));
    let server = server_ca.issue(&["api.test"]);
    let mut config = edge_config(&Ports::new(), &server, clients.cert_path(), &a, &b);
    for (name, rule) in [
        ("subject", "{ subjects: [\"cn=ALICE\"] }".to_string()),
        (
            "san",
            "{ sans: [\"spiffe://example.org/alice\", \"other.internal\"] }".to_string(),
        ),
        (
            "fingerprint",
            format!("{{ fingerprints: [\"{}\"] }}", fp.join(":")),
        ),
        ("dns", "{ sans: [\"BOB.internal\"] }".to_string()),
        ("any", "{}".to_string()),
    ] {
        config = config.route(&format!(
            "name: {name}, match: {{ path: {{ prefix: /{name} }}, listeners: [opt, plain] }}, upstream: a, \
             plugins: [ {{ client_cert: {rule} }} ]"
        ));
    }
    let gw = config.start().await;
    let trust = TlsClientOpts::trusting(server_ca.cert_path());
    let opt = gw.listener("opt");
    for (path, alice_gets, bob_gets) in [
        ("/subject", 200, 403),
        ("/san", 200, 403),
        ("/fingerprint", 200, 403),
        ("/dns", 403, 200),
        ("/any", 200, 200),
    ] {
        let none = https_get(opt, "api.test", &trust, path).await.unwrap();
        assert_eq!(none.status, 401, "{path} without a certificate");
        let r = https_get(opt, "api.test", &trust.clone().client_cert(&alice), path)
            .await
            .unwrap();
        assert_eq!(r.status, alice_gets, "{path} for alice: {}", r.text());
        let r = https_get(opt, "api.test", &trust.clone().client_cert(&bob), path)
            .await
            .unwrap();
        assert_eq!(r.status, bob_gets, "{path} for bob: {}", r.text());
    }
    // A plain listener never has a certificate: 401.
    let r = http_get(gw.listener("plain"), "/any").await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(a.hits(), 6);
    let m = gw.metrics().await;
    let rejected = |route: &str| {
        m.sum(
            "portico_plugin_rejections_total",
            &[("plugin", "client_cert"), ("route", route)],
        )
    };
    assert_eq!(rejected("subject"), 2.0, "{m}");
    assert_eq!(rejected("any"), 2.0, "{m}");
}

// ---------------------------------------------------------------------------------------
// Reload

/// A TLS 1.2 GET (session ids, so a session can be kept and offered again): the status, or
/// an error when the gateway refused; the session; whether it was a resumption.
async fn tls12_get(
    addr: std::net::SocketAddr,
    trust: &Path,
    cert: &CertFiles,
    session: Option<&openssl::ssl::SslSession>,
) -> (Result<u16, String>, Option<openssl::ssl::SslSession>, bool) {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVersion};
    let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
    builder.set_ca_file(trust).unwrap();
    builder.set_certificate_chain_file(&cert.cert).unwrap();
    builder
        .set_private_key_file(&cert.key, SslFiletype::PEM)
        .unwrap();
    builder
        .set_max_proto_version(Some(SslVersion::TLS1_2))
        .unwrap();
    let mut ssl = builder
        .build()
        .configure()
        .unwrap()
        .into_ssl("api.test")
        .unwrap();
    if let Some(s) = session {
        // A copy again (see below), so that the caller's can be offered once more.
        let s = openssl::ssl::SslSession::from_der(&s.to_der().unwrap()).unwrap();
        // SAFETY: the session comes from a connector of the same settings.
        unsafe { ssl.set_session(&s).unwrap() };
    }
    let tcp = connect_tcp(addr).await.unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    let exchange = async {
        Pin::new(&mut tls)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let head = String::from_utf8_lossy(&out).into_owned();
        head.split(' ')
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or(format!("no response: {head:?}"))
    };
    let status = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
    let reused = tls.ssl().session_reused();
    // A copy: OpenSSL marks the connection's own session object unresumable when the
    // connection is dropped without a close_notify.
    let session = tls.ssl().session().and_then(|s| {
        let der = s.to_der().ok()?;
        openssl::ssl::SslSession::from_der(&der).ok()
    });
    (status, session, reused)
}

#[tokio::test]
async fn a_changed_client_ca_takes_effect_on_reload() {
    let server_ca = TestCa::new("reload server CA");
    let (old_ca, new_ca) = (TestCa::new("old clients"), TestCa::new("new clients"));
    let (alice, bob) = (old_ca.issue_client("alice"), new_ca.issue_client("bob"));
    let server = server_ca.issue(&["api.test"]);
    let (a, b) = (Backend::http("a"), Backend::http("b"));
    let dir = TestDir::new();
    let ca_file = dir.write("clients.pem", std::fs::read(old_ca.cert_path()).unwrap());
    let p = Ports::new();
    let config = |client_ca: &Path| {
        edge_config(&p, &server, client_ca, &a, &b)
            .route("name: all, upstream: a")
            .build()
    };
    let mut gw = Gateway::start(&config(&ca_file)).await;
    let mtls = gw.listener("mtls");
    let trust = TlsClientOpts::trusting(server_ca.cert_path());
    let get = |cert: &CertFiles| {
        let opts = trust.clone().client_cert(cert);
        async move { https_get(mtls, "api.test", &opts, "/").await }
    };
    assert_eq!(get(&alice).await.unwrap().status, 200);
    assert!(get(&bob).await.is_err(), "bob's CA is not trusted yet");
    // A TLS session of alice's, resumable while nothing changes.
    let (status, session, _) = tls12_get(mtls, server_ca.cert_path(), &alice, None).await;
    assert_eq!(status, Ok(200));
    let session = session.expect("a session");
    let (status, _, reused) = tls12_get(mtls, server_ca.cert_path(), &alice, Some(&session)).await;
    assert_eq!((status, reused), (Ok(200), true), "resumption works");
    let (status, _, reused) = tls12_get(mtls, server_ca.cert_path(), &alice, Some(&session)).await;
    assert_eq!((status, reused), (Ok(200), true), "and works again");

    // The same file, new contents: the new CA from the next handshake on, no restart.
    std::fs::write(&ca_file, std::fs::read(new_ca.cert_path()).unwrap()).unwrap();
    let r = gw.admin_post("/reload").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        get(&alice).await.is_err(),
        "the old CA's certificate after reload"
    );
    assert_eq!(get(&bob).await.unwrap().status, 200);
    // Alice's session from before does not get her around the new CA.
    let (status, _, reused) = tls12_get(mtls, server_ca.cert_path(), &alice, Some(&session)).await;
    assert!(status.is_err() && !reused, "{status:?}, resumed: {reused}");

    // Another file (the path changed): also a reload, no longer a binary upgrade.
    let other = dir.write("old-again.pem", std::fs::read(old_ca.cert_path()).unwrap());
    gw.rewrite_config(&config(&other));
    let r = gw.admin_post("/reload").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(&alice).await.unwrap().status, 200);
    assert!(get(&bob).await.is_err());
    // The optional listener follows the same file.
    let opt = gw.listener("opt");
    let r = https_get(opt, "api.test", &trust.clone().client_cert(&alice), "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        https_get(opt, "api.test", &trust.clone().client_cert(&bob), "/")
            .await
            .is_err()
    );
}
