//! What the ACME tests run against: a real Pebble (Let's Encrypt's test CA, Debian's
//! `pebble` package) resolving every name to 127.0.0.1 through `pebble-challtestsrv`, a real
//! redis-server, and the two small servers a listener will be once ACME is wired in: one
//! answering HTTP-01 requests and one answering TLS-ALPN-01 handshakes, both from
//! `Acme::http01_answer` / `Acme::tls_alpn01_cert` of every instance.

#![allow(dead_code)]

use gateway::acme::{Acme, AcmeConfig, ACME_TLS_ALPN, HTTP01_PREFIX};
use openssl::pkey::PKey;
use openssl::ssl::{AlpnError, NameType, SslAcceptor, SslContext, SslMethod};
use openssl::x509::X509;
use std::collections::HashMap;
use std::fs::File;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
pub fn tools_present() -> bool {
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

pub fn init_logs() {
    let _ = env_logger::builder()
        .is_test(true)
        .filter_level(log::LevelFilter::Info)
        .try_init();
}

/// A folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "portico-{what}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The CA of Pebble's own HTTPS (its directory), what `acme.ca` points to.
pub struct DirectoryCa {
    pub ca_pem: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl DirectoryCa {
    pub fn new(dir: &TempDir) -> Self {
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
}

impl Pebble {
    /// `validity`: the issued certificates' lifetime in seconds (Pebble's default: 5 years).
    pub fn start(
        dir: &TempDir,
        ca: &DirectoryCa,
        ports: PebblePorts,
        validity: Option<u64>,
    ) -> Pebble {
        let n = rand::random::<u32>();
        let config = dir.join(&format!("pebble-{n:08x}.json"));
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
        let log = dir.join(&format!("pebble-{n:08x}.log"));
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
        let started = Pebble { pebble, dns, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", ports.listen)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pebble did not listen within 20 s: {}",
                started.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
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

/// An `acme:` block as a user writes it, checked as the config loader will.
pub fn acme_config(
    directory: &str,
    ca: &Path,
    domains: &[&str],
    challenge: &str,
    storage: &str,
) -> AcmeConfig {
    let yaml = format!(
        "directory: {directory}\nemail: ops@portico.test\ndomains: {domains:?}\nchallenge: {challenge}\nca: {}\nstorage: {storage}\n",
        ca.display()
    );
    let config: AcmeConfig = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(config.validate(), vec![], "{yaml}");
    config
}

/// Which instance answered a challenge request: (instance, answered).
pub type Answered = Arc<Mutex<Vec<(usize, bool)>>>;

/// Answers HTTP-01 on `port` as a plain listener will: `GET /.well-known/acme-challenge/T`
/// from the instances' storage. Every instance is asked (recorded in the result), the first
/// answer is sent.
pub async fn serve_http01(port: u16, instances: Vec<Arc<Acme>>) -> Answered {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let answered: Answered = Arc::default();
    let record = answered.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let instances = instances.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                    match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let text = String::from_utf8_lossy(&head);
                let path = text.split_whitespace().nth(1).unwrap_or("");
                let mut answer = None;
                if let Some(token) = path.strip_prefix(HTTP01_PREFIX) {
                    for (i, acme) in instances.iter().enumerate() {
                        let a = acme.http01_answer(token).await;
                        record.lock().unwrap().push((i, a.is_some()));
                        answer = answer.or(a);
                    }
                }
                let response = match answer {
                    Some(body) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                };
                let _ = conn.write_all(response.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    answered
}

/// Answers TLS-ALPN-01 on `port` as a TLS listener will: a handshake offering `acme-tls/1`
/// for one of `domains` gets the challenge certificate from storage.
pub async fn serve_tls_alpn01(
    port: u16,
    domains: Vec<String>,
    instances: Vec<Arc<Acme>>,
) -> Answered {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let answered: Answered = Arc::default();
    let record = answered.clone();
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let instances = instances.clone();
            let domains = domains.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let mut contexts = HashMap::new();
                for domain in &domains {
                    let mut found = None;
                    for (i, acme) in instances.iter().enumerate() {
                        let a = acme.tls_alpn01_cert(domain).await;
                        record.lock().unwrap().push((i, a.is_some()));
                        found = found.or(a);
                    }
                    if let Some((cert, key)) = found {
                        contexts.insert(domain.clone(), challenge_context(&cert, &key));
                    }
                }
                let Some(default) = contexts.values().next().cloned() else {
                    return;
                };
                let mut acceptor =
                    SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
                acceptor.set_alpn_select_callback(select_acme_tls);
                acceptor.set_servername_callback(move |ssl, _| {
                    let sni = ssl
                        .servername(NameType::HOST_NAME)
                        .unwrap_or_default()
                        .to_string();
                    let ctx = contexts.get(&sni).unwrap_or(&default);
                    ssl.set_ssl_context(ctx)
                        .map_err(|_| openssl::ssl::SniError::ALERT_FATAL)
                });
                let acceptor = acceptor.build();
                let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                let mut stream = tokio_openssl::SslStream::new(ssl, conn).unwrap();
                if std::pin::Pin::new(&mut stream).accept().await.is_ok() {
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    answered
}

fn select_acme_tls<'a>(
    _: &mut openssl::ssl::SslRef,
    offered: &'a [u8],
) -> Result<&'a [u8], AlpnError> {
    // The protocol list in wire format: its length, then its name.
    const OURS: &[u8] = b"\x0aacme-tls/1";
    debug_assert_eq!(&OURS[1..], ACME_TLS_ALPN);
    openssl::ssl::select_next_proto(OURS, offered).ok_or(AlpnError::NOACK)
}

fn challenge_context(cert: &str, key: &str) -> SslContext {
    let mut ctx = SslContext::builder(SslMethod::tls_server()).unwrap();
    ctx.set_certificate(&X509::from_pem(cert.as_bytes()).unwrap())
        .unwrap();
    ctx.set_private_key(&PKey::private_key_from_pem(key.as_bytes()).unwrap())
        .unwrap();
    ctx.set_alpn_select_callback(select_acme_tls);
    ctx.build()
}

/// Waits up to `limit` for `done`, checking every 50 ms; how long it took.
pub async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}
