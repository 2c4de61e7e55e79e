//! The ValidatingAdmissionWebhook server behind `bulkhead policy serve`.
//!
//! HTTPS with rustls on a tokio runtime and hyper's HTTP/1.1 server. Reviews
//! (AdmissionReview v1, `POST /` or `POST /validate`) are decided by
//! [`policy::admission::decide`]; this crate adds only what a server needs
//! around it, which is why it is a crate of its own: `policy` stays pure.
//!
//! - A review is decided on the runtime worker that read it, without a hop
//!   to another thread: an evaluation takes tens of microseconds, less than
//!   handing it to the blocking pool and waking the connection again costs.
//!   Evaluation needs `&mut`, so the evaluating worker takes a clone of the
//!   loaded [`Policies`] from a pool (one per worker, in the end) and puts it back.
//! - The per-request time budget is the engine's (set with
//!   [`Policies::with_budget`]): a policy that loops is stopped, and the
//!   [`FailurePolicy`] answers (closed denies, open allows with a warning).
//!   So no evaluation holds its worker longer than the budget; the other
//!   workers keep serving meanwhile.
//! - A malformed review is answered with HTTP 400 and the [`policy::ReviewError`] text.
//! - `GET /healthz` answers `ok`; `GET /metrics` is Prometheus text:
//!   `bulkhead_admission_decisions_total{result="allow|deny|error"}` and the
//!   histogram `bulkhead_admission_duration_seconds`.

mod metrics;
pub mod tls;

pub use metrics::Outcome;
pub use policy::admission::FailurePolicy;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use metrics::Metrics;
use policy::Policies;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_rustls::TlsAcceptor;

/// The largest review accepted; the API server limits requests to about 3 MiB.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may finish their requests after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Everything a server needs.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls: Arc<rustls::ServerConfig>,
    /// Loaded once; cloned per evaluating thread. Its budget bounds each review.
    pub policies: Policies,
    pub failure: FailurePolicy,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("installing the SIGTERM/SIGINT handlers: {0}")]
    Signal(std::io::Error),
}

/// A bound, not yet serving, webhook server.
#[derive(Debug)]
pub struct Server {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
}

#[derive(Debug)]
struct App {
    /// Loaded policies; workers clone them when the pool is empty.
    policies: Policies,
    pool: Mutex<Vec<Policies>>,
    failure: FailurePolicy,
    metrics: Metrics,
}

impl App {
    /// Decides one review; `None` when the evaluation panicked (its policies
    /// are then dropped rather than reused).
    fn decide(
        &self,
        body: &[u8],
    ) -> Option<Result<policy::AdmissionDecision, policy::ReviewError>> {
        let taken = self.pool.lock().ok().and_then(|mut pool| pool.pop());
        let mut policies = taken.unwrap_or_else(|| self.policies.clone());
        let decision = std::panic::catch_unwind(AssertUnwindSafe(|| {
            policy::admission::decide(&mut policies, body, self.failure)
        }))
        .ok()?;
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(policies);
        }
        Some(decision)
    }
}

impl Server {
    /// Binds the listening socket (port 0 picks a free port; see [`Server::local_addr`]).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub fn bind(config: Config) -> Result<Server, ServeError> {
        tls::install_provider();
        let bind_error = |source| ServeError::Bind {
            addr: config.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(config.listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Server {
            listener,
            addr,
            tls: config.tls,
            app: Arc::new(App {
                policies: config.policies,
                pool: Mutex::new(Vec::new()),
                failure: config.failure,
                metrics: Metrics::default(),
            }),
        })
    }

    /// The bound address (the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves on a new multi-threaded runtime until SIGINT or SIGTERM, then
    /// stops accepting and lets open requests finish (up to 10 s). `announce`
    /// runs once the signal handlers are in place (the CLI prints the address
    /// there), so a signal sent right after the address appears drains
    /// instead of killing the process.
    ///
    /// # Errors
    /// When the runtime cannot start, the signal handlers cannot be
    /// installed, the listener cannot be registered, or `announce` fails.
    pub fn run_until_signal<E: From<ServeError>>(
        self,
        announce: impl FnOnce(&Server) -> Result<(), E>,
    ) -> Result<(), E> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        runtime.block_on(async {
            let stop = signals::stop().map_err(ServeError::Signal)?;
            announce(&self)?;
            self.serve(stop).await?;
            Ok(())
        })
    }

    /// Serves until `shutdown` completes. Must run inside a tokio runtime with I/O and timers.
    ///
    /// # Errors
    /// When the listener cannot be registered with the runtime.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server {
            listener,
            addr,
            tls,
            app,
        } = self;
        let acceptor = TlsAcceptor::from(tls);
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|source| ServeError::Bind { addr, source })?;
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
                        let acceptor = acceptor.clone();
                        let app = Arc::clone(&app);
                        let http = http.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
                                return;
                            };
                            let service = service_fn(move |req| {
                                let app = Arc::clone(&app);
                                async move { Ok::<_, Infallible>(handle(app, req).await) }
                            });
                            let _ = watcher.watch(http.serve_connection(TokioIo::new(tls), service)).await;
                        });
                    }
                    // Out of file descriptors, typically: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
        Ok(())
    }
}

type Body = Full<Bytes>;

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            app.metrics.render(),
        ),
        (&Method::POST, "/" | "/validate") => review(app, req).await,
        (_, "/healthz" | "/metrics" | "/" | "/validate") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        (_, path) => text(
            StatusCode::NOT_FOUND,
            format!("no such path {path:?}: reviews go to POST /validate\n"),
        ),
    }
}

async fn review(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            app.metrics.record(Outcome::Error, started.elapsed());
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_large {
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("malformed AdmissionReview: the body exceeds {MAX_BODY} bytes\n"),
                )
            } else {
                text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body: {e}\n"),
                )
            };
        }
    };
    let response = match app.decide(&body) {
        Some(Ok(decision)) => {
            let outcome = if decision.error.is_some() {
                Outcome::Error
            } else if decision.allowed {
                Outcome::Allow
            } else {
                Outcome::Deny
            };
            app.metrics.record(outcome, started.elapsed());
            return respond(
                StatusCode::OK,
                "application/json",
                decision.response().to_string(),
            );
        }
        Some(Err(e)) => text(
            StatusCode::BAD_REQUEST,
            format!("malformed AdmissionReview: {e}\n"),
        ),
        None => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a policy evaluation panicked\n",
        ),
    };
    app.metrics.record(Outcome::Error, started.elapsed());
    response
}

#[cfg(test)]
mod tests;
