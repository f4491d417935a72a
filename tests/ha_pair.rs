//! The HA pair on loopback, as deploy/ha-local.sh runs it: a real HAProxy (L4, PROXY v2,
//! checks on /readyz, the shipped conf/ha/haproxy.cfg) in front of two real Portico
//! instances (conf/ha/portico.yaml), sharing a real Redis. What a client sees: its own
//! address at the backend, no failed request when one instance is stopped with SIGTERM, few
//! when one is killed, one rate limit across both instances (the /limited route's, kept in
//! Redis), and that limit's `on_error` within its timeout when Redis stops answering.
//!
//! The client connects from 127.0.0.2 and HAProxy from 127.0.0.1 (Linux routes all of
//! 127.0.0.0/8 to lo), so `trusted_proxies: [127.0.0.1/32]` covers HAProxy and not the
//! client: the client's address can only come from the PROXY header, and its own
//! X-Forwarded-For must not be believed.
//!
//! A binary of its own (not a module of tests/blackbox): five processes and a request stream
//! per test, whose failover counts and timings mean something only without neighbours. Needs
//! `haproxy` and `redis-server` (`./test.sh` installs both; without them a test fails, saying
//! how to install them).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex, MutexGuard};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Where the test client connects from: not a trusted proxy.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// `server.grace_period` in conf/ha/portico.yaml.
const GRACE_PERIOD: Duration = Duration::from_secs(5);

/// Concurrent clients in the request stream of the failover tests.
const WORKERS: usize = 6;

/// Linux's numbers (common/ has only the ones the gateway tests use).
const SIGSTOP: i32 = 19;

/// Whether HAProxy and Redis are there: a test fails without them, saying how to install
/// them, unless it is opted out (see [`tools_present`]).
fn haproxy_and_redis() -> bool {
    tools_present(&["haproxy", "redis-server"])
}

/// One topology at a time: each runs five processes and a request stream, and the
/// failover counts mean more on a machine that is not also running three other pairs.
async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

// ---------------------------------------------------------------------------------------
// The topology, run by deploy/ha-local.sh

struct Ports {
    https: u16,
    http: u16,
    stats: u16,
    /// portico-1 and portico-2: (https, http, admin).
    portico: [(u16, u16, u16); 2],
    /// The Redis the script starts for the shared rate limits.
    redis: u16,
}

struct Topology {
    /// HA_RUN_DIR: the script's logs, pid files and exit statuses.
    run: TestDir,
    script: Child,
    script_log: PathBuf,
    ports: Ports,
    stopped: bool,
}

