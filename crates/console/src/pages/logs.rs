//! The log lines of one trace, from a folder of JSON-lines logs (the lab's
//! `DIR/logs/`, one file per process; the lab service writes `ts`, `level`,
//! `event`, `service` and `trace_id` on every request's line, the gateway's
//! access log `time`, `service`, `method`, `path`, `status` and `trace_id`).
//!
//! Reading is bounded so that a page never reads gigabytes: only the last
//! [`TAIL_BYTES`] of each file, at most [`MAX_FILES`] files and
//! [`MAX_LINES`] matching lines. A trace is looked at while it is recent, so
//! the ends of the files are where its lines are.

use serde::Serialize;
use serde_json::Value as Json;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

/// Bytes read from the end of each log file.
pub const TAIL_BYTES: u64 = 4 << 20;
/// Log files searched, the most recently written first.
pub const MAX_FILES: usize = 64;
/// Matching lines kept.
pub const MAX_LINES: usize = 500;

/// One log line of the trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// The file it came from, relative to the logs folder.
    pub file: String,
    pub ts: String,
    pub level: String,
    pub service: String,
    pub event: String,
    /// The line as written.
    pub line: String,
}

/// What a search found, and what it left unread.
#[derive(Debug, Default, Serialize)]
pub struct Found {
    pub lines: Vec<LogLine>,
    /// Files whose beginning was not read (longer than [`TAIL_BYTES`]).
    pub truncated_files: Vec<String>,
    /// Files not searched at all (beyond [`MAX_FILES`]).
    pub skipped_files: usize,
    /// More lines matched than [`MAX_LINES`].
    pub more: bool,
}

/// A trace id as 32 lowercase hex digits, the way the logs write it.
pub fn normalise(trace_id: &str) -> String {
    format!("{:0>32}", trace_id.to_ascii_lowercase())
}

/// The lines of `text` (the file `file`) whose `trace_id` field is `trace_id`
/// (normalised); lines that are not JSON objects are skipped.
pub fn matching(file: &str, text: &str, trace_id: &str, into: &mut Vec<LogLine>) -> bool {
    for (at, _) in text.match_indices(trace_id) {
        let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let line = &text[start..end];
        // A line holding the id twice is found twice; keep it once.
        if into
            .last()
            .is_some_and(|l| l.file == file && l.line == line)
        {
            continue;
        }
        let Ok(Json::Object(fields)) = serde_json::from_str::<Json>(line) else {
            continue;
        };
        let text = |name: &str| fields.get(name).and_then(Json::as_str);
        let field = |name: &str| text(name).unwrap_or("").to_string();
        // An access log line names no event: what was asked and answered is its event.
        let event = text("event").map_or_else(
            || match (text("method"), text("path"), fields.get("status")) {
                (Some(m), Some(p), Some(s)) => format!("{m} {p} {s}"),
                _ => String::new(),
            },
            str::to_string,
        );
        if field("trace_id").to_ascii_lowercase() != trace_id {
            continue;
        }
        if into.len() == MAX_LINES {
            return true;
        }
        into.push(LogLine {
            file: file.to_string(),
            ts: text("ts")
                .or_else(|| text("time"))
                .unwrap_or("")
                .to_string(),
            level: field("level"),
            service: field("service"),
            event,
            line: line.to_string(),
        });
    }
    false
}

/// The trace's lines in every `*.log` file of `dir`, ordered by time.
///
/// # Errors
/// When `dir` cannot be listed.
pub fn search(dir: &Path, trace_id: &str) -> Result<Found, String> {
    let trace_id = normalise(trace_id);
    let entries = std::fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file()
                .then(|| (meta.modified().unwrap_or(std::time::UNIX_EPOCH), e.path()))
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut found = Found {
        skipped_files: files.len().saturating_sub(MAX_FILES),
        ..Found::default()
    };
    for (_, path) in files.iter().take(MAX_FILES) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let Ok(mut file) = std::fs::File::open(path) else {
            continue;
        };
        let length = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = length.saturating_sub(TAIL_BYTES);
        if start > 0 {
            found.truncated_files.push(name.clone());
            if file.seek(SeekFrom::Start(start)).is_err() {
                continue;
            }
        }
        let mut bytes = Vec::with_capacity((length - start) as usize);
        if file.take(TAIL_BYTES).read_to_end(&mut bytes).is_err() {
            continue;
        }
        // Past a cut, the first line is partial.
        let from = if start > 0 {
            bytes
                .iter()
                .position(|b| *b == b'\n')
                .map_or(bytes.len(), |i| i + 1)
        } else {
            0
        };
        let text = String::from_utf8_lossy(&bytes[from..]);
        if matching(&name, &text, &trace_id, &mut found.lines) {
            found.more = true;
            break;
        }
    }
    found
        .lines
        .sort_by(|a, b| a.ts.cmp(&b.ts).then_with(|| a.file.cmp(&b.file)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn lines_of_the_trace_ordered_by_time() {
        let dir = test_support::TempDir::new("console-logs");
        std::fs::write(
            dir.path().join("payments.log"),
            format!(
                "{{\"ts\":\"2026-01-02T03:04:05.200Z\",\"level\":\"error\",\"event\":\"request_finished\",\"service\":\"payments\",\"trace_id\":\"{TRACE}\"}}\n\
                 not json {TRACE}\n\
                 {{\"ts\":\"2026-01-02T03:04:05.300Z\",\"level\":\"info\",\"event\":\"request_finished\",\"service\":\"payments\",\"trace_id\":\"00000000000000000000000000000001\"}}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("storefront.log"),
            format!(
                "{{\"ts\":\"2026-01-02T03:04:05.100Z\",\"level\":\"info\",\"event\":\"request_finished\",\"service\":\"storefront\",\"trace_id\":\"{TRACE}\",\"note\":\"{TRACE}\"}}\n\
                 {{\"ts\":\"2026-01-02T03:04:05.400Z\",\"level\":\"info\",\"event\":\"request_finished\",\"service\":\"storefront\",\"note\":\"{TRACE}\"}}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("gateway.log"),
            format!(
                "{{\"time\":\"2026-01-02T03:04:05.050Z\",\"trace_id\":\"{TRACE}\",\"method\":\"GET\",\"path\":\"/checkout\",\"service\":\"storefront\",\"status\":502}}\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), TRACE).unwrap();
        let found = search(dir.path(), &TRACE.to_ascii_uppercase()).unwrap();
        let got: Vec<(&str, &str, &str, &str)> = found
            .lines
            .iter()
            .map(|l| {
                (
                    l.file.as_str(),
                    l.service.as_str(),
                    l.level.as_str(),
                    l.event.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("gateway.log", "storefront", "", "GET /checkout 502"),
                ("storefront.log", "storefront", "info", "request_finished"),
                ("payments.log", "payments", "error", "request_finished"),
            ]
        );
        assert!(!found.more && found.truncated_files.is_empty());
        assert!(search(&dir.path().join("missing"), TRACE).is_err());
    }

    #[test]
    fn short_ids_are_padded_as_the_logs_write_them() {
        assert_eq!(normalise("1"), "00000000000000000000000000000001");
        let mut lines = Vec::new();
        let text = "{\"trace_id\":\"00000000000000000000000000000001\",\"ts\":\"t\"}\n";
        matching("a.log", text, &normalise("1"), &mut lines);
        assert_eq!(lines.len(), 1);
    }
}
