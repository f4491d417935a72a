//! Request smuggling and framing: every hostile request of `tests/tools/smuggle-cases.txt`
//! (both Content-Length and Transfer-Encoding, differing or repeated lengths, obfuscated
//! Transfer-Encoding, invalid chunk sizes, bare LF, NUL/CR/LF in values, line folding,
//! absolute-form targets with another host) is sent byte for byte, and must get a 4xx or a
//! closed connection, with at most one request at the backend and never the smuggled one.
//! The HTTP/2 cases (connection-specific headers, a content-length that disagrees with the
//! DATA frames) go over TLS with ALPN h2.

use crate::common::h2_frames::*;
use crate::common::*;
use bytes::Bytes;
use std::time::Duration;

/// One hostile request of `tests/tools/smuggle-cases.txt`.
pub struct Case {
    pub name: String,
    pub what: String,
    pub bytes: Vec<u8>,
}

pub fn smuggle_cases() -> Vec<Case> {
    include_str!("tools/smuggle-cases.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let (name, what, bytes) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().expect("three tab-separated fields"),
            );
            Case {
                name: name.into(),
                what: what.into(),
                bytes: unescape(bytes),
            }
        })
        .collect()
}

/// `\r \n \t \0 \\ \xHH` escapes to bytes.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, used) = match b[i + 1] {
                b'r' => (b'\r', 2),
                b'n' => (b'\n', 2),
                b't' => (b'\t', 2),
                b'0' => (0, 2),
                b'\\' => (b'\\', 2),
                b'x' => (u8::from_str_radix(&s[i + 2..i + 4], 16).expect("\\xHH"), 4),
                other => panic!("unknown escape \\{}", other as char),
            };
            out.push(byte);
            i += used;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

struct Setup {
    _ca: TestCa,
    gw: Gateway,
    backend: Backend,
}

async fn setup() -> Setup {
    let ca = TestCa::new("smuggling CA");
    let backend = Backend::http("app");
    let gw = Config::new()
        .listener("tls", &tls(&[&ca.issue(&["t.test", "localhost"])], ""))
        .upstream(
            "app",
            &format!("{}, retries: 0", backends(&[backend.addr()])),
        )
        .route("name: all, upstream: app")
        .start()
        .await;
    Setup {
        _ca: ca,
        gw,
        backend,
    }
}

/// Sends one case and returns what went wrong, if anything.
async fn refused(s: &Setup, case: &Case, sni: Option<&str>) -> Option<String> {
    let listener = if sni.is_some() {
        s.gw.listener("tls")
    } else {
        s.gw.listener("web")
    };
    let hits_before = s.backend.hits();
    let seen_before = s.backend.seen_paths().len();
    let ex = exchange(listener, &case.bytes, sni, Duration::from_secs(3)).await;
    // Let anything the gateway did forward arrive before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hits = s.backend.hits() - hits_before;
    let paths = s.backend.seen_paths()[seen_before..].to_vec();
    eprintln!(
        "{:<22} status {:<5} closed {:<5} backend requests {hits}",
        case.name,
        format!("{:?}", ex.status()),
        ex.closed
    );
    let mut wrong = Vec::new();
    match ex.status() {
        Some(status) if (400..500).contains(&status) => {}
        None => {}
        Some(status) => wrong.push(format!("answered {status}")),
    }
    if statuses(&ex.bytes).len() > 1 {
        wrong.push(format!("answered {} responses", statuses(&ex.bytes).len()));
    }
    if !ex.closed {
        wrong.push("left the connection open".into());
    }
    if hits > 1 {
        wrong.push(format!("the backend got {hits} requests: {paths:?}"));
    }
    if paths.iter().any(|p| p.contains("smuggled")) {
        wrong.push(format!(
            "the smuggled request reached the backend: {paths:?}"
        ));
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "{} ({}): {}\n  response: {:?}",
            case.name,
            case.what,
            wrong.join("; "),
            ex.text()
        )
    })
}

