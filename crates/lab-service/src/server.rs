//! The HTTP side: the accept loop and graceful shutdown, routing, the
//! application route with its downstream calls, the W3C test protocol, the
//! probes, `/metrics` and the admin endpoint.

use crate::context::{self, SpanId, TraceId, TraceState};
use crate::faults::{Faults, constant_time_eq};
use crate::ids::Rng;
use crate::log::{Logger, RequestLine};
use crate::metrics::{FaultKind, Metrics};
use crate::otlp::{self, AttrValue, Exporter, Resource, Span, SpanKind, SpanSink, Status};
use crate::url::HttpUrl;
use crate::{AdminToken, CallMode, Config, Error};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;

type Body = Full<Bytes>;

/// Request and response bodies this service reads are small; a larger one is refused.
const MAX_BODY_BYTES: usize = 1 << 20;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const B3: HeaderName = HeaderName::from_static("b3");
const X_TRACE_ID: HeaderName = HeaderName::from_static("x-trace-id");
/// How many lab services a request has passed through: a guard against cycles in `--calls`.
const X_BULKHEAD_HOPS: HeaderName = HeaderName::from_static("x-bulkhead-hops");
const MAX_HOPS: u32 = 32;

/// A bound service, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    app: Arc<App>,
    exporter: Option<Exporter<Span>>,
}

/// What every request handler shares.
#[derive(Debug)]
struct App {
    name: String,
    version: String,
    calls: Vec<HttpUrl>,
    call_mode: CallMode,
    via: Option<SocketAddr>,
    call_timeout: Duration,
    shutdown_grace: Duration,
    ids: Rng,
    fault_rng: Rng,
    faults: watch::Sender<Arc<Faults>>,
    admin_token: Option<AdminToken>,
    metrics: Arc<Metrics>,
    spans: SpanSink,
    log: Arc<Logger>,
    client: Client<HttpConnector, Body>,
    draining: AtomicBool,
}

impl Server {
    /// Validates the config, binds the listener, starts the span exporter and
    /// writes the `listening` log line (always the first line).
    ///
    /// # Errors
    ///
    /// Invalid faults, an empty name, an invalid OTLP endpoint, or an address
    /// that cannot be bound.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        config.faults.validate().map_err(Error::InvalidFaults)?;
        config
            .faults
            .check_calls(config.calls.iter().map(HttpUrl::as_str))
            .map_err(Error::InvalidFaults)?;
        if config.name.trim().is_empty() {
            return Err(Error::InvalidConfig("the service name is empty".into()));
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let log = Arc::new(Logger::new(config.log, &config.name, &config.version));
        let metrics = Arc::new(Metrics::default());
        let (spans, exporter) = match &config.otlp {
            Some(otlp) => {
                let resource = Resource {
                    service_name: config.name.clone(),
                    service_version: config.version.clone(),
                    instance_id: addr.to_string(),
                };
                let (sink, exporter) =
                    otlp::start(otlp, resource, Arc::clone(&metrics), Arc::clone(&log))?;
                (sink, Some(exporter))
            }
            None => (SpanSink::disabled(Arc::clone(&metrics)), None),
        };
        let (ids, fault_rng) = match config.seed {
            Some(seed) => (Rng::seeded(seed, 1), Rng::seeded(seed, 2)),
            None => (Rng::from_entropy(1), Rng::from_entropy(2)),
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        log.event(
            "info",
            "listening",
            json!({
                "addr": addr.to_string(),
                "calls": config.calls.iter().map(HttpUrl::as_str).collect::<Vec<_>>(),
                "otlp_endpoint": config.otlp.as_ref().map(|o| o.endpoint.as_str()),
                "admin": config.admin_token.is_some(),
                "faults": &config.faults,
            }),
        );
        let app = App {
            name: config.name,
            version: config.version,
            calls: config.calls,
            call_mode: config.call_mode,
            via: config.via,
            call_timeout: config.call_timeout,
            shutdown_grace: config.shutdown_grace,
            ids,
            fault_rng,
            faults: watch::Sender::new(Arc::new(config.faults)),
            admin_token: config.admin_token,
            metrics,
            spans,
            log,
            client,
            draining: AtomicBool::new(false),
        };
        Ok(Server {
            listener,
            addr,
            app: Arc::new(app),
            exporter,
        })
    }

    /// The bound address (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops accepting, waits for open
    /// requests (up to the grace period) and flushes queued spans.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            app,
            exporter,
            ..
        } = self;
        let graceful = GracefulShutdown::new();
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .keep_alive(true);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let _ = stream.set_nodelay(true);
                        let app = Arc::clone(&app);
                        let service = service_fn(move |req| {
                            let app = Arc::clone(&app);
                            async move { Ok::<_, Infallible>(handle(&app, req).await) }
                        });
                        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors, typically: back off instead of spinning.
                        app.log.event("warn", "accept_failed", json!({ "reason": e.to_string() }));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        app.draining.store(true, Ordering::Relaxed);
        drop(listener);
        app.log.event("info", "shutdown_started", json!({}));
        let drained = tokio::time::timeout(app.shutdown_grace, graceful.shutdown())
            .await
            .is_ok();
        if let Some(exporter) = exporter {
            // The exporter's thread posts the last batches; the runtime's threads stay free.
            let _ = tokio::task::spawn_blocking(move || exporter.flush_and_stop()).await;
        }
        app.log.event(
            "info",
            "server_stopped",
            json!({
                "drained": drained,
                "spans_dropped_total": app.metrics.spans_dropped_total(),
            }),
        );
    }
}

