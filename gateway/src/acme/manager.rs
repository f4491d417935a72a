//! One certificate's life: loaded from storage at start (a restart reuses it), ordered by
//! whichever instance takes the order lock when there is none or it is due for renewal,
//! and picked up from storage by every instance within a poll. Failures back off (shared
//! through storage, so a pair backs off together) and never stop what is served.

use super::certificate::{certificate_id, Certificate};
use super::challenge::Answers;
use super::order::{place_order, OrderContext};
use super::storage::{self, keys, Storage};
use super::{AcmeConfig, Challenge};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// How often storage is read for a certificate another instance stored, and how soon a due
/// renewal starts: well within the 10 s in which every instance must serve a new one.
const POLL: Duration = Duration::from_secs(2);
/// The order lock's lease, extended every [`LEASE`]/6 while the order runs; a holder that
/// dies frees it at most this long after.
const LEASE: Duration = Duration::from_secs(120);
/// An order that takes longer is abandoned (and counted as failed).
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);
/// After a failure: the first retry within 5 s, doubling up to 10 min.
const BACKOFF_FIRST: Duration = Duration::from_secs(4);
const BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Orders placed, by outcome. `failure` includes a CA that could not be reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OrderCounts {
    pub success: u64,
    pub failure: u64,
}

#[derive(Default)]
struct Counters {
    success: AtomicU64,
    failure: AtomicU64,
}

impl Counters {
    fn get(&self) -> OrderCounts {
        OrderCounts {
            success: self.success.load(Ordering::Relaxed),
            failure: self.failure.load(Ordering::Relaxed),
        }
    }
    fn count(&self, ok: bool) {
        let c = if ok { &self.success } else { &self.failure };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

static ORDERS: Counters = Counters {
    success: AtomicU64::new(0),
    failure: AtomicU64::new(0),
};

/// Orders placed by every manager of the process: `portico_acme_orders_total{result}`.
pub fn orders_total() -> OrderCounts {
    ORDERS.get()
}

/// What `/status` shows of an ACME certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeStatus {
    /// The configured names.
    pub names: Vec<String>,
    /// False while the placeholder is served.
    pub issued: bool,
    pub not_after: Option<SystemTime>,
    /// When renewal starts (it is done within seconds of that when the CA answers).
    pub renews_at: Option<SystemTime>,
    pub serial: Option<String>,
    /// Why the last order this instance placed failed, until one succeeds.
    pub last_error: Option<String>,
}

/// The manager of one configured certificate. Made with [`Acme::new`], run with
/// [`Acme::run`] (or [`Acme::spawn`]); read with [`Acme::certificate`] and
/// [`Acme::subscribe`]; the listeners answer the CA through [`Acme::http01_answer`] and
/// [`Acme::tls_alpn01_cert`].
pub struct Acme {
    config: AcmeConfig,
    names: Vec<String>,
    id: String,
    storage: Arc<dyn Storage>,
    answers: Answers,
    /// This instance in the order lock.
    owner: String,
    current: watch::Sender<Arc<Certificate>>,
    orders: Counters,
    last_error: Mutex<Option<String>>,
}

impl Acme {
    /// A manager serving a placeholder until it has a certificate. `config` must have
    /// passed [`AcmeConfig::validate`] (and been [`AcmeConfig::resolved`]). No I/O: storage
    /// is reached once the manager runs.
    pub fn new(config: AcmeConfig) -> Result<Arc<Self>, String> {
        let storage = storage::open(&config.storage)?;
        Self::with_storage(config, storage)
    }

    /// The same with a storage handle shared with other managers (one Redis connection for
    /// every certificate kept there).
    pub fn with_storage(
        config: AcmeConfig,
        storage: Arc<dyn Storage>,
    ) -> Result<Arc<Self>, String> {
        let names = config.names();
        if names.is_empty() {
            return Err("acme.domains lists no domain".into());
        }
        let id = certificate_id(&config.directory, &names);
        let placeholder = Arc::new(Certificate::placeholder(&names)?);
        let owner = format!(
            "{}-{}-{:016x}",
            std::env::var("HOSTNAME").unwrap_or_default(),
            std::process::id(),
            rand::random::<u64>()
        );
        Ok(Arc::new(Acme {
            answers: Answers::new(storage.clone()),
            config,
            names,
            id,
            storage,
            owner,
            current: watch::Sender::new(placeholder),
            orders: Counters::default(),
            last_error: Mutex::new(None),
        }))
    }

    /// Runs [`Acme::run`] on the current Tokio runtime.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().run())
    }

    /// Keeps the certificate issued and fresh, forever (abort the task to stop it; a lock it
    /// held then frees itself when its lease runs out).
    pub async fn run(self: Arc<Self>) {
        log::info!(
            "acme: certificate for {:?} from {} (storage: {}, id {})",
            self.names,
            self.config.directory,
            self.storage.describe(),
            self.id
        );
        let mut worker = Worker::default();
        loop {
            self.tick(&mut worker).await;
            // A retry due before the next poll is not made to wait for it.
            let nap = worker
                .next_attempt
                .map(|at| at.saturating_duration_since(Instant::now()))
                .filter(|until| *until < POLL)
                .unwrap_or(POLL);
            tokio::time::sleep(nap.max(Duration::from_millis(100))).await;
        }
    }

