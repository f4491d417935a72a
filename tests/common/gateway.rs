//! The `portico` process under test.
//!
//! Each gateway runs from a fresh [`TestDir`] holding its `portico.yaml` and its logs
//! (`stdout-N.log`, `stderr-N.log`, N counting the processes started there). The process gets
//! `RUST_LOG=info` and `PORTICO_TEST_DIR=<that dir>`, so a config can keep per-test files
//! apart from those of tests running in parallel through the spec's `${NAME}` substitution,
//! e.g. `upgrade_sock: ${PORTICO_TEST_DIR}/upgrade.sock` (needed for SIGQUIT/`-u` tests).
//!
//! Dropping a [`Gateway`] kills its process (SIGKILL), so a failing test leaves nothing
//! running; if the test is failing, the end of the gateway's stderr is printed first.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_yaml::Value;

use super::{http_request, Body, Response, Result, TestDir, IO_TIMEOUT};

/// The binary under test, built by cargo for the integration tests.
pub const PORTICO_BIN: &str = env!("CARGO_BIN_EXE_portico");

/// How long a gateway may take to become ready (a debug build on a busy machine).
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Linux signal numbers, for [`Gateway::signal`].
pub const SIGHUP: i32 = 1;
pub const SIGQUIT: i32 = 3;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGTERM: i32 = 15;

/// A process's resident memory (KiB) and open file descriptors, from /proc.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub rss_kib: u64,
    pub fds: usize,
}

/// A running `portico` process.
pub struct Gateway {
    child: Child,
    /// Shared with processes started from this one (`spawn_upgrade`).
    dir: Arc<TestDir>,
    config_path: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    /// Where to reach the admin endpoints, from `admin.listen`.
    admin: Option<SocketAddr>,
    /// Every `listeners[].listen`, by listener name, as an address to connect to.
    listeners: Vec<(String, SocketAddr)>,
}

impl Gateway {
    /// Starts `portico -c <dir>/portico.yaml` and waits until it is ready: `/readyz` answers
    /// 200 when the config has `admin.listen`, else every listener accepts connections.
    /// Panics if it exits or is not ready within [`START_TIMEOUT`].
    pub async fn start(yaml: &str) -> Gateway {
        Gateway::start_with(yaml, &[], &[]).await
    }

    /// [`Gateway::start`] with extra command line arguments and environment variables
    /// (`RUST_LOG` among them overrides the default `info`).
    pub async fn start_with(yaml: &str, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        Gateway::start_in(TestDir::new(), yaml, args, env).await
    }

    /// [`Gateway::start_with`] in a directory the test prepared, e.g. with files the config
    /// names by relative path.
    pub async fn start_in(
        dir: TestDir,
        yaml: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        Gateway::start_wrapped(dir, yaml, args, env, &[]).await
    }

    /// [`Gateway::start_in`], with portico run by `wrapper` (a command and its arguments, to
    /// which portico's own command line is appended), e.g. in a namespace of its own.
    pub async fn start_under(dir: TestDir, yaml: &str, wrapper: &[String]) -> Gateway {
        Gateway::start_wrapped(dir, yaml, &[], &[], wrapper).await
    }

    async fn start_wrapped(
        dir: TestDir,
        yaml: &str,
        args: &[&str],
        env: &[(&str, &str)],
        wrapper: &[String],
    ) -> Gateway {
        let dir = Arc::new(dir);
        let config_path = dir.write("portico.yaml", yaml);
        let mut gateway = Gateway::spawn_under(dir, config_path, args, env, wrapper);
        if !gateway.wait_ready(START_TIMEOUT).await {
            let exit = gateway.child.try_wait().ok().flatten();
            panic!(
                "portico did not become ready within {START_TIMEOUT:?} (exit: {exit:?}); \
                 its stderr follows"
            );
        }
        gateway
    }

    /// Starts a gateway with a config that must be refused, and waits (bounded) for it to
    /// exit. Returns its exit code (`None`: killed by a signal) and its stderr. Panics if it
    /// is still running after [`IO_TIMEOUT`].
    pub async fn start_expect_failure(yaml: &str) -> (Option<i32>, String) {
        let dir = Arc::new(TestDir::new());
        let config_path = dir.write("portico.yaml", yaml);
        let mut gateway = Gateway::spawn(dir, config_path, &[], &[]);
        match gateway.wait_exit(IO_TIMEOUT).await {
            Some(status) => (status.code(), gateway.stderr_text()),
            None => panic!("portico started with a config it should have refused"),
        }
    }