async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/healthz" {
        return json_response(StatusCode::OK, &json!({ "status": "ok" }));
    }
    if path == "/readyz" {
        return readiness(app);
    }
    if path == "/metrics" {
        let mut response = Response::new(Full::new(Bytes::from(
            app.metrics.render(&app.name, &app.version),
        )));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return response;
    }
    if path == "/admin" || path.starts_with("/admin/") {
        return admin(app, req).await;
    }
    let route = if path == "/test" && req.method() == Method::POST {
        Route::W3cTest
    } else {
        Route::Application
    };
    traced(app, req, route).await
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Application,
    W3cTest,
}

/// The server span in progress.
#[derive(Clone, Debug)]
struct Current {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
    trace_state: TraceState,
    /// Lab services this request passed through before this one.
    hops: u32,
}

impl Current {
    /// Spans are recorded only when the trace is sampled, as the caller asked.
    fn sampled(&self) -> bool {
        self.flags & context::FLAG_SAMPLED != 0
    }
}

/// What a traced handler produced.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
    /// The span status message when the request failed.
    error: Option<String>,
    fault: Option<FaultKind>,
}

/// Wraps a handler in a server span, a log line and the request metrics.
async fn traced(app: &Arc<App>, req: Request<Incoming>, route: Route) -> Response<Body> {
    let started = Instant::now();
    let start_unix_nanos = otlp::unix_nanos(SystemTime::now());
    let incoming = context::extract(req.headers());
    let hops = req
        .headers()
        .get(X_BULKHEAD_HOPS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let current = match &incoming.parent {
        Some(parent) => Current {
            trace_id: parent.trace_id,
            span_id: app.ids.span_id(),
            flags: parent.flags,
            trace_state: incoming.trace_state.clone(),
            hops,
        },
        None => Current {
            trace_id: app.ids.trace_id(),
            span_id: app.ids.span_id(),
            flags: incoming.new_trace_flags,
            trace_state: TraceState::default(),
            hops,
        },
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let reply = match route {
        Route::Application => application(app, &current).await,
        Route::W3cTest => w3c_test(app, &current, req).await,
    };
    let elapsed = started.elapsed();
    let status = reply.status.as_u16();
    app.metrics.request(status, elapsed);
    let parent_span_id = incoming.parent.map(|p| p.span_id);
    app.log.event(
        if status >= 500 { "error" } else { "info" },
        "request_finished",
        RequestLine {
            method: method.as_str(),
            path: &path,
            status,
            duration_ms: millis(elapsed),
            trace_id: current.trace_id.to_string(),
            span_id: current.span_id.to_string(),
            parent_span_id: parent_span_id.map(|p| p.to_string()),
            fault: reply.fault.map(FaultKind::as_str),
            context_rejected: incoming.rejected.as_deref(),
        },
    );
    if app.spans.enabled() && current.sampled() {
        let mut attributes = vec![
            ("http.request.method", AttrValue::from(method.as_str())),
            ("url.path", AttrValue::from(path.as_str())),
            (
                "http.response.status_code",
                AttrValue::Int(i64::from(status)),
            ),
        ];
        if let Some(fault) = reply.fault {
            attributes.push(("fault.injected", AttrValue::from(fault.as_str())));
        }
        app.spans.record(Span {
            trace_id: current.trace_id.hex(),
            span_id: current.span_id.hex(),
            parent_span_id: parent_span_id.map(SpanId::hex),
            trace_state: current.trace_state.header_value().unwrap_or_default(),
            name: format!("{method} {path}"),
            kind: SpanKind::Server,
            start_unix_nanos,
            end_unix_nanos: start_unix_nanos + nanos(elapsed),
            attributes,
            status: match reply.error {
                Some(message) if status >= 500 => Status::Error(message),
                _ => Status::Unset,
            },
        });
    }
    let mut response = json_response(reply.status, &reply.body);
    if let Ok(value) = HeaderValue::from_str(&current.trace_id.to_string()) {
        response.headers_mut().insert(X_TRACE_ID, value);
    }
    response
}

/// The application route: faults, then the downstream calls, then the answer.
async fn application(app: &Arc<App>, current: &Current) -> Reply {
    if current.hops >= MAX_HOPS {
        let message = format!("more than {MAX_HOPS} hops: is there a cycle in --calls?");
        return Reply {
            status: StatusCode::LOOP_DETECTED,
            body: json!({
                "service": app.name,
                "version": app.version,
                "trace_id": current.trace_id.to_string(),
                "error": { "message": message, "origin": app.origin() },
            }),
            error: Some(message),
            fault: None,
        };
    }
    let faults = Arc::clone(&app.faults.borrow());
    let decision = faults.decide(&app.fault_rng);
    let mut fault = None;
    if !decision.delay.is_zero() {
        app.metrics.fault(FaultKind::Latency);
        fault = Some(FaultKind::Latency);
        tokio::time::sleep(decision.delay).await;
    }
    let results = match app.call_mode {
        CallMode::Sequential => {
            let mut results = Vec::with_capacity(app.calls.len());
            for url in &app.calls {
                let result = call(
                    Arc::clone(app),
                    current.clone(),
                    url.clone(),
                    Method::GET,
                    Bytes::new(),
                    faults.fails_call(url.as_str()),
                )
                .await;
                let failed = result.failed();
                results.push(result);
                if failed {
                    break;
                }
            }
            results
        }
        CallMode::Parallel => {
            let handles: Vec<_> = app
                .calls
                .iter()
                .map(|url| {
                    tokio::spawn(call(
                        Arc::clone(app),
                        current.clone(),
                        url.clone(),
                        Method::GET,
                        Bytes::new(),
                        faults.fails_call(url.as_str()),
                    ))
                })
                .collect();
            let mut results = Vec::with_capacity(handles.len());
            for (handle, url) in handles.into_iter().zip(&app.calls) {
                results.push(handle.await.unwrap_or_else(|e| CallResult {
                    url: url.to_string(),
                    status: None,
                    body: None,
                    error: Some(format!("call task failed: {e}")),
                    duration_ms: 0.0,
                    origin: None,
                    injected: false,
                }));
            }
            results
        }
    };
    let mut body = json!({
        "service": app.name,
        "version": app.version,
        "trace_id": current.trace_id.to_string(),
        "span_id": current.span_id.to_string(),
        "downstream": &results,
    });
    if let Some(failed) = results.iter().find(|r| r.failed()) {
        let reason = match (&failed.error, failed.status) {
            (Some(error), _) => error.clone(),
            (None, Some(status)) => format!("answered {status}"),
            (None, None) => "failed".to_string(),
        };
        let message = format!("downstream {} {reason}", failed.url);
        let origin = failed
            .origin
            .clone()
            .unwrap_or_else(|| json!({ "url": failed.url }));
        body["error"] = json!({
            "message": message,
            "downstream": failed.url,
            "origin": origin,
        });
        if failed.injected {
            fault = Some(FaultKind::Call);
        }
        return Reply {
            status: StatusCode::BAD_GATEWAY,
            body,
            error: Some(message),
            fault,
        };
    }
    if decision.error {
        app.metrics.fault(FaultKind::Error);
        let message = format!("injected fault (error rate {})", faults.error_rate);
        body["error"] = json!({ "message": message, "origin": app.origin() });
        return Reply {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body,
            error: Some(message),
            fault: Some(FaultKind::Error),
        };
    }
    Reply {
        status: StatusCode::OK,
        body,
        error: None,
        fault,
    }
}

impl App {
    fn origin(&self) -> Value {
        json!({ "service": self.name, "version": self.version })
    }
}

/// One downstream call, as reported in the response body.
#[derive(Debug, Serialize)]
struct CallResult {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration_ms: f64,
    /// Which service failed first, when this call failed.
    #[serde(skip)]
    origin: Option<Value>,
    #[serde(skip)]
    injected: bool,
}

impl CallResult {
    fn failed(&self) -> bool {
        self.error.is_some() || !self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Calls `url` in a client span whose id becomes the downstream's parent.
async fn call(
    app: Arc<App>,
    current: Current,
    url: HttpUrl,
    method: Method,
    body: Bytes,
    fail: bool,
) -> CallResult {
    let span_id = app.ids.span_id();
    let started = Instant::now();
    let start_unix_nanos = otlp::unix_nanos(SystemTime::now());
    let outcome = if fail {
        app.metrics.fault(FaultKind::Call);
        Err("failed by an injected fault (the call was not made)".to_string())
    } else {
        let outgoing = context::outgoing(
            current.trace_id,
            current.span_id,
            span_id,
            current.flags,
            &current.trace_state,
        );
        send(
            &app,
            &url,
            method.clone(),
            &outgoing,
            current.hops + 1,
            body,
        )
        .await
    };
    let elapsed = started.elapsed();
    let mut result = CallResult {
        url: url.to_string(),
        status: None,
        body: None,
        error: None,
        duration_ms: millis(elapsed),
        origin: None,
        injected: fail,
    };
    match outcome {
        Ok((status, bytes)) => {
            result.status = Some(status.as_u16());
            let parsed = serde_json::from_slice::<Value>(&bytes).ok();
            result.body = Some(parsed.clone().unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&bytes);
                Value::String(text.chars().take(1024).collect())
            }));
            if !status.is_success() {
                // A lab service names the service that failed first; anything else is the origin itself.
                result.origin = Some(
                    parsed
                        .as_ref()
                        .and_then(|b| b.pointer("/error/origin"))
                        .filter(|o| o.is_object())
                        .cloned()
                        .unwrap_or_else(|| json!({ "url": url.as_str() })),
                );
            }
        }
        Err(error) => {
            result.origin = Some(if fail {
                app.origin()
            } else {
                json!({ "url": url.as_str() })
            });
            result.error = Some(error);
        }
    }
    if result.failed() {
        app.metrics.downstream_error();
    }
    if app.spans.enabled() && current.sampled() {
        let uri = url.uri();
        let mut attributes = vec![
            ("http.request.method", AttrValue::from(method.as_str())),
            ("url.full", AttrValue::from(url.as_str())),
            ("server.address", AttrValue::from(uri.host().unwrap_or(""))),
        ];
        if let Some(port) = uri.port_u16() {
            attributes.push(("server.port", AttrValue::Int(i64::from(port))));
        }
        if let Some(status) = result.status {
            attributes.push(("http.response.status_code", AttrValue::Int(status.into())));
        }
        if fail {
            attributes.push(("fault.injected", AttrValue::from(FaultKind::Call.as_str())));
        }
        app.spans.record(Span {
            trace_id: current.trace_id.hex(),
            span_id: span_id.hex(),
            parent_span_id: Some(current.span_id.hex()),
            trace_state: current.trace_state.header_value().unwrap_or_default(),
            name: format!("{method} {url}"),
            kind: SpanKind::Client,
            start_unix_nanos,
            end_unix_nanos: start_unix_nanos + nanos(elapsed),
            attributes,
            status: match (&result.error, result.status) {
                (Some(e), _) => Status::Error(e.clone()),
                (None, Some(s)) if s >= 500 => Status::Error(format!("answered {s}")),
                _ => Status::Unset,
            },
        });
    }
    result
}

/// Sends one request with the trace headers and reads the whole answer.
async fn send(
    app: &App,
    url: &HttpUrl,
    method: Method,
    outgoing: &context::Outgoing,
    hops: u32,
    body: Bytes,
) -> Result<(StatusCode, Bytes), String> {
    let mut request = Request::builder().method(method);
    request = match (app.via, url.uri().authority()) {
        (Some(via), Some(authority)) => {
            let target = url.uri().path_and_query().map_or("/", |p| p.as_str());
            request
                .uri(format!("http://{via}{target}"))
                .header(header::HOST, authority.as_str())
        }
        _ => request.uri(url.uri().clone()),
    };
    let mut request = request
        .header(TRACEPARENT, &outgoing.traceparent)
        .header(B3, &outgoing.b3)
        .header(X_BULKHEAD_HOPS, hops);
    if let Some(tracestate) = &outgoing.tracestate {
        request = request.header(TRACESTATE, tracestate);
    }
    if !body.is_empty() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let exchange = async {
        let response = app
            .client
            .request(request)
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(app.call_timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {:?}", app.call_timeout)))
}

/// "client error (Connect): tcp connect error: Connection refused (os error 111)".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// One action of the W3C test protocol.
#[derive(Debug, Deserialize)]
struct TestAction {
    url: String,
    #[serde(default)]
    arguments: Value,
}

/// `POST /test`: for each `{url, arguments}`, POST `arguments` to `url` with
/// this request's trace context (a new child span per call), one after the other.
async fn w3c_test(app: &Arc<App>, current: &Current, req: Request<Incoming>) -> Reply {
    let bad_request = |message: String| Reply {
        status: StatusCode::BAD_REQUEST,
        body: json!({ "error": { "message": message } }),
        error: None,
        fault: None,
    };
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => return bad_request(format!("reading the body: {e}")),
    };
    let actions: Vec<TestAction> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) => match serde_json::from_value(Value::Array(items)) {
            Ok(actions) => actions,
            Err(e) => return bad_request(format!("expected [{{\"url\", \"arguments\"}}]: {e}")),
        },
        Ok(item @ Value::Object(_)) => match serde_json::from_value(item) {
            Ok(action) => vec![action],
            Err(e) => return bad_request(format!("expected {{\"url\", \"arguments\"}}: {e}")),
        },
        Ok(_) => return bad_request("expected a JSON array of {url, arguments}".into()),
        Err(e) => return bad_request(format!("invalid JSON: {e}")),
    };
    let mut results = Vec::with_capacity(actions.len());
    for action in actions {
        let url: HttpUrl = match action.url.parse() {
            Ok(url) => url,
            Err(e) => {
                results.push(json!({ "url": action.url, "error": e.to_string() }));
                continue;
            }
        };
        let arguments = match action.arguments {
            Value::Null => Value::Array(Vec::new()),
            other => other,
        };
        let payload = Bytes::from(serde_json::to_vec(&arguments).expect("JSON value serializes"));
        let result = call(
            Arc::clone(app),
            current.clone(),
            url,
            Method::POST,
            payload,
            false,
        )
        .await;
        results.push(serde_json::to_value(&result).expect("call result serializes"));
    }
    Reply {
        status: StatusCode::OK,
        body: json!({
            "service": app.name,
            "version": app.version,
            "trace_id": current.trace_id.to_string(),
            "results": results,
        }),
        error: None,
        fault: None,
    }
}

