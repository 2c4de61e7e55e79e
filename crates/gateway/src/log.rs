//! What one request leaves behind, and the access log that writes it as a JSON line.
//!
//! A worker writes each line into its own buffer (behind a lock only it and,
//! every few milliseconds, the writer thread take), so logging a request shares
//! no memory with the other workers; the writer thread swaps the buffers out
//! and writes them to the log.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
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

/// One finished request, as the access log writes it.
pub(crate) struct Line<'a> {
    pub start: SystemTime,
    pub duration: Duration,
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub request_id: &'a str,
    pub client_ip: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub route: Option<&'a str>,
    pub service: Option<&'a str>,
    pub version: Option<&'a str>,
    /// The selector that picked the endpoint.
    pub pool: Option<&'a str>,
    pub upstream: Option<&'a str>,
    /// Endpoints tried, the one that answered included.
    pub attempts: u32,
    pub status: u16,
    /// Why the gateway answered itself, when it did (no route, upstream error, ...).
    pub error: Option<&'a str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One finished request, as a span carries it.
#[derive(Debug)]
pub(crate) struct Record {
    pub start: SystemTime,
    pub duration: Duration,
    pub trace_id: crate::trace::Text<32>,
    pub span_id: crate::trace::Text<16>,
    pub parent_span_id: Option<crate::trace::Text<16>>,
    pub tracestate: Option<String>,
    pub request_id: String,
    /// The client's IP address, written as text once per connection.
    pub client_ip: Arc<str>,
    pub method: String,
    pub path: String,
    pub route: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    pub version: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    pub status: u16,
    /// Why the gateway answered itself, when it did (no route, upstream error, ...).
    pub error: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Writes access-log lines. JSON is written by hand: the strings are almost always
/// plain ASCII with nothing to escape, and the time's date and second change
/// once a second, so a line costs a few copies instead of a serializer's walk.
#[derive(Default)]
struct LineWriter {
    /// The second `second_text` renders, and `YYYY-MM-DDTHH:MM:SS`.
    second: u64,
    second_text: String,
}

impl LineWriter {
    fn write(&mut self, out: &mut Vec<u8>, r: &Line<'_>) {
        let since = r
            .start
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if self.second_text.is_empty() || since.as_secs() != self.second {
            self.second = since.as_secs();
            let full = yaml::time::rfc3339_millis(r.start);
            // "YYYY-MM-DDTHH:MM:SS.mmmZ": keep all but ".mmmZ".
            self.second_text = full[..full.len() - 5].to_string();
        }
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(self.second_text.as_bytes());
        put_thousandths(out, u64::from(since.subsec_millis()));
        out.extend_from_slice(b"Z\"");
        field_str(out, "trace_id", Some(r.trace_id));
        field_str(out, "span_id", Some(r.span_id));
        field_str(out, "request_id", Some(r.request_id));
        field_str(out, "client", Some(r.client_ip));
        field_str(out, "method", Some(r.method));
        field_str(out, "path", Some(r.path));
        field_str(out, "route", r.route);
        field_str(out, "service", r.service);
        field_str(out, "version", r.version);
        field_str(out, "pool", r.pool);
        field_str(out, "upstream", r.upstream);
        field_number(out, "attempts", u64::from(r.attempts));
        field_number(out, "status", u64::from(r.status));
        field_str(out, "error", r.error);
        // Milliseconds with microsecond precision.
        let micros = u64::try_from(r.duration.as_micros()).unwrap_or(u64::MAX);
        field_number(out, "duration_ms", micros / 1000);
        put_thousandths(out, micros % 1000);
        field_number(out, "bytes_in", r.bytes_in);
        field_number(out, "bytes_out", r.bytes_out);
        out.extend_from_slice(b"}\n");
    }
}

/// `.nnn`: a fraction in thousandths (`n` below 1000), zero-padded.
fn put_thousandths(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&[
        b'.',
        b'0' + (n / 100 % 10) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]);
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn field_str(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    key(out, name);
    match value {
        Some(v) => json_string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn field_number(out: &mut Vec<u8>, name: &str, n: u64) {
    key(out, name);
    crate::h1::put_number(out, n);
}

/// A JSON string: copied as is unless something in it needs escaping.
fn json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

pub(crate) enum Message {
    /// Answered once every line written before it is in the log and flushed.
    Flush(SyncSender<()>),
}

/// Bytes of lines a worker holds while the writer is behind; more are dropped and counted.
const MAX_BUFFERED: usize = 16 * 1024 * 1024;

/// The workers' line buffers.
pub(crate) struct Log {
    buffers: Vec<Mutex<Buffer>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("buffers", &self.buffers.len())
            .finish()
    }
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    lines: LineWriter,
}

impl Log {
    /// Adds a line to the calling worker's buffer; `false` when it was dropped.
    pub fn write(&self, line: &Line<'_>) -> bool {
        let mut buffer = self.buffers[crate::worker::worker() % self.buffers.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if buffer.bytes.len() >= MAX_BUFFERED {
            return false;
        }
        let Buffer { bytes, lines } = &mut *buffer;
        lines.write(bytes, line);
        true
    }
}

/// Starts the writer thread for `workers` workers; the sender asks it to flush
/// and, once dropped, stops it after a last write.
///
/// # Errors
///
/// A log file that cannot be opened.
pub(crate) fn start(
    target: &AccessLog,
    workers: usize,
) -> std::io::Result<Option<(Arc<Log>, SyncSender<Message>)>> {
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
    let log = Arc::new(Log {
        buffers: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    let writer = log.clone();
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || write_lines(&writer, &rx, out))?;
    Ok(Some((log, tx)))
}

fn write_lines(log: &Log, rx: &Receiver<Message>, mut out: Box<dyn Write + Send>) {
    let mut spare = Vec::new();
    // Swaps each worker's buffer for an empty one and writes what it held.
    let mut drain = |out: &mut Box<dyn Write + Send>| -> std::io::Result<()> {
        for buffer in &log.buffers {
            std::mem::swap(
                &mut buffer.lock().unwrap_or_else(PoisonError::into_inner).bytes,
                &mut spare,
            );
            if !spare.is_empty() {
                out.write_all(&spare)?;
                spare.clear();
            }
        }
        out.flush()
    };
    loop {
        // Drain, then pause: polling every few milliseconds costs nothing per
        // request and delays a line by at most the pause.
        if drain(&mut out).is_err() {
            return;
        }
        match rx.try_recv() {
            Ok(Message::Flush(done)) => {
                let _ = drain(&mut out);
                let _ = done.send(());
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => std::thread::sleep(FLUSH_PAUSE),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                let _ = drain(&mut out);
                return;
            }
        }
    }
}

/// The writer's pause between drains of the buffers.
const FLUSH_PAUSE: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(path: &'a str, error: Option<&'a str>) -> Line<'a> {
        Line {
            start: std::time::UNIX_EPOCH + Duration::from_millis(1_764_115_200_042),
            duration: Duration::from_micros(1_234_567),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
            span_id: "00f067aa0ba902b7",
            request_id: "r-1",
            client_ip: "::1",
            method: "GET",
            path,
            route: Some("api"),
            service: Some("orders"),
            version: Some("blue"),
            pool: Some("app=orders,version=blue"),
            upstream: Some("127.0.0.1:8080"),
            attempts: 1,
            status: 200,
            error,
            bytes_in: 0,
            bytes_out: 5,
        }
    }

    #[test]
    fn lines_are_json_with_every_field() {
        let mut writer = LineWriter::default();
        let mut out = Vec::new();
        writer.write(&mut out, &record("/a\"b\\c\u{1}", None));
        writer.write(
            &mut out,
            &record("/plain", Some("upstream 127.0.0.1:8080 failed")),
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["time"], "2025-11-26T00:00:00.042Z");
        assert_eq!(lines[0]["path"], "/a\"b\\c\u{1}");
        assert_eq!(lines[0]["client"], "::1");
        assert_eq!(lines[0]["upstream"], "127.0.0.1:8080");
        assert_eq!(lines[0]["error"], serde_json::Value::Null);
        assert_eq!(lines[0]["duration_ms"], 1234.567);
        assert_eq!(lines[1]["error"], "upstream 127.0.0.1:8080 failed");
        assert_eq!(lines[1]["bytes_out"], 5);
        assert_eq!(lines[1].as_object().unwrap().len(), 18);
    }
}
