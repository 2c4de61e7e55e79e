//! The proxy's data path: read a request, route it, choose an endpoint, forward,
//! relay the response, and record what happened.
//!
//! One task serves one client connection and does everything for its requests:
//! it reads the head, writes the upstream request on a kept-alive connection it
//! takes from its worker's idle set, and relays the response back, with no
//! other task or channel in between (a request costs the four system calls of
//! reading and writing each side). Bodies are passed on in the framing they
//! came in; [`crate::h1`] finds where they end.

use crate::config::{Limits, Upstream};
use crate::h1::{self, Chunked, Fields as _, Framing, Head, HeadError};
use crate::log::{Line, Log, Record};
use crate::metrics::{Metrics, Stats, UpstreamError};
use crate::state::Shared;
use crate::table::{CompiledRoute, Member, NoEndpoint};
use crate::{trace, upstream};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Where finished requests go: the access log, the span exporter, the counters.
#[derive(Debug)]
pub(crate) struct Sinks {
    pub log: Option<Arc<Log>>,
    pub spans: Option<crate::otlp::RecordQueue>,
    pub metrics: Arc<Metrics>,
}

#[derive(Debug)]
pub(crate) struct Proxy {
    pub shared: Arc<Shared>,
    pub sinks: Arc<Sinks>,
}

/// The largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Read buffers start at this size and grow for larger heads.
const BUFFER: usize = 8 * 1024;

/// The longest a closing client connection is still read from, so that an
/// answer written before the client finished sending reaches it.
const LINGER: Duration = Duration::from_secs(2);

/// What the proxy knows of a request while it handles it, finished into an
/// access-log line (and a [`Record`] when spans are exported). It borrows from
/// the request head and the routing table the request holds, so handling a
/// request touches no reference count another worker touches too.
struct Pending<'a> {
    started: Instant,
    start: SystemTime,
    trace: trace::Trace,
    request_id: String,
    client_ip: Arc<str>,
    method: &'a str,
    path: &'a str,
    route: Option<&'a CompiledRoute>,
    member: Option<&'a Member>,
    attempts: u32,
    error: Option<String>,
    stats: &'a Stats,
    bytes_in: u64,
}

impl Pending<'_> {
    /// Counts and records the request once its response has been sent (or abandoned).
    fn finish(self, sinks: &Sinks, status: u16, bytes_out: u64) {
        let duration = self.started.elapsed();
        self.stats.observe(status, duration);
        let member = self.member;
        let route = self.route;
        if let Some(log) = &sinks.log {
            let line = Line {
                start: self.start,
                duration,
                trace_id: &self.trace.trace_id,
                span_id: &self.trace.span_id,
                request_id: &self.request_id,
                client_ip: &self.client_ip,
                method: self.method,
                path: self.path,
                route: route.map(|r| &*r.name),
                service: route.map(|r| &*r.service),
                version: member.map(|m| &*m.version),
                pool: member.map(|m| &*m.pool),
                upstream: member.map(|m| &*m.address_text),
                attempts: self.attempts,
                status,
                error: self.error.as_deref(),
                bytes_in: self.bytes_in,
                bytes_out,
            };
            if !log.write(&line) {
                sinks
                    .metrics
                    .access_log_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(spans) = &sinks.spans {
            let record = Arc::new(Record {
                start: self.start,
                duration,
                version: member.map(|m| m.version.clone()),
                upstream: member.map(|m| m.address),
                trace_id: self.trace.trace_id,
                span_id: self.trace.span_id,
                parent_span_id: self.trace.parent_span_id,
                tracestate: self.trace.tracestate,
                request_id: self.request_id,
                client_ip: self.client_ip,
                method: self.method.to_string(),
                path: self.path.to_string(),
                route: route.map(|r| r.name.clone()),
                service: route.map(|r| r.service.clone()),
                status,
                error: self.error,
                bytes_in: self.bytes_in,
                bytes_out,
            });
            if !spans.offer(record) {
                sinks.metrics.spans_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Whether a client connection carries on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    KeepAlive,
    Close,
}

/// A client connection: the stream and what has been read from it but not used yet.
struct Client {
    stream: TcpStream,
    buf: BytesMut,
    /// The request being handled asked to close the connection after it.
    closing: bool,
    /// The client's address as `X-Forwarded-For` and `Forwarded` write it.
    ip: Arc<str>,
    node: String,
}

/// What the upstream request is made from.
struct Request<'a> {
    head: &'a Head,
    /// Path and query, in origin form.
    target: &'a str,
    /// The authority of an absolute-form target.
    authority: Option<&'a str>,
    /// The `Host` field.
    host: Option<&'a str>,
    framing: Framing,
    endpoint: SocketAddr,
    /// The protocol the client asks to switch to (`Upgrade`), passed on.
    upgrade: Option<&'a [u8]>,
}

/// The upstream request as [`Proxy::send`] writes it.
struct Outgoing<'a> {
    head: &'a [u8],
    framing: Framing,
    expects_continue: bool,
    /// Idempotent and bodiless: may be sent again.
    retriable: bool,
    max_body: u64,
    /// The client speaks HTTP/1.1 (and the upstream request is HTTP/1.1).
    http11: bool,
    /// The request asks for a protocol switch: a 101 is its final answer.
    upgrade: bool,
    /// When the request began.
    started: Instant,
}

/// A connection's buffers, reused from request to request.
struct Buffers {
    /// Read from the upstream.
    upstream: BytesMut,
    /// The upstream request head.
    request: Vec<u8>,
    /// The response head (and first body bytes) for the client.
    response: Vec<u8>,
}

/// Methods that may be sent twice (RFC 9110, section 9.2.2).
fn idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    )
}

