//! Certificates for the pair (docs/acme.md): the real `portico` binary against a real ACME
//! CA (Pebble, resolving every name to 127.0.0.1 through pebble-challtestsrv and validating
//! on the listeners' ports) and a real redis-server. Issuance by HTTP-01 and TLS-ALPN-01, a
//! pair ordering once and serving the same serial, a restart reusing the stored
//! certificate, renewal without a reload, the CA down then back, `-t` refusals, and the
//! `/status` and metrics entries. Timings are printed (`--nocapture`).

use crate::common::pebble::{same_serial, DirectoryCa, Pebble, PebblePorts};
use crate::common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const DOMAIN: &str = "shop.portico.test";
const WWW: &str = "www.portico.test";

const SERVER: &str = "server: { threads: 1, grace_period: 0s, shutdown_timeout: 1s, \
    upgrade_sock: \"${PORTICO_TEST_DIR}/u.sock\", pid_file: \"${PORTICO_TEST_DIR}/p.pid\" }";

/// The `acme:` block of a TLS listener.
fn acme_block(
    directory: &str,
    ca: &Path,
    domains: &[&str],
    challenge: &str,
    storage: &str,
) -> String {
    format!(
        "      acme:\n        directory: {directory}\n        email: ops@portico.test\n        \
         domains: {domains:?}\n        challenge: {challenge}\n        ca: {}\n        storage: {storage}\n",
        ca.display()
    )
}

/// What one TLS handshake saw: the leaf's serial (hex) and subject CN, the chain's length.
struct Seen {
    serial: String,
    cn: String,
    chain: usize,
}

/// A handshake with `sni`, trusting `root` (None: trusting anything).
async fn handshake(addr: SocketAddr, sni: &str, root: Option<&Path>) -> Result<Seen, BoxError> {
    let opts = match root {
        Some(r) => TlsClientOpts::trusting(r),
        None => TlsClientOpts::insecure(),
    };
    let mut conn = tls_connect(addr, sni, &opts).await?;
    let ssl = conn.stream().ssl();
    let leaf = ssl.peer_certificate().ok_or("no certificate")?;
    let serial = leaf.serial_number().to_bn()?.to_hex_str()?.to_string();
    let chain = ssl.peer_cert_chain().map_or(0, |c| c.len());
    let cn = conn.peer_cn().unwrap_or_default();
    Ok(Seen { serial, cn, chain })
}

