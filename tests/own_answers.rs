//! After an answer Portico made itself (404, 413, 502, 503, 504, 400, ...), the client's
//! connection is either still usable for its next request or the answer said
//! `Connection: close` and the connection then ends cleanly (FIN, not a reset): a keep-alive
//! answer is never followed by a reset (docs/security.md).
//!
//! Raw sockets: a client library would open a new connection when it likes, and hide what
//! happened to the old one.

use crate::common::*;
use std::io::ErrorKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer read off a raw connection.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn closes(&self) -> bool {
        self.head
            .lines()
            .any(|l| l.to_ascii_lowercase().replace(' ', "") == "connection:close")
    }
}

/// Reads more of an answer into `buf`; fails on a close or a reset before it is whole.
async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 8192];
    let n = tokio::time::timeout(IO_TIMEOUT, s.read(&mut chunk))
        .await
        .expect("an answer in time")
        .expect("reading the answer");
    assert!(
        n > 0,
        "closed before a whole answer: {:?}",
        String::from_utf8_lossy(buf)
    );
    buf.extend_from_slice(&chunk[..n]);
}

/// Reads one response (head, then a Content-Length or chunked body) and nothing more.
async fn read_answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(s, buf).await;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    let status = head[9..12].parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let body = if let Some(n) = header("content-length") {
        let n: usize = n.parse().unwrap();
        while buf.len() < n {
            read_more(s, buf).await;
        }
        buf.drain(..n).collect()
    } else if header("transfer-encoding").is_some() {
        while !buf.windows(5).any(|w| w == b"0\r\n\r\n") {
            read_more(s, buf).await;
        }
        std::mem::take(buf)
    } else {
        Vec::new()
    };
    Answer { status, head, body }
}

