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
    /// The client's IP address, written as text once per connection.
    pub client_ip: Arc<str>,
    pub method: String,
    pub path: String,
    pub route: Option<Arc<str>>,
    pub service: Option<Arc<str>>,
    pub version: Option<Arc<str>>,
    pub pool: Option<Arc<str>>,
    pub upstream: Option<SocketAddr>,
    /// `upstream` as text, written once per endpoint.
    pub upstream_text: Option<Arc<str>>,
    /// Endpoints tried, the one that answered included.
    pub attempts: u32,
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
    fn write(&mut self, out: &mut Vec<u8>, r: &Record) {
        let since = r
            .start
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if self.second_text.is_empty() || since.as_secs() != self.second {
            self.second = since.as_secs();
            let full = telemetry::rfc3339_millis(r.start);
            // "YYYY-MM-DDTHH:MM:SS.mmmZ": keep all but ".mmmZ".
            self.second_text = full[..full.len() - 5].to_string();
        }
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(self.second_text.as_bytes());
        let millis = since.subsec_millis();
        out.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
            b'"',
        ]);
        field_str(out, "trace_id", Some(&r.trace_id));
        field_str(out, "span_id", Some(&r.span_id));
        field_str(out, "request_id", Some(&r.request_id));
        field_str(out, "client", Some(&r.client_ip));
        field_str(out, "method", Some(&r.method));
        field_str(out, "path", Some(&r.path));
        field_str(out, "route", r.route.as_deref());
        field_str(out, "service", r.service.as_deref());
        field_str(out, "version", r.version.as_deref());
        field_str(out, "pool", r.pool.as_deref());
        field_str(out, "upstream", r.upstream_text.as_deref());
        field_number(out, "attempts", u64::from(r.attempts));
        field_number(out, "status", u64::from(r.status));
        field_str(out, "error", r.error.as_deref());
        // Milliseconds with microsecond precision.
        let micros = u64::try_from(r.duration.as_micros()).unwrap_or(u64::MAX);
        field_number(out, "duration_ms", micros / 1000);
        let frac = micros % 1000;
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
        field_number(out, "bytes_in", r.bytes_in);
        field_number(out, "bytes_out", r.bytes_out);
        out.extend_from_slice(b"}\n");
    }
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
    let mut lines = LineWriter::default();
    let mut line = Vec::with_capacity(512);
    let mut write = |out: &mut std::io::BufWriter<Box<dyn Write + Send>>, m: Message| match m {
        Message::Record(r) => {
            line.clear();
            lines.write(&mut line, &r);
            let _ = out.write_all(&line);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, error: Option<&str>) -> Record {
        Record {
            start: std::time::UNIX_EPOCH + Duration::from_millis(1_764_115_200_042),
            duration: Duration::from_micros(1_234_567),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: None,
            tracestate: None,
            request_id: "r-1".into(),
            client_ip: "::1".into(),
            method: "GET".into(),
            path: path.into(),
            route: Some("api".into()),
            service: Some("orders".into()),
            version: Some("blue".into()),
            pool: Some("app=orders,version=blue".into()),
            upstream: Some("127.0.0.1:8080".parse().unwrap()),
            upstream_text: Some("127.0.0.1:8080".into()),
            attempts: 1,
            status: 200,
            error: error.map(str::to_string),
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
