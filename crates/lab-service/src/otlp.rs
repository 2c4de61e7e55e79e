//! Spans, their OTLP/HTTP JSON encoding, and the exporter that ships them.
//!
//! The exporter is the only consumer of a bounded queue. Request handlers only
//! `try_send` into it: when the queue is full (a slow or absent collector) the
//! span is dropped and counted in `spans_dropped_total`, and the request goes
//! on unaffected. The exporter posts a batch when it holds `batch_size` spans
//! or when `interval` has passed, and flushes what is queued at shutdown.
//!
//! The JSON follows the OTLP protobuf-to-JSON mapping: ids as lowercase hex,
//! 64-bit integers and times as decimal strings, enums as integers.

use crate::context::{SpanId, TraceId};
use crate::log::Logger;
use crate::metrics::Metrics;
use crate::url::HttpUrl;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// OTLP `SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Server = 2,
    Client = 3,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    String(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> AttrValue {
        AttrValue::String(s.to_string())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> AttrValue {
        AttrValue::String(s)
    }
}

impl From<i64> for AttrValue {
    fn from(n: i64) -> AttrValue {
        AttrValue::Int(n)
    }
}

impl From<bool> for AttrValue {
    fn from(b: bool) -> AttrValue {
        AttrValue::Bool(b)
    }
}

/// OTLP span status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Unset,
    Error(String),
}

/// A finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    /// The W3C `tracestate` in effect (empty when none).
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    pub status: Status,
}

/// Who emits the spans: OTLP resource attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub service_name: String,
    pub service_version: String,
    /// `service.instance.id`: tells apart instances of one service (its listen address).
    pub instance_id: String,
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: WireResource<'a>,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct WireResource<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<WireSpan<'a>>,
}

#[derive(Serialize)]
struct Scope {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireSpan<'a> {
    trace_id: String,
    span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    trace_state: &'a str,
    name: &'a str,
    kind: u8,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<KeyValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<WireStatus<'a>>,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: AnyValue<'a>,
}

#[derive(Serialize)]
enum AnyValue<'a> {
    #[serde(rename = "stringValue")]
    String(&'a str),
    /// int64 is a string in OTLP JSON.
    #[serde(rename = "intValue")]
    Int(String),
    #[serde(rename = "boolValue")]
    Bool(bool),
}

#[derive(Serialize)]
struct WireStatus<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    code: u8,
}

fn string_attr<'a>(key: &'a str, value: &'a str) -> KeyValue<'a> {
    KeyValue {
        key,
        value: AnyValue::String(value),
    }
}

/// One OTLP/HTTP JSON `ExportTraceServiceRequest` body holding `spans`.
pub fn encode(resource: &Resource, spans: &[Span]) -> Vec<u8> {
    let request = ExportRequest {
        resource_spans: [ResourceSpans {
            resource: WireResource {
                attributes: vec![
                    string_attr("service.name", &resource.service_name),
                    string_attr("service.version", &resource.service_version),
                    string_attr("service.instance.id", &resource.instance_id),
                ],
            },
            scope_spans: [ScopeSpans {
                scope: Scope {
                    name: "bulkhead-lab-service",
                    version: env!("CARGO_PKG_VERSION"),
                },
                spans: spans.iter().map(wire_span).collect(),
            }],
        }],
    };
    serde_json::to_vec(&request).expect("OTLP request serializes")
}

fn wire_span(span: &Span) -> WireSpan<'_> {
    WireSpan {
        trace_id: span.trace_id.to_string(),
        span_id: span.span_id.to_string(),
        parent_span_id: span.parent_span_id.map(|p| p.to_string()),
        trace_state: &span.trace_state,
        name: &span.name,
        kind: span.kind as u8,
        start_time_unix_nano: span.start_unix_nanos.to_string(),
        end_time_unix_nano: span.end_unix_nanos.to_string(),
        attributes: span
            .attributes
            .iter()
            .map(|(key, value)| KeyValue {
                key,
                value: match value {
                    AttrValue::String(s) => AnyValue::String(s),
                    AttrValue::Int(n) => AnyValue::Int(n.to_string()),
                    AttrValue::Bool(b) => AnyValue::Bool(*b),
                },
            })
            .collect(),
        status: match &span.status {
            Status::Unset => None,
            Status::Error(message) => Some(WireStatus { message, code: 2 }),
        },
    }
}

