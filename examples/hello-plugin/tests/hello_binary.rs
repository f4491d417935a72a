//! The example binary, tested the way PLUGINS.md ("Testing") tells a user to test their own
//! gateway build: cargo builds the binary for this test (`CARGO_BIN_EXE_hello-plugin`), the
//! test starts it with a small config on free ports and checks what a client sees. Only the
//! standard library, so the file can be copied into any crate.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_hello-plugin");
const TIMEOUT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh folder for one test's config and logs.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hello-plugin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_config(dir: &Path, admin: u16, http: u16, body: &str) -> PathBuf {
    let d = dir.display();
    let config = format!(
        "server: {{ grace_period: 0s, shutdown_timeout: 1s, pid_file: {d}/p.pid, upgrade_sock: {d}/u.sock }}\n\
         admin: {{ listen: 127.0.0.1:{admin} }}\n\
         listeners: [ {{ name: http, listen: 127.0.0.1:{http} }} ]\n{body}"
    );
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

/// The running example binary; killed on drop.
struct Gateway {
    child: Child,
    dir: PathBuf,
    admin: u16,
    http: u16,
}

impl Gateway {
    fn start(name: &str, body: &str) -> Gateway {
        let dir = test_dir(name);
        let (admin, http) = (free_port(), free_port());
        let config = write_config(&dir, admin, http, body);
        let child = Command::new(BIN)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let mut gw = Gateway {
            child,
            dir,
            admin,
            http,
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!("hello-plugin exited with {status}: {}", gw.stderr());
            }
            if request(gw.admin, "/readyz", &[]).is_some_and(|r| r.status == 200) {
                return gw;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {TIMEOUT:?}: {}",
                gw.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.http, path, headers)
            .unwrap_or_else(|| panic!("GET {path} failed: {}", self.stderr()))
    }

    /// `/metrics` counts exactly one answer of `plugin` on `route`.
    fn assert_one_rejection(&self, plugin: &str, route: &str) {
        let metrics = request(self.admin, "/metrics", &[]).unwrap().body;
        let labels = [format!("plugin=\"{plugin}\""), format!("route=\"{route}\"")];
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("portico_plugin_rejections_total{")
                    && labels.iter().all(|label| l.contains(label.as_str()))
                    && l.ends_with(" 1")),
            "{metrics}"
        );
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 GET with `Connection: close`, read to the end; `None` if it fails.
fn request(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<Reply> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(TIMEOUT)).ok()?;
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: hello.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Reply {
        status,
        headers,
        body: body.to_string(),
    })
}

#[test]
fn the_example_plugin_runs_next_to_the_builtins() {
    let gw = Gateway::start(
        "run",
        "plugins:\n  - hello: { name: tester }\n\
         routes:\n\
         \x20 - name: locked\n\
         \x20   match: { path: { prefix: /locked } }\n\
         \x20   plugins:\n\
         \x20     - key_auth: { keys: { ci: k3y } }\n\
         \x20     - respond: { body: \"locked stuff\\n\" }\n\
         \x20 - name: everything\n\
         \x20   plugins:\n\
         \x20     - respond: { body: \"answered by the route\\n\" }\n",
    );

    // The plugin's own answer, with its own response hook run on it too.
    let r = gw.get("/hello", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "hello, tester\n"));
    assert_eq!(r.header("x-hello"), Some("tester"));

    // Every other request goes on to the built-ins, and the plugin greets their answers.
    let r = gw.get("/other", &[]);
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "answered by the route\n")
    );
    assert_eq!(r.header("x-hello"), Some("tester"));
    let r = gw.get("/locked", &[]);
    assert_eq!(r.status, 401, "the built-in key_auth after it: {}", r.body);
    assert_eq!(r.header("x-hello"), Some("tester"));
    let r = gw.get("/locked", &[("X-Api-Key", "k3y")]);
    assert_eq!((r.status, r.body.as_str()), (200, "locked stuff\n"));

    // Its answers are counted like a built-in's.
    gw.assert_one_rejection("hello", "everything");
}

