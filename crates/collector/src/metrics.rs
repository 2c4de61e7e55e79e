//! The collector's own counters, rendered in the Prometheus text format.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    pub spans_received: AtomicU64,
    pub spans_accepted: AtomicU64,
    pub spans_rejected: AtomicU64,
    pub spans_dropped: AtomicU64,
    /// Spans handed to the writer and not yet committed.
    pub queue_spans: AtomicI64,
    pub commits: AtomicU64,
    pub commit_seconds_micros: AtomicU64,
    pub retention_deleted: AtomicU64,
    pub store_bytes: AtomicI64,
    /// Spans the forward target took.
    pub forward_spans_sent: AtomicU64,
    /// Forward attempts that failed and were tried again.
    pub forward_retries: AtomicU64,
    /// Request bodies waiting to be forwarded.
    pub forward_queue_bytes: AtomicI64,
    forward_dropped: Mutex<BTreeMap<&'static str, u64>>,
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
}

impl Metrics {
    pub fn request(&self, protocol: &'static str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((protocol, status)).or_default() += 1;
        }
    }

    /// Counts spans forwarding gave up on, by why: `queue_full`,
    /// `retries_exhausted`, `refused` (a 4xx) or `shutdown`.
    pub fn forward_dropped(&self, reason: &'static str, spans: u64) {
        if let Ok(mut m) = self.forward_dropped.lock() {
            *m.entry(reason).or_default() += spans;
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        };
        counter(
            "collector_spans_received_total",
            "Spans in decoded export requests.",
            self.spans_received.load(Relaxed),
        );
        counter(
            "collector_spans_accepted_total",
            "Spans committed to the store.",
            self.spans_accepted.load(Relaxed),
        );
        counter(
            "collector_spans_rejected_total",
            "Invalid spans refused (reported in partial_success).",
            self.spans_rejected.load(Relaxed),
        );
        counter(
            "collector_spans_dropped_total",
            "Valid spans refused because the queue was full or the store failed.",
            self.spans_dropped.load(Relaxed),
        );
        counter(
            "collector_store_commits_total",
            "Group commits of the store writer.",
            self.commits.load(Relaxed),
        );
        counter(
            "collector_retention_deleted_spans_total",
            "Spans deleted by retention.",
            self.retention_deleted.load(Relaxed),
        );
        out.push_str(&format!(
            "# HELP collector_store_commit_seconds_total Time spent in group commits.\n\
             # TYPE collector_store_commit_seconds_total counter\n\
             collector_store_commit_seconds_total {:.6}\n",
            self.commit_seconds_micros.load(Relaxed) as f64 / 1e6
        ));
        out.push_str(&format!(
            "# HELP collector_queue_spans Spans waiting for the store writer.\n\
             # TYPE collector_queue_spans gauge\ncollector_queue_spans {}\n",
            self.queue_spans.load(Relaxed)
        ));
        out.push_str(&format!(
            "# HELP collector_store_bytes Size of the span store on disk (database, WAL and segments).\n\
             # TYPE collector_store_bytes gauge\ncollector_store_bytes {}\n",
            self.store_bytes.load(Relaxed)
        ));
        out.push_str(
            "# HELP collector_ingest_requests_total Export requests by protocol and response status.\n\
             # TYPE collector_ingest_requests_total counter\n",
        );
        if let Ok(m) = self.requests.lock() {
            for ((protocol, status), n) in m.iter() {
                out.push_str(&format!(
                    "collector_ingest_requests_total{{protocol=\"{protocol}\",status=\"{status}\"}} {n}\n"
                ));
            }
        }
        out.push_str(&format!(
            "# HELP collector_forward_spans_sent_total Spans the forward target took.\n\
             # TYPE collector_forward_spans_sent_total counter\n\
             collector_forward_spans_sent_total {}\n",
            self.forward_spans_sent.load(Relaxed)
        ));
        out.push_str(&format!(
            "# HELP collector_forward_retries_total Failed forward attempts that were tried again.\n\
             # TYPE collector_forward_retries_total counter\n\
             collector_forward_retries_total {}\n",
            self.forward_retries.load(Relaxed)
        ));
        out.push_str(&format!(
            "# HELP collector_forward_queue_bytes Request bodies waiting to be forwarded.\n\
             # TYPE collector_forward_queue_bytes gauge\n\
             collector_forward_queue_bytes {}\n",
            self.forward_queue_bytes.load(Relaxed)
        ));
        out.push_str(
            "# HELP collector_forward_spans_dropped_total Spans forwarding gave up on, by reason.\n\
             # TYPE collector_forward_spans_dropped_total counter\n",
        );
        if let Ok(m) = self.forward_dropped.lock() {
            for (reason, n) in m.iter() {
                out.push_str(&format!(
                    "collector_forward_spans_dropped_total{{reason=\"{reason}\"}} {n}\n"
                ));
            }
        }
        out
    }
}
