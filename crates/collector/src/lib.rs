//! Tracing's I/O edge (`traces` is its pure half): the trace collector, OTLP
//! in, a durable span store, Jaeger's query API out.
//!
//! Three listeners on one tokio runtime: OTLP/HTTP (`POST /v1/traces`),
//! OTLP/gRPC (h2c, `TraceService/Export`) and the query API (Jaeger's HTTP
//! JSON API, the analysis and service-stats endpoints, `/metrics`). Ingest
//! decodes and validates on the runtime, then hands the rows to one writer
//! thread that owns the store (span bytes in append-only segment files,
//! their index in SQLite) and commits in groups; queries read through their
//! own connections (WAL) and `pread` the segments, in `block_in_place` on
//! the worker that took the request.
//! Docs: `docs/tracing.md`.

pub mod attrs;
mod base64;
mod forward;
pub mod ingest;
pub mod jaeger;
pub mod json;
mod log;
mod metrics;
mod query;
pub mod segment;
mod server;
pub mod store;
#[cfg(test)]
mod tests;
pub mod trace_index;

/// The OTLP trace messages, declared once in `telemetry` for the exporters and ingest alike.
pub use telemetry::proto as otlp;

pub use forward::ForwardOptions;
pub use metrics::Metrics;
pub use query::to_analysis_span;
pub use server::{GRPC_EXPORT_PATH, gunzip};
pub use store::{Reader, Retention, StoreError, Writer};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

/// How the collector runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The data directory (`spans.db` and `segments/` live there).
    pub data: PathBuf,
    pub otlp_http: SocketAddr,
    /// Where OTLP/gRPC listens; `None` runs without it.
    pub otlp_grpc: Option<SocketAddr>,
    pub query: SocketAddr,
    pub retention: Retention,
    /// Largest accepted request body, compressed and after gunzip.
    pub max_body_bytes: usize,
    /// Decoded spans that may wait for the store writer.
    pub queue_spans: usize,
    /// Export requests read and decoded at once.
    pub max_inflight: usize,
    /// Attribute keys with a tag index.
    pub indexed_tags: HashSet<String>,
    /// Sync the segment and the index (`synchronous=FULL`) on every group
    /// commit: survive power loss too, not only a killed process.
    pub fsync: bool,
    /// Where committed spans are forwarded; `None` keeps them here only.
    pub forward: Option<ForwardOptions>,
}

impl Options {
    /// Loopback listeners on ports the OS picks, the default limits.
    pub fn local(data: PathBuf) -> Options {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Options {
            data,
            otlp_http: any,
            otlp_grpc: Some(any),
            query: any,
            retention: Retention::default(),
            max_body_bytes: 16 << 20,
            queue_spans: 100_000,
            max_inflight: 64,
            indexed_tags: ingest::DEFAULT_INDEXED_TAGS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            fsync: false,
            forward: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

/// State every handler sees.
#[derive(Debug)]
struct Shared {
    options: Options,
    metrics: Arc<Metrics>,
    forward: Option<Arc<forward::Forwarder>>,
    reader: Reader,
    writer: Mutex<Option<std::sync::mpsc::Sender<server::Job>>>,
    inflight: tokio::sync::Semaphore,
    last_overload_log: AtomicI64,
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    pub otlp_http: SocketAddr,
    pub otlp_grpc: Option<SocketAddr>,
    pub query: SocketAddr,
    shared: Arc<Shared>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    forward_thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    /// Opens the store, starts the writer thread and binds every listener on
    /// the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A store that cannot be opened, or a listener that cannot be bound.
    pub async fn start(options: Options) -> Result<Collector, Error> {
        let mut writer = Writer::open(&options.data, options.fsync)?;
        if let Some(max_bytes) = options.retention.max_bytes {
            // Size retention frees whole segments: a sixteenth of the limit at a time at most.
            writer.set_segment_bytes(
                (max_bytes as u64 / 16).clamp(1 << 20, segment::DEFAULT_SEGMENT_BYTES),
            );
        }
        let http = bind(options.otlp_http).await?;
        let grpc = match options.otlp_grpc {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let query = bind(options.query).await?;
        let (tx, rx) = std::sync::mpsc::channel();
        let metrics = Arc::new(Metrics::default());
        let (forward, forward_thread) = match &options.forward {
            Some(f) => {
                let (forwarder, thread) = forward::Forwarder::start(f.clone(), metrics.clone())
                    .map_err(Error::Runtime)?;
                (Some(forwarder), Some(thread))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            reader: writer.reader(),
            metrics,
            forward,
            writer: Mutex::new(Some(tx)),
            inflight: tokio::sync::Semaphore::new(options.max_inflight.max(1)),
            last_overload_log: AtomicI64::new(0),
            options,
        });
        let retention = shared.options.retention;
        let thread_shared = shared.clone();
        let writer_thread = std::thread::Builder::new()
            .name("span-writer".into())
            .spawn(move || server::writer_loop(writer, rx, thread_shared, retention))
            .map_err(Error::Runtime)?;
        let addr = |l: &TcpListener| {
            l.local_addr()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
        };
        let collector = Collector {
            otlp_http: addr(&http),
            otlp_grpc: grpc.as_ref().map(addr),
            query: addr(&query),
            shared: shared.clone(),
            writer_thread: Some(writer_thread),
            forward_thread,
        };
        let s = shared.clone();
        serve(http, false, move |req| server::http_ingest(s.clone(), req));
        if let Some(grpc) = grpc {
            let s = shared.clone();
            serve(grpc, true, move |req| server::grpc_ingest(s.clone(), req));
        }
        let s = shared;
        serve(query, false, move |req| query::handle(s.clone(), req));
        log::info(
            "collector_started",
            &[
                ("otlp_http", collector.otlp_http.to_string().into()),
                ("query", collector.query.to_string().into()),
                (
                    "data",
                    collector.shared.options.data.display().to_string().into(),
                ),
                (
                    "forward",
                    collector
                        .shared
                        .options
                        .forward
                        .as_ref()
                        .map(|f| f.url.to_string())
                        .into(),
                ),
            ],
        );
        Ok(collector)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Stops taking batches and waits until the writer has committed the queued ones.
    pub fn shutdown(mut self) {
        if let Ok(mut tx) = self.shared.writer.lock() {
            tx.take();
        }
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
        // After the writer: every committed request has been offered.
        if let Some(f) = &self.shared.forward {
            f.close();
        }
        if let Some(t) = self.forward_thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs a collector on its own runtime until Ctrl-C or SIGTERM; `on_started`
/// sees it once every listener is bound (the CLI prints the addresses there).
///
/// # Errors
///
/// As [`Collector::start`], or a runtime that cannot start.
pub fn run(options: Options, on_started: impl FnOnce(&Collector)) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let collector = runtime.block_on(async {
        // Before `on_started` prints the addresses: a signal sent right after
        // them must stop the collector cleanly, not kill it.
        let stop = signals::stop().map_err(Error::Runtime)?;
        let collector = Collector::start(options).await?;
        on_started(&collector);
        stop.await;
        Ok::<_, Error>(collector)
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    collector.shutdown();
    Ok(())
}

async fn bind(address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind { address, source })
}

fn serve<F, Fut>(listener: TcpListener, http2: bool, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
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
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            tokio::spawn(async move {
                let io = TokioIo::new(stream);
                if http2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    response
}
