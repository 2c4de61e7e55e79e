//! Forwarding: every export the collector commits is posted on, as OTLP/HTTP
//! protobuf, to another OTLP endpoint (Jaeger, Tempo, an OpenTelemetry
//! Collector, another bulkhead collector), from a thread of its own.
//!
//! Ingest never waits on the forward target, and memory stays bounded when the
//! target is slow or down: at most `queue_bytes` of request bodies wait (an
//! empty queue takes any one body, so a request larger than the bound still
//! goes through); past it a request is not queued, and its spans are counted
//! as dropped. A body is retried with exponential backoff (a `Retry-After` on
//! 429 or 503 stretches the wait) until `retry_for` has passed since its first
//! attempt, then dropped and counted. A 4xx other than 408 and 429 says the
//! target will never take it: dropped at once. The spans are in the local
//! store either way; forwarding loses what it drops, ingest does not.

use crate::log;
use crate::metrics::Metrics;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where and how far the collector forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardOptions {
    /// The target's OTLP/HTTP traces URL (`http://host:4318/v1/traces`).
    pub url: http_client::Url,
    /// Request bodies waiting to be forwarded, in bytes.
    pub queue_bytes: usize,
    /// How long one body is retried before it is dropped.
    pub retry_for: Duration,
    /// One request's deadline.
    pub timeout: Duration,
}

impl ForwardOptions {
    /// Reads `http://host[:port][/path]` or `https://...` (trusting the
    /// system's CA bundle); `/v1/traces` is appended unless the path already
    /// ends with it. Defaults: 64 MiB queued, retried for 30 s.
    ///
    /// # Errors
    ///
    /// A URL that is not `http://` or `https://`.
    pub fn new(endpoint: &str) -> Result<ForwardOptions, String> {
        let base = endpoint.trim_end_matches('/');
        let url = if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        };
        Ok(ForwardOptions {
            url: http_client::Url::parse(&url)
                .map_err(|e| format!("forward target {endpoint:?}: {e}"))?,
            queue_bytes: 64 << 20,
            retry_for: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        })
    }
}

/// First wait after a failed attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At shutdown, how long the thread keeps forwarding what is queued.
const DRAIN_FOR: Duration = Duration::from_secs(2);

/// One committed export request on its way to the target.
#[derive(Debug)]
struct Item {
    body: Bytes,
    spans: u64,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    closed: bool,
}

/// The ingest side's handle: offers bodies, never blocks.
#[derive(Debug)]
pub(crate) struct Forwarder {
    options: ForwardOptions,
    queue: Mutex<Queue>,
    wake: Condvar,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    /// Starts the forwarding thread.
    pub fn start(
        options: ForwardOptions,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Arc<Forwarder>, std::thread::JoinHandle<()>)> {
        let forwarder = Arc::new(Forwarder {
            options,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            metrics,
        });
        let f = forwarder.clone();
        let thread = std::thread::Builder::new()
            .name("span-forward".into())
            .spawn(move || f.run())?;
        Ok((forwarder, thread))
    }

    /// Queues a committed request's protobuf body, or drops and counts it
    /// when the queue is full.
    pub fn offer(&self, body: Bytes, spans: u64) {
        let Ok(mut q) = self.queue.lock() else {
            return;
        };
        if q.closed {
            drop(q);
            self.drop_spans("shutdown", spans);
            return;
        }
        if !q.items.is_empty() && q.bytes + body.len() > self.options.queue_bytes {
            let waiting = q.bytes;
            drop(q);
            self.drop_spans("queue_full", spans);
            log::warn(
                "forward_dropped",
                &[
                    ("target", self.options.url.to_string().into()),
                    ("spans", spans.into()),
                    (
                        "reason",
                        format!(
                            "forward queue full ({waiting} bytes waiting, limit {})",
                            self.options.queue_bytes
                        )
                        .into(),
                    ),
                ],
            );
            return;
        }
        q.bytes += body.len();
        self.metrics
            .forward_queue_bytes
            .store(q.bytes as i64, Relaxed);
        q.items.push_back(Item { body, spans });
        drop(q);
        self.wake.notify_one();
    }

