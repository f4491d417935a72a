//! Soak: mixed load (HTTP/1.1 plain and over TLS with a new handshake per request, HTTP/2,
//! WebSockets, 256 KiB uploads) for `PORTICO_SOAK_SECS` seconds (default 60; the long run is
//! 900, see `tests/soak/soak.sh`) while the two backends of the pool are stopped and started
//! again in turn and the config is reloaded every 3 s. Portico's RSS and open file
//! descriptors are sampled every few seconds.
//!
//! It fails on
//! - a failed request that a healthy backend could have served: every GET, HTTP/2 request
//!   and WebSocket must succeed (Portico retries a GET on the other backend; the WebSocket
//!   backend is never stopped); an upload may fail only when it was in flight at the moment
//!   its backend was stopped (a POST is not repeated on another backend). One exception,
//!   counted and reported but not failing the run unless `PORTICO_SOAK_STRICT=1`: a
//!   WebSocket closed right after its 101, which is Pingora 0.9.1's upgrade race
//!   (cloudflare/pingora#946, fixed by the open pull request #947), not Portico's doing;
//! - a panic in Portico's stderr;
//! - RSS at the end above RSS after the warm-up (the first fifth of the run, at least 10 s)
//!   plus 32 MiB or 25 %, whichever is more;
//! - open file descriptors, once the load stopped and its connections closed, more than 64
//!   above the count before the load (upstream keep-alive connections stay pooled).

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UPLOAD: u64 = 256 * 1024;
const RELOAD_EVERY: Duration = Duration::from_secs(3);
const KILL_EVERY: Duration = Duration::from_secs(4);
const DOWN_FOR: Duration = Duration::from_millis(1500);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Http1,
    Tls,
    Http2,
    WebSocket,
    Upload,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Http1,
        Kind::Tls,
        Kind::Http2,
        Kind::WebSocket,
        Kind::Upload,
    ];
}

struct Op {
    kind: Kind,
    start: Instant,
    end: Instant,
    error: Option<String>,
}

#[derive(Default)]
struct Log {
    ops: Mutex<Vec<Op>>,
    /// Moments a backend was stopped.
    kills: Mutex<Vec<Instant>>,
}

impl Log {
    fn record(&self, kind: Kind, start: Instant, result: Result<(), String>) {
        self.ops.lock().unwrap().push(Op {
            kind,
            start,
            end: Instant::now(),
            error: result.err(),
        });
    }
}

/// The soak's gateway: a plain listener `web` and a TLS one `tls`, the pool `app` of the two
/// backends on `ports` (checked every 500 ms) and the WebSocket backend `ws`. No routes yet:
/// [`with_routes`] adds them, one variant per reload.
fn config(ca: &TestCa, ports: &[u16; 2], ws: &Backend) -> Config {
    let pool: Vec<std::net::SocketAddr> =
        ports.iter().map(|p| ([127, 0, 0, 1], *p).into()).collect();
    Config::new()
        .listener("tls", &tls(&[&ca.issue(&["soak.test"])], ""))
        .upstream(
            "app",
            &format!(
                "{}, health_check: {{ path: /healthz, interval: 500ms, timeout: 300ms, healthy_after: 1, \
                 unhealthy_after: 1 }}, passive: {{ eject_for: 1s }}",
                backends(&pool)
            ),
        )
        .upstream("ws", &backends(&[ws.addr()]))
}

