//! Following the document: a watch on the key, each new revision handed on as etcd reports it
//! (milliseconds after the write). When etcd goes away the instance keeps what it serves and
//! tries again with backoff (at most 10 s between tries, the members in turn); once back, it
//! reads the key again, so it catches up to the newest revision whatever happened meanwhile,
//! and watches on from there (docs/fleet.md, "When etcd is down").

use super::etcd::{describe, Document, Etcd, Reading};
use etcd_client::{Client, EventType, WatchOptions};
use rand::Rng;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// Longest wait between two tries to reach etcd again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Time allowed for one try (every member once) to connect and read.
const TRY_WITHIN: Duration = Duration::from_secs(5);

/// What a follower hands on for a new revision of the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// A new revision: validate it and, if valid, apply it (the reload path).
    Document(Document),
    /// A revision that cannot be a config: the key was deleted, or its value is not text.
    /// Nothing to apply: the running config stays, and this counts as a failed reload.
    Unusable { revision: i64, reason: String },
}

/// A running follower: a thread with its own small async runtime. Start it where the process
/// will serve (after a daemon's fork: a fork keeps no thread). Dropping it stops it.
pub struct Follower {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

type OnUpdate = Box<dyn FnMut(Update) + Send>;

// Here rather than in etcd.rs, which the follower uses: the files import one way only.
impl Etcd {
    /// Follows the document from `served` (the revision being served: from [`Etcd::read`], a
    /// start or the cache) on a thread of its own, and hands every newer revision to
    /// `on_update`, in order, on that thread. See [`Follower`].
    pub fn follow(&self, served: i64, on_update: impl FnMut(Update) + Send + 'static) -> Follower {
        Follower::spawn(self.clone(), served, Box::new(on_update))
    }
}

impl Follower {
    pub(crate) fn spawn(etcd: Etcd, served: i64, on_update: OnUpdate) -> Follower {
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("portico-etcd".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        log::error!("etcd {}: cannot follow: {e}", etcd.source());
                        return;
                    }
                };
                let mut watcher = Watcher {
                    etcd,
                    served,
                    absent: false,
                    on_update,
                };
                runtime.block_on(async {
                    tokio::select! {
                        _ = stopped => {}
                        _ = watcher.run() => {}
                    }
                });
            })
            .expect("spawning the etcd follower thread");
        Follower {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops following; returns once the thread is gone (after the update in hand, if any).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.halt();
    }
}

struct Watcher {
    etcd: Etcd,
    /// The newest revision handed on (or given at the start): never handed on twice.
    served: i64,
    /// The key was found deleted, and that was handed on.
    absent: bool,
    on_update: OnUpdate,
}

/// Why a session ended, and whether it had got as far as a running watch.
struct Ended {
    reason: String,
    watching: bool,
}

impl Watcher {
    async fn run(&mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut member = 0;
        // The first time, watch on from the revision served: nothing written since it is
        // missed, and no read is needed. After an outage, read first (see `session`).
        let mut resume = Some(self.served);
        let mut outage_logged = false;
        loop {
            let (at, ended) = self.session(member, resume.take(), &mut backoff).await;
            let source = self.etcd.source();
            let endpoint = &source.endpoints()[at];
            // One warning per outage; the tries after it only at debug level.
            if ended.watching {
                log::warn!(
                    "etcd {source}: lost the watch on {endpoint}: {}; serving revision {} meanwhile, trying again (at most {MAX_BACKOFF:?} apart)",
                    ended.reason, self.served
                );
                outage_logged = true;
            } else if !outage_logged {
                log::warn!(
                    "etcd {source}: {}; serving revision {} meanwhile, trying again (at most {MAX_BACKOFF:?} apart)",
                    ended.reason, self.served
                );
                outage_logged = true;
            } else {
                log::debug!("etcd {source}: still unreachable: {}", ended.reason);
            }
            // Next time another member first: this one failed.
            member = at + 1;
            let pause = backoff.mul_f64(rand::thread_rng().gen_range(0.75..=1.0));
            backoff = (backoff * 2).min(MAX_BACKOFF);
            tokio::time::sleep(pause).await;
        }
    }

