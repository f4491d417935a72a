//! ACME against a real CA (Pebble) and real storage (redis-server, a folder): issuance by
//! HTTP-01 and TLS-ALPN-01, a pair ordering once and serving the same serial, a restart
//! reusing the stored certificate, renewal of a short-lived certificate on both instances,
//! and the CA down then back. Timings are printed (`--nocapture`).

// The black-box kit's Pebble helper (tests/common/pebble.rs, shared with this binary) is
// written against the `openssl` crate; this binary links the gateway, hence BoringSSL, and one
// binary cannot link both. The `boring` crate keeps the same API under another name.
extern crate boring as openssl;

mod acme_support;

use acme_support::*;
use gateway::acme::storage::{DirStorage, RedisStorage, Storage};
use gateway::acme::{certificate_id, Acme, Certificate};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const DOMAIN: &str = "shop.portico.test";

/// Served names, chain order and the CA's own word that it issued this serial.
fn assert_issued_by_pebble(c: &Certificate, names: &[&str], pebble: &Pebble) {
    assert!(!c.placeholder);
    for n in names {
        assert!(c.names.iter().any(|m| m == n), "{n} in {:?}", c.names);
    }
    let chain = boring::x509::X509::stack_from_pem(c.chain_pem.as_bytes()).unwrap();
    assert!(chain.len() >= 2, "leaf and intermediate");
    assert!(
        chain[1].issued(&chain[0]).is_ok(),
        "the intermediate issued the leaf"
    );
    let issued = pebble.issued();
    assert!(
        issued.iter().any(|s| same_serial(&c.serial, s)),
        "Pebble issued {issued:?}, we serve {}",
        c.serial
    );
}

