//! The listeners: the proxy (routes, picks, forwards, logs) and the admin API.

use crate::config::{Config, Labels, WeightedSelector};
use crate::state::{Change, ChangeError, Shared};
use crate::trace;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, hyper::Error>;

/// How the gateway runs besides its configuration file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the admin API listens; `None` runs without one.
    pub admin: Option<SocketAddr>,
    /// The admin API's bearer token; required unless `admin` is a loopback address.
    pub admin_token: Option<String>,
    /// Write one JSON line per request to stdout.
    pub access_log: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("refusing admin API on non-loopback {0} without a token")]
    AdminWithoutToken(SocketAddr),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// A running gateway: its listeners are served by tasks on the runtime that bound them.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    proxy_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
}

impl Gateway {
    /// Binds every listener and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A listener that cannot be bound, or a non-loopback admin address without a token.
    pub async fn bind(config: Config, options: Options) -> Result<Gateway, Error> {
        if let Some(admin) = options.admin
            && !admin.ip().is_loopback()
            && options.admin_token.as_deref().is_none_or(str::is_empty)
        {
            return Err(Error::AdminWithoutToken(admin));
        }
        let mut listeners = Vec::new();
        for &address in &config.listeners {
            listeners.push(bind(address).await?);
        }
        let admin = match options.admin {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        let shared = Arc::new(Shared::new(config));
        let log = options.access_log.then(access_log);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector);
        let proxy = Arc::new(Proxy {
            shared: shared.clone(),
            client,
            log,
        });
        let proxy_addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        for listener in listeners {
            let proxy = proxy.clone();
            serve(listener, move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, Infallible>(proxy.handle(req).await) }
            });
        }
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(listener) = admin {
            let admin = Arc::new(Admin {
                shared: shared.clone(),
                token: options.admin_token,
            });
            serve(listener, move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(req).await) }
            });
        }
        Ok(Gateway {
            shared,
            proxy_addrs,
            admin_addr,
        })
    }

    pub fn proxy_addrs(&self) -> &[SocketAddr] {
        &self.proxy_addrs
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The live state, for callers embedding the gateway.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// Runs a gateway on its own runtime until Ctrl-C; `on_bound` sees it once every
/// listener is bound (the CLI prints the addresses there).
///
/// # Errors
///
/// As [`Gateway::bind`], or a runtime that cannot start.
pub fn run(config: Config, options: Options, on_bound: impl FnOnce(&Gateway)) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async {
        let gateway = Gateway::bind(config, options).await?;
        on_bound(&gateway);
        let _ = tokio::signal::ctrl_c().await;
        Ok(())
    })
}

async fn bind(address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind { address, source })
}

fn serve<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, usually: back off instead of spinning on the error.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handler))
                    .await;
            });
        }
    });
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = text(status, format!("{value}\n"));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Headers that describe one connection, not the request (RFC 9110, section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

struct Proxy {
    shared: Arc<Shared>,
    client: Client<HttpConnector, Incoming>,
    log: Option<std::sync::mpsc::Sender<String>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    async fn handle(&self, mut req: Request<Incoming>) -> Response<Body> {
        let start = Instant::now();
        // One table for the whole request: routing and endpoint choice see one generation.
        let table = self.shared.table();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(req.uri().host())
            .map(str::to_string);
        let trace = trace::at_edge(req.headers());
        let service = table
            .route(method.as_str(), host.as_deref(), &path, req.headers())
            .map(str::to_string);
        let pick = service.as_deref().and_then(|s| table.pick(s));
        drop(table);
        let mut response = match (&service, &pick) {
            (None, _) => text(StatusCode::NOT_FOUND, "no route for this host and path\n"),
            (Some(s), None) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("service {s} has no live endpoint\n"),
            ),
            (Some(_), Some(pick)) => {
                let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str());
                match format!("http://{}{path_and_query}", pick.address).parse() {
                    Ok(uri) => *req.uri_mut() = uri,
                    Err(_) => return text(StatusCode::BAD_REQUEST, "bad request target\n"),
                }
                let headers = req.headers_mut();
                for name in HOP_BY_HOP {
                    headers.remove(name);
                }
                if !trace.continued {
                    headers.remove("tracestate");
                }
                if let Ok(v) = HeaderValue::from_str(&trace.traceparent) {
                    headers.insert("traceparent", v);
                }
                match self.client.request(req).await {
                    Ok(upstream) => upstream.map(BodyExt::boxed),
                    Err(e) => text(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream {}: {e}\n", pick.address),
                    ),
                }
            }
        };
        if let Ok(v) = HeaderValue::from_str(&trace.trace_id) {
            response.headers_mut().insert("x-trace-id", v);
        }
        if let Some(log) = &self.log {
            let line = serde_json::json!({
                "method": method.as_str(),
                "path": path,
                "status": response.status().as_u16(),
                "duration_ms": start.elapsed().as_secs_f64() * 1000.0,
                "service": service,
                "pool": pick.as_ref().map(|p| p.pool.as_str()),
                "endpoint": pick.as_ref().map(|p| p.address.to_string()),
                "trace_id": trace.trace_id,
                "span_id": trace.span_id,
            });
            let _ = log.send(line.to_string());
        }
        response
    }
}

