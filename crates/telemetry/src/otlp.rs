//! Spans and their OTLP/HTTP encodings, JSON and protobuf, for the gateway's
//! and the demo service's exporters.
//!
//! The JSON follows the OTLP protobuf-to-JSON mapping: ids as lowercase hex,
//! 64-bit integers and times as decimal strings, enums as integers. The
//! protobuf is the messages of [`crate::proto`], the same ones the collector
//! decodes.

use crate::{Text, parse_lower_hex, proto};
use prost::Message as _;
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// OTLP `SpanKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Server = 2,
    Client = 3,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    String(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> AttrValue {
        AttrValue::String(s.to_string())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> AttrValue {
        AttrValue::String(s)
    }
}

impl From<i64> for AttrValue {
    fn from(n: i64) -> AttrValue {
        AttrValue::Int(n)
    }
}

impl From<u64> for AttrValue {
    /// OTLP integers are signed; a count past `i64::MAX` saturates.
    fn from(n: u64) -> AttrValue {
        AttrValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<bool> for AttrValue {
    fn from(b: bool) -> AttrValue {
        AttrValue::Bool(b)
    }
}

/// OTLP span status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Unset,
    Error(String),
}

/// A finished span. Ids are held as their hex text, ready to encode.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: Text<32>,
    pub span_id: Text<16>,
    pub parent_span_id: Option<Text<16>>,
    /// The W3C `tracestate` in effect (empty when none).
    pub trace_state: String,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(&'static str, AttrValue)>,
    pub status: Status,
}

/// Who emits the spans: OTLP resource attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    pub service_name: String,
    pub service_version: String,
    /// `service.instance.id`: tells apart instances of one service (its listen address).
    pub instance_id: String,
}

/// The instrumentation scope: the program that recorded the spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub name: &'static str,
    pub version: &'static str,
}

/// Nanoseconds since the Unix epoch (0 before it, saturating far after it).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRequest<'a> {
    resource_spans: [ResourceSpans<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceSpans<'a> {
    resource: WireResource<'a>,
    scope_spans: [ScopeSpans<'a>; 1],
}

#[derive(Serialize)]
struct WireResource<'a> {
    attributes: Vec<KeyValue<'a>>,
}

#[derive(Serialize)]
struct ScopeSpans<'a> {
    scope: Scope,
    spans: Vec<WireSpan<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireSpan<'a> {
    trace_id: &'a str,
    span_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_span_id: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    trace_state: &'a str,
    name: &'a str,
    kind: u8,
    start_time_unix_nano: String,
    end_time_unix_nano: String,
    attributes: Vec<KeyValue<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<WireStatus<'a>>,
}

#[derive(Serialize)]
struct KeyValue<'a> {
    key: &'a str,
    value: AnyValue<'a>,
}

#[derive(Serialize)]
enum AnyValue<'a> {
    #[serde(rename = "stringValue")]
    String(&'a str),
    /// int64 is a string in OTLP JSON.
    #[serde(rename = "intValue")]
    Int(String),
    #[serde(rename = "boolValue")]
    Bool(bool),
}

#[derive(Serialize)]
struct WireStatus<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    code: u8,
}

fn string_attr<'a>(key: &'a str, value: &'a str) -> KeyValue<'a> {
    KeyValue {
        key,
        value: AnyValue::String(value),
    }
}

/// One OTLP/HTTP JSON `ExportTraceServiceRequest` body holding `spans`.
pub fn encode(resource: &Resource, scope: Scope, spans: &[Span]) -> Vec<u8> {
    let request = ExportRequest {
        resource_spans: [ResourceSpans {
            resource: WireResource {
                attributes: vec![
                    string_attr("service.name", &resource.service_name),
                    string_attr("service.version", &resource.service_version),
                    string_attr("service.instance.id", &resource.instance_id),
                ],
            },
            scope_spans: [ScopeSpans {
                scope,
                spans: spans.iter().map(wire_span).collect(),
            }],
        }],
    };
    // Serializing these types to memory has no failure path: only strings, integers and booleans.
    serde_json::to_vec(&request).unwrap_or_default()
}

