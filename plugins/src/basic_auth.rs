//! `basic_auth`: HTTP Basic authentication against bcrypt password hashes.
//!
//! ```yaml
//! - basic_auth: { realm: portico, users: { alice: "$2b$12$..." }, max_concurrent: 0 }   # htpasswd -nbB alice PASSWORD
//! ```
//!
//! Only bcrypt hashes (`$2a$`, `$2b$`, `$2y$`) are accepted; a plain-text password in the
//! config is refused at load time. A missing or wrong `Authorization: Basic` header gets 401
//! with `WWW-Authenticate: Basic realm="..."`. On success the var `user` holds the user name
//! for later plugins. The `Authorization` header is passed on to the upstream unchanged.
//!
//! bcrypt is slow on purpose (tens of milliseconds of CPU per check at cost 10-12), which makes
//! it a lever against the gateway: a client sending wrong passwords as fast as it can asks
//! for a core's worth of work per few requests. So checks run on Tokio's blocking pool, never
//! on the worker that serves other requests; at most `max_concurrent` of them (default: the
//! number of cores) run at once, and a request that finds them all busy is answered 503 with
//! `Retry-After: 1` at once rather than queued behind them (a queue would only make every
//! later request, the right passwords' too, wait longer). A successful check is remembered
//! (by a SHA-256 of the header value, never the password itself) so a valid client pays for
//! bcrypt once, not on every request, and is never refused as busy again.

use async_trait::async_trait;
use base64::Engine as _;
use gateway::plugin::Hooks;
use gateway::{BuildContext, Flow, Plugin, PluginConfig, RequestState, Response, Session};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// How many verified credentials are remembered. Past it the memory is cleared, which costs
/// each active client one more bcrypt check: simpler than an LRU for a set this small.
const REMEMBERED: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    #[serde(default = "default_realm")]
    pub realm: String,
    pub users: BTreeMap<String, String>,
    /// bcrypt checks in progress at once; 0: the number of cores.
    #[serde(default)]
    pub max_concurrent: usize,
}

fn default_realm() -> String {
    "portico".into()
}

pub struct BasicAuth {
    users: Arc<HashMap<String, String>>,
    /// Any one configured hash: checked against when the user is unknown, so that an unknown
    /// name takes as long to refuse as a wrong password and names cannot be probed.
    decoy_hash: String,
    challenge: String,
    /// SHA-256 of an `Authorization` value already verified, to the user it names. A std
    /// Mutex: held only for one map lookup or insert, never across an await.
    verified: Mutex<HashMap<[u8; 32], Arc<str>>>,
    /// One permit per bcrypt check allowed at once. Taken without waiting: a check that
    /// finds none is answered 503 (see the module's doc).
    checks: Arc<Semaphore>,
}

/// What a request's credentials come to.
#[derive(Debug, PartialEq)]
enum Verdict {
    User(Arc<str>),
    Refused,
    /// Every bcrypt check allowed at once is in progress: try again shortly.
    Busy,
}

/// `user:password` from an `Authorization: Basic ...` value.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

impl BasicAuth {
    fn refuse(&self) -> Flow {
        Flow::Respond(
            Response::text(401, "Unauthorized\n")
                .with_header("WWW-Authenticate", self.challenge.clone()),
        )
    }

    fn busy(&self) -> Flow {
        Flow::Respond(
            Response::text(
                503,
                "Service Unavailable: too many password checks at once\n",
            )
            .with_header("Retry-After", "1"),
        )
    }

    /// Who this header value authenticates, checking bcrypt only on a first sight.
    async fn authenticate(&self, header: &str) -> Verdict {
        let key = boring::sha::sha256(header.as_bytes());
        if let Some(user) = self.lock().get(&key) {
            return Verdict::User(user.clone());
        }
        let Some((user, password)) = parse_basic(header) else {
            return Verdict::Refused;
        };
        let Ok(permit) = self.checks.clone().try_acquire_owned() else {
            return Verdict::Busy;
        };
        let known = self.users.contains_key(&user);
        let hash = self.users.get(&user).unwrap_or(&self.decoy_hash).clone();
        // The permit goes with the check, not with this request: a client that hangs up
        // does not stop the bcrypt work, so its slot stays taken until the work is done.
        let check = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(password, &hash).unwrap_or(false)
        });
        if !(check.await.unwrap_or(false) && known) {
            return Verdict::Refused;
        }
        let user: Arc<str> = Arc::from(user);
        let mut verified = self.lock();
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(key, user.clone());
        Verdict::User(user)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<str>>> {
        // The map only caches; one left half-updated by a panic is still a valid cache.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Plugin for BasicAuth {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST
    }

    async fn request(&self, session: &mut Session, state: &mut RequestState) -> Flow {
        let header = session
            .req_header()
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(header) = header.map(str::to_string) else {
            return self.refuse();
        };
        match self.authenticate(&header).await {
            Verdict::User(user) => {
                state.set_var("user", &*user);
                Flow::Continue
            }
            Verdict::Refused => self.refuse(),
            Verdict::Busy => self.busy(),
        }
    }
}

