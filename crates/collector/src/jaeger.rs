//! Stored OTLP spans in Jaeger's query JSON (the shape of Jaeger's
//! `model/json`, which Jaeger UI and Grafana's Jaeger data source read).
//!
//! The mapping follows Jaeger's own OTLP translator: attributes become tags
//! (`string`, `bool`, `int64`, `float64`, `binary`; arrays and maps as JSON
//! text), the kind becomes `span.kind`, the status `otel.status_code`,
//! `otel.status_description` and `error=true`, the scope `otel.scope.name`
//! and `otel.scope.version` (its attributes as tags too), the trace state
//! `w3c.tracestate`; events become logs with an `event` field; the parent
//! becomes a `CHILD_OF` reference and links `FOLLOWS_FROM` ones; each distinct
//! resource is a process (`service.name` is its `serviceName`, the other
//! resource attributes its tags).

use crate::attrs::{UNKNOWN_SERVICE, any_to_json, is_error, kind_name};
use crate::ingest::hex;
use crate::otlp::{self, KeyValue, ResourceSpans, Span, Value};
use crate::store::StoredSpan;
use serde_json::{Value as Json, json};
use std::collections::HashMap;
use std::sync::Arc;

/// Jaeger's response envelope.
pub fn envelope(data: Json, total: usize, errors: Option<Json>) -> Json {
    json!({"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors})
}

fn tag(key: &str, value: Option<&Value>) -> Json {
    let (kind, value) = match value {
        None => ("string", Json::from("")),
        Some(Value::String(s)) => ("string", Json::from(s.as_str())),
        Some(Value::Bool(b)) => ("bool", Json::from(*b)),
        Some(Value::Int(i)) => ("int64", Json::from(*i)),
        Some(Value::Double(d)) => ("float64", Json::from(*d)),
        Some(Value::Bytes(b)) => ("binary", Json::from(crate::base64::encode(b))),
        Some(v @ (Value::Array(_) | Value::Kvlist(_))) => {
            ("string", Json::from(any_to_json(v).to_string()))
        }
    };
    json!({"key": key, "type": kind, "value": value})
}

fn tags(attributes: &[KeyValue]) -> Vec<Json> {
    attributes
        .iter()
        .map(|kv| tag(&kv.key, kv.value.as_ref().and_then(|v| v.value.as_ref())))
        .collect()
}

fn str_tag(key: &str, value: &str) -> Json {
    json!({"key": key, "type": "string", "value": value})
}

/// Nanoseconds to Jaeger's microseconds.
fn micros(ns: u64) -> u64 {
    ns / 1000
}

/// One Jaeger trace from the spans of one trace id.
pub fn trace(trace_id: &[u8; 16], spans: &[StoredSpan]) -> Json {
    let mut processes: Vec<(Arc<ResourceSpans>, String)> = Vec::new();
    let mut process_of: HashMap<*const ResourceSpans, String> = HashMap::new();
    let mut out = Vec::with_capacity(spans.len());
    for stored in spans {
        let key = Arc::as_ptr(&stored.resource);
        let pid = match process_of.get(&key) {
            Some(p) => p.clone(),
            None => {
                // Spans of one resource with different scopes share one process.
                let same = processes
                    .iter()
                    .find(|(r, _)| r.resource == stored.resource.resource);
                let pid = match same {
                    Some((_, pid)) => pid.clone(),
                    None => {
                        let pid = format!("p{}", processes.len() + 1);
                        processes.push((stored.resource.clone(), pid.clone()));
                        pid
                    }
                };
                process_of.insert(key, pid.clone());
                pid
            }
        };
        out.push(span(&stored.span, &stored.resource, &pid));
    }
    let mut process_map = serde_json::Map::new();
    for (resource, pid) in &processes {
        let attributes = resource
            .resource
            .as_ref()
            .map_or(&[][..], |r| r.attributes.as_slice());
        let service = spans
            .iter()
            .find(|s| Arc::ptr_eq(&s.resource, resource))
            .map_or(UNKNOWN_SERVICE, |s| s.service.as_str());
        let process_tags: Vec<Json> = attributes
            .iter()
            .filter(|kv| kv.key != "service.name")
            .map(|kv| tag(&kv.key, kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .collect();
        process_map.insert(
            pid.clone(),
            json!({"serviceName": service, "tags": process_tags}),
        );
    }
    json!({
        "traceID": hex(trace_id),
        "spans": out,
        "processes": process_map,
        "warnings": null,
    })
}

fn span(span: &Span, resource: &ResourceSpans, pid: &str) -> Json {
    let trace_id = hex(&span.trace_id);
    let mut references = Vec::new();
    if !span.parent_span_id.is_empty() && span.parent_span_id.iter().any(|&b| b != 0) {
        references.push(json!({
            "refType": "CHILD_OF",
            "traceID": trace_id,
            "spanID": hex(&span.parent_span_id),
        }));
    }
    for link in &span.links {
        references.push(json!({
            "refType": "FOLLOWS_FROM",
            "traceID": hex(&link.trace_id),
            "spanID": hex(&link.span_id),
        }));
    }
    let mut t = tags(&span.attributes);
    if let Some(kind) = kind_name(span.kind) {
        t.push(str_tag("span.kind", kind));
    }
    let status = span.status.clone().unwrap_or_default();
    match status.code {
        otlp::status::OK => t.push(str_tag("otel.status_code", "OK")),
        otlp::status::ERROR => t.push(str_tag("otel.status_code", "ERROR")),
        _ => {}
    }
    if !status.message.is_empty() {
        t.push(str_tag("otel.status_description", &status.message));
    }
    if is_error(span) {
        t.push(json!({"key": "error", "type": "bool", "value": true}));
    }
    if let Some(scope) = resource.scope_spans.first().and_then(|s| s.scope.as_ref()) {
        if !scope.name.is_empty() {
            t.push(str_tag("otel.scope.name", &scope.name));
        }
        if !scope.version.is_empty() {
            t.push(str_tag("otel.scope.version", &scope.version));
        }
        t.extend(tags(&scope.attributes));
    }
    if !span.trace_state.is_empty() {
        t.push(str_tag("w3c.tracestate", &span.trace_state));
    }
    let logs: Vec<Json> = span
        .events
        .iter()
        .map(|e| {
            let mut fields = vec![str_tag("event", &e.name)];
            fields.extend(tags(&e.attributes));
            json!({"timestamp": micros(e.time_unix_nano), "fields": fields})
        })
        .collect();
    json!({
        "traceID": trace_id,
        "spanID": hex(&span.span_id),
        "flags": span.flags,
        "operationName": span.name,
        "references": references,
        "startTime": micros(span.start_time_unix_nano),
        "duration": micros(span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano)),
        "tags": t,
        "logs": logs,
        "processID": pid,
        "warnings": null,
    })
}
