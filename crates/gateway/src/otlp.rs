//! One OTLP SERVER span per request, exported by OTLP/HTTP, JSON or protobuf.
//!
//! Requests only offer their record to the shared exporter's bounded queue
//! (`telemetry::export`); when it is full (a slow or absent collector) the span
//! is dropped and counted in `bulkhead_gateway_spans_dropped_total`, and the
//! request is not slowed. Records become spans (`telemetry::otlp`) on the
//! exporter's thread, off the request path, and are posted with the blocking
//! `http_client`.

use crate::log::Record;
use crate::metrics::Metrics;
use http_client::Url;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use telemetry::export::{self, Batching, Exporter, SpanQueue, Transport};
use telemetry::otlp::{AttrValue, Protocol, Resource, Scope, Span, SpanKind, Status, unix_nanos};

/// The exporter of request records, and the request path's queue to it.
pub(crate) type RecordExporter = Exporter<Arc<Record>>;
pub(crate) type RecordQueue = SpanQueue<Arc<Record>>;

const SCOPE: Scope = Scope {
    name: "bulkhead-gateway",
    version: env!("CARGO_PKG_VERSION"),
};

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpOptions {
    /// The collector's base URL (`http://host:4318`); `/v1/traces` is appended
    /// unless the path already ends with it.
    pub endpoint: String,
    /// `http/json` or `http/protobuf`.
    pub protocol: Protocol,
    /// Spans held while the collector is slow; more are dropped and counted.
    pub queue: usize,
    /// Spans per request to the collector.
    pub batch_size: usize,
    /// The longest a span waits in the queue before it is sent.
    pub interval: Duration,
}

impl OtlpOptions {
    pub fn new(endpoint: impl Into<String>) -> OtlpOptions {
        OtlpOptions {
            endpoint: endpoint.into(),
            protocol: Protocol::HttpJson,
            queue: 8192,
            batch_size: 512,
            interval: Duration::from_secs(1),
        }
    }

    /// The URL spans are posted to.
    ///
    /// # Errors
    ///
    /// A URL that is not `http://host[:port][/path]`.
    pub fn traces_url(&self) -> Result<Url, String> {
        let base = self.endpoint.trim_end_matches('/');
        let url = if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        };
        Url::parse(&url).map_err(|e| format!("OTLP endpoint {:?}: {e}", self.endpoint))
    }
}

/// Starts the exporter's thread; `instance` names this gateway (`service.instance.id`).
///
/// # Errors
///
/// When the thread cannot be started.
pub(crate) fn start(
    options: &OtlpOptions,
    url: Url,
    instance: String,
    metrics: Arc<Metrics>,
) -> std::io::Result<(RecordQueue, RecordExporter)> {
    let transport = Post {
        url,
        protocol: options.protocol,
        resource: Resource {
            service_name: "bulkhead-gateway".to_string(),
            service_version: env!("CARGO_PKG_VERSION").to_string(),
            instance_id: instance,
        },
        metrics,
    };
    export::start(
        Batching {
            queue: options.queue,
            batch_size: options.batch_size,
            interval: options.interval,
        },
        transport,
    )
}

/// Posts a batch to the collector; a batch that does not arrive is counted as dropped.
struct Post {
    url: Url,
    protocol: Protocol,
    resource: Resource,
    metrics: Arc<Metrics>,
}

const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

impl Transport<Arc<Record>> for Post {
    fn send(&mut self, batch: &[Arc<Record>]) {
        let spans: Vec<Span> = batch.iter().map(|r| span(r)).collect();
        let body = self.protocol.encode(&self.resource, SCOPE, &spans);
        let headers = [("Content-Type", self.protocol.content_type().to_string())];
        let sent = http_client::request("POST", &self.url, &headers, &body, EXPORT_TIMEOUT);
        if !sent.is_ok_and(|r| (200..300).contains(&r.status)) {
            self.metrics
                .spans_dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    }
}

/// The SERVER span of one request.
fn span(r: &Record) -> Span {
    let start = unix_nanos(r.start);
    let end = start + u64::try_from(r.duration.as_nanos()).unwrap_or(0);
    let mut attributes = vec![
        ("http.request.method", AttrValue::from(r.method.as_str())),
        ("url.path", AttrValue::from(r.path.as_str())),
        (
            "http.response.status_code",
            AttrValue::from(i64::from(r.status)),
        ),
        ("client.address", AttrValue::from(&*r.client_ip)),
        (
            "http.request.header.x-request-id",
            AttrValue::from(r.request_id.as_str()),
        ),
        ("http.request.body.size", AttrValue::from(r.bytes_in)),
        ("http.response.body.size", AttrValue::from(r.bytes_out)),
    ];
    if let Some(route) = &r.route {
        attributes.push(("http.route", AttrValue::from(&**route)));
    }
    if let Some(service) = &r.service {
        attributes.push(("bulkhead.service", AttrValue::from(&**service)));
    }
    if let Some(version) = &r.version {
        attributes.push(("bulkhead.version", AttrValue::from(&**version)));
    }
    if let Some(upstream) = r.upstream {
        attributes.push(("server.address", AttrValue::from(upstream.ip().to_string())));
        attributes.push(("server.port", AttrValue::from(i64::from(upstream.port()))));
    }
    Span {
        trace_id: r.trace_id,
        span_id: r.span_id,
        parent_span_id: r.parent_span_id,
        trace_state: r.tracestate.clone().unwrap_or_default(),
        name: match &r.route {
            Some(route) => format!("{} {route}", r.method),
            None => r.method.clone(),
        },
        kind: SpanKind::Server,
        start_unix_nanos: start,
        end_unix_nanos: end,
        attributes,
        // A server span is an error for 5xx only (OpenTelemetry HTTP conventions).
        status: if r.status >= 500 {
            Status::Error(
                r.error
                    .clone()
                    .unwrap_or_else(|| format!("status {}", r.status)),
            )
        } else {
            Status::Unset
        },
    }
}
