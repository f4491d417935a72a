//! What the backend and the client see of a proxied request: forwarded headers, request ids,
//! Host, streaming bodies both ways, WebSocket, TLS and HTTP/2 to the backend, and the
//! answers Portico makes itself when a backend fails.

use crate::common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain listener `web` and one route to an upstream `app` written as `upstream` (the
/// inside of its mapping, e.g. [`backends`]), with `route_extra` added to the route.
fn plain(upstream: &str, route_extra: &str) -> Config {
    Config::new()
        .upstream("app", upstream)
        .route(&format!("name: all, upstream: app{route_extra}"))
}

/// A TLS listener `tls` (`cert`) and one route to an upstream `app` written as `upstream`.
fn over_tls(cert: &CertFiles, upstream: &str) -> Config {
    Config::admin_only()
        .listener("tls", &tls(&[cert], ""))
        .upstream("app", upstream)
        .route("name: all, upstream: app")
}

fn one(b: &Backend) -> String {
    backends(&[b.addr()])
}

/// Asserts that `text` (a head as received) holds every one of `lines`, byte for byte.
fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(text.contains(line), "{line:?} in {text}");
    }
}

/// A backend that answers every request head on a connection with `answer`, as given, and
/// hands each head it received, raw, to the returned receiver.
async fn recording_backend(
    answer: &'static str,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = upstream.local_addr().unwrap();
    let (heads_tx, heads) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = upstream.accept().await {
            let heads_tx = heads_tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = heads_tx.send(String::from_utf8_lossy(&head).into_owned());
                    head.clear();
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

/// HTTP/1 peers see the request id header spelled as `server.request_id_header` is, like the
/// forwarded headers, not lowercased: on the backend's wire, on the client's, and in an answer
/// Portico makes itself (a 404).
#[tokio::test]
async fn the_request_id_header_is_written_as_configured() {
    let (upstream_addr, mut heads) =
        recording_backend("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .await;
    let gw = Config::new()
        .server("request_id_header: X-Correlation-ID")
        .upstream("app", &backends(&[upstream_addr]))
        .route("name: app, upstream: app, match: { path: { prefix: /app } }")
        .start()
        .await;
    let web = gw.listener("web");
    let raw_get = |path: &'static str| async move {
        let mut s = connect_tcp(web).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
            .await
            .expect("an answer in time")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };

    let answer = raw_get("/app/x").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\r\nX-Correlation-ID: "),
        "client's wire: {answer}"
    );
    let head = heads.recv().await.unwrap();
    assert!(
        head.contains("\r\nX-Correlation-ID: "),
        "backend's wire: {head}"
    );
    assert!(
        head.contains("\r\nX-Forwarded-For: "),
        "backend's wire: {head}"
    );

    let answer = raw_get("/elsewhere").await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        answer.contains("\r\nX-Correlation-ID: "),
        "Portico's own answer: {answer}"
    );
}

#[tokio::test]
async fn forwarded_headers_request_id_and_host() {
    let b = Backend::http("app");
    let gw = plain(&one(&b), "").start().await;
    let r = gw
        .get(
            "/p?q=1",
            &[("host", "shop.test"), ("x-forwarded-for", "6.6.6.6")],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = r.json();
    let h = &seen["headers"];
    assert_eq!(h["host"], "shop.test", "the client's Host is kept");
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "an untrusted client's X-Forwarded-For is replaced"
    );
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.test");
    assert_eq!(seen["path"], "/p?q=1");
    let id = h["x-request-id"].as_str().unwrap();
    assert!(id.len() >= 16, "a generated id: {id}");
    assert_eq!(
        r.header("x-request-id"),
        Some(id),
        "the client gets the same id back"
    );

    // The client's own id is kept; an oversized one is replaced.
    let r = gw.get("/", &[("x-request-id", "abc-123")]).await;
    assert_eq!(r.json()["headers"]["x-request-id"], "abc-123");
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let long = "x".repeat(129);
    let r = gw.get("/", &[("x-request-id", &long)]).await;
    assert_ne!(r.header("x-request-id"), Some(long.as_str()));
}

#[tokio::test]
async fn trusted_proxy_chain_is_believed_and_extended() {
    let b = Backend::http("app");
    let gw = plain(&one(&b), "")
        .server("trusted_proxies: [127.0.0.0/8, 10.0.0.0/8]")
        .start()
        .await;
    let r = gw
        .get("/", &[("x-forwarded-for", "203.0.113.7, 10.1.2.3")])
        .await;
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-real-ip"], "203.0.113.7",
        "right-most untrusted address"
    );
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.1.2.3, 127.0.0.1");
}

