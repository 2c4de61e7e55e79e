//! The ingest edge: OTLP/HTTP (`POST /v1/traces`, protobuf or JSON, gzip)
//! and OTLP/gRPC (`TraceService/Export` over h2c), the bounded queue in
//! front of the store, and the writer thread's group commit.
//!
//! A request is acknowledged only once its spans are committed: the handler
//! hands its batch to the writer with a oneshot and waits. The writer takes
//! every batch queued while it was busy and commits them in one transaction,
//! so under load one fsync-free commit covers many requests.
//!
//! Memory is bounded twice: at most `max_inflight` requests are read and
//! decoded at once (each at most `max_body_bytes`, also after gunzip), and at
//! most `queue_spans` decoded spans wait for the writer. Past either bound a
//! request is refused at once — 429 with `Retry-After` on HTTP, `UNAVAILABLE`
//! on gRPC — which OTLP exporters retry with backoff.

use crate::ingest::{self, Prepared};
use crate::otlp::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use crate::store::{self, Retention, Writer};
use crate::{Body, Shared, full, log};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use prost::Message as _;
use std::collections::HashSet;
use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The gRPC method OTLP exporters call.
pub const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Seconds an exporter is asked to wait after an overload refusal.
const RETRY_AFTER_SECS: u64 = 1;

/// A batch on its way to the writer, with whom to tell when it is committed.
#[derive(Debug)]
pub struct Job {
    pub batch: ingest::Batch,
    pub done: oneshot::Sender<Result<(), String>>,
}

/// Why a request was not stored, in protocol-neutral terms.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// 400 / INVALID_ARGUMENT.
    Malformed(String),
    /// 413 / RESOURCE_EXHAUSTED.
    TooLarge(String),
    /// 415 / INVALID_ARGUMENT.
    MediaType(String),
    /// 429 / UNAVAILABLE, with Retry-After.
    Overloaded(String),
    /// 503 / UNAVAILABLE: the store failed.
    Store(String),
}

impl Refusal {
    fn message(&self) -> &str {
        match self {
            Refusal::Malformed(m)
            | Refusal::TooLarge(m)
            | Refusal::MediaType(m)
            | Refusal::Overloaded(m)
            | Refusal::Store(m) => m,
        }
    }

