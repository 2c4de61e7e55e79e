//! Jaeger trace JSON in, analysis spans out.

use super::*;
use serde_json::json;
use traces::{Span, SpanKind, StatusCode};

fn expect(
    (span_id, parent): (&str, Option<&str>),
    service: &str,
    name: &str,
    kind: SpanKind,
    (start_us, end_us): (u64, u64),
    (status, message): (StatusCode, &str),
    attributes: &[(&str, &str)],
) -> Span {
    Span {
        trace_id: "000000000000000000000000000000ab".parse().unwrap(),
        span_id: span_id.parse().unwrap(),
        parent_span_id: parent.map(|p| p.parse().unwrap()),
        service: service.into(),
        name: name.into(),
        kind,
        start_unix_nano: start_us * 1000,
        end_unix_nano: end_us * 1000,
        status,
        status_message: message.into(),
        attributes: attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn jaeger_traces_become_analysis_spans() {
    let trace = json!({
        "traceID": "ab",
        "processes": { "p1": { "serviceName": "frontend" } },
        "spans": [
            {
                "traceID": "ab", "spanID": "00f067aa0ba902b7", "processID": "p1",
                "operationName": "GET /", "startTime": 1000, "duration": 500,
                "references": [],
                "tags": [
                    { "key": "span.kind", "value": "server" },
                    { "key": "http.response.status_code", "value": 200 },
                    { "key": "retry", "value": false }
                ]
            },
            {
                // Short ids are Jaeger's with leading zeros dropped; the
                // parent is the CHILD_OF reference, not FOLLOWS_FROM.
                "traceID": "AB", "spanID": "1",
                "process": { "serviceName": "payments" },
                "operationName": "charge", "startTime": 1100, "duration": 200,
                "references": [
                    { "refType": "FOLLOWS_FROM", "spanID": "2" },
                    { "refType": "CHILD_OF", "spanID": "00f067aa0ba902b7" }
                ],
                "tags": [
                    { "key": "span.kind", "value": "client" },
                    { "key": "otel.status_code", "value": "ERROR" },
                    { "key": "otel.status_description", "value": "card declined" }
                ]
            },
            { "traceID": "ab", "spanID": "not hex", "operationName": "skipped" },
            { "traceID": "ab", "operationName": "no span id" },
            {
                "traceID": "ab", "spanID": "3", "processID": "unknown",
                "operationName": "x", "startTime": 1200,
                "tags": [
                    { "key": "span.kind", "value": "sideways" },
                    { "key": "otel.status_code", "value": "OK" },
                    { "value": "a tag without a key" }
                ]
            }
        ]
    });
    assert_eq!(
        spans(&trace),
        [
            expect(
                ("00f067aa0ba902b7", None),
                "frontend",
                "GET /",
                SpanKind::Server,
                (1000, 1500),
                (StatusCode::Unset, ""),
                &[("http.response.status_code", "200"), ("retry", "false")],
            ),
            expect(
                ("0000000000000001", Some("00f067aa0ba902b7")),
                "payments",
                "charge",
                SpanKind::Client,
                (1100, 1300),
                (StatusCode::Error, "card declined"),
                &[],
            ),
            expect(
                ("0000000000000003", None),
                traces::UNKNOWN_SERVICE,
                "x",
                SpanKind::Unspecified,
                (1200, 1200),
                (StatusCode::Ok, ""),
                &[],
            ),
        ]
    );
}

#[test]
fn a_trace_without_spans_has_none() {
    for trace in [json!({}), json!({ "spans": "not a list" }), json!(null)] {
        assert_eq!(spans(&trace), [], "{trace}");
    }
}