#[tokio::test]
async fn upstream_host_overrides_the_clients() {
    let b = Backend::http("app");
    let gw = plain(&format!("{}, host: internal.app", one(&b)), "")
        .start()
        .await;
    let r = gw.get("/", &[("host", "public.test")]).await;
    assert_eq!(r.json()["headers"]["host"], "internal.app");
    assert_eq!(r.json()["headers"]["x-forwarded-host"], "public.test");
}

#[tokio::test]
async fn fifty_mib_upload_and_download_pass_byte_for_byte() {
    let ca = TestCa::new("bodies CA");
    let cert = ca.issue(&["big.test"]);
    let b = Backend::http("app");
    let gw = over_tls(&cert, &one(&b)).start().await;
    let trust = TlsClientOpts::trusting(ca.cert_path());
    const N: u64 = 50 * 1024 * 1024;
    let started = Instant::now();
    let r = https_request(
        gw.listener("tls"),
        "big.test",
        &trust,
        "POST",
        "/upload",
        &[],
        Body::pattern(N),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], N);
    assert_eq!(r.json()["body_fnv"], pattern_fnv_hex(N));
    // Chunked too (no Content-Length): streamed, not buffered.
    let r = https_request(
        gw.listener("tls"),
        "big.test",
        &trust,
        "PUT",
        "/upload",
        &[],
        Body::pattern_chunked(N),
    )
    .await
    .unwrap();
    assert_eq!(r.json()["body_len"], N);
    assert_eq!(r.json()["body_fnv"], pattern_fnv_hex(N));
    let (len, ok) = https_download(
        gw.listener("tls"),
        "big.test",
        &trust,
        &format!("/bytes/{N}"),
    )
    .await
    .unwrap();
    assert_eq!(len, N);
    assert!(ok, "every byte matches");
    println!("150 MiB through TLS in {:?}", started.elapsed());
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let b = Backend::websocket_echo("ws");
    let gw = plain(&one(&b), "").start().await;
    let (mut stream, head) = ws_connect(gw.listener("web"), "chat.test", "/socket", None)
        .await
        .unwrap();
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for msg in [&b"hello"[..], &[0u8, 1, 2, 255], &vec![7u8; 100_000]] {
        stream.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(IO_TIMEOUT, stream.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..], msg);
    }
}

async fn tls_upstream_gateway(backend: &Backend, tls: &str) -> Gateway {
    plain(&format!("{}, tls: {{ {tls} }}", one(backend)), "")
        .start()
        .await
}

#[tokio::test]
async fn tls_to_the_backend_is_verified_against_the_ca() {
    let ca = TestCa::new("internal CA");
    let cert = ca.issue(&["app.internal"]);
    let b = Backend::https("secure", &cert);
    let gw = tls_upstream_gateway(
        &b,
        &format!("sni: app.internal, ca: {}", ca.cert_path().display()),
    )
    .await;
    let r = http_get(gw.listener("web"), "/x").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["sni"], "app.internal");
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "http");

    // A backend whose certificate the CA did not sign: 502, never an unverified connection.
    let other_ca = TestCa::new("other CA");
    let other = other_ca.issue(&["app.internal"]);
    let rogue = Backend::https("rogue", &other);
    let gw = tls_upstream_gateway(
        &rogue,
        &format!("sni: app.internal, ca: {}", ca.cert_path().display()),
    )
    .await;
    let r = http_get(gw.listener("web"), "/x").await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(rogue.hits(), 0);

    // The right CA but the wrong name: 502 as well.
    let wrong_name = Backend::https("wrong-name", &ca.issue(&["other.internal"]));
    let gw = tls_upstream_gateway(
        &wrong_name,
        &format!("sni: app.internal, ca: {}", ca.cert_path().display()),
    )
    .await;
    assert_eq!(
        http_get(gw.listener("web"), "/x").await.unwrap().status,
        502
    );
    assert_eq!(wrong_name.hits(), 0);

    // Without `sni`, the backend's address is checked: an IP the certificate does not
    // name is refused rather than silently unverified.
    let gw = tls_upstream_gateway(&b, &format!("ca: {}", ca.cert_path().display())).await;
    assert_eq!(
        http_get(gw.listener("web"), "/x").await.unwrap().status,
        502
    );

    // verify: false is an explicit choice.
    let gw = tls_upstream_gateway(&rogue, "sni: app.internal, verify: false").await;
    assert_eq!(
        http_get(gw.listener("web"), "/x").await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn client_certificate_to_the_backend() {
    let ca = TestCa::new("mtls CA");
    let cert = ca.issue(&["app.internal"]);
    let clients = TestCa::new("backend clients CA");
    let b = Backend::https_mtls("mtls", &cert, clients.cert_path());
    let portico_cert = clients.issue_client("portico");
    let gw = tls_upstream_gateway(
        &b,
        &format!(
            "sni: app.internal, ca: {}, client_cert: {}, client_key: {}",
            ca.cert_path().display(),
            portico_cert.cert.display(),
            portico_cert.key.display()
        ),
    )
    .await;
    let r = http_get(gw.listener("web"), "/x").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["client_cn"], "portico");
    // Without the client certificate the backend refuses: 502.
    let gw = tls_upstream_gateway(
        &b,
        &format!("sni: app.internal, ca: {}", ca.cert_path().display()),
    )
    .await;
    assert_eq!(
        http_get(gw.listener("web"), "/x").await.unwrap().status,
        502
    );
}