/// What became of the connection after `answer`: usable for a next request (checked by
/// sending one), or closed cleanly after an answer that said so. Panics otherwise.
async fn after(s: &mut TcpStream, mut buf: Vec<u8>, answer: &Answer, what: &str) -> &'static str {
    if answer.closes() {
        assert!(buf.is_empty(), "{what}: bytes after the answer: {buf:?}");
        let mut chunk = [0u8; 4096];
        return match tokio::time::timeout(IO_TIMEOUT, s.read(&mut chunk)).await {
            Ok(Ok(0)) => "closed",
            Ok(Ok(n)) => panic!(
                "{what}: more bytes after a closing answer: {:?}",
                &chunk[..n]
            ),
            Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => {
                panic!("{what}: reset after a Connection: close answer, not a clean close")
            }
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: said Connection: close, but stayed open"),
        };
    }
    let next = b"GET /app/next HTTP/1.1\r\nHost: own.test\r\n\r\n";
    if let Err(e) = s.write_all(next).await {
        panic!("{what}: a keep-alive answer, then the next request could not be sent: {e}");
    }
    let mut chunk = [0u8; 8192];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(IO_TIMEOUT, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(Ok(_)) => panic!("{what}: a keep-alive answer, then closed at the next request"),
            Ok(Err(e)) => panic!("{what}: a keep-alive answer, then {e} at the next request"),
            Err(_) => panic!("{what}: no answer to the next request"),
        }
    }
    let second = read_answer(s, &mut buf).await;
    assert_eq!(
        second.status, 200,
        "{what}: the next request on the connection: {}",
        second.head
    );
    assert!(
        String::from_utf8_lossy(&second.body).contains("/app/next"),
        "{what}: not the backend's answer to the next request"
    );
    "kept"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_its_own_answers_a_connection_is_usable_or_closed_cleanly() {
    let app = Backend::http("app");
    let sick = Backend::http("sick");
    sick.set_healthy(false);
    let refused = free_port();
    let dead = ([127, 0, 0, 1], refused).into();
    let yaml = Config::with_app(&app)
        .server("trusted_proxies: [127.0.0.1/32]")
        .upstream(
            "slow",
            &format!(
                "{}, timeouts: {{ read: 300ms }}, retries: 0",
                backends(&[app.addr()])
            ),
        )
        .upstream("dead", &format!("{}, retries: 0", backends(&[dead])))
        .upstream(
            "down",
            &format!(
                "{}, health_check: {{ path: /healthz, interval: 200ms }}",
                backends(&[sick.addr()])
            ),
        )
        .route("name: app, match: { path: { prefix: /app } }, upstream: app")
        .route(
            "name: small, match: { path: { prefix: /small } }, upstream: app, max_body_bytes: 16",
        )
        .route("name: slow, match: { path: { prefix: /sleep } }, upstream: slow")
        .route("name: dead, match: { path: { prefix: /dead } }, upstream: dead")
        .route("name: down, match: { path: { prefix: /down } }, upstream: down")
        .build();
    let gw = Gateway::start(&yaml).await;
    let big = "x".repeat(4000);
    let huge = "y".repeat(1 << 20);
    let chunked_big = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    // (what, request bytes, the status Portico answers with)
    let cases: Vec<(&str, String, u16)> = vec![
        ("404", "GET /nowhere HTTP/1.1\r\nHost: own.test\r\n\r\n".into(), 404),
        (
            "404 with a small body",
            "POST /nowhere HTTP/1.1\r\nHost: own.test\r\nContent-Length: 5\r\n\r\nhello".into(),
            404,
        ),
        (
            "413 by Content-Length",
            format!("POST /small HTTP/1.1\r\nHost: own.test\r\nContent-Length: {}\r\n\r\n{big}", big.len()),
            413,
        ),
        (
            "413 by Content-Length, a little over",
            "POST /small HTTP/1.1\r\nHost: own.test\r\nContent-Length: 17\r\n\r\n12345678901234567".into(),
            413,
        ),
        (
            "413 chunked",
            format!("POST /small HTTP/1.1\r\nHost: own.test\r\nTransfer-Encoding: chunked\r\n\r\n{chunked_big}"),
            413,
        ),
        (
            "413 by Content-Length, 1 MiB sent",
            format!("POST /small HTTP/1.1\r\nHost: own.test\r\nContent-Length: {}\r\n\r\n{huge}", huge.len()),
            413,
        ),
        (
            "404 with a 1 MiB body",
            format!("POST /nowhere HTTP/1.1\r\nHost: own.test\r\nContent-Length: {}\r\n\r\n{huge}", huge.len()),
            404,
        ),
        ("502 backend refused", "GET /dead HTTP/1.1\r\nHost: own.test\r\n\r\n".into(), 502),
        (
            "502 with a body",
            "POST /dead HTTP/1.1\r\nHost: own.test\r\nContent-Length: 5\r\n\r\nhello".into(),
            502,
        ),
        ("503 no healthy backend", "GET /down HTTP/1.1\r\nHost: own.test\r\n\r\n".into(), 503),
        ("504 backend timed out", "GET /sleep/2000 HTTP/1.1\r\nHost: own.test\r\n\r\n".into(), 504),
        (
            "400 X-Forwarded-For",
            "GET /app/x HTTP/1.1\r\nHost: own.test\r\nX-Forwarded-For: garbage\r\n\r\n".into(),
            400,
        ),
        (
            "400 X-Forwarded-For, with a body",
            "POST /app/x HTTP/1.1\r\nHost: own.test\r\nX-Forwarded-For: garbage\r\nContent-Length: 5\r\n\r\nhello".into(),
            400,
        ),
    ];
    // Each case on a task of its own, so that one failure does not hide the others.
    let web = gw.listener("web");
    let mut report = Vec::new();
    let mut failed = 0;
    for (what, request, status) in cases {
        let case = tokio::spawn(async move {
            let mut s = connect_tcp(web).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            let answer = read_answer(&mut s, &mut buf).await;
            assert_eq!(answer.status, status, "{what}: {}", answer.head);
            after(&mut s, buf, &answer, what).await
        });
        match case.await {
            Ok(fate) => report.push(format!("{what}: {fate}")),
            Err(_) => {
                failed += 1;
                report.push(format!("{what}: FAILED (above)"));
            }
        }
    }
    println!("{}", report.join("\n"));
    assert_eq!(failed, 0, "{}", report.join("\n"));
}

/// RFC 9112 section 9.6: a server that closes while the client is still sending should
/// keep reading for a while, or the client's next write meets a reset. Here the client
/// reads the 413 after the start of its body, then sends the rest: every write must get
/// through, and the connection then ends with a FIN.
#[tokio::test]
async fn a_client_still_sending_after_a_closing_answer_meets_no_reset() {
    let app = Backend::http("app");
    let yaml = Config::with_app(&app)
        .route("name: small, upstream: app, max_body_bytes: 16")
        .build();
    let gw = Gateway::start(&yaml).await;
    let total = 1usize << 20;
    let mut s = connect_tcp(gw.listener("web")).await.unwrap();
    let head =
        format!("POST /upload HTTP/1.1\r\nHost: own.test\r\nContent-Length: {total}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b'z'; 1000]).await.unwrap();
    let mut buf = Vec::new();
    let answer = read_answer(&mut s, &mut buf).await;
    assert_eq!(answer.status, 413, "{}", answer.head);
    assert!(answer.closes(), "{}", answer.head);
    let mut sent = 1000;
    while sent < total {
        let n = (total - sent).min(64 * 1024);
        if let Err(e) = s.write_all(&vec![b'z'; n]).await {
            panic!("after {sent} of {total} body bytes: {e}");
        }
        sent += n;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The rest of the body was read and dropped; then a clean close.
    let mut chunk = [0u8; 1024];
    let end = tokio::time::timeout(IO_TIMEOUT, s.read(&mut chunk))
        .await
        .expect("closed in time");
    assert!(matches!(end, Ok(0)), "{end:?}");
    assert_eq!(app.hits(), 0);
}
