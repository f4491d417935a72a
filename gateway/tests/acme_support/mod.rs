//! What the ACME tests run against: a real Pebble (Let's Encrypt's test CA, Debian's
//! `pebble` package) resolving every name to 127.0.0.1 through `pebble-challtestsrv`, a real
//! redis-server, and the two small servers a listener will be once ACME is wired in: one
//! answering HTTP-01 requests and one answering TLS-ALPN-01 handshakes, both from
//! `Acme::http01_answer` / `Acme::tls_alpn01_cert` of every instance.

#![allow(dead_code)]

use boring::pkey::PKey;
use boring::ssl::{AlpnError, NameType, SslAcceptor, SslContext, SslMethod};
use boring::x509::X509;
use gateway::acme::{Acme, AcmeConfig, ACME_TLS_ALPN, HTTP01_PREFIX};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[path = "../../../tests/common/pebble.rs"]
mod pebble;
#[path = "../../../tests/common/ports.rs"]
mod ports;
pub use pebble::*;
pub use ports::free_port;

pub fn tools_present() -> bool {
    acme_tools_present()
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

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
                let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
                acceptor.set_alpn_select_callback(select_acme_tls);
                acceptor.set_servername_callback(move |ssl, _| {
                    let sni = ssl
                        .servername(NameType::HOST_NAME)
                        .unwrap_or_default()
                        .to_string();
                    let ctx = contexts.get(&sni).unwrap_or(&default);
                    ssl.set_ssl_context(ctx)
                        .map_err(|_| boring::ssl::SniError::ALERT_FATAL)
                });
                let acceptor = acceptor.build();
                let ssl = boring::ssl::Ssl::new(acceptor.context()).unwrap();
                let accepted = tokio_boring::SslStreamBuilder::new(ssl, conn)
                    .accept()
                    .await;
                if let Ok(mut stream) = accepted {
                    let _ = stream.shutdown().await;
                }
            });
        }
    });
    answered
}

fn select_acme_tls<'a>(
    _: &mut boring::ssl::SslRef,
    offered: &'a [u8],
) -> Result<&'a [u8], AlpnError> {
    // The protocol list in wire format: its length, then its name.
    const OURS: &[u8] = b"\x0aacme-tls/1";
    debug_assert_eq!(&OURS[1..], ACME_TLS_ALPN);
    boring::ssl::select_next_proto(OURS, offered).ok_or(AlpnError::NOACK)
}

fn challenge_context(cert: &str, key: &str) -> SslContext {
    let mut ctx = SslContext::builder(SslMethod::tls()).unwrap();
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