    fn http_status(&self) -> StatusCode {
        match self {
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::MediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code.
    fn grpc_code(&self) -> u32 {
        match self {
            Refusal::Malformed(_) | Refusal::MediaType(_) => 3,
            Refusal::TooLarge(_) => 8,
            Refusal::Overloaded(_) | Refusal::Store(_) => 14,
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// Reads at most `limit` bytes of body.
async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, Refusal> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Refusal::TooLarge(format!(
            "request body is larger than the limit of {limit} bytes"
        ))),
        Err(e) => Err(Refusal::Malformed(format!("reading the request body: {e}"))),
    }
}

/// Inflates gzip, refusing output past `limit` bytes (a gzip bomb is a 413, not an OOM).
pub fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip body does not inflate: {e}"))?;
    if out.len() > limit {
        return Err(format!(
            "gzip body inflates past the limit of {limit} bytes"
        ));
    }
    Ok(out)
}

/// Decodes and validates a request; with `forward`, also gives the request as
/// protobuf (the body itself, or the JSON request encoded) for the forwarder.
fn prepare(
    body: Bytes,
    encoding: Encoding,
    indexed: &HashSet<String>,
    forward: bool,
) -> Result<(Prepared, Option<Bytes>), Refusal> {
    match encoding {
        Encoding::Protobuf => {
            let protobuf = forward.then(|| body.clone());
            ingest::prepare_protobuf(body, indexed)
                .map(|p| (p, protobuf))
                .map_err(|e| {
                    Refusal::Malformed(format!("not an OTLP ExportTraceServiceRequest: {e}"))
                })
        }
        Encoding::Json => crate::json::decode_request(&body)
            .map(|request| {
                let protobuf = forward.then(|| Bytes::from(request.encode_to_vec()));
                (ingest::prepare(request, indexed), protobuf)
            })
            .map_err(|e| Refusal::Malformed(format!("not OTLP/JSON: {e}"))),
    }
}

/// Decodes, validates and commits one request; the common path of both protocols.
async fn export(
    shared: &Shared,
    protocol: &'static str,
    body: Bytes,
    encoding: Encoding,
) -> Result<Prepared, Refusal> {
    let (prepared, protobuf) = prepare(
        body,
        encoding,
        &shared.options.indexed_tags,
        shared.forward.is_some(),
    )?;
    let accepted = prepared.batch.spans.len() as i64;
    let m = &shared.metrics;
    m.spans_received
        .fetch_add((accepted + prepared.rejected) as u64, Relaxed);
    m.spans_rejected
        .fetch_add(prepared.rejected as u64, Relaxed);
    if prepared.rejected > 0 {
        log::warn(
            "spans_rejected",
            &[
                ("protocol", protocol.into()),
                ("rejected", prepared.rejected.into()),
                (
                    "trace_id",
                    prepared
                        .first_rejected_trace
                        .clone()
                        .unwrap_or_default()
                        .into(),
                ),
                ("reason", prepared.message().into()),
            ],
        );
    }
    if accepted == 0 {
        return Ok(prepared);
    }
    // An empty queue takes any batch, so a request larger than the queue still goes through.
    let limit = shared.options.queue_spans as i64;
    let before = m.queue_spans.fetch_add(accepted, Relaxed);
    if before > 0 && before + accepted > limit {
        m.queue_spans.fetch_sub(accepted, Relaxed);
        m.spans_dropped.fetch_add(accepted as u64, Relaxed);
        return Err(Refusal::Overloaded(format!(
            "ingest queue full ({before} spans waiting for the store); retry later"
        )));
    }
    let (done, committed) = oneshot::channel();
    let Prepared {
        batch,
        rejected,
        reasons,
        first_rejected_trace,
    } = prepared;
    let job = Job { batch, done };
    let sent = shared
        .writer
        .lock()
        .ok()
        .and_then(|tx| tx.as_ref().map(|tx| tx.send(job).is_ok()))
        .unwrap_or(false);
    let outcome = if sent {
        committed
            .await
            .unwrap_or_else(|_| Err("the store writer stopped".into()))
    } else {
        m.queue_spans.fetch_sub(accepted, Relaxed);
        Err("the store writer stopped".into())
    };
    match outcome {
        Ok(()) => {
            // Forwarded once committed: what the target has, this store has too.
            if let (Some(forwarder), Some(protobuf)) = (&shared.forward, protobuf) {
                forwarder.offer(protobuf, accepted as u64);
            }
            Ok(Prepared {
                batch: ingest::Batch::default(),
                rejected,
                reasons,
                first_rejected_trace,
            })
        }
        Err(e) => {
            m.spans_dropped.fetch_add(accepted as u64, Relaxed);
            log::warn("store_write_failed", &[("reason", e.clone().into())]);
            Err(Refusal::Store(format!("storing the spans failed: {e}")))
        }
    }
}

fn response_message(prepared: &Prepared) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: (prepared.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: prepared.rejected,
            error_message: prepared.message(),
        }),
    }
}

