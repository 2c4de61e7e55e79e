//! The webhook's Prometheus metrics: decisions by result and their latency.
//!
//! Lock-free counters; rendered in the text exposition format on `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What one review came to, the `result` label of `bulkhead_admission_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The policies allowed the request.
    Allow,
    /// The policies denied the request.
    Deny,
    /// No decision by the policies: a malformed review (HTTP 400), or a policy
    /// that failed or ran out of its budget (the failure policy answered).
    Error,
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    allow: AtomicU64,
    deny: AtomicU64,
    error: AtomicU64,
    /// Per bucket, not cumulative; summed when rendered.
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    /// Loads of the policies since start, beyond the first (0 until a reload).
    reloads: AtomicU64,
}

impl Metrics {
    pub fn record(&self, outcome: Outcome, took: Duration) {
        let counter = match outcome {
            Outcome::Allow => &self.allow,
            Outcome::Deny => &self.deny,
            Outcome::Error => &self.error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Records that the policies served are now load number `generation` (the first is 1).
    pub fn set_generation(&self, generation: u64) {
        self.reloads
            .store(generation.saturating_sub(1), Ordering::Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP bulkhead_admission_policy_generation Loads of the policies served (1 at start, one more per reload).\n\
             # TYPE bulkhead_admission_policy_generation gauge\n\
             bulkhead_admission_policy_generation {}",
            self.reloads.load(Ordering::Relaxed) + 1
        );
        out.push_str(
            "# HELP bulkhead_admission_decisions_total Admission reviews decided, by result.\n",
        );
        out.push_str("# TYPE bulkhead_admission_decisions_total counter\n");
        for (result, counter) in [
            ("allow", &self.allow),
            ("deny", &self.deny),
            ("error", &self.error),
        ] {
            let _ = writeln!(
                out,
                "bulkhead_admission_decisions_total{{result=\"{result}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP bulkhead_admission_duration_seconds Time from a review's arrival to its answer.\n");
        out.push_str("# TYPE bulkhead_admission_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (le, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "bulkhead_admission_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "bulkhead_admission_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "bulkhead_admission_duration_seconds_sum {sum}");
        let _ = writeln!(out, "bulkhead_admission_duration_seconds_count {count}");
        out
    }
}
