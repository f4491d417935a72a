//! `gateway::fleet` against a real etcd (Debian's etcd-server 3.4 on 127.0.0.1, started and
//! killed here; see etcd/mod.rs): reading, pushing and following a key, several members with
//! some down, an etcd restart, compaction, the start from the cache, auth and TLS.
//!
//! Writes the tests make themselves go through `etcdctl`, so what the module reads is what
//! etcd stored, not what the module wrote.

mod etcd;
#[path = "../../tests/common/ports.rs"]
mod ports;

use etcd::{Cluster, Scratch};
use gateway::fleet::{
    self, Access, ConfigSource, Document, Etcd, EtcdSource, FleetError, Follower, Update,
};
use ports::free_port;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The contract: a new revision reaches the instance within 2 s of the write.
const APPLY_LIMIT: Duration = Duration::from_secs(2);
/// Time for one read or push in these tests.
const WITHIN: Duration = Duration::from_secs(5);

const CONFIG_V1: &str = "# fleet test\nserver:\n  pid_file: ${PORTICO_PID_FILE}\n";

fn source(url: &str) -> EtcdSource {
    match ConfigSource::parse(url).unwrap() {
        ConfigSource::Etcd(s) => s,
        other => panic!("{url} parsed as {other:?}"),
    }
}

fn etcd_at(url: &str) -> Etcd {
    Etcd::new(source(url), &Access::default()).unwrap()
}

/// Follows from `served`; every update arrives stamped with the time it was handed on.
fn follow(etcd: &Etcd, served: i64) -> (Follower, Receiver<(Instant, Update)>) {
    logs(); // the logger in place before the follower logs
    let (tx, rx) = channel();
    let follower = etcd.follow(served, move |update| {
        let _ = tx.send((Instant::now(), update));
    });
    (follower, rx)
}

/// The next update as a document; panics on anything else or nothing within `limit`.
fn next_document(rx: &Receiver<(Instant, Update)>, limit: Duration) -> (Instant, Document) {
    match rx.recv_timeout(limit) {
        Ok((at, Update::Document(d))) => (at, d),
        Ok((_, other)) => panic!("wanted a document, got {other:?}"),
        Err(e) => panic!("no update within {limit:?}: {e}"),
    }
}

fn nothing_more(rx: &Receiver<(Instant, Update)>, wait: Duration) {
    if let Ok((_, update)) = rx.recv_timeout(wait) {
        panic!("an update too many: {update:?}");
    }
}

/// Log lines of the whole test binary (the module logs its outages and recoveries).
fn logs() -> &'static Mutex<Vec<String>> {
    struct Capture;
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    static LOGGER: Capture = Capture;
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.target().starts_with("gateway::fleet")
        }
        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata()) {
                let line = format!("{} {}", record.level(), record.args());
                LINES.get().unwrap().lock().unwrap().push(line);
            }
        }
        fn flush(&self) {}
    }
    LINES.get_or_init(|| {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Info);
        Mutex::new(Vec::new())
    })
}

fn logged(needle_a: &str, needle_b: &str) -> Vec<String> {
    logs()
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle_a) && l.contains(needle_b))
        .cloned()
        .collect()
}

#[test]
fn read_push_and_follow_one_key() {
    let cluster = Cluster::single("follow");
    let key = "/portico/config";
    let written = cluster.put(key, CONFIG_V1.as_bytes());
    let etcd = etcd_at(&cluster.url(key));

    // The document as stored: `${VAR}` untouched, the revision it was written at.
    let doc = etcd.read(WITHIN).unwrap();
    assert_eq!((doc.revision, doc.text.as_str()), (written, CONFIG_V1));
    assert_eq!(doc.source, *etcd.source());

    let (follower, rx) = follow(&etcd, doc.revision);
    // Nothing new yet: the revision served is not handed on again.
    nothing_more(&rx, Duration::from_millis(500));

    // A write by someone else (etcdctl) arrives, well within the contract's 2 s.
    let text = CONFIG_V1.replace("fleet test", "second");
    let before = Instant::now();
    let revision = cluster.put(key, text.as_bytes());
    let (at, doc) = next_document(&rx, APPLY_LIMIT);
    assert_eq!((doc.revision, doc.text.as_str()), (revision, text.as_str()));
    assert!(at - before < APPLY_LIMIT);

    // Pushes: each one's revision is the one handed on. Measure write → callback.
    let mut latencies = Vec::new();
    for i in 0..20 {
        let text = format!("{CONFIG_V1}# push {i}\n");
        let before = Instant::now();
        let revision = etcd.push(&text, WITHIN).unwrap();
        let (at, doc) = next_document(&rx, APPLY_LIMIT);
        assert_eq!((doc.revision, doc.text), (revision, text));
        latencies.push(at - before);
    }
    latencies.sort();
    eprintln!(
        "push -> callback: min {:?}, median {:?}, max {:?} (20 pushes)",
        latencies[0], latencies[10], latencies[19]
    );
    assert!(latencies[19] < APPLY_LIMIT, "{latencies:?}");

    // Another key's writes are none of its business.
    cluster.put("/portico/other", b"x");
    nothing_more(&rx, Duration::from_millis(300));
    follower.stop();
}

