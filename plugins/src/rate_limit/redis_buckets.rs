//! Token buckets kept in Redis, so that every instance sharing the Redis holds one limit.
//!
//! One round trip per request: a Lua script refills and takes from the bucket atomically,
//! using Redis's own clock (`TIME`) so that instances with skewed clocks agree. The script
//! is sent by its SHA-1 (`EVALSHA`) and loaded on first use. Each bucket expires once it
//! would be full again, so Redis holds only active keys.
//!
//! When Redis does not answer within `timeout` the request is let through or refused
//! (`on_error`), the outage is logged once, with its end, and every request decided without
//! Redis is counted in `portico_rate_limit_redis_errors_total`.

use super::{OnError, Outcome, Rate, RedisConfig};
use prometheus::{register_int_counter_vec, IntCounter, IntCounterVec};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::LazyLock;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Requests decided without Redis, in the default registry (the one `/metrics` serves).
/// Labels are bounded: `route` is the matched route's name (`unmatched` when none matched,
/// as in every `route` label), `outcome` is `allowed` or `denied`, what `on_error` did.
static ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "portico_rate_limit_redis_errors_total",
        "Requests a Redis-backed rate_limit could not check (Redis failed or did not answer within its timeout), by route and what on_error did with them (allowed, denied).",
        &["route", "outcome"]
    )
    .expect("portico_rate_limit_redis_errors_total is registered once")
});

/// KEYS[1]: the bucket. ARGV: tokens per second, capacity, and the bucket's time to live in
/// milliseconds. Returns {allowed (0|1), whole tokens left, milliseconds until a token}.
const TAKE: &str = r#"
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) / 1000000 * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {allowed, math.floor(tokens), wait}
"#;

pub(super) struct RedisBuckets {
    client: redis::Client,
    /// Made on first use: building the plugin happens outside any async runtime (and for
    /// `portico -t`, without ever serving), and the connection's tasks need one.
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
    /// Prepended to every key, so that different limits never share a bucket.
    prefix: String,
    rate: Rate,
    ttl_ms: u64,
    timeout: Duration,
    on_error: OnError,
    /// True during an outage, so that it is logged once when it starts and once when it ends.
    down: AtomicBool,
    /// `outcome` of the error counter: what `on_error` does.
    outcome: &'static str,
    /// The error counter of the route the plugin is configured on, resolved once; `None` in
    /// the global chain, where each request's own route is the label.
    route_errors: Option<IntCounter>,
}

