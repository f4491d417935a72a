//! The programs some tests run beside Portico (HAProxy, Redis, Prometheus, promtool, sslyze,
//! openssl), and what a test does when the machine lacks one: it fails, naming the apt-get
//! line that installs it. `./test.sh` installs them all.
//!
//! The one opt-out is explicit and loud: `PORTICO_TEST_SKIP` (comma-separated) may name
//! programs (`haproxy`, `sslyze`, ...) or what no package gives (`mount-namespaces`,
//! `ipv6`); a test that needs one of those, where it is missing, then returns at once after
//! a `NOT RUN` line that says what was left out. Under `CI=true` the opt-out is ignored:
//! there nothing is ever skipped (see [`skip_or_fail`]).
//!
//! A test that needs a program starts with `if !tools_present(&["redis-server"]) { return; }`;
//! the kit's own starters ([`Redis::start`], ...) check again with [`require_tool`].

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, http_get, TestDir, IO_TIMEOUT};

/// Each program a test runs, and the Debian package it comes in.
const PACKAGES: [(&str, &str); 13] = [
    ("haproxy", "haproxy"),
    ("redis-server", "redis-server"),
    ("promtool", "prometheus"),
    ("prometheus", "prometheus"),
    ("openssl", "openssl"),
    ("unshare", "util-linux"),
    ("bash", "bash"),
    ("sslyze", "python3-venv"),
    ("pebble", "pebble"),
    ("pebble-challtestsrv", "pebble"),
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("protoc", "protobuf-compiler"),
];

/// The services of the HA demo (docker-compose.yml, conf/ha/): the compose file declares
/// them, and the local script (deploy/ha-local.sh) runs each but Prometheus with a pid file
/// of that name.
pub const HA_SERVICES: [&str; 7] = [
    "haproxy",
    "portico-1",
    "portico-2",
    "backend-1",
    "backend-2",
    "redis",
    "prometheus",
];

/// The processes deploy/ha-local.sh runs: every [`HA_SERVICES`] but Prometheus.
pub fn ha_local_processes() -> Vec<&'static str> {
    HA_SERVICES
        .into_iter()
        .filter(|s| *s != "prometheus")
        .collect()
}

/// Whether `program` is on the PATH.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let path = dir.join(program);
            std::fs::metadata(&path).is_ok_and(|m| m.is_file())
        })
    })
}

/// The line that installs `programs`.
fn install_line(programs: &[&str]) -> String {
    let mut packages: Vec<&str> = programs
        .iter()
        .map(|program| {
            PACKAGES
                .iter()
                .find(|(p, _)| p == program)
                .map_or(*program, |(_, package)| package)
        })
        .collect();
    packages.dedup();
    format!(
        "apt-get install -y {} (./test.sh installs everything the test suite needs)",
        packages.join(" ")
    )
}

/// Whether this test can run: `true` when every one of `programs` is installed. Otherwise
/// the test fails with the apt-get line that installs the missing ones, or, where
/// `PORTICO_TEST_SKIP` names each of them, returns `false` after saying it did not run.
pub fn tools_present(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|program| !installed(program))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!(
        "`{}` not installed, and this test needs it: {}",
        missing.join("`, `"),
        install_line(&missing)
    );
    skip_or_fail(&missing, &why);
    false
}

/// Fails the test, saying how to install it, unless `program` is on the PATH. The kit's
/// starters call it; a test checks first with [`tools_present`], which honours the opt-out.
pub fn require_tool(program: &str) {
    assert!(
        installed(program),
        "`{program}` is not installed, and this test needs it: {}",
        install_line(&[program])
    );
}

/// Whether a test that needs `what` of the machine (`mount-namespaces`, `ipv6`) can run:
/// `true` when `available`, else as [`skip_or_fail`] with `why` (what the machine lacks and
/// how to grant it).
pub fn machine_allows(what: &str, available: bool, why: &str) -> bool {
    if !available {
        skip_or_fail(&[what], why);
    }
    available
}