    /// The certificate to serve now: the placeholder until one is issued.
    pub fn certificate(&self) -> Arc<Certificate> {
        self.current.borrow().clone()
    }

    /// Sees every new certificate (the listener swaps its certificates on each change).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Certificate>> {
        self.current.subscribe()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn challenge(&self) -> Challenge {
        self.config.challenge
    }

    pub fn config(&self) -> &AcmeConfig {
        &self.config
    }

    pub fn status(&self) -> AcmeStatus {
        let c = self.certificate();
        let issued = !c.placeholder;
        AcmeStatus {
            names: self.names.clone(),
            issued,
            not_after: issued.then_some(c.not_after),
            renews_at: issued.then(|| c.renews_at(self.config.renew_before.0)),
            serial: issued.then(|| c.serial.clone()),
            last_error: self.last_error.lock().unwrap().clone(),
        }
    }

    /// Orders this manager placed, by outcome.
    pub fn orders(&self) -> OrderCounts {
        self.orders.get()
    }

    /// The answer to `GET /.well-known/acme-challenge/TOKEN`, from storage (whichever
    /// instance ordered); `None` for an unknown token or while storage is unreachable.
    pub async fn http01_answer(&self, token: &str) -> Option<String> {
        self.answers.http01(token).await
    }

    /// The certificate and key (PEM) to complete a TLS-ALPN-01 handshake (ALPN
    /// `acme-tls/1`) for `domain` with, or `None`.
    pub async fn tls_alpn01_cert(&self, domain: &str) -> Option<(String, String)> {
        self.answers.tls_alpn01(domain).await
    }

    fn publish(&self, certificate: Arc<Certificate>) {
        let new = self.current.send_if_modified(|current| {
            if current.placeholder || current.serial != certificate.serial {
                *current = certificate.clone();
                true
            } else {
                false
            }
        });
        if new {
            log::info!(
                "acme: serving the certificate for {:?}, serial {}, valid until {}",
                self.names,
                certificate.serial,
                chrono::DateTime::<chrono::Utc>::from(certificate.not_after).to_rfc3339()
            );
        }
    }

    /// One poll: pick up what storage has, and order when due and no other instance does.
    async fn tick(&self, w: &mut Worker) {
        if let Some(certificate) = w.unsaved.clone() {
            match self.save(&certificate).await {
                Ok(()) => w.unsaved = None,
                Err(e) => return w.storage_failed(&e),
            }
        }
        match self.load().await {
            Ok(Some(stored)) => self.publish(Arc::new(stored)),
            // Storage lost it (a Redis restarted without persistence): put back the one
            // served here, so that the other instances do not order another.
            Ok(None) if !self.certificate().placeholder => {
                if let Err(e) = self.save(&self.certificate()).await {
                    return w.storage_failed(&e);
                }
                log::info!(
                    "acme: storage had lost the certificate for {:?}; stored it again",
                    self.names
                );
            }
            Ok(None) => {}
            Err(e) => return w.storage_failed(&e),
        }
        w.storage_answers(&self.storage);
        if !self.due() || w.next_attempt.is_some_and(|at| Instant::now() < at) {
            return;
        }
        match self.shared_backoff().await {
            Ok(Some((_, next))) if SystemTime::now() < next => return,
            Ok(_) => {}
            Err(e) => return w.storage_failed(&e),
        }
        let lock = keys::order_lock(&self.id);
        match self.storage.try_lock(&lock, &self.owner, LEASE).await {
            Ok(true) => {}
            Ok(false) => return, // another instance is ordering: its certificate will be read
            Err(e) => return w.storage_failed(&e),
        }
        // Another instance may have stored a certificate just before letting the lock go.
        let still_due = match self.load().await {
            Ok(Some(stored)) => {
                self.publish(Arc::new(stored));
                self.due()
            }
            Ok(None) => true,
            Err(_) => false,
        };
        if still_due {
            self.order(w, &lock).await;
        }
        if let Err(e) = self.storage.unlock(&lock, &self.owner).await {
            log::warn!("acme: cannot release the order lock (it expires by itself): {e}");
        }
    }

    /// Whether a certificate is needed: none issued yet, or renewal time has come.
    fn due(&self) -> bool {
        let c = self.certificate();
        c.placeholder || SystemTime::now() >= c.renews_at(self.config.renew_before.0)
    }