    /// Connects, positions the watch and follows until something breaks. Returns the member
    /// it was on and why it ended.
    async fn session(
        &mut self,
        first: usize,
        resume: Option<i64>,
        backoff: &mut Duration,
    ) -> (usize, Ended) {
        let not_watching = |at: usize, reason: String| {
            (
                at,
                Ended {
                    reason,
                    watching: false,
                },
            )
        };
        let members = self.etcd.source().endpoints().len();
        let (mut client, at, mut from) = match resume {
            Some(served) => {
                match self
                    .etcd
                    .on_a_member(first, TRY_WITHIN, async |_: &mut Client| Ok(()))
                    .await
                {
                    Ok(((), client, at)) => (client, at, served + 1),
                    Err(e) => return not_watching(first % members, e.to_string()),
                }
            }
            None => match self.etcd.read_async(first, TRY_WITHIN).await {
                Ok((reading, client, at)) => (client, at, self.take_reading(reading) + 1),
                Err(e) => return not_watching(first % members, e.to_string()),
            },
        };
        let key = self.etcd.source().key().to_string();
        let mut watching = false;
        loop {
            let options = WatchOptions::new().with_start_revision(from);
            let mut stream = match client.watch(key.as_str(), Some(options)).await {
                Ok(s) => s,
                Err(e) => {
                    return (
                        at,
                        Ended {
                            reason: describe(&e),
                            watching,
                        },
                    )
                }
            };
            loop {
                let response = match stream.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        let reason = "etcd ended the watch".to_string();
                        return (at, Ended { reason, watching });
                    }
                    Err(e) => {
                        return (
                            at,
                            Ended {
                                reason: describe(&e),
                                watching,
                            },
                        )
                    }
                };
                if response.canceled() {
                    if response.compact_revision() == 0 {
                        let reason = format!("watch canceled: {}", response.cancel_reason());
                        return (at, Ended { reason, watching });
                    }
                    // The revisions after the one served are gone (compacted): the newest
                    // is what matters, so read it and watch on from there.
                    log::info!(
                        "etcd {}: revisions from {from} are compacted (oldest kept: {}); reading the key again",
                        self.etcd.source(),
                        response.compact_revision()
                    );
                    match self.read_on(&mut client).await {
                        Ok(header) => from = header + 1,
                        Err(reason) => return (at, Ended { reason, watching }),
                    }
                    break;
                }
                if response.created() {
                    if !watching {
                        log::info!(
                            "etcd {}: following via {} from revision {from}",
                            self.etcd.source(),
                            self.etcd.source().endpoints()[at]
                        );
                    }
                    watching = true;
                    *backoff = FIRST_BACKOFF;
                    let now = response.header().map_or(0, |h| h.revision());
                    if now + 1 < from {
                        // etcd is behind the revision served: restored from a backup or
                        // replaced. Its newest state is the truth; take it.
                        log::warn!(
                            "etcd {}: the cluster is at revision {now}, behind the {} served; reading the key again",
                            self.etcd.source(),
                            from - 1
                        );
                        match self.read_on(&mut client).await {
                            Ok(header) => from = header + 1,
                            Err(reason) => return (at, Ended { reason, watching }),
                        }
                        break;
                    }
                }
                // Several revisions in one response (a burst of writes): the newest is enough.
                if let Some(event) = response.events().last() {
                    if let Some(kv) = event.kv() {
                        let value = (event.event_type() == EventType::Put).then(|| kv.value());
                        self.hand_on(kv.mod_revision(), value);
                        from = kv.mod_revision() + 1;
                    }
                }
            }
        }
    }

    /// Reads the key on the connected member; returns the cluster's revision then.
    async fn read_on(&mut self, client: &mut Client) -> Result<i64, String> {
        let key = self.etcd.source().key().to_string();
        match client.get(key, None).await {
            Ok(got) => {
                let header = got.header().map_or(0, |h| h.revision());
                let found = got
                    .kvs()
                    .first()
                    .map(|kv| (kv.mod_revision(), kv.value().to_vec()));
                Ok(self.take_reading(Reading { header, found }))
            }
            Err(e) => Err(describe(&e)),
        }
    }

    /// Hands on what a read found, if it is news; returns the cluster's revision then.
    fn take_reading(&mut self, reading: Reading) -> i64 {
        match &reading.found {
            Some((revision, value)) => self.hand_on(*revision, Some(value)),
            None => self.hand_on(reading.header, None),
        }
        reading.header
    }

    /// Hands on a revision of the key (`None`: deleted) unless it is the one served.
    fn hand_on(&mut self, revision: i64, value: Option<&[u8]>) {
        let update = match value {
            None if self.absent => return,
            None => {
                self.absent = true;
                Update::Unusable {
                    revision,
                    reason: format!(
                        "{}: the key was deleted; the running config stays",
                        self.etcd.source()
                    ),
                }
            }
            Some(_) if revision == self.served && !self.absent => return,
            Some(bytes) => {
                self.absent = false;
                self.served = revision;
                match std::str::from_utf8(bytes) {
                    Ok(text) => Update::Document(Document {
                        source: self.etcd.source().clone(),
                        revision,
                        text: text.to_string(),
                    }),
                    Err(_) => Update::Unusable {
                        revision,
                        reason: format!(
                            "{}: revision {revision} is not UTF-8 text",
                            self.etcd.source()
                        ),
                    },
                }
            }
        };
        (self.on_update)(update);
    }
}