/// Waits up to `limit` for `addr` to serve a certificate for `sni` that verifies against
/// `root` and, when given, has another serial than `not`. Returns it and the time taken.
async fn wait_issued(
    addr: SocketAddr,
    sni: &str,
    root: &Path,
    not: Option<&str>,
    limit: Duration,
) -> (Seen, Duration) {
    let start = Instant::now();
    loop {
        if let Ok(seen) = handshake(addr, sni, Some(root)).await {
            if not != Some(seen.serial.as_str()) {
                return (seen, start.elapsed());
            }
        }
        assert!(
            start.elapsed() < limit,
            "{addr} did not serve an issued certificate for {sni} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of `name{labels}` in a Prometheus exposition.
fn sample(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let wanted = format!("{name}{{{labels}}} ");
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(wanted.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

async fn metrics(gw: &Gateway) -> String {
    gw.admin_get("/metrics").await.unwrap().text()
}

async fn status(gw: &Gateway) -> serde_json::Value {
    gw.admin_get("/status").await.unwrap().json()
}

/// `/status` → `certificates`, the entries of `listener`.
fn certificates_of(status: &serde_json::Value, listener: &str) -> Vec<serde_json::Value> {
    status["certificates"]
        .as_array()
        .expect("a certificates list")
        .iter()
        .filter(|c| c["listener"] == listener)
        .cloned()
        .collect()
}

fn unix(rfc3339: &serde_json::Value) -> u64 {
    let text = rfc3339.as_str().expect("a date");
    let out = std::process::Command::new("date")
        .args(["-u", "-d", text, "+%s"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Pebble, its directory's CA and the ports it validates on, in a test folder.
struct Ca {
    dir: TestDir,
    directory_ca: DirectoryCa,
    ports: PebblePorts,
    pebble: Option<Pebble>,
    root: PathBuf,
}

impl Ca {
    fn new(validity: Option<u64>, running: bool) -> Ca {
        let dir = TestDir::new();
        let directory_ca = DirectoryCa::new(dir.path());
        let ports = PebblePorts::new();
        let mut ca = Ca {
            root: dir.path().join("pebble-root.pem"),
            dir,
            directory_ca,
            ports,
            pebble: None,
        };
        if running {
            ca.start(validity);
        }
        ca
    }

    fn start(&mut self, validity: Option<u64>) {
        let pebble = Pebble::start(self.dir.path(), &self.directory_ca, self.ports, validity);
        pebble.write_root(&self.root);
        self.pebble = Some(pebble);
    }

    fn issued(&self) -> Vec<String> {
        self.pebble.as_ref().map(|p| p.issued()).unwrap_or_default()
    }

    fn acme(&self, domains: &[&str], challenge: &str, storage: &str) -> String {
        acme_block(
            &self.ports.directory(),
            &self.directory_ca.ca_pem,
            domains,
            challenge,
            storage,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_certificate_clients_trust_and_a_restart_reuses_it() {
    if !tools_present(&["pebble", "pebble-challtestsrv", "redis-server"]) {
        return;
    }
    let ca = Ca::new(None, true);
    let store = ca.dir.path().join("store");
    let files = TestCa::new("Portico files CA");
    let file_cert = files.issue(&["files.portico.test"]);
    // Every request from 127.0.0.1 is refused by a global plugin, and the plain listener
    // only redirects: the CA's request (from 127.0.0.1 too) is answered before both.
    let yaml = format!(
        "{SERVER}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
         plugins:\n  - ip_filter: {{ deny: [127.0.0.0/8] }}\n\
         listeners:\n  - name: https\n    listen: 127.0.0.1:{tls}\n    tls:\n{acme}\
         \x20 - {{ name: http, listen: 127.0.0.1:{http}, redirect_https: {tls} }}\n\
         \x20 - name: files\n    listen: 127.0.0.1:{files}\n    tls:\n      certificates: [ {{ cert: {cert}, key: {key} }} ]\n\
         routes:\n  - {{ name: r, plugins: [ {{ respond: {{ status: 200 }} }} ] }}\n",
        admin = free_port(),
        tls = ca.ports.tls,
        http = ca.ports.http,
        files = free_port(),
        acme = ca.acme(&[DOMAIN, WWW], "http-01", &format!("{{ dir: {} }}", store.display())),
        cert = file_cert.cert.display(),
        key = file_cert.key.display(),
    );
    let started = Instant::now();
    let gw = Gateway::start(&yaml).await;
    let ready = started.elapsed();
    let https = gw.listener("https");
    let (seen, took) = wait_issued(https, DOMAIN, &ca.root, None, Duration::from_secs(30)).await;
    let first = started.elapsed();
    println!(
        "TIMING http-01: portico start to ready {:.2}s; start to first certificate served {:.2}s ({:.2}s after ready)",
        ready.as_secs_f64(),
        first.as_secs_f64(),
        took.as_secs_f64()
    );
    assert!(seen.chain >= 2, "leaf and intermediate are served");
    assert_eq!(ca.issued().len(), 1, "one order");
    assert!(ca.issued().iter().any(|s| same_serial(&seen.serial, s)));
    // The other name of the certificate, and a client without SNI (the default).
    let (www, _) = wait_issued(https, WWW, &ca.root, None, Duration::from_secs(1)).await;
    assert_eq!(www.serial, seen.serial);
    assert_eq!(
        handshake(https, "", None).await.unwrap().serial,
        seen.serial
    );

    // The plain listener: a challenge it does not know is 404 (not a redirect), any other
    // path still redirects.
    let http = gw.listener("http");
    let unknown = http_get(http, "/.well-known/acme-challenge/unknown_token")
        .await
        .unwrap();
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(http_get(http, "/x").await.unwrap().status, 308);

    // /status and the metrics: the ACME certificate and the file one.
    let st = status(&gw).await;
    let acme = certificates_of(&st, "https");
    assert_eq!(acme.len(), 1, "{st}");
    assert_eq!(acme[0]["source"], "acme");
    assert_eq!(acme[0]["names"], serde_json::json!([DOMAIN, WWW]));
    let not_after = unix(&acme[0]["not_after"]);
    let renews_at = unix(&acme[0]["renews_at"]);
    assert!(
        not_after > now_unix() + 86_400 * 300,
        "Pebble's 5-year certificate"
    );
    assert_eq!(
        not_after - renews_at,
        30 * 86_400,
        "renew_before: 30d by default"
    );
    let file = certificates_of(&st, "files");
    assert_eq!(file.len(), 1, "{st}");
    assert_eq!(file[0]["source"], "file");
    assert_eq!(file[0]["names"], serde_json::json!(["files.portico.test"]));
    assert!(file[0]["renews_at"].is_null());
    assert!(file[0]["not_after"].is_string());
    let m = metrics(&gw).await;
    let left = sample(
        &m,
        "portico_certificate_expiry_seconds",
        &format!("listener=\"https\",name=\"{DOMAIN}\""),
    )
    .unwrap_or_else(|| panic!("expiry of the ACME certificate in\n{m}"));
    assert!(
        (left - (not_after as f64 - now_unix() as f64)).abs() < 5.0,
        "{left}"
    );
    assert!(sample(
        &m,
        "portico_certificate_expiry_seconds",
        "listener=\"files\",name=\"files.portico.test\""
    )
    .is_some_and(|v| v > 0.0));
    assert_eq!(
        sample(&m, "portico_acme_orders_total", "result=\"success\""),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "portico_acme_orders_total", "result=\"failure\""),
        Some(0.0)
    );
    promtool_check_metrics(&m);

    // A reload that leaves the acme block as it was keeps the manager and its certificate:
    // the next handshake still gets it, and nothing is ordered.
    assert_eq!(gw.admin_post("/reload").await.unwrap().status, 200);
    let kept = handshake(https, DOMAIN, Some(&ca.root)).await.unwrap();
    assert_eq!(kept.serial, seen.serial);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ca.issued().len(), 1, "no order after a reload");

    // A restart on the same storage serves the stored certificate; nothing is ordered.
    drop(gw);
    let restarted = Instant::now();
    let gw = Gateway::start(&yaml).await;
    let (again, took) = wait_issued(
        gw.listener("https"),
        DOMAIN,
        &ca.root,
        None,
        Duration::from_secs(10),
    )
    .await;
    println!(
        "TIMING restart to the stored certificate served {:.2}s ({:.2}s after ready)",
        restarted.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
    assert_eq!(again.serial, seen.serial);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ca.issued().len(), 1, "no second order");
    assert_eq!(
        sample(
            &metrics(&gw).await,
            "portico_acme_orders_total",
            "result=\"success\""
        ),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_a_certificate() {
    if !tools_present(&["pebble", "pebble-challtestsrv", "redis-server"]) {
        return;
    }
    let ca = Ca::new(None, true);
    let redis = Redis::start().await;
    // No plain listener at all: the CA validates on the TLS listener.
    let yaml = format!(
        "{SERVER}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
         listeners:\n  - name: https\n    listen: 127.0.0.1:{tls}\n    tls:\n{acme}\
         routes:\n  - {{ name: r, plugins: [ {{ respond: {{ status: 200, body: \"hello\\n\" }} }} ] }}\n",
        admin = free_port(),
        tls = ca.ports.tls,
        acme = ca.acme(&[DOMAIN], "tls-alpn-01", &format!("{{ redis: {{ url: \"{}\" }} }}", redis.url())),
    );
    let started = Instant::now();
    let mut gw = Gateway::start(&yaml).await;
    let https = gw.listener("https");
    let (seen, _) = wait_issued(https, DOMAIN, &ca.root, None, Duration::from_secs(30)).await;
    println!(
        "TIMING tls-alpn-01: start to first certificate served {:.2}s",
        started.elapsed().as_secs_f64()
    );
    assert!(ca.issued().iter().any(|s| same_serial(&seen.serial, s)));
    // Nothing listens on Pebble's HTTP-01 port: only TLS-ALPN-01 could have validated.
    assert!(std::net::TcpStream::connect(("127.0.0.1", ca.ports.http)).is_err());
    // Ordinary clients still get h2 / http/1.1 and the issued certificate.
    let opts = TlsClientOpts::trusting(&ca.root);
    let r = https_get(https, DOMAIN, &opts, "/").await.unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello\n"));
    let conn = tls_connect(https, DOMAIN, &opts.clone().alpn(&["h2", "http/1.1"]))
        .await
        .unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("h2"));
    // A client offering acme-tls/1 with no challenge pending gets the listener's own
    // certificate, not a challenge certificate.
    let mut conn = tls_connect(
        https,
        DOMAIN,
        &TlsClientOpts::insecure().alpn(&["acme-tls/1"]),
    )
    .await
    .unwrap();
    let leaf = conn.stream().ssl().peer_certificate().unwrap();
    let serial = leaf.serial_number().to_bn().unwrap().to_hex_str().unwrap();
    assert_eq!(serial.to_string(), seen.serial);

    // A reload that changes the names is a new certificate: ordered and served without a
    // restart, for the new name too; the old one serves meanwhile (no placeholder).
    let both = ca.acme(
        &[DOMAIN, WWW],
        "tls-alpn-01",
        &format!("{{ redis: {{ url: \"{}\" }} }}", redis.url()),
    );
    let old_block = ca.acme(
        &[DOMAIN],
        "tls-alpn-01",
        &format!("{{ redis: {{ url: \"{}\" }} }}", redis.url()),
    );
    gw.rewrite_config(&yaml.replace(&old_block, &both));
    assert_eq!(gw.admin_post("/reload").await.unwrap().status, 200);
    let meanwhile = handshake(https, DOMAIN, None).await.unwrap();
    assert!(!meanwhile.cn.contains("placeholder"), "{}", meanwhile.cn);
    let (renamed, took) = wait_issued(
        https,
        WWW,
        &ca.root,
        Some(&seen.serial),
        Duration::from_secs(30),
    )
    .await;
    println!(
        "TIMING tls-alpn-01: reload with new names to the new certificate served {:.2}s",
        took.as_secs_f64()
    );
    assert_ne!(renamed.serial, seen.serial);
    let st = status(&gw).await;
    assert_eq!(
        certificates_of(&st, "https")[0]["names"],
        serde_json::json!([DOMAIN, WWW])
    );
    let st = status(&gw).await;
    assert_eq!(certificates_of(&st, "https")[0]["source"], "acme");
}

/// A TCP load balancer on `port` sending each connection to the next of `to`, in turn.
async fn round_robin(port: u16, to: Vec<SocketAddr>) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut next = 0;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            let target = to[next % to.len()];
            next += 1;
            tokio::spawn(async move {
                if let Ok(mut backend) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(30),
                        tokio::io::copy_bidirectional(&mut client, &mut backend),
                    )
                    .await;
                }
            });
        }
    })
}

/// Lines of an instance's access log that answered a challenge.
fn challenge_answers(gw: &Gateway) -> usize {
    gw.stdout_text()
        .lines()
        .filter(|l| l.contains("/.well-known/acme-challenge/") && l.contains("\"status\":200"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_sharing_redis_orders_once_serves_one_serial_and_renews_without_reload() {
    if !tools_present(&["pebble", "pebble-challtestsrv", "redis-server"]) {
        return;
    }
    // 40-second certificates: renewed at their midpoint.
    let ca = Ca::new(Some(40), true);
    let redis = Redis::start().await;
    let storage = format!("{{ redis: {{ url: \"{}\" }} }}", redis.url());
    let instance = |plain: u16| {
        format!(
            "{SERVER}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
             plugins:\n  - access_log: {{}}\n  - ip_filter: {{ deny: [127.0.0.0/8] }}\n\
             listeners:\n  - name: https\n    listen: 127.0.0.1:{tls}\n    tls:\n{acme}\
             \x20 - {{ name: http, listen: 127.0.0.1:{plain} }}\n\
             routes:\n  - {{ name: r, plugins: [ {{ respond: {{ status: 200 }} }} ] }}\n",
            admin = free_port(),
            tls = free_port(),
            acme = ca.acme(&[DOMAIN], "http-01", &storage),
        )
    };
    // The CA reaches the pair through a load balancer that alternates between them.
    let (plain_a, plain_b) = (free_port(), free_port());
    let lb = round_robin(
        ca.ports.http,
        vec![
            SocketAddr::from(([127, 0, 0, 1], plain_a)),
            SocketAddr::from(([127, 0, 0, 1], plain_b)),
        ],
    )
    .await;
    let started = Instant::now();
    let (yaml_a, yaml_b) = (instance(plain_a), instance(plain_b));
    let (a, b) = tokio::join!(Gateway::start(&yaml_a), Gateway::start(&yaml_b));
    let (sa, sb) = tokio::join!(
        wait_issued(
            a.listener("https"),
            DOMAIN,
            &ca.root,
            None,
            Duration::from_secs(30)
        ),
        wait_issued(
            b.listener("https"),
            DOMAIN,
            &ca.root,
            None,
            Duration::from_secs(30)
        ),
    );
    println!(
        "TIMING pair: start to the first certificate served on both {:.2}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(sa.0.serial, sb.0.serial, "both serve the same certificate");
    assert_eq!(ca.issued().len(), 1, "one order for the pair");
    let orders = |m: &str| sample(m, "portico_acme_orders_total", "result=\"success\"").unwrap();
    let (ma, mb) = (metrics(&a).await, metrics(&b).await);
    assert_eq!(orders(&ma) + orders(&mb), 1.0, "one instance ordered");
    // Pebble validates from more than one vantage point, each a connection through the
    // load balancer: both instances answered, the one that did not order from storage.
    assert!(
        challenge_answers(&a) >= 1 && challenge_answers(&b) >= 1,
        "a: {}, b: {}",
        challenge_answers(&a),
        challenge_answers(&b)
    );
    // Ordinary requests from 127.0.0.1 are still refused by the global plugin.
    let plain = SocketAddr::from(([127, 0, 0, 1], plain_a));
    assert_eq!(http_get(plain, "/").await.unwrap().status, 403);

    // Renewal at the midpoint, served by both without a reload.
    let st = status(&a).await;
    let entry = &certificates_of(&st, "https")[0];
    let renews_at = unix(&entry["renews_at"]);
    let not_after = unix(&entry["not_after"]);
    assert!(
        (18..=22).contains(&(not_after - renews_at)),
        "a 40 s certificate renews at its midpoint: {entry}"
    );
    let old = sa.0.serial.clone();
    let (ra, rb) = tokio::join!(
        wait_issued(
            a.listener("https"),
            DOMAIN,
            &ca.root,
            Some(&old),
            Duration::from_secs(40)
        ),
        wait_issued(
            b.listener("https"),
            DOMAIN,
            &ca.root,
            Some(&old),
            Duration::from_secs(40)
        ),
    );
    let served_both = now_unix();
    println!(
        "TIMING pair renewal: renews_at to the new certificate served on both {}s (a after {:.2}s, b after {:.2}s of waiting)",
        served_both.saturating_sub(renews_at),
        ra.1.as_secs_f64(),
        rb.1.as_secs_f64()
    );
    assert_eq!(ra.0.serial, rb.0.serial);
    assert!(
        served_both <= renews_at + 15,
        "renewal starts within 5 s of renews_at and is served within 10 s"
    );
    assert!(
        !a.stderr_text().contains("config reloaded")
            && !b.stderr_text().contains("config reloaded"),
        "no reload"
    );
    // One renewal for the pair (another may have started if the test ran long).
    let issued = ca.issued();
    assert!(issued.len() >= 2, "{issued:?}");
    assert!(issued.iter().any(|s| same_serial(&ra.0.serial, s)));
    lb.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_down_serves_the_placeholder_and_retries_until_it_is_back() {
    if !tools_present(&["pebble", "pebble-challtestsrv", "redis-server"]) {
        return;
    }
    let mut ca = Ca::new(None, false);
    let store = ca.dir.path().join("store");
    let yaml = format!(
        "{SERVER}\nadmin: {{ listen: 127.0.0.1:{admin} }}\n\
         listeners:\n  - name: https\n    listen: 127.0.0.1:{tls}\n    tls:\n{acme}\
         \x20 - {{ name: http, listen: 127.0.0.1:{http}, redirect_https: {tls} }}\n\
         routes:\n  - {{ name: r, plugins: [ {{ respond: {{ status: 200 }} }} ] }}\n",
        admin = free_port(),
        tls = ca.ports.tls,
        http = ca.ports.http,
        acme = ca.acme(
            &[DOMAIN],
            "http-01",
            &format!("{{ dir: {} }}", store.display())
        ),
    );
    // Ready although the CA cannot be reached.
    let gw = Gateway::start(&yaml).await;
    assert_eq!(gw.admin_get("/readyz").await.unwrap().status, 200);
    let https = gw.listener("https");
    let placeholder = handshake(https, DOMAIN, None).await.unwrap();
    assert!(placeholder.cn.contains("placeholder"), "{}", placeholder.cn);
    assert!(
        gw.wait_for_stderr("acme: order for", Duration::from_secs(10))
            .await
    );
    assert!(gw.stderr_text().contains("WARN"));
    let m = metrics(&gw).await;
    assert!(sample(&m, "portico_acme_orders_total", "result=\"failure\"").unwrap() >= 1.0);
    let st = status(&gw).await;
    let entry = &certificates_of(&st, "https")[0];
    assert_eq!(entry["source"], "acme");
    assert!(entry["renews_at"].is_null(), "{entry}");
    assert_eq!(entry["issued"], false);
    assert!(entry["last_error"].is_string(), "{entry}");
    // Still serving requests meanwhile.
    let r = https_get(https, DOMAIN, &TlsClientOpts::insecure(), "/")
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    let back = Instant::now();
    ca.start(None);
    let (seen, _) = wait_issued(https, DOMAIN, &ca.root, None, Duration::from_secs(40)).await;
    println!(
        "TIMING CA back to the certificate served {:.2}s",
        back.elapsed().as_secs_f64()
    );
    assert!(ca.issued().iter().any(|s| same_serial(&seen.serial, s)));
}

/// `portico -t` on a config with this `acme` block (after `listeners[0].tls:`).
async fn refused(acme: &str, plain_listener: bool) -> String {
    let plain = if plain_listener {
        format!("  - {{ name: http, listen: 127.0.0.1:{} }}\n", free_port())
    } else {
        String::new()
    };
    let yaml = format!(
        "listeners:\n  - name: https\n    listen: 127.0.0.1:{}\n    tls:\n{acme}{plain}\
         routes:\n  - {{ name: r, plugins: [ {{ respond: {{ status: 200 }} }} ] }}\n",
        free_port()
    );
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 1, "refused:\n{yaml}\n{stderr}");
    stderr
}

#[tokio::test]
async fn bad_acme_configs_are_refused_with_their_key_path_and_line() {
    let good = "      acme:\n        directory: https://127.0.0.1:14000/dir\n        \
                domains: [a.portico.test]\n        storage: { dir: store }\n";
    // The line of `acme:` is 5; its keys follow.
    let cases: &[(&str, bool, &str)] = &[
        (
            &good.replace("storage:", "bogus: 1\n        storage:"),
            true,
            "listeners[0].tls.acme.bogus",
        ),
        (
            &good.replace("domains:", "challenge: dns-01\n        domains:"),
            true,
            "listeners[0].tls.acme.challenge",
        ),
        (
            &good.replace("[a.portico.test]", "[a.portico.test, '*.portico.test']"),
            true,
            "listeners[0].tls.acme.domains[1]: ",
        ),
        (
            &good.replace("https://", "http://"),
            true,
            "listeners[0].tls.acme.directory: ",
        ),
        (
            &good.replace(
                "{ dir: store }",
                "{ dir: store, redis: { url: \"redis://127.0.0.1\" } }",
            ),
            true,
            "listeners[0].tls.acme.storage: ",
        ),
        (
            &good.replace("storage:", "renew_before: soon\n        storage:"),
            true,
            "listeners[0].tls.acme.renew_before",
        ),
        (
            &good.replace("storage:", "ca: missing-ca.pem\n        storage:"),
            true,
            "listeners[0].tls.acme.ca: ",
        ),
        // HTTP-01 needs a plain listener to answer on.
        (good, false, "listeners[0].tls.acme.challenge: "),
    ];
    for (acme, plain, path) in cases {
        let stderr = refused(acme, *plain).await;
        let line = stderr
            .lines()
            .find(|l| l.starts_with(path))
            .unwrap_or_else(|| panic!("no line starting with {path:?}:\n{stderr}"));
        assert!(line.contains("(line "), "{line}");
    }
    // certificates may be left out with acme; -t touches neither the CA nor the storage.
    let dir = TestDir::new();
    let yaml = format!(
        "listeners:\n  - name: https\n    listen: 127.0.0.1:{}\n    tls:\n{good}  - {{ name: http, listen: 127.0.0.1:{} }}\n\
         routes:\n  - {{ name: r, plugins: [ {{ respond: {{ status: 200 }} }} ] }}\n",
        free_port(),
        free_port()
    );
    let config = dir.write("portico.yaml", &yaml);
    let (code, stderr) = validate_config_file(&config).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(!dir.path().join("store").exists(), "-t stored nothing");
    // Without acme, certificates are still required.
    let yaml = format!(
        "listeners:\n  - name: https\n    listen: 127.0.0.1:{}\n    tls: {{ min_version: \"1.2\" }}\n\
         routes:\n  - {{ name: r, plugins: [ {{ respond: {{ status: 200 }} }} ] }}\n",
        free_port()
    );
    let (code, stderr) = validate_config(&yaml).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("listeners[0].tls.certificates"), "{stderr}");
}

#[tokio::test]
async fn a_refused_reload_starts_no_manager_and_a_good_one_does() {
    // A directory nobody answers: the manager's first order fails, which shows it started.
    let dir_port = free_port();
    let files = TestCa::new("Portico files CA");
    let cert = files.issue(&[DOMAIN]);
    let base = |acme: &str, routes: &str| {
        format!(
            "{SERVER}\nadmin: {{ listen: 127.0.0.1:{{ADMIN}} }}\n\
             listeners:\n  - name: https\n    listen: 127.0.0.1:{{TLS}}\n    tls:\n      \
             certificates: [ {{ cert: {}, key: {} }} ]\n{acme}\
             \x20 - {{ name: http, listen: 127.0.0.1:{{HTTP}} }}\n{routes}",
            cert.cert.display(),
            cert.key.display()
        )
    };
    let routes = "routes:\n  - { name: r, plugins: [ { respond: { status: 200 } } ] }\n";
    let bad_routes = "routes:\n  - { name: r, upstream: nowhere }\n";
    let acme = format!(
        "      acme:\n        directory: https://127.0.0.1:{dir_port}/dir\n        \
         domains: [{DOMAIN}]\n        storage: {{ dir: store }}\n"
    );
    let fill = |t: String, admin: u16, tls: u16, http: u16| {
        t.replace("{ADMIN}", &admin.to_string())
            .replace("{TLS}", &tls.to_string())
            .replace("{HTTP}", &http.to_string())
    };
    let (admin, tls, http) = (free_port(), free_port(), free_port());
    let mut gw = Gateway::start(&fill(base("", routes), admin, tls, http)).await;
    let before = handshake(gw.listener("https"), DOMAIN, None).await.unwrap();
    // A reload refused for another reason: no manager, nothing stored, nothing ordered.
    gw.rewrite_config(&fill(base(&acme, bad_routes), admin, tls, http));
    assert_eq!(gw.admin_post("/reload").await.unwrap().status, 400);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !gw.stderr_text().contains("acme: certificate for"),
        "no manager"
    );
    assert!(!gw.dir().join("store").exists());
    let st = status(&gw).await;
    assert_eq!(certificates_of(&st, "https").len(), 1, "{st}");
    // Accepted: the manager starts; the file certificate keeps serving while the CA is
    // unreachable (the placeholder only stands in where nothing is configured).
    gw.rewrite_config(&fill(base(&acme, routes), admin, tls, http));
    assert_eq!(gw.admin_post("/reload").await.unwrap().status, 200);
    assert!(
        gw.wait_for_stderr("acme: order for", Duration::from_secs(15))
            .await
    );
    let after = handshake(gw.listener("https"), DOMAIN, None).await.unwrap();
    assert_eq!(after.serial, before.serial);
    let st = status(&gw).await;
    let sources: Vec<_> = certificates_of(&st, "https")
        .iter()
        .map(|c| c["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sources, ["acme", "file"], "{st}");
    // Taking acme out again stops it and serves the files alone.
    gw.rewrite_config(&fill(base("", routes), admin, tls, http));
    assert_eq!(gw.admin_post("/reload").await.unwrap().status, 200);
    let st = status(&gw).await;
    assert_eq!(certificates_of(&st, "https").len(), 1, "{st}");
}
