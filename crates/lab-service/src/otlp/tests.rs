use super::*;
use serde_json::{Value, json};

fn span(kind: SpanKind, parent: Option<u64>, status: Status) -> Span {
    Span {
        trace_id: TraceId::from_hex("5b8efff798038103d269b633813fc60c").unwrap(),
        span_id: SpanId::from_hex("eee19b7ec3c1b174").unwrap(),
        parent_span_id: parent.and_then(SpanId::new),
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
    let body = encode(
        &resource,
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
                "scope": { "name": "bulkhead-lab-service", "version": env!("CARGO_PKG_VERSION") },
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
fn the_endpoint_gets_the_traces_path_once() {
    let check = |base: &str, expect: &str| {
        let url: HttpUrl = base.parse().unwrap();
        assert_eq!(url.with_path_suffix("/v1/traces").unwrap().as_str(), expect);
    };
    check("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces");
    check("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces");
    check(
        "http://collector:4318/otlp",
        "http://collector:4318/otlp/v1/traces",
    );
    check(
        "http://127.0.0.1:4318/v1/traces",
        "http://127.0.0.1:4318/v1/traces",
    );
}

#[test]
fn urls_are_plain_http() {
    let check = |text: &str, expect: Result<(), &str>| {
        let got = text
            .parse::<HttpUrl>()
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(got, expect.map_err(str::to_string), "{text}");
    };
    check("http://127.0.0.1:4001/", Ok(()));
    check("http://payments", Ok(()));
    check(
        "https://127.0.0.1/",
        Err(r#"invalid URL "https://127.0.0.1/": https is not supported: use http://"#),
    );
    check(
        "127.0.0.1:4001",
        Err(r#"invalid URL "127.0.0.1:4001": expected http://HOST:PORT/PATH"#),
    );
    check(
        "/path",
        Err(r#"invalid URL "/path": expected http://HOST:PORT/PATH"#),
    );
}
