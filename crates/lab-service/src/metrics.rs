//! The service's counters and its Prometheus text exposition (`GET /metrics`).
//!
//! Every counter is an atomic: recording never takes a lock on the request path.
//! Names follow Prometheus conventions (`_total` counters, `_seconds` units) and
//! labels stay low-cardinality (status code, fault kind).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the request duration histogram.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The kinds of injected fault, for `faults_injected_total{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Error = 0,
    Latency = 1,
    Call = 2,
}

impl FaultKind {
    const ALL: [FaultKind; 3] = [FaultKind::Error, FaultKind::Latency, FaultKind::Call];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Error => "error",
            FaultKind::Latency => "latency",
            FaultKind::Call => "call",
        }
    }
}

#[derive(Debug)]
pub struct Metrics {
    /// Indexed by status code; only 100..=599 are counted.
    requests_by_code: Vec<AtomicU64>,
    /// One counter per bucket (not cumulative); the last is `+Inf`.
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_sum_nanos: AtomicU64,
    downstream_errors: AtomicU64,
    faults: [AtomicU64; 3],
    spans_exported: AtomicU64,
    spans_dropped: AtomicU64,
    export_failures: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests_by_code: (0..600).map(|_| AtomicU64::new(0)).collect(),
            duration_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            duration_sum_nanos: AtomicU64::new(0),
            downstream_errors: AtomicU64::new(0),
            faults: std::array::from_fn(|_| AtomicU64::new(0)),
            spans_exported: AtomicU64::new(0),
            spans_dropped: AtomicU64::new(0),
            export_failures: AtomicU64::new(0),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// One served request.
    pub fn request(&self, status: u16, duration: Duration) {
        if let Some(counter) = self.requests_by_code.get(usize::from(status)) {
            add(counter, 1);
        }
        let secs = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        add(&self.duration_buckets[bucket], 1);
        add(
            &self.duration_sum_nanos,
            u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
        );
    }

    pub fn downstream_error(&self) {
        add(&self.downstream_errors, 1);
    }

    pub fn fault(&self, kind: FaultKind) {
        add(&self.faults[kind as usize], 1);
    }

    pub fn spans_exported(&self, n: usize) {
        add(&self.spans_exported, n as u64);
    }

    pub fn spans_dropped(&self, n: usize) {
        add(&self.spans_dropped, n as u64);
    }

    pub fn export_failed(&self) {
        add(&self.export_failures, 1);
    }

    /// Spans dropped because the export queue was full or closed.
    pub fn spans_dropped_total(&self) -> u64 {
        self.spans_dropped.load(Ordering::Relaxed)
    }

    /// The Prometheus text format (version 0.0.4).
    pub fn render(&self, service: &str, version: &str) -> String {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let header = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        header(
            &mut out,
            "lab_service_info",
            "gauge",
            "The service's name and version.",
        );
        let _ = writeln!(
            out,
            "lab_service_info{{service=\"{}\",version=\"{}\"}} 1",
            escape_label(service),
            escape_label(version)
        );
        header(
            &mut out,
            "http_requests_total",
            "counter",
            "Requests served (health, readiness, metrics and admin excluded), by status code.",
        );
        for (code, counter) in self.requests_by_code.iter().enumerate() {
            let n = load(counter);
            if n > 0 {
                let _ = writeln!(out, "http_requests_total{{code=\"{code}\"}} {n}");
            }
        }
        header(
            &mut out,
            "http_request_duration_seconds",
            "histogram",
            "Time from request head to response head.",
        );
        let mut cumulative = 0;
        for (i, counter) in self.duration_buckets.iter().enumerate() {
            cumulative += load(counter);
            let le = DURATION_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), f64::to_string);
            let _ = writeln!(
                out,
                "http_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = load(&self.duration_sum_nanos) as f64 / 1e9;
        let _ = writeln!(out, "http_request_duration_seconds_sum {sum}");
        let _ = writeln!(out, "http_request_duration_seconds_count {cumulative}");
        header(
            &mut out,
            "downstream_errors_total",
            "counter",
            "Downstream calls that failed or answered with a status other than 2xx.",
        );
        let _ = writeln!(
            out,
            "downstream_errors_total {}",
            load(&self.downstream_errors)
        );
        header(
            &mut out,
            "faults_injected_total",
            "counter",
            "Injected faults, by kind.",
        );
        for kind in FaultKind::ALL {
            let _ = writeln!(
                out,
                "faults_injected_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                load(&self.faults[kind as usize])
            );
        }
        for (name, help, counter) in [
            (
                "spans_exported_total",
                "Spans accepted by the OTLP collector.",
                &self.spans_exported,
            ),
            (
                "spans_dropped_total",
                "Spans dropped because the export queue was full, or the export failed.",
                &self.spans_dropped,
            ),
            (
                "otlp_export_failures_total",
                "OTLP export requests that failed.",
                &self.export_failures,
            ),
        ] {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", load(counter));
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
