//! JSON-lines logging: one object per line, every line naming the service.
//!
//! The first line a service writes is `{"event":"listening","addr":...}`, so a
//! supervisor that started it on port 0 learns its address from stdout.

use serde::Serialize;
use serde_json::{Map, Value};
use std::io::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Where log lines go.
#[derive(Clone, Debug, Default)]
pub enum LogTarget {
    /// Standard output, one line per write (the default for a process).
    #[default]
    Stdout,
    /// An in-memory buffer, for a service run inside a test.
    Buffer(LogBuffer),
    /// Nowhere.
    Off,
}

/// A shared in-memory log.
#[derive(Clone, Debug, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn new() -> LogBuffer {
        LogBuffer::default()
    }

    /// Every line written so far, parsed.
    ///
    /// # Panics
    ///
    /// If a line is not JSON, which would be a bug in this crate.
    pub fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).expect("log lines are JSON"))
            .collect()
    }
}

/// Writes log lines for one service.
#[derive(Debug)]
pub(crate) struct Logger {
    target: LogTarget,
    service: String,
    version: String,
}

/// The line written for each traced request.
#[derive(Debug, Serialize)]
pub(crate) struct RequestLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub duration_ms: f64,
    pub trace_id: String,
    pub span_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_rejected: Option<&'a str>,
}

impl Logger {
    pub fn new(target: LogTarget, service: &str, version: &str) -> Logger {
        Logger {
            target,
            service: service.to_string(),
            version: version.to_string(),
        }
    }

    /// Writes `{"ts", "level", "event", "service", "version", ...fields}`.
    pub fn event(&self, level: &str, event: &str, fields: impl Serialize) {
        if matches!(self.target, LogTarget::Off) {
            return;
        }
        let mut line = Map::new();
        line.insert(
            "ts".into(),
            Value::String(yaml::time::rfc3339_millis(SystemTime::now())),
        );
        line.insert("level".into(), level.into());
        line.insert("event".into(), event.into());
        line.insert("service".into(), self.service.as_str().into());
        line.insert("version".into(), self.version.as_str().into());
        if let Ok(Value::Object(extra)) = serde_json::to_value(fields) {
            line.extend(extra);
        }
        let mut bytes = Value::Object(line).to_string().into_bytes();
        bytes.push(b'\n');
        match &self.target {
            // A closed stdout must not take the service down; the line is lost.
            LogTarget::Stdout => drop(std::io::stdout().lock().write_all(&bytes)),
            LogTarget::Buffer(buffer) => buffer
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(&bytes),
            LogTarget::Off => {}
        }
    }
}
