//! Balancing helpers: weighted slots for round robin and a hash ring for consistent hashing.

use super::backend::Backend;

/// The indexes of the primary (or backup) backends repeated by weight, interleaved
/// (1,2,1,2,1 rather than 1,1,1,2,2) so that round robin spreads a burst across backends.
pub fn weighted_slots(backends: &[Backend], backup: bool) -> Vec<usize> {
    let mut slots = Vec::new();
    let max = backends
        .iter()
        .filter(|b| b.backup == backup)
        .map(|b| b.weight)
        .max()
        .unwrap_or(0);
    for round in 0..max {
        for (i, b) in backends.iter().enumerate() {
            if b.backup == backup && b.weight > round {
                slots.push(i);
            }
        }
    }
    slots
}

/// A consistent-hash ring over the primary backends: each backend owns many points, so
/// when one of N goes only about 1/N of keys move, and they move to the next point's owner.
pub struct Ring {
    points: Vec<(u64, usize)>,
}

const POINTS_PER_WEIGHT: u32 = 160;

impl Ring {
    pub fn new(backends: &[Backend]) -> Self {
        let mut points = Vec::new();
        for (i, b) in backends.iter().enumerate().filter(|(_, b)| !b.backup) {
            for p in 0..POINTS_PER_WEIGHT * b.weight.max(1) {
                points.push((hash_key(format!("{}-{p}", b.addr).as_bytes()), i));
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// Backends in ring order from the key's position; each appears at least once.
    pub fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(h, _)| *h < key);
        let n = self.points.len();
        (0..n).map(move |k| self.points[(start + k) % n].1)
    }
}

/// A stable 64-bit hash (FNV-1a with a final mix so nearby inputs spread over the ring).
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ceb9fe1a85ec53);
    h ^ (h >> 33)
}
