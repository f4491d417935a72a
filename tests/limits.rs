//! Every limit of `server.limits` (and the route's `max_body_bytes`) with what a client sees
//! when it crosses it: header count and size (431), request line (414), body (413), a slow
//! or silent head (closed after `header_timeout`), an idle keep-alive connection (closed
//! after `idle_timeout`), connections per listener and per client address (closed at
//! once), HTTP/2 streams per connection (REFUSED_STREAM) and rapid reset (GOAWAY).

use crate::common::h2_frames::*;
use crate::common::*;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// A plain listener `web` and a TLS listener `tls` (for `t.test`) with `server.limits` set
/// to `limits` (the inside of a flow mapping), in front of `backend`, no retries.
fn limited(ca: &TestCa, backend: &Backend, limits: &str) -> Config {
    Config::new()
        .server(&format!("limits: {{ {limits} }}"))
        .listener("tls", &tls(&[&ca.issue(&["t.test", "localhost"])], ""))
        .upstream(
            "app",
            &format!("{}, retries: 0", backends(&[backend.addr()])),
        )
}

async fn start(limits: &str) -> (TestCa, Gateway, Backend) {
    let ca = TestCa::new("limits CA");
    let backend = Backend::http("app");
    let gw = limited(&ca, &backend, limits)
        .route("name: all, upstream: app")
        .start()
        .await;
    (ca, gw, backend)
}

