//! The lab's demo microservice, and the reference for how a service in a
//! bulkhead fleet should behave.
//!
//! One process per service instance (`bulkhead lab service`). For every request
//! it calls its configured downstream services and answers with a small JSON
//! body naming itself, its version and their results. Along the way it:
//!
//! - continues the caller's trace (W3C Trace Context, or B3) and passes a child
//!   context to every downstream call ([`context`]);
//! - records a server span per request and a client span per downstream call
//!   (for sampled traces: the caller's `sampled` flag decides, new traces are
//!   sampled), and exports them over OTLP/HTTP JSON without ever blocking a
//!   request ([`otlp`]);
//! - writes one JSON log line per request carrying `trace_id` and `span_id`;
//! - exposes Prometheus `/metrics`, `/healthz` and `/readyz`;
//! - injects faults on purpose — errors, latency, failed calls, refused
//!   readiness — from flags or at run time through an authenticated admin
//!   endpoint, repeatably when given a seed ([`faults`]);
//! - implements the W3C trace-context test service protocol (`POST /test`), so
//!   the official harness can be run against it.
//!
//! Routes: `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET|PUT|POST|DELETE
//! /admin/faults`, `POST /test`; every other request is the application route.
//! A failed downstream call is answered with 502 and `error.origin` naming the
//! service that failed first, so the caller at the top of a chain sees the
//! root cause. Calls carry an `x-bulkhead-hops` count, and a request past 32
//! hops is refused with 508, so that a cycle in `--calls` ends on its own.
//!
//! Why a runtime of one thread by default: fifty instances must share two
//! cores, and a single-threaded tokio runtime keeps each instance at a few MiB
//! of resident memory while still serving thousands of requests per second.

pub mod context;
pub mod faults;
mod ids;
mod log;
pub mod metrics;
pub mod otlp;
mod server;
mod url;

pub use faults::{Faults, Jitter};
pub use log::{LogBuffer, LogTarget};
pub use otlp::{OtlpConfig, Protocol};
pub use server::Server;
pub use url::HttpUrl;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// How a request's downstream calls are made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CallMode {
    /// One after the other, stopping at the first failure.
    #[default]
    Sequential,
    /// All at once; every call is made even when one fails.
    Parallel,
}

/// The admin bearer token. Its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// `None` for an empty token: an empty secret would be no secret.
    pub fn new(token: impl Into<String>) -> Option<AdminToken> {
        let token = token.into();
        (!token.is_empty()).then_some(AdminToken(token))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Everything a service instance needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub version: String,
    /// Port 0 picks a free port; the chosen address is the first log line.
    pub listen: SocketAddr,
    pub calls: Vec<HttpUrl>,
    pub call_mode: CallMode,
    /// Connect every downstream call to this address instead of its URL's
    /// host, keeping the URL's authority as `Host`: calls then go through a
    /// gateway that routes by host, as a Kubernetes Service name resolves.
    pub via: Option<SocketAddr>,
    /// Timeout of one downstream call, body included.
    pub call_timeout: Duration,
    /// `None`: spans are not recorded at all.
    pub otlp: Option<OtlpConfig>,
    /// The faults injected from the start.
    pub faults: Faults,
    /// Makes ids and fault decisions repeatable.
    pub seed: Option<u64>,
    /// `None` disables the admin endpoint (it answers 403).
    pub admin_token: Option<AdminToken>,
    /// 1 runs a single-threaded runtime.
    pub worker_threads: usize,
    pub log: LogTarget,
    /// How long shutdown waits for open requests before closing connections.
    pub shutdown_grace: Duration,
}

impl Config {
    /// A service listening on `127.0.0.1:0` with no downstreams, faults or exporter.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Config {
        Config {
            name: name.into(),
            version: version.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            calls: Vec::new(),
            call_mode: CallMode::Sequential,
            via: None,
            call_timeout: Duration::from_secs(10),
            otlp: None,
            faults: Faults::default(),
            seed: None,
            admin_token: None,
            worker_threads: 1,
            log: LogTarget::Stdout,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Why a service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("starting the span exporter: {0}")]
    Exporter(std::io::Error),
    #[error("installing the signal handler: {0}")]
    Signal(std::io::Error),
}

/// Runs a service until SIGTERM or Ctrl-C, then shuts it down gracefully:
/// stops accepting, lets open requests finish (up to `shutdown_grace`), and
/// flushes queued spans.
///
/// # Errors
///
/// An invalid config, an address that cannot be bound, a runtime or signal
/// handler that cannot be created.
pub fn run(config: Config) -> Result<(), Error> {
    let runtime = if config.worker_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads)
            .enable_all()
            .build()
    }
    .map_err(Error::Runtime)?;
    runtime.block_on(async {
        // Installed before binding: the address is printed on bind, and a
        // signal sent right after it must drain, not kill.
        let signal = signals::stop().map_err(Error::Signal)?;
        let server = Server::bind(config).await?;
        server.serve(signal).await;
        Ok(())
    })
}

/// Runs a service on the current runtime until `shutdown` completes.
///
/// # Errors
///
/// As [`Server::bind`].
pub async fn run_until(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    Server::bind(config).await?.serve(shutdown).await;
    Ok(())
}