fn wire_span(span: &Span) -> WireSpan<'_> {
    WireSpan {
        trace_id: span.trace_id.as_str(),
        span_id: span.span_id.as_str(),
        parent_span_id: span.parent_span_id.as_ref().map(|p| p.as_str()),
        trace_state: &span.trace_state,
        name: &span.name,
        kind: span.kind as u8,
        start_time_unix_nano: span.start_unix_nanos.to_string(),
        end_time_unix_nano: span.end_unix_nanos.to_string(),
        attributes: span
            .attributes
            .iter()
            .map(|(key, value)| KeyValue {
                key,
                value: match value {
                    AttrValue::String(s) => AnyValue::String(s),
                    AttrValue::Int(n) => AnyValue::Int(n.to_string()),
                    AttrValue::Bool(b) => AnyValue::Bool(*b),
                },
            })
            .collect(),
        status: match &span.status {
            Status::Unset => None,
            Status::Error(message) => Some(WireStatus { message, code: 2 }),
        },
    }
}

/// The OTLP/HTTP encodings an exporter posts, named as the OpenTelemetry
/// `OTEL_EXPORTER_OTLP_PROTOCOL` setting names them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `http/json`: readable, what the exporters sent first.
    #[default]
    HttpJson,
    /// `http/protobuf`: smaller and cheaper to decode; what most collectors expect by default.
    HttpProtobuf,
}

impl Protocol {
    /// Reads `http/json` or `http/protobuf`.
    ///
    /// # Errors
    ///
    /// Any other name (`grpc` included: these exporters post over HTTP).
    pub fn parse(name: &str) -> Result<Protocol, String> {
        match name {
            "http/json" => Ok(Protocol::HttpJson),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            other => Err(format!(
                "OTLP protocol {other:?} is not http/json or http/protobuf"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::HttpJson => "http/json",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }

    /// The `Content-Type` of a request body in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::HttpJson => "application/json",
            Protocol::HttpProtobuf => "application/x-protobuf",
        }
    }

    /// One `ExportTraceServiceRequest` body holding `spans`, in this encoding.
    pub fn encode(self, resource: &Resource, scope: Scope, spans: &[Span]) -> Vec<u8> {
        match self {
            Protocol::HttpJson => encode(resource, scope, spans),
            Protocol::HttpProtobuf => encode_protobuf(resource, scope, spans),
        }
    }
}

/// One OTLP/HTTP protobuf `ExportTraceServiceRequest` body holding `spans`.
pub fn encode_protobuf(resource: &Resource, scope: Scope, spans: &[Span]) -> Vec<u8> {
    let string_kv = |key: &str, value: &str| proto::KeyValue {
        key: key.to_string(),
        value: Some(proto::AnyValue {
            value: Some(proto::Value::String(value.to_string())),
        }),
    };
    let request = proto::ExportTraceServiceRequest {
        resource_spans: vec![proto::ResourceSpans {
            resource: Some(proto::Resource {
                attributes: vec![
                    string_kv("service.name", &resource.service_name),
                    string_kv("service.version", &resource.service_version),
                    string_kv("service.instance.id", &resource.instance_id),
                ],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![proto::ScopeSpans {
                scope: Some(proto::InstrumentationScope {
                    name: scope.name.to_string(),
                    version: scope.version.to_string(),
                    ..Default::default()
                }),
                spans: spans.iter().map(proto_span).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    request.encode_to_vec()
}

/// The bytes of a lowercase-hex id (`Text` holds only valid hex digits).
fn id_bytes(hex: &str) -> Vec<u8> {
    let value = parse_lower_hex(hex.as_bytes()).unwrap_or(0);
    value.to_be_bytes()[16 - hex.len() / 2..].to_vec()
}

fn proto_span(span: &Span) -> proto::Span {
    proto::Span {
        trace_id: id_bytes(&span.trace_id),
        span_id: id_bytes(&span.span_id),
        trace_state: span.trace_state.clone(),
        parent_span_id: span
            .parent_span_id
            .as_ref()
            .map(|p| id_bytes(p))
            .unwrap_or_default(),
        name: span.name.clone(),
        kind: span.kind as i32,
        start_time_unix_nano: span.start_unix_nanos,
        end_time_unix_nano: span.end_unix_nanos,
        attributes: span
            .attributes
            .iter()
            .map(|(key, value)| proto::KeyValue {
                key: (*key).to_string(),
                value: Some(proto::AnyValue {
                    value: Some(match value {
                        AttrValue::String(s) => proto::Value::String(s.clone()),
                        AttrValue::Int(n) => proto::Value::Int(*n),
                        AttrValue::Bool(b) => proto::Value::Bool(*b),
                    }),
                }),
            })
            .collect(),
        status: match &span.status {
            Status::Unset => None,
            Status::Error(message) => Some(proto::Status {
                message: message.clone(),
                code: proto::status::ERROR,
            }),
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