    /// Stops taking bodies; the thread forwards what is queued for at most
    /// [`DRAIN_FOR`], then drops the rest.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.closed = true;
        }
        self.wake.notify_all();
    }

    fn drop_spans(&self, reason: &'static str, spans: u64) {
        self.metrics.forward_dropped(reason, spans);
    }

    /// The next body, waiting for one; `None` once closed and empty.
    fn next(&self) -> Option<(Item, bool)> {
        let mut q = self.queue.lock().ok()?;
        loop {
            if let Some(item) = q.items.pop_front() {
                q.bytes -= item.body.len();
                self.metrics
                    .forward_queue_bytes
                    .store(q.bytes as i64, Relaxed);
                return Some((item, q.closed));
            }
            if q.closed {
                return None;
            }
            q = self.wake.wait(q).ok()?;
        }
    }

    /// Waits `pause` unless the forwarder is closed meanwhile; false when closed.
    fn pause(&self, pause: Duration) -> bool {
        let Ok(q) = self.queue.lock() else {
            return false;
        };
        if q.closed {
            return false;
        }
        match self.wake.wait_timeout_while(q, pause, |q| !q.closed) {
            Ok((q, _)) => !q.closed,
            Err(_) => false,
        }
    }

    fn run(&self) {
        let mut draining_since: Option<Instant> = None;
        while let Some((item, closed)) = self.next() {
            if closed {
                let since = *draining_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= DRAIN_FOR {
                    self.drop_spans("shutdown", item.spans);
                    continue;
                }
            }
            self.forward(item);
        }
    }

    /// Sends one body until it is taken, refused for good, or out of time.
    fn forward(&self, item: Item) {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1u32;
        loop {
            let outcome = self.attempt(&item.body);
            let wait = match outcome {
                Attempt::Sent => {
                    self.metrics
                        .forward_spans_sent
                        .fetch_add(item.spans, Relaxed);
                    return;
                }
                Attempt::Refused(reason) => {
                    self.drop_spans("refused", item.spans);
                    self.log_drop(item.spans, attempt, &reason);
                    return;
                }
                Attempt::Retry { reason, after } => {
                    let wait = after.unwrap_or(backoff).min(MAX_BACKOFF);
                    if started.elapsed() + wait > self.options.retry_for {
                        self.drop_spans("retries_exhausted", item.spans);
                        self.log_drop(item.spans, attempt, &reason);
                        return;
                    }
                    log::warn(
                        "forward_failed",
                        &[
                            ("target", self.options.url.to_string().into()),
                            ("attempt", attempt.into()),
                            ("spans", item.spans.into()),
                            ("retry_in_ms", (wait.as_millis() as u64).into()),
                            ("reason", reason.into()),
                        ],
                    );
                    wait
                }
            };
            self.metrics.forward_retries.fetch_add(1, Relaxed);
            if !self.pause(wait) {
                // Closing: one more attempt, no further backoff.
                if matches!(self.attempt(&item.body), Attempt::Sent) {
                    self.metrics
                        .forward_spans_sent
                        .fetch_add(item.spans, Relaxed);
                } else {
                    self.drop_spans("shutdown", item.spans);
                }
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    fn log_drop(&self, spans: u64, attempts: u32, reason: &str) {
        log::warn(
            "forward_dropped",
            &[
                ("target", self.options.url.to_string().into()),
                ("spans", spans.into()),
                ("attempts", attempts.into()),
                ("reason", reason.into()),
            ],
        );
    }

    fn attempt(&self, body: &[u8]) -> Attempt {
        let headers = [("Content-Type", "application/x-protobuf".to_string())];
        match http_client::request(
            "POST",
            &self.options.url,
            &headers,
            body,
            self.options.timeout,
        ) {
            Ok(r) if (200..300).contains(&r.status) => Attempt::Sent,
            Ok(r) => {
                let reason = format!(
                    "target answered {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).trim()
                );
                let after = r
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match r.status {
                    408 | 429 | 500..=599 => Attempt::Retry { reason, after },
                    _ => Attempt::Refused(reason),
                }
            }
            Err(e) => Attempt::Retry {
                reason: e.to_string(),
                after: None,
            },
        }
    }
}

enum Attempt {
    Sent,
    /// The target will never take this body.
    Refused(String),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}
