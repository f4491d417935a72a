//! The plugins that change what passes through, through the real binary: `headers`,
//! `rewrite`, `compression`, and `access_log`, which records it.

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Route `api` (every path) to `app`, through `plugin` (the inside of its mapping).
fn api_with(plugin: &str) -> String {
    format!("name: api, upstream: app, plugins: [ {{ {plugin} }} ]")
}

// ---------------------------------------------------------------------------------------
// headers

#[tokio::test]
async fn headers_edit_the_upstream_request_and_the_client_response() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route(&api_with(
            "headers: { request: { set: { X-Env: prod }, add: { X-Tag: b }, remove: [X-Debug] }, \
             response: { set: { Cache-Control: no-store }, add: { X-Served-By: portico }, remove: [X-Backend] } }",
        ))
        .start()
        .await;
    let r = gw
        .get("/", &[("x-debug", "1"), ("x-env", "dev"), ("x-tag", "a")])
        .await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert_eq!(h["x-env"], "prod", "set replaces the client's value");
    assert_eq!(h["x-tag"], "a, b", "add keeps the client's value");
    assert!(h.get("x-debug").is_none(), "removed before the upstream");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-served-by"), Some("portico"));
    assert!(
        r.header("x-backend").is_none(),
        "the backend's header is removed"
    );
}