#[tokio::test]
async fn http2_end_to_end_to_the_backend() {
    let b = Backend::http("h2c");
    let ca = TestCa::new("h2 CA");
    let cert = ca.issue(&["grpc.test"]);
    let gw = over_tls(&cert, &format!("{}, http2: true", one(&b)))
        .start()
        .await;
    let r = h2_request(
        gw.listener("tls"),
        "grpc.test",
        &TlsClientOpts::trusting(ca.cert_path()),
        "grpc.test",
        "/pkg.Service/Method",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["version"],
        "HTTP/2.0",
        "the backend was spoken to in HTTP/2"
    );
}

#[tokio::test]
async fn a_dead_backend_gets_502_with_a_request_id_fast() {
    let port = free_port();
    let dead = ([127, 0, 0, 1], port).into();
    let gw = plain(&format!("{}, retries: 0", backends(&[dead])), "")
        .start()
        .await;
    let started = Instant::now();
    let r = http_get(gw.listener("web"), "/").await.unwrap();
    assert_eq!(r.status, 502);
    let id = r.header("x-request-id").unwrap();
    assert!(r.text().contains(id));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn body_over_the_route_limit_is_413() {
    let b = Backend::http("app");
    let gw = plain(&one(&b), ", max_body_bytes: 1000").start().await;
    let r = gw.send("POST", "/", &[], vec![b'x'; 1001]).await;
    assert_eq!(r.status, 413);
    assert_eq!(b.hits(), 0, "refused up front from Content-Length");
    let r = gw.send("POST", "/", &[], vec![b'x'; 1000]).await;
    assert_eq!(r.status, 200);
    // Without Content-Length the body is counted as it streams.
    let r = gw
        .send("POST", "/", &[], Body::pattern_chunked(100_000))
        .await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn oversized_request_head_is_431_and_a_slow_head_is_cut_off() {
    let b = Backend::http("app");
    let gw = plain(&one(&b), "")
        .server("limits: { max_header_bytes: 4096, header_timeout: 1s }")
        .start()
        .await;
    let big = "v".repeat(5000);
    let r = gw.get("/", &[("x-big", &big)]).await;
    assert_eq!(r.status, 431);
    assert!(r.header("x-request-id").is_some());
    assert_eq!(b.hits(), 0);
    let r = gw.get("/", &[("x-small", "v")]).await;
    assert_eq!(r.status, 200);

    // Slowloris: a head dribbled out a byte at a time is cut off after header_timeout.
    let started = Instant::now();
    let mut s = connect_tcp(gw.listener("web")).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let closed = dribble_until_closed(&mut s, b"X", Duration::from_millis(100), 40)
        .await
        .is_some();
    assert!(closed, "the connection was closed");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "cut after {took:?}"
    );
    assert_eq!(b.hits(), 1);
}

/// Backend connections are reused at an edge proxy's concurrency: 300 requests at once, twice,
/// open the backend connections once. (With Pingora's own pool of 128 per thread, 172 of them
/// were closed after each round and opened again in the next.) A small
/// `server.upstream_keepalive_pool` shows that the setting is what decides.
#[tokio::test]
async fn backend_connections_are_reused_at_high_concurrency() {
    const AT_ONCE: usize = 300;
    for pool in [None, Some(16)] {
        let backend = Backend::http("app");
        let mut config = plain(&one(&backend), "").server("threads: 1");
        if let Some(p) = pool {
            config = config.server(&format!("upstream_keepalive_pool: {p}"));
        }
        let gw = config.start().await;
        let web = gw.listener("web");
        // Each request waits 400 ms at the backend, so the round's requests overlap there.
        let round = || async {
            let tasks: Vec<_> = (0..AT_ONCE)
                .map(|_| tokio::spawn(http_get(web, "/sleep/400")))
                .collect();
            for t in tasks {
                let r = t.await.unwrap().expect("GET /sleep/400");
                assert_eq!(r.status, 200, "{}", r.text());
            }
        };
        round().await;
        let first = backend.connections();
        assert!(
            first >= AT_ONCE as u64 / 2,
            "round 1 opened only {first} connections"
        );
        round().await;
        let opened_again = backend.connections() - first;
        match pool {
            None => assert!(
                opened_again <= first / 10,
                "default pool: round 2 opened {opened_again} new connections after {first}"
            ),
            Some(p) => assert!(
                opened_again >= first / 2,
                "pool of {p}: round 2 opened only {opened_again} new connections after {first}"
            ),
        }
    }
}

/// One worker thread (`threads: 1`: tokio's single-thread scheduler, docs/deployment.md
/// "Worker threads") still serves everything at once: 16 streams of one HTTP/2 connection and
/// 8 HTTP/1.1 connections, each request waiting 500 ms at the backend, all answered together
/// in about one wait rather than one after another (24 × 500 ms).
#[tokio::test]
async fn one_worker_thread_serves_streams_and_connections_at_once() {
    let ca = TestCa::new("one worker CA");
    let cert = ca.issue(&["one.test"]);
    let backend = Backend::http("app");
    let gw = over_tls(&cert, &one(&backend))
        .server("threads: 1")
        .start()
        .await;
    let tls = gw.listener("tls");
    let h2 = HttpConn::tls(
        tls,
        "one.test",
        &TlsClientOpts::trusting(ca.cert_path()).alpn(&["h2"]),
    )
    .await
    .unwrap();
    assert_eq!(h2.version(), http::Version::HTTP_2);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut stream = h2.another_stream().expect("an HTTP/2 connection");
        tasks.push(tokio::spawn(async move { stream.get("/sleep/500").await }));
    }
    for _ in 0..8 {
        let trust = TlsClientOpts::trusting(ca.cert_path()).alpn(&["http/1.1"]);
        tasks.push(tokio::spawn(async move {
            HttpConn::tls(tls, "one.test", &trust)
                .await?
                .get("/sleep/500")
                .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap().expect("GET /sleep/500");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(2_500),
        "24 requests of 500 ms took {took:?}: served one after another"
    );
    assert_eq!(backend.hits(), 24);
}

/// `server.header_case: normalize`: names reach an HTTP/1 backend and an HTTP/1.1 client in
/// Pingora's form without spellings (a dozen common ones titled, the rest lower case), the
/// ones Portico and the plugins add too, and the values, repeats, order and the backend's own
/// reason phrase are as before. Portico's own answers (a 404) are written the same way.
#[tokio::test]
async fn header_case_normalize_writes_names_lower_case_both_ways() {
    const HEAD: &str =
        "HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\
        X-Backend-Spelling: A\r\nSet-Cookie: one=1\r\nset-cookie: two=2\r\n\r\nok";
    let (upstream_addr, mut seen) = recording_backend(HEAD).await;
    let ca = TestCa::new("header case CA");
    let cert = ca.issue(&["shop.test"]);
    let gw = Config::admin_only()
        .server("header_case: normalize")
        .listener("tls", &tls(&[&cert], ""))
        .upstream("app", &backends(&[upstream_addr]))
        .route(
            "name: all, match: { hosts: [shop.test] }, upstream: app, plugins: [ \
             { headers: { request: { set: { X-Plugin-Said: yes } }, \
                          response: { set: { X-Served-By: portico } } } } ]",
        )
        .start()
        .await;

    let answer = raw_exchange(
        gw.listener("tls"),
        b"GET /x HTTP/1.1\r\nHost: shop.test\r\nX-Client-Spelling: B\r\nUser-Agent: t\r\n\
          Connection: close\r\n\r\n",
        Some("shop.test"),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200 Fine Thanks\r\n"),
        "{answer}"
    );
    assert_lines(
        &answer,
        &[
            "\r\nContent-Type: text/plain\r\n",
            "\r\nx-backend-spelling: A\r\n",
            "\r\nSet-Cookie: one=1\r\n",
            "\r\nSet-Cookie: two=2\r\n",
            "\r\nx-served-by: portico\r\n",
            "\r\nx-request-id: ",
        ],
    );
    assert!(answer.find("one=1") < answer.find("two=2"), "{answer}");
    assert!(!answer.contains("X-Backend-Spelling"), "{answer}");

    let request = seen.recv().await.unwrap();
    assert!(request.starts_with("GET /x HTTP/1.1\r\n"), "{request}");
    assert_lines(
        &request,
        &[
            "\r\nHost: shop.test\r\n",
            "\r\nx-client-spelling: B\r\n",
            "\r\nuser-agent: t\r\n",
            "\r\nx-forwarded-for: 127.0.0.1\r\n",
            "\r\nx-forwarded-proto: https\r\n",
            "\r\nx-real-ip: 127.0.0.1\r\n",
            "\r\nx-plugin-said: yes\r\n",
            "\r\nx-request-id: ",
        ],
    );
    assert!(!request.contains("X-Client-Spelling"), "{request}");

    // Portico's own answer: no route for this host.
    let answer = raw_exchange(
        gw.listener("tls"),
        b"GET / HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
        Some("shop.test"),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(answer.contains("\r\nx-request-id: "), "{answer}");
    assert!(answer.contains("\r\nContent-Length: "), "{answer}");

    // Any other value is refused, with its key and line.
    let yaml = "listeners:\n  - { name: web, listen: \"127.0.0.1:1\" }\n\
                server:\n  header_case: lower\n";
    let (code, out) = validate_config(yaml).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("server.header_case") && out.contains("(line 4)"),
        "{out}"
    );
}

/// A backend head that fills Pingora's header maps (eleven headers, one repeated), in mixed
/// case, behind `rate_limit` and `headers`, which add response headers after it: an HTTP/2
/// client gets every header the backend sent (repeats in order) and every one added, and an
/// HTTP/1.1 client on the same listener still gets the backend's spelling. (For HTTP/2 clients
/// Portico drops the spellings before adding headers: PLUGINS.md, the `response` hook.)
#[tokio::test]
async fn response_headers_reach_http2_and_http1_clients_whole() {
    const HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\
        X-Backend-Spelling: A\r\nSet-Cookie: one=1\r\nset-cookie: two=2\r\nCache-Control: no-store\r\n\
        ETag: \"v1\"\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nVary: Accept\r\n\r\nok";
    let (upstream_addr, _heads) = recording_backend(HEAD).await;
    let ca = TestCa::new("response head CA");
    let cert = ca.issue(&["shop.test"]);
    let gw = Config::admin_only()
        .listener("tls", &tls(&[&cert], ""))
        .upstream("app", &backends(&[upstream_addr]))
        .route(
            "name: all, upstream: app, plugins: [ \
             { rate_limit: { per_second: 100, burst: 100 } }, \
             { headers: { response: { set: { X-Served-By: portico, X-Frame-Options: DENY } } } } ]",
        )
        .start()
        .await;
    let opts = TlsClientOpts::trusting(ca.cert_path());

    for _ in 0..3 {
        let r = h2_request(gw.listener("tls"), "shop.test", &opts, "shop.test", "/")
            .await
            .unwrap();
        assert_eq!((r.status, r.version.as_str()), (200, "HTTP/2.0"));
        assert_eq!(r.text(), "ok");
        let all = |name: &str| -> Vec<&str> {
            r.headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(all("set-cookie"), ["one=1", "two=2"], "{:?}", r.headers);
        for (name, value) in [
            ("content-type", "text/plain"),
            ("x-backend-spelling", "A"),
            ("cache-control", "no-store"),
            ("etag", "\"v1\""),
            ("x-a", "1"),
            ("x-b", "2"),
            ("x-c", "3"),
            ("vary", "Accept"),
            ("ratelimit-limit", "200"),
            ("x-served-by", "portico"),
            ("x-frame-options", "DENY"),
        ] {
            assert_eq!(all(name), [value], "{name}: {:?}", r.headers);
        }
        assert!(r.header("ratelimit-remaining").is_some(), "{:?}", r.headers);
        assert!(r.header("x-request-id").is_some_and(|id| !id.is_empty()));
        assert!(r.header("date").is_some());
    }

    // HTTP/1.1 over the same listener: the backend's spelling, as it wrote it.
    let answer = raw_exchange(
        gw.listener("tls"),
        b"GET / HTTP/1.1\r\nHost: shop.test\r\nConnection: close\r\n\r\n",
        Some("shop.test"),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert_lines(
        &answer,
        &[
            "\r\nX-Backend-Spelling: A\r\n",
            "\r\nSet-Cookie: one=1\r\n",
            "\r\nset-cookie: two=2\r\n",
            "\r\nETag: \"v1\"\r\n",
            "\r\nRateLimit-Limit: 200\r\n",
        ],
    );
}