    /// Starts a second process on the same config with `-u`, to take over this one's
    /// sockets once this one gets SIGQUIT. Does not wait: the usual sequence is
    /// `spawn_upgrade`, `signal(SIGQUIT)` on the old one, then `wait_ready` on the new one.
    pub fn spawn_upgrade(&self) -> Gateway {
        Gateway::spawn(self.dir.clone(), self.config_path.clone(), &["-u"], &[])
    }

    fn spawn(
        dir: Arc<TestDir>,
        config_path: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Gateway {
        Gateway::spawn_under(dir, config_path, args, env, &[])
    }

    fn spawn_under(
        dir: Arc<TestDir>,
        config_path: PathBuf,
        args: &[&str],
        env: &[(&str, &str)],
        wrapper: &[String],
    ) -> Gateway {
        // Number the log files so processes sharing the directory keep their own.
        let n = (1..)
            .find(|n| !dir.join(&format!("stderr-{n}.log")).exists())
            .unwrap();
        let stdout_path = dir.join(&format!("stdout-{n}.log"));
        let stderr_path = dir.join(&format!("stderr-{n}.log"));
        let mut command = match wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = Command::new(program);
                c.args(wrapper_args).arg(PORTICO_BIN);
                c
            }
            None => Command::new(PORTICO_BIN),
        };
        let child = command
            .arg("-c")
            .arg(&config_path)
            .args(args)
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .env("PORTICO_TEST_DIR", dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout log"))
            .stderr(File::create(&stderr_path).expect("create stderr log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {PORTICO_BIN}: {e}"));
        let (admin, listeners) = addresses_in(&std::fs::read_to_string(&config_path).unwrap());
        Gateway {
            child,
            dir,
            config_path,
            stdout_path,
            stderr_path,
            admin,
            listeners,
        }
    }