#[tokio::test]
async fn every_hostile_http1_request_is_refused() {
    let s = setup().await;
    let cases = smuggle_cases();
    assert!(cases.len() >= 30, "the catalogue has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        if let Some(f) = refused(&s, case, None).await {
            failures.push(f);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were not refused:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Refusing is not breaking: the gateway still serves.
    let r = s.gw.get("/after", &[("host", "t.test")]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn hostile_requests_over_tls_are_refused_the_same_way() {
    let s = setup().await;
    let mut failures = Vec::new();
    for case in smuggle_cases().iter().filter(|c| {
        [
            "cl-te",
            "te-upper",
            "bare-lf-value",
            "chunk-overflow",
            "absolute-other-host",
        ]
        .contains(&c.name.as_str())
    }) {
        if let Some(f) = refused(&s, case, Some("t.test")).await {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "over TLS:\n{}", failures.join("\n"));
}

/// The strict checks leave well-formed framing alone: a chunked body, a Content-Length
/// body, and an absolute-form target that agrees with its Host.
#[tokio::test]
async fn well_formed_framing_still_passes() {
    let s = setup().await;
    let requests: [&[u8]; 3] = [
        b"POST /chunked HTTP/1.1\r\nHost: t.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
        b"POST /length HTTP/1.1\r\nHost: t.test\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world",
        b"GET http://t.test/absolute HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\n\r\n",
    ];
    for bytes in requests {
        let ex = exchange(s.gw.listener("web"), bytes, None, Duration::from_secs(5)).await;
        assert_eq!(ex.status(), Some(200), "{:?}", ex.text());
        if !bytes.starts_with(b"GET") {
            assert!(
                ex.text().contains("\"body\":\"hello world\""),
                "{}",
                ex.text()
            );
        }
    }
    assert_eq!(s.backend.seen_paths(), ["/chunked", "/length", "/absolute"]);
}

/// HTTP/2 forbids connection-specific header fields (RFC 9113 8.2.2), upper-case names and
/// control characters in values: each such stream is reset or answered 4xx, never proxied.
#[tokio::test]
async fn http2_connection_specific_and_malformed_headers_are_refused() {
    let s = setup().await;
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("connection", b"connection", b"keep-alive"),
        ("transfer-encoding", b"transfer-encoding", b"chunked"),
        ("upgrade", b"upgrade", b"websocket"),
        ("keep-alive", b"keep-alive", b"timeout=5"),
        ("proxy-connection", b"proxy-connection", b"keep-alive"),
        ("te other than trailers", b"te", b"gzip"),
        ("upper-case name", b"X-Upper", b"1"),
        (
            "CRLF in a value",
            b"x-a",
            b"a\r\nTransfer-Encoding: chunked",
        ),
        ("NUL in a value", b"x-a", b"a\0b"),
        ("space in a name", b"x a", b"1"),
    ];
    let mut failures = Vec::new();
    for (what, name, value) in cases {
        let mut stream = h2_connect(s.gw.listener("tls"), "t.test").await;
        h2_start(&mut stream).await;
        let block = request_block("GET", "/smuggled", "t.test", &[(name, value)]);
        stream
            .write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
            .await
            .unwrap();
        let (frames, closed) = h2_read(&mut stream, Duration::from_secs(3), |f| {
            (f.stream == 1 && (f.kind == RST_STREAM || f.kind == HEADERS)) || f.kind == GOAWAY
        })
        .await;
        let answer = frames.iter().find(|f| {
            (f.stream == 1 && (f.kind == RST_STREAM || f.kind == HEADERS)) || f.kind == GOAWAY
        });
        let ok = match answer {
            Some(f) if f.kind == HEADERS => f.status().is_some_and(|st| (400..500).contains(&st)),
            Some(_) => true,
            None => closed,
        };
        if !ok {
            failures.push(format!("{what}: {answer:?} (closed: {closed})"));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    assert_eq!(s.backend.hits(), 0, "proxied: {:?}", s.backend.seen_paths());
}

/// A request whose `content-length` disagrees with the DATA it carries is reset (RFC 9113
/// 8.1.1); what the backend got of it is at most one request with a truncated body.
#[tokio::test]
async fn http2_content_length_disagreeing_with_data_is_refused() {
    let s = setup().await;
    let smuggled: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: t.test\r\n\r\n";
    let cases: [(&str, &str, Vec<u8>); 3] = [
        ("shorter than declared", "10", b"hello".to_vec()),
        (
            "longer than declared",
            "5",
            [b"hello".as_slice(), smuggled].concat(),
        ),
        ("body with length 0", "0", smuggled.to_vec()),
    ];
    for (what, declared, data) in cases {
        let hits_before = s.backend.hits();
        let conn = tls_connect(
            s.gw.listener("tls"),
            "t.test",
            &TlsClientOpts::insecure().alpn(&["h2"]),
        )
        .await
        .unwrap();
        let (mut client, connection) = h2::client::handshake(conn.into_stream()).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method("POST")
            .uri("https://t.test/cl")
            .header("content-length", declared)
            .body(())
            .unwrap();
        let (response, mut body) = client.send_request(request, false).unwrap();
        let _ = body.send_data(Bytes::from(data), true);
        let outcome = tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("an answer within 5 s");
        match outcome {
            Ok(resp) => assert!(
                resp.status().is_client_error(),
                "{what}: answered {}",
                resp.status()
            ),
            Err(e) => assert!(e.is_reset() || e.is_go_away() || e.is_io(), "{what}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            s.backend.hits() - hits_before <= 1,
            "{what}: {:?}",
            s.backend.seen_paths()
        );
        assert!(
            !s.backend
                .seen_paths()
                .iter()
                .any(|p| p.contains("smuggled")),
            "{what}: {:?}",
            s.backend.seen_paths()
        );
    }
}

use tokio::io::AsyncWriteExt;
