//! Attribute helpers over the OTLP messages, shared by ingest, the store and
//! the Jaeger mapping: an attribute value as text and as JSON, a span's kind
//! name, whether a span failed, and whether it carries a searched tag.
//!
//! A leaf over [`crate::otlp`]: the modules that decode, store and render
//! spans all ask these questions, so the answers live below all of them.

use crate::otlp::{self, KeyValue, ResourceSpans, Span, Value, wire};
use serde_json::Value as Json;

/// The service name of a resource without `service.name` (the OTel SDK default).
pub use traces::UNKNOWN_SERVICE;

/// An attribute value as Jaeger's tag query compares it: a plain string.
pub trait QueryString {
    fn to_query_string(&self) -> String;
}

impl QueryString for Value {
    fn to_query_string(&self) -> String {
        match self {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Double(d) => d.to_string(),
            Value::Bytes(b) => crate::base64::encode(b),
            Value::Array(_) | Value::Kvlist(_) => any_to_json(self).to_string(),
        }
    }
}

impl QueryString for wire::Value {
    fn to_query_string(&self) -> String {
        match self {
            wire::Value::String(s) => String::from_utf8_lossy(s).into_owned(),
            wire::Value::Bool(b) => b.to_string(),
            wire::Value::Int(i) => i.to_string(),
            wire::Value::Double(d) => d.to_string(),
            wire::Value::Bytes(b) => crate::base64::encode(b),
            wire::Value::Array(a) => Value::Array(a.clone()).to_query_string(),
            wire::Value::Kvlist(l) => Value::Kvlist(l.clone()).to_query_string(),
        }
    }
}

/// An array or map attribute value as JSON, as Jaeger shows it.
pub fn any_to_json(value: &Value) -> Json {
    fn any(v: &otlp::AnyValue) -> Json {
        v.value.as_ref().map_or(Json::Null, any_to_json)
    }
    match value {
        Value::String(s) => Json::from(s.as_str()),
        Value::Bool(b) => Json::from(*b),
        Value::Int(i) => Json::from(*i),
        Value::Double(d) => Json::from(*d),
        Value::Bytes(b) => Json::from(crate::base64::encode(b)),
        Value::Array(a) => Json::Array(a.values.iter().map(any).collect()),
        Value::Kvlist(kv) => Json::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Json::Null, any)))
                .collect(),
        ),
    }
}

/// The lowercase name Jaeger gives a span kind (`span.kind`); `None` for unspecified.
pub fn kind_name(kind: i32) -> Option<&'static str> {
    match kind {
        otlp::kind::INTERNAL => Some("internal"),
        otlp::kind::SERVER => Some("server"),
        otlp::kind::CLIENT => Some("client"),
        otlp::kind::PRODUCER => Some("producer"),
        otlp::kind::CONSUMER => Some("consumer"),
        _ => None,
    }
}

/// Status `Error`; or, with the status unset, an HTTP status of 500 or more
/// or the OpenTracing tag `error=true` (as `traces::is_error` decides).
pub fn is_error(span: &Span) -> bool {
    let code = span.status.as_ref().map_or(otlp::status::UNSET, |s| s.code);
    match code {
        otlp::status::ERROR => true,
        otlp::status::UNSET => {
            http_status(&span.attributes).is_some_and(|s| s >= 500)
                || otlp::attribute(&span.attributes, "error")
                    .is_some_and(|v| v.to_query_string() == "true")
        }
        _ => false,
    }
}

/// [`is_error`] of a span as ingest decodes it.
pub(crate) fn wire_is_error(span: &wire::Span) -> bool {
    let code = span.status.as_ref().map_or(otlp::status::UNSET, |s| s.code);
    match code {
        otlp::status::ERROR => true,
        otlp::status::UNSET => {
            let status = ["http.response.status_code", "http.status_code"]
                .iter()
                .find_map(|key| match wire::attribute(&span.attributes, key)? {
                    wire::Value::Int(n) => Some(*n),
                    wire::Value::String(s) => std::str::from_utf8(s).ok()?.parse().ok(),
                    _ => None,
                });
            status.is_some_and(|s| s >= 500)
                || wire::attribute(&span.attributes, "error")
                    .is_some_and(|v| v.to_query_string() == "true")
        }
        _ => false,
    }
}

/// The HTTP response status among the attributes (old and new semantic conventions).
pub fn http_status(attributes: &[KeyValue]) -> Option<i64> {
    ["http.response.status_code", "http.status_code"]
        .iter()
        .find_map(|key| match otlp::attribute(attributes, key)? {
            Value::Int(n) => Some(*n),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
}

/// Tags the Jaeger mapping adds to every span from fields that are not attributes.
pub const DERIVED_TAGS: &[&str] = &["error", "span.kind", "otel.status_code"];

/// Whether `key=value` is on the span, its resource or scope, or is one of
/// the tags the Jaeger mapping adds (`error`, `span.kind`, `otel.status_code`).
pub fn span_has_tag(span: &Span, resource: Option<&ResourceSpans>, key: &str, value: &str) -> bool {
    let matches = |attrs: &[KeyValue]| {
        otlp::attribute(attrs, key).is_some_and(|v| v.to_query_string() == value)
    };
    if matches(&span.attributes) || span.events.iter().any(|e| matches(&e.attributes)) {
        return true;
    }
    if let Some(r) = resource {
        if r.resource.as_ref().is_some_and(|r| matches(&r.attributes)) {
            return true;
        }
        if r.scope_spans
            .iter()
            .filter_map(|s| s.scope.as_ref())
            .any(|s| matches(&s.attributes))
        {
            return true;
        }
    }
    match key {
        "error" => (value == "true") == is_error(span),
        "span.kind" => kind_name(span.kind) == Some(value),
        "otel.status_code" => {
            let code = span.status.as_ref().map_or(0, |s| s.code);
            matches!(
                (code, value),
                (otlp::status::OK, "OK") | (otlp::status::ERROR, "ERROR")
            )
        }
        _ => false,
    }
}
