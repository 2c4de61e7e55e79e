//! Policy enforcement's I/O edge (`policy` is its pure half): the
//! ValidatingAdmissionWebhook server behind `bulkhead policy serve`.
//!
//! HTTPS with rustls on a tokio runtime, and a small HTTP/1.1 server of its
//! own (the `http` module says why and what it refuses). Reviews
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
//!   `bulkhead_admission_decisions_total{result="allow|deny|error"}`, the
//!   histogram `bulkhead_admission_duration_seconds` and the gauge
//!   `bulkhead_admission_policy_generation`.
//! - The loaded policies can be replaced while serving ([`Reloader`]: new
//!   referential data, `data.inventory`): a review already running finishes
//!   with the policies it took, the next takes the new ones.

mod http;
mod metrics;
pub mod tls;

pub use http::{Request, read_request};
pub use metrics::Outcome;
pub use policy::admission::FailurePolicy;

use http::Response;
use metrics::Metrics;
use policy::Policies;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;
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
    policies: RwLock<Arc<Policies>>,
    /// Which load `policies` is: 1 at start, one more per [`Reloader::replace`].
    generation: AtomicU64,
    /// Clones that evaluated before, each with the generation it was cloned from.
    pool: Mutex<Vec<(u64, Policies)>>,
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
        let current = self.generation.load(Ordering::Acquire);
        let taken = self.pool.lock().ok().and_then(|mut pool| {
            // Clones of an older generation are dropped, never used again.
            pool.retain(|(generation, _)| *generation == current);
            pool.pop()
        });
        let (generation, mut policies) = match taken {
            Some(taken) => taken,
            None => {
                let loaded = self.policies.read().ok()?;
                (
                    self.generation.load(Ordering::Acquire),
                    Policies::clone(&loaded),
                )
            }
        };
        let decision = std::panic::catch_unwind(AssertUnwindSafe(|| {
            policy::admission::decide(&mut policies, body, self.failure)
        }))
        .ok()?;
        if let Ok(mut pool) = self.pool.lock() {
            pool.push((generation, policies));
        }
        Some(decision)
    }
}

/// Replaces a serving [`Server`]'s policies (new referential data, for
/// instance); cheap to clone and usable from any thread.
#[derive(Debug, Clone)]
pub struct Reloader {
    app: Arc<App>,
}

impl Reloader {
    /// Serves `policies` from the next review on; returns their generation.
    pub fn replace(&self, policies: Policies) -> u64 {
        let Ok(mut loaded) = self.app.policies.write() else {
            return self.app.generation.load(Ordering::Acquire);
        };
        *loaded = Arc::new(policies);
        // Bumped under the write lock: a reader never pairs new policies with an old number.
        let generation = self.app.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.app.metrics.set_generation(generation);
        generation
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
                policies: RwLock::new(Arc::new(config.policies)),
                generation: AtomicU64::new(1),
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

    /// A handle that replaces the policies while the server runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            app: Arc::clone(&self.app),
        }
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
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => {
                        let _ = stream.set_nodelay(true);
                        let acceptor = acceptor.clone();
                        let app = Arc::clone(&app);
                        let stopped = stopped.clone();
                        connections.spawn(async move {
                            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
                                return;
                            };
                            http::serve(tls, &*app, stopped).await;
                        });
                    }
                    // Out of file descriptors, typically: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                // Finished connections are reaped as they end, so the set holds only open ones.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        let _ = stop.send(true);
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        Ok(())
    }
}

impl http::Handler for App {
    fn handle(&self, request: &Request<'_>) -> Response {
        match (request.method, request.path) {
            ("GET", "/healthz") => Response::text(200, "ok\n"),
            ("GET", "/metrics") => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: self.metrics.render().into_bytes(),
            },
            ("POST", "/" | "/validate") => self.review(request.body),
            (_, "/healthz" | "/metrics" | "/" | "/validate") => {
                Response::text(405, "method not allowed\n")
            }
            (_, path) => Response::text(
                404,
                format!("no such path {path:?}: reviews go to POST /validate\n"),
            ),
        }
    }

    fn refused(&self, _status: u16) {
        self.metrics.record(Outcome::Error, Duration::ZERO);
    }
}

impl App {
    fn review(&self, body: &[u8]) -> Response {
        let started = Instant::now();
        let (outcome, response) = match self.decide(body) {
            Some(Ok(decision)) => {
                let outcome = if decision.error.is_some() {
                    Outcome::Error
                } else if decision.allowed {
                    Outcome::Allow
                } else {
                    Outcome::Deny
                };
                let response = Response {
                    status: 200,
                    content_type: "application/json",
                    body: serde_json::to_vec(&decision.response()).unwrap_or_default(),
                };
                (outcome, response)
            }
            Some(Err(e)) => (
                Outcome::Error,
                Response::text(400, format!("malformed AdmissionReview: {e}\n")),
            ),
            None => (
                Outcome::Error,
                Response::text(500, "a policy evaluation panicked\n"),
            ),
        };
        self.metrics.record(outcome, started.elapsed());
        response
    }
}

#[cfg(test)]
mod tests;