/// Where and how spans are exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's base URL; `/v1/traces` is appended unless the path ends with it.
    pub endpoint: HttpUrl,
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
    tx: Option<mpsc::Sender<Span>>,
    metrics: Arc<Metrics>,
}

impl SpanSink {
    pub fn disabled(metrics: Arc<Metrics>) -> SpanSink {
        SpanSink { tx: None, metrics }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    pub fn record(&self, span: Span) {
        if let Some(tx) = &self.tx
            && tx.try_send(span).is_err()
        {
            self.metrics.spans_dropped(1);
        }
    }
}

/// The running exporter, stopped by [`Exporter::flush_and_stop`].
#[derive(Debug)]
pub(crate) struct Exporter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Sends what is queued, then ends. Bounded by the export timeout per batch.
    pub async fn flush_and_stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts the exporter task on the current runtime.
///
/// # Errors
///
/// When the endpoint with `/v1/traces` appended is not a valid URL.
pub(crate) fn start(
    config: &OtlpConfig,
    resource: Resource,
    metrics: Arc<Metrics>,
    log: Arc<Logger>,
) -> Result<(SpanSink, Exporter), crate::Error> {
    let endpoint = config.endpoint.with_path_suffix("/v1/traces")?;
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    let (stop, stop_rx) = oneshot::channel();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let worker = Worker {
        client: Client::builder(TokioExecutor::new()).build(connector),
        endpoint,
        resource,
        batch_size: config.batch_size.max(1),
        timeout: config.timeout,
        metrics: Arc::clone(&metrics),
        log,
        last_warning: None,
        failures_unreported: 0,
    };
    let task = tokio::spawn(worker.run(rx, stop_rx, config.interval));
    Ok((
        SpanSink {
            tx: Some(tx),
            metrics,
        },
        Exporter { stop, task },
    ))
}

struct Worker {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: HttpUrl,
    resource: Resource,
    batch_size: usize,
    timeout: Duration,
    metrics: Arc<Metrics>,
    log: Arc<Logger>,
    /// Failures are logged at most every [`WARNING_INTERVAL`], not once per batch.
    last_warning: Option<Instant>,
    failures_unreported: u64,
}

const WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl Worker {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Span>,
        mut stop: oneshot::Receiver<()>,
        interval: Duration,
    ) {
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                span = rx.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= self.batch_size {
                            self.send(&mut batch).await;
                        }
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    if !batch.is_empty() {
                        self.send(&mut batch).await;
                    }
                }
                _ = &mut stop => {
                    // No new spans from here on; what is queued still goes out.
                    rx.close();
                    while let Some(span) = rx.recv().await {
                        batch.push(span);
                        if batch.len() >= self.batch_size {
                            self.send(&mut batch).await;
                        }
                    }
                    break;
                }
            }
        }
        if !batch.is_empty() {
            self.send(&mut batch).await;
        }
    }

    async fn send(&mut self, batch: &mut Vec<Span>) {
        let n = batch.len();
        let body = encode(&self.resource, batch);
        batch.clear();
        let request = Request::post(self.endpoint.uri().clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("valid request parts");
        let outcome = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(request).await.map_err(|e| {
                // The legacy client's Display is terse; its source says what happened.
                let source = std::error::Error::source(&e).map(ToString::to_string);
                format!(
                    "{e}{}",
                    source.map(|s| format!(": {s}")).unwrap_or_default()
                )
            })?;
            let status = response.status();
            // Read the body so that the connection can be reused.
            let _ = response.into_body().collect().await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("collector answered {status}"))
            }
        })
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {:?}", self.timeout)));
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
