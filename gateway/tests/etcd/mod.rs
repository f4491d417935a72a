//! A real etcd for tests: Debian's `etcd-server` (`/usr/bin/etcd`, 3.4) and `etcdctl`, on
//! 127.0.0.1 with random ports and a data folder of its own, killed when dropped.
//!
//! Self-contained (std, serde_json, rcgen), so that any test can take it in with
//! `#[path = "…/etcd/mod.rs"] mod etcd;`. Writes, compactions and auth setup go through
//! `etcdctl`, not through the code under test.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A member must answer `etcdctl endpoint health` within this after its start.
const START_LIMIT: Duration = Duration::from_secs(20);

/// A folder for one test's etcd data, certificates and logs, removed when dropped unless the
/// test is failing or `PORTICO_KEEP_TEST_DIRS` is set.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("portico-etcd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch folder");
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("PORTICO_KEEP_TEST_DIRS").is_some() {
            eprintln!("etcd test files kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

// Ports come from the including test binary's one `free_port` (tests/common/ports.rs): two
// copies in one binary would each hand out the same ports.
use super::free_port;

/// TLS for the client side of etcd: its server certificate (for 127.0.0.1 and localhost),
/// the CA that signed it, and a client certificate from the same CA.
pub struct Tls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// etcd asks clients for a certificate (`--client-cert-auth`).
    pub require_client_cert: bool,
}

impl Tls {
    pub fn make(dir: &Path, require_client_cert: bool) -> Tls {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "etcd test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf = |names: Vec<String>, ip: bool, client: bool| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(names).unwrap();
            if ip {
                params
                    .subject_alt_names
                    .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
            }
            params.extended_key_usages = vec![if client {
                rcgen::ExtendedKeyUsagePurpose::ClientAuth
            } else {
                rcgen::ExtendedKeyUsagePurpose::ServerAuth
            }];
            params.distinguished_name.push(
                rcgen::DnType::CommonName,
                if client { "portico" } else { "etcd" },
            );
            let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(vec!["localhost".into()], true, false);
        let (client_cert, client_key) = leaf(vec![], false, true);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Tls {
            ca: write("ca.pem", &ca.pem()),
            server_cert: write("etcd.pem", &server_cert),
            server_key: write("etcd-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
            require_client_cert,
        }
    }
}

/// One etcd member process.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    initial_cluster: String,
    child: Option<Child>,
    started_once: bool,
}

/// An etcd cluster of one or more members on 127.0.0.1, all killed when dropped.
pub struct Cluster {
    pub members: Vec<Member>,
    tls: Option<Tls>,
    /// `etcdctl --user` for the writes of the test itself, once auth is on.
    root: Option<String>,
    _scratch: Scratch,
}

impl Cluster {
    /// A single member.
    pub fn single(name: &str) -> Cluster {
        Cluster::start(name, 1, None)
    }

    /// `size` members (plain HTTP between them), serving clients over TLS when `tls` is given.
    pub fn start(name: &str, size: usize, tls: Option<bool>) -> Cluster {
        let scratch = Scratch::new(name);
        let tls = tls.map(|require| Tls::make(&scratch.path, require));
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| Member {
                name: format!("m{i}"),
                client_port: *client,
                peer_port: *peer,
                data_dir: scratch.path.join(format!("m{i}.etcd")),
                log: scratch.path.join(format!("m{i}.log")),
                initial_cluster: initial_cluster.clone(),
                child: None,
                started_once: false,
            })
            .collect();
        let mut cluster = Cluster {
            members,
            tls,
            root: None,
            _scratch: scratch,
        };
        // Members of a new cluster wait for each other: start all, then wait for each.
        for i in 0..size {
            cluster.spawn(i, None);
        }
        for i in 0..size {
            cluster.wait_healthy(i);
        }
        cluster
    }

    /// The scheme for this cluster's URLs: `etcds` with TLS.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "etcds"
        } else {
            "etcd"
        }
    }

    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// `127.0.0.1:PORT` of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's endpoint, comma-separated, as in an `etcd://` URL.
    pub fn endpoints(&self) -> String {
        (0..self.members.len())
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcd://` (or `etcds://`) URL of `key` on every member.
    pub fn url(&self, key: &str) -> String {
        format!("{}://{}{key}", self.scheme(), self.endpoints())
    }

    /// Kills member `i` (SIGKILL: no goodbye to the clients) and waits until it is gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data, on its own client port or on `client_port`.
    pub fn restart(&mut self, i: usize, client_port: Option<u16>) {
        self.kill(i);
        self.spawn(i, client_port);
        self.wait_healthy_on(i, client_port.unwrap_or(self.members[i].client_port));
    }

    fn spawn(&mut self, i: usize, client_port: Option<u16>) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let m = &mut self.members[i];
        let client_url = format!(
            "{scheme}://127.0.0.1:{}",
            client_port.unwrap_or(m.client_port)
        );
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &m.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "portico-test"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca);
            if tls.require_client_cert {
                cmd.arg("--client-cert-auth");
            }
        }
        m.child = Some(
            cmd.spawn()
                .expect("starting etcd (Debian package etcd-server)"),
        );
        m.started_once = true;
    }

    fn wait_healthy(&self, i: usize) {
        self.wait_healthy_on(i, self.members[i].client_port)
    }

    fn wait_healthy_on(&self, i: usize, port: u16) {
        let deadline = Instant::now() + START_LIMIT;
        let endpoint = format!("127.0.0.1:{port}");
        loop {
            let out = self
                .ctl_command(&endpoint)
                .args(["endpoint", "health"])
                .output();
            if matches!(&out, Ok(o) if o.status.success()) {
                return;
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.members[i].log).unwrap_or_default();
                panic!("etcd member {i} not healthy within {START_LIMIT:?}: {out:?}\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `etcdctl` against one endpoint, with this cluster's TLS files and root user.
    fn ctl_command(&self, endpoint: &str) -> Command {
        let mut cmd = Command::new("etcdctl");
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={scheme}://{endpoint}"))
            .arg("--command-timeout=5s")
            .arg("--dial-timeout=2s");
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        if let Some(root) = &self.root {
            cmd.arg(format!("--user={root}"));
        }
        cmd
    }

    /// Runs `etcdctl ARGS` (with `input` on stdin) against the first running member and
    /// returns its output; panics if it fails.
    pub fn ctl(&self, args: &[&str], input: &[u8]) -> String {
        let at = (0..self.members.len())
            .find(|&i| self.members[i].child.is_some())
            .expect("a running member");
        let mut child = self
            .ctl_command(&self.endpoint(at))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Waits until the cluster takes writes again (after a member, maybe the leader, was
    /// killed: an election takes a second or more), writing to a key of the harness's own.
    pub fn wait_writable(&self) {
        let deadline = Instant::now() + START_LIMIT;
        let at = (0..self.members.len())
            .find(|&i| self.members[i].child.is_some())
            .expect("a running member");
        loop {
            let out = self
                .ctl_command(&self.endpoint(at))
                .args(["put", "/etcd-harness/probe", "x"])
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster not writable within {START_LIMIT:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes `value` at `key` (through etcdctl) and returns the new revision.
    pub fn put(&self, key: &str, value: &[u8]) -> i64 {
        let out = self.ctl(&["put", "-w", "json", key], value);
        header_revision(&out)
    }

    /// Deletes `key` and returns the new revision.
    pub fn delete(&self, key: &str) -> i64 {
        header_revision(&self.ctl(&["del", "-w", "json", key], b""))
    }

    /// The text and `mod_revision` stored at `key`, if any.
    pub fn get(&self, key: &str) -> Option<(String, i64)> {
        let out = self.ctl(&["get", "-w", "json", key], b"");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let revision = json["kvs"].get(0)?["mod_revision"].as_i64().unwrap();
        let mut value = self.ctl(&["get", "--print-value-only", key], b"");
        value.pop(); // etcdctl's newline
        Some((value, revision))
    }

    /// Drops every revision before `revision`.
    pub fn compact(&self, revision: i64) {
        self.ctl(&["compaction", &revision.to_string()], b"");
    }

    /// Turns on etcd's auth: `root` (password `root_password`) for the test's own writes, and
    /// `user` with `password` allowed `permission` (`read`, `write`, `readwrite`) on `key`.
    pub fn enable_auth(
        &mut self,
        root_password: &str,
        user: &str,
        password: &str,
        key: &str,
        permission: &str,
    ) {
        self.ctl(&["user", "add", &format!("root:{root_password}")], b"");
        self.ctl(&["user", "grant-role", "root", "root"], b"");
        self.ctl(&["role", "add", "portico"], b"");
        self.ctl(
            &["role", "grant-permission", "portico", permission, key],
            b"",
        );
        self.ctl(&["user", "add", &format!("{user}:{password}")], b"");
        self.ctl(&["user", "grant-role", user, "portico"], b"");
        self.ctl(&["auth", "enable"], b"");
        self.root = Some(format!("root:{root_password}"));
    }

    /// The log of member `i`, for failure messages.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn header_revision(json: &str) -> i64 {
    let value: serde_json::Value = serde_json::from_str(json).expect("etcdctl JSON");
    value["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header.revision in {json}"))
}