/// `config` with its routes, the `app` one marking its answers with `variant`.
fn with_routes(config: &Config, variant: u32) -> String {
    config
        .clone()
        .route("name: ws, upstream: ws, match: { path: { prefix: /ws } }")
        .route(&format!(
            "name: app, upstream: app, plugins: [ {{ headers: {{ response: {{ set: {{ X-Soak-Config: \"{variant}\" }} }} }} }} ]"
        ))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_load_with_backend_restarts_and_reloads() {
    let secs: u64 = std::env::var("PORTICO_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let duration = Duration::from_secs(secs);
    let ca = TestCa::new("soak CA");
    let mut backends = [Backend::http("a"), Backend::http("b")];
    let ports = [backends[0].port(), backends[1].port()];
    let ws = Backend::websocket_echo("ws");
    let base = config(&ca, &ports, &ws);
    let mut gw = Gateway::start(&with_routes(&base, 0)).await;
    let pid = gw.pid();
    let (web, tls) = (gw.listener("web"), gw.listener("tls"));

    // Warm every path once, then take the baseline.
    assert_eq!(http_get(web, "/warm").await.unwrap().status, 200);
    assert_eq!(
        https_get(tls, "soak.test", &TlsClientOpts::insecure(), "/warm")
            .await
            .unwrap()
            .status,
        200
    );
    let Usage {
        rss_kib: rss_start,
        fds: fds_start,
    } = gw.usage();
    eprintln!(
        "soak: {secs} s; portico pid {pid}: RSS {rss_start} KiB, {fds_start} fds before the load"
    );

    let log = Arc::new(Log::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut load = Vec::new();
    let kinds = [
        Kind::Http1,
        Kind::Http1,
        Kind::Tls,
        Kind::Http2,
        Kind::Http2,
        Kind::WebSocket,
        Kind::Upload,
    ];
    for (n, kind) in kinds.into_iter().enumerate() {
        let (log, stop) = (log.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            worker(kind, n, web, tls, log, stop).await
        }));
    }

    // Backends stopped and started again in turn; the config reloaded; samples taken.
    let mut samples = Vec::new();
    let (mut next_kill, mut next_reload, mut next_sample) =
        (started + KILL_EVERY, started + RELOAD_EVERY, started);
    let (mut victim, mut variant, mut reloads) = (0usize, 0u32, 0u32);
    while started.elapsed() < duration {
        let now = Instant::now();
        if now >= next_sample {
            let usage = gw.usage();
            samples.push((started.elapsed(), (usage.rss_kib, usage.fds)));
            next_sample += Duration::from_secs(if secs > 300 { 10 } else { 2 });
        }
        if now >= next_kill {
            log.kills.lock().unwrap().push(Instant::now());
            backends[victim].stop().await;
            tokio::time::sleep(DOWN_FOR).await;
            backends[victim] = Backend::http_on(if victim == 0 { "a" } else { "b" }, ports[victim]);
            victim = 1 - victim;
            next_kill = Instant::now() + KILL_EVERY;
        }
        if now >= next_reload {
            variant += 1;
            gw.rewrite_config(&with_routes(&base, variant));
            let r = gw.admin_post("/reload").await.expect("POST /reload");
            assert_eq!(r.status, 200, "reload {variant}: {}", r.text());
            reloads += 1;
            next_reload = Instant::now() + RELOAD_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in load {
        w.await.unwrap();
    }
    // Let closed client connections and idle upstream ones settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let Usage {
        rss_kib: rss_end,
        fds: fds_end,
    } = gw.usage();
    samples.push((started.elapsed(), (rss_end, fds_end)));

    // What happened.
    let ops = log.ops.lock().unwrap();
    let kills = log.kills.lock().unwrap();
    let mut summary = String::new();
    for kind in Kind::ALL {
        let of: Vec<&Op> = ops.iter().filter(|o| o.kind == kind).collect();
        let failed = of.iter().filter(|o| o.error.is_some()).count();
        summary.push_str(&format!(
            "  {kind:?}: {} requests, {failed} failed\n",
            of.len()
        ));
    }
    let warm_at = (duration / 5).max(Duration::from_secs(10)).min(duration);
    let (rss_warm, fds_warm) = samples
        .iter()
        .find(|(t, _)| *t >= warm_at)
        .map(|(_, s)| *s)
        .unwrap_or((rss_start, fds_start));
    let curve: Vec<String> = samples
        .iter()
        .map(|(t, (r, f))| format!("{:.0}s:{}MiB/{}fd", t.as_secs_f64(), r / 1024, f))
        .collect();
    eprintln!(
        "soak: {} requests in {:.0} s, {} backend stops, {reloads} reloads\n{summary}  RSS {rss_start} -> {rss_warm} (after warm-up) -> {rss_end} KiB; fds {fds_start} -> {fds_warm} -> {fds_end}\n  samples: {}",
        ops.len(),
        started.elapsed().as_secs_f64(),
        kills.len(),
        curve.join(" ")
    );

    // Failures a healthy backend could have served.
    let killed_during = |o: &Op| kills.iter().any(|k| o.start <= *k && *k <= o.end);
    let strict = std::env::var_os("PORTICO_SOAK_STRICT").is_some();
    let known = |o: &Op| {
        !strict
            && o.error
                .as_deref()
                .is_some_and(|e| e.starts_with(PINGORA_946))
    };
    let upgrade_race = ops.iter().filter(|o| known(o)).count();
    if upgrade_race > 0 {
        eprintln!("soak: {upgrade_race} WebSockets closed right after their 101 ({PINGORA_946}, not counted as failures)");
    }
    let unexcused: Vec<String> = ops
        .iter()
        .filter(|o| o.error.is_some() && !(o.kind == Kind::Upload && killed_during(o)) && !known(o))
        .map(|o| {
            format!(
                "{:?} at {:.1}s: {}",
                o.kind,
                (o.start - started).as_secs_f64(),
                o.error.as_deref().unwrap()
            )
        })
        .collect();
    assert!(
        unexcused.is_empty(),
        "{} failed requests a healthy backend could have served:\n{}",
        unexcused.len(),
        unexcused.join("\n")
    );
    for kind in Kind::ALL {
        assert!(
            ops.iter().any(|o| o.kind == kind && o.error.is_none()),
            "no successful {kind:?} request at all"
        );
    }
    let stderr = gw.stderr_text();
    assert!(
        !stderr.contains("panicked"),
        "Portico panicked:\n{}",
        stderr
            .lines()
            .filter(|l| l.contains("panicked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let rss_bound = rss_warm + (32 * 1024).max(rss_warm / 4);
    assert!(
        rss_end <= rss_bound,
        "RSS grew from {rss_warm} KiB after warm-up to {rss_end} KiB (bound {rss_bound} KiB)"
    );
    assert!(
        fds_end <= fds_start + 64,
        "open fds grew from {fds_start} to {fds_end}"
    );
    assert!(gw.is_running());
}

/// One client of one kind, in a loop until `stop`, a little pause between requests.
async fn worker(
    kind: Kind,
    n: usize,
    web: std::net::SocketAddr,
    tls: std::net::SocketAddr,
    log: Arc<Log>,
    stop: Arc<AtomicBool>,
) {
    let insecure = TlsClientOpts::insecure();
    let mut conn: Option<HttpConn> = None;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let start = Instant::now();
        let path = format!("/{kind:?}/{n}/{i}");
        let result: Result<(), String> = match kind {
            Kind::Http1 | Kind::Http2 => {
                if conn.is_none() {
                    conn = match kind {
                        Kind::Http1 => HttpConn::plain(web).await.ok(),
                        _ => HttpConn::tls(tls, "soak.test", &insecure.clone().alpn(&["h2"]))
                            .await
                            .ok(),
                    };
                }
                match conn.as_mut() {
                    None => Err("cannot connect".into()),
                    Some(c) => match c.get(&path).await {
                        Ok(r) if r.status == 200 && r.json()["path"] == path.as_str() => Ok(()),
                        Ok(r) => Err(format!("{path}: {} {}", r.status, r.text())),
                        Err(e) => {
                            conn = None;
                            Err(format!("{path}: {e}"))
                        }
                    },
                }
            }
            Kind::Tls => match https_get(tls, "soak.test", &insecure, &path).await {
                Ok(r) if r.status == 200 => Ok(()),
                Ok(r) => Err(format!("{path}: {} {}", r.status, r.text())),
                Err(e) => Err(format!("{path}: {e}")),
            },
            Kind::WebSocket => websocket_round(tls, &path).await,
            Kind::Upload => {
                match http_request(web, "POST", &path, &[], Body::pattern(UPLOAD)).await {
                    Ok(r)
                        if r.status == 200
                            && r.json()["body_len"] == UPLOAD
                            && r.json()["body_fnv"] == pattern_fnv_hex(UPLOAD).as_str() =>
                    {
                        Ok(())
                    }
                    Ok(r) => Err(format!("{path}: {} {}", r.status, r.text())),
                    Err(e) => Err(format!("{path}: {e}")),
                }
            }
        };
        log.record(kind, start, result);
        tokio::time::sleep(Duration::from_millis(if kind == Kind::Upload {
            50
        } else {
            10
        }))
        .await;
    }
}

/// How a WebSocket failure from Pingora's upgrade race starts (see the module docs).
const PINGORA_946: &str = "pingora#946";

/// A WebSocket over TLS: upgrade, a few messages echoed, close.
async fn websocket_round(tls: std::net::SocketAddr, path: &str) -> Result<(), String> {
    let ws_path = format!("/ws{path}");
    let (mut stream, _) = ws_connect(tls, "soak.test", &ws_path, Some("soak.test"))
        .await
        .map_err(|e| format!("{ws_path}: {e}"))?;
    for m in 0..3 {
        let msg = format!("message {m} on {ws_path}");
        let io = async {
            stream.write_all(msg.as_bytes()).await?;
            let mut back = vec![0u8; msg.len()];
            stream.read_exact(&mut back).await?;
            Ok::<_, std::io::Error>(back)
        };
        match tokio::time::timeout(IO_TIMEOUT, io).await {
            Ok(Ok(back)) if back == msg.as_bytes() => {}
            Ok(Err(e)) if m == 0 && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(format!("{PINGORA_946}: {ws_path}: closed after the 101"));
            }
            other => return Err(format!("{ws_path}: echo {m}: {other:?}")),
        }
    }
    Ok(())
}