fn readiness(app: &App) -> Response<Body> {
    if app.draining.load(Ordering::Relaxed) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "reason": "shutting down" }),
        );
    }
    if app.faults.borrow().not_ready {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "ready": false, "reason": "refused by an injected fault" }),
        );
    }
    json_response(StatusCode::OK, &json!({ "ready": true }))
}

/// `/admin/faults`: read (`GET`), replace (`PUT`/`POST`) or clear (`DELETE`)
/// the injected faults. Requires `Authorization: Bearer <token>`; disabled
/// (403) when the service has no token.
async fn admin(app: &App, req: Request<Incoming>) -> Response<Body> {
    let error = |status: StatusCode, message: &str| {
        json_response(status, &json!({ "error": { "message": message } }))
    };
    if req.uri().path() != "/admin/faults" {
        return error(
            StatusCode::NOT_FOUND,
            "no such admin resource: try /admin/faults",
        );
    }
    let Some(token) = &app.admin_token else {
        return error(
            StatusCode::FORBIDDEN,
            "the admin endpoint is disabled: start the service with --admin-token-env NAME, --admin-token-file PATH or BULKHEAD_LAB_ADMIN_TOKEN",
        );
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, credentials)| credentials.trim());
    if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        let mut response = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"bulkhead-lab-service\""),
        );
        return response;
    }
    let method = req.method().clone();
    let updated = match method {
        Method::GET => {
            let faults = Arc::clone(&app.faults.borrow());
            return json_response(StatusCode::OK, &*faults);
        }
        Method::PUT | Method::POST => {
            let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(body) => body.to_bytes(),
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
            };
            // Only an object: serde would read `[1]` as a struct by position.
            let faults = match serde_json::from_slice::<Value>(&body) {
                Ok(object @ Value::Object(_)) => serde_json::from_value::<Faults>(object),
                Ok(_) => return error(StatusCode::BAD_REQUEST, "expected a JSON object of faults"),
                Err(e) => Err(e),
            };
            let faults = match faults {
                Ok(faults) => faults,
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid faults: {e}")),
            };
            let checked = faults
                .validate()
                .and_then(|()| faults.check_calls(app.calls.iter().map(HttpUrl::as_str)));
            if let Err(e) = checked {
                return error(StatusCode::BAD_REQUEST, &format!("invalid faults: {e}"));
            }
            faults
        }
        Method::DELETE => Faults::default(),
        _ => {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET, PUT, POST or DELETE",
            );
            response.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, PUT, POST, DELETE"),
            );
            return response;
        }
    };
    app.log
        .event("info", "faults_updated", json!({ "faults": &updated }));
    app.faults.send_replace(Arc::new(updated.clone()));
    json_response(StatusCode::OK, &updated)
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let mut bytes = serde_json::to_vec(body).expect("JSON body serializes");
    bytes.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
