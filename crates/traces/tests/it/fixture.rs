//! Hand-built traces as text, one span a line:
//!
//! ```text
//! name  parent  service  operation  kind  start_ms  end_ms  [flags...]
//! ```
//!
//! `parent` is `-` for none; a parent name that no line defines is a missing
//! span. Flags: `ERROR`, `ERROR:message_with_underscores`, `OK`,
//! `key=value` (an attribute), `trace=N` (the span belongs to trace N; 1 by
//! default). Times are milliseconds after a fixed epoch. `#` starts a comment.

use std::collections::HashMap;
use traces::{Analysis, Span, SpanId, SpanKind, StatusCode, Trace, TraceId};

/// 2026-01-01T00:00:00Z, so times look like real ones.
pub const EPOCH: u64 = 1_767_225_600_000_000_000;
pub const MS: u64 = 1_000_000;

pub fn trace_id(n: u8) -> TraceId {
    let mut bytes = [0u8; 16];
    bytes[0] = 0x4b;
    bytes[15] = n;
    TraceId(bytes)
}

/// A parsed fixture: its spans and the names of their ids.
pub struct Fixture {
    pub spans: Vec<Span>,
    names: HashMap<SpanId, String>,
    ids: HashMap<String, SpanId>,
}

impl Fixture {
    pub fn parse(text: &str) -> Fixture {
        let mut fixture = Fixture {
            spans: Vec::new(),
            names: HashMap::new(),
            ids: HashMap::new(),
        };
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert!(fields.len() >= 7, "fixture line {}: {line:?}", number + 1);
            let kind = match fields[4] {
                "server" => SpanKind::Server,
                "client" => SpanKind::Client,
                "internal" => SpanKind::Internal,
                "producer" => SpanKind::Producer,
                "consumer" => SpanKind::Consumer,
                "unspecified" => SpanKind::Unspecified,
                other => panic!("fixture line {}: unknown kind {other}", number + 1),
            };
            let ms = |s: &str| -> u64 {
                let value: i64 = s.parse().expect("time in ms");
                EPOCH.wrapping_add_signed(value * MS as i64)
            };
            let mut span = Span {
                trace_id: trace_id(1),
                span_id: fixture.id(fields[0]),
                parent_span_id: (fields[1] != "-").then(|| fixture.id(fields[1])),
                service: fields[2].to_owned(),
                name: fields[3].replace('_', " "),
                kind,
                start_unix_nano: ms(fields[5]),
                end_unix_nano: ms(fields[6]),
                status: StatusCode::Unset,
                status_message: String::new(),
                attributes: Vec::new(),
            };
            for flag in &fields[7..] {
                if *flag == "ERROR" {
                    span.status = StatusCode::Error;
                } else if let Some(message) = flag.strip_prefix("ERROR:") {
                    span.status = StatusCode::Error;
                    span.status_message = message.replace('_', " ");
                } else if *flag == "OK" {
                    span.status = StatusCode::Ok;
                } else if let Some(n) = flag.strip_prefix("trace=") {
                    span.trace_id = trace_id(n.parse().expect("trace number"));
                } else if let Some((key, value)) = flag.split_once('=') {
                    span.attributes.push((key.to_owned(), value.to_owned()));
                } else {
                    panic!("fixture line {}: unknown flag {flag}", number + 1);
                }
            }
            fixture.spans.push(span);
        }
        fixture
    }

    /// The id for a name: stable, distinct, and in name-definition order.
    pub fn id(&mut self, name: &str) -> SpanId {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = SpanId((self.ids.len() as u64 + 0x1000).to_be_bytes());
        self.ids.insert(name.to_owned(), id);
        self.names.insert(id, name.to_owned());
        id
    }

    pub fn name(&self, id: SpanId) -> &str {
        self.names.get(&id).map_or("?", String::as_str)
    }

    pub fn analyze(&self) -> (Trace, Analysis) {
        let trace = traces::assemble(self.spans.clone());
        let analysis = traces::analyze(&trace);
        (trace, analysis)
    }

    /// The critical path as `name start-end` in ms after the epoch.
    pub fn critical_path(&self, analysis: &Analysis) -> Vec<String> {
        analysis
            .critical_path
            .iter()
            .map(|s| {
                format!(
                    "{} {}-{}",
                    self.name(s.span_id),
                    ms_after_epoch(s.start_unix_nano),
                    ms_after_epoch(s.end_unix_nano)
                )
            })
            .collect()
    }

    /// `name=self_ms` per span, in waterfall order.
    pub fn self_times(&self, analysis: &Analysis) -> Vec<String> {
        analysis
            .spans
            .iter()
            .map(|t| format!("{}={}", self.name(t.span_id), t.self_nano / MS))
            .collect()
    }
}

pub fn ms_after_epoch(nanos: u64) -> i64 {
    (nanos as i64 - EPOCH as i64) / MS as i64
}
