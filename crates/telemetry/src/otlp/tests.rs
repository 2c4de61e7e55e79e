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

#[test]
fn protobuf_carries_what_json_carries() {
    use prost::Message as _;
    let resource = Resource {
        service_name: "orders".into(),
        service_version: "1.2.3".into(),
        instance_id: "127.0.0.1:4001".into(),
    };
    let mut client = span(
        SpanKind::Client,
        Some(0x0000_9b7e_c3c1_b173),
        Status::Error("answered 502".into()),
    );
    client.trace_state = "foo=1".into();
    let scope = Scope {
        name: "bulkhead-gateway",
        version: "1.2.3",
    };
    let spans = [span(SpanKind::Server, None, Status::Unset), client];
    let body = Protocol::HttpProtobuf.encode(&resource, scope, &spans);
    let request = proto::ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    let rs = &request.resource_spans[0];
    let resource_attrs = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(
        proto::attribute(resource_attrs, "service.instance.id"),
        Some(&proto::Value::String("127.0.0.1:4001".into()))
    );
    let ss = &rs.scope_spans[0];
    assert_eq!(ss.scope.as_ref().unwrap().name, "bulkhead-gateway");
    let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let server = &ss.spans[0];
    assert_eq!(hex(&server.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex(&server.span_id), "eee19b7ec3c1b174");
    assert!(server.parent_span_id.is_empty());
    assert_eq!(server.kind, proto::kind::SERVER);
    assert_eq!(server.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(server.status, None);
    assert_eq!(
        proto::attribute(&server.attributes, "http.response.status_code"),
        Some(&proto::Value::Int(200))
    );
    assert_eq!(
        proto::attribute(&server.attributes, "fault.injected"),
        Some(&proto::Value::Bool(false))
    );
    let client = &ss.spans[1];
    // Leading zero bytes stay: an id is always 8 or 16 bytes.
    assert_eq!(hex(&client.parent_span_id), "00009b7ec3c1b173");
    assert_eq!(client.trace_state, "foo=1");
    assert_eq!(client.kind, proto::kind::CLIENT);
    assert_eq!(
        client.status,
        Some(proto::Status {
            message: "answered 502".into(),
            code: proto::status::ERROR
        })
    );
    assert_eq!(
        Protocol::HttpJson.encode(&resource, scope, &spans),
        encode(&resource, scope, &spans)
    );
}

#[test]
fn protocols_are_named_as_opentelemetry_names_them() {
    for (name, protocol, content_type) in [
        ("http/json", Protocol::HttpJson, "application/json"),
        (
            "http/protobuf",
            Protocol::HttpProtobuf,
            "application/x-protobuf",
        ),
    ] {
        assert_eq!(Protocol::parse(name), Ok(protocol));
        assert_eq!(protocol.name(), name);
        assert_eq!(protocol.content_type(), content_type);
    }
    assert_eq!(
        Protocol::parse("grpc"),
        Err("OTLP protocol \"grpc\" is not http/json or http/protobuf".into())
    );
}
