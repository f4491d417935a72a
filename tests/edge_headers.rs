//! Headers about the client come only from Portico or a trusted proxy (docs/security.md,
//! "What a backend can believe about the client"): what a backend receives when the client
//! is an ordinary peer that writes `Forwarded`, `X-Forwarded-*`, `X-Original-URL` and the
//! like itself, and when the peer is a trusted proxy whose statements are kept and extended.
//!
//! Requests are raw bytes (a client library would tidy the very headers under test: repeat
//! them, change their case); the backend reports every header it received.

use crate::common::*;
use serde_json::Value;
use std::net::SocketAddr;

/// The headers Portico removes from an untrusted peer's request (and sets itself, for
/// X-Forwarded-Port).
const CLAIMS: [&str; 6] = [
    "forwarded",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-client-cert",
];

/// A gateway with a plain listener `web` and a TLS listener `secure` (h2 and http/1.1, for
/// `h2.test`), a route `/plugin` whose plugin answers 299 itself, and a catch-all route to
/// the backend; `server.trusted_proxies` as given (a YAML flow sequence).
struct Setup {
    site: TlsSite,
    gw: Gateway,
}

impl Setup {
    async fn start(trusted_proxies: &str) -> Setup {
        let site = TlsSite::new("edge headers CA", "h2.test");
        let gw = Config::with_app(&site.backend)
            .server(&format!("trusted_proxies: {trusted_proxies}"))
            .listener("secure", &tls(&[&site.cert], ""))
            .route("name: plugin, match: { path: { prefix: /plugin } }, upstream: app, plugins: [ { respond: { status: 299, body: plugin } } ]")
            .route("name: all, upstream: app")
            .start()
            .await;
        Setup { site, gw }
    }

    fn web(&self) -> SocketAddr {
        self.gw.listener("web")
    }

    /// `GET path` on the plain listener with `Host: shop.test` and `extra` header lines
    /// (each ending in CRLF); the status and what the backend saw (null when Portico
    /// answered itself).
    async fn get(&self, path: &str, extra: &str) -> (u16, Value) {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\n{extra}Connection: close\r\n\r\n");
        exchange(self.web(), &request).await
    }

    /// One HTTP/2 request on the TLS listener, with `:authority` `h2.test` and `headers`.
    async fn h2(&self, headers: &[(&str, &str)]) -> Value {
        let opts = self.site.client(&["h2"]);
        let mut conn = HttpConn::tls(self.gw.listener("secure"), "h2.test", &opts)
            .await
            .unwrap();
        assert_eq!(conn.version(), http::Version::HTTP_2);
        let r = conn
            .request("GET", "/h2", headers, Body::empty())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }
}

/// Sends `request` as is on a new connection and reads the answer to its end: the status,
/// and the backend's description of what it received (null for an answer that is not one).
async fn exchange(addr: SocketAddr, request: &str) -> (u16, Value) {
    let answer = raw_exchange(addr, request.as_bytes(), None).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP/1.1 answer to {request:?}: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn header<'a>(seen: &'a Value, name: &str) -> Option<&'a str> {
    seen["headers"][name].as_str()
}

// ---------------------------------------------------------------------------------------
// A peer outside trusted_proxies