/// PHP, WSGI (Django, Flask) and Rack read `X_Debug` and `X-Debug` as one header: what the
/// config removes or sets must not come back in the other spelling.
#[tokio::test]
async fn headers_removed_or_set_go_in_every_spelling_a_cgi_backend_reads_alike() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route(&api_with(
            "headers: { request: { set: { X-Env: prod }, remove: [X-Debug] } }",
        ))
        .start()
        .await;
    let r = gw
        .get(
            "/",
            &[
                ("x_debug", "1"),
                ("x-debug_", "kept: another name"),
                ("x_env", "dev"),
                ("x_tag", "kept: not configured"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    assert!(h.get("x_debug").is_none(), "{h}");
    assert!(h.get("x_env").is_none(), "{h}");
    assert_eq!(h["x-env"], "prod");
    assert_eq!(h["x_tag"], "kept: not configured");
    assert_eq!(h["x-debug_"], "kept: another name");
}

// ---------------------------------------------------------------------------------------
// rewrite

#[tokio::test]
async fn rewrite_strip_prefix_changes_only_the_upstream_path() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .plugin("access_log: { path: access.log }")
        .route("name: api, match: { path: { prefix: /api } }, upstream: app, plugins: [ { rewrite: { strip_prefix: /api } } ]")
        .start()
        .await;
    assert_eq!(
        gw.get("/api/users/7?page=2&q=a%20b", &[]).await.json()["path"],
        "/users/7?page=2&q=a%20b"
    );
    assert_eq!(gw.get("/api", &[]).await.json()["path"], "/");
    assert_eq!(gw.get("/api/", &[]).await.json()["path"], "/");
    assert_eq!(
        gw.get("/apix", &[]).await.status,
        404,
        "a prefix is whole segments, for the route as for the rewrite"
    );
    assert_eq!(b.seen_paths(), ["/users/7?page=2&q=a%20b", "/", "/"]);

    // The client's request as the log records it is the one it sent.
    let lines = access_lines(&gw.dir().join("access.log"), 4).await;
    assert!(
        lines.iter().any(|l| l["path"] == "/api/users/7"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn rewrite_regex_replaces_with_capture_groups() {
    let b = Backend::http("app");
    // `${...}` in a config file is an environment variable; named and numbered groups are
    // written `$name` / `$1`, and a brace that must reach the regex is written `\x7B` in a
    // double-quoted string.
    let gw = Config::with_app(&b)
        .route(r#"name: old, match: { path: { prefix: /old } }, upstream: app, plugins: [ { rewrite: { regex: "^/old/(?P<section>[a-z]+)/(.*)$", replace: "/new/$section/$2" } } ]"#)
        .route(r#"name: users, match: { path: { prefix: /u } }, upstream: app, plugins: [ { rewrite: { regex: "^/u/([0-9]+)$", replace: "/users/$\x7B1}x" } } ]"#)
        .start()
        .await;
    assert_eq!(
        gw.get("/old/docs/a/b.html?v=1", &[]).await.json()["path"],
        "/new/docs/a/b.html?v=1"
    );
    // A path the regex does not match goes upstream unchanged.
    assert_eq!(gw.get("/old/42", &[]).await.json()["path"], "/old/42");
    assert_eq!(gw.get("/u/42", &[]).await.json()["path"], "/users/42x");
}

// ---------------------------------------------------------------------------------------
// compression

/// A JSON echo of a 3,000-byte request body: about 3.5 kB, text that compresses well.
async fn big_echo(gw: &Gateway, accept_encoding: Option<&str>) -> Response {
    let mut headers = vec![("content-type", "text/plain")];
    if let Some(ae) = accept_encoding {
        headers.push(("accept-encoding", ae));
    }
    let body = "compressible text ".repeat(3000 / 18 + 1)[..3000].to_string();
    http_request(gw.listener("web"), "POST", "/echo", &headers, body)
        .await
        .unwrap()
}

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        "br" => {
            brotli::BrotliDecompress(&mut &body[..], &mut out).expect("valid brotli");
        }
        "zstd" => out = zstd::decode_all(body).expect("valid zstd"),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

#[tokio::test]
async fn compression_encodes_by_accept_encoding() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route(&api_with("compression: { min_size: 1500 }"))
        .start()
        .await;

    let plain = big_echo(&gw, None).await;
    assert_eq!(plain.status, 200);
    assert!(
        plain.header("content-encoding").is_none(),
        "no Accept-Encoding, no compression"
    );
    assert_eq!(plain.json()["body_len"], 3000);

    for (accept, expected) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "gzip"),
        // The highest q-value wins, whatever the client listed first.
        ("gzip;q=0.2, zstd;q=0.5, br;q=0.8", "br"),
        ("deflate, zstd", "zstd"),
    ] {
        let r = big_echo(&gw, Some(accept)).await;
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.header("content-encoding"), Some(expected), "{accept}");
        assert!(
            r.header_all("vary")
                .iter()
                .any(|v| v.to_ascii_lowercase().contains("accept-encoding")),
            "{accept}"
        );
        let decoded = decode(expected, &r.body);
        assert!(
            r.body.len() < decoded.len() / 2,
            "{accept}: {} bytes for {}",
            r.body.len(),
            decoded.len()
        );
        let seen: Value =
            serde_json::from_slice(&decoded).expect("the decoded body is the backend's JSON");
        assert_eq!(seen["body_len"], 3000, "{accept}");
    }

    // Nothing the gateway offers is acceptable: sent as is.
    for accept in ["deflate", "identity", "gzip;q=0, br;q=0, zstd;q=0"] {
        let r = big_echo(&gw, Some(accept)).await;
        assert!(r.header("content-encoding").is_none(), "{accept}");
        assert_eq!(r.json()["body_len"], 3000);
    }
}

/// A backend that answers every request with `Content-Encoding: br` and `body` as it is
/// (bytes a client would decode; the gateway must not touch them).
fn encoded_backend(body: &'static [u8]) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: br\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    addr
}

#[tokio::test]
async fn compression_skips_small_bodies_and_already_encoded_ones() {
    let b = Backend::http("app");
    let encoded: &'static [u8] = Box::leak(vec![b'z'; 4000].into_boxed_slice());
    let pre = encoded_backend(encoded);
    let gw = Config::with_app(&b)
        .upstream("pre", &backends(&[pre]))
        .route(&api_with("compression: { min_size: 1500 }"))
        .route("name: pre, match: { path: { prefix: /pre } }, upstream: pre, plugins: [ { compression: {} } ]")
        .start()
        .await;

    // The echo of a bodiless GET is well under min_size.
    let r = gw.get("/small", &[("accept-encoding", "gzip")]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body.len() < 1500,
        "the test needs a small answer: {} bytes",
        r.body.len()
    );
    assert!(r.header("content-encoding").is_none(), "under min_size");
    assert_eq!(r.json()["path"], "/small");
    // The same route compresses a big one.
    assert_eq!(
        big_echo(&gw, Some("gzip")).await.header("content-encoding"),
        Some("gzip")
    );

    // Already encoded by the backend: passed on byte for byte, whether the client accepts
    // that encoding or only another one.
    for accept in ["br, gzip", "gzip"] {
        let r = gw.get("/pre", &[("accept-encoding", accept)]).await;
        assert_eq!(r.status, 200, "{accept}");
        assert_eq!(r.header("content-encoding"), Some("br"), "{accept}");
        assert_eq!(r.body, encoded, "{accept}: the body was changed");
    }
}

#[tokio::test]
async fn compression_applies_to_answers_plugins_make() {
    let page = "<p>the same paragraph, over and over</p>\n".repeat(40);
    let gw = Config::new()
        .route(&format!(
            "name: page, plugins: [ {{ compression: {{}} }}, \
             {{ respond: {{ body: \"{}\", headers: {{ Content-Type: text/html }} }} }} ]",
            page.replace('\n', "\\n")
        ))
        .start()
        .await;
    let r = gw.get("/", &[("accept-encoding", "gzip")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(String::from_utf8(decode("gzip", &r.body)).unwrap(), page);
}

// ---------------------------------------------------------------------------------------
// access_log

const ACCESS_LOG_FIELDS: [&str; 13] = [
    "ts",
    "request_id",
    "client_ip",
    "method",
    "host",
    "path",
    "status",
    "route",
    "upstream",
    "backend",
    "bytes_sent",
    "duration_ms",
    "upstream_ms",
];

/// The JSON lines of an access log, once it has at least `n` of them (bounded wait).
async fn access_lines(path: &Path, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect();
        if lines.len() >= n {
            return lines;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{} has {} lines, not {n}:\n{text}",
                path.display(),
                lines.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn by_id<'a>(lines: &'a [Value], id: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["request_id"] == id)
        .unwrap_or_else(|| panic!("no line for {id}: {lines:?}"))
}

#[tokio::test]
async fn access_log_writes_one_json_line_per_request_and_reopens_after_rotation() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .server("trusted_proxies: [127.0.0.1/32]")
        .plugin("access_log: { path: access.log }")
        .route("name: api, match: { path: { prefix: /api } }, upstream: app")
        .route("name: fixed, match: { path: { prefix: /fixed } }, plugins: [ { respond: { status: 201, body: \"fixed\\n\" } } ]")
        .start()
        .await;
    let log = gw.dir().join("access.log");
    let backend = b.addr().to_string();

    let proxied = gw
        .get(
            "/api/items?token=s3cret",
            &[
                ("host", "Shop.Example.test:8080"),
                ("x-request-id", "req-1"),
                ("x-forwarded-for", "198.51.100.9"),
            ],
        )
        .await;
    assert_eq!(proxied.status, 200);
    let answered = gw.get("/fixed", &[("x-request-id", "req-2")]).await;
    assert_eq!(answered.status, 201);
    assert_eq!(
        gw.send(
            "DELETE",
            "/nowhere",
            &[("x-request-id", "req-3")],
            Body::empty()
        )
        .await
        .status,
        404
    );

    let lines = access_lines(&log, 3).await;
    assert_eq!(lines.len(), 3);
    for line in &lines {
        let mut keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        let mut expected = ACCESS_LOG_FIELDS.to_vec();
        expected.sort();
        assert_eq!(keys, expected, "exactly the documented fields: {line}");
        let ts = line["ts"].as_str().unwrap();
        assert!(
            ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "RFC 3339 UTC: {ts}"
        );
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
    }

    let l = by_id(&lines, "req-1");
    assert_eq!(
        l["client_ip"], "198.51.100.9",
        "the resolved client, not the proxy"
    );
    assert_eq!(l["method"], "GET");
    assert_eq!(
        l["host"], "shop.example.test",
        "lowercased, without the port"
    );
    assert_eq!(
        l["path"], "/api/items",
        "the query string (and its token) is not logged"
    );
    assert_eq!(l["status"], 200);
    assert_eq!(l["route"], "api");
    assert_eq!(l["upstream"], "app");
    assert_eq!(l["backend"], backend.as_str());
    assert_eq!(l["bytes_sent"], proxied.body.len());
    let upstream_ms = l["upstream_ms"].as_f64().expect("an upstream answered");
    assert!(
        upstream_ms >= 0.0 && upstream_ms <= l["duration_ms"].as_f64().unwrap(),
        "{l}"
    );

    let l = by_id(&lines, "req-2");
    assert_eq!(
        (
            l["status"].as_u64(),
            l["route"].as_str(),
            l["bytes_sent"].as_u64()
        ),
        (Some(201), Some("fixed"), Some(6))
    );
    assert_eq!(l["client_ip"], "127.0.0.1");
    assert!(
        l["upstream"].is_null() && l["backend"].is_null() && l["upstream_ms"].is_null(),
        "{l}"
    );

    let l = by_id(&lines, "req-3");
    assert_eq!(
        (l["method"].as_str(), l["status"].as_u64()),
        (Some("DELETE"), Some(404))
    );
    assert!(l["route"].is_null(), "no route matched: {l}");

    // Rotation: move the file away, SIGUSR1, and the next line starts a new file.
    std::fs::rename(&log, gw.dir().join("access.log.1")).unwrap();
    gw.signal(SIGUSR1);
    assert!(
        gw.wait_for_stderr("SIGUSR1", IO_TIMEOUT).await,
        "SIGUSR1 not handled"
    );
    // The signal task logs just before it asks the writers to reopen.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gw.get("/api/after", &[("x-request-id", "req-4")])
            .await
            .status,
        200
    );
    let fresh = access_lines(&log, 1).await;
    assert_eq!(fresh.len(), 1);
    assert_eq!(fresh[0]["request_id"], "req-4");
    let rotated = access_lines(&gw.dir().join("access.log.1"), 3).await;
    assert_eq!(
        rotated.len(),
        3,
        "the rotated file keeps its lines and gets no new ones"
    );
}

#[tokio::test]
async fn access_log_without_a_path_writes_to_stdout() {
    let b = Backend::http("app");
    let gw = Config::with_app(&b)
        .route(&api_with("access_log: {}"))
        .start()
        .await;
    assert_eq!(
        gw.get("/to-stdout", &[("x-request-id", "stdout-1")])
            .await
            .status,
        200
    );
    assert!(
        gw.wait_for_stdout("\"request_id\":\"stdout-1\"", IO_TIMEOUT)
            .await,
        "stdout: {}",
        gw.stdout_text()
    );
    let line = gw
        .stdout_text()
        .lines()
        .find(|l| l.contains("stdout-1"))
        .unwrap()
        .to_string();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["path"], "/to-stdout");
    assert_eq!(v["route"], "api");
}