/// A GET with `n` header fields in all (Host included).
fn get_with_headers(n: usize) -> Vec<u8> {
    let mut req = String::from("GET / HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n");
    for i in 2..n {
        req.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn header_count_and_size_over_the_limits_get_431() {
    // Defaults: 100 header fields, 32768 bytes of head.
    let (_ca, gw, backend) = start("").await;
    let web = gw.listener("web");
    // (The test backend, hyper, takes at most 100 header fields itself, and Portico adds
    // five forwarding headers.)
    let ex = exchange(web, &get_with_headers(95), None, WAIT).await;
    assert_eq!(ex.status(), Some(200), "{}", ex.text());
    let ex = exchange(web, &get_with_headers(101), None, WAIT).await;
    assert_eq!(ex.status(), Some(431), "{}", ex.text());
    assert!(
        ex.text().contains("request id"),
        "Portico's own error body: {}",
        ex.text()
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(33_000)
    );
    assert_eq!(
        exchange(web, big.as_bytes(), None, WAIT).await.status(),
        Some(431)
    );
    assert_eq!(backend.hits(), 1);

    // Configured lower; over HTTP/2 too.
    let (_ca, gw, backend) = start("max_header_count: 10").await;
    assert_eq!(
        exchange(gw.listener("web"), &get_with_headers(10), None, WAIT)
            .await
            .status(),
        Some(200)
    );
    assert_eq!(
        exchange(gw.listener("web"), &get_with_headers(11), None, WAIT)
            .await
            .status(),
        Some(431)
    );
    let mut h2 = HttpConn::tls(
        gw.listener("tls"),
        "t.test",
        &TlsClientOpts::insecure().alpn(&["h2"]),
    )
    .await
    .unwrap();
    let many: Vec<(String, String)> = (0..11)
        .map(|i| (format!("x-h{i}"), i.to_string()))
        .collect();
    let headers: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_eq!(
        h2.request("GET", "/", &headers, Body::empty())
            .await
            .unwrap()
            .status,
        431
    );
    assert_eq!(
        h2.request("GET", "/", &headers[..5], Body::empty())
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(backend.hits(), 2);
}

#[tokio::test]
async fn a_request_line_over_the_limit_gets_414() {
    let (_ca, gw, backend) = start("").await;
    let line = |len: usize| {
        format!(
            "GET /{} HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n",
            "a".repeat(len - 14)
        )
    };
    // The default limit is 8192 bytes of request line ("GET /" + path + " HTTP/1.1").
    assert_eq!(
        exchange(gw.listener("web"), line(8192).as_bytes(), None, WAIT)
            .await
            .status(),
        Some(200)
    );
    let ex = exchange(gw.listener("web"), line(8193).as_bytes(), None, WAIT).await;
    assert_eq!(ex.status(), Some(414), "{}", ex.text());
    assert_eq!(backend.hits(), 1);

    let (_ca, gw, backend) = start("max_request_line_bytes: 100").await;
    assert_eq!(
        exchange(
            gw.listener("tls"),
            line(101).as_bytes(),
            Some("t.test"),
            WAIT
        )
        .await
        .status(),
        Some(414)
    );
    // Over HTTP/2 too: (path, status).
    for (path, status) in [
        (format!("/{}", "b".repeat(120)), 414),
        ("/short".into(), 200),
    ] {
        let r = h2_request(
            gw.listener("tls"),
            "t.test",
            &TlsClientOpts::insecure(),
            "t.test",
            &path,
        )
        .await
        .unwrap();
        assert_eq!(r.status, status, "{path}");
    }
    assert_eq!(backend.seen_paths(), ["/short"]);
}

#[tokio::test]
async fn a_body_over_the_route_limit_gets_413_up_front_and_while_streaming() {
    let ca = TestCa::new("limits CA");
    let backend = Backend::http("app");
    let gw = limited(&ca, &backend, "max_body_bytes: 5000")
        .route(
            "name: small, upstream: app, match: { path: { prefix: /small } }, max_body_bytes: 1000",
        )
        .route("name: all, upstream: app")
        .start()
        .await;
    let web = gw.listener("web");
    let post = |path: &'static str, n: usize| {
        http_request(web, "POST", path, &[], Body::from(vec![b'x'; n]))
    };
    assert_eq!(post("/small", 1000).await.unwrap().status, 200);
    // Declared too large: refused before the backend hears of it.
    let r = post("/small", 1001).await.unwrap();
    assert_eq!(r.status, 413);
    assert!(
        r.text().contains("413 request body too large"),
        "{}",
        r.text()
    );
    assert_eq!(post("/other", 5000).await.unwrap().status, 200);
    assert_eq!(post("/other", 5001).await.unwrap().status, 413);
    assert_eq!(backend.hits(), 2);
    // Chunked: counted as it streams.
    let chunked = format!(
        "POST /small HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        800,
        "y".repeat(800),
        800,
        "y".repeat(800)
    );
    let ex = exchange(web, chunked.as_bytes(), None, WAIT).await;
    assert_eq!(ex.status(), Some(413), "{}", ex.text());
    assert!(ex.closed);
}

#[tokio::test]
async fn a_slow_or_silent_request_head_is_cut_off_after_header_timeout() {
    let (_ca, gw, _backend) = start("header_timeout: 1s").await;
    for sni in [None, Some("t.test")] {
        let listener = if sni.is_some() {
            gw.listener("tls")
        } else {
            gw.listener("web")
        };
        // Silent.
        let start = Instant::now();
        let mut s = raw_connect(listener, sni).await.unwrap();
        let (_, closed) = read_until_close(&mut s, WAIT).await;
        assert!(closed, "a silent connection must be closed");
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "closed after {:?}",
            start.elapsed()
        );
        // Slowloris: a header line every 200 ms, never the blank line.
        let mut s = raw_connect(listener, sni).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t.test\r\n")
            .await
            .unwrap();
        let cut = dribble_until_closed(&mut s, b"X-A: y\r\n", Duration::from_millis(200), 25).await;
        let cut = cut.expect("the slow head must be cut off");
        assert!(cut < Duration::from_millis(2500), "cut after {cut:?}");
    }
}

#[tokio::test]
async fn an_idle_keepalive_connection_is_closed_after_idle_timeout() {
    let (_ca, gw, _backend) = start("header_timeout: 10s, idle_timeout: 1s").await;
    let request = b"GET / HTTP/1.1\r\nHost: t.test\r\n\r\n";
    for sni in [None, Some("t.test")] {
        let listener = if sni.is_some() {
            gw.listener("tls")
        } else {
            gw.listener("web")
        };
        // Idle after a request.
        let mut s = raw_connect(listener, sni).await.unwrap();
        s.write_all(request).await.unwrap();
        let start = Instant::now();
        let (bytes, closed) = read_until_close(&mut s, WAIT).await;
        assert_eq!(statuses(&bytes), [200]);
        assert!(
            closed && start.elapsed() < Duration::from_millis(2500),
            "closed: {closed} after {:?}",
            start.elapsed()
        );
        // A second head sent slowly counts against the same clock.
        let mut s = raw_connect(listener, sni).await.unwrap();
        s.write_all(request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let start = Instant::now();
        s.write_all(b"GET /second HTTP/1.1\r\n").await.unwrap();
        let closed = dribble_until_closed(&mut s, b"X-A: b\r\n", Duration::from_millis(150), 20)
            .await
            .is_some();
        assert!(
            closed && start.elapsed() < Duration::from_millis(2500),
            "second head: closed {closed} after {:?}",
            start.elapsed()
        );
    }
    // Within the idle timeout, keep-alive works as usual.
    let mut conn = HttpConn::plain(gw.listener("web")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(conn.get("/").await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A kept-alive HTTP/1 connection waits on one clock (listener/h1.rs): after the first
/// request it is moved from `header_timeout` to `idle_timeout` (here later, which tokio's timer
/// does without re-arming), and after a request that outlasted it (the clock ran out while
/// the backend answered) it is set again. Both must give the next request its full
/// `idle_timeout`, and still close the connection when that passes.
#[tokio::test]
async fn the_connection_clock_follows_each_request() {
    let (_ca, gw, _backend) = start("header_timeout: 1s, idle_timeout: 3s").await;
    let opts = TlsClientOpts::insecure().alpn(&["http/1.1"]);
    for name in ["web", "tls"] {
        let addr = gw.listener(name);
        let mut conn = match name {
            "web" => HttpConn::plain(addr).await.unwrap(),
            _ => HttpConn::tls(addr, "t.test", &opts).await.unwrap(),
        };
        assert_eq!(conn.get("/first").await.unwrap().status, 200, "{name}");
        // Past the first head's 1 s, within the 3 s idle time.
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(conn.get("/second").await.unwrap().status, 200, "{name}");
        // A request slower than the clock: it runs out while the backend answers.
        let slow = conn.get("/sleep/3500").await.unwrap();
        assert_eq!(slow.status, 200, "{name}");
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(conn.get("/after-slow").await.unwrap().status, 200, "{name}");
        // And idle past 3 s: closed.
        tokio::time::sleep(Duration::from_millis(4000)).await;
        assert!(conn.get("/too-late").await.is_err(), "{name}: still open");
    }
}

/// The listeners of [`start`]'s gateway, with the SNI a raw client sends to each.
const BOTH_LISTENERS: [(&str, Option<&str>); 2] = [("tls", Some("t.test")), ("web", None)];

/// Asserts that the backend's answers (JSON with `"path"`) for `paths` are all in `text`, in
/// that order.
fn assert_answered_in_order(text: &str, paths: &[&str], context: &str) {
    let at: Vec<Option<usize>> = paths
        .iter()
        .map(|p| text.find(&format!("\"path\":\"{p}\"")))
        .collect();
    assert!(
        at.iter().all(Option::is_some) && at.windows(2).all(|w| w[0] < w[1]),
        "{context}: {text}"
    );
}

/// Between requests a kept-alive connection, TLS or plain, waits outside Pingora
/// (`next_request` in listener.rs), reading the first bytes of the next request itself and
/// handing them back.
/// Requests after a pause, and a head whose first part arrives well before the rest, are
/// answered in order, with nothing lost or repeated.
#[tokio::test]
async fn kept_alive_connections_answer_after_a_pause_and_a_split_head() {
    let (_ca, gw, backend) = start("idle_timeout: 5s").await;
    for (n, (listener, sni)) in BOTH_LISTENERS.into_iter().enumerate() {
        let mut s = raw_connect(gw.listener(listener), sni).await.unwrap();
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: t.test\r\n\r\n");
        let mut answered = Vec::new();
        for path in ["/one", "/two"] {
            s.write_all(get(path).as_bytes()).await.unwrap();
            s.flush().await.unwrap();
            let (bytes, closed) = read_until_close(&mut s, Duration::from_millis(700)).await;
            assert_eq!((statuses(&bytes), closed), (vec![200], false), "{path}");
            answered.extend(bytes);
            // Idle: the connection is parked until the next request's bytes arrive.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        // The first write holds only the start of the head; the rest follows 300 ms later.
        s.write_all(b"GET /three HTTP/1.1\r\nHo").await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.write_all(b"st: t.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        s.flush().await.unwrap();
        let start = Instant::now();
        let (bytes, closed) = read_until_close(&mut s, WAIT).await;
        assert_eq!(
            statuses(&bytes),
            [200],
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(
            closed && start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        answered.extend(bytes);
        let text = String::from_utf8_lossy(&answered);
        assert_answered_in_order(&text, &["/one", "/two", "/three"], listener);
        assert_eq!(backend.hits(), 3 * (n as u64 + 1), "{listener}");
    }
}

/// HTTP/1.1 pipelining (RFC 9112 9.3.2): requests sent back to back without waiting, in one
/// write, on TLS and plain connections, a POST with its body among them, are all answered, in
/// order; none is refused or lost, and the backend sees each once.
#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_ca, gw, backend) = start("").await;
    for (n, (listener, sni)) in BOTH_LISTENERS.into_iter().enumerate() {
        let mut s = raw_connect(gw.listener(listener), sni).await.unwrap();
        let burst = "GET /p1 HTTP/1.1\r\nHost: t.test\r\n\r\n\
                     POST /p2 HTTP/1.1\r\nHost: t.test\r\nContent-Length: 5\r\n\r\nhello\
                     GET /p3 HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n";
        s.write_all(burst.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        let (bytes, closed) = read_until_close(&mut s, WAIT).await;
        let text = String::from_utf8_lossy(&bytes);
        // (Counted by status line: the backend's JSON bodies end in a bare LF.)
        assert_eq!(text.matches("HTTP/1.1 ").count(), 3, "{listener}: {text}");
        assert_eq!(
            text.matches("HTTP/1.1 200 OK\r\n").count(),
            3,
            "{listener}: {text}"
        );
        assert!(closed, "{listener}: the last request asked to close");
        assert_answered_in_order(&text, &["/p1", "/p2", "/p3"], listener);
        assert!(text.contains("\"body\":\"hello\""), "{listener}: {text}");
        assert_eq!(backend.hits(), 3 * (n as u64 + 1), "{listener}");
    }
}

#[tokio::test]
async fn http2_connections_without_a_request_or_left_idle_are_closed() {
    let (_ca, gw, _backend) = start("header_timeout: 1s, idle_timeout: 1s").await;
    // TLS done, ALPN h2, then not even the preface.
    let start = Instant::now();
    let mut s = h2_connect(gw.listener("tls"), "t.test").await;
    let (_, closed) = read_until_close(&mut s, WAIT).await;
    assert!(
        closed && start.elapsed() < Duration::from_millis(2500),
        "no preface: closed {closed} after {:?}",
        start.elapsed()
    );
    // One request, then idle: GOAWAY and close.
    let mut s = h2_connect(gw.listener("tls"), "t.test").await;
    h2_start(&mut s).await;
    s.write_all(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("GET", "/", "t.test", &[]),
    ))
    .await
    .unwrap();
    let start = Instant::now();
    let (frames, closed) = h2_read(&mut s, WAIT, |_| false).await;
    assert!(
        frames
            .iter()
            .any(|f| f.stream == 1 && f.status() == Some(200)),
        "{frames:?}"
    );
    assert!(
        closed && start.elapsed() < Duration::from_millis(3000),
        "idle: closed {closed} after {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn connections_over_the_listener_limit_are_closed_at_once() {
    let (_ca, gw, _backend) = start("max_connections: 3").await;
    let web = gw.listener("web");
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(raw_connect(web, None).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let ex = exchange(web, b"GET / HTTP/1.1\r\nHost: t.test\r\n\r\n", None, WAIT).await;
    assert!(
        ex.closed && ex.bytes.is_empty() && start.elapsed() < Duration::from_secs(2),
        "{ex:?}"
    );
    // A place frees up when a connection ends.
    open.pop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(http_get(web, "/").await.unwrap().status, 200);
    // Each listener counts its own.
    assert_eq!(
        https_get(
            gw.listener("tls"),
            "t.test",
            &TlsClientOpts::insecure(),
            "/"
        )
        .await
        .unwrap()
        .status,
        200
    );
}

#[tokio::test]
async fn connections_over_the_per_address_limit_are_closed_and_trusted_proxies_are_exempt() {
    let ca = TestCa::new("limits CA");
    let backend = Backend::http("app");
    let gw = limited(&ca, &backend, "max_connections_per_ip: 2")
        .server("trusted_proxies: [127.0.0.2]")
        .listener("pp", "proxy_protocol: true")
        .route("name: all, upstream: app")
        .start()
        .await;
    let pp = gw.listener("pp").port();

    // Straight from 127.0.0.1 (not trusted): two, not three.
    let web = gw.listener("web");
    let held = vec![
        raw_connect(web, None).await.unwrap(),
        raw_connect(web, None).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ex = exchange(web, b"GET / HTTP/1.1\r\nHost: t.test\r\n\r\n", None, WAIT).await;
    assert!(
        ex.closed && ex.bytes.is_empty(),
        "third connection from one address: {ex:?}"
    );
    drop(held);

    // Through a trusted proxy (127.0.0.2) with PROXY headers: counted by the client address.
    let via = |src: &'static str| async move {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = sock
            .connect(format!("127.0.0.1:{pp}").parse().unwrap())
            .await
            .unwrap();
        s.write_all(format!("PROXY TCP4 {src} 127.0.0.1 5000 {pp}\r\n").as_bytes())
            .await
            .unwrap();
        s
    };
    let _a = via("203.0.113.5").await;
    let _b = via("203.0.113.5").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = via("203.0.113.5").await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: t.test\r\n\r\n")
        .await
        .unwrap();
    let (bytes, closed) = read_until_close(&mut c, WAIT).await;
    assert!(
        closed && bytes.is_empty(),
        "third connection of 203.0.113.5: {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let mut d = via("203.0.113.6").await;
    d.write_all(b"GET / HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        statuses(&read_until_close(&mut d, WAIT).await.0),
        [200],
        "another client has its own count"
    );
    // The proxy's own connections (PROXY UNKNOWN: no client address) are not limited.
    let mut own = Vec::new();
    for _ in 0..4 {
        own.push(via_unknown(pp).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for mut s in own {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(statuses(&read_until_close(&mut s, WAIT).await.0), [200]);
    }
}

async fn via_unknown(pp: u16) -> tokio::net::TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut s = sock
        .connect(format!("127.0.0.1:{pp}").parse().unwrap())
        .await
        .unwrap();
    s.write_all(b"PROXY UNKNOWN\r\n").await.unwrap();
    s
}

#[tokio::test]
async fn http2_streams_over_the_limit_are_refused() {
    let (_ca, gw, backend) = start("http2_max_concurrent_streams: 3").await;
    let mut s = h2_connect(gw.listener("tls"), "t.test").await;
    h2_start(&mut s).await;
    let (frames, _) = h2_read(&mut s, WAIT, |f| f.kind == SETTINGS && f.flags & ACK == 0).await;
    let settings = frames
        .iter()
        .find(|f| f.kind == SETTINGS && f.flags & ACK == 0)
        .expect("server SETTINGS");
    let advertised = settings
        .payload
        .chunks(6)
        .find(|p| p[..2] == [0, 3])
        .map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
    assert_eq!(advertised, Some(3), "SETTINGS_MAX_CONCURRENT_STREAMS");
    // Four streams left open (no END_STREAM: their bodies are still to come).
    for id in [1u32, 3, 5, 7] {
        let block = request_block("POST", &format!("/open/{id}"), "t.test", &[]);
        s.write_all(&frame(HEADERS, END_HEADERS, id, &block))
            .await
            .unwrap();
    }
    let (frames, _) = h2_read(&mut s, WAIT, |f| {
        f.kind == RST_STREAM && f.stream == 7 || f.kind == GOAWAY
    })
    .await;
    let refused = frames
        .iter()
        .find(|f| f.stream == 7 && f.kind == RST_STREAM || f.kind == GOAWAY)
        .expect("the fourth stream is refused");
    // REFUSED_STREAM (7) or PROTOCOL_ERROR (1).
    assert!(
        matches!(refused.error_code(), Some(7) | Some(1)),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !backend.seen_paths().contains(&"/open/7".to_string()),
        "{:?}",
        backend.seen_paths()
    );
}

/// CVE-2023-44487: open a stream and cancel it at once, `n` times, in one burst.
async fn rapid_reset(gw: &Gateway, n: u32) -> (Vec<Frame>, bool) {
    let mut s = h2_connect(gw.listener("tls"), "t.test").await;
    h2_start(&mut s).await;
    let mut burst = Vec::new();
    for i in 0..n {
        let id = 2 * i + 1;
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block("GET", "/reset", "t.test", &[]),
        ));
        burst.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let _ = s.write_all(&burst).await;
    h2_read(&mut s, WAIT, |f| f.kind == GOAWAY).await
}

#[tokio::test]
async fn http2_rapid_reset_closes_the_connection() {
    let (_ca, gw, backend) = start("").await;
    let (frames, closed) = rapid_reset(&gw, 1000).await;
    let goaway = frames.iter().find(|f| f.kind == GOAWAY);
    assert!(
        goaway.is_some() || closed,
        "the connection must end: {} frames",
        frames.len()
    );
    if let Some(g) = goaway {
        assert_eq!(g.error_code(), Some(0xb), "GOAWAY ENHANCE_YOUR_CALM: {g:?}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        backend.hits() < 200,
        "{} of the cancelled requests reached the backend",
        backend.hits()
    );
    // The gateway itself is fine.
    assert_eq!(
        h2_request(
            gw.listener("tls"),
            "t.test",
            &TlsClientOpts::insecure(),
            "t.test",
            "/after"
        )
        .await
        .unwrap()
        .status,
        200
    );

    // The limit is the config's: raised far above the burst, the same burst is let be.
    let (_ca, gw, _backend) = start("http2_max_pending_resets: 100000").await;
    let (frames, _) = rapid_reset(&gw, 200).await;
    assert!(
        !frames
            .iter()
            .any(|f| f.kind == GOAWAY && f.error_code() == Some(0xb)),
        "{frames:?}"
    );
}
