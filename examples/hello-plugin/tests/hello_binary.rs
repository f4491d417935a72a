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
    let metrics = request(gw.admin, "/metrics", &[]).unwrap().body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("portico_plugin_rejections_total{")
                && l.contains("plugin=\"hello\"")
                && l.contains("route=\"everything\"")
                && l.ends_with(" 1")),
        "{metrics}"
    );
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
