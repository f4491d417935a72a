//! `rate_limit`: a token bucket per key.
//!
//! ```yaml
//! - rate_limit:
//!     per_second: 100      # sustained rate per key (required, > 0)
//!     burst: 50            # extra requests allowed at once; default 0
//!     key: client_ip       # client_ip (default) | header:NAME | route
//!     ipv6_prefix: 64      # IPv6 clients share a bucket per /64; 128: one per address
//!     max_keys: 100000     # local buckets kept at most; the least recently used go first
//!     redis: null          # { url: "redis://127.0.0.1:6379", timeout: 50ms, on_error: allow | deny }
//! ```
//!
//! Each key has a bucket of `per_second + burst` tokens, refilled at `per_second` tokens a
//! second; a request takes one token. With no token left the request gets 429 with
//! `Retry-After` (whole seconds, rounded up), `RateLimit-Limit` (the bucket size) and
//! `RateLimit-Remaining: 0`; allowed responses carry `RateLimit-Limit` and
//! `RateLimit-Remaining` too.
//!
//! `header:NAME` keys on that header's value; a request without it is keyed on its client
//! address instead, so clients that leave the header out do not share (and exhaust) one
//! bucket. `route` keys on the matched route's name: in the global chain, one bucket per
//! route.
//!
//! A client address is counted by its network: an IPv6 client gets its /64 from its provider
//! and can pick any of its 2^64 addresses for each request, so per-address buckets would not
//! limit it at all. `ipv6_prefix` (1-128, default 64) is how much of an IPv6 address names
//! the bucket; IPv4 addresses (and IPv4-mapped IPv6 ones) are counted one by one.
//!
//! Without `redis`, buckets live in this process (so each instance of a pair limits on its
//! own). Memory is bounded: a bucket idle long enough to have refilled is the same as a new
//! one, so it is dropped; and at most `max_keys` buckets are kept, the least recently used
//! forgotten first (that key starts again with a full bucket), so a client spraying keys
//! (header values, addresses) costs a bounded table, not the gateway's memory.
//!
//! With `redis`, the buckets are kept there (see [`redis_buckets`]), so every instance
//! sharing that Redis enforces one limit together. If Redis fails to answer within
//! `timeout`, `on_error: allow` (the default) lets the request through without limit
//! headers, `deny` refuses it with 429; either way the request is counted in
//! `portico_rate_limit_redis_errors_total{route, outcome="allowed"|"denied"}`, a series
//! created (at zero) when the config is loaded.

mod local_buckets;
mod redis_buckets;

use async_trait::async_trait;
use gateway::config::Dur;
use gateway::plugin::Hooks;
use gateway::plugin::RateLimitStatus;
use gateway::{
    BuildContext, Flow, Plugin, PluginConfig, RequestState, Response, ResponseHeader, Session,
};
use http::{HeaderName, HeaderValue};
use local_buckets::Buckets;
use redis_buckets::RedisBuckets;
use serde::Deserialize;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Header values used as keys are cut to this length, so a client cannot make the map hold
/// arbitrarily large keys.
const MAX_KEY_LEN: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_second: u32,
    #[serde(default)]
    pub burst: u32,
    #[serde(default = "default_key")]
    pub key: String,
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u32,
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    #[serde(default)]
    pub redis: Option<RedisConfig>,
}

fn default_key() -> String {
    "client_ip".into()
}

fn default_ipv6_prefix() -> u32 {
    64
}

fn default_max_keys() -> usize {
    100_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    #[serde(default = "default_redis_timeout")]
    pub timeout: Dur,
    #[serde(default)]
    pub on_error: OnError,
}

fn default_redis_timeout() -> Dur {
    Dur::millis(50)
}

/// What to do with a request when Redis cannot be asked in time.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Let it through: an outage of the limiter should not become an outage of the site.
    #[default]
    Allow,
    Deny,
}