fn with_type(mut response: Response<Body>, content_type: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `POST /v1/traces`.
pub async fn http_ingest(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let response = http_ingest_inner(&shared, req).await;
    shared.metrics.request("http", response.status().as_u16());
    response
}

async fn http_ingest_inner(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path() != "/v1/traces" {
        return full(
            StatusCode::NOT_FOUND,
            "OTLP/HTTP traces are posted to /v1/traces\n",
        );
    }
    if req.method() != Method::POST {
        let mut r = full(StatusCode::METHOD_NOT_ALLOWED, "POST /v1/traces\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let encoding = match content_type.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return http_refusal(
                &Refusal::MediaType(format!(
                    "content type {other:?} is not application/x-protobuf or application/json"
                )),
                Encoding::Json,
            );
        }
    };
    let result = async {
        let _permit = shared.inflight.try_acquire().map_err(|_| {
            Refusal::Overloaded("too many export requests in flight; retry later".into())
        })?;
        let gzip = match req
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
        {
            None | Some("identity") => false,
            Some(e) if e.eq_ignore_ascii_case("gzip") => true,
            Some(e) => {
                return Err(Refusal::MediaType(format!(
                    "content encoding {e:?} is not gzip or identity"
                )));
            }
        };
        let limit = shared.options.max_body_bytes;
        let mut body = read_body(req.into_body(), limit).await?;
        if gzip {
            body = gunzip(&body, limit)
                .map_err(|e| {
                    if e.contains("past the limit") {
                        Refusal::TooLarge(e)
                    } else {
                        Refusal::Malformed(e)
                    }
                })?
                .into();
        }
        export(shared, "http", body, encoding).await
    }
    .await;
    match result {
        Ok(prepared) => {
            let message = response_message(&prepared);
            match encoding {
                Encoding::Protobuf => with_type(
                    full(StatusCode::OK, message.encode_to_vec()),
                    "application/x-protobuf",
                ),
                Encoding::Json => {
                    let json = match &message.partial_success {
                        None => serde_json::json!({}),
                        Some(p) => serde_json::json!({"partialSuccess": {
                            "rejectedSpans": p.rejected_spans.to_string(),
                            "errorMessage": p.error_message,
                        }}),
                    };
                    with_type(
                        full(StatusCode::OK, format!("{json}\n")),
                        "application/json",
                    )
                }
            }
        }
        Err(refusal) => {
            log_refusal(shared, "http", &refusal);
            http_refusal(&refusal, encoding)
        }
    }
}

fn log_refusal(shared: &Shared, protocol: &'static str, refusal: &Refusal) {
    // Overload refusals come in floods: one line per second says enough.
    if matches!(refusal, Refusal::Overloaded(_)) {
        let now = store::now_ms();
        let last = shared.last_overload_log.load(Relaxed);
        if now - last < 1000
            || shared
                .last_overload_log
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
    }
    log::warn(
        "export_refused",
        &[
            ("protocol", protocol.into()),
            ("reason", refusal.message().into()),
        ],
    );
}

