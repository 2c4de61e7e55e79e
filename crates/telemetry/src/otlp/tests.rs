use super::*;
use crate::{SpanId, TraceId};
use serde_json::{Value, json};

fn span(kind: SpanKind, parent: Option<u64>, status: Status) -> Span {
    Span {
        trace_id: TraceId::from_hex("5b8efff798038103d269b633813fc60c")
            .unwrap()
            .hex(),
        span_id: SpanId::from_hex("eee19b7ec3c1b174").unwrap().hex(),
        parent_span_id: parent.and_then(SpanId::new).map(SpanId::hex),
        trace_state: String::new(),
        name: "GET /".into(),
        kind,
        start_unix_nanos: 1_544_712_660_000_000_000,
        end_unix_nanos: 1_544_712_661_000_000_000,
        attributes: vec![
            ("http.request.method", AttrValue::from("GET")),
            ("http.response.status_code", AttrValue::Int(200)),
            ("fault.injected", AttrValue::Bool(false)),
        ],
        status,
    }
}

#[test]
fn encodes_the_otlp_json_mapping() {
    let resource = Resource {
        service_name: "orders".into(),
        service_version: "1.2.3".into(),
        instance_id: "127.0.0.1:4001".into(),
    };
    let mut client = span(
        SpanKind::Client,
        Some(0xeee1_9b7e_c3c1_b173),
        Status::Error("answered 502".into()),
    );
    client.trace_state = "foo=1".into();
    let scope = Scope {
        name: "bulkhead-lab-service",
        version: "1.2.3",
    };
    let body = encode(
        &resource,
        scope,
        &[span(SpanKind::Server, None, Status::Unset), client],
    );
    let got: Value = serde_json::from_slice(&body).unwrap();
    let attributes = json!([
        { "key": "http.request.method", "value": { "stringValue": "GET" } },
        { "key": "http.response.status_code", "value": { "intValue": "200" } },
        { "key": "fault.injected", "value": { "boolValue": false } }
    ]);
    let expect = json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "orders" } },
                { "key": "service.version", "value": { "stringValue": "1.2.3" } },
                { "key": "service.instance.id", "value": { "stringValue": "127.0.0.1:4001" } }
            ]},
            "scopeSpans": [{
                "scope": { "name": "bulkhead-lab-service", "version": "1.2.3" },
                "spans": [
                    {
                        "traceId": "5b8efff798038103d269b633813fc60c",
                        "spanId": "eee19b7ec3c1b174",
                        "name": "GET /",
                        "kind": 2,
                        "startTimeUnixNano": "1544712660000000000",
                        "endTimeUnixNano": "1544712661000000000",
                        "attributes": attributes
                    },
                    {
                        "traceId": "5b8efff798038103d269b633813fc60c",
                        "spanId": "eee19b7ec3c1b174",
                        "parentSpanId": "eee19b7ec3c1b173",
                        "traceState": "foo=1",
                        "name": "GET /",
                        "kind": 3,
                        "startTimeUnixNano": "1544712660000000000",
                        "endTimeUnixNano": "1544712661000000000",
                        "attributes": attributes,
                        "status": { "message": "answered 502", "code": 2 }
                    }
                ]
            }]
        }]
    });
    assert_eq!(got, expect);
}

#[test]
fn times_are_nanoseconds_since_the_epoch() {
    let at = |nanos: u64| UNIX_EPOCH + std::time::Duration::from_nanos(nanos);
    assert_eq!(
        unix_nanos(at(1_544_712_660_000_000_001)),
        1_544_712_660_000_000_001
    );
    assert_eq!(
        unix_nanos(UNIX_EPOCH - std::time::Duration::from_secs(1)),
        0
    );
    assert_eq!(AttrValue::from(u64::MAX), AttrValue::Int(i64::MAX));
}
