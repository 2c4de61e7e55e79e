//! The proxy's request path: route, choose an endpoint, forward, and record.

use crate::log::{self, Message, Record};
use crate::metrics::{Metrics, Stats, UpstreamError};
use crate::state::Shared;
use crate::table::{Member, NoEndpoint, Pools};
use crate::{Body, BoxError, trace};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

/// Where finished requests go: the access log, the span exporter, the counters.
#[derive(Debug)]
pub(crate) struct Sinks {
    pub log: Option<SyncSender<Message>>,
    pub spans: Option<tokio::sync::mpsc::Sender<Arc<Record>>>,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug)]
pub(crate) struct Proxy {
    pub shared: Arc<Shared>,
    pub sinks: Arc<Sinks>,
}

/// Headers that describe one connection, not the message (RFC 9110, section 7.6.1);
/// `transfer-encoding` too, since hyper frames each side's body itself.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, the ones `Connection` names included.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// What the proxy knows of a request while it handles it, finished into a [`Record`].
struct Pending {
    started: Instant,
    start: SystemTime,
    trace: trace::Trace,
    request_id: String,
    client: SocketAddr,
    method: Method,
    path: String,
    route: Option<String>,
    service: Option<String>,
    member: Option<Arc<Member>>,
    attempts: u32,
    error: Option<String>,
    stats: Arc<Stats>,
    body: Option<Arc<BodyCount>>,
    sinks: Arc<Sinks>,
}

