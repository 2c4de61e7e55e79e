//! The listeners: accepting within the connection cap, handing proxy connections
//! to the workers, serving the admin API (with header and idle timeouts), and
//! graceful shutdown.

use crate::admin::Admin;
use crate::config::{Config, Limits};
use crate::log::{self, AccessLog, Message};
use crate::otlp::{self, OtlpOptions, RecordExporter};
use crate::proxy::{Proxy, Sinks};
use crate::state::Shared;
use crate::upkeep;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

/// How the gateway runs besides its configuration.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where the admin API listens; `None` runs without one.
    pub admin: Option<SocketAddr>,
    /// The admin API's bearer token; required unless `admin` is a loopback address.
    pub admin_token: Option<String>,
    /// Where one JSON line per request goes.
    pub access_log: AccessLog,
    /// Where spans go; `None` exports none.
    pub otlp: Option<OtlpOptions>,
    /// The file `POST /reload` re-reads.
    pub config_path: Option<PathBuf>,
    /// Worker threads for [`run`], each serving connections on its own runtime with
    /// its own upstream pools; 0 means one per CPU.
    pub workers: usize,
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
    #[error("opening the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("{0}")]
    Otlp(String),
}

/// A running gateway: the runtime that bound it accepts; connections are served on the workers.
#[derive(Debug)]
pub struct Gateway {
    shared: Arc<Shared>,
    proxy_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    /// Closed once every accept loop and connection has ended.
    alive: mpsc::Receiver<()>,
    log: Option<SyncSender<Message>>,
    exporter: Option<RecordExporter>,
}

/// Which handler a listener's connections are served by.
#[derive(Debug, Clone)]
enum Handler {
    Proxy(Arc<Proxy>),
    Admin(Arc<Admin>),
}

impl Gateway {
    /// Binds every listener and starts serving on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// A listener that cannot be bound, a non-loopback admin address without a token,
    /// an access log that cannot be opened, an invalid OTLP endpoint.
    pub async fn bind(config: Config, options: Options) -> Result<Gateway, Error> {
        Gateway::bind_on(config, options, vec![tokio::runtime::Handle::current()]).await
    }

