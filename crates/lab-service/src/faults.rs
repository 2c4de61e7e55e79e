//! Fault injection: what may go wrong on purpose, and the per-request decision.
//!
//! The set of faults is plain data, set from flags at start and replaced at run
//! time through the admin endpoint (`PUT /admin/faults`). Decisions draw from a
//! seeded random stream, always two draws per request whatever the faults are,
//! so that with a seed the n-th request meets the same fate in every run.

use crate::ids::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest latency a fault may add (a guard against typos like `--latency-ms 50000000`).
pub const MAX_LATENCY_MS: u64 = 600_000;

/// How added latency varies around its base.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Base plus a uniform draw in `[0, jitter]`.
    #[default]
    Uniform,
    /// Base plus an exponential draw with mean `jitter` (capped at 10x): a long tail.
    Exponential,
}

/// The faults a service injects. The default injects none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share of requests answered with HTTP 500 (0.0 to 1.0).
    pub error_rate: f64,
    /// Latency added to every request, in milliseconds.
    pub latency_ms: u64,
    /// Variation added on top of `latency_ms`, in milliseconds.
    pub latency_jitter_ms: u64,
    pub jitter: Jitter,
    /// Downstream URLs (exactly as given in `--calls`) whose calls fail without being made.
    pub fail_calls: Vec<String>,
    /// Answer `/readyz` with 503.
    pub not_ready: bool,
}

/// What happens to one request.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    pub error: bool,
    pub delay: Duration,
}

impl Faults {
    /// # Errors
    ///
    /// An error rate outside 0..=1 (or not a number), or a latency above [`MAX_LATENCY_MS`].
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate must be between 0.0 and 1.0, got {}",
                self.error_rate
            ));
        }
        if self.latency_ms > MAX_LATENCY_MS || self.latency_jitter_ms > MAX_LATENCY_MS {
            return Err(format!(
                "latency_ms and latency_jitter_ms must be at most {MAX_LATENCY_MS}"
            ));
        }
        Ok(())
    }

    /// Draws this request's fate.
    pub fn decide(&self, rng: &Rng) -> Decision {
        let error_draw = rng.next_f64();
        let jitter_draw = rng.next_f64();
        let jitter_ms = self.latency_jitter_ms as f64;
        let extra = match self.jitter {
            Jitter::Uniform => jitter_draw * jitter_ms,
            Jitter::Exponential => (-(1.0 - jitter_draw).ln() * jitter_ms).min(10.0 * jitter_ms),
        };
        let delay_ms = self.latency_ms as f64 + extra;
        Decision {
            error: error_draw < self.error_rate,
            delay: Duration::from_secs_f64(delay_ms / 1000.0),
        }
    }

    /// # Errors
    ///
    /// A `fail_calls` entry that names none of `calls`: it would silently never fire.
    pub fn check_calls<'a>(
        &self,
        calls: impl IntoIterator<Item = &'a str> + Clone,
    ) -> Result<(), String> {
        for url in &self.fail_calls {
            if !calls.clone().into_iter().any(|c| c == url.trim()) {
                let known: Vec<&str> = calls.into_iter().collect();
                return Err(format!(
                    "fail_calls names {url:?}, which is not one of the calls ({})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }

    pub fn fails_call(&self, url: &str) -> bool {
        self.fail_calls.iter().any(|u| u.trim() == url)
    }
}

/// Compares a presented secret with the expected one in time that depends only
/// on their lengths, not on where they differ.
pub fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = presented.len() ^ expected.len();
    for i in 0..presented.len().max(expected.len()) {
        let a = presented.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        diff |= usize::from(a ^ b);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests;