/// What a request is counted under (the config's `key`).
enum Key {
    ClientIp,
    Header(HeaderName),
    Route,
}

/// The refill rate and size of every bucket of one plugin.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    capacity: f64,
}

impl Rate {
    /// How long an emptied bucket takes to fill up again.
    fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(self.capacity / self.per_second)
    }
}

/// The bucket a request is counted in. An address is kept as one, not as text: keying on
/// `client_ip` (the default) then costs no allocation or formatting per request. A header
/// value and an address are different variants, so they can never share a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BucketKey {
    Addr(IpAddr),
    Text(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Allowed {
        remaining: u64,
    },
    Refused {
        retry_after: Duration,
    },
    /// The shared store could not be asked and `on_error` lets the request through.
    Unchecked,
}

/// The address a client is counted under: an IPv4 address (also one written IPv4-mapped)
/// as it is, an IPv6 address with all but its first `ipv6_prefix` bits cleared.
fn client_network(ip: IpAddr, ipv6_prefix: u32) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - ipv6_prefix).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// Where the buckets are kept.
enum Store {
    Local(Buckets),
    Redis(Box<RedisBuckets>),
}

pub struct RateLimit {
    key: Key,
    /// Leading bits of an IPv6 client address that name its bucket.
    ipv6_prefix: u32,
    store: Store,
    limit: u64,
    /// `limit` as a header value, made once.
    limit_value: HeaderValue,
}

impl RateLimit {
    fn key_of(&self, session: &Session, state: &RequestState) -> BucketKey {
        match &self.key {
            Key::ClientIp => BucketKey::Addr(client_network(state.client_ip, self.ipv6_prefix)),
            Key::Route => BucketKey::Text(state.route.as_deref().unwrap_or("").into()),
            Key::Header(name) => match session.req_header().headers.get(name) {
                Some(v) => {
                    let bytes = &v.as_bytes()[..v.len().min(MAX_KEY_LEN)];
                    BucketKey::Text(String::from_utf8_lossy(bytes).into())
                }
                None => BucketKey::Addr(client_network(state.client_ip, self.ipv6_prefix)),
            },
        }
    }

    /// The bucket's name in Redis, shared with other instances: the text it has always
    /// been (`h:` for a header value, `ip:` for the address of a request without it).
    fn redis_key(&self, key: &BucketKey) -> String {
        match (&self.key, key) {
            (Key::Header(_), BucketKey::Text(value)) => format!("h:{value}"),
            // Prefixed differently so that a header value cannot collide with an address.
            (Key::Header(_), BucketKey::Addr(ip)) => format!("ip:{ip}"),
            (_, BucketKey::Addr(ip)) => ip.to_string(),
            (_, BucketKey::Text(text)) => text.to_string(),
        }
    }

    fn refusal(&self, retry_after: Duration) -> Response {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Response::text(429, "Too Many Requests\n")
            .with_header("Retry-After", seconds.max(1).to_string())
            .with_header("RateLimit-Limit", self.limit.to_string())
            .with_header("RateLimit-Remaining", "0")
    }
}

#[async_trait]
impl Plugin for RateLimit {
    fn hooks(&self) -> Hooks {
        Hooks::REQUEST | Hooks::RESPONSE
    }

    async fn request(&self, session: &mut Session, state: &mut RequestState) -> Flow {
        let key = self.key_of(session, state);
        let outcome = match &self.store {
            Store::Local(buckets) => buckets.take(key, Instant::now()),
            Store::Redis(buckets) => {
                let key = self.redis_key(&key);
                buckets.take(&key, state.route.as_deref()).await
            }
        };
        match outcome {
            Outcome::Allowed { remaining } => {
                // With several limits on one request, the one with the fewest remaining is
                // what the response tells.
                let fewer = state.rate_limit.is_none_or(|h| remaining < h.remaining);
                if fewer {
                    state.rate_limit = Some(RateLimitStatus {
                        limit: self.limit,
                        remaining,
                    });
                }
                Flow::Continue
            }
            Outcome::Refused { retry_after } => Flow::Respond(self.refusal(retry_after)),
            Outcome::Unchecked => Flow::Continue,
        }
    }

