//! The buckets of a `rate_limit` without Redis: in this process, at most `max_keys` of
//! them, the least recently used forgotten first (see the plugin's doc in `rate_limit.rs`).

use super::{BucketKey, Outcome, Rate};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Large tables are split over at most this many locks so that concurrent requests for
/// different keys rarely wait on each other; each lock is held for one map operation, never
/// across an await.
const MAX_SHARDS: usize = 16;
/// Keys per shard below which a table is not split: a small `max_keys` then evicts in exact
/// least-recently-used order, and a big one (the default 100,000) is spread over 16 locks
/// whose own orders are each exact (the eviction order overall is then nearly so).
const MIN_KEYS_PER_SHARD: usize = 4096;

/// One key's tokens.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: &Rate, now: Instant) -> Self {
        Bucket {
            tokens: rate.capacity,
            last: now,
        }
    }

    /// Refills for the time since the last request, then takes one token if there is one.
    fn take(&mut self, rate: &Rate, now: Instant) -> Outcome {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Outcome::Allowed {
                remaining: self.tokens.floor() as u64,
            }
        } else {
            Outcome::Refused {
                retry_after: Duration::from_secs_f64((1.0 - self.tokens) / rate.per_second),
            }
        }
    }
}

/// aHash with random keys rather than the standard SipHash: the key is hashed twice per
/// request (for the shard, then in the shard's map), and a client chooses what a header key
/// hashes, so the keys stay secret per process.
type Hasher = ahash::RandomState;

/// One lock's share of the buckets, oldest use at the back.
type Shard = LruCache<BucketKey, Bucket, Hasher>;

/// Every bucket of one plugin instance.
pub(super) struct Buckets {
    rate: Rate,
    /// How long a bucket stays untouched before it is full again and can be forgotten.
    idle: Duration,
    /// Picks the shard; its own keys, so that a shard's map does not see only hashes that
    /// agree in their low bits.
    hasher: Hasher,
    shards: Box<[Mutex<Shard>]>,
}

impl Buckets {
    /// Room for `max_keys` buckets (at least 1), nothing allocated up front: a table grows
    /// with the keys actually seen.
    pub(super) fn new(rate: Rate, max_keys: usize) -> Self {
        let count = (max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
        let shards = (0..count)
            .map(|i| {
                // The shares add up to exactly `max_keys`.
                let share = max_keys / count + usize::from(i < max_keys % count);
                let mut shard = LruCache::unbounded_with_hasher(Hasher::new());
                shard.resize(NonZeroUsize::new(share).unwrap_or(NonZeroUsize::MIN));
                Mutex::new(shard)
            })
            .collect();
        Buckets {
            rate,
            idle: rate.refill_time().max(Duration::from_secs(1)),
            hasher: Hasher::new(),
            shards,
        }
    }

    fn shard(&self, key: &BucketKey) -> MutexGuard<'_, Shard> {
        let i = if self.shards.len() == 1 {
            0
        } else {
            self.hasher.hash_one(key) as usize % self.shards.len()
        };
        // A bucket map left by a panic mid-update is still usable: at worst one key's count
        // is off.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn take(&self, key: BucketKey, now: Instant) -> Outcome {
        let (rate, idle) = (self.rate, self.idle);
        let mut shard = self.shard(&key);
        if let Some(bucket) = shard.get_mut(&key) {
            return bucket.take(&rate, now);
        }
        // The least recently used buckets are the longest idle: those full again are the
        // same as new ones, so they go. Each is dropped once, so this costs O(1) a request
        // over time, and an idle table shrinks back.
        while shard
            .peek_lru()
            .is_some_and(|(_, b)| now.saturating_duration_since(b.last) >= idle)
        {
            shard.pop_lru();
        }
        let mut bucket = Bucket::full(&rate, now);
        let outcome = bucket.take(&rate, now);
        // At `max_keys` this forgets the least recently used bucket: that key starts again
        // with a full bucket, the mildest failure available.
        shard.push(key, bucket);
        outcome
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate {
            per_second: per_second as f64,
            capacity: (per_second + burst) as f64,
        }
    }

    fn text(s: &str) -> BucketKey {
        BucketKey::Text(s.into())
    }