impl Topology {
    /// Runs deploy/ha-local.sh with `backends` behind the pair (or, with `None`, the
    /// script's own demo backends) and waits until HAProxy sees both instances up.
    async fn start(backends: Option<[&Backend; 2]>) -> Topology {
        let run = TestDir::new();
        let ports = Ports {
            https: free_port(),
            http: free_port(),
            stats: free_port(),
            portico: [
                (free_port(), free_port(), free_port()),
                (free_port(), free_port(), free_port()),
            ],
            redis: free_port(),
        };
        let script_log = run.join("script.log");
        let mut command = Command::new("bash");
        command
            .arg(Path::new(REPO).join("deploy/ha-local.sh"))
            .current_dir(REPO)
            .env("PORTICO_BIN", PORTICO_BIN)
            .env("HA_RUN_DIR", run.path())
            .env("HA_PARENT_PID", std::process::id().to_string())
            .env("HA_ADMIN_TOKEN", "ha-test-token")
            .env("HA_HTTPS_PORT", ports.https.to_string())
            .env("HA_HTTP_PORT", ports.http.to_string())
            .env("HA_STATS_PORT", ports.stats.to_string())
            .env("HA_REDIS_PORT", ports.redis.to_string())
            .env("RUST_LOG", "info");
        for (i, (https, http, admin)) in ports.portico.iter().enumerate() {
            let n = i + 1;
            command
                .env(format!("PORTICO_{n}_HTTPS_PORT"), https.to_string())
                .env(format!("PORTICO_{n}_HTTP_PORT"), http.to_string())
                .env(format!("PORTICO_{n}_ADMIN_PORT"), admin.to_string());
        }
        match backends {
            Some([b1, b2]) => {
                command.env("HA_BACKEND_1", b1.addr().to_string());
                command.env("HA_BACKEND_2", b2.addr().to_string());
            }
            None => {
                for n in 1..=2 {
                    command.env(format!("BACKEND_{n}_PORT"), free_port().to_string());
                    command.env(format!("BACKEND_{n}_ADMIN_PORT"), free_port().to_string());
                }
            }
        }
        let log = std::fs::File::create(&script_log).unwrap();
        let script = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run deploy/ha-local.sh");
        let mut topology = Topology {
            run,
            script,
            script_log,
            ports,
            stopped: false,
        };

        let deadline = Instant::now() + Duration::from_secs(45);
        while !topology.run.join("ready").exists() {
            if let Ok(Some(status)) = topology.script.try_wait() {
                panic!("deploy/ha-local.sh exited with {status} before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "deploy/ha-local.sh not ready within 45 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        topology
    }

    fn https(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.https))
    }

    fn http(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.http))
    }

    /// Portico instance `n` (1 or 2): its https listener, bypassing HAProxy.
    fn portico_https(&self, n: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.portico[n - 1].0))
    }

    fn portico_admin(&self, n: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.portico[n - 1].2))
    }

    fn pid(&self, name: &str) -> u32 {
        let text = std::fs::read_to_string(self.run.join(&format!("{name}.pid"))).unwrap();
        text.trim().parse().unwrap()
    }

    fn signal(&self, name: &str, sig: i32) {
        kill(&sig.to_string(), self.pid(name));
    }

    /// The exit status of process `name` once the script saw it exit, within `limit`.
    async fn wait_exit(&self, name: &str, limit: Duration) -> Option<i32> {
        let path = self.run.join(&format!("{name}.exit"));
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(status) = text.trim().parse() {
                    return Some(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// HAProxy's view of instance `n` in the https backend: "UP", "DOWN", "UP 1/2", ...
    async fn haproxy_status(&self, n: usize) -> String {
        let stats = SocketAddr::from(([127, 0, 0, 1], self.ports.stats));
        let Ok(response) = http_get(stats, "/;csv").await else {
            return "stats unavailable".into();
        };
        let csv = response.text();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = header
            .iter()
            .position(|c| *c == "status")
            .expect("a status column");
        let server = format!("portico-{n}");
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .find(|row| row.len() > column && row[0] == "portico_https" && row[1] == server)
            .map(|row| row[column].to_string())
            .unwrap_or_else(|| "missing".into())
    }

    /// How long after `since` HAProxy reports instance `n` DOWN (polled), within `limit`.
    async fn wait_down(&self, n: usize, since: Instant, limit: Duration) -> Option<Duration> {
        while since.elapsed() < limit {
            if self.haproxy_status(n).await.starts_with("DOWN") {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.run.join(&format!("{name}.log"))).unwrap_or_default()
    }

    /// Stops the script, which stops everything it started; returns whether it did so in
    /// time. Process ids are checked afterwards, so a process it left behind is found.
    fn stop(&mut self) -> bool {
        if self.stopped {
            return true;
        }
        self.stopped = true;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.script.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.script.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The script did not clean up: do it here, so the test leaves nothing running.
        let _ = self.script.kill();
        let _ = self.script.wait();
        for name in ha_local_processes() {
            if let Ok(text) = std::fs::read_to_string(self.run.join(&format!("{name}.pid"))) {
                let _ = Command::new("kill").arg("-KILL").arg(text.trim()).status();
            }
        }
        false
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let clean = self.stop();
        if std::thread::panicking() || !clean {
            for name in ["script", "haproxy", "portico-1", "portico-2"] {
                let text = if name == "script" {
                    std::fs::read_to_string(&self.script_log).unwrap_or_default()
                } else {
                    self.log(name)
                };
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(25)..];
                eprintln!(
                    "--- {name} (last {} lines) ---\n{}",
                    tail.len(),
                    tail.join("\n")
                );
            }
        }
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

// ---------------------------------------------------------------------------------------
// The client

/// A TCP connection from `CLIENT`.
async fn connect_from_client(addr: SocketAddr) -> Result<TcpStream, BoxError> {
    connect_from(CLIENT, addr).await
}

/// A TCP connection from `from`, an address of 127.0.0.0/8.
async fn connect_from(from: IpAddr, addr: SocketAddr) -> Result<TcpStream, BoxError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A new HTTP/1.1 connection from `CLIENT`, over TLS when `tls`.
async fn conn_from_client(addr: SocketAddr, tls: bool) -> Result<HttpConn, BoxError> {
    let tcp = connect_from_client(addr).await?;
    if tls {
        let opts = TlsClientOpts::insecure().alpn(&["http/1.1"]);
        let tls = tls_handshake(tcp, "portico.test", &opts).await?;
        HttpConn::over_tls(tls, "portico.test").await
    } else {
        HttpConn::h1_over(tcp, "portico.test", None).await
    }
}

// ---------------------------------------------------------------------------------------
// The client's address

#[tokio::test]
async fn the_backend_sees_the_client_address_through_haproxy() {
    if !haproxy_and_redis() {
        return;
    }
    let _one = one_at_a_time().await;
    let (b1, b2) = (Backend::http("b1"), Backend::http("b2"));
    let ha = Topology::start(Some([&b1, &b2])).await;

    for (frontend, tls, proto) in [(ha.https(), true, "https"), (ha.http(), false, "http")] {
        for i in 0..6 {
            let mut conn = conn_from_client(frontend, tls).await.unwrap();
            let spoof = [("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "6.6.6.6")];
            let response = conn
                .request("GET", &format!("/who/{i}"), &spoof, Body::empty())
                .await
                .unwrap();
            assert_eq!(response.status, 200, "{}", response.text());
            let h = &response.json()["headers"];
            assert_eq!(h["x-real-ip"], "127.0.0.2", "{proto}: {h}");
            assert_eq!(
                h["x-forwarded-for"], "127.0.0.2",
                "{proto}: the client's own X-Forwarded-For is replaced: {h}"
            );
            assert_eq!(h["x-forwarded-proto"], proto);
        }
    }
    assert!(
        b1.hits() > 0 && b2.hits() > 0,
        "b1 {} b2 {}",
        b1.hits(),
        b2.hits()
    );
    // Both instances served, and both logged the client's address.
    for n in 1..=2 {
        let log = ha.log(&format!("portico-{n}"));
        assert!(
            log.contains("\"client_ip\":\"127.0.0.2\""),
            "portico-{n} access log:\n{log}"
        );
        assert!(
            !log.contains("6.6.6.6"),
            "portico-{n} believed the spoofed address:\n{log}"
        );
    }

    // Around HAProxy, straight to an instance: a forged PROXY header from the client is
    // not believed (the client is not a trusted proxy) ...
    let mut tcp = connect_from_client(ha.portico_https(1)).await.unwrap();
    tcp.write_all(b"PROXY TCP4 6.6.6.6 192.0.2.1 5555 443\r\n")
        .await
        .unwrap();
    let tls = tls_handshake(
        tcp,
        "portico.test",
        &TlsClientOpts::insecure().alpn(&["http/1.1"]),
    )
    .await
    .unwrap();
    let mut conn = HttpConn::over_tls(tls, "portico.test").await.unwrap();
    let seen = conn.get("/forged").await.unwrap().json();
    assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.2");
    // ... and without any header the connection is closed before TLS.
    let tcp = connect_from_client(ha.portico_https(2)).await.unwrap();
    let opts = TlsClientOpts::insecure().alpn(&["http/1.1"]);
    assert!(tls_handshake(tcp, "portico.test", &opts).await.is_err());
}

// ---------------------------------------------------------------------------------------
// Failover under a steady stream of requests

/// `WORKERS` clients sending GET requests through HAProxy's https frontend, one at a time
/// each, with a short pause between them: two thirds open a new connection per request,
/// the others keep theirs alive (and reconnect when told `Connection: close`, as a client
/// should). A request counts as failed unless it gets 200 with the client's address.
fn request_stream(frontend: SocketAddr) -> Load {
    let clients: Vec<Client> = (0..WORKERS)
        .map(|w| Client::new(w % 3 == 2, move || conn_from_client(frontend, true)))
        .collect();
    Load::start_with("/stream", &clients, Duration::from_millis(20), |response| {
        let real_ip = &response.json()["headers"]["x-real-ip"];
        match real_ip == "127.0.0.2" {
            true => Ok(()),
            false => Err(format!("x-real-ip {real_ip}")),
        }
    })
}

fn report(
    what: &str,
    tally: &Tally,
    kill_at: Duration,
    down_after: Option<Duration>,
    settings: &str,
) {
    eprintln!(
        "\n=== {what}: {} requests sent, {} ok, {} failed; slowest {:?}; \
         HAProxy marked the instance down {:?} after the signal; signal at {:?} into the stream\n    \
         HAProxy: {settings}",
        tally.sent,
        tally.ok,
        tally.failures.len(),
        tally.slowest,
        down_after,
        kill_at,
    );
    for (at, why) in &tally.failures {
        eprintln!("    failed at {at:?}: {why}");
    }
}

/// The HAProxy settings that matter here, as shipped (for the report).
fn haproxy_settings() -> String {
    let cfg = std::fs::read_to_string(Path::new(REPO).join("conf/ha/haproxy.cfg")).unwrap();
    cfg.lines()
        .map(str::trim)
        .filter(|l| {
            [
                "timeout connect",
                "timeout check",
                "retries",
                "option redispatch",
                "default-server",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The failover tests' start: the topology on two backends, [`request_stream`] through it
/// for 1.5 s, then a signal to portico-1. `None` where HAProxy or Redis is missing and the
/// test is opted out.
struct Failover {
    _one: MutexGuard<'static, ()>,
    _backends: (Backend, Backend),
    ha: Topology,
    stream: Load,
    /// When the signal went, on the stream's clock and on the test's.
    signalled_at: Duration,
    signalled: Instant,
}

impl Failover {
    async fn signal_portico_1(signal: i32) -> Option<Failover> {
        if !haproxy_and_redis() {
            return None;
        }
        let _one = one_at_a_time().await;
        let (b1, b2) = (Backend::http("b1"), Backend::http("b2"));
        let ha = Topology::start(Some([&b1, &b2])).await;
        let stream = request_stream(ha.https());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (signalled_at, signalled) = (stream.elapsed(), Instant::now());
        ha.signal("portico-1", signal);
        Some(Failover {
            _one,
            _backends: (b1, b2),
            ha,
            stream,
            signalled_at,
            signalled,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_one_instance_fails_no_request() {
    let Some(f) = Failover::signal_portico_1(SIGTERM).await else {
        return;
    };
    let (ha, term_at, term) = (&f.ha, f.signalled_at, f.signalled);

    // Not ready at once, while still serving: the signal is delivered asynchronously (through
    // `kill`), so allow it a moment on a loaded machine.
    let mut status = 0;
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        status = http_get(ha.portico_admin(1), "/readyz")
            .await
            .unwrap()
            .status;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 503, "/readyz within 500 ms of SIGTERM");
    let down_after = ha.wait_down(1, term, GRACE_PERIOD).await;
    assert!(
        down_after.is_some(),
        "HAProxy did not mark portico-1 down within the grace period ({GRACE_PERIOD:?})"
    );
    let exit = ha
        .wait_exit("portico-1", GRACE_PERIOD + Duration::from_secs(15))
        .await;
    let exited_after = term.elapsed();
    assert_eq!(
        exit,
        Some(0),
        "portico-1 did not exit cleanly after SIGTERM"
    );
    assert!(
        exited_after >= GRACE_PERIOD,
        "portico-1 left after {exited_after:?}, before its grace period"
    );
    // The survivor carries on alone for a while.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = f.stream.finish().await;

    report("SIGTERM", &tally, term_at, down_after, &haproxy_settings());
    eprintln!("    portico-1 exited (status 0) {exited_after:?} after SIGTERM");
    assert!(
        tally.ok >= 100,
        "too few requests to mean anything: {}",
        tally.ok
    );
    assert_eq!(
        tally.failures.len(),
        0,
        "requests failed during a graceful shutdown: {:?}",
        tally.failures
    );
    assert_eq!(ha.haproxy_status(2).await, "UP");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_one_instance_fails_few_requests() {
    let Some(f) = Failover::signal_portico_1(SIGKILL).await else {
        return;
    };
    let (ha, kill_at, kill) = (&f.ha, f.signalled_at, f.signalled);
    let down_after = ha.wait_down(1, kill, Duration::from_secs(5)).await;
    assert!(
        down_after.is_some(),
        "HAProxy did not mark the killed portico-1 down within 5 s"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = f.stream.finish().await;

    report("SIGKILL", &tally, kill_at, down_after, &haproxy_settings());
    assert_eq!(ha.wait_exit("portico-1", IO_TIMEOUT).await, Some(137));
    assert!(
        tally.ok >= 100,
        "too few requests to mean anything: {}",
        tally.ok
    );
    // At layer 4 a request already on its way to the killed instance cannot be replayed
    // elsewhere: each client may lose the one it had in flight, no more. New connections are
    // refused by the dead instance and redispatched by HAProxy.
    assert!(
        tally.failures.len() <= WORKERS,
        "{} requests failed for {WORKERS} concurrent clients: {:?}",
        tally.failures.len(),
        tally.failures
    );
    for (at, why) in &tally.failures {
        assert!(
            *at + Duration::from_millis(500) >= kill_at,
            "a request failed before the kill: {at:?} {why}"
        );
    }
    assert_eq!(ha.haproxy_status(2).await, "UP");
}

// ---------------------------------------------------------------------------------------
// The script itself

#[tokio::test]
async fn the_local_script_runs_the_demo_and_stops_everything() {
    if !haproxy_and_redis() {
        return;
    }
    let _one = one_at_a_time().await;
    let mut ha = Topology::start(None).await;

    let mut seen = Vec::new();
    for _ in 0..4 {
        let response = https_get(ha.https(), "", &TlsClientOpts::insecure(), "/")
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        seen.push(response.text());
        let response = http_get(ha.http(), "/").await.unwrap();
        assert_eq!(response.status, 200);
        seen.push(response.text());
    }
    assert!(
        seen.contains(&"hello from backend-1\n".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"hello from backend-2\n".to_string()),
        "{seen:?}"
    );
    // The admin token is required off the health endpoints.
    let status = http_get(ha.portico_admin(2), "/status").await.unwrap();
    assert_eq!(status.status, 401);

    let names = ha_local_processes();
    let pids: Vec<u32> = names.iter().map(|n| ha.pid(n)).collect();
    assert!(pids.iter().all(|&p| process_alive(p)));
    assert!(ha.stop(), "the script did not stop within 15 s");
    for (name, pid) in names.iter().zip(&pids) {
        assert!(
            !process_alive(*pid),
            "{name} (pid {pid}) still runs after the script stopped"
        );
    }
    assert!(
        http_get(ha.https(), "/").await.is_err(),
        "HAProxy still listens"
    );
    assert!(!ha.run.join("ready").exists());
}

// ---------------------------------------------------------------------------------------
// The rate limit both instances share through Redis

/// The /limited route's `rate_limit` in conf/ha/portico.yaml, as shipped.
struct SharedLimit {
    per_second: f64,
    burst: f64,
    /// `redis.timeout`
    timeout: Duration,
}

impl SharedLimit {
    fn shipped() -> SharedLimit {
        let text = std::fs::read_to_string(Path::new(REPO).join("conf/ha/portico.yaml")).unwrap();
        let config: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let route = config["routes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "limited")
            .expect("conf/ha/portico.yaml has a route named limited");
        assert_eq!(route["match"]["path"]["prefix"], "/limited");
        let limit = route["plugins"]
            .as_sequence()
            .unwrap()
            .iter()
            .find_map(|p| p.get("rate_limit"))
            .expect("the limited route has a rate_limit");
        assert_eq!(limit["key"], "client_ip");
        assert_eq!(limit["redis"]["url"], "${PORTICO_REDIS_URL}");
        assert_eq!(limit["redis"]["on_error"], "allow");
        let timeout = limit["redis"]["timeout"].as_str().unwrap();
        SharedLimit {
            per_second: limit["per_second"].as_f64().unwrap(),
            burst: limit["burst"].as_f64().unwrap_or(0.0),
            timeout: Duration::from_millis(
                timeout
                    .strip_suffix("ms")
                    .expect("timeout in ms")
                    .parse()
                    .unwrap(),
            ),
        }
    }

    /// What a full bucket lets through at once.
    fn capacity(&self) -> f64 {
        self.per_second + self.burst
    }
}

/// One request of a paced stream.
struct Answer {
    /// When it was sent, from the start of the stream.
    sent: Duration,
    /// The status, or what went wrong.
    status: Result<u16, String>,
    /// Whether it carried `RateLimit-Limit`, i.e. Redis was asked.
    checked: bool,
    took: Duration,
}

/// GET `prefix/N` through HAProxy's plain frontend from `CLIENT`, `per_second` requests a
/// second for `length`, each on a new connection, without waiting for answers: a steady
/// stream whatever the latency, which HAProxy's round robin spreads over both instances.
async fn paced_stream(
    frontend: SocketAddr,
    prefix: &str,
    per_second: f64,
    length: Duration,
) -> Vec<Answer> {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    let mut requests = Vec::new();
    let mut i = 0u64;
    loop {
        tick.tick().await;
        let sent = started.elapsed();
        if sent >= length {
            break;
        }
        i += 1;
        let path = format!("{prefix}/{i}");
        requests.push(tokio::spawn(async move {
            let at = Instant::now();
            let response = async {
                let tcp = connect_from_client(frontend).await?;
                let mut conn = HttpConn::h1_over(tcp, "portico.test", None).await?;
                conn.get(&path).await
            }
            .await;
            let took = at.elapsed();
            match response {
                Ok(r) => Answer {
                    sent,
                    status: Ok(r.status),
                    checked: r.header("ratelimit-limit").is_some(),
                    took,
                },
                Err(e) => Answer {
                    sent,
                    status: Err(e.to_string()),
                    checked: false,
                    took,
                },
            }
        }));
    }
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.expect("a request task panicked"));
    }
    answers
}

impl Topology {
    /// Instance `n`'s `/metrics`.
    async fn metrics(&self, n: usize) -> Metrics {
        let response = http_get(self.portico_admin(n), "/metrics").await.unwrap();
        assert_eq!(response.status, 200);
        Metrics::parse(response.text())
    }

    /// Makes both instances connect to Redis, from another client address than `CLIENT`
    /// (so that its bucket is untouched), and checks that Redis answers.
    async fn warm_up_the_limit(&self) {
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
        for i in 0..4 {
            let tcp = connect_from(other, self.http()).await.unwrap();
            let mut conn = HttpConn::h1_over(tcp, "portico.test", None).await.unwrap();
            let response = conn.get(&format!("/limited/warm-up/{i}")).await.unwrap();
            assert_eq!(response.status, 200);
            assert!(
                response.header("ratelimit-limit").is_some(),
                "Redis was not asked: {:?}",
                response.headers
            );
        }
    }
}

fn statuses(answers: &[Answer]) -> (u64, u64, Vec<String>) {
    let mut allowed = 0;
    let mut refused = 0;
    let mut other = Vec::new();
    for a in answers {
        match &a.status {
            Ok(200) => allowed += 1,
            Ok(429) => refused += 1,
            Ok(s) => other.push(format!("status {s} at {:?}", a.sent)),
            Err(e) => other.push(format!("{e} at {:?}", a.sent)),
        }
    }
    (allowed, refused, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_limit_holds_across_both_instances() {
    if !haproxy_and_redis() {
        return;
    }
    let _one = one_at_a_time().await;
    let limit = SharedLimit::shipped();
    let (b1, b2) = (Backend::http("b1"), Backend::http("b2"));
    let ha = Topology::start(Some([&b1, &b2])).await;
    ha.warm_up_the_limit().await;

    // Four times the limit for five seconds: the bucket's first `capacity` requests, then
    // `per_second` a second, whichever instance each connection lands on.
    let offered = 4.0 * limit.per_second;
    let answers = paced_stream(ha.http(), "/limited", offered, Duration::from_secs(5)).await;
    let (allowed, refused, other) = statuses(&answers);
    assert!(other.is_empty(), "neither 200 nor 429: {other:?}");
    let span = answers.last().unwrap().sent - answers[0].sent;
    let expected = limit.per_second * span.as_secs_f64();
    let measured = allowed as f64 - limit.capacity();
    let unchecked = answers
        .iter()
        .filter(|a| a.status == Ok(200) && !a.checked)
        .count();

    // Each instance's own view: both served, both allowed and both refused.
    tokio::time::sleep(Duration::from_millis(300)).await; // the logging phase counts
    let mut per_instance = Vec::new();
    let mut redis_errors = 0.0;
    for n in 1..=2 {
        let m = ha.metrics(n).await;
        let ok = m.sum(
            "portico_requests_total",
            &[("route", "limited"), ("status", "200")],
        );
        let limited = m.sum(
            "portico_plugin_rejections_total",
            &[("plugin", "rate_limit"), ("route", "limited")],
        );
        redis_errors += m.sum("portico_rate_limit_redis_errors_total", &[]);
        per_instance.push((ok, limited));
    }
    eprintln!(
        "\n=== shared limit: per_second {} burst {}; offered {offered}/s for {span:?}: {} requests, \
         {allowed} allowed, {refused} refused ({unchecked} allowed unchecked, {redis_errors} Redis errors); \
         allowed beyond the first bucket: {measured} against {expected:.1} expected \
         ({:.1}/s, {:+.1}%); \
         portico-1 allowed {} refused {}, portico-2 allowed {} refused {} (warm-up: 2 each)",
        limit.per_second,
        limit.burst,
        answers.len(),
        measured / span.as_secs_f64(),
        (measured - expected) / expected * 100.0,
        per_instance[0].0,
        per_instance[0].1,
        per_instance[1].0,
        per_instance[1].1,
    );
    assert!(
        (measured - expected).abs() <= 0.15 * expected,
        "{measured} allowed beyond the bucket, {expected:.1} expected (±15%)"
    );
    for (n, (ok, limited)) in per_instance.iter().enumerate() {
        assert!(
            *ok > 2.0 && *limited > 0.0,
            "portico-{} allowed {ok} (2 of them the warm-up) and refused {limited}: \
             both instances should have served the stream",
            n + 1
        );
    }
    // The refusals each instance counted are the ones the client saw.
    assert_eq!(
        per_instance[0].1 + per_instance[1].1,
        refused as f64,
        "refusals counted by the instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_limit_follows_on_error_within_its_timeout() {
    if !tools_present(&["haproxy", "redis-server", "promtool"]) {
        return;
    }
    let _one = one_at_a_time().await;
    let limit = SharedLimit::shipped();
    let (b1, b2) = (Backend::http("b1"), Backend::http("b2"));
    let ha = Topology::start(Some([&b1, &b2])).await;
    ha.warm_up_the_limit().await;
    for n in 1..=2 {
        let m = ha.metrics(n).await;
        assert!(
            m.contains(
                "portico_rate_limit_redis_errors_total{outcome=\"allowed\",route=\"limited\"} 0"
            ),
            "portico-{n}: the error counter is not at 0 before the outage:\n{m}"
        );
    }
    // Three times the limit, so that a working limiter would refuse most.
    let offered = 3.0 * limit.per_second;
    let phase = Duration::from_secs(2);
    let bound = limit.timeout + Duration::from_secs(1);
    let mut total = 0;
    let mut report = Vec::new();
    // Redis hangs (SIGSTOP: connections stay open, nothing answers): each request waits
    // the timeout, then is let through. Then Redis is gone (SIGKILL): refused connections.
    for (what, signal) in [("SIGSTOP", SIGSTOP), ("SIGKILL", SIGKILL)] {
        ha.signal("redis", signal);
        let answers = paced_stream(ha.http(), "/limited/outage", offered, phase).await;
        let (allowed, refused, other) = statuses(&answers);
        let mut took: Vec<Duration> = answers.iter().map(|a| a.took).collect();
        took.sort();
        let median = took[took.len() / 2];
        let slowest = *took.last().unwrap();
        report.push(format!(
            "{what}: {} requests in {phase:?}, {allowed} allowed, {refused} refused; \
             median {median:?}, slowest {slowest:?}",
            answers.len()
        ));
        assert!(other.is_empty(), "{what}: neither 200 nor 429: {other:?}");
        assert_eq!(refused, 0, "{what}: on_error: allow refused requests");
        assert!(
            answers.iter().all(|a| !a.checked),
            "{what}: an answer carries limit headers, as if Redis had answered"
        );
        assert!(
            slowest < bound,
            "{what}: a request took {slowest:?}, more than timeout + 1 s ({bound:?})"
        );
        // More than the limit would have let through: not limited at all.
        assert!(
            allowed as f64 > limit.capacity() + limit.per_second * phase.as_secs_f64(),
            "{what}: only {allowed} allowed"
        );
        total += answers.len();
    }
    assert_eq!(ha.wait_exit("redis", IO_TIMEOUT).await, Some(137));

    // Each instance counted the requests it let through unchecked, and logged the outage
    // once.
    let mut counted = Vec::new();
    for n in 1..=2 {
        let m = ha.metrics(n).await;
        promtool_check_metrics(&m);
        counted.push(m.sum(
            "portico_rate_limit_redis_errors_total",
            &[("route", "limited"), ("outcome", "allowed")],
        ));
        let log = ha.log(&format!("portico-{n}"));
        assert_eq!(
            log.matches("rate_limit: redis at").count(),
            1,
            "portico-{n}: the outage is logged once:\n{log}"
        );
    }
    eprintln!(
        "\n=== Redis outage, timeout {:?}, on_error allow: {}; \
         portico_rate_limit_redis_errors_total: portico-1 {}, portico-2 {}",
        limit.timeout,
        report.join("; "),
        counted[0],
        counted[1]
    );
    assert!(
        counted.iter().all(|c| *c > 0.0),
        "both instances count: {counted:?}"
    );
    assert_eq!(
        counted[0] + counted[1],
        total as f64,
        "every request of the outage is counted once"
    );
}