    /// Polls readiness (see [`Gateway::start`]) until `limit`; false if the process exited
    /// or the time ran out. A config with neither an admin address nor listeners offers
    /// nothing to probe: the process then counts as ready if it is still running after 1 s.
    pub async fn wait_ready(&mut self, limit: Duration) -> bool {
        if self.admin.is_none() && self.listeners.is_empty() {
            tokio::time::sleep(Duration::from_secs(1).min(limit)).await;
            return self.is_running();
        }
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if !self.is_running() {
                return false;
            }
            if self.is_ready().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    async fn is_ready(&self) -> bool {
        const PROBE: Duration = Duration::from_secs(1);
        match self.admin {
            Some(admin) => {
                let probe = http_request(admin, "GET", "/readyz", &[], Body::empty());
                matches!(tokio::time::timeout(PROBE, probe).await, Ok(Ok(r)) if r.status == 200)
            }
            None => {
                for (_, addr) in &self.listeners {
                    let connect = tokio::net::TcpStream::connect(addr);
                    if !matches!(tokio::time::timeout(PROBE, connect).await, Ok(Ok(_))) {
                        return false;
                    }
                }
                true
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process holds now: its resident memory and its open file descriptors.
    pub fn usage(&self) -> Usage {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0);
        Usage { rss_kib, fds }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends signal number `sig` (see the `SIG*` constants) through the `kill` command.
    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// SIGKILL, and reap the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Replaces the config file; the gateway reads it on SIGHUP or `POST /reload`. Written
    /// to a temporary file and renamed, so a reload never sees half a file.
    pub fn rewrite_config(&mut self, yaml: &str) {
        let staging = self.dir.write("portico.yaml.new", yaml);
        std::fs::rename(&staging, &self.config_path).expect("replace config file");
        // Addresses from the new config, for `listener` and readiness checks. The admin
        // address stays as it was: a reload does not move the admin listener.
        let (_, listeners) = addresses_in(yaml);
        self.listeners = listeners;
    }

    /// Where to connect to listener `name` (its `listen`, with 0.0.0.0 or :: replaced by
    /// the loopback address).
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no listener named {name:?} in the config"))
    }

    /// `method path` with `headers` and `body` on a new connection to the listener `web`
    /// (the one [`super::Config::new`] makes); panics when no answer comes.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Response {
        http_request(self.listener("web"), method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET path` with `headers` to the listener `web` (see [`Gateway::send`]).
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.send("GET", path, headers, Body::empty()).await
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("the config has no admin.listen")
    }

    pub async fn admin_get(&self, path: &str) -> Result<Response> {
        self.admin_request("GET", path, &[]).await
    }

    pub async fn admin_post(&self, path: &str) -> Result<Response> {
        self.admin_request("POST", path, &[]).await
    }

    /// Any request to the admin listener, e.g. with an `authorization` header.
    pub async fn admin_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response> {
        http_request(self.admin_addr(), method, path, headers, Body::empty()).await
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits up to `limit` for `needle` to appear in stderr.
    pub async fn wait_for_stderr(&self, needle: &str, limit: Duration) -> bool {
        wait_for_text(&self.stderr_path, needle, limit).await
    }

    /// Waits up to `limit` for `needle` to appear in stdout (e.g. an access log line).
    pub async fn wait_for_stdout(&self, needle: &str, limit: Duration) -> bool {
        wait_for_text(&self.stdout_path, needle, limit).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let stderr = self.stderr_text();
            let lines: Vec<&str> = stderr.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- portico pid {} stderr (last {} lines of {}) ---\n{}\n--- end ---",
                self.pid(),
                tail.len(),
                self.stderr_path.display(),
                tail.join("\n")
            );
        }
        self.kill();
    }
}

async fn wait_for_text(path: &Path, needle: &str, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(needle)
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `portico -c <file> -t` on `yaml` (with `PORTICO_TEST_DIR` set to the file's folder,
/// as for a started gateway); returns its exit code (-1 if killed by a signal) and its
/// stderr.
pub async fn validate_config(yaml: &str) -> (i32, String) {
    let dir = TestDir::new();
    let config_path = dir.write("portico.yaml", yaml);
    validate_config_file(&config_path).await
}

/// [`validate_config`] on a config file already in place (e.g. next to files it names by
/// relative path). Panics if validation takes longer than [`IO_TIMEOUT`].
pub async fn validate_config_file(config_path: &Path) -> (i32, String) {
    // Output goes to files, not pipes: a chatty process can then never block on a full pipe
    // while we poll for its exit.
    let dir = TestDir::new();
    let stderr_path = dir.join("stderr.log");
    let mut child = Command::new(PORTICO_BIN)
        .arg("-c")
        .arg(config_path)
        .arg("-t")
        .env("RUST_LOG", "info")
        // As for a started gateway, so the same config validates the same way.
        .env(
            "PORTICO_TEST_DIR",
            config_path.parent().unwrap_or(Path::new(".")),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).expect("create stderr log"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PORTICO_BIN}: {e}"));
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for portico -t") {
            break status;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portico -t did not exit within {IO_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    (status.code().unwrap_or(-1), stderr)
}

/// The admin address and the named listener addresses of a config, as addresses to connect
/// to. Lenient: what does not parse is left out (a test may pass a deliberately broken one).
fn addresses_in(yaml: &str) -> (Option<SocketAddr>, Vec<(String, SocketAddr)>) {
    let Ok(config) = serde_yaml::from_str::<Value>(yaml) else {
        return (None, Vec::new());
    };
    let admin = config["admin"]["listen"].as_str().and_then(connect_addr);
    let listeners = config["listeners"]
        .as_sequence()
        .map(|listeners| {
            listeners
                .iter()
                .filter_map(|l| {
                    let addr = connect_addr(l["listen"].as_str()?)?;
                    Some((l["name"].as_str().unwrap_or_default().to_string(), addr))
                })
                .collect()
        })
        .unwrap_or_default();
    (admin, listeners)
}

/// `0.0.0.0:8443` -> `127.0.0.1:8443`, `[::]:8443` -> `[::1]:8443`; `localhost:N` too.
fn connect_addr(listen: &str) -> Option<SocketAddr> {
    let mut addr: SocketAddr = match listen.parse() {
        Ok(addr) => addr,
        Err(_) => {
            let (_, port) = listen.rsplit_once(':')?;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port.parse().ok()?)
        }
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Some(addr)
}