/// A usable `x-request-id`: visible ASCII, not too long to log.
fn valid_request_id(v: &[u8]) -> bool {
    (1..=200).contains(&v.len()) && v.iter().all(|c| (0x21..=0x7e).contains(c))
}

/// `for=` node of `Forwarded` (RFC 7239): IPv6 addresses quoted and bracketed.
fn forwarded_node(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

/// The path and query of a request target, in origin form, and the authority
/// of an absolute-form target.
pub(crate) fn origin_form(target: &str) -> (&str, Option<&str>) {
    let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    else {
        return (target, None);
    };
    match rest.find('/') {
        Some(i) => (&rest[i..], Some(&rest[..i])),
        None => ("/", Some(rest)),
    }
}

/// Resolves when the gateway shuts down (or is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// A response the gateway writes itself: status, plain-text body, and the
/// request's trace and request ids when it has them.
fn local_response(
    out: &mut Vec<u8>,
    status: u16,
    body: &str,
    ids: Option<(&str, &str)>,
    close: bool,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    h1::put_number(out, u64::from(status));
    out.push(b' ');
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    h1::put_number(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    if let Some((trace_id, request_id)) = ids {
        h1::put_field(out, b"x-trace-id", trace_id.as_bytes());
        h1::put_field(out, b"x-request-id", request_id.as_bytes());
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// How a forwarded exchange failed before a response head arrived.
enum Failure {
    Connect(std::io::Error),
    Timeout,
    /// The upstream closed or reset the connection (`fresh`: nothing of a
    /// response had arrived, so an unchanged request may be sent again).
    Reset {
        detail: String,
        fresh: bool,
    },
    Protocol(String),
    /// The client's body broke a limit or its framing, or the client left.
    ClientBody(ClientBody),
}

enum ClientBody {
    OverLimit,
    Malformed(&'static str),
    Gone,
}

fn reset(e: &std::io::Error, fresh: bool) -> Failure {
    Failure::Reset {
        detail: e.to_string(),
        fresh,
    }
}

impl Proxy {
    /// Serves one client connection until the client closes it, it idles past
    /// the limit, a head is too slow, too large or malformed, or the gateway
    /// shuts down (a request in flight finishes first).
    pub async fn serve(
        &self,
        stream: TcpStream,
        address: SocketAddr,
        limits: &Limits,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut client = Client {
            stream,
            buf: BytesMut::with_capacity(BUFFER),
            closing: false,
            ip: address.ip().to_string().into(),
            node: forwarded_node(address.ip()),
        };
        let mut buffers = Buffers {
            upstream: BytesMut::with_capacity(BUFFER),
            request: Vec::with_capacity(1024),
            response: Vec::with_capacity(BUFFER),
        };
        let stop = stopping(&mut shutdown);
        let mut stop = std::pin::pin!(stop);
        let mut waiting_since = Instant::now();
        let mut head_started: Option<Instant> = None;
        let timer = tokio::time::sleep(limits.idle_timeout.min(limits.header_timeout));
        let mut timer = std::pin::pin!(timer);
        loop {
            let head = loop {
                if !client.buf.is_empty() {
                    match Head::request(&mut client.buf) {
                        Ok(Some(head)) => break head,
                        Ok(None) if client.buf.len() >= limits.max_header_bytes => {
                            return self
                                .refuse(&mut client, 431, "request head too large\n")
                                .await;
                        }
                        Ok(None) if head_started.is_none() => {
                            // The head has begun: from now on its own deadline applies.
                            let started = Instant::now();
                            head_started = Some(started);
                            let deadline = (started + limits.header_timeout).into();
                            if timer.deadline() > deadline {
                                timer.as_mut().reset(deadline);
                            }
                        }
                        Ok(None) => {}
                        Err(HeadError::TooManyHeaders) => {
                            return self
                                .refuse(&mut client, 431, "too many header fields\n")
                                .await;
                        }
                        Err(e) => {
                            let body = format!("malformed request: {}\n", e.describe());
                            return self.refuse(&mut client, 400, &body).await;
                        }
                    }
                }
                client.buf.reserve(BUFFER);
                tokio::select! {
                    biased;
                    read = client.stream.read_buf(&mut client.buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    },
                    () = timer.as_mut() => {
                        let deadline = match head_started {
                            Some(t) => t + limits.header_timeout,
                            None => waiting_since + limits.idle_timeout,
                        };
                        if Instant::now() >= deadline {
                            return;
                        }
                        timer.as_mut().reset(deadline.into());
                    }
                    () = stop.as_mut(), if client.buf.is_empty() => return,
                }
            };
            head_started = None;
            let next = self.exchange(&mut client, head, limits, &mut buffers).await;
            if next == Next::Close {
                let _ = client.stream.shutdown().await;
                // A client still sending a body the gateway did not read (an
                // early answer, a refusal) would make closing now a reset,
                // which can destroy the answer before the client reads it
                // (RFC 9112, section 9.6): read on and drop what comes, until
                // the client closes too, for a bounded time.
                let drain = async {
                    loop {
                        client.buf.clear();
                        client.buf.reserve(BUFFER);
                        match client.stream.read_buf(&mut client.buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                };
                tokio::select! {
                    _ = tokio::time::timeout(LINGER, drain) => {}
                    () = stop.as_mut() => {}
                }
                return;
            }
            waiting_since = Instant::now();
        }
    }

    /// Answers a request the gateway could not read, and closes.
    async fn refuse(&self, client: &mut Client, status: u16, body: &str) {
        let mut out = Vec::with_capacity(256);
        local_response(&mut out, status, body, None, true);
        let _ = client.stream.write_all(&out).await;
        let _ = client.stream.shutdown().await;
    }

    /// Handles one request: everything from routing to the last byte of the response.
    async fn exchange(
        &self,
        client: &mut Client,
        head: Head,
        limits: &Limits,
        buffers: &mut Buffers,
    ) -> Next {
        let Buffers {
            upstream: upstream_buf,
            request: request_out,
            response: out,
        } = buffers;
        let started = Instant::now();
        let framing = request_framing(&head);
        let trace = trace::at_edge(&head);
        let request_id = match head.get("x-request-id") {
            Some(v) if valid_request_id(v) => String::from_utf8_lossy(v).into_owned(),
            _ => trace::request_id(),
        };
        let method = head.method();
        let (target, authority) = origin_form(head.target());
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        // Two Host fields, or none in an HTTP/1.1 request, is a 400 (RFC 9112,
        // section 3.2), in absolute form too: the section requires the field of
        // every HTTP/1.1 client, whatever the target's form.
        let (host_field, host_error) = match h1::request_host(&head) {
            Ok(None) if head.minor == 1 => (None, Some("no Host field")),
            Ok(h) => (h.and_then(|h| std::str::from_utf8(h).ok()), None),
            Err(why) => (None, Some(why)),
        };
        // An absolute-form target's authority wins over Host (RFC 9112, section 3.2.2).
        let host = authority.or(host_field);
        // One table for the whole request: routing and endpoint choice see one generation.
        let table = self.shared.table();
        let route = table.matching(method, host, path, &head);
        let mut pending = Pending {
            started,
            start: SystemTime::now(),
            request_id,
            client_ip: client.ip.clone(),
            method,
            path,
            route,
            member: None,
            attempts: 0,
            error: None,
            stats: &table.unrouted,
            bytes_in: 0,
            trace,
        };
        let pools = route.and_then(|r| table.pools(&r.service));
        client.closing = if head.minor == 0 {
            !head.lists("connection", "keep-alive")
        } else {
            head.lists("connection", "close")
        };
        if let Some(why) = host_error {
            let body = format!("malformed request: {why}\n");
            return self.answer(client, out, pending, 400, &body, true).await;
        }
        let framing = match framing {
            Ok(Framing::Chunked) if head.minor == 0 => {
                let why = "malformed request: Transfer-Encoding in an HTTP/1.0 request";
                return self
                    .answer(client, out, pending, 400, &format!("{why}\n"), true)
                    .await;
            }
            Ok(f) => f,
            Err(why) => {
                return self
                    .answer(client, out, pending, 400, &format!("{why}\n"), true)
                    .await;
            }
        };
        // A body left unread cannot be skipped reliably: the connection closes after the answer.
        let unread = framing != Framing::Empty;
        let Some(pools) = pools else {
            pending.error = Some("no route".into());
            return self
                .answer(
                    client,
                    out,
                    pending,
                    404,
                    "no route for this host and path\n",
                    unread,
                )
                .await;
        };
        pending.stats = &pools.unserved;
        if method == "CONNECT" {
            pending.error = Some("CONNECT".into());
            return self
                .answer(
                    client,
                    out,
                    pending,
                    501,
                    "CONNECT is not supported\n",
                    true,
                )
                .await;
        }
        let max_body = limits.max_body_bytes;
        if let Framing::Length(n) = framing
            && n > max_body
        {
            pending.error = Some("request body too large".into());
            let body = format!("request body over the limit of {max_body} bytes\n");
            return self.answer(client, out, pending, 413, &body, true).await;
        }
        let mut member = match pools.choose(&[]) {
            Ok(m) => m,
            Err(reason) => {
                let message = no_endpoint(pending.route.map_or("", |r| &*r.service), reason);
                pending.error = Some(message.clone());
                return self
                    .answer(client, out, pending, 503, &(message + "\n"), unread)
                    .await;
            }
        };
        let upstream = &pools.upstream;
        // A protocol switch the client asks for (WebSocket, say) is passed on;
        // if the upstream agrees with a 101, the two connections are joined
        // (RFC 9110, section 7.8). Only a bodiless HTTP/1.1 request may ask.
        let upgrade =
            (head.minor == 1 && framing == Framing::Empty && head.lists("connection", "upgrade"))
                .then(|| head.get("upgrade"))
                .flatten();
        // Only a request that can be sent again unchanged is retried: idempotent, no body.
        let retriable = idempotent(method) && framing == Framing::Empty;
        let expects_continue = head.lists("expect", "100-continue");
        let mut tried: Vec<SocketAddr> = Vec::new();
        let connections = &self.shared.registry.connections;
        let (mut stream, response, whole) = loop {
            pending.attempts += 1;
            pending.stats = &member.stats;
            pending.member = Some(member);
            let request = Request {
                head: &head,
                target,
                authority,
                host: host_field,
                framing,
                endpoint: member.address,
                upgrade,
            };
            upstream_head(request_out, &request, &pending, client);
            let outgoing = Outgoing {
                head: request_out,
                framing,
                expects_continue,
                retriable,
                max_body,
                http11: head.minor == 1,
                upgrade: upgrade.is_some(),
                started,
            };
            let failure = match self
                .send(
                    client,
                    member.address,
                    upstream,
                    &outgoing,
                    upstream_buf,
                    &mut pending.bytes_in,
                )
                .await
            {
                Ok(done) => break done,
                Err(f) => f,
            };
            let (status, message, kind) = match failure {
                Failure::ClientBody(ClientBody::OverLimit) => {
                    pending.error = Some("request body too large".into());
                    let body = format!("request body over the limit of {max_body} bytes\n");
                    return self.answer(client, out, pending, 413, &body, true).await;
                }
                Failure::ClientBody(ClientBody::Malformed(why)) => {
                    pending.error = Some(why.into());
                    return self
                        .answer(client, out, pending, 400, &format!("{why}\n"), true)
                        .await;
                }
                Failure::ClientBody(ClientBody::Gone) => {
                    pending.error = Some("client closed the connection during the body".into());
                    pending.finish(&self.sinks, 400, 0);
                    return Next::Close;
                }
                Failure::Timeout => (
                    504,
                    format!(
                        "upstream {} sent no response within {}",
                        member.address,
                        yaml::format_duration(upstream.request_timeout)
                    ),
                    UpstreamError::Timeout,
                ),
                Failure::Connect(e) => (
                    502,
                    format!("upstream {} failed (connect): {e}", member.address),
                    UpstreamError::Connect,
                ),
                Failure::Reset { detail, .. } => (
                    502,
                    format!("upstream {} failed (reset): {detail}", member.address),
                    UpstreamError::Reset,
                ),
                Failure::Protocol(detail) => (
                    502,
                    format!("upstream {} failed (protocol): {detail}", member.address),
                    UpstreamError::Protocol,
                ),
            };
            pools.errors.count(kind);
            member.cell.failed(upstream.ejection.as_ref());
            if kind == UpstreamError::Connect && retriable && pending.attempts <= upstream.retries {
                tried.push(member.address);
                if let Ok(next) = pools.choose(&tried) {
                    member = next;
                    continue;
                }
            }
            pending.error = Some(message.clone());
            return self
                .answer(client, out, pending, status, &(message + "\n"), unread)
                .await;
        };
        if response.status >= 500 {
            member.cell.failed(upstream.ejection.as_ref());
        } else {
            member.cell.succeeded();
        }
        if response.status == 101 {
            if self
                .switch(client, &mut stream, &response, pending, upstream_buf, out)
                .await
            {
                join(&mut client.stream, &mut stream, limits.tunnel_idle_timeout).await;
            }
            return Next::Close;
        }
        let body = match h1::response_framing(&response, method == "HEAD") {
            Ok(f) => f,
            Err(why) => {
                pools.errors.count(UpstreamError::Protocol);
                let message = format!("upstream {} failed (protocol): {why}", member.address);
                pending.error = Some(message.clone());
                return self
                    .answer(client, out, pending, 502, &(message + "\n"), true)
                    .await;
            }
        };
        // An answer that came before the whole body: the rest of the client's
        // body was never read and the upstream connection is broken, so both close.
        client.closing |= !whole;
        let upstream_keeps = whole
            && if head.minor == 1 {
                response.minor == 1 && !response.lists("connection", "close")
            } else {
                response.lists("connection", "keep-alive")
            };
        let keep_alive = !client.closing && body != Framing::UntilClose;
        response_head(out, &response, &pending, keep_alive, head.minor == 0);
        let status = response.status;
        drop(response);
        let started = pending.started;
        let sinks = &self.sinks;
        let mut pending = Some(pending);
        let relayed = relay(
            &mut stream,
            upstream_buf,
            &mut client.stream,
            body,
            out,
            |bytes| {
                if let Some(p) = pending.take() {
                    p.finish(sinks, status, bytes);
                }
            },
        )
        .await;
        let (error, bytes_out, next) = match relayed {
            Ok(_) => {
                if upstream_keeps && body != Framing::UntilClose && upstream_buf.is_empty() {
                    connections.put(member.address, stream, started);
                }
                let next = if keep_alive {
                    Next::KeepAlive
                } else {
                    Next::Close
                };
                return next;
            }
            Err(Relay::Upstream(bytes, e)) => {
                pools.errors.count(UpstreamError::Reset);
                let error = format!(
                    "upstream {} failed (reset) during the response body: {e}",
                    member.address
                );
                (error, bytes, Next::Close)
            }
            Err(Relay::Client(bytes)) => (
                "client closed the connection during the response".to_string(),
                bytes,
                Next::Close,
            ),
        };
        // Not recorded yet when the body broke off before its last piece.
        if let Some(mut p) = pending {
            p.error = Some(error);
            p.finish(&self.sinks, status, bytes_out);
        }
        next
    }

    /// Writes the request upstream (on a kept-alive connection when there is one)
    /// and reads the response head, within the service's request timeout; the
    /// flag is false when the upstream answered before taking the whole body.
    async fn send(
        &self,
        client: &mut Client,
        address: SocketAddr,
        upstream: &Upstream,
        outgoing: &Outgoing<'_>,
        upstream_buf: &mut BytesMut,
        bytes_in: &mut u64,
    ) -> Result<(TcpStream, Head, bool), Failure> {
        let connections = &self.shared.registry.connections;
        let mut reused = connections.take(address, outgoing.started);
        loop {
            let was_reused = reused.is_some();
            let mut stream = match reused.take() {
                Some(s) => s,
                None => upstream::connect(address, upstream.connect_timeout)
                    .await
                    .map_err(Failure::Connect)?,
            };
            upstream_buf.clear();
            let exchange = async {
                let cut_off = match send_request(client, &mut stream, outgoing, bytes_in).await {
                    Ok(()) => None,
                    // The upstream may have answered before the whole body
                    // arrived and closed (a 413, say): that answer is read
                    // and passed on, and only without one is this a failure.
                    Err(f @ Failure::Reset { fresh: false, .. }) => Some(f),
                    Err(f) => return Err(f),
                };
                // HTTP/1.0 clients know no informational answers.
                let informational = outgoing.http11.then_some(&mut client.stream);
                let head =
                    read_response_head(&mut stream, upstream_buf, informational, outgoing.upgrade)
                        .await;
                match (head, cut_off) {
                    (Ok(head), cut_off) => Ok((head, cut_off.is_none())),
                    (Err(_), Some(f)) | (Err(f), None) => Err(f),
                }
            };
            match tokio::time::timeout(upstream.request_timeout, exchange).await {
                Ok(Ok((head, whole))) => return Ok((stream, head, whole)),
                // A kept-alive connection the upstream closed meanwhile: once more on a new one.
                Ok(Err(Failure::Reset { fresh: true, .. })) if was_reused && outgoing.retriable => {
                }
                Ok(Err(f)) => return Err(f),
                Err(_) => return Err(Failure::Timeout),
            }
        }
    }

    /// Passes a 101 on and readies the two connections to be joined (then the
    /// switched protocol's bytes go both ways unchanged, see [`join`]); false
    /// when either side is already gone. The request is recorded with the
    /// 101, before the client sees it; the tunnel's own bytes are not counted.
    async fn switch(
        &self,
        client: &mut Client,
        stream: &mut TcpStream,
        response: &Head,
        pending: Pending<'_>,
        upstream_buf: &mut BytesMut,
        out: &mut Vec<u8>,
    ) -> bool {
        response_head(out, response, &pending, true, false);
        pending.finish(&self.sinks, 101, 0);
        // What either side sent right after its head already belongs to the new protocol.
        out.extend_from_slice(upstream_buf);
        upstream_buf.clear();
        if client.stream.write_all(out).await.is_err() {
            return false;
        }
        if !client.buf.is_empty() {
            if stream.write_all(&client.buf).await.is_err() {
                return false;
            }
            client.buf.clear();
        }
        true
    }

    /// Answers the request itself and records it; `close` (a request body was
    /// left unread, or the request was malformed) closes the connection after it.
    async fn answer(
        &self,
        client: &mut Client,
        out: &mut Vec<u8>,
        pending: Pending<'_>,
        status: u16,
        body: &str,
        close: bool,
    ) -> Next {
        let close = close || client.closing;
        local_response(
            out,
            status,
            body,
            Some((&pending.trace.trace_id, &pending.request_id)),
            close,
        );
        // Counted before the client can see the answer, so whoever it tells
        // next (a test, a rollout gate reading /metrics) sees it counted.
        pending.finish(&self.sinks, status, body.len() as u64);
        let written = client.stream.write_all(out).await.is_ok();
        if close || !written {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }
}

fn request_framing(head: &Head) -> Result<Framing, String> {
    h1::request_framing(head).map_err(|why| format!("malformed request: {why}"))
}

fn no_endpoint(service: &str, reason: NoEndpoint) -> String {
    match reason {
        NoEndpoint::NoneLive => format!("service {service} has no live endpoint"),
        NoEndpoint::AllDown => {
            format!("service {service}: every live endpoint is ejected or failing health checks")
        }
    }
}

/// The request head sent upstream: the client's fields less hop-by-hop ones,
/// with trace context, request id and the `X-Forwarded-*` / `Forwarded` fields set.
/// An HTTP/1.0 client's request goes as HTTP/1.0 (asking to keep the connection
/// alive), so that the answer comes in a framing that client can read.
fn upstream_head(out: &mut Vec<u8>, request: &Request<'_>, pending: &Pending<'_>, client: &Client) {
    let head = request.head;
    out.clear();
    out.extend_from_slice(head.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.target.as_bytes());
    out.extend_from_slice(if head.minor == 0 {
        b" HTTP/1.0\r\nconnection: keep-alive\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    const REPLACED: [&[u8]; 7] = [
        b"x-forwarded-for",
        b"forwarded",
        b"x-forwarded-proto",
        b"traceparent",
        b"tracestate",
        b"x-request-id",
        b"expect",
    ];
    let hop = h1::HopByHop::of(head);
    for (name, value) in head.fields() {
        if REPLACED.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            continue;
        }
        // An absolute-form target's authority replaces Host (RFC 9112, section 3.2.2).
        let skip = hop.contains(name)
            || (name.eq_ignore_ascii_case(b"host") && request.authority.is_some())
            || (name.eq_ignore_ascii_case(b"transfer-encoding")
                && request.framing != Framing::Chunked);
        if !skip {
            h1::put_field(out, name, value);
        }
    }
    match (request.authority, request.host) {
        (Some(authority), _) => h1::put_field(out, b"host", authority.as_bytes()),
        (None, None) => h1::put_field(out, b"host", request.endpoint.to_string().as_bytes()),
        (None, Some(_)) => {}
    }
    // Earlier hops' entries come first, every field of them in order: several
    // fields of one name are one comma-separated list (RFC 9110, section 5.3).
    out.extend_from_slice(b"x-forwarded-for: ");
    for earlier in head.values("x-forwarded-for") {
        out.extend_from_slice(earlier);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client.ip.as_bytes());
    out.extend_from_slice(b"\r\nforwarded: ");
    for earlier in head.values("forwarded") {
        out.extend_from_slice(earlier);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"for=");
    out.extend_from_slice(client.node.as_bytes());
    out.extend_from_slice(b";proto=http");
    if let Some(h) = request.host {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(h.as_bytes());
        out.push(b'"');
    }
    // This listener is plain HTTP: whatever the client claimed is replaced.
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
    h1::put_field(out, b"traceparent", pending.trace.traceparent.as_bytes());
    if let Some(state) = &pending.trace.tracestate {
        h1::put_field(out, b"tracestate", state.as_bytes());
    }
    h1::put_field(out, b"x-request-id", pending.request_id.as_bytes());
    if let Some(protocol) = request.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
        h1::put_field(out, b"upgrade", protocol);
    }
    out.extend_from_slice(b"\r\n");
}

/// The response head sent to the client: the upstream's fields less hop-by-hop
/// ones, with the trace and request ids.
fn response_head(
    out: &mut Vec<u8>,
    response: &Head,
    pending: &Pending,
    keep_alive: bool,
    http10: bool,
) {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    h1::put_number(out, u64::from(response.status));
    out.push(b' ');
    out.extend_from_slice(response.reason());
    out.extend_from_slice(b"\r\n");
    let hop = h1::HopByHop::of(response);
    // A 101 names the protocol switched to; the connection then carries it.
    let switching = response.status == 101;
    for (name, value) in response.fields() {
        let switched_to = switching && name.eq_ignore_ascii_case(b"upgrade");
        if (hop.contains(name) && !switched_to)
            || name.eq_ignore_ascii_case(b"x-trace-id")
            || name.eq_ignore_ascii_case(b"x-request-id")
        {
            continue;
        }
        h1::put_field(out, name, value);
    }
    h1::put_field(out, b"x-trace-id", pending.trace.trace_id.as_bytes());
    h1::put_field(out, b"x-request-id", pending.request_id.as_bytes());
    if switching {
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the request head and passes the body on. A body already read with
/// the head goes in the same write.
async fn send_request(
    client: &mut Client,
    stream: &mut TcpStream,
    outgoing: &Outgoing<'_>,
    bytes_in: &mut u64,
) -> Result<(), Failure> {
    let Outgoing {
        head: request_head,
        framing,
        expects_continue,
        max_body,
        ..
    } = *outgoing;
    let write_failed = |e: std::io::Error| reset(&e, true);
    match framing {
        Framing::Empty | Framing::UntilClose => {
            return stream.write_all(request_head).await.map_err(write_failed);
        }
        Framing::Length(n) if client.buf.len() as u64 >= n => {
            let body = client.buf.split_to(n as usize);
            *bytes_in = n;
            let mut bufs = [
                std::io::IoSlice::new(request_head),
                std::io::IoSlice::new(&body),
            ];
            return write_all_vectored(stream, &mut bufs)
                .await
                .map_err(write_failed);
        }
        _ => {}
    }
    stream.write_all(request_head).await.map_err(write_failed)?;
    if expects_continue && client.buf.is_empty() {
        client
            .stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| Failure::ClientBody(ClientBody::Gone))?;
    }
    let mut remaining = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut chunks = Chunked::default();
    loop {
        if !client.buf.is_empty() {
            let take = match framing {
                Framing::Length(_) => client
                    .buf
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX)),
                _ => chunks
                    .scan(&client.buf)
                    .map_err(|e| Failure::ClientBody(ClientBody::Malformed(e.0)))?,
            };
            let piece = client.buf.split_to(take);
            match framing {
                Framing::Length(_) => {
                    remaining -= take as u64;
                    *bytes_in += take as u64;
                }
                _ => *bytes_in = chunks.data(),
            }
            if *bytes_in > max_body {
                return Err(Failure::ClientBody(ClientBody::OverLimit));
            }
            stream
                .write_all(&piece)
                .await
                .map_err(|e| reset(&e, false))?;
            let done = match framing {
                Framing::Length(_) => remaining == 0,
                _ => chunks.done(),
            };
            if done {
                return Ok(());
            }
        }
        client.buf.reserve(BUFFER);
        match client.stream.read_buf(&mut client.buf).await {
            Ok(0) | Err(_) => return Err(Failure::ClientBody(ClientBody::Gone)),
            Ok(_) => {}
        }
    }
}

/// Copies bytes both ways between two joined connections until both
/// directions have ended, either side fails, or nothing has been read on
/// either side for `idle` (a peer that stops reading holds its direction's
/// write, which moves nothing, so it is cut off too).
async fn join(client: &mut TcpStream, upstream: &mut TcpStream, idle: Duration) {
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    // When a byte was last read, as time since `opened`.
    let opened = Instant::now();
    let moved = AtomicU64::new(0);
    let both = async {
        tokio::try_join!(
            pipe(&mut client_read, &mut upstream_write, opened, &moved),
            pipe(&mut upstream_read, &mut client_write, opened, &moved),
        )
    };
    let watch = async {
        loop {
            let deadline = opened + Duration::from_nanos(moved.load(Ordering::Relaxed)) + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    };
    tokio::select! {
        _ = both => {}
        () = watch => {}
    }
}

/// One direction of [`join`]: what `from` sends goes to `to`; when `from`
/// ends, `to` is shut down for writing, as the sender meant. An error on
/// either side ends the whole tunnel.
async fn pipe<R, W>(
    from: &mut R,
    to: &mut W,
    opened: Instant,
    moved: &AtomicU64,
) -> std::io::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let since = u64::try_from(opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        moved.store(since, Ordering::Relaxed);
        to.write_all(&buf[..n]).await?;
    }
}

async fn write_all_vectored(
    stream: &mut TcpStream,
    mut bufs: &mut [std::io::IoSlice<'_>],
) -> std::io::Result<()> {
    while !bufs.is_empty() {
        let n = stream.write_vectored(bufs).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Reads the final response head (informational 1xx heads are skipped, but
/// for a 101 answering a request that asked to `upgrade`). Informational
/// answers go on to `client` when given (RFC 9110, section 15.2).
async fn read_response_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mut client: Option<&mut TcpStream>,
    upgrade: bool,
) -> Result<Head, Failure> {
    let mut fresh = true;
    loop {
        if !buf.is_empty() {
            match Head::response(buf) {
                Ok(Some(head)) if head.status == 101 && upgrade => return Ok(head),
                Ok(Some(head)) if head.status == 101 => {
                    return Err(Failure::Protocol(
                        "101 Switching Protocols without an upgrade".into(),
                    ));
                }
                Ok(Some(head)) if head.status < 200 => {
                    if let Some(client) = client.as_deref_mut() {
                        client
                            .write_all(head.bytes())
                            .await
                            .map_err(|_| Failure::ClientBody(ClientBody::Gone))?;
                    }
                    continue;
                }
                Ok(Some(head)) => return Ok(head),
                Ok(None) if buf.len() >= MAX_RESPONSE_HEAD => {
                    return Err(Failure::Protocol(format!(
                        "response head over {MAX_RESPONSE_HEAD} bytes"
                    )));
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::Protocol(e.describe().into())),
            }
        }
        buf.reserve(BUFFER);
        match stream.read_buf(buf).await {
            Ok(0) => {
                return Err(Failure::Reset {
                    detail: "connection closed before the response".into(),
                    fresh,
                });
            }
            Ok(_) => fresh = false,
            Err(e) => return Err(reset(&e, fresh)),
        }
    }
}

/// Which side failed while a response body was relayed, and the body bytes sent.
enum Relay {
    Upstream(u64, std::io::Error),
    Client(u64),
}

/// Sends the response head in `out` and relays the body that follows it;
/// returns the body bytes (data only, for a chunked body) sent. `last` runs
/// with that count just before the last piece goes out (for a body that ends
/// with the upstream closing, once it has closed), so that the request is
/// recorded before the client can see it finished.
async fn relay(
    upstream: &mut TcpStream,
    buf: &mut BytesMut,
    client: &mut TcpStream,
    framing: Framing,
    out: &mut Vec<u8>,
    last: impl FnOnce(u64),
) -> Result<u64, Relay> {
    let mut last = Some(last);
    let mut remaining = match framing {
        Framing::Empty => 0,
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => u64::MAX,
    };
    let mut chunks = Chunked::default();
    let mut sent = 0u64;
    let mut first = true;
    loop {
        let take = match framing {
            Framing::Empty => 0,
            Framing::Length(_) => buf
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX)),
            Framing::UntilClose => buf.len(),
            Framing::Chunked => chunks.scan(buf).map_err(|e| {
                Relay::Upstream(
                    sent,
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.0),
                )
            })?,
        };
        let piece = buf.split_to(take);
        match framing {
            Framing::Chunked => sent = chunks.data(),
            _ => {
                sent += take as u64;
                remaining = remaining.saturating_sub(take as u64);
            }
        }
        let done = match framing {
            Framing::Empty => true,
            Framing::Length(_) => remaining == 0,
            Framing::Chunked => chunks.done(),
            Framing::UntilClose => false,
        };
        if done && let Some(last) = last.take() {
            last(sent);
        }
        let written = if first {
            // The head and what came with it in one write.
            first = false;
            out.extend_from_slice(&piece);
            client.write_all(out).await
        } else {
            client.write_all(&piece).await
        };
        if written.is_err() {
            return Err(Relay::Client(sent));
        }
        if done {
            return Ok(sent);
        }
        buf.reserve(BUFFER);
        match upstream.read_buf(buf).await {
            Ok(0) if framing == Framing::UntilClose => {
                if let Some(last) = last.take() {
                    last(sent);
                }
                return Ok(sent);
            }
            Ok(0) => {
                return Err(Relay::Upstream(
                    sent,
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(Relay::Upstream(sent, e)),
        }
    }
}
