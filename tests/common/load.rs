//! A steady stream of requests from a few concurrent clients, counted: what the tests of
//! reloads, upgrades, shutdowns and failover run while they do their thing, to show that no
//! request failed (or how few).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{HttpConn, Response, Result, TlsClientOpts};

type Connect =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<HttpConn>> + Send>> + Send + Sync>;

/// One client of a [`Load`]: how it connects, and whether it keeps its connection.
#[derive(Clone)]
pub struct Client {
    connect: Connect,
    /// Keeps the connection for the next request unless the answer said `Connection: close`
    /// (or the request failed), as a well-behaved client does.
    keep_alive: bool,
}

impl Client {
    /// A new plain TCP connection for every request.
    pub fn fresh(addr: SocketAddr) -> Client {
        Client::new(false, move || HttpConn::plain(addr))
    }

    /// One plain keep-alive connection.
    pub fn keep_alive(addr: SocketAddr) -> Client {
        Client::new(true, move || HttpConn::plain(addr))
    }

    /// A new TLS connection (HTTP/1.1, any certificate accepted) for every request.
    pub fn tls(addr: SocketAddr, sni: &'static str) -> Client {
        Client::new(false, move || {
            let opts = TlsClientOpts::insecure().alpn(&["http/1.1"]);
            async move { HttpConn::tls(addr, sni, &opts).await }
        })
    }

    /// Connects with `connect`, e.g. from another source address.
    pub fn new<F>(keep_alive: bool, connect: impl Fn() -> F + Send + Sync + 'static) -> Client
    where
        F: Future<Output = Result<HttpConn>> + Send + 'static,
    {
        Client {
            connect: Arc::new(move || Box::pin(connect())),
            keep_alive,
        }
    }
}

/// What a [`Load`] saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub sent: u64,
    pub ok: u64,
    /// When each failed request was sent (from the start of the load), and what went wrong.
    pub failures: Vec<(Duration, String)>,
    pub slowest: Duration,
    /// `X-Backend` of every good answer, counted.
    pub backends: BTreeMap<String, u64>,
}

impl Tally {
    /// Prints a line with the counts, and the first failures.
    pub fn report(&self, what: &str) {
        println!(
            "{what}: {} requests sent, {} ok, {} failed, slowest {:?}; answered by {:?}",
            self.sent,
            self.ok,
            self.failures.len(),
            self.slowest,
            self.backends
        );
        for (at, why) in self.failures.iter().take(10) {
            println!("  failed at {at:?}: {why}");
        }
    }

    /// The failures' messages.
    pub fn failed(&self) -> Vec<&str> {
        self.failures.iter().map(|(_, why)| why.as_str()).collect()
    }

    fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.failures.extend(other.failures);
        self.slowest = self.slowest.max(other.slowest);
        for (backend, n) in other.backends {
            *self.backends.entry(backend).or_default() += n;
        }
    }
}

/// Each client sends `GET {path}/{client}/{n}`, one request after another, until
/// [`Load::finish`]. A request is good when answered 200 and the load's check passes.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    workers: Vec<JoinHandle<Tally>>,
}

impl Load {
    /// Back to back, any 200 answer good.
    pub fn start(path: &str, clients: &[Client]) -> Load {
        Load::start_with(path, clients, Duration::ZERO, |_| Ok(()))
    }

    /// With `pause` between a client's requests, and `check` on every 200 answer.
    pub fn start_with(
        path: &str,
        clients: &[Client],
        pause: Duration,
        check: fn(&Response) -> std::result::Result<(), String>,
    ) -> Load {
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let workers = clients
            .iter()
            .enumerate()
            .map(|(w, client)| {
                let (client, stop, sent) = (client.clone(), stop.clone(), sent.clone());
                let path = path.to_string();
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut conn: Option<HttpConn> = None;
                    let mut i = 0u64;
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        sent.fetch_add(1, Ordering::SeqCst);
                        let at = Instant::now();
                        let result = async {
                            let mut c = match conn.take() {
                                Some(c) => c,
                                None => (client.connect)().await?,
                            };
                            let r = c.get(&format!("{path}/{w}/{i}")).await?;
                            if r.status != 200 {
                                return Err(
                                    format!("status {} {}", r.status, r.text().trim()).into()
                                );
                            }
                            check(&r)?;
                            Ok::<_, super::BoxError>((r, c))
                        }
                        .await;
                        tally.sent += 1;
                        tally.slowest = tally.slowest.max(at.elapsed());
                        match result {
                            Ok((r, c)) => {
                                tally.ok += 1;
                                let b = r.header("x-backend").unwrap_or("?").to_string();
                                *tally.backends.entry(b).or_default() += 1;
                                let close = r
                                    .header("connection")
                                    .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                                if client.keep_alive && !close {
                                    conn = Some(c);
                                }
                            }
                            // A client starts again on a new connection after a failure.
                            Err(e) => tally
                                .failures
                                .push((at.duration_since(started), format!("client {w}: {e}"))),
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    tally
                })
            })
            .collect();
        Load {
            started,
            stop,
            sent,
            workers,
        }
    }

    /// Requests sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the clients (each finishes the request it is sending) and adds up.
    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for worker in self.workers {
            total.add(worker.await.expect("a load client panicked"));
        }
        total.failures.sort_by_key(|(at, _)| *at);
        total
    }
}