#[tokio::test]
async fn an_untrusted_peers_claims_are_removed_and_replaced() {
    // 127.0.0.1 (the test client) is not in it.
    let s = Setup::start("[10.9.9.9/32]").await;
    let port = s.web().port().to_string();
    // (what the client adds, a note) — whatever it says, the backend sees Portico's word.
    let cases: &[(&str, &str)] = &[
        ("Forwarded: for=6.6.6.6;proto=https;host=admin.internal\r\n", "Forwarded"),
        ("fOrWaRdEd: for=6.6.6.6\r\nForwarded: for=7.7.7.7\r\n", "two Forwarded lines, odd case"),
        ("X-Forwarded-Port: 443\r\n", "X-Forwarded-Port"),
        ("X-Forwarded-Port: 1\r\nX-Forwarded-Port: 2\r\n", "two X-Forwarded-Port lines"),
        ("X-Forwarded-Prefix: /admin\r\n", "X-Forwarded-Prefix"),
        ("X-Original-URL: /admin/x\r\n", "X-Original-URL"),
        ("X-Rewrite-URL: /admin/x\r\n", "X-Rewrite-URL"),
        ("X-Forwarded-Client-Cert: Hash=00;Subject=\"CN=admin\"\r\nx-forwarded-client-cert: By=spiffe://x\r\n", "X-Forwarded-Client-Cert"),
        ("X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7, 8.8.8.8\r\n", "X-Forwarded-For lines"),
        ("X-Forwarded-For: not an address\r\n", "garbage X-Forwarded-For (ignored, not 400)"),
        ("X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: admin.internal\r\n", "X-Real-IP, -Proto, -Host"),
        (
            "Forwarded: for=6.6.6.6\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Prefix: /a\r\nX-Original-URL: /a\r\n\
             X-Rewrite-URL: /a\r\nX-Forwarded-Client-Cert: Hash=00\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: a.internal\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n",
            "all at once",
        ),
    ];
    for (extra, what) in cases {
        let (status, seen) = s.get("/x", extra).await;
        assert_eq!(status, 200, "{what}: {seen}");
        for name in CLAIMS.iter().filter(|n| **n != "x-forwarded-port") {
            assert_eq!(
                header(&seen, name),
                None,
                "{what}: {name} reached the backend: {seen}"
            );
        }
        let told = [
            ("x-forwarded-port", port.as_str()),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-real-ip", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "shop.test"),
        ];
        for (name, value) in told {
            assert_eq!(header(&seen, name), Some(value), "{what}: {name}: {seen}");
        }
    }

    // HTTP/1.0 without a Host: no host to tell, so no client's X-Forwarded-Host either.
    let (status, seen) = exchange(
        s.web(),
        "GET /x HTTP/1.0\r\nX-Forwarded-Host: admin.internal\r\nForwarded: host=admin.internal\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(header(&seen, "x-forwarded-host"), None, "{seen}");
    assert_eq!(header(&seen, "forwarded"), None, "{seen}");
    assert_eq!(
        header(&seen, "x-forwarded-port"),
        Some(port.as_str()),
        "{seen}"
    );
}

/// HTTP/2 reaches the backend through the same code, with the host from `:authority` and
/// the TLS listener's own port.
#[tokio::test]
async fn over_http2_too() {
    let s = Setup::start("[10.9.9.9/32]").await;
    let seen = s
        .h2(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-port", "80"),
            ("x-forwarded-prefix", "/admin"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-forwarded-client-cert", "Hash=00"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "admin.internal"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
        ])
        .await;
    for name in CLAIMS.iter().filter(|n| **n != "x-forwarded-port") {
        assert_eq!(header(&seen, name), None, "{name}: {seen}");
    }
    let port = s.gw.listener("secure").port().to_string();
    assert_eq!(header(&seen, "x-forwarded-port"), Some(port.as_str()));
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&seen, "x-forwarded-host"), Some("h2.test"));
    assert_eq!(header(&seen, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&seen, "x-real-ip"), Some("127.0.0.1"));
}

// ---------------------------------------------------------------------------------------
// A trusted proxy

#[tokio::test]
async fn a_trusted_proxys_forwarded_is_kept_and_extended() {
    let s = Setup::start("[127.0.0.1/32]").await;
    let port = s.web().port().to_string();
    // (Host, what the proxy sent, what the backend must get)
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "shop.test",
            "Forwarded: for=203.0.113.7;proto=https;host=shop.test\r\n",
            Some("for=203.0.113.7;proto=https;host=shop.test, for=127.0.0.1;proto=http;host=shop.test"),
        ),
        (
            "shop.test",
            "Forwarded: for=203.0.113.7\r\nForwarded: for=\"[2001:db8::7]:4711\", for=198.51.100.1\r\n",
            Some("for=203.0.113.7, for=\"[2001:db8::7]:4711\", for=198.51.100.1, for=127.0.0.1;proto=http;host=shop.test"),
        ),
        // A host with a port is no token: quoted.
        (
            "shop.test:8080",
            "Forwarded: for=203.0.113.7\r\n",
            Some("for=203.0.113.7, for=127.0.0.1;proto=http;host=\"shop.test:8080\""),
        ),
        // None sent, none added: an element naming only the proxy would make it the client.
        ("shop.test", "", None),
    ];
    for (host, extra, want) in cases {
        let request =
            format!("GET /x HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
        let (status, seen) = exchange(s.web(), &request).await;
        assert_eq!(status, 200, "{extra:?}: {seen}");
        assert_eq!(header(&seen, "forwarded"), *want, "{extra:?}: {seen}");
    }

    // The proxy's own statements about the client pass as it made them...
    let (status, seen) = s
        .get(
            "/x",
            "X-Forwarded-Port: 443\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: www.example.com\r\n\
             X-Forwarded-Prefix: /shop\r\nX-Original-URL: /shop/x\r\nX-Rewrite-URL: /shop/x\r\n\
             X-Forwarded-Client-Cert: Hash=00\r\n",
        )
        .await;
    assert_eq!(status, 200, "{seen}");
    for (name, value) in [
        ("x-forwarded-port", "443"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "www.example.com"),
        ("x-forwarded-prefix", "/shop"),
        ("x-original-url", "/shop/x"),
        ("x-rewrite-url", "/shop/x"),
        ("x-forwarded-client-cert", "Hash=00"),
    ] {
        assert_eq!(header(&seen, name), Some(value), "{name}: {seen}");
    }
    // ...and what it left out, Portico says.
    let (_, seen) = s.get("/x", "").await;
    assert_eq!(header(&seen, "x-forwarded-port"), Some(port.as_str()));
    assert_eq!(header(&seen, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&seen, "x-forwarded-host"), Some("shop.test"));

    // Over HTTP/2 the element's host is the :authority, its proto https.
    let seen = s.h2(&[("forwarded", "for=203.0.113.7")]).await;
    assert_eq!(
        header(&seen, "forwarded"),
        Some("for=203.0.113.7, for=127.0.0.1;proto=https;host=h2.test")
    );
}