/// A thread that writes access-log lines to stdout, so a request never waits on the terminal.
fn access_log() -> std::sync::mpsc::Sender<String> {
    use std::io::Write as _;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut out = std::io::BufWriter::new(std::io::stdout());
        while let Ok(line) = rx.recv() {
            let _ = writeln!(out, "{line}");
            // Flush once the queue is empty: batches under load, promptly when idle.
            while let Ok(line) = rx.try_recv() {
                let _ = writeln!(out, "{line}");
            }
            if out.flush().is_err() {
                return;
            }
        }
    });
    tx
}

struct Admin {
    shared: Arc<Shared>,
    token: Option<String>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// Compares in time that depends only on the lengths, never on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[derive(serde::Deserialize)]
struct EndpointBody {
    address: SocketAddr,
}

impl Admin {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if let Some(token) = &self.token {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
                .unwrap_or(b"");
            if !constant_time_eq(given, token.as_bytes()) {
                let mut r = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(StatusCode::BAD_REQUEST, "unreadable or oversized body\n"),
        };
        let change =
            |parse: fn(&[u8]) -> Result<Change, serde_json::Error>, service: &str| match parse(
                &body,
            ) {
                Ok(change) => self.change(service, change),
                Err(e) => json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({"error": e.to_string()}),
                ),
            };
        match (&method, segments.as_slice()) {
            (&Method::GET, ["config"]) => {
                let (config, generation) = self.shared.config();
                json(
                    StatusCode::OK,
                    &serde_json::json!({"generation": generation, "config": config}),
                )
            }
            (&Method::GET, ["state"]) => {
                let table = self.shared.table();
                json(
                    StatusCode::OK,
                    &serde_json::json!({"generation": table.generation, "services": table.state()}),
                )
            }
            (&Method::PUT, ["services", service, "selector"]) => change(
                |b| serde_json::from_slice::<Labels>(b).map(Change::Selector),
                service,
            ),
            (&Method::PUT, ["services", service, "weights"]) => change(
                |b| serde_json::from_slice::<Vec<WeightedSelector>>(b).map(Change::Weights),
                service,
            ),
            (&Method::POST, ["services", service, "drain"]) => change(
                |b| serde_json::from_slice::<EndpointBody>(b).map(|e| Change::Drain(e.address)),
                service,
            ),
            (&Method::POST, ["services", service, "undrain"]) => change(
                |b| serde_json::from_slice::<EndpointBody>(b).map(|e| Change::Undrain(e.address)),
                service,
            ),
            _ => text(StatusCode::NOT_FOUND, "no such admin endpoint\n"),
        }
    }

    fn change(&self, service: &str, change: Change) -> Response<Body> {
        match self.shared.apply(service, change) {
            Ok(generation) => json(
                StatusCode::OK,
                &serde_json::json!({"generation": generation}),
            ),
            Err(e) => {
                let status = match e {
                    ChangeError::UnknownService(_) | ChangeError::UnknownEndpoint { .. } => {
                        StatusCode::NOT_FOUND
                    }
                    ChangeError::Invalid(_) | ChangeError::NoLiveEndpoint(_) => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                };
                json(status, &serde_json::json!({"error": e.to_string()}))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