#[test]
fn a_bad_config_of_the_example_plugin_fails_validation() {
    let dir = test_dir("validate");
    let config = write_config(&dir, free_port(), free_port(), "plugins:\n  - hello: { name: world, path: hello }\nroutes:\n  - { name: r, plugins: [ { respond: {} } ] }\n");
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&config)
        .arg("-t")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with(
            "plugins[0].hello: global plugin hello: path: \"hello\" must start with /"
        )),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What the backend of the body test read of one request: its head, the body bytes that
/// arrived, and whether they were all the head's `Content-Length` announced.
struct Received {
    head: String,
    body: Vec<u8>,
    complete: bool,
}

/// A backend on a free port that reads each request (head, then a `Content-Length` body),
/// records it, and answers 200 with the body's length; a connection closed before the body
/// was complete is recorded too.
fn body_backend() -> (u16, std::sync::mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(TIMEOUT));
                let mut raw = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n");
                    let Some(end) = head_end else {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => raw.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
                    let length: usize = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                        .map_or(0, |(_, v)| v.trim().parse().unwrap());
                    let mut body = raw.split_off(end + 4);
                    while body.len() < length {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => body.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let complete = body.len() >= length;
                    raw = body.split_off(length.min(body.len()));
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                        body.len().to_string().len(),
                        body.len()
                    );
                    let _ = tx.send(Received {
                        head,
                        body,
                        complete,
                    });
                    if !complete || conn.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, rx)
}

/// Sends `POST /upload` with a `Content-Length` body in `pieces`, one write each, 200 ms
/// apart (so the gateway reads them as separate pieces), and reads the answer to the end.
fn post_in_pieces(port: u16, pieces: &[&str]) -> String {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let length: usize = pieces.iter().map(|p| p.len()).sum();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: hello.test\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    for piece in pieces {
        std::thread::sleep(Duration::from_millis(200));
        // The gateway may have answered and closed already: what it did is in the answer.
        if tcp.write_all(piece.as_bytes()).is_err() {
            break;
        }
    }
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

#[test]
fn the_request_body_hook_sees_each_piece_before_the_backend_and_can_refuse() {
    let (backend, received) = body_backend();
    let gw = Gateway::start(
        "body",
        &format!(
            "upstreams: {{ app: {{ backends: [ {{ addr: \"127.0.0.1:{backend}\" }} ], retries: 0 }} }}\n\
             routes:\n\
             \x20 - name: upload\n\
             \x20   upstream: app\n\
             \x20   plugins: [ {{ forbidden_word: {{ word: forbidden }} }} ]\n"
        ),
    );

    // A body without the word goes through whole, in its pieces.
    let answer = post_in_pieces(gw.http, &["all fine ", "and dandy"]);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n18"), "{answer}");
    let seen = received.recv_timeout(TIMEOUT).unwrap();
    assert!(
        seen.head.starts_with("POST /upload HTTP/1.1"),
        "{}",
        seen.head
    );
    assert_eq!(
        (seen.complete, &seen.body[..]),
        (true, &b"all fine and dandy"[..])
    );

    // The word split across two pieces: found when the second arrives. The client gets the
    // plugin's answer and the connection closes; the backend never gets the whole body.
    let answer = post_in_pieces(gw.http, &["this is forb", "idden, and more", " after it"]);
    assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(
        answer.ends_with("the body holds a forbidden word\n"),
        "{answer}"
    );
    if let Ok(seen) = received.recv_timeout(Duration::from_secs(2)) {
        assert!(!seen.complete, "the backend got the refused body whole");
        assert!(
            !String::from_utf8_lossy(&seen.body).contains("idden"),
            "the piece that completed the word reached the backend: {:?}",
            String::from_utf8_lossy(&seen.body)
        );
    }

    // Counted like any plugin's answer.
    gw.assert_one_rejection("forbidden_word", "upload");
}