    #[test]
    fn a_full_bucket_allows_rate_plus_burst_at_once() {
        let r = rate(10, 5);
        let t0 = Instant::now();
        let mut b = Bucket::full(&r, t0);
        for expected in (0..15).rev() {
            assert_eq!(
                b.take(&r, t0),
                Outcome::Allowed {
                    remaining: expected
                }
            );
        }
        match b.take(&r, t0) {
            Outcome::Refused { retry_after } => assert_eq!(retry_after, Duration::from_millis(100)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tokens_come_back_at_the_rate_up_to_capacity() {
        let r = rate(2, 0);
        let t0 = Instant::now();
        let mut b = Bucket::full(&r, t0);
        assert!(matches!(b.take(&r, t0), Outcome::Allowed { remaining: 1 }));
        assert!(matches!(b.take(&r, t0), Outcome::Allowed { remaining: 0 }));
        assert!(matches!(b.take(&r, t0), Outcome::Refused { .. }));
        // Half a second later: one token (2 per second).
        let t1 = t0 + Duration::from_millis(500);
        assert!(matches!(b.take(&r, t1), Outcome::Allowed { remaining: 0 }));
        // A long idle time refills only up to capacity.
        let t2 = t1 + Duration::from_secs(3600);
        assert!(matches!(b.take(&r, t2), Outcome::Allowed { remaining: 1 }));
    }

    #[test]
    fn keys_have_their_own_buckets_and_idle_ones_are_dropped() {
        // One shard (max_keys under 2 × MIN_KEYS_PER_SHARD), so that every new key sweeps the
        // whole table. Idle buckets are dropped per shard, by the next new key that lands in
        // that shard; with 16 shards and random hash keys which shards see a new key is
        // chance, and an earlier version of this test failed ~1.6% of runs on it.
        let buckets = Buckets::new(rate(1, 0), 1000);
        assert_eq!(buckets.shards.len(), 1);
        let t0 = Instant::now();
        assert!(matches!(
            buckets.take(text("a"), t0),
            Outcome::Allowed { .. }
        ));
        assert!(matches!(
            buckets.take(text("a"), t0),
            Outcome::Refused { .. }
        ));
        assert!(matches!(
            buckets.take(text("b"), t0),
            Outcome::Allowed { .. }
        ));
        assert_eq!(buckets.len(), 2);
        // Not yet idle for the refill time: a new key drops nothing.
        let soon = t0 + Duration::from_millis(500);
        buckets.take(text("c"), soon);
        assert_eq!(buckets.len(), 3);
        // After the refill time a and b are full again, so the next new key drops them; c,
        // used 500 ms later, is not idle long enough yet and stays.
        let later = t0 + Duration::from_millis(1200);
        buckets.take(text("d"), later);
        assert_eq!(buckets.len(), 2, "c and d");
        // a starts again with a full bucket.
        assert!(matches!(
            buckets.take(text("a"), later),
            Outcome::Allowed { .. }
        ));
        assert_eq!(buckets.len(), 3);
    }

    #[test]
    fn at_max_keys_the_least_recently_used_bucket_goes() {
        let buckets = Buckets::new(rate(1, 0), 2);
        let t0 = Instant::now();
        let refused = |k: &str| matches!(buckets.take(text(k), t0), Outcome::Refused { .. });
        assert!(!refused("a"));
        assert!(!refused("b"));
        assert!(
            refused("a"),
            "a is remembered, and now the most recently used"
        );
        assert!(!refused("c"), "c takes b's place, the least recently used");
        assert_eq!(buckets.len(), 2);
        assert!(refused("a"), "a was kept");
        assert!(!refused("b"), "b was forgotten: a full bucket again");
        assert!(refused("b"));
        // Big tables are split, and the shares add up to max_keys exactly.
        for max_keys in [1, 4095, 100_000, 1_000_003] {
            let buckets = Buckets::new(rate(1, 0), max_keys);
            let total: usize = buckets
                .shards
                .iter()
                .map(|s| s.lock().unwrap().cap().get())
                .sum();
            assert_eq!(total, max_keys);
        }
        assert_eq!(Buckets::new(rate(1, 0), 100_000).shards.len(), MAX_SHARDS);
        assert_eq!(Buckets::new(rate(1, 0), 8191).shards.len(), 1);
    }

    #[test]
    fn an_address_and_a_header_value_never_share_a_bucket() {
        let buckets = Buckets::new(rate(1, 0), 100);
        let t0 = Instant::now();
        let addr = BucketKey::Addr("10.0.0.1".parse().unwrap());
        assert!(matches!(
            buckets.take(addr.clone(), t0),
            Outcome::Allowed { .. }
        ));
        assert!(matches!(
            buckets.take(text("10.0.0.1"), t0),
            Outcome::Allowed { .. }
        ));
        assert!(matches!(buckets.take(addr, t0), Outcome::Refused { .. }));
    }
}