    async fn response(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        state: &mut RequestState,
    ) {
        if response.status.as_u16() == 429 {
            return; // a refusal already carries its own
        }
        if let Some(h) = state.rate_limit {
            // The name as a `&'static str` keeps its case on the wire without a copy; numbers
            // are valid header values, so the inserts cannot fail.
            let limit = if h.limit == self.limit {
                self.limit_value.clone()
            } else {
                HeaderValue::from(h.limit)
            };
            let _ = response.insert_header("RateLimit-Limit", limit);
            let _ = response.insert_header("RateLimit-Remaining", HeaderValue::from(h.remaining));
        }
    }
}

impl PluginConfig for RateLimit {
    const NAME: &'static str = "rate_limit";
    type Config = RateLimitConfig;

    fn build(config: RateLimitConfig, cx: &BuildContext) -> Result<Self, String> {
        if config.per_second == 0 {
            return Err("per_second: must be at least 1".into());
        }
        let key = match config.key.as_str() {
            "client_ip" => Key::ClientIp,
            "route" => Key::Route,
            other => match other.strip_prefix("header:") {
                Some(name) => Key::Header(crate::header_list::header_name(name, "key")?),
                None => {
                    return Err(format!(
                        "key: {other:?} is not client_ip, route or header:NAME"
                    ))
                }
            },
        };
        if !(1..=128).contains(&config.ipv6_prefix) {
            return Err(format!(
                "ipv6_prefix: {} is not a prefix length from 1 to 128",
                config.ipv6_prefix
            ));
        }
        if config.max_keys == 0 {
            return Err("max_keys: must be at least 1".into());
        }
        let capacity = u64::from(config.per_second) + u64::from(config.burst);
        let rate = Rate {
            per_second: f64::from(config.per_second),
            capacity: capacity as f64,
        };
        let store = match &config.redis {
            None => Store::Local(Buckets::new(rate, config.max_keys)),
            Some(redis) => {
                check_redis(redis)?;
                // Instances with the same config share buckets; two limits on one route, or
                // the same key on two routes, do not.
                let prefix = format!(
                    "portico:rate_limit:{}:{}:{}:{}:",
                    cx.route.as_deref().unwrap_or("*global*"),
                    config.key,
                    config.per_second,
                    config.burst
                );
                Store::Redis(Box::new(RedisBuckets::new(
                    redis,
                    prefix,
                    rate,
                    cx.route.as_deref(),
                )?))
            }
        };
        Ok(RateLimit {
            key,
            ipv6_prefix: config.ipv6_prefix,
            store,
            limit: capacity,
            limit_value: HeaderValue::from(capacity),
        })
    }
}

