//! The test harness checked against itself: certificates, backends and clients talking to
//! each other directly, without the gateway. If these fail, gateway test failures mean
//! nothing.

use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::common::*;
use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn https_backend_describes_requests_and_verifies_with_the_ca() {
    let ca = TestCa::new("selftest CA");
    let cert = ca.issue(&["backend.test", "*.wild.test"]);
    let backend = Backend::https("b1", &cert);
    let trust = TlsClientOpts::trusting(ca.cert_path());

    let conn = tls_connect(
        backend.addr(),
        "backend.test",
        &trust.clone().alpn(&["http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(conn.version(), "TLSv1.3");
    assert_eq!(conn.alpn().as_deref(), Some("http/1.1"));
    assert_eq!(conn.peer_dns_names(), ["backend.test", "*.wild.test"]);

    let response = https_request(
        backend.addr(),
        "x.wild.test",
        &trust,
        "POST",
        "/echo?q=1",
        &[
            ("x-many", "1"),
            ("x-many", "2"),
            ("content-type", "text/plain"),
        ],
        "hello",
    )
    .await
    .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("X-Backend"), Some("b1"));
    let seen = response.json();
    assert_eq!(seen["backend"], "b1");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/echo?q=1");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(seen["sni"], "x.wild.test");
    assert_eq!(seen["headers"]["host"], "x.wild.test");
    assert_eq!(seen["headers"]["x-many"], "1, 2");
    assert_eq!(seen["body"], "hello");
    assert_eq!(seen["body_len"], 5);
    assert_eq!(seen["body_fnv"], fnv1a64_hex(b"hello"));
    assert_eq!(backend.hits(), 1);
    assert_eq!(backend.seen_paths(), ["/echo?q=1"]);

    // Trust is really checked: a name the cert lacks, and a CA that did not issue it.
    assert!(https_get(backend.addr(), "other.test", &trust, "/")
        .await
        .is_err());
    let stranger = TestCa::new("stranger CA");
    let wrong_trust = TlsClientOpts::trusting(stranger.cert_path());
    assert!(https_get(backend.addr(), "backend.test", &wrong_trust, "/")
        .await
        .is_err());
    assert!(
        https_get(backend.addr(), "", &TlsClientOpts::insecure(), "/")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn tls_versions_can_be_forced_including_old_ones() {
    let ca = TestCa::new("version CA");
    let cert = ca.issue(&["old.test"]);
    let trust = TlsClientOpts::trusting(ca.cert_path());

    // The backend (Mozilla intermediate profile) takes 1.2 and refuses 1.1.
    let backend = Backend::https("modern", &cert);
    let only_12 = trust.clone().only(SslVersion::TLS1_2);
    let only_11 = trust.clone().only(SslVersion::TLS1_1);
    let tls12 = tls_connect(backend.addr(), "old.test", &only_12)
        .await
        .unwrap();
    assert_eq!(tls12.version(), "TLSv1.2");
    assert!(tls_connect(backend.addr(), "old.test", &only_11)
        .await
        .is_err());

    // ...but the client really offers 1.1, so a gateway's refusal is its own: a server that
    // allows 1.1 gets it.
    let mut acceptor = SslAcceptor::mozilla_intermediate(SslMethod::tls()).unwrap();
    acceptor
        .set_private_key_file(&cert.key, SslFiletype::PEM)
        .unwrap();
    acceptor.set_certificate_chain_file(&cert.cert).unwrap();
    acceptor
        .set_min_proto_version(Some(SslVersion::TLS1_1))
        .unwrap();
    acceptor.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
    acceptor.set_security_level(0);
    let acceptor = acceptor.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls =
            tokio_openssl::SslStream::new(Ssl::new(acceptor.context()).unwrap(), tcp).unwrap();
        let _ = Pin::new(&mut tls).accept().await;
    });
    let tls11 = tls_connect(addr, "old.test", &only_11).await.unwrap();
    assert_eq!(tls11.version(), "TLSv1.1");
    server.await.unwrap();
}

#[tokio::test]
async fn h2_to_https_backend() {
    let ca = TestCa::new("h2 CA");
    let backend = Backend::https("h2", &ca.issue(&["h2.test"]));
    let trust = TlsClientOpts::trusting(ca.cert_path());

    let response = h2_request(backend.addr(), "h2.test", &trust, "h2.test:8443", "/p?x=y")
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.version, "HTTP/2.0");
    let seen = response.json();
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(seen["authority"], "h2.test:8443");
    assert_eq!(seen["path"], "/p?x=y");
    assert!(seen["headers"].get("host").is_none());

    // HttpConn follows ALPN, and several streams share one connection.
    let mut conn = HttpConn::tls(backend.addr(), "h2.test", &trust.alpn(&["h2", "http/1.1"]))
        .await
        .unwrap();
    assert_eq!(conn.version(), http::Version::HTTP_2);
    assert_eq!(conn.tls_info().unwrap().alpn.as_deref(), Some("h2"));
    for _ in 0..3 {
        assert_eq!(conn.get("/again").await.unwrap().json()["conn"], 2);
    }
    assert_eq!(backend.connections(), 2);
}

#[tokio::test]
async fn http_backend_special_paths_and_keep_alive() {
    let backend = Backend::http("plain");
    let mut conn = HttpConn::plain(backend.addr()).await.unwrap();

    assert_eq!(conn.get("/status/503").await.unwrap().status, 503);
    assert_eq!(conn.get("/status/204").await.unwrap().body, b"");

    let started = Instant::now();
    assert_eq!(conn.get("/sleep/200").await.unwrap().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    assert_eq!(
        conn.download_pattern("/bytes/1000003").await.unwrap(),
        (1_000_003, true)
    );
    assert_eq!(
        conn.download_pattern("/bytes/70000?chunked").await.unwrap(),
        (70_000, true)
    );
    // A body that is not the pattern fails the check.
    assert!(!conn.download_pattern("/status/200").await.unwrap().1);

    assert_eq!(conn.get("/healthz").await.unwrap().text(), "ok\n");
    backend.set_healthy(false);
    assert_eq!(conn.get("/healthz").await.unwrap().status, 503);
    backend.set_healthy(true);
    assert_eq!(conn.get("/healthz").await.unwrap().status, 200);

    // All of that on one connection; health checks counted apart.
    assert_eq!(backend.connections(), 1);
    assert_eq!(backend.health_checks(), 3);
    assert_eq!(backend.hits(), 6);
    assert_eq!(
        backend.seen_paths()[..3],
        ["/status/503", "/status/204", "/sleep/200"]
    );

    // h2c with prior knowledge, and the one-shot plain helper.
    let tcp = connect_tcp(backend.addr()).await.unwrap();
    let mut h2c = HttpConn::h2_over(tcp, "plain.test", None).await.unwrap();
    assert_eq!(h2c.get("/h2c").await.unwrap().json()["version"], "HTTP/2.0");
    let response = http_get(backend.addr(), "/once").await.unwrap();
    assert_eq!(
        response.json()["headers"]["host"],
        backend.addr().to_string()
    );
}

#[tokio::test]
async fn streamed_uploads_arrive_intact() {
    const LEN: u64 = 8 * 1024 * 1024 + 7;
    let backend = Backend::http("sink");
    let mut conn = HttpConn::plain(backend.addr()).await.unwrap();

    let seen = conn
        .request("PUT", "/upload", &[], Body::pattern(LEN))
        .await
        .unwrap()
        .json();
    assert_eq!(seen["body_len"], LEN);
    assert_eq!(seen["body_fnv"], pattern_fnv_hex(LEN));
    assert_eq!(seen["headers"]["content-length"], LEN.to_string());
    assert!(seen["body"].is_null());

    let seen = conn
        .request("POST", "/upload", &[], Body::pattern_chunked(LEN))
        .await
        .unwrap()
        .json();
    assert_eq!(seen["body_len"], LEN);
    assert_eq!(seen["body_fnv"], pattern_fnv_hex(LEN));
    assert_eq!(seen["headers"]["transfer-encoding"], "chunked");

    // Over TLS and HTTP/2 as well.
    let ca = TestCa::new("upload CA");
    let tls_backend = Backend::https("tls-sink", &ca.issue(&["sink.test"]));
    let opts = TlsClientOpts::trusting(ca.cert_path()).alpn(&["h2"]);
    let mut h2 = HttpConn::tls(tls_backend.addr(), "sink.test", &opts)
        .await
        .unwrap();
    let seen = h2
        .request("POST", "/upload", &[], Body::pattern(LEN))
        .await
        .unwrap()
        .json();
    assert_eq!(seen["version"], "HTTP/2.0");
    assert_eq!(seen["body_fnv"], pattern_fnv_hex(LEN));
}

#[tokio::test]
async fn websocket_echo_handshake_and_bytes() {
    let backend = Backend::websocket_echo("ws");
    let (mut stream, head) = ws_connect(backend.addr(), "ws.test", "/chat", None)
        .await
        .unwrap();
    assert!(head.contains("X-Backend: ws"), "{head}");
    stream.write_all(b"\x81\x05hello").await.unwrap();
    let mut echoed = [0u8; 7];
    tokio::time::timeout(IO_TIMEOUT, stream.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"\x81\x05hello");
    assert_eq!(backend.seen_paths(), ["/chat"]);

    // A plain request is not upgraded.
    let answer = raw_exchange(backend.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", None).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Nor does a server that answers 200 instead of 101 pass for a WebSocket one.
    let http_backend = Backend::http("not-ws");
    assert!(ws_connect(http_backend.addr(), "ws.test", "/", None)
        .await
        .is_err());
}

#[tokio::test]
async fn mtls_backend_requires_a_client_certificate() {
    let ca = TestCa::new("mtls CA");
    let backend = Backend::https_mtls("mtls", &ca.issue(&["mtls.test"]), ca.cert_path());
    let trust = TlsClientOpts::trusting(ca.cert_path());

    assert!(https_get(backend.addr(), "mtls.test", &trust, "/")
        .await
        .is_err());
    let stranger = TestCa::new("stranger CA").issue_client("mallory");
    let wrong = trust.clone().client_cert(&stranger);
    assert!(https_get(backend.addr(), "mtls.test", &wrong, "/")
        .await
        .is_err());

    let client = ca.issue_client("client-1");
    let response = https_get(
        backend.addr(),
        "mtls.test",
        &trust.client_cert(&client),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(response.json()["client_cn"], "client-1");
    assert_eq!(backend.hits(), 1);
}

#[tokio::test]
async fn reset_backend_counts_then_resets() {
    let backend = Backend::reset_after_body("rst");
    let result = http_request(backend.addr(), "POST", "/pay", &[], "amount=1").await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(backend.hits(), 1);
    assert_eq!(backend.seen_paths(), ["/pay"]);
}

#[tokio::test]
async fn stop_drops_connections_and_frees_the_port() {
    let mut backend = Backend::http("flaky");
    let port = backend.port();
    let mut conn = HttpConn::plain(backend.addr()).await.unwrap();
    assert_eq!(conn.get("/").await.unwrap().status, 200);

    backend.stop().await;
    assert!(
        conn.get("/").await.is_err(),
        "live connection survived stop()"
    );
    assert!(
        http_get(backend.addr(), "/").await.is_err(),
        "still listening after stop()"
    );

    let restarted = Backend::http_on("flaky-again", port);
    let response = http_get(restarted.addr(), "/").await.unwrap();
    assert_eq!(response.json()["backend"], "flaky-again");
}

#[tokio::test]
async fn raw_exchange_and_helpers() {
    let backend = Backend::http("raw");
    let answer = exchange(
        backend.addr(),
        b"GET /raw HTTP/1.1\r\nHost: raw.test\r\nConnection: close\r\n\r\n",
        None,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(answer.status(), Some(200), "{answer:?}");
    assert!(answer.closed, "Connection: close is honoured");
    assert!(answer.text().contains("\"path\":\"/raw\""), "{answer:?}");

    // Garbage gets hyper's 400 and a close, within the 3 s bound.
    let started = Instant::now();
    let answer = raw_exchange(backend.addr(), b"\x16\x03\x01garbage\r\n\r\n", None).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    let ports: std::collections::HashSet<u16> = (0..20).map(|_| free_port()).collect();
    assert_eq!(ports.len(), 20);
    let dir = TestDir::new();
    let cert = self_signed_cert(dir.path(), &["self.test"]);
    let backend = Backend::https("self", &cert);
    let trust = TlsClientOpts::trusting(&cert.cert);
    assert_eq!(
        https_get(backend.addr(), "self.test", &trust, "/")
            .await
            .unwrap()
            .status,
        200
    );
}
