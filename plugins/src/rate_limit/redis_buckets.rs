//! Token buckets kept in Redis, so that every instance sharing the Redis holds one limit.
//!
//! One round trip per request: a Lua script refills and takes from the bucket atomically,
//! using Redis's own clock (`TIME`) so that instances with skewed clocks agree. The script
//! is sent by its SHA-1 (`EVALSHA`) and loaded on first use. Each bucket expires once it
//! would be full again, so Redis holds only active keys.
//!
//! When Redis does not answer within `timeout` the request is let through or refused
//! (`on_error`), and the outage is logged once, with its end.

use super::{OnError, Outcome, Rate, RedisConfig};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;

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
}

impl RedisBuckets {
    pub(super) fn new(config: &RedisConfig, prefix: String, rate: Rate) -> Result<Self, String> {
        let client = redis::Client::open(config.url.as_str()).map_err(|e| format!("redis.url: {e}"))?;
        let ttl_ms = (rate.refill_time().as_millis() as u64).max(1) + 1000;
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
        })
    }

    pub(super) async fn take(&self, key: &str) -> Outcome {
        match tokio::time::timeout(self.timeout, self.ask(key)).await {
            Ok(Ok(outcome)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    log::info!("rate_limit: redis at {} answers again", self.where_());
                }
                outcome
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
            Outcome::Allowed { remaining: remaining.max(0) as u64 }
        } else {
            Outcome::Refused { retry_after: Duration::from_millis(wait_ms.max(1) as u64) }
        })
    }

    fn failed(&self, why: &str) -> Outcome {
        if !self.down.swap(true, Ordering::Relaxed) {
            let what = match self.on_error {
                OnError::Allow => "let through unlimited",
                OnError::Deny => "refused with 429",
            };
            log::warn!("rate_limit: redis at {} failed ({why}); requests are {what} until it answers", self.where_());
        }
        match self.on_error {
            OnError::Allow => Outcome::Unchecked,
            OnError::Deny => Outcome::Refused { retry_after: Duration::from_secs(1) },
        }
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

    /// A throw-away redis-server on a free port, stopped on drop; `None` when the machine
    /// has no redis-server (the test then says so and passes).
    struct Server(Child, u16);

    impl Server {
        fn start() -> Option<Server> {
            let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
            Server::start_on(port)
        }

        fn start_on(port: u16) -> Option<Server> {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
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

    fn buckets(port: u16, on_error: OnError) -> RedisBuckets {
        let config = RedisConfig { url: format!("redis://127.0.0.1:{port}"), timeout: Dur::millis(200), on_error };
        let prefix = format!("portico-test:{}:", std::process::id());
        RedisBuckets::new(&config, prefix, Rate { per_second: 1.0, capacity: 3.0 }).unwrap()
    }

    #[tokio::test]
    async fn the_bucket_lives_in_redis_and_outages_follow_on_error() {
        let Some(server) = Server::start() else {
            eprintln!("redis-server not available: skipping the Redis rate limit test");
            return;
        };
        let a = buckets(server.1, OnError::Deny);
        // A second plugin instance (another gateway) sharing the same Redis and key.
        let b = buckets(server.1, OnError::Deny);
        assert_eq!(a.take("k").await, Outcome::Allowed { remaining: 2 });
        assert_eq!(b.take("k").await, Outcome::Allowed { remaining: 1 });
        assert_eq!(a.take("k").await, Outcome::Allowed { remaining: 0 });
        match b.take("k").await {
            Outcome::Refused { retry_after } => assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.take("other").await, Outcome::Allowed { remaining: 2 });

        let port = server.1;
        drop(server);
        let started = std::time::Instant::now();
        assert!(matches!(a.take("k").await, Outcome::Refused { .. }));
        assert!(a.down.load(Ordering::Relaxed));
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());

        // The outage ends when Redis is back: the connection is remade by itself.
        let _server = Server::start_on(port).expect("redis-server restarts");
        let mut back = false;
        for _ in 0..50 {
            if a.take("fresh").await == (Outcome::Allowed { remaining: 2 }) {
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(back, "still failing after Redis came back");
        assert!(!a.down.load(Ordering::Relaxed));

        let started = std::time::Instant::now();
        let allow = buckets(1, OnError::Allow); // nothing listens on port 1
        assert_eq!(allow.take("k").await, Outcome::Unchecked);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