fn issued_now(acme: &Acme) -> bool {
    !acme.certificate().placeholder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_certificate_into_a_folder_and_a_restart_reuses_it() {
    if !tools_present() {
        return;
    }
    init_logs();
    let dir = TempDir::new("acme-http01");
    let ca = DirectoryCa::new(&dir);
    let ports = PebblePorts::new();
    let pebble = Pebble::start(&dir, &ca, ports, None);
    let storage = format!("{{ dir: {} }}", dir.join("store").display());
    let config = acme_config(
        &ports.directory(),
        &ca.ca_pem,
        &[DOMAIN, "www.portico.test"],
        "http-01",
        &storage,
    );

    let first = Acme::new(config.clone()).unwrap();
    assert!(
        first.certificate().placeholder,
        "a placeholder until issued"
    );
    assert_eq!(first.status().renews_at, None);
    let answered = serve_http01(ports.http, vec![first.clone()]).await;
    let started = Instant::now();
    let task = first.spawn();
    let took = wait_for("first certificate", Duration::from_secs(30), || {
        issued_now(&first)
    })
    .await;
    println!(
        "TIMING http-01, one instance, folder: start to first certificate {:.2}s",
        took.as_secs_f64()
    );
    let c = first.certificate();
    assert_issued_by_pebble(&c, &[DOMAIN, "www.portico.test"], &pebble);
    assert_eq!(first.orders().success, 1);
    assert_eq!(first.orders().failure, 0);
    // Pebble validates each name from several vantage points, as Let's Encrypt does.
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 2 && answered.iter().all(|(_, ok)| *ok),
        "{answered:?}"
    );
    let status = first.status();
    assert_eq!(status.serial.as_deref(), Some(c.serial.as_str()));
    // Pebble's default lifetime is 5 years: renewal 30 days before the end.
    let renews_at = status.renews_at.unwrap();
    assert_eq!(renews_at, c.not_after - Duration::from_secs(30 * 86_400));
    assert!(renews_at > SystemTime::now());
    // The answers are removed once the order is done.
    assert!(std::fs::read_dir(dir.join("store/challenges/http-01"))
        .unwrap()
        .next()
        .is_none());

    // A restart: the stored certificate is served at once, nothing is ordered.
    task.abort();
    let second = Acme::new(config).unwrap();
    let restarted = Instant::now();
    second.spawn();
    let took = wait_for(
        "stored certificate after a restart",
        Duration::from_secs(5),
        || issued_now(&second),
    )
    .await;
    println!(
        "TIMING restart to the stored certificate {:.2}s",
        took.as_secs_f64()
    );
    assert_eq!(second.certificate().serial, c.serial);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        second.orders(),
        Default::default(),
        "no order after a restart"
    );
    assert_eq!(
        pebble.issued().len(),
        1,
        "Pebble issued one certificate in all"
    );
    let _ = (started, restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_a_certificate() {
    if !tools_present() {
        return;
    }
    init_logs();
    let dir = TempDir::new("acme-tls-alpn");
    let ca = DirectoryCa::new(&dir);
    let ports = PebblePorts::new();
    let pebble = Pebble::start(&dir, &ca, ports, None);
    let redis = Redis::start();
    let storage = format!("{{ redis: {{ url: \"{}\" }} }}", redis.url());
    let config = acme_config(
        &ports.directory(),
        &ca.ca_pem,
        &[DOMAIN],
        "tls-alpn-01",
        &storage,
    );
    let acme = Acme::new(config).unwrap();
    let answered = serve_tls_alpn01(ports.tls, vec![DOMAIN.into()], vec![acme.clone()]).await;
    acme.spawn();
    let took = wait_for("first certificate", Duration::from_secs(30), || {
        issued_now(&acme)
    })
    .await;
    println!(
        "TIMING tls-alpn-01, one instance, redis: start to first certificate {:.2}s",
        took.as_secs_f64()
    );
    assert_issued_by_pebble(&acme.certificate(), &[DOMAIN], &pebble);
    assert!(
        answered.lock().unwrap().iter().any(|(_, ok)| *ok),
        "validated through the challenge certificate"
    );
    assert_eq!(acme.orders().success, 1);
    // Removed from storage once the order is done.
    let store = RedisStorage::new(&redis.url()).unwrap();
    let left = store
        .get(&format!("challenges/tls-alpn-01/{DOMAIN}"))
        .await
        .unwrap();
    assert_eq!(left, None);
}

/// Two instances sharing one redis-server, started at once, each answering the CA.
struct Pair {
    a: Arc<Acme>,
    b: Arc<Acme>,
    answered: Answered,
}

async fn start_pair(config: gateway::acme::AcmeConfig, http_port: u16) -> Pair {
    let a = Acme::new(config.clone()).unwrap();
    let b = Acme::new(config).unwrap();
    let answered = serve_http01(http_port, vec![a.clone(), b.clone()]).await;
    a.spawn();
    b.spawn();
    Pair { a, b, answered }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_sharing_redis_orders_once_and_both_serve_the_same_serial() {
    if !tools_present() {
        return;
    }
    init_logs();
    let dir = TempDir::new("acme-pair");
    let ca = DirectoryCa::new(&dir);
    let ports = PebblePorts::new();
    let pebble = Pebble::start(&dir, &ca, ports, None);
    let redis = Redis::start();
    let storage = format!("{{ redis: {{ url: \"{}\" }} }}", redis.url());
    let config = acme_config(
        &ports.directory(),
        &ca.ca_pem,
        &[DOMAIN, "api.portico.test"],
        "http-01",
        &storage,
    );

    let started = Instant::now();
    let pair = start_pair(config, ports.http).await;
    let first = wait_for("one instance served", Duration::from_secs(30), || {
        issued_now(&pair.a) || issued_now(&pair.b)
    })
    .await;
    let both = wait_for("both instances served", Duration::from_secs(30), || {
        issued_now(&pair.a) && issued_now(&pair.b)
    })
    .await;
    println!(
        "TIMING pair on redis: start to first certificate {:.2}s, on both {:.2}s",
        first.as_secs_f64(),
        both.as_secs_f64()
    );
    let (ca_, cb) = (pair.a.certificate(), pair.b.certificate());
    assert_eq!(ca_.serial, cb.serial, "the same certificate on both");
    assert_eq!(ca_.key_pem, cb.key_pem);
    assert_issued_by_pebble(&ca_, &[DOMAIN, "api.portico.test"], &pebble);
    // Some more polls: still one order.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (oa, ob) = (pair.a.orders(), pair.b.orders());
    assert_eq!(
        (oa.success + ob.success, oa.failure + ob.failure),
        (1, 0),
        "one order: {oa:?} {ob:?}"
    );
    assert_eq!(pebble.issued().len(), 1, "the CA issued once");
    // Both instances answered every validation, the one that did not order from storage.
    let answered = pair.answered.lock().unwrap().clone();
    for instance in [0, 1] {
        let answers: Vec<bool> = answered
            .iter()
            .filter(|(i, _)| *i == instance)
            .map(|(_, ok)| *ok)
            .collect();
        assert!(
            answers.len() >= 2 && answers.iter().all(|ok| *ok),
            "instance {instance} answered every validation: {answered:?}"
        );
    }
    let _ = started;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_certificate_is_renewed_at_its_midpoint_on_both_instances() {
    if !tools_present() {
        return;
    }
    init_logs();
    let dir = TempDir::new("acme-renew");
    let ca = DirectoryCa::new(&dir);
    let ports = PebblePorts::new();
    // 30 s certificates with renew_before 30d: renewed at the midpoint, not in a loop.
    let pebble = Pebble::start(&dir, &ca, ports, Some(30));
    let redis = Redis::start();
    let storage = format!("{{ redis: {{ url: \"{}\" }} }}", redis.url());
    let config = acme_config(
        &ports.directory(),
        &ca.ca_pem,
        &[DOMAIN],
        "http-01",
        &storage,
    );
    let pair = start_pair(config, ports.http).await;
    wait_for("both instances served", Duration::from_secs(30), || {
        issued_now(&pair.a) && issued_now(&pair.b)
    })
    .await;
    let first = pair.a.certificate();
    assert_eq!(pair.b.certificate().serial, first.serial);
    let lifetime = first.not_after.duration_since(first.not_before).unwrap();
    assert!(
        lifetime <= Duration::from_secs(31),
        "Pebble's short lifetime: {lifetime:?}"
    );
    let renews_at = pair.a.status().renews_at.unwrap();
    assert_eq!(renews_at, first.not_before + lifetime / 2);
    assert_eq!(pebble.issued().len(), 1, "not renewed before the midpoint");

    // Renewed after the midpoint, and both serve the new one, without a restart.
    let renewed = |a: &Acme| a.certificate().serial != first.serial;
    wait_for("renewal on one instance", Duration::from_secs(40), || {
        renewed(&pair.a) || renewed(&pair.b)
    })
    .await;
    let on_one = SystemTime::now();
    wait_for("renewal on both instances", Duration::from_secs(15), || {
        renewed(&pair.a) && renewed(&pair.b)
    })
    .await;
    let on_both = SystemTime::now();
    let late = |t: SystemTime| {
        t.duration_since(renews_at)
            .unwrap_or_default()
            .as_secs_f64()
    };
    println!(
        "TIMING renewal: renews_at to served on one instance {:.2}s, on both {:.2}s",
        late(on_one),
        late(on_both)
    );
    assert!(
        late(on_both) < 15.0,
        "renewal starts within 5 s and reaches both within 10 s more"
    );
    assert!(on_one >= renews_at, "not before renews_at");
    let second = pair.a.certificate();
    assert_eq!(pair.b.certificate().serial, second.serial);
    assert_issued_by_pebble(&second, &[DOMAIN], &pebble);
    assert_eq!(pebble.issued().len(), 2, "one renewal order");
    let (oa, ob) = (pair.a.orders(), pair.b.orders());
    assert_eq!((oa.success + ob.success, oa.failure + ob.failure), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_down_then_back_backs_off_keeps_serving_and_recovers() {
    if !tools_present() {
        return;
    }
    init_logs();
    let dir = TempDir::new("acme-ca-down");
    let ca = DirectoryCa::new(&dir);
    let ports = PebblePorts::new();
    let storage = format!("{{ dir: {} }}", dir.join("store").display());
    let config = acme_config(
        &ports.directory(),
        &ca.ca_pem,
        &[DOMAIN],
        "http-01",
        &storage,
    );
    let acme = Acme::new(config).unwrap();
    serve_http01(ports.http, vec![acme.clone()]).await;

    // No CA at start: the placeholder serves (readiness does not wait), orders fail and
    // are retried after 4 s, then 8 s.
    let start = Instant::now();
    acme.spawn();
    wait_for("first failure", Duration::from_secs(5), || {
        acme.orders().failure == 1
    })
    .await;
    let first_failure = start.elapsed();
    wait_for("second failure", Duration::from_secs(7), || {
        acme.orders().failure == 2
    })
    .await;
    let second_failure = start.elapsed();
    let retry = second_failure - first_failure;
    println!(
        "TIMING CA down: first retry after {:.2}s",
        retry.as_secs_f64()
    );
    assert!(
        retry >= Duration::from_millis(3500) && retry <= Duration::from_secs(5),
        "first retry within 5 s: {retry:?}"
    );
    assert!(acme.certificate().placeholder);
    assert!(
        acme.status().last_error.unwrap().contains("127.0.0.1"),
        "{:?}",
        acme.status()
    );

    // The CA comes up (with 20 s certificates): the next retry, 8 s after the second
    // failure, succeeds.
    let pebble = Pebble::start(&dir, &ca, ports, Some(20));
    let took = wait_for(
        "certificate once the CA is back",
        Duration::from_secs(15),
        || issued_now(&acme),
    )
    .await;
    let after_second = start.elapsed() - second_failure;
    println!(
        "TIMING CA back: issued {:.2}s after it came up ({:.2}s after the second failure)",
        took.as_secs_f64(),
        after_second.as_secs_f64()
    );
    assert!(
        after_second >= Duration::from_millis(7500),
        "the second wait doubled: {after_second:?}"
    );
    assert_eq!(acme.orders().failure, 2);
    let issued = acme.certificate();
    assert_issued_by_pebble(&issued, &[DOMAIN], &pebble);
    assert_eq!(acme.status().last_error, None);

    // The CA goes down again before the renewal (at 10 s): the failed renewals keep the
    // current certificate serving.
    pebble.stop();
    let failures = acme.orders().failure;
    wait_for("a failed renewal", Duration::from_secs(20), || {
        acme.orders().failure > failures
    })
    .await;
    assert_eq!(
        acme.certificate().serial,
        issued.serial,
        "the current certificate keeps serving"
    );

    // A new CA (one that never saw the account) comes back: a new account, a new certificate.
    let pebble = Pebble::start(&dir, &ca, ports, Some(20));
    wait_for(
        "renewal once the CA is back",
        Duration::from_secs(15),
        || acme.certificate().serial != issued.serial,
    )
    .await;
    assert_issued_by_pebble(&acme.certificate(), &[DOMAIN], &pebble);
    assert!(
        pebble.log_text().contains("There are now 1 accounts"),
        "a new account at the new CA"
    );
    assert_eq!(acme.orders().success, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_down_keeps_the_loaded_certificate_and_challenges_answer_none() {
    if !tools_present() {
        return;
    }
    init_logs();
    let dir = TempDir::new("acme-storage-down");
    let ca = DirectoryCa::new(&dir);
    let ports = PebblePorts::new();
    let pebble = Pebble::start(&dir, &ca, ports, None);
    let redis = Redis::start();
    let redis_port = redis.port;
    let storage = format!("{{ redis: {{ url: \"{}\" }} }}", redis.url());
    let config = acme_config(
        &ports.directory(),
        &ca.ca_pem,
        &[DOMAIN],
        "http-01",
        &storage,
    );
    let acme = Acme::new(config).unwrap();
    serve_http01(ports.http, vec![acme.clone()]).await;
    acme.spawn();
    wait_for("first certificate", Duration::from_secs(30), || {
        issued_now(&acme)
    })
    .await;
    let served = acme.certificate();

    redis.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        acme.certificate().serial,
        served.serial,
        "still served with storage down"
    );
    let asked = Instant::now();
    assert_eq!(acme.http01_answer("some-token").await, None);
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "a bounded wait: {:?}",
        asked.elapsed()
    );

    // Redis back, empty (it kept nothing): this instance's certificate is valid and not
    // due, so it keeps serving it, orders nothing, and stores it again for the others.
    let redis = Redis::start_on(redis_port);
    let store = RedisStorage::new(&redis.url()).unwrap();
    let key = format!(
        "certificates/{}",
        certificate_id(&ports.directory(), &[DOMAIN.to_string()])
    );
    let mut stored = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        stored = store.get(&key).await.ok().flatten();
    }
    let stored = Certificate::from_stored(&stored.expect("stored again within 10 s")).unwrap();
    assert_eq!(stored.serial, served.serial);
    assert_eq!(acme.certificate().serial, served.serial);
    assert_eq!(acme.orders().success, 1);
    assert_eq!(pebble.issued().len(), 1);
}

/// The order lock on both backends: one holder at a time, owner-only renew and release, and
/// an expired lease taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_lock_is_exclusive_leased_and_owner_only_on_both_backends() {
    if !tools_present() {
        return;
    }
    let redis = Redis::start();
    let dir = TempDir::new("acme-lock");
    let backends: Vec<(Box<dyn Storage>, Box<dyn Storage>)> = vec![
        (
            Box::new(RedisStorage::new(&redis.url()).unwrap()),
            Box::new(RedisStorage::new(&redis.url()).unwrap()),
        ),
        (
            Box::new(DirStorage::new(dir.join("shared"))),
            Box::new(DirStorage::new(dir.join("shared"))),
        ),
    ];
    let lease = Duration::from_millis(800);
    for (one, two) in &backends {
        let what = one.describe();
        assert!(one.try_lock("l", "one", lease).await.unwrap(), "{what}");
        assert!(
            !two.try_lock("l", "two", lease).await.unwrap(),
            "{what}: held"
        );
        assert!(
            !two.renew_lock("l", "two", lease).await.unwrap(),
            "{what}: not two's"
        );
        two.unlock("l", "two").await.unwrap();
        assert!(
            !two.try_lock("l", "two", lease).await.unwrap(),
            "{what}: two cannot release one's lock"
        );
        assert!(one.renew_lock("l", "one", lease).await.unwrap(), "{what}");
        one.unlock("l", "one").await.unwrap();
        assert!(
            two.try_lock("l", "two", lease).await.unwrap(),
            "{what}: free after release"
        );
        // two dies holding it: one takes it once the lease ran out.
        assert!(!one.try_lock("l", "one", lease).await.unwrap(), "{what}");
        tokio::time::sleep(lease + Duration::from_millis(200)).await;
        assert!(
            one.try_lock("l", "one", lease).await.unwrap(),
            "{what}: expired lease taken over"
        );
        assert!(
            !two.renew_lock("l", "two", lease).await.unwrap(),
            "{what}: two lost it"
        );
        // Values: written whole, read back, deleted.
        one.put("certificates/x", b"pem", None).await.unwrap();
        assert_eq!(
            two.get("certificates/x").await.unwrap().as_deref(),
            Some(&b"pem"[..])
        );
        two.delete("certificates/x").await.unwrap();
        assert_eq!(one.get("certificates/x").await.unwrap(), None);
    }
    // Eight contenders at once, each with its own connection or handle: exactly one wins.
    let redis_url = redis.url();
    let shared = dir.join("race");
    let makers: [Box<dyn Fn() -> Arc<dyn Storage>>; 2] = [
        Box::new(move || Arc::new(RedisStorage::new(&redis_url).unwrap())),
        Box::new(move || Arc::new(DirStorage::new(shared.clone()))),
    ];
    for make in &makers {
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let storage = make();
                tokio::spawn(async move {
                    storage
                        .try_lock("race", &format!("owner-{n}"), Duration::from_secs(5))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            wins += usize::from(t.await.unwrap());
        }
        assert_eq!(wins, 1, "{}", make().describe());
    }
    // A storage that is not there: errors, not panics.
    let nowhere = RedisStorage::new(&format!("redis://127.0.0.1:{}", free_port())).unwrap();
    assert!(nowhere.get("certificates/x").await.is_err());
    assert!(nowhere.try_lock("l", "one", lease).await.is_err());
}
