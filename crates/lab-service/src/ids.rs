//! A fast, lock-free random source for ids and fault decisions.
//!
//! SplitMix64 over an atomic counter: each draw is one `fetch_add` and a mix,
//! so request handlers never contend on a lock, and with a seed every draw is
//! a pure function of (seed, draw number), which makes fault injection
//! repeatable in tests. It is not a cryptographic generator; nothing here needs one.

use crate::context::{SpanId, TraceId};
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Debug)]
pub struct Rng {
    state: AtomicU64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// A repeatable stream; `stream` separates independent uses of one seed.
    pub fn seeded(seed: u64, stream: u64) -> Rng {
        Rng {
            state: AtomicU64::new(mix(seed ^ mix(stream.wrapping_add(GAMMA)))),
        }
    }

    /// An unrepeatable stream: the clock, the process id and the standard
    /// library's per-process random hash keys.
    pub fn from_entropy(stream: u64) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(nanos);
        hasher.write_u32(std::process::id());
        Rng::seeded(hasher.finish() ^ nanos, stream)
    }

    pub fn next_u64(&self) -> u64 {
        mix(self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA))
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn trace_id(&self) -> TraceId {
        loop {
            let value = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
            if let Some(id) = TraceId::new(value) {
                return id;
            }
        }
    }

    pub fn span_id(&self) -> SpanId {
        loop {
            if let Some(id) = SpanId::new(self.next_u64()) {
                return id;
            }
        }
    }
}