    /// As [`Gateway::bind`], with proxy connections spread over `workers`, each
    /// to the one serving the fewest (runtime `i` must run on a thread marked with
    /// `set_worker(i)`); accepting, the admin API, health checks and span export
    /// run on the current runtime.
    async fn bind_on(
        config: Config,
        options: Options,
        workers: Vec<tokio::runtime::Handle>,
    ) -> Result<Gateway, Error> {
        if let Some(admin) = options.admin
            && !admin.ip().is_loopback()
            && options.admin_token.as_deref().is_none_or(str::is_empty)
        {
            return Err(Error::AdminWithoutToken(admin));
        }
        let traces_url = match &options.otlp {
            Some(o) => Some(o.traces_url().map_err(Error::Otlp)?),
            None => None,
        };
        let mut listeners = Vec::new();
        for &address in &config.listeners {
            listeners.push(bind(address).await?);
        }
        let admin = match options.admin {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        let (log, log_control) =
            match log::start(&options.access_log, workers.len()).map_err(Error::AccessLog)? {
                Some((log, control)) => (Some(log), Some(control)),
                None => (None, None),
            };
        let shared = Arc::new(Shared::with_workers(config, workers.len()));
        let metrics = shared.registry.metrics.clone();
        let proxy_addrs: Vec<SocketAddr> = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let (spans, exporter) = match (&options.otlp, traces_url) {
            (Some(o), Some(url)) => {
                let instance = proxy_addrs
                    .first()
                    .map_or_else(String::new, ToString::to_string);
                let (tx, exporter) = otlp::start(o, url, instance, metrics.clone())
                    .map_err(|e| Error::Otlp(format!("starting the span exporter: {e}")))?;
                (Some(tx), Some(exporter))
            }
            _ => (None, None),
        };
        let proxy = Arc::new(Proxy {
            shared: shared.clone(),
            sinks: Arc::new(Sinks {
                log,
                spans,
                metrics,
            }),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (alive_tx, alive) = mpsc::channel(1);
        let workers = Workers::new(workers);
        for listener in listeners {
            tokio::spawn(accept(
                listener,
                Handler::Proxy(proxy.clone()),
                shared.clone(),
                shutdown_rx.clone(),
                alive_tx.clone(),
                workers.clone(),
            ));
        }
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(listener) = admin {
            let admin = Arc::new(Admin {
                shared: shared.clone(),
                token: options.admin_token,
                config_path: options.config_path,
            });
            tokio::spawn(accept(
                listener,
                Handler::Admin(admin),
                shared.clone(),
                shutdown_rx,
                alive_tx,
                Workers::new(vec![tokio::runtime::Handle::current()]),
            ));
        }
        upkeep::spawn_health_checks(Arc::downgrade(&shared));
        tokio::spawn(upkeep::sweep_idle_connections(Arc::downgrade(&shared)));
        Ok(Gateway {
            shared,
            proxy_addrs,
            admin_addr,
            shutdown,
            alive,
            log: log_control,
            exporter,
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

    /// Stops accepting, lets requests in flight finish (up to the configured
    /// `drain_timeout`), then flushes the access log and the span queue.
    /// Returns false when the drain timed out with connections still open.
    pub async fn shutdown(mut self) -> bool {
        let _ = self.shutdown.send(true);
        let drain = self.shared.table().limits.drain_timeout;
        let drained = tokio::time::timeout(drain, self.alive.recv()).await.is_ok();
        if let Some(exporter) = self.exporter.take() {
            // The exporter's thread posts the last batches; this runtime's threads stay free.
            let _ = tokio::task::spawn_blocking(move || exporter.flush_and_stop()).await;
        }
        if let Some(log) = self.log.take() {
            let (done, wait) = std::sync::mpsc::sync_channel(1);
            if log.send(Message::Flush(done)).is_ok() {
                let _ =
                    tokio::task::spawn_blocking(move || wait.recv_timeout(Duration::from_secs(5)))
                        .await;
            }
        }
        drained
    }
}

/// Runs a gateway on its own runtime until SIGTERM or Ctrl-C, then shuts it down
/// gracefully; `on_bound` sees it once every listener is bound (the CLI prints the
/// addresses there). Returns false when the drain timed out.
///
/// # Errors
///
/// As [`Gateway::bind`], or a runtime that cannot start.
///
/// Connections are served by `options.workers` threads, each running a
/// single-threaded runtime with its own upstream pools, as nginx runs workers: a
/// request and its upstream connection stay on one thread, with no cross-thread
/// wake-ups. The calling thread accepts connections, handing each to the worker
/// serving the fewest, and runs the admin API, health checks and span export.
pub fn run(
    config: Config,
    options: Options,
    on_bound: impl FnOnce(&Gateway),
) -> Result<bool, Error> {
    let count = match options.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let (stop, stopped) = watch::channel(false);
    let mut handles = Vec::with_capacity(count);
    let mut threads = Vec::with_capacity(count);
    for index in 0..count {
        let runtime = single_threaded()?;
        handles.push(runtime.handle().clone());
        let mut stopped = stopped.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gateway-worker-{index}"))
            .spawn(move || {
                crate::worker::set_worker(index);
                runtime.block_on(async move {
                    let _ = stopped.changed().await;
                });
            })
            .map_err(Error::Runtime)?;
        threads.push(thread);
    }
    let outcome = single_threaded()?.block_on(async {
        // Before `on_bound` prints the addresses: a signal sent right after
        // them must drain requests in flight, not kill the process.
        let stop = signals::stop().map_err(Error::Runtime)?;
        let gateway = Gateway::bind_on(config, options, handles).await?;
        on_bound(&gateway);
        stop.await;
        Ok(gateway.shutdown().await)
    });
    let _ = stop.send(true);
    for thread in threads {
        let _ = thread.join();
    }
    outcome
}

fn single_threaded() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

async fn bind(address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Bind { address, source })
}

/// The runtimes connections are served on, with the number each is serving.
#[derive(Debug, Clone)]
struct Workers(Arc<[(tokio::runtime::Handle, Arc<AtomicUsize>)]>);

impl Workers {
    fn new(handles: Vec<tokio::runtime::Handle>) -> Workers {
        Workers(
            handles
                .into_iter()
                .map(|h| (h, Arc::new(AtomicUsize::new(0))))
                .collect(),
        )
    }

    /// The worker serving the fewest connections. Keep-alive connections carry
    /// many requests each, so balancing connections balances the load; letting
    /// every worker accept on the shared socket does not (measured: one worker
    /// ended up with 2.4 times the other's CPU, and throughput followed the busier one).
    fn least_loaded(&self) -> &(tokio::runtime::Handle, Arc<AtomicUsize>) {
        let mut best = &self.0[0];
        for w in self.0.iter().skip(1) {
            if w.1.load(Ordering::Relaxed) < best.1.load(Ordering::Relaxed) {
                best = w;
            }
        }
        best
    }
}

/// Accepts until shutdown; each connection is served by its own task on the
/// least-loaded worker.
async fn accept(
    listener: TcpListener,
    handler: Handler,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    alive: mpsc::Sender<()>,
    workers: Workers,
) {
    let metrics = shared.registry.metrics.clone();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, client)) = accepted else {
            // Out of file descriptors, usually: back off instead of spinning on the error.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let limits = shared.table().limits.clone();
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            tokio::spawn(refuse(stream));
            continue;
        }
        // The stream moves to the worker's reactor: deregistered here, registered there.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let (runtime, load) = workers.least_loaded();
        let gauge = matches!(handler, Handler::Proxy(_)).then(|| metrics.clone());
        let guard = Open::new([open.clone(), load.clone()], gauge);
        let (handler, shutdown, alive) = (handler.clone(), shutdown.clone(), alive.clone());
        runtime.spawn(async move {
            if let Ok(stream) = TcpStream::from_std(stream) {
                match handler {
                    Handler::Proxy(proxy) => proxy.serve(stream, client, &limits, shutdown).await,
                    Handler::Admin(admin) => connection(stream, admin, &limits, shutdown).await,
                }
            }
            drop(guard);
            drop(alive);
        });
    }
}

/// Counts a connection in its listener's and its worker's totals, and for proxy
/// listeners in the open-connections gauge, while it lives.
struct Open {
    counts: [Arc<AtomicUsize>; 2],
    gauge: Option<Arc<crate::metrics::Metrics>>,
}

impl Open {
    fn new(counts: [Arc<AtomicUsize>; 2], gauge: Option<Arc<crate::metrics::Metrics>>) -> Open {
        for c in &counts {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(m) = &gauge {
            m.open_connections.fetch_add(1, Ordering::Relaxed);
        }
        Open { counts, gauge }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        for c in &self.counts {
            c.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(m) = &self.gauge {
            m.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Answers a connection over the limit with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    const BODY: &str = "too many connections\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// When a connection last moved bytes, and how many of its requests are being handled.
#[derive(Debug)]
struct Activity {
    last: AtomicU64,
    in_flight: AtomicUsize,
}

/// A TCP stream that notes each read and write in its [`Activity`].
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl Watched {
    fn touch(&self) {
        self.activity
            .last
            .store(clock::monotonic_ms(), Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Decrements the in-flight count when a request's handler is done (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one admin connection until the client closes it, it idles past the
/// limit, or the gateway shuts down (then the request in flight finishes first).
async fn connection(
    stream: TcpStream,
    admin: Arc<Admin>,
    limits: &Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity {
        last: AtomicU64::new(clock::monotonic_ms()),
        in_flight: AtomicUsize::new(0),
    });
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        service_fn(move |req| {
            activity.in_flight.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(activity.clone());
            let admin = admin.clone();
            async move {
                let response = admin.handle(req).await;
                drop(guard);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes)
        .serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let idle = limits.idle_timeout;
    let mut idle_check = std::pin::pin!(tokio::time::sleep(idle));
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = shutdown.changed(), if !closing => {
                // A dropped sender means the gateway is gone: close as for shutdown.
                let _ = changed;
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = idle_check.as_mut(), if !closing => {
                let quiet = Duration::from_millis(
                    clock::monotonic_ms().saturating_sub(activity.last.load(Ordering::Relaxed)),
                );
                if activity.in_flight.load(Ordering::Relaxed) == 0 && quiet >= idle {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                } else {
                    let wait = idle.saturating_sub(quiet).max(Duration::from_millis(10));
                    idle_check.as_mut().reset(tokio::time::Instant::now() + wait);
                }
            }
        }
    }
}