    async fn order(&self, w: &mut Worker, lock: &str) {
        let started = Instant::now();
        log::info!(
            "acme: ordering a certificate for {:?} from {}",
            self.names,
            self.config.directory
        );
        let cx = OrderContext {
            config: &self.config,
            names: &self.names,
            storage: self.storage.as_ref(),
            answers: &self.answers,
        };
        let result = tokio::select! {
            result = tokio::time::timeout(ORDER_TIMEOUT, place_order(&cx)) => {
                result.unwrap_or_else(|_| Err(format!("no certificate within {ORDER_TIMEOUT:?}")))
            }
            lost = self.keep_lock(lock) => Err(lost),
        };
        let ok = result.is_ok();
        self.orders.count(ok);
        ORDERS.count(ok);
        crate::metrics::ACME_ORDERS
            .with_label_values(&[if ok { "success" } else { "failure" }])
            .inc();
        match result {
            Ok(certificate) => {
                log::info!(
                    "acme: certificate for {:?} issued in {:.1}s",
                    self.names,
                    started.elapsed().as_secs_f64()
                );
                *self.last_error.lock().unwrap() = None;
                w.failures = 0;
                w.next_attempt = None;
                let certificate = Arc::new(certificate);
                if let Err(e) = self.save(&certificate).await {
                    log::warn!("acme: cannot store the new certificate (the other instances will not see it until it is): {e}");
                    w.unsaved = Some(certificate.clone());
                }
                if let Err(e) = self.storage.delete(&keys::backoff(&self.id)).await {
                    log::debug!("acme: cannot clear the backoff: {e}");
                }
                self.publish(certificate);
            }
            Err(why) => {
                let failures = match self.shared_backoff().await {
                    Ok(Some((n, _))) => n.max(w.failures) + 1,
                    _ => w.failures + 1,
                };
                let wait = backoff(failures);
                w.failures = failures;
                w.next_attempt = Some(Instant::now() + wait);
                let record = format!("{failures}\n{}\n", unix(SystemTime::now() + wait));
                if let Err(e) = self
                    .storage
                    .put(
                        &keys::backoff(&self.id),
                        record.as_bytes(),
                        Some(BACKOFF_MAX * 2),
                    )
                    .await
                {
                    log::debug!("acme: cannot store the backoff: {e}");
                }
                log::warn!(
                    "acme: order for {:?} failed ({why}); the current certificate keeps serving; next attempt in {}s (failure {failures} in a row)",
                    self.names,
                    wait.as_secs()
                );
                *self.last_error.lock().unwrap() = Some(why);
            }
        }
    }

    /// Extends the order lock while the order runs; returns only when the lock is lost.
    async fn keep_lock(&self, lock: &str) -> String {
        let mut held_until = Instant::now() + LEASE;
        loop {
            tokio::time::sleep(LEASE / 6).await;
            match self.storage.renew_lock(lock, &self.owner, LEASE).await {
                Ok(true) => held_until = Instant::now() + LEASE,
                Ok(false) => return "the order lock was lost (its lease ran out)".into(),
                Err(e) if Instant::now() + LEASE / 6 >= held_until => {
                    return format!(
                        "the order lock could not be extended before its lease ran out: {e}"
                    )
                }
                Err(e) => log::warn!("acme: cannot extend the order lock, trying again: {e}"),
            }
        }
    }

    async fn load(&self) -> Result<Option<Certificate>, storage::StorageError> {
        let Some(stored) = self.storage.get(&keys::certificate(&self.id)).await? else {
            return Ok(None);
        };
        match Certificate::from_stored(&stored) {
            Ok(c) if c.covers(&self.names) => Ok(Some(c)),
            Ok(c) => {
                log::warn!(
                    "acme: the stored certificate is for {:?}, not {:?}; ignoring it",
                    c.names,
                    self.names
                );
                Ok(None)
            }
            Err(e) => {
                log::warn!("acme: the stored certificate is unreadable ({e}); ignoring it");
                Ok(None)
            }
        }
    }

    async fn save(&self, certificate: &Certificate) -> Result<(), storage::StorageError> {
        self.storage
            .put(&keys::certificate(&self.id), &certificate.to_stored(), None)
            .await
    }

    /// (failures in a row, when the next order may be placed), as the pair shares them.
    async fn shared_backoff(&self) -> Result<Option<(u32, SystemTime)>, storage::StorageError> {
        let Some(record) = self.storage.get(&keys::backoff(&self.id)).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&record);
        let mut lines = text.lines();
        let failures = lines.next().and_then(|l| l.parse().ok()).unwrap_or(1);
        let next = lines
            .next()
            .and_then(|l| l.parse().ok())
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
            .unwrap_or(UNIX_EPOCH);
        Ok(Some((failures, next)))
    }
}

/// This instance's own view between polls.
#[derive(Default)]
struct Worker {
    failures: u32,
    next_attempt: Option<Instant>,
    /// Issued but not yet in storage (it was down): stored before anything is read from it.
    unsaved: Option<Arc<Certificate>>,
    storage_down: bool,
}

impl Worker {
    fn storage_failed(&mut self, e: &storage::StorageError) {
        if !self.storage_down {
            self.storage_down = true;
            log::warn!(
                "acme: storage unreachable ({e}); serving the loaded certificate, retrying every {}s",
                POLL.as_secs()
            );
        }
    }

    fn storage_answers(&mut self, storage: &Arc<dyn Storage>) {
        if std::mem::take(&mut self.storage_down) {
            log::info!("acme: {} answers again", storage.describe());
        }
    }
}

/// The wait after `failures` failed orders in a row.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_FIRST * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_four_seconds_up_to_ten_minutes() {
        let waits: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