impl Pending {
    /// Counts and records the request once its response body is done (or abandoned).
    fn finish(self, status: u16, bytes_out: u64) {
        let duration = self.started.elapsed();
        self.stats.observe(status, duration);
        let sinks = self.sinks.clone();
        if sinks.log.is_none() && sinks.spans.is_none() {
            return;
        }
        let record = Arc::new(Record {
            start: self.start,
            duration,
            trace_id: self.trace.trace_id,
            span_id: self.trace.span_id,
            parent_span_id: self.trace.parent_span_id,
            tracestate: self.trace.tracestate,
            request_id: self.request_id,
            client: self.client,
            method: self.method.to_string(),
            path: self.path,
            route: self.route,
            service: self.service,
            version: self.member.as_ref().map(|m| m.version.clone()),
            pool: self.member.as_ref().map(|m| m.pool.clone()),
            upstream: self.member.as_ref().map(|m| m.address),
            attempts: self.attempts,
            status,
            error: self.error,
            bytes_in: self.body.map_or(0, |b| b.bytes.load(Ordering::Relaxed)),
            bytes_out,
        });
        if let Some(log) = &sinks.log
            && !log::send(log, record.clone())
        {
            sinks
                .metrics
                .access_log_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some(spans) = &sinks.spans
            && spans.try_send(record).is_err()
        {
            sinks.metrics.spans_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A response body that finishes its request's record when it ends or is dropped.
struct Tracked {
    inner: Body,
    bytes: u64,
    status: u16,
    pending: Option<Box<Pending>>,
}

impl Tracked {
    fn done(&mut self) {
        if let Some(p) = self.pending.take() {
            p.finish(self.status, self.bytes);
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.done();
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.done(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Bytes of a request body so far, and whether it went over the limit.
#[derive(Debug, Default)]
struct BodyCount {
    bytes: AtomicU64,
    over_limit: AtomicBool,
}

/// A request body on its way upstream: counted, and cut off past the limit.
struct Metered {
    inner: Incoming,
    seen: u64,
    limit: u64,
    count: Arc<BodyCount>,
}

impl hyper::body::Body for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.seen += data.len() as u64;
                    self.count.bytes.store(self.seen, Ordering::Relaxed);
                    if self.seen > self.limit {
                        self.count.over_limit.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(format!(
                            "request body over {} bytes",
                            self.limit
                        )
                        .into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A response the gateway writes itself, with a plain-text body saying why.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Methods that may be sent twice (RFC 9110, section 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A usable `x-request-id`: visible ASCII, not too long to log.
fn valid_request_id(v: &HeaderValue) -> bool {
    (1..=200).contains(&v.len()) && v.as_bytes().iter().all(|c| (0x21..=0x7e).contains(c))
}

/// `for=` node of `Forwarded` (RFC 7239): IPv6 addresses quoted and bracketed.
fn forwarded_node(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// Kind and description of a failed upstream exchange.
fn classify(e: &hyper_util::client::legacy::Error) -> (UpstreamError, String) {
    let mut detail = e.to_string();
    let mut kind = if e.is_connect() {
        UpstreamError::Connect
    } else {
        UpstreamError::Protocol
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        if kind != UpstreamError::Connect {
            if let Some(h) = s.downcast_ref::<hyper::Error>()
                && (h.is_incomplete_message() || h.is_closed() || h.is_canceled())
            {
                kind = UpstreamError::Reset;
            }
            if let Some(io) = s.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                )
            {
                kind = UpstreamError::Reset;
            }
        }
        source = s.source();
    }
    (kind, detail)
}

impl Proxy {
    pub async fn handle(&self, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        // One table for the whole request: routing and endpoint choice see one generation.
        let table = self.shared.table();
        let trace = trace::at_edge(req.headers());
        let request_id = match req.headers().get("x-request-id") {
            Some(v) if valid_request_id(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            _ => trace::request_id(),
        };
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(req.uri().host());
        let route = table.matching(req.method().as_str(), host, req.uri().path(), req.headers());
        let mut pending = Pending {
            started,
            start: SystemTime::now(),
            request_id,
            client,
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            route: route.map(|r| r.name.clone()),
            service: route.map(|r| r.service.clone()),
            member: None,
            attempts: 0,
            error: None,
            stats: table.unrouted.clone(),
            body: None,
            sinks: self.sinks.clone(),
            trace,
        };
        let pools = pending
            .service
            .as_deref()
            .and_then(|s| table.pools(s))
            .cloned();
        let max_body = table.limits.max_body_bytes;
        drop(table);
        let response = match pools {
            None => {
                pending.error = Some("no route".into());
                text(StatusCode::NOT_FOUND, "no route for this host and path\n")
            }
            Some(pools) => {
                pending.stats = pools.unserved.clone();
                self.forward(req, &pools, max_body, &mut pending).await
            }
        };
        let (mut parts, inner) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Ok(v) = HeaderValue::from_str(&pending.trace.trace_id) {
            parts.headers.insert("x-trace-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&pending.request_id) {
            parts.headers.insert("x-request-id", v);
        }
        let tracked = Tracked {
            inner,
            bytes: 0,
            status: parts.status.as_u16(),
            pending: Some(Box::new(pending)),
        };
        Response::from_parts(parts, tracked.boxed())
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        pools: &Pools,
        max_body: u64,
        pending: &mut Pending,
    ) -> Response<Body> {
        let service = pending.service.clone().unwrap_or_default();
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body) {
            pending.error = Some("request body too large".into());
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over the limit of {} bytes\n", max_body),
            );
        }
        let mut member = match pools.choose(&[]) {
            Ok(m) => m,
            Err(reason) => return no_endpoint(&service, reason, pending),
        };
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        self.forwarding_headers(&mut parts.headers, pending);
        let upstream = &pools.upstream;
        // Only a request that can be sent again unchanged is retried: idempotent, no body.
        let no_body = body.is_end_stream();
        let retriable = idempotent(&parts.method) && no_body && upstream.retries > 0;
        let mut body = if no_body {
            Some(empty())
        } else {
            let count = Arc::new(BodyCount::default());
            pending.body = Some(count.clone());
            Some(
                Metered {
                    inner: body,
                    seen: 0,
                    limit: max_body,
                    count,
                }
                .boxed(),
            )
        };
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
        let mut tried: Vec<SocketAddr> = Vec::new();
        loop {
            pending.attempts += 1;
            pending.stats = member.stats.clone();
            pending.member = Some(member.clone());
            let uri = Uri::builder()
                .scheme("http")
                .authority(member.address.to_string())
                .path_and_query(path_and_query.clone())
                .build();
            let Ok(uri) = uri else {
                pending.error = Some("bad request target".into());
                return text(StatusCode::BAD_REQUEST, "bad request target\n");
            };
            let mut request = Request::new(body.take().unwrap_or_else(empty));
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = uri;
            *request.headers_mut() = if retriable {
                parts.headers.clone()
            } else {
                std::mem::take(&mut parts.headers)
            };
            let outcome =
                tokio::time::timeout(upstream.request_timeout, pools.client().request(request))
                    .await;
            match outcome {
                Ok(Ok(response)) => {
                    if response.status().is_server_error() {
                        member.cell.failed(upstream.ejection.as_ref());
                    } else {
                        member.cell.succeeded();
                    }
                    return response.map(|b| b.map_err(BoxError::from).boxed());
                }
                Err(_) => {
                    pools.errors.count(UpstreamError::Timeout);
                    member.cell.failed(upstream.ejection.as_ref());
                    let message = format!(
                        "upstream {} sent no response within {}",
                        member.address,
                        crate::config::format_duration(upstream.request_timeout)
                    );
                    pending.error = Some(message.clone());
                    return text(StatusCode::GATEWAY_TIMEOUT, message + "\n");
                }
                Ok(Err(e)) => {
                    if pending
                        .body
                        .as_ref()
                        .is_some_and(|b| b.over_limit.load(Ordering::Relaxed))
                    {
                        pending.error = Some("request body too large".into());
                        return text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("request body over the limit of {} bytes\n", max_body),
                        );
                    }
                    let (kind, detail) = classify(&e);
                    pools.errors.count(kind);
                    member.cell.failed(upstream.ejection.as_ref());
                    if kind == UpstreamError::Connect
                        && retriable
                        && pending.attempts <= upstream.retries
                    {
                        tried.push(member.address);
                        if let Ok(next) = pools.choose(&tried) {
                            member = next;
                            continue;
                        }
                    }
                    let message = format!(
                        "upstream {} failed ({}): {detail}",
                        member.address,
                        kind.as_str()
                    );
                    pending.error = Some(message.clone());
                    return text(StatusCode::BAD_GATEWAY, message + "\n");
                }
            }
        }
    }

    /// Trace context, request id and the `X-Forwarded-*` / `Forwarded` headers.
    fn forwarding_headers(&self, headers: &mut HeaderMap, pending: &Pending) {
        let ip = pending.client.ip();
        let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {ip}"),
            None => ip.to_string(),
        };
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(|h| format!(";host=\"{h}\""))
            .unwrap_or_default();
        let node = format!("for={};proto=http{host}", forwarded_node(ip));
        let forwarded = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {node}"),
            None => node,
        };
        for (name, value) in [
            ("x-forwarded-for", xff),
            ("forwarded", forwarded),
            ("traceparent", pending.trace.traceparent.clone()),
            ("x-request-id", pending.request_id.clone()),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
        // This listener is plain HTTP: whatever the client claimed is replaced.
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        headers.remove("tracestate");
        if let Some(state) = &pending.trace.tracestate
            && let Ok(v) = HeaderValue::from_str(state)
        {
            headers.insert("tracestate", v);
        }
    }
}

fn no_endpoint(service: &str, reason: NoEndpoint, pending: &mut Pending) -> Response<Body> {
    let message = match reason {
        NoEndpoint::NoneLive => format!("service {service} has no live endpoint"),
        NoEndpoint::AllDown => {
            format!("service {service}: every live endpoint is ejected or failing health checks")
        }
    };
    pending.error = Some(message.clone());
    text(StatusCode::SERVICE_UNAVAILABLE, message + "\n")
}
