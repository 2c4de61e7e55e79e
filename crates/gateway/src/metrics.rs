//! Prometheus metrics, counted with atomics on the request path and rendered on `/metrics`.
//!
//! The counters of a `(service, version)` pair live in one [`Stats`] that the
//! routing table hands to each endpoint, so counting a request takes no lock and no
//! lookup; the registry's maps are only touched when a table is built and when
//! `/metrics` is read.

use crate::worker::{SHARDS, worker};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests and their durations for one service and version.
#[derive(Debug, Default)]
pub struct Stats {
    shards: [Shard; SHARDS],
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    /// By status class: 1xx .. 5xx.
    codes: [AtomicU64; 5],
    /// Non-cumulative counts per bucket; the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Stats {
    pub fn observe(&self, status: u16, duration: Duration) {
        let shard = &self.shards[worker() % SHARDS];
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        shard.codes[class].fetch_add(1, Ordering::Relaxed);
        let secs = duration.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(BUCKETS.len());
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.sum_nanos.fetch_add(
            u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn total(&self, counter: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| counter(s).load(Ordering::Relaxed))
            .sum()
    }
}

/// Why a request to an upstream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// The TCP connection could not be opened (refused, unreachable, connect timeout).
    Connect,
    /// No response headers within the service's request timeout.
    Timeout,
    /// The connection was closed or reset before the response was complete.
    Reset,
    /// Anything else: an invalid response, a failed body.
    Protocol,
}

impl UpstreamError {
    const ALL: [UpstreamError; 4] = [
        UpstreamError::Connect,
        UpstreamError::Timeout,
        UpstreamError::Reset,
        UpstreamError::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Reset => "reset",
            UpstreamError::Protocol => "protocol",
        }
    }
}

/// Upstream errors of one service, by kind.
#[derive(Debug, Default)]
pub struct Errors([AtomicU64; 4]);

impl Errors {
    pub fn count(&self, kind: UpstreamError) {
        self.0[kind as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Every metric of one gateway.
#[derive(Debug, Default)]
pub struct Metrics {
    stats: Mutex<HashMap<(String, String), Arc<Stats>>>,
    errors: Mutex<HashMap<String, Arc<Errors>>>,
    pub open_connections: AtomicI64,
    pub spans_dropped: AtomicU64,
    pub access_log_dropped: AtomicU64,
}

impl Metrics {
    /// The counters of `(service, version)`; `service` is empty for requests with no route.
    pub fn stats(&self, service: &str, version: &str) -> Arc<Stats> {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((service.to_string(), version.to_string()))
            .or_default()
            .clone()
    }

    pub fn errors(&self, service: &str) -> Arc<Errors> {
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(service.to_string())
            .or_default()
            .clone()
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, generation: u64) -> String {
        let stats: BTreeMap<(String, String), Arc<Stats>> = self
            .stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = String::new();
        out.push_str("# HELP bulkhead_gateway_requests_total Requests answered, by service, endpoint version and status class.\n");
        out.push_str("# TYPE bulkhead_gateway_requests_total counter\n");
        for ((service, version), s) in &stats {
            for i in 0..5 {
                let n = s.total(|shard| &shard.codes[i]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "bulkhead_gateway_requests_total{{service=\"{}\",version=\"{}\",code=\"{}xx\"}} {n}",
                        escape(service),
                        escape(version),
                        i + 1
                    );
                }
            }
        }
        out.push_str("# HELP bulkhead_gateway_request_duration_seconds Time from the request to the end of the response body.\n");
        out.push_str("# TYPE bulkhead_gateway_request_duration_seconds histogram\n");
        for ((service, version), s) in &stats {
            let labels = format!(
                "service=\"{}\",version=\"{}\"",
                escape(service),
                escape(version)
            );
            let mut cumulative = 0;
            for i in 0..=BUCKETS.len() {
                cumulative += s.total(|shard| &shard.buckets[i]);
                let le = BUCKETS.get(i).map_or("+Inf".to_string(), f64::to_string);
                let _ = writeln!(
                    out,
                    "bulkhead_gateway_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = s.total(|shard| &shard.sum_nanos) as f64 / 1e9;
            let _ = writeln!(
                out,
                "bulkhead_gateway_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "bulkhead_gateway_request_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }
        let errors: BTreeMap<String, Arc<Errors>> = self
            .errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.push_str("# HELP bulkhead_gateway_upstream_errors_total Failed attempts to get a response from an endpoint, by kind.\n");
        out.push_str("# TYPE bulkhead_gateway_upstream_errors_total counter\n");
        for (service, e) in &errors {
            for kind in UpstreamError::ALL {
                let _ = writeln!(
                    out,
                    "bulkhead_gateway_upstream_errors_total{{service=\"{}\",kind=\"{}\"}} {}",
                    escape(service),
                    kind.as_str(),
                    e.0[kind as usize].load(Ordering::Relaxed)
                );
            }
        }
        for (name, kind, help, value) in [
            (
                "bulkhead_gateway_open_connections",
                "gauge",
                "Client connections open now.",
                self.open_connections.load(Ordering::Relaxed),
            ),
            (
                "bulkhead_gateway_config_generation",
                "gauge",
                "The routing table's generation: 1 at start, one more per change or reload.",
                i64::try_from(generation).unwrap_or(i64::MAX),
            ),
            (
                "bulkhead_gateway_spans_dropped_total",
                "counter",
                "Spans dropped because the export queue was full or the collector failed.",
                i64::try_from(self.spans_dropped.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
            (
                "bulkhead_gateway_access_log_dropped_total",
                "counter",
                "Access-log lines dropped because the writer fell behind.",
                i64::try_from(self.access_log_dropped.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