/// Whether CI runs the suite (`CI` set, as CI services do, and not `false` or `0`).
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// For a test that cannot run because `what` is missing (`why` says how to get it): returns
/// when `PORTICO_TEST_SKIP` names all of `what` and CI is not running the suite, after a
/// `NOT RUN` line naming the test and what it lacks; panics with `why` otherwise.
pub fn skip_or_fail(what: &[&str], why: &str) {
    let skip = std::env::var("PORTICO_TEST_SKIP").unwrap_or_default();
    let named = what.iter().all(|w| skip.split(',').any(|s| s.trim() == *w));
    if !named {
        panic!(
            "{why}. Or set PORTICO_TEST_SKIP={} to leave this test out knowingly \
             (ignored under CI=true)",
            what.join(",")
        );
    }
    assert!(
        !under_ci(),
        "{why}. PORTICO_TEST_SKIP={skip} is ignored under CI=true: nothing is skipped there"
    );
    let test = std::thread::current().name().unwrap_or("?").to_string();
    // Straight to the process's stderr: libtest would hide an `eprintln!` of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "\n**************** NOT RUN: {test}: {why} (PORTICO_TEST_SKIP={skip}) ****************\n"
    );
}

/// Runs `program args` in `dir` with `env` added, bounded by [`IO_TIMEOUT`]; returns
/// (success, stdout then stderr).
pub async fn run_tool(
    program: &str,
    args: &[&str],
    dir: &Path,
    env: &BTreeMap<String, String>,
) -> (bool, String) {
    if !program.contains('/') {
        require_tool(program);
    }
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env)
        .current_dir(dir)
        .kill_on_drop(true);
    let output = tokio::time::timeout(IO_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish within {IO_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Sends signal `sig` (a name: `STOP`, `KILL`, or a number) to process `pid` through `kill`.
pub fn kill(sig: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// A child process the test started, killed (and reaped) on drop.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A throw-away `redis-server` on a free port of 127.0.0.1, persisting nothing, killed on
/// drop.
pub struct Redis {
    child: Owned,
    port: u16,
}

impl Redis {
    pub async fn start() -> Redis {
        require_tool("redis-server");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server");
        let mut redis = Redis {
            child: Owned(child),
            port,
        };
        let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return redis;
            }
            if matches!(redis.child.0.try_wait(), Ok(Some(_))) {
                panic!("redis-server on port {port} exited at start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on port {port} did not accept connections within {IO_TIMEOUT:?}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends signal `sig` (e.g. `STOP` to make it hang, `KILL`).
    pub fn signal(&self, sig: &str) {
        kill(sig, self.child.0.id());
    }
}

/// A throw-away Prometheus server scraping every second, killed on drop.
pub struct Prometheus {
    _child: Owned,
    port: u16,
    _dir: TestDir,
}

impl Prometheus {
    /// Starts one with `scrape_configs` (YAML, indented two spaces).
    pub fn start(scrape_configs: &str) -> Prometheus {
        require_tool("prometheus");
        let dir = TestDir::new();
        let config = dir.write(
            "prometheus.yml",
            format!(
                "global: {{ scrape_interval: 1s, scrape_timeout: 1s }}\nscrape_configs:\n{scrape_configs}"
            ),
        );
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run prometheus");
        Prometheus {
            _child: Owned(child),
            port,
            _dir: dir,
        }
    }

    /// Each scrape job's target once it has been scraped, `(job, health, last error)`,
    /// when there are `jobs` of them (within 30 s).
    pub async fn scraped_targets(&self, jobs: usize) -> Vec<(String, String, String)> {
        let addr = ([127, 0, 0, 1], self.port).into();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let targets: Vec<(String, String, String)> =
                match http_get(addr, "/api/v1/targets").await {
                    Ok(r) if r.status == 200 => r.json()["data"]["activeTargets"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| {
                            let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
                            (
                                text(&t["labels"]["job"]),
                                text(&t["health"]),
                                text(&t["lastError"]),
                            )
                        })
                        .filter(|(_, health, _)| health != "unknown")
                        .collect(),
                    _ => Vec::new(),
                };
            if targets.len() == jobs {
                return targets;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "Prometheus scraped {targets:?} of {jobs} jobs within 30s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The Python with sslyze to run (the TLS audit): `PORTICO_SSLYZE_PYTHON`, else the venv
/// `./test.sh` makes (`target/sslyze-venv`), else `python3`. When none of them has sslyze
/// the test fails, saying how to install it, or (opted out, see [`skip_or_fail`]) `None`.
pub fn sslyze_python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/sslyze-venv");
    let candidates = [
        std::env::var_os("PORTICO_SSLYZE_PYTHON").map(PathBuf::from),
        Some(venv.join("bin/python")),
        Some(PathBuf::from("python3")),
    ];
    let found = candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", "import sslyze"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        let why = format!(
            "sslyze is not installed, and this test needs it: apt-get install -y python3-venv \
             && python3 -m venv {venv} && {venv}/bin/pip install sslyze (./test.sh does this)",
            venv = venv.display()
        );
        skip_or_fail(&["sslyze"], &why);
    }
    found
}