#[test]
fn push_returns_the_revision_etcd_stored() {
    let cluster = Cluster::single("push");
    let key = "/fleet/push";
    let etcd = etcd_at(&cluster.url(key));
    let mut last = 0;
    for text in ["a: 1\n", "", "b: ${X}\n", "unicode: \"é ✓\"\n"] {
        let revision = etcd.push(text, WITHIN).unwrap();
        assert!(revision > last, "{revision} after {last}");
        last = revision;
        assert_eq!(cluster.get(key), Some((text.to_string(), revision)));
        assert_eq!(etcd.read(WITHIN).unwrap().revision, revision);
    }
}

#[test]
fn deleted_and_binary_revisions_are_unusable() {
    let cluster = Cluster::single("unusable");
    let key = "/fleet/unusable";
    let served = cluster.put(key, b"a: 1\n");
    let etcd = etcd_at(&cluster.url(key));
    let (_follower, rx) = follow(&etcd, served);

    let deleted = cluster.delete(key);
    match rx.recv_timeout(APPLY_LIMIT).unwrap().1 {
        Update::Unusable { revision, reason } => {
            assert_eq!(revision, deleted);
            assert!(reason.contains("deleted"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Reading an empty key says how to fill it.
    let err = etcd.read(WITHIN).unwrap_err();
    assert!(matches!(err, FleetError::NoDocument { .. }), "{err}");
    assert!(err.to_string().contains("--push"), "{err}");

    let binary = cluster.put(key, b"\xff\xfe not text");
    match rx.recv_timeout(APPLY_LIMIT).unwrap().1 {
        Update::Unusable { revision, reason } => {
            assert_eq!(revision, binary);
            assert!(reason.contains("not UTF-8"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let back = cluster.put(key, b"a: 2\n");
    let (_, doc) = next_document(&rx, APPLY_LIMIT);
    assert_eq!((doc.revision, doc.text.as_str()), (back, "a: 2\n"));
}

#[test]
fn several_endpoints_with_some_down() {
    let cluster = Cluster::single("endpoints");
    let key = "/fleet/endpoints";
    let live = cluster.endpoint(0);
    let dead = || format!("127.0.0.1:{}", free_port());
    // Where the live member sits in the list.
    let lists = [
        vec![dead(), live.clone()],
        vec![live.clone(), dead()],
        vec![dead(), dead(), live.clone()],
    ];
    for endpoints in lists {
        let url = format!("etcd://{}{key}", endpoints.join(","));
        let etcd = etcd_at(&url);
        let revision = etcd.push(&format!("# {url}\n"), WITHIN).unwrap();
        assert_eq!(etcd.read(WITHIN).unwrap().revision, revision, "{url}");
        let (_follower, rx) = follow(&etcd, revision);
        let next = cluster.put(key, b"next: 1\n");
        let (_, doc) = next_document(&rx, APPLY_LIMIT);
        assert_eq!(doc.revision, next, "{url}");
    }
    // None up: the error names every member and why.
    let (a, b) = (dead(), dead());
    let err = etcd_at(&format!("etcd://{a},{b}{key}"))
        .read(WITHIN)
        .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&a) && text.contains(&b) && text.contains("refused"),
        "{text}"
    );
}

#[test]
fn a_cluster_member_dies_under_the_follower() {
    let mut cluster = Cluster::start("cluster", 3, None);
    let key = "/fleet/cluster";
    let served = cluster.put(key, b"v: 1\n");
    // The follower tries the members in the order written: it is on member 0.
    let etcd = etcd_at(&cluster.url(key));
    let (_follower, rx) = follow(&etcd, served);
    let revision = cluster.put(key, b"v: 2\n");
    assert_eq!(next_document(&rx, APPLY_LIMIT).1.revision, revision);

    cluster.kill(0);
    let killed = Instant::now();
    // The two others still make a majority: writes go on (after an election, if the leader
    // was killed), and reach the follower once it has moved to another member.
    cluster.wait_writable();
    let revision = cluster.put(key, b"v: 3\n");
    let (at, doc) = next_document(&rx, Duration::from_secs(10));
    assert_eq!((doc.revision, doc.text.as_str()), (revision, "v: 3\n"));
    eprintln!(
        "member killed -> next revision handed on: {:?}",
        at - killed
    );
    let revision = cluster.put(key, b"v: 4\n");
    assert_eq!(next_document(&rx, APPLY_LIMIT).1.revision, revision);
}

#[test]
fn etcd_restarted_the_follower_catches_up_to_the_newest() {
    let mut cluster = Cluster::single("restart");
    let key = "/fleet/restart";
    let url = cluster.url(key);
    let served = cluster.put(key, b"v: 1\n");
    let etcd = etcd_at(&url);
    let (_follower, rx) = follow(&etcd, served);

    cluster.kill(0);
    // Long enough for the backoff to grow past its first steps (0.25, 0.5, 1, 2 s...).
    std::thread::sleep(Duration::from_secs(4));
    // A single member cannot take writes while it is down; so write while the follower cannot
    // see it: on another client port, three revisions, then back on the usual port.
    let elsewhere = free_port();
    cluster.restart(0, Some(elsewhere));
    cluster.members[0].client_port = elsewhere;
    for v in 2..=4 {
        cluster.put(key, format!("v: {v}\n").as_bytes());
    }
    let newest = cluster.get(key).unwrap().1;
    cluster.members[0].client_port = port_of(&url);
    let back = Instant::now();
    cluster.restart(0, None);

    // Within the longest backoff (10 s) plus a try: the newest revision only, none between.
    let (at, doc) = next_document(&rx, fleet::MAX_BACKOFF + Duration::from_secs(5));
    assert_eq!((doc.revision, doc.text.as_str()), (newest, "v: 4\n"));
    eprintln!(
        "etcd restarted -> newest revision handed on: {:?}",
        at - back
    );
    nothing_more(&rx, Duration::from_millis(500));
    // And it follows again.
    let revision = cluster.put(key, b"v: 5\n");
    assert_eq!(next_document(&rx, APPLY_LIMIT).1.revision, revision);
    let warned = logged("WARN", &url);
    assert!(!warned.is_empty(), "the outage is logged");
}

fn port_of(url: &str) -> u16 {
    source(url).endpoints()[0].port()
}

#[test]
fn compacted_history_is_read_again() {
    let cluster = Cluster::single("compaction");
    let key = "/fleet/compaction";
    let url = cluster.url(key);
    let old = cluster.put(key, b"v: 1\n");
    // Case 1: the key is unchanged since the revision served, but that revision is compacted
    // away (by other keys' writes): nothing to hand on, and later writes still arrive.
    for i in 0..5 {
        cluster.put("/fleet/noise", format!("{i}").as_bytes());
    }
    let latest = cluster.put("/fleet/noise", b"last");
    cluster.compact(latest);
    let etcd = etcd_at(&url);
    let (follower, rx) = follow(&etcd, old);
    nothing_more(&rx, Duration::from_millis(700));
    let revision = cluster.put(key, b"v: 2\n");
    assert_eq!(next_document(&rx, APPLY_LIMIT).1.revision, revision);
    follower.stop();

    // Case 2: the key changed several times after the revision served, all compacted: the
    // newest arrives, alone.
    for v in 3..=5 {
        cluster.put(key, format!("v: {v}\n").as_bytes());
    }
    let newest = cluster.put("/fleet/noise", b"again");
    cluster.compact(newest);
    let (_follower, rx) = follow(&etcd, old);
    let (_, doc) = next_document(&rx, APPLY_LIMIT);
    assert_eq!(doc.text, "v: 5\n");
    assert_eq!(doc.revision, cluster.get(key).unwrap().1);
    nothing_more(&rx, Duration::from_millis(500));

    // Handled in the watch, not as an outage: no warning, no backoff.
    assert!(!logged("compacted", &url).is_empty(), "{:?}", logs());
    assert!(
        logged("WARN", &url).is_empty(),
        "{:?}",
        logged("WARN", &url)
    );
}

/// A member that accepts connections and never answers: a start must not wait on it longer
/// than its time.
fn silent_member() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

#[test]
fn start_from_etcd_or_from_the_cache() {
    let cluster = Cluster::single("start");
    let key = "/fleet/start";
    let dir = Scratch::new("start-cache");
    let cache = dir.path.join("portico-config-cache.yaml");
    let up = cluster.url(key);
    let down = format!("etcd://127.0.0.1:{}{key}", free_port());
    let (_held, silent) = silent_member();
    let silent = format!("etcd://{silent}{key}");
    let cached = |url: &str, revision: i64| Document {
        source: source(url),
        revision,
        text: format!("# cached {revision}\n"),
    };

    enum Want {
        Etcd,
        Cache(i64),
        Error(&'static str),
    }
    // (case, URL, what the cache holds, what the start gives)
    let cases: Vec<(&str, &str, Option<Document>, Want)> = vec![
        ("etcd up, no cache", &up, None, Want::Etcd),
        (
            "etcd up wins over the cache",
            &up,
            Some(cached(&up, 1)),
            Want::Etcd,
        ),
        (
            "etcd down, cache",
            &down,
            Some(cached(&down, 7)),
            Want::Cache(7),
        ),
        (
            "etcd silent, cache",
            &silent,
            Some(cached(&silent, 8)),
            Want::Cache(8),
        ),
        (
            "etcd down, no cache",
            &down,
            None,
            Want::Error("no config cache to start from"),
        ),
        (
            "etcd down, another key's cache",
            &down,
            Some(cached("etcd://127.0.0.1:1/other", 3)),
            Want::Error("not this key of this cluster"),
        ),
    ];
    let stored = cluster.put(key, b"from: etcd\n");
    for (case, url, cache_holds, want) in cases {
        let _ = std::fs::remove_file(&cache);
        if let Some(doc) = &cache_holds {
            fleet::write_cache(&cache, doc).unwrap();
        }
        let etcd = etcd_at(url);
        let began = Instant::now();
        let result = fleet::start(&etcd, &cache, Duration::from_secs(2));
        // Bounded: a silent member costs the start's time, no more.
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{case}: {:?}",
            began.elapsed()
        );
        match (want, result) {
            (Want::Etcd, Ok(start)) => {
                assert_eq!(start.document.revision, stored, "{case}");
                assert_eq!((start.from_cache, start.notice), (None, None), "{case}");
            }
            (Want::Cache(revision), Ok(start)) => {
                assert_eq!(start.document, cached(url, revision), "{case}");
                assert_eq!(start.from_cache.as_ref(), Some(&cache), "{case}");
                let notice = start.notice.unwrap();
                assert!(!notice.contains('\n'), "one line: {notice}");
                assert!(
                    notice.contains(&format!("started from cache {}", cache.display()))
                        && notice.contains("unreachable"),
                    "{case}: {notice}"
                );
            }
            (Want::Error(part), Err(e)) => {
                let text = e.to_string();
                assert!(text.contains(part), "{case}: {text}");
                assert!(
                    text.contains(&cache.display().to_string()),
                    "{case}: {text}"
                );
            }
            (_, other) => panic!("{case}: {other:?}"),
        }
    }

    // etcd answers but holds nothing at the key: an error, not the cache.
    let empty = cluster.url("/fleet/empty");
    fleet::write_cache(&cache, &cached(&empty, 1)).unwrap();
    let err = fleet::start(&etcd_at(&empty), &cache, WITHIN).unwrap_err();
    assert!(matches!(err, FleetError::NoDocument { .. }), "{err}");
    // A file there that is not a cache is reported, not taken.
    std::fs::write(&cache, "server: {}\n").unwrap();
    let err = fleet::start(&etcd_at(&down), &cache, WITHIN).unwrap_err();
    assert!(err.to_string().contains("not a config cache"), "{err}");
}

#[test]
fn auth_with_user_and_password() {
    let mut cluster = Cluster::single("auth");
    let key = "/fleet/auth";
    cluster.enable_auth("rootpw", "portico", "fleetpw", key, "readwrite");
    let stored = cluster.put(key, b"auth: 1\n");
    let url = cluster.url(key);
    let with = |user: &str, password: &str| Access {
        user: Some((user.to_string(), password.to_string())),
        ..Access::default()
    };
    // (case, access, the error's part, or "" for success)
    let cases = [
        ("right password", with("portico", "fleetpw"), ""),
        (
            "wrong password",
            with("portico", "nope"),
            "authentication failed",
        ),
        ("no user", Access::default(), "refused"),
        ("root, allowed every key", with("root", "rootpw"), ""),
    ];
    for (case, access, want) in cases {
        let etcd = Etcd::new(source(&url), &access).unwrap();
        match etcd.read(WITHIN) {
            Ok(doc) => {
                assert!(want.is_empty(), "{case}: read, wanted {want}");
                assert_eq!(doc.revision, stored, "{case}");
            }
            Err(e) => {
                assert!(!want.is_empty(), "{case}: {e}");
                assert!(matches!(e, FleetError::Refused { .. }), "{case}: {e}");
                assert!(e.to_string().contains(want), "{case}: {e}");
                assert!(
                    !e.to_string().contains("nope"),
                    "no password in errors: {e}"
                );
            }
        }
    }
    // A refusal is not an outage: no start from the cache on a wrong password.
    let dir = Scratch::new("auth-cache");
    let cache = dir.path.join("cache.yaml");
    let wrong = Etcd::new(source(&url), &with("portico", "nope")).unwrap();
    fleet::write_cache(
        &cache,
        &Document {
            source: source(&url),
            revision: 1,
            text: String::new(),
        },
    )
    .unwrap();
    assert!(matches!(
        fleet::start(&wrong, &cache, WITHIN),
        Err(FleetError::Refused { .. })
    ));

    // With the right password: push and follow.
    let etcd = Etcd::new(source(&url), &with("portico", "fleetpw")).unwrap();
    let (_follower, rx) = follow(&etcd, stored);
    let revision = etcd.push("auth: 2\n", WITHIN).unwrap();
    assert_eq!(next_document(&rx, APPLY_LIMIT).1.revision, revision);

    // Read-only: the push is refused with etcd's reason.
    let mut read_only = Cluster::single("auth-ro");
    read_only.enable_auth("rootpw", "reader", "readpw", key, "read");
    read_only.put(key, b"ro: 1\n");
    let etcd = Etcd::new(source(&read_only.url(key)), &with("reader", "readpw")).unwrap();
    assert!(etcd.read(WITHIN).is_ok());
    let err = etcd.push("ro: 2\n", WITHIN).unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[test]
fn tls_with_a_ca_and_client_certificates() {
    let cluster = Cluster::start("tls", 1, Some(true));
    let tls = cluster.tls().unwrap();
    let key = "/fleet/tls";
    let stored = cluster.put(key, b"tls: 1\n");
    let url = cluster.url(key);
    assert!(url.starts_with("etcds://"));
    let client = Some((tls.client_cert.clone(), tls.client_key.clone()));
    let ca = Some(tls.ca.clone());
    // (case, access, the error's part, or "" for success)
    let cases: Vec<(&str, Access, &str)> = vec![
        (
            "CA and client certificate",
            Access {
                ca: ca.clone(),
                client_cert: client.clone(),
                ..Access::default()
            },
            "",
        ),
        (
            "system CAs do not know the test CA",
            Access {
                client_cert: client.clone(),
                ..Access::default()
            },
            "unable to get local issuer certificate",
        ),
        (
            "no client certificate",
            Access {
                ca: ca.clone(),
                ..Access::default()
            },
            // etcd's alert reaches the client at its first read (TLS 1.3), or the closed
            // connection does first: either way, not reached.
            "etcd unreachable",
        ),
    ];
    for (case, access, want) in cases {
        let etcd = Etcd::new(source(&url), &access).unwrap();
        match etcd.read(WITHIN) {
            Ok(doc) => {
                assert!(want.is_empty(), "{case}: read, wanted {want}");
                assert_eq!(doc.revision, stored);
            }
            Err(e) => {
                assert!(!want.is_empty(), "{case}: {e}");
                assert!(e.to_string().contains(want), "{case}: {e}");
            }
        }
    }
    let good = Access {
        ca,
        client_cert: client,
        ..Access::default()
    };
    let etcd = Etcd::new(source(&url), &good).unwrap();
    let (_follower, rx) = follow(&etcd, stored);
    let revision = etcd.push("tls: 2\n", WITHIN).unwrap();
    assert_eq!(next_document(&rx, APPLY_LIMIT).1.revision, revision);

    // TLS files with a plain URL, or files that are not there: refused before any dialling.
    let plain = url.replacen("etcds://", "etcd://", 1);
    let err = Etcd::new(source(&plain), &good).err().unwrap();
    assert!(err.to_string().contains("use etcds://"), "{err}");
    let missing = Access {
        ca: Some(PathBuf::from("/nonexistent/ca.pem")),
        ..Access::default()
    };
    let err = Etcd::new(source(&url), &missing).err().unwrap();
    assert!(
        err.to_string()
            .contains("PORTICO_ETCD_CA=/nonexistent/ca.pem"),
        "{err}"
    );
}
