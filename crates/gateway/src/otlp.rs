//! One OTLP SERVER span per request, exported by OTLP/HTTP with JSON encoding.
//!
//! Requests only `try_send` their record into a bounded queue; when it is full (a
//! slow or absent collector) the span is dropped and counted in
//! `bulkhead_gateway_spans_dropped_total`, and the request is not slowed. The
//! exporter posts a batch when it holds `batch_size` spans or `interval` has
//! passed, and sends what is queued when the gateway stops. The JSON follows the
//! OTLP protobuf-to-JSON mapping: ids as lowercase hex, 64-bit integers and times
//! as decimal strings, enums as integers.

use crate::log::Record;
use crate::metrics::Metrics;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Uri;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpOptions {
    /// The collector's base URL (`http://host:4318`); `/v1/traces` is appended
    /// unless the path already ends with it.
    pub endpoint: String,
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
    pub fn traces_url(&self) -> Result<Uri, String> {
        let base = self.endpoint.trim_end_matches('/');
        let url = if base.ends_with("/v1/traces") {
            base.to_string()
        } else {
            format!("{base}/v1/traces")
        };
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("OTLP endpoint {:?}: {e}", self.endpoint))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(format!(
                "OTLP endpoint {:?}: expected http://host[:port]",
                self.endpoint
            ));
        }
        Ok(uri)
    }
}

/// The running exporter.
#[derive(Debug)]
pub(crate) struct Exporter {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Sends what is queued, then ends.
    pub async fn flush_and_stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Starts the exporter task on the current runtime; `instance` names this gateway
/// (`service.instance.id`).
pub(crate) fn start(
    options: &OtlpOptions,
    url: Uri,
    instance: String,
    metrics: Arc<Metrics>,
) -> (mpsc::Sender<Arc<Record>>, Exporter) {
    let (tx, rx) = mpsc::channel(options.queue.max(1));
    let (stop, stop_rx) = oneshot::channel();
    let worker = Worker {
        client: Client::builder(TokioExecutor::new()).build_http(),
        url,
        instance,
        batch_size: options.batch_size.max(1),
        metrics,
    };
    let task = tokio::spawn(worker.run(rx, stop_rx, options.interval));
    (tx, Exporter { stop, task })
}

struct Worker {
    client: Client<HttpConnector, Full<Bytes>>,
    url: Uri,
    instance: String,
    batch_size: usize,
    metrics: Arc<Metrics>,
}

const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

impl Worker {
    async fn run(
        self,
        mut rx: mpsc::Receiver<Arc<Record>>,
        mut stop: oneshot::Receiver<()>,
        interval: Duration,
    ) {
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                record = rx.recv() => match record {
                    Some(record) => {
                        batch.push(record);
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
                    rx.close();
                    while let Some(record) = rx.recv().await {
                        batch.push(record);
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

    async fn send(&self, batch: &mut Vec<Arc<Record>>) {
        let n = batch.len() as u64;
        let body = encode(&self.instance, batch);
        batch.clear();
        let Ok(request) = hyper::Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
        else {
            return;
        };
        let sent = tokio::time::timeout(EXPORT_TIMEOUT, async {
            let response = self.client.request(request).await.ok()?;
            let ok = response.status().is_success();
            // Read the body so that the connection can be reused.
            let _ = response.into_body().collect().await;
            ok.then_some(())
        })
        .await;
        if !matches!(sent, Ok(Some(()))) {
            self.metrics.spans_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

fn nanos(time: std::time::SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn string(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn int(key: &str, value: u64) -> Value {
    json!({"key": key, "value": {"intValue": value.to_string()}})
}

/// One `ExportTraceServiceRequest` body holding a SERVER span per record.
pub(crate) fn encode(instance: &str, records: &[Arc<Record>]) -> Vec<u8> {
    let spans: Vec<Value> = records
        .iter()
        .map(|r| {
            let start = nanos(r.start);
            let end = start + u64::try_from(r.duration.as_nanos()).unwrap_or(0);
            let mut attributes = vec![
                string("http.request.method", &r.method),
                string("url.path", &r.path),
                int("http.response.status_code", u64::from(r.status)),
                string("client.address", &r.client_ip),
                string("http.request.header.x-request-id", &r.request_id),
                int("http.request.body.size", r.bytes_in),
                int("http.response.body.size", r.bytes_out),
            ];
            if let Some(route) = &r.route {
                attributes.push(string("http.route", route));
            }
            if let Some(service) = &r.service {
                attributes.push(string("bulkhead.service", service));
            }
            if let Some(version) = &r.version {
                attributes.push(string("bulkhead.version", version));
            }
            if let Some(upstream) = r.upstream {
                attributes.push(string("server.address", &upstream.ip().to_string()));
                attributes.push(int("server.port", u64::from(upstream.port())));
            }
            let mut span = json!({
                "traceId": r.trace_id.as_str(),
                "spanId": r.span_id.as_str(),
                "name": match &r.route {
                    Some(route) => format!("{} {route}", r.method),
                    None => r.method.clone(),
                },
                "kind": 2,
                "startTimeUnixNano": start.to_string(),
                "endTimeUnixNano": end.to_string(),
                "attributes": attributes,
            });
            if let Some(parent) = &r.parent_span_id {
                span["parentSpanId"] = json!(parent.as_str());
            }
            if let Some(state) = &r.tracestate {
                span["traceState"] = json!(state);
            }
            // A server span is an error for 5xx only (OpenTelemetry HTTP conventions).
            if r.status >= 500 {
                span["status"] = json!({
                    "code": 2,
                    "message": r.error.clone().unwrap_or_else(|| format!("status {}", r.status)),
                });
            }
            span
        })
        .collect();
    let request = json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                string("service.name", "bulkhead-gateway"),
                string("service.version", env!("CARGO_PKG_VERSION")),
                string("service.instance.id", instance),
            ]},
            "scopeSpans": [{
                "scope": {"name": "bulkhead-gateway", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
        }],
    });
    serde_json::to_vec(&request).unwrap_or_default()
}