fn http_refusal(refusal: &Refusal, encoding: Encoding) -> Response<Body> {
    let status = RpcStatus {
        code: refusal.grpc_code() as i32,
        message: refusal.message().to_string(),
    };
    let mut response = match encoding {
        Encoding::Protobuf => with_type(
            full(refusal.http_status(), status.encode_to_vec()),
            "application/x-protobuf",
        ),
        Encoding::Json => with_type(
            full(
                refusal.http_status(),
                format!(
                    "{}\n",
                    serde_json::json!({"code": status.code, "message": status.message})
                ),
            ),
            "application/json",
        ),
    };
    if matches!(refusal, Refusal::Overloaded(_) | Refusal::Store(_)) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// `TraceService/Export` over HTTP/2.
pub async fn grpc_ingest(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let (response, code) = match grpc_ingest_inner(&shared, req).await {
        Ok(prepared) => {
            let message = response_message(&prepared).encode_to_vec();
            let mut frame = Vec::with_capacity(message.len() + 5);
            frame.push(0);
            frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
            frame.extend_from_slice(&message);
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let body = Full::new(Bytes::from(frame))
                .with_trailers(std::future::ready(Some(Ok(trailers))))
                .boxed();
            let mut r = Response::new(body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            (r, 0)
        }
        Err((code, message, retry)) => {
            log::warn(
                "export_refused",
                &[
                    ("protocol", "grpc".into()),
                    ("reason", message.clone().into()),
                ],
            );
            (grpc_error(code, &message, retry), code)
        }
    };
    shared.metrics.request("grpc", code as u16);
    response
}

/// A trailers-only gRPC error response.
fn grpc_error(code: u32, message: &str, retry: bool) -> Response<Body> {
    let mut r = full(StatusCode::OK, Bytes::new());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    // grpc-message is percent-encoded; keep it to printable ASCII without '%'.
    let clean: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '%' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&clean) {
        h.insert("grpc-message", v);
    }
    if retry {
        h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    r
}

async fn grpc_ingest_inner(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Prepared, (u32, String, bool)> {
    if req.uri().path() != GRPC_EXPORT_PATH || req.method() != Method::POST {
        return Err((12, format!("unknown method {}", req.uri().path()), false));
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !(content_type == "application/grpc"
        || content_type.starts_with("application/grpc+proto")
        || content_type.starts_with("application/grpc;"))
    {
        return Err((
            3,
            format!("content type {content_type:?} is not application/grpc"),
            false,
        ));
    }
    let compression = req
        .headers()
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_string();
    let refuse = |r: Refusal| {
        let retry = matches!(r, Refusal::Overloaded(_) | Refusal::Store(_));
        (r.grpc_code(), r.message().to_string(), retry)
    };
    let _permit = shared.inflight.try_acquire().map_err(|_| {
        refuse(Refusal::Overloaded(
            "too many export requests in flight; retry later".into(),
        ))
    })?;
    let limit = shared.options.max_body_bytes;
    let body = read_body(req.into_body(), limit + 5)
        .await
        .map_err(refuse)?;
    let message = grpc_message(&body, &compression, limit).map_err(refuse)?;
    export(shared, "grpc", message, Encoding::Protobuf)
        .await
        .map_err(refuse)
}

/// The one length-prefixed message of a unary gRPC request body.
pub(crate) fn grpc_message(body: &[u8], compression: &str, limit: usize) -> Result<Bytes, Refusal> {
    if body.len() < 5 {
        return Err(Refusal::Malformed(format!(
            "gRPC body of {} bytes has no message frame",
            body.len()
        )));
    }
    let compressed = body[0];
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() - 5 != len {
        return Err(Refusal::Malformed(format!(
            "gRPC frame says {len} bytes but {} follow",
            body.len() - 5
        )));
    }
    let payload = &body[5..];
    match (compressed, compression) {
        (0, _) => Ok(Bytes::copy_from_slice(payload)),
        (1, "gzip") => gunzip(payload, limit).map(Bytes::from).map_err(|e| {
            if e.contains("past the limit") {
                Refusal::TooLarge(e)
            } else {
                Refusal::Malformed(e)
            }
        }),
        (1, other) => Err(Refusal::MediaType(format!(
            "grpc-encoding {other:?} is not supported (gzip is)"
        ))),
        (flag, _) => Err(Refusal::Malformed(format!("gRPC compressed flag {flag}"))),
    }
}

/// The writer thread: group commits, and retention between them.
pub fn writer_loop(
    mut writer: Writer,
    jobs: std::sync::mpsc::Receiver<Job>,
    shared: Arc<Shared>,
    retention: Retention,
) {
    const GROUP_SPANS: usize = 32_768;
    const RETENTION_EVERY: Duration = Duration::from_secs(10);
    const RETENTION_ROWS: i64 = 50_000;
    let m = &shared.metrics;
    let mut last_retention = Instant::now() - RETENTION_EVERY;
    loop {
        if last_retention.elapsed() >= RETENTION_EVERY {
            match writer.enforce(retention, RETENTION_ROWS) {
                Ok(n) => {
                    m.retention_deleted.fetch_add(n as u64, Relaxed);
                    if n > 0 {
                        log::info("retention_deleted", &[("spans", n.into())]);
                    }
                    // More to delete: come back after the next commit, not in 10 s.
                    if n < RETENTION_ROWS {
                        last_retention = Instant::now();
                    }
                }
                Err(e) => {
                    log::warn("retention_failed", &[("reason", e.to_string().into())]);
                    last_retention = Instant::now();
                }
            }
            m.store_bytes.store(writer.disk_bytes(), Relaxed);
        }
        let first = match jobs.recv_timeout(RETENTION_EVERY) {
            Ok(job) => job,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut group = vec![first];
        let mut spans = group[0].batch.spans.len();
        while spans < GROUP_SPANS {
            match jobs.try_recv() {
                Ok(job) => {
                    spans += job.batch.spans.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let batches: Vec<&ingest::Batch> = group.iter().map(|j| &j.batch).collect();
        let result = writer.write(&batches).map_err(|e| e.to_string());
        m.commit_seconds_micros
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        m.commits.fetch_add(1, Relaxed);
        m.queue_spans.fetch_sub(spans as i64, Relaxed);
        m.store_bytes.store(writer.disk_bytes(), Relaxed);
        if result.is_ok() {
            m.spans_accepted.fetch_add(spans as u64, Relaxed);
        }
        for job in group {
            let _ = job.done.send(result.clone());
        }
    }
}
