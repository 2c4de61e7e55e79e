//! What one request leaves behind, and the access log that writes it as a JSON line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

/// Where the access log goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccessLog {
    #[default]
    Off,
    Stdout,
    /// Appended to; created when missing.
    File(PathBuf),
}

/// One finished request.
#[derive(Debug)]
pub(crate) struct Record {
    pub start: SystemTime,
    pub duration: Duration,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub tracestate: Option<String>,
    pub request_id: String,
    pub client: SocketAddr,
    pub method: String,
    pub path: String,
    pub route: Option<String>,
    pub service: Option<String>,
    pub version: Option<String>,
    pub pool: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    /// Endpoints tried, the one that answered included.
    pub attempts: u32,
    pub status: u16,
    /// Why the gateway answered itself, when it did (no route, upstream error, ...).
    pub error: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The access-log line of a record, serialized straight from it (no intermediate map).
#[derive(serde::Serialize)]
struct Line<'a> {
    time: String,
    trace_id: &'a str,
    span_id: &'a str,
    request_id: &'a str,
    client: std::net::IpAddr,
    method: &'a str,
    path: &'a str,
    route: Option<&'a str>,
    service: Option<&'a str>,
    version: Option<&'a str>,
    pool: Option<&'a str>,
    upstream: Option<SocketAddr>,
    attempts: u32,
    status: u16,
    error: Option<&'a str>,
    duration_ms: f64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Record {
    fn line(&self) -> Line<'_> {
        Line {
            time: telemetry::rfc3339_millis(self.start),
            trace_id: &self.trace_id,
            span_id: &self.span_id,
            request_id: &self.request_id,
            client: self.client.ip(),
            method: &self.method,
            path: &self.path,
            route: self.route.as_deref(),
            service: self.service.as_deref(),
            version: self.version.as_deref(),
            pool: self.pool.as_deref(),
            upstream: self.upstream,
            attempts: self.attempts,
            status: self.status,
            error: self.error.as_deref(),
            duration_ms: self.duration.as_secs_f64() * 1000.0,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        }
    }
}

pub(crate) enum Message {
    Record(Arc<Record>),
    /// Answered once every line before it is written and flushed.
    Flush(SyncSender<()>),
}

/// Lines held while the writer is behind; more are dropped and counted.
const QUEUE: usize = 65_536;

/// Starts the writer thread.
///
/// # Errors
///
/// A log file that cannot be opened.
pub(crate) fn start(target: &AccessLog) -> std::io::Result<Option<SyncSender<Message>>> {
    let out: Box<dyn Write + Send> = match target {
        AccessLog::Off => return Ok(None),
        AccessLog::Stdout => Box::new(std::io::stdout()),
        AccessLog::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_lines(&rx, out))?;
    Ok(Some(tx))
}

/// Queues a record; `false` when the queue is full and it was dropped.
pub(crate) fn send(tx: &SyncSender<Message>, record: Arc<Record>) -> bool {
    !matches!(
        tx.try_send(Message::Record(record)),
        Err(TrySendError::Full(_))
    )
}

fn write_lines(rx: &Receiver<Message>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let write = |out: &mut std::io::BufWriter<Box<dyn Write + Send>>, m: Message| match m {
        Message::Record(r) => {
            let _ = serde_json::to_writer(&mut *out, &r.line());
            let _ = out.write_all(b"\n");
        }
        Message::Flush(done) => {
            let _ = out.flush();
            let _ = done.send(());
        }
    };
    loop {
        // Drain, flush, then pause: a writer blocked in `recv` would be woken by a
        // system call on every request; polling every few milliseconds costs nothing
        // per request and delays a line by at most the pause.
        let mut wrote = false;
        loop {
            match rx.try_recv() {
                Ok(m) => {
                    write(&mut out, m);
                    wrote = true;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            }
        }
        if wrote && out.flush().is_err() {
            return;
        }
        std::thread::sleep(FLUSH_PAUSE);
    }
}

/// The writer's pause between drains of the queue.
const FLUSH_PAUSE: Duration = Duration::from_millis(10);
