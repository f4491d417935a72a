//! What the plugin tests share: a gateway config around in-process backends, a Redis server
//! of their own, and reading one sample out of the metrics exposition.
//!
//! Each `tests/plugins_*.rs` file includes it after the harness:
//! `mod common; mod plugins_support;`.

// Each test file uses only part of it.
#![allow(dead_code)]

use crate::common::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `server:` section every plugin test uses; `extra` goes inside the flow mapping
/// (e.g. `trusted_proxies: [127.0.0.1/32]`), empty for none.
pub fn server(extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "server: {{ grace_period: 0s, shutdown_timeout: 1s, upgrade_sock: \"${{PORTICO_TEST_DIR}}/u.sock\", \
         pid_file: \"${{PORTICO_TEST_DIR}}/p.pid\"{extra} }}\n"
    )
}

/// A config with an admin listener, one plain-HTTP listener `web`, one upstream per
/// `(name, backend address)` and then `rest`: the test's own `plugins:` and `routes:`
/// sections, in block YAML.
pub fn config(upstreams: &[(&str, SocketAddr)], rest: &str) -> String {
    config_with(&server(""), upstreams, rest)
}

/// [`config`] with a `server:` section of the test's own (see [`server`]).
pub fn config_with(server: &str, upstreams: &[(&str, SocketAddr)], rest: &str) -> String {
    let mut yaml = format!(
        "{server}admin: {{ listen: 127.0.0.1:{} }}\nlisteners:\n  - {{ name: web, listen: 127.0.0.1:{} }}\n",
        free_port(),
        free_port()
    );
    if !upstreams.is_empty() {
        yaml.push_str("upstreams:\n");
        for (name, addr) in upstreams {
            yaml.push_str(&format!(
                "  {name}: {{ backends: [ {{ addr: \"{addr}\" }} ] }}\n"
            ));
        }
    }
    yaml.push_str(rest.trim_start_matches('\n'));
    yaml
}

/// One request to the gateway's `web` listener on a fresh connection.
pub async fn send(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    http_request(gw.listener("web"), method, path, headers, Body::empty())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// `GET path` with `headers` to the gateway's `web` listener.
pub async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    send(gw, "GET", path, headers).await
}

/// The value of the sample `name{labels}` in a Prometheus text exposition (labels in any
/// order; others may be present too).
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        if all {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

/// The metrics exposition of a running gateway.
pub async fn metrics(gw: &Gateway) -> String {
    let r = gw.admin_get("/metrics").await.expect("GET /metrics");
    assert_eq!(r.status, 200);
    r.text()
}

/// A throw-away `redis-server` on a free port, killed on drop.
pub struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// `None` when the machine has no `redis-server` (CI installs it; a developer machine
    /// may not): the calling test then says so and passes.
    pub async fn start() -> Option<Redis> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut redis = Redis { child, port };
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(redis);
            }
            if matches!(redis.child.try_wait(), Ok(Some(_))) {
                panic!("redis-server on port {port} exited at start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on port {port} did not accept connections within {IO_TIMEOUT:?}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends signal `sig` (e.g. `SIGSTOP` to make it hang, `SIGKILL`).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} redis-server failed");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
