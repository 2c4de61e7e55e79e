//! The span as the analysis sees it: ids, kind, status, times, text attributes,
//! and whether it failed.
//!
//! Collectors decode OTLP (or any other wire format) into [`Span`]; everything
//! else in this crate works on these values only.

use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A 16-byte trace id; shown and parsed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id; shown and parsed as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SpanId(pub [u8; 8]);

/// OTLP's span kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum SpanKind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// OTLP's span status code.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum StatusCode {
    Unset,
    Ok,
    Error,
}

/// The service of a span whose resource names none (OpenTelemetry's default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// One span of a trace.
#[derive(Clone, PartialEq, Debug)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    /// The resource attribute `service.name` (`unknown_service` when absent).
    pub service: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: StatusCode,
    pub status_message: String,
    /// Span attributes with values rendered as text (`peer.service`,
    /// `server.address`, `http.response.status_code`, ...).
    pub attributes: Vec<(String, String)>,
}

impl Span {
    /// The first attribute named `key`.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a span failed: status ERROR; or status UNSET with
/// `http.response.status_code` (or the older `http.status_code`) >= 500, or
/// with the OpenTracing tag `error=true`. Status OK always means success.
pub fn is_error(span: &Span) -> bool {
    match span.status {
        StatusCode::Error => true,
        StatusCode::Ok => false,
        StatusCode::Unset => {
            http_status(span).is_some_and(|code| code >= 500)
                || span.attribute("error") == Some("true")
        }
    }
}

pub(crate) fn http_status(span: &Span) -> Option<u16> {
    span.attribute("http.response.status_code")
        .or_else(|| span.attribute("http.status_code"))
        .and_then(|v| v.trim().parse().ok())
}

/// A text that is not a hex id of the expected length.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ParseIdError {
    /// The number of hex digits expected: 32 for a trace id, 16 for a span id.
    pub expected_digits: usize,
    pub input: String,
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid id {:?}: expected {} hex digits",
            self.input, self.expected_digits
        )
    }
}

impl std::error::Error for ParseIdError {}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], ParseIdError> {
    let error = || ParseIdError {
        expected_digits: 2 * N,
        input: s.to_owned(),
    };
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return Err(error());
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = hex_value(pair[0]).ok_or_else(error)?;
        let lo = hex_value(pair[1]).ok_or_else(error)?;
        out[i] = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// Accepts upper- and lowercase hex; always displays lowercase.
impl FromStr for TraceId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex(s).map(TraceId)
    }
}

/// Accepts upper- and lowercase hex; always displays lowercase.
impl FromStr for SpanId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex(s).map(SpanId)
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Serialize for SpanId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
