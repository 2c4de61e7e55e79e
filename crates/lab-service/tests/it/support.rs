//! Services in-process, a small HTTP client, and the fakes the tests talk to.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lab_service::{Config, HttpUrl, LogBuffer, LogTarget, Server};
use serde_json::Value;
use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

/// A service running on the test's runtime, logging into memory.
#[derive(Debug)]
pub struct Service {
    pub addr: SocketAddr,
    pub log: LogBuffer,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Service {
    pub async fn start(mut config: Config) -> Service {
        let log = LogBuffer::new();
        config.log = LogTarget::Buffer(log.clone());
        let server = Server::bind(config).await.expect("bind the service");
        let addr = server.local_addr();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stop.await;
        }));
        Service {
            addr,
            log,
            shutdown,
            task,
        }
    }

    pub fn url(&self, path: &str) -> HttpUrl {
        format!("http://{}{path}", self.addr).parse().unwrap()
    }

    /// The `request_finished` log lines.
    pub fn requests_logged(&self) -> Vec<Value> {
        self.log
            .lines()
            .into_iter()
            .filter(|l| l["event"] == "request_finished")
            .collect()
    }

    pub async fn metrics(&self) -> String {
        match get(self.url("/metrics"), &[]).await.2 {
            Value::String(text) => text,
            other => panic!("metrics are not text: {other}"),
        }
    }

    /// Shuts down gracefully and waits until the service has stopped.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.expect("the service task ends");
    }
}

/// Polls `condition` until it holds, for at most 20 seconds.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn get(url: impl Display, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Value) {
    request("GET", url, headers, None).await
}

/// One request on a fresh connection; the body is JSON when it parses, else a string.
pub async fn request(
    method: &str,
    url: impl Display,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, HeaderMap, Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder().method(method).uri(url.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some(json) => {
            builder = builder.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(&json).unwrap())
        }
        None => Bytes::new(),
    };
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(builder.body(Full::new(body)).unwrap()),
    )
    .await
    .expect("an answer within 30 s")
    .expect("an HTTP answer");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (parts.status, parts.headers, value)
}

/// Serves `handler` on a loopback port until the test's runtime ends.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub fn json_response(body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}

/// A span as the fake collector received it.
#[derive(Clone, Debug)]
pub struct CollectedSpan {
    pub service: String,
    pub version: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent: Option<String>,
    pub kind: u64,
    pub trace_state: String,
}

/// A fake OTLP/HTTP collector: accepts JSON and protobuf exports on
/// `/v1/traces`, keeps their spans and the content types they came as.
#[derive(Debug)]
pub struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    pub async fn start() -> Collector {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let content_types = Arc::new(Mutex::new(Vec::new()));
        let (sink, types) = (Arc::clone(&spans), Arc::clone(&content_types));
        let addr = serve(move |req: Request<Incoming>| {
            let (sink, types) = (Arc::clone(&sink), Arc::clone(&types));
            async move {
                assert_eq!(req.uri().path(), "/v1/traces");
                let content_type = req.headers()["content-type"].to_str().unwrap().to_string();
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let export: Value = match content_type.as_str() {
                    "application/json" => serde_json::from_slice(&bytes).expect("OTLP JSON"),
                    "application/x-protobuf" => protobuf_as_json(&bytes),
                    other => panic!("content type {other}"),
                };
                sink.lock().unwrap().extend(flatten(&export));
                types.lock().unwrap().push(content_type);
                json_response(&serde_json::json!({}))
            }
        })
        .await;
        Collector {
            addr,
            spans,
            content_types,
        }
    }

    /// The content type of every export received, in order.
    pub fn content_types(&self) -> Vec<String> {
        self.content_types.lock().unwrap().clone()
    }

    pub fn url(&self) -> HttpUrl {
        format!("http://{}", self.addr).parse().unwrap()
    }

    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

/// The fields [`flatten`] reads, from an OTLP/protobuf export.
fn protobuf_as_json(bytes: &[u8]) -> Value {
    use prost::Message as _;
    use telemetry::proto::{ExportTraceServiceRequest, Value as Any};
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let request = ExportTraceServiceRequest::decode(bytes).expect("OTLP protobuf");
    let resource_spans: Vec<Value> = request
        .resource_spans
        .iter()
        .map(|rs| {
            let attributes: Vec<Value> = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Any::String(s) => {
                        Some(serde_json::json!({"key": kv.key, "value": {"stringValue": s}}))
                    }
                    _ => None,
                })
                .collect();
            let scope_spans: Vec<Value> = rs
                .scope_spans
                .iter()
                .map(|ss| {
                    let spans: Vec<Value> = ss
                        .spans
                        .iter()
                        .map(|span| {
                            let mut json = serde_json::json!({
                                "traceId": hex(&span.trace_id),
                                "spanId": hex(&span.span_id),
                                "kind": span.kind,
                                "traceState": span.trace_state,
                            });
                            if !span.parent_span_id.is_empty() {
                                json["parentSpanId"] = hex(&span.parent_span_id).into();
                            }
                            json
                        })
                        .collect();
                    serde_json::json!({"spans": spans})
                })
                .collect();
            serde_json::json!({"resource": {"attributes": attributes}, "scopeSpans": scope_spans})
        })
        .collect();
    serde_json::json!({"resourceSpans": resource_spans})
}

fn flatten(export: &Value) -> Vec<CollectedSpan> {
    let mut out = Vec::new();
    for rs in export["resourceSpans"].as_array().expect("resourceSpans") {
        let attr = |key: &str| {
            rs["resource"]["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == key))
                .and_then(|kv| kv["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
            for span in ss["spans"].as_array().expect("spans") {
                out.push(CollectedSpan {
                    service: attr("service.name"),
                    version: attr("service.version"),
                    trace_id: span["traceId"].as_str().unwrap().to_string(),
                    span_id: span["spanId"].as_str().unwrap().to_string(),
                    parent: span["parentSpanId"].as_str().map(str::to_string),
                    kind: span["kind"].as_u64().unwrap(),
                    trace_state: span["traceState"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
    }
    out
}

/// Stand-ins for downstream services that misbehave in controlled ways.
#[derive(Debug)]
pub struct Downstream {
    addr: SocketAddr,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
}

impl Downstream {
    /// The URL of a port nothing listens on.
    pub async fn closed_port_url() -> HttpUrl {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/").parse().unwrap()
    }

    /// Accepts connections and never answers.
    pub async fn stalled() -> Downstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Downstream {
            addr,
            arrived: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
        }
    }

    /// Answers `{}` once [`Downstream::release`] is called.
    pub async fn held() -> Downstream {
        let arrived = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let (a, r) = (Arc::clone(&arrived), Arc::clone(&release));
        let addr = serve(move |_req| {
            let (a, r) = (Arc::clone(&a), Arc::clone(&r));
            async move {
                a.notify_one();
                r.notified().await;
                json_response(&serde_json::json!({}))
            }
        })
        .await;
        Downstream {
            addr,
            arrived,
            release,
        }
    }

    pub fn url(&self) -> HttpUrl {
        format!("http://{}/", self.addr).parse().unwrap()
    }

    pub async fn wait_for_request(&self) {
        tokio::time::timeout(Duration::from_secs(20), self.arrived.notified())
            .await
            .expect("the downstream was called");
    }

    pub fn release(&self) {
        self.release.notify_one();
    }
}
