//! Jaeger's query API JSON (`/api/traces`) read back into the analysis
//! crate's spans: the inverse of what the collector serves, for the fields
//! the analysis reads, and equally for what Jaeger itself serves.

use serde_json::Value as Json;

/// The spans of one Jaeger trace (an element of `data` in what
/// `/api/traces/{id}` and `/api/traces?...` return) for the analysis crate.
/// Spans without a valid id are skipped.
pub fn spans(trace: &Json) -> Vec<traces::Span> {
    let processes = trace.get("processes").and_then(Json::as_object);
    // Jaeger drops leading zeros of ids: pad them back to full width.
    let parse_trace_id = |v: Option<&Json>| -> Option<traces::TraceId> {
        format!("{:0>32}", v?.as_str()?).parse().ok()
    };
    let parse_span_id = |v: Option<&Json>| -> Option<traces::SpanId> {
        format!("{:0>16}", v?.as_str()?).parse().ok()
    };
    let mut out = Vec::new();
    for span in trace
        .get("spans")
        .and_then(Json::as_array)
        .map_or(&[][..], Vec::as_slice)
    {
        let (Some(trace_id), Some(span_id)) = (
            parse_trace_id(span.get("traceID")),
            parse_span_id(span.get("spanID")),
        ) else {
            continue;
        };
        let parent = span
            .get("references")
            .and_then(Json::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r.get("refType").and_then(Json::as_str) == Some("CHILD_OF"))
            })
            .and_then(|r| parse_span_id(r.get("spanID")));
        let service = span
            .get("processID")
            .and_then(Json::as_str)
            .and_then(|p| processes?.get(p))
            .or_else(|| span.get("process"))
            .and_then(|p| p.get("serviceName"))
            .and_then(Json::as_str)
            .unwrap_or(traces::UNKNOWN_SERVICE)
            .to_string();
        let mut kind = traces::SpanKind::Unspecified;
        let mut status = traces::StatusCode::Unset;
        let mut status_message = String::new();
        let mut attributes = Vec::new();
        for t in span
            .get("tags")
            .and_then(Json::as_array)
            .map_or(&[][..], Vec::as_slice)
        {
            let Some(key) = t.get("key").and_then(Json::as_str) else {
                continue;
            };
            let value = match t.get("value") {
                Some(Json::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            match key {
                "span.kind" => {
                    kind = match value.as_str() {
                        "server" => traces::SpanKind::Server,
                        "client" => traces::SpanKind::Client,
                        "producer" => traces::SpanKind::Producer,
                        "consumer" => traces::SpanKind::Consumer,
                        "internal" => traces::SpanKind::Internal,
                        _ => traces::SpanKind::Unspecified,
                    }
                }
                "otel.status_code" => {
                    status = match value.as_str() {
                        "OK" => traces::StatusCode::Ok,
                        "ERROR" => traces::StatusCode::Error,
                        _ => traces::StatusCode::Unset,
                    }
                }
                "otel.status_description" => status_message = value,
                _ => attributes.push((key.to_string(), value)),
            }
        }
        let start_us = span.get("startTime").and_then(Json::as_u64).unwrap_or(0);
        let duration_us = span.get("duration").and_then(Json::as_u64).unwrap_or(0);
        out.push(traces::Span {
            trace_id,
            span_id,
            parent_span_id: parent,
            service,
            name: span
                .get("operationName")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string(),
            kind,
            start_unix_nano: start_us.saturating_mul(1000),
            end_unix_nano: (start_us.saturating_add(duration_us)).saturating_mul(1000),
            status,
            status_message,
            attributes,
        });
    }
    out
}

#[cfg(test)]
mod tests;