fn check_redis(redis: &RedisConfig) -> Result<(), String> {
    if !redis.url.starts_with("redis://") {
        // TLS to Redis (rediss://) would need a TLS client in the Redis driver; not built in.
        return Err(format!(
            "redis.url: {:?} must start with redis:// (rediss:// is not supported)",
            redis.url
        ));
    }
    if redis.timeout.get().is_zero() {
        return Err("redis.timeout: must be more than 0".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> BucketKey {
        BucketKey::Text(s.into())
    }

    fn plugin(yaml: &str) -> Result<RateLimit, String> {
        let config: RateLimitConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        RateLimit::build(config, &BuildContext::new(".".into(), None))
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        let p = plugin("{ per_second: 1 }").unwrap();
        let r = p.refusal(Duration::from_millis(1));
        assert!(r.headers.contains(&("Retry-After".into(), "1".into())));
        let r = p.refusal(Duration::from_millis(2001));
        assert!(r.headers.contains(&("Retry-After".into(), "3".into())));
        assert!(r.headers.contains(&("RateLimit-Limit".into(), "1".into())));
        assert_eq!(r.status, 429);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let net = |s: &str, prefix| client_network(ip(s), prefix);
        assert_eq!(net("2001:db8::1", 64), ip("2001:db8::"));
        assert_eq!(net("2001:db8::1", 64), net("2001:db8::ffff:2", 64));
        assert_ne!(net("2001:db8::1", 64), net("2001:db8:0:1::1", 64));
        assert_eq!(net("2001:db8:aaaa:bbbb::1", 48), ip("2001:db8:aaaa::"));
        assert_eq!(net("2001:db8::1", 128), ip("2001:db8::1"));
        assert_eq!(net("ffff::1", 1), ip("8000::"));
        // IPv4, also written IPv4-mapped, is one address per bucket whatever the prefix.
        assert_eq!(net("192.0.2.7", 64), ip("192.0.2.7"));
        assert_eq!(net("::ffff:192.0.2.7", 64), ip("192.0.2.7"));
        assert_ne!(net("192.0.2.7", 64), net("192.0.2.8", 64));
    }

    #[test]
    fn redis_keys_are_the_text_they_always_were() {
        let ip = |s: &str| BucketKey::Addr(s.parse().unwrap());
        let p = plugin("{ per_second: 5 }").unwrap();
        assert_eq!(p.redis_key(&ip("10.0.0.1")), "10.0.0.1");
        assert_eq!(p.redis_key(&ip("2001:db8::1")), "2001:db8::1");
        let p = plugin("{ per_second: 5, key: route }").unwrap();
        assert_eq!(p.redis_key(&text("api")), "api");
        let p = plugin("{ per_second: 5, key: header:X-Api-Key }").unwrap();
        assert_eq!(p.redis_key(&text("k1")), "h:k1");
        assert_eq!(p.redis_key(&ip("10.0.0.1")), "ip:10.0.0.1");
    }

    #[test]
    fn config_is_checked() {
        assert!(plugin("{ per_second: 0 }")
            .err()
            .unwrap()
            .starts_with("per_second:"));
        assert!(plugin("{ burst: 5 }").is_err());
        assert!(plugin("{ per_second: 5, key: cookie:x }")
            .err()
            .unwrap()
            .starts_with("key:"));
        assert!(plugin("{ per_second: 5, key: \"header:Bad Name\" }")
            .err()
            .unwrap()
            .starts_with("key:"));
        let p = plugin("{ per_second: 100, burst: 50, key: header:X-Api-Key }").unwrap();
        assert_eq!(p.limit, 150);
        assert_eq!(p.ipv6_prefix, 64);
        for bad in [0, 129] {
            let err = plugin(&format!("{{ per_second: 5, ipv6_prefix: {bad} }}"))
                .err()
                .unwrap();
            assert!(err.starts_with("ipv6_prefix:"), "{err}");
        }
        assert!(plugin("{ per_second: 5, ipv6_prefix: 128 }").is_ok());
        assert!(plugin("{ per_second: 5, max_keys: 0 }")
            .err()
            .unwrap()
            .starts_with("max_keys:"));
        assert!(plugin("{ per_second: 5, redis: { url: \"http://x\" } }")
            .err()
            .unwrap()
            .starts_with("redis.url:"));
        assert!(plugin(
            "{ per_second: 5, redis: { url: \"redis://127.0.0.1:6379\", on_error: maybe } }"
        )
        .is_err());
        let config: RateLimitConfig =
            serde_yaml::from_str("{ per_second: 5, redis: { url: \"redis://h:6379\" } }").unwrap();
        let redis = config.redis.unwrap();
        assert_eq!(redis.timeout, Dur::millis(50));
        assert_eq!(redis.on_error, OnError::Allow);
        // Building connects nowhere: `portico -t` works without the Redis.
        assert!(plugin(
            "{ per_second: 5, redis: { url: \"redis://127.0.0.1:1\", on_error: deny } }"
        )
        .is_ok());
    }
}