impl RedisBuckets {
    /// `route`: the route the plugin is configured on, `None` in the global chain.
    pub(super) fn new(
        config: &RedisConfig,
        prefix: String,
        rate: Rate,
        route: Option<&str>,
    ) -> Result<Self, String> {
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| format!("redis.url: {e}"))?;
        let ttl_ms = (rate.refill_time().as_millis() as u64).max(1) + 1000;
        let outcome = match config.on_error {
            OnError::Allow => "allowed",
            OnError::Deny => "denied",
        };
        // The series exists, at zero, from the moment the config is loaded, so that a
        // dashboard or an alert on it sees 0 rather than nothing. A global limit runs on
        // every request, those that match no route too: its series starts as `unmatched`.
        let series = ERRORS.with_label_values(&[route.unwrap_or("unmatched"), outcome]);
        Ok(RedisBuckets {
            client,
            connection: OnceCell::new(),
            script: redis::Script::new(TAKE),
            prefix,
            rate,
            ttl_ms,
            timeout: config.timeout.get(),
            on_error: config.on_error,
            down: AtomicBool::new(false),
            outcome,
            route_errors: route.map(|_| series),
        })
    }

    /// Takes a token from `key`'s bucket. `route`: the request's matched route, for the
    /// error counter.
    pub(super) async fn take(&self, key: &str, route: Option<&str>) -> Outcome {
        let outcome = self.take_or_fail(key).await;
        if outcome.is_none() {
            match &self.route_errors {
                Some(counter) => counter.inc(),
                None => ERRORS
                    .with_label_values(&[route.unwrap_or("unmatched"), self.outcome])
                    .inc(),
            }
        }
        outcome.unwrap_or(match self.on_error {
            OnError::Allow => Outcome::Unchecked,
            OnError::Deny => Outcome::Refused {
                retry_after: Duration::from_secs(1),
            },
        })
    }

    /// Redis's answer, or `None` (logged) when it failed or was too late.
    async fn take_or_fail(&self, key: &str) -> Option<Outcome> {
        match tokio::time::timeout(self.timeout, self.ask(key)).await {
            Ok(Ok(outcome)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    log::info!("rate_limit: redis at {} answers again", self.where_());
                }
                Some(outcome)
            }
            Ok(Err(e)) => self.failed(&e.to_string()),
            Err(_) => self.failed(&format!("no answer within {:?}", self.timeout)),
        }
    }

    async fn ask(&self, key: &str) -> redis::RedisResult<Outcome> {
        let connection = self
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(500))))
                    .set_response_timeout(Some(self.timeout));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            })
            .await?;
        // A clone of the manager shares its one multiplexed connection.
        let mut connection = connection.clone();
        let (allowed, remaining, wait_ms): (i64, i64, i64) = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(self.rate.per_second)
            .arg(self.rate.capacity)
            .arg(self.ttl_ms)
            .invoke_async(&mut connection)
            .await?;
        Ok(if allowed == 1 {
            Outcome::Allowed {
                remaining: remaining.max(0) as u64,
            }
        } else {
            Outcome::Refused {
                retry_after: Duration::from_millis(wait_ms.max(1) as u64),
            }
        })
    }

    /// Logs the start of an outage (once); `None` for [`Self::take_or_fail`].
    fn failed(&self, why: &str) -> Option<Outcome> {
        if !self.down.swap(true, Ordering::Relaxed) {
            let what = match self.on_error {
                OnError::Allow => "let through unlimited",
                OnError::Deny => "refused with 429",
            };
            log::warn!(
                "rate_limit: redis at {} failed ({why}); requests are {what} until it answers \
                 (counted in portico_rate_limit_redis_errors_total)",
                self.where_()
            );
        }
        None
    }

    /// The server's address, without any password from the URL.
    fn where_(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway::config::Dur;
    use std::process::{Child, Command, Stdio};

    /// A throw-away redis-server on a free port, stopped on drop.
    struct Server(Child, u16);

    impl Server {
        /// `None` only when redis-server is not installed and `PORTICO_TEST_SKIP` names it
        /// outside CI (the rule of tests/README.md: a test whose tool is missing fails with the
        /// install line, and is left out only knowingly).
        fn start() -> Option<Server> {
            let installed = Command::new("redis-server")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok();
            if !installed {
                let skip = std::env::var("PORTICO_TEST_SKIP").unwrap_or_default();
                let named = skip.split(',').any(|s| s.trim() == "redis-server");
                let ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"));
                assert!(
                    named && !ci,
                    "`redis-server` is not installed, and this test needs it: apt-get install -y \
                     redis-server. Or set PORTICO_TEST_SKIP=redis-server to leave it out \
                     knowingly (ignored under CI=true)"
                );
                eprintln!("NOT RUN: the Redis rate limit test (PORTICO_TEST_SKIP={skip})");
                return None;
            }
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            Some(Server::start_on(port).expect("redis-server starts"))
        }

        fn start_on(port: u16) -> Option<Server> {
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
                .ok()?;
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Server(child, port));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A bucket store for a plugin on route `route` (`None`: the global chain).
    fn buckets(port: u16, on_error: OnError, route: Option<&str>) -> RedisBuckets {
        let config = RedisConfig {
            url: format!("redis://127.0.0.1:{port}"),
            timeout: Dur::millis(200),
            on_error,
        };
        let prefix = format!("portico-test:{}:", std::process::id());
        RedisBuckets::new(
            &config,
            prefix,
            Rate {
                per_second: 1.0,
                capacity: 3.0,
            },
            route,
        )
        .unwrap()
    }

    fn errors(route: &str, outcome: &str) -> u64 {
        ERRORS.with_label_values(&[route, outcome]).get()
    }

    /// Whether the default registry (what `/metrics` serves) has that series.
    fn exposed(route: &str, outcome: &str) -> bool {
        prometheus::gather()
            .iter()
            .filter(|f| f.name() == "portico_rate_limit_redis_errors_total")
            .flat_map(|f| f.get_metric())
            .any(|m| {
                let labels: Vec<(&str, &str)> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                labels.contains(&("route", route)) && labels.contains(&("outcome", outcome))
            })
    }

    #[test]
    fn the_error_series_exists_from_the_start_and_counts_per_route() {
        let _on_route = buckets(1, OnError::Deny, Some("t-series"));
        assert!(exposed("t-series", "denied"));
        assert!(
            !exposed("t-series", "allowed"),
            "only what on_error can do is created"
        );
        assert_eq!(errors("t-series", "denied"), 0);
        let _global = buckets(1, OnError::Allow, None);
        assert!(exposed("unmatched", "allowed"));
    }

    #[tokio::test]
    async fn the_bucket_lives_in_redis_and_outages_follow_on_error() {
        let Some(server) = Server::start() else {
            return;
        };
        let a = buckets(server.1, OnError::Deny, Some("t-shared"));
        // A second plugin instance (another gateway) sharing the same Redis and key.
        let b = buckets(server.1, OnError::Deny, Some("t-shared"));
        assert_eq!(a.take("k", None).await, Outcome::Allowed { remaining: 2 });
        assert_eq!(b.take("k", None).await, Outcome::Allowed { remaining: 1 });
        assert_eq!(a.take("k", None).await, Outcome::Allowed { remaining: 0 });
        match b.take("k", None).await {
            Outcome::Refused { retry_after } => {
                assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            a.take("other", None).await,
            Outcome::Allowed { remaining: 2 }
        );

        assert_eq!(
            errors("t-shared", "denied"),
            0,
            "no error while Redis answers"
        );

        let port = server.1;
        drop(server);
        let started = std::time::Instant::now();
        assert!(matches!(a.take("k", None).await, Outcome::Refused { .. }));
        assert!(a.down.load(Ordering::Relaxed));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // Counted on the plugin's own route, each request of the outage.
        assert!(matches!(b.take("k", None).await, Outcome::Refused { .. }));
        assert_eq!(errors("t-shared", "denied"), 2);

        // The outage ends when Redis is back: the connection is remade by itself.
        let _server = Server::start_on(port).expect("redis-server restarts");
        let mut back = false;
        for _ in 0..50 {
            if a.take("fresh", None).await == (Outcome::Allowed { remaining: 2 }) {
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(back, "still failing after Redis came back");
        assert!(!a.down.load(Ordering::Relaxed));

        let started = std::time::Instant::now();
        // Nothing listens on port 1. In the global chain the request's route is the label.
        let allow = buckets(1, OnError::Allow, None);
        assert_eq!(allow.take("k", Some("t-global")).await, Outcome::Unchecked);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(allow.take("k", None).await, Outcome::Unchecked);
        assert_eq!(errors("t-global", "allowed"), 1);
        assert!(errors("unmatched", "allowed") >= 1);
    }
}