impl PluginConfig for BasicAuth {
    const NAME: &'static str = "basic_auth";
    type Config = BasicAuthConfig;

    fn build(config: BasicAuthConfig, _cx: &BuildContext) -> Result<Self, String> {
        if config.users.is_empty() {
            return Err("users: at least one user is required".into());
        }
        if config.realm.contains('"')
            || config.realm.contains('\\')
            || http::HeaderValue::from_str(&config.realm).is_err()
        {
            return Err(format!(
                "realm: {:?} cannot contain quotes, backslashes or control characters",
                config.realm
            ));
        }
        for (user, hash) in &config.users {
            if user.is_empty() || user.contains(':') {
                return Err(format!(
                    "users: {user:?} is not a valid user name (empty, or contains ':')"
                ));
            }
            check_hash(hash).map_err(|e| format!("users.{user}: {e}"))?;
        }
        let decoy_hash = config.users.values().next().cloned().unwrap_or_default();
        let max_concurrent = match config.max_concurrent {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n.min(Semaphore::MAX_PERMITS),
        };
        Ok(BasicAuth {
            users: Arc::new(config.users.into_iter().collect()),
            decoy_hash,
            challenge: format!("Basic realm=\"{}\"", config.realm),
            verified: Mutex::new(HashMap::new()),
            checks: Arc::new(Semaphore::new(max_concurrent)),
        })
    }
}

fn check_hash(hash: &str) -> Result<(), String> {
    let looks_bcrypt = ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p));
    if !looks_bcrypt {
        // Do not echo the value: it may well be a plain-text password.
        return Err("not a bcrypt hash (expected $2a$, $2b$ or $2y$...; make one with `htpasswd -nbB USER PASSWORD`)".into());
    }
    bcrypt::HashParts::from_str(hash)
        .map(|_| ())
        .map_err(|e| format!("malformed bcrypt hash: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(users: &[(&str, &str)]) -> Result<BasicAuth, String> {
        let config = BasicAuthConfig {
            realm: "test".into(),
            users: users
                .iter()
                .map(|(u, h)| (u.to_string(), h.to_string()))
                .collect(),
            max_concurrent: 0,
        };
        BasicAuth::build(config, &BuildContext::new(".".into(), None))
    }

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[test]
    fn parses_the_header() {
        assert_eq!(
            parse_basic(&basic("alice", "s3:cret")),
            Some(("alice".into(), "s3:cret".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[tokio::test]
    async fn verifies_and_remembers() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let p = plugin(&[("alice", &hash), ("bob", &hash)]).unwrap();
        assert_eq!(p.challenge, "Basic realm=\"test\"");
        let alice = Verdict::User("alice".into());
        assert_eq!(p.authenticate(&basic("alice", "pw")).await, alice);
        assert_eq!(p.lock().len(), 1);
        assert_eq!(p.authenticate(&basic("alice", "pw")).await, alice);
        assert_eq!(
            p.authenticate(&basic("alice", "wrong")).await,
            Verdict::Refused
        );
        // Knowing a password does not help under a name that is not configured.
        assert_eq!(
            p.authenticate(&basic("mallory", "pw")).await,
            Verdict::Refused
        );
        assert_eq!(p.lock().len(), 1);
    }

    #[tokio::test]
    async fn with_every_check_slot_taken_a_new_check_is_busy_but_remembered_users_get_in() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let p = plugin(&[("alice", &hash)]).unwrap();
        assert_eq!(
            p.checks.available_permits(),
            std::thread::available_parallelism().map_or(1, usize::from),
            "0 means the number of cores"
        );
        assert_eq!(
            p.authenticate(&basic("alice", "pw")).await,
            Verdict::User("alice".into())
        );
        let all = p
            .checks
            .clone()
            .acquire_many_owned(p.checks.available_permits() as u32)
            .await
            .unwrap();
        assert_eq!(
            p.authenticate(&basic("alice", "wrong")).await,
            Verdict::Busy
        );
        assert_eq!(p.authenticate(&basic("bob", "pw")).await, Verdict::Busy);
        // No bcrypt needed: not busy.
        assert_eq!(
            p.authenticate(&basic("alice", "pw")).await,
            Verdict::User("alice".into())
        );
        assert_eq!(p.authenticate("Bearer x").await, Verdict::Refused);
        drop(all);
        assert_eq!(
            p.authenticate(&basic("alice", "wrong")).await,
            Verdict::Refused
        );
    }

    #[test]
    fn refuses_plain_text_and_malformed_hashes() {
        let err = plugin(&[("alice", "hunter2")]).err().unwrap();
        assert!(err.starts_with("users.alice: not a bcrypt hash"), "{err}");
        assert!(!err.contains("hunter2"));
        assert!(plugin(&[("alice", "$2b$12$tooshort")])
            .err()
            .unwrap()
            .contains("malformed"));
        assert!(plugin(&[]).is_err());
    }
}
