//! A real ACME CA for the tests: Pebble (Let's Encrypt's test CA, Debian's `pebble`
//! package) with `pebble-challtestsrv` resolving every name to 127.0.0.1, and a throw-away
//! redis-server for the storage a pair shares. Shared by tests/acme.rs and the gateway
//! crate's own ACME tests (gateway/tests/acme_support), so it uses std, rcgen, openssl and
//! serde_json only.

#![allow(dead_code)]

use super::ports::free_port;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn installed(program: &str, flag: &str) -> bool {
    Command::new(program)
        .arg(flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// False (the test then returns) when pebble or redis-server is missing, said loudly; in CI
/// (`CI` set) a missing tool fails the test instead.
pub fn acme_tools_present() -> bool {
    let missing: Vec<&str> = [
        ("pebble", "-h"),
        ("pebble-challtestsrv", "-h"),
        ("redis-server", "--version"),
    ]
    .into_iter()
    .filter(|(p, f)| !installed(p, f))
    .map(|(p, _)| p)
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing:?} not installed (apt-get install pebble redis-server; .ci/run does)"
    );
    eprintln!("\n******** SKIPPED: {missing:?} not installed (apt-get install pebble redis-server) ********\n");
    false
}

/// A name unique within this test process, for files.
fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{what}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The CA of Pebble's own HTTPS (its directory), what `acme.ca` points to.
pub struct DirectoryCa {
    pub ca_pem: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl DirectoryCa {
    pub fn new(dir: &Path) -> Self {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Portico test directory CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let d = DirectoryCa {
            ca_pem: dir.join("directory-ca.pem"),
            cert: dir.join("directory.pem"),
            key: dir.join("directory.key"),
        };
        std::fs::write(&d.ca_pem, ca.pem()).unwrap();
        std::fs::write(&d.cert, leaf.pem()).unwrap();
        std::fs::write(&d.key, leaf_key.serialize_pem()).unwrap();
        d
    }
}

/// The ports a Pebble uses: kept across a restart so that it comes back where it was.
#[derive(Clone, Copy)]
pub struct PebblePorts {
    pub listen: u16,
    pub management: u16,
    pub dns: u16,
    pub dns_management: u16,
    /// Where Pebble sends HTTP-01 and TLS-ALPN-01 validations (the listeners' ports).
    pub http: u16,
    pub tls: u16,
}

impl PebblePorts {
    pub fn new() -> Self {
        PebblePorts {
            listen: free_port(),
            management: free_port(),
            dns: free_port(),
            dns_management: free_port(),
            http: free_port(),
            tls: free_port(),
        }
    }

    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.listen)
    }
}

/// A running Pebble and its DNS server; both stopped on drop.
pub struct Pebble {
    pebble: Child,
    dns: Child,
    pub log: PathBuf,
    management: u16,
}

impl Pebble {
    /// `validity`: the issued certificates' lifetime in seconds (Pebble's default: 5 years).
    pub fn start(
        dir: &Path,
        ca: &DirectoryCa,
        ports: PebblePorts,
        validity: Option<u64>,
    ) -> Pebble {
        let n = unique("pebble");
        let config = dir.join(format!("{n}.json"));
        let mut pebble = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{}", ports.listen),
            "managementListenAddress": format!("127.0.0.1:{}", ports.management),
            "certificate": ca.cert,
            "privateKey": ca.key,
            "httpPort": ports.http,
            "tlsPort": ports.tls,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(v) = validity {
            pebble["certificateValidityPeriod"] = v.into();
        }
        std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string()).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &format!("127.0.0.1:{}", ports.dns)])
            .args([
                "-management",
                &format!("127.0.0.1:{}", ports.dns_management),
            ])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv starts");
        let log = dir.join(format!("{n}.log"));
        let out = File::create(&log).unwrap();
        let pebble = Command::new("pebble")
            .args(["-config", config.to_str().unwrap()])
            .args(["-dnsserver", &format!("127.0.0.1:{}", ports.dns)])
            .arg("-strict=false")
            // Validate at once, never reject a good nonce, never reuse an authorization
            // (every order answers its challenges).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("pebble starts");
        let started = Pebble {
            pebble,
            dns,
            log,
            management: ports.management,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in [ports.listen, ports.management] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "pebble did not listen within 20 s: {}",
                    started.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        started
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The serials Pebble says it issued (lowercase hex, as it logs them), in order.
    pub fn issued(&self) -> Vec<String> {
        self.log_text()
            .lines()
            .filter_map(|l| l.split("Issued certificate serial ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|s| s.to_ascii_lowercase())
            .collect()
    }

    /// The root that Pebble (made at its start) issues under, PEM, from its management
    /// interface, written to `path`.
    pub fn write_root(&self, path: &Path) {
        let mut connector =
            openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
        connector.set_verify(openssl::ssl::SslVerifyMode::NONE);
        let connector = connector.build();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", self.management)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = connector
            .configure()
            .unwrap()
            .verify_hostname(false)
            .connect("localhost", tcp)
            .unwrap();
        use std::io::{Read, Write};
        tls.write_all(b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        let start = text
            .find("-----BEGIN CERTIFICATE-----")
            .unwrap_or_else(|| panic!("no root from pebble: {text}"));
        let end = text.find("-----END CERTIFICATE-----").unwrap() + 25;
        std::fs::write(path, format!("{}\n", &text[start..end])).unwrap();
    }

    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        for child in [&mut self.pebble, &mut self.dns] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Pebble logs serials as Go's `big.Int` hex: lowercase, no leading zeros.
pub fn same_serial(ours: &str, pebbles: &str) -> bool {
    ours.trim_start_matches('0')
        .eq_ignore_ascii_case(pebbles.trim_start_matches('0'))
}

/// A throw-away redis-server on a free port, stopped on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Redis {
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
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