#[tokio::test]
async fn x_forwarded_for_entries_with_ports_count_as_their_address() {
    let s = Setup::start("[127.0.0.1/32]").await;
    // (X-Forwarded-For lines, the client IP, the chain the backend gets)
    let cases: &[(&str, &str, &str)] = &[
        (
            "X-Forwarded-For: 203.0.113.7:5555\r\n",
            "203.0.113.7",
            "203.0.113.7:5555, 127.0.0.1",
        ),
        (
            "X-Forwarded-For: [2001:db8::7]:443\r\n",
            "2001:db8::7",
            "[2001:db8::7]:443, 127.0.0.1",
        ),
        (
            "X-Forwarded-For: [2001:db8::7]\r\n",
            "2001:db8::7",
            "[2001:db8::7], 127.0.0.1",
        ),
        (
            "X-Forwarded-For: 2001:db8::7\r\n",
            "2001:db8::7",
            "2001:db8::7, 127.0.0.1",
        ),
        (
            "X-Forwarded-For: ::ffff:203.0.113.7\r\n",
            "203.0.113.7",
            "::ffff:203.0.113.7, 127.0.0.1",
        ),
        // Several lines are one list; the right-most untrusted entry is the client.
        (
            "X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-For: 203.0.113.7:80, 127.0.0.1:9999\r\n",
            "203.0.113.7",
            "198.51.100.1, 203.0.113.7:80, 127.0.0.1:9999, 127.0.0.1",
        ),
        // Empty list elements are no entries.
        (
            "X-Forwarded-For: ,203.0.113.7,, \r\n",
            "203.0.113.7",
            "203.0.113.7, 127.0.0.1",
        ),
    ];
    for (extra, client, chain) in cases {
        let (status, seen) = s.get("/x", extra).await;
        assert_eq!(status, 200, "{extra:?}: {seen}");
        assert_eq!(
            header(&seen, "x-real-ip"),
            Some(*client),
            "{extra:?}: {seen}"
        );
        assert_eq!(
            header(&seen, "x-forwarded-for"),
            Some(*chain),
            "{extra:?}: {seen}"
        );
    }
}

/// An entry that is no address: 400 before any plugin runs (the route `/plugin` would
/// answer 299 itself), and nothing reaches the backend. The client IP is never silently
/// the trusted proxy's own.
#[tokio::test]
async fn an_entry_that_is_no_address_is_400_before_any_plugin() {
    let s = Setup::start("[127.0.0.1/32]").await;
    for entry in [
        "unknown",
        "garbage",
        "example.com",
        "_hidden",
        "203.0.113.7:abc",
        "203.0.113.7:99999",
        "203.0.113.7:",
        "[2001:db8::7",
        "[2001:db8::7]:",
        "2001:db8::7:443x",
        "203.0.113.7 198.51.100.1",
        // Also left of the client: it still reaches the backend.
        "nonsense, 203.0.113.7",
        "203.0.113.7, nonsense",
    ] {
        for path in ["/x", "/plugin"] {
            let (status, seen) = s.get(path, &format!("X-Forwarded-For: {entry}\r\n")).await;
            assert_eq!(status, 400, "{path} X-Forwarded-For: {entry}: {seen}");
        }
    }
    // Split over two lines, and an entry with a non-ASCII byte.
    let (status, _) = s
        .get(
            "/x",
            "X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-For: bogus\r\n",
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s.get("/x", "X-Forwarded-For: 203.0.113.\u{e9}\r\n").await;
    assert_eq!(status, 400);
    assert_eq!(s.site.backend.hits(), 0);
    // A good one still passes.
    let (status, seen) = s.get("/plugin", "X-Forwarded-For: 203.0.113.7\r\n").await;
    assert_eq!(status, 299, "{seen}");
}

/// An IPv6 peer's element: `for="[::1]"` (quoted, bracketed), the host quoted.
#[tokio::test]
async fn an_ipv6_peer_is_a_quoted_node() {
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !machine_allows("ipv6", ipv6, "this machine has no IPv6 loopback (::1)") {
        return;
    }
    let backend = Backend::http("app");
    let port = free_port();
    let yaml = Config::admin_only()
        .server("trusted_proxies: [\"::1/128\"]")
        .yaml(&format!(
            "listeners:\n  - {{ name: web6, listen: \"[::1]:{port}\" }}\n"
        ))
        .app(&backend)
        .route("name: all, upstream: app")
        .build();
    let gw = Gateway::start(&yaml).await;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: [::1]:{port}\r\nForwarded: for=192.0.2.60\r\n\
         X-Forwarded-For: 192.0.2.60\r\nConnection: close\r\n\r\n"
    );
    let (status, seen) = exchange(gw.listener("web6"), &request).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(
        header(&seen, "forwarded"),
        Some(format!("for=192.0.2.60, for=\"[::1]\";proto=http;host=\"[::1]:{port}\"").as_str())
    );
    assert_eq!(header(&seen, "x-forwarded-for"), Some("192.0.2.60, ::1"));
    assert_eq!(header(&seen, "x-real-ip"), Some("192.0.2.60"));
}
