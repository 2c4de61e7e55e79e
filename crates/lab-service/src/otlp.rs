//! Ships this service's spans to a collector: OTLP/HTTP (JSON or protobuf) posted with the
//! blocking `http_client` from the shared exporter's thread
//! (`telemetry::export`), whose bounded queue request handlers
//! only offer spans to. When it is full (a slow or absent collector) the span
//! is dropped and counted in `spans_dropped_total`, and the request goes on
//! unaffected. Export failures are logged, at most one warning every ten seconds.

use crate::log::Logger;
use crate::metrics::Metrics;
use crate::url::HttpUrl;
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use telemetry::export::Exporter;
use telemetry::export::{self, Batching, SpanQueue, Transport};
use telemetry::otlp::Scope;
pub use telemetry::otlp::{AttrValue, Protocol, Resource, Span, SpanKind, Status, unix_nanos};

const SCOPE: Scope = Scope {
    name: "bulkhead-lab-service",
    version: env!("CARGO_PKG_VERSION"),
};

/// Where and how spans are exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's base URL; `/v1/traces` is appended unless the path ends with it.
    pub endpoint: HttpUrl,
    /// `http/json` or `http/protobuf`.
    pub protocol: Protocol,
    /// Spans per request to the collector.
    pub batch_size: usize,
    /// The longest a span waits in the queue before it is sent.
    pub interval: Duration,
    /// Spans held while the collector is slow; more are dropped and counted.
    pub queue: usize,
    /// Timeout of one export request.
    pub timeout: Duration,
}

impl OtlpConfig {
    pub fn new(endpoint: HttpUrl) -> OtlpConfig {
        OtlpConfig {
            endpoint,
            protocol: Protocol::HttpJson,
            batch_size: 512,
            interval: Duration::from_secs(1),
            queue: 4096,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The request path's handle on the exporter: never blocks.
#[derive(Debug)]
pub(crate) struct SpanSink {
    queue: Option<SpanQueue<Span>>,
    metrics: Arc<Metrics>,
}

impl SpanSink {
    pub fn disabled(metrics: Arc<Metrics>) -> SpanSink {
        SpanSink {
            queue: None,
            metrics,
        }
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    pub fn record(&self, span: Span) {
        if let Some(queue) = &self.queue
            && !queue.offer(span)
        {
            self.metrics.spans_dropped(1);
        }
    }
}

/// Starts the exporter's thread.
///
/// # Errors
///
/// When the endpoint with `/v1/traces` appended is not a valid URL, or the
/// thread cannot be started.
pub(crate) fn start(
    config: &OtlpConfig,
    resource: Resource,
    metrics: Arc<Metrics>,
    log: Arc<Logger>,
) -> Result<(SpanSink, Exporter<Span>), crate::Error> {
    let endpoint = config.endpoint.with_path_suffix("/v1/traces")?;
    let url =
        http_client::Url::parse(endpoint.as_str()).map_err(|reason| crate::Error::InvalidUrl {
            url: endpoint.to_string(),
            reason,
        })?;
    let transport = Post {
        url,
        protocol: config.protocol,
        endpoint,
        resource,
        timeout: config.timeout,
        metrics: Arc::clone(&metrics),
        log,
        last_warning: None,
        failures_unreported: 0,
    };
    let (queue, exporter) = export::start(
        Batching {
            queue: config.queue,
            batch_size: config.batch_size,
            interval: config.interval,
        },
        transport,
    )
    .map_err(crate::Error::Exporter)?;
    Ok((
        SpanSink {
            queue: Some(queue),
            metrics,
        },
        exporter,
    ))
}

/// Posts a batch to the collector and counts the outcome.
struct Post {
    url: http_client::Url,
    protocol: Protocol,
    /// The endpoint as configured, for the log.
    endpoint: HttpUrl,
    resource: Resource,
    timeout: Duration,
    metrics: Arc<Metrics>,
    log: Arc<Logger>,
    /// Failures are logged at most every [`WARNING_INTERVAL`], not once per batch.
    last_warning: Option<Instant>,
    failures_unreported: u64,
}

const WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl Transport<Span> for Post {
    fn send(&mut self, batch: &[Span]) {
        let n = batch.len();
        let body = self.protocol.encode(&self.resource, SCOPE, batch);
        let headers = [("Content-Type", self.protocol.content_type().to_string())];
        let outcome = match http_client::request("POST", &self.url, &headers, &body, self.timeout) {
            Ok(response) if (200..300).contains(&response.status) => Ok(()),
            Ok(response) => Err(format!("collector answered {}", response.status)),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => self.metrics.spans_exported(n),
            Err(reason) => {
                self.metrics.export_failed();
                self.metrics.spans_dropped(n);
                self.failures_unreported += 1;
                if self
                    .last_warning
                    .is_none_or(|t| t.elapsed() >= WARNING_INTERVAL)
                {
                    self.log.event(
                        "warn",
                        "spans_export_failed",
                        serde_json::json!({
                            "endpoint": self.endpoint.as_str(),
                            "spans": n,
                            "reason": reason,
                            "failures_since_last_warning": self.failures_unreported,
                        }),
                    );
                    self.last_warning = Some(Instant::now());
                    self.failures_unreported = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
