//! A fleet, black-box: real `portico` processes following one key of a real etcd (Debian's
//! etcd-server on 127.0.0.1, with a data folder of its own; see gateway/tests/etcd/mod.rs).
//! Pushes go through `portico -t --push`; writes that must get past it go through `etcdctl`.
//! What an instance serves is read with raw HTTP/1.1 requests to its listener, what it counts
//! and shows from its admin listener. docs/deployment.md ("A fleet") is the contract.

#[path = "../gateway/tests/etcd/mod.rs"]
mod etcd;

use crate::common::free_port;
use etcd::{Cluster, Scratch};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PORTICO: &str = env!("CARGO_BIN_EXE_portico");
const KEY: &str = "/portico/config";
/// The contract: a new revision is served within 2 s of the write.
const APPLY_LIMIT: Duration = Duration::from_secs(2);
/// A start (debug build, busy machine; up to 4 s of it waiting for an etcd that is down).
const START_LIMIT: Duration = Duration::from_secs(20);
/// After etcd comes back: the follower's backoff is at most 10 s, then the push applies.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(15);

/// One document for every instance: what differs (ports, folders) comes from each one's
/// environment. The pid file is relative: against the instance's working directory.
fn document(body: &str) -> String {
    format!(
        "server:
  pid_file: ./portico.pid
  upgrade_sock: ${{FLEET_DIR}}/upgrade.sock
  grace_period: 0s
admin:
  listen: 127.0.0.1:${{FLEET_ADMIN_PORT}}
listeners:
  - name: web
    listen: 127.0.0.1:${{FLEET_WEB_PORT}}
routes:
  - name: all
    match: {{ path: {{ prefix: / }} }}
    plugins:
      - respond: {{ status: 200, body: \"{body}\\n\" }}
"
    )
}

/// A running instance, killed when dropped.
struct Instance {
    name: String,
    dir: PathBuf,
    admin: u16,
    web: u16,
    child: Option<Child>,
    starts: usize,
    /// More environment: etcd's TLS and auth settings.
    env: Vec<(String, String)>,
}

impl Instance {
    /// An instance that will run in its own working directory under `scratch`.
    fn new(scratch: &Scratch, name: &str) -> Instance {
        let dir = scratch.path.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Instance {
            name: name.to_string(),
            dir,
            admin: free_port(),
            web: free_port(),
            child: None,
            starts: 0,
            env: Vec::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(PORTICO);
        c.args(args)
            .current_dir(&self.dir)
            .env("RUST_LOG", "info")
            .env("FLEET_DIR", &self.dir)
            .env("FLEET_ADMIN_PORT", self.admin.to_string())
            .env("FLEET_WEB_PORT", self.web.to_string())
            .env_remove("PORTICO_CONFIG_CACHE")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        c
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.join(format!("stderr-{}.log", self.starts))
    }

    /// Starts `portico -c URL` and waits for `/readyz`.
    fn start(&mut self, url: &str) {
        self.starts += 1;
        let child = self
            .command(&["-c", url])
            .stdout(std::fs::File::create(self.dir.join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(self.stderr_path()).unwrap())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + START_LIMIT;
        while get(self.admin, "/readyz").map(|(s, _)| s) != Some(200) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited ({status}): {}", self.name, self.stderr());
            }
            assert!(Instant::now() < deadline, "{} not ready", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// The body the listener answers `/` with, trimmed (`None`: no answer).
    fn serving(&self) -> Option<String> {
        get(self.web, "/").map(|(_, body)| body.trim().to_string())
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) = get(self.admin, "/status").expect("/status answers");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    fn failed_reloads(&self) -> f64 {
        let (_, body) = get(self.admin, "/metrics").expect("/metrics answers");
        body.lines()
            .find_map(|l| l.strip_prefix("portico_config_reloads_total{result=\"failure\"} "))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr());
        }
        self.kill();
    }
}

/// `GET path` over a fresh connection; the status and body, or `None` if nothing answered.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: fleet.test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// `portico -c FILE -t --push URL` with `doc` as the file, run as `by` would (its
/// environment fills the `${VAR}`s for `-t`).
fn push(by: &Instance, doc: &str, url: &str) -> Output {
    let file = by.dir.join("push.yaml");
    std::fs::write(&file, doc).unwrap();
    by.command(&["-c", file.to_str().unwrap(), "-t", "--push", url])
        .output()
        .unwrap()
}

fn pushed_revision(out: &Output) -> i64 {
    assert!(
        out.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Waits until every instance serves `body`; the time it took.
fn until_served(instances: &[&Instance], body: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if instances
            .iter()
            .all(|i| i.serving().as_deref() == Some(body))
        {
            return start.elapsed();
        }
        if start.elapsed() > limit {
            let seen: Vec<_> = instances.iter().map(|i| i.serving()).collect();
            panic!("{body:?} not served by all within {limit:?}: {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn two_instances_follow_one_key_through_bad_revisions_and_an_etcd_outage() {
    let mut cluster = Cluster::single("fleet-two");
    let url = cluster.url(KEY);
    let scratch = Scratch::new("fleet-two-instances");
    let mut a = Instance::new(&scratch, "a");
    let mut b = Instance::new(&scratch, "b");

    // The first push: -t accepts, the revision printed is the one etcd holds.
    let r1 = pushed_revision(&push(&a, &document("v1"), &url));
    assert_eq!(cluster.get(KEY), Some((document("v1"), r1)));

    a.start(&url);
    b.start(&url);
    for i in [&a, &b] {
        assert_eq!(i.serving().as_deref(), Some("v1"));
        let status = i.status();
        assert_eq!(status["source"], "etcd");
        assert_eq!(status["revision"], r1);
        // Relative paths in a config from etcd: against the working directory.
        assert!(i.dir.join("portico.pid").exists(), "{}", i.name);
        assert!(i.dir.join("portico-config-cache.yaml").exists());
    }

    // A valid push reaches both within 2 s.
    let pushed = Instant::now();
    let r2 = pushed_revision(&push(&a, &document("v2"), &url));
    let after_write = until_served(&[&a, &b], "v2", APPLY_LIMIT);
    let took = pushed.elapsed();
    eprintln!(
        "push -> served on both: {took:?} from the push command's start (its -t included), \
         {after_write:?} from its exit"
    );
    assert!(took < APPLY_LIMIT, "{took:?}");
    for i in [&a, &b] {
        assert_eq!(i.status()["revision"], r2);
    }

    // --push refuses what -t refuses: exit 1, nothing written.
    let bad = document("v-bad").replace("grace_period: 0s", "grace_period: 0s\n  bogus: 1");
    let refused = push(&a, &bad, &url);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("server.bogus"));
    assert_eq!(cluster.get(KEY).unwrap().1, r2);

    // Written past --push, the invalid revision is refused by both: counted, logged, and the
    // running config stays.
    let before = (a.failed_reloads(), b.failed_reloads());
    let r_bad = cluster.put(KEY, bad.as_bytes());
    let deadline = Instant::now() + APPLY_LIMIT;
    while (a.failed_reloads(), b.failed_reloads()) != (before.0 + 1.0, before.1 + 1.0) {
        assert!(
            Instant::now() < deadline,
            "the bad revision {r_bad} not refused by both"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for i in [&a, &b] {
        assert_eq!(i.serving().as_deref(), Some("v2"));
        assert_eq!(i.status()["revision"], r2);
        assert!(i.stderr().contains("server.bogus"), "{}: logged", i.name);
    }

    // etcd stops: both keep serving.
    cluster.kill(0);
    std::thread::sleep(Duration::from_millis(500));
    for i in [&a, &b] {
        assert_eq!(i.serving().as_deref(), Some("v2"), "{}", i.name);
    }
    // A restarted instance starts from its cache, and says so on one line naming it.
    a.kill();
    a.start(&url);
    let cache = a.dir.join("portico-config-cache.yaml");
    let notice: Vec<_> = a
        .stderr()
        .lines()
        .filter(|l| l.contains("started from cache"))
        .map(str::to_string)
        .collect();
    assert_eq!(notice.len(), 1, "{notice:?}");
    assert!(notice[0].contains(cache.to_str().unwrap()), "{notice:?}");
    assert_eq!(a.serving().as_deref(), Some("v2"));
    assert_eq!(a.status()["revision"], r2);
    assert_eq!(b.serving().as_deref(), Some("v2"));

    // etcd back: a new push reaches both (after their backoff).
    cluster.restart(0, None);
    let r3 = pushed_revision(&push(&b, &document("v3"), &url));
    let took = until_served(&[&a, &b], "v3", CATCH_UP_LIMIT);
    eprintln!("after the outage, push -> served on both: {took:?}");
    for i in [&a, &b] {
        assert_eq!(i.status()["revision"], r3);
    }

    // The figure for the docs: push -> served on both, a few times over.
    let mut from_start = Vec::new();
    let mut from_exit = Vec::new();
    for n in 0..5 {
        let body = format!("v4-{n}");
        let pushed = Instant::now();
        pushed_revision(&push(&a, &document(&body), &url));
        from_exit.push(until_served(&[&a, &b], &body, APPLY_LIMIT));
        from_start.push(pushed.elapsed());
    }
    from_start.sort();
    from_exit.sort();
    eprintln!(
        "push -> served on both, 5 pushes: {:?} .. {:?} from the push command's start, {:?} .. {:?} from its exit",
        from_start[0], from_start[4], from_exit[0], from_exit[4]
    );
    assert!(from_start[4] < APPLY_LIMIT);
}

#[test]
fn no_etcd_and_no_cache_is_exit_1_with_the_reason() {
    let scratch = Scratch::new("fleet-nothing");
    let i = Instance::new(&scratch, "lonely");
    let url = format!("etcd://127.0.0.1:{}{KEY}", free_port());
    let out = i.command(&["-c", &url]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("etcd unreachable"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} does not exist",
            i.dir.join("portico-config-cache.yaml").display()
        )),
        "{stderr}"
    );
}

#[test]
fn push_to_an_unreachable_etcd_is_exit_1() {
    let scratch = Scratch::new("fleet-push-nowhere");
    let i = Instance::new(&scratch, "pusher");
    let url = format!("etcd://127.0.0.1:{}{KEY}", free_port());
    let out = push(&i, &document("v1"), &url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not stored") && stderr.contains("unreachable"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// `POST /reload` on the admin listener; the whole answer.
fn post_reload(admin: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn post_reload_reads_etcd_again_and_a_file_shows_as_file() {
    let mut cluster = Cluster::single("fleet-reload");
    let url = cluster.url(KEY);
    let scratch = Scratch::new("fleet-reload-instances");
    let mut a = Instance::new(&scratch, "a");
    let r1 = pushed_revision(&push(&a, &document("v1"), &url));
    a.start(&url);
    // An instance started from a file says `file` and null.
    let file = a.dir.join("push.yaml");
    let mut f = Instance::new(&scratch, "f");
    f.start(file.to_str().unwrap());
    assert_eq!(f.status()["source"], "file");
    assert_eq!(f.status()["revision"], serde_json::Value::Null);
    f.kill();

    // POST /reload reads the key again: a success while etcd answers.
    let answer = post_reload(a.admin);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(a.status()["revision"], r1);
    // It asks etcd, not its memory or the cache: with etcd down the reload fails (400 with
    // the reason, counted), and the running config stays.
    cluster.kill(0);
    let before = a.failed_reloads();
    let answer = post_reload(a.admin);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("etcd unreachable"), "{answer}");
    assert_eq!(a.failed_reloads(), before + 1.0);
    assert_eq!(a.serving().as_deref(), Some("v1"));
    assert_eq!(a.status()["revision"], r1);
}

#[test]
fn tls_and_auth_to_etcd_come_from_the_environment() {
    // TLS with a client certificate required.
    let cluster = Cluster::start("fleet-tls", 1, Some(true));
    let tls = cluster.tls().unwrap();
    let url = cluster.url(KEY);
    assert!(url.starts_with("etcds://"));
    let scratch = Scratch::new("fleet-tls-instances");
    let mut a = Instance::new(&scratch, "a");
    a.env = vec![("PORTICO_ETCD_CA".into(), tls.ca.display().to_string())];
    let refused = push(&a, &document("v1"), &url);
    assert_eq!(refused.status.code(), Some(1), "no client certificate");
    a.env.push((
        "PORTICO_ETCD_CERT".into(),
        tls.client_cert.display().to_string(),
    ));
    a.env.push((
        "PORTICO_ETCD_KEY".into(),
        tls.client_key.display().to_string(),
    ));
    let r1 = pushed_revision(&push(&a, &document("v1"), &url));
    a.start(&url);
    assert_eq!(a.serving().as_deref(), Some("v1"));
    assert_eq!(a.status()["revision"], r1);
    drop(a);
    drop(cluster);

    // etcd's own users.
    let mut cluster = Cluster::single("fleet-auth");
    let url = cluster.url(KEY);
    cluster.enable_auth("rootpw", "portico", "s3cret", KEY, "readwrite");
    let mut b = Instance::new(&scratch, "b");
    b.env = vec![
        ("PORTICO_ETCD_USER".into(), "portico".into()),
        ("PORTICO_ETCD_PASSWORD".into(), "wrong".into()),
    ];
    let refused = push(&b, &document("v1"), &url);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused"));
    b.env[1].1 = "s3cret".into();
    pushed_revision(&push(&b, &document("v1"), &url));
    b.start(&url);
    assert_eq!(b.serving().as_deref(), Some("v1"));
    let r2 = pushed_revision(&push(&b, &document("v2"), &url));
    until_served(&[&b], "v2", APPLY_LIMIT);
    assert_eq!(b.status()["revision"], r2);
}
