//! Decoding, validation, storage and retention, on fixtures and generated spans.

use crate::ingest::{self, Batch};
use crate::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
    Status, Value, kind, status,
};
use crate::store::{Retention, TraceQuery, Writer};
use prost::Message as _;
use std::collections::HashSet;
use test_support::TempDir;

const FIXTURE: &str = include_str!("../../../testdata/otlp/trace.json");

/// The tag index keys of these tests, as `--index-tags http.status_code,http.route` sets them.
fn indexed() -> HashSet<String> {
    ["http.status_code", "http.route"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// A request of one service's spans; `spans` are (trace byte, span byte, parent byte, start, duration, http status).
fn request(service: &str, spans: &[(u8, u8, u8, u64, u64, i64)]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", Value::String(service.into()))],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: spans
                    .iter()
                    .map(|&(t, s, p, start, dur, http)| Span {
                        trace_id: vec![t; 16],
                        span_id: vec![s; 8],
                        parent_span_id: if p == 0 { Vec::new() } else { vec![p; 8] },
                        name: format!("GET /{service}"),
                        kind: kind::SERVER,
                        start_time_unix_nano: start,
                        end_time_unix_nano: start + dur,
                        attributes: vec![kv("http.status_code", Value::Int(http))],
                        ..Span::default()
                    })
                    .collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[test]
fn fixture_json_decodes_every_field() {
    let request = crate::json::decode_request(FIXTURE.as_bytes()).expect("fixture decodes");
    let rs = &request.resource_spans[0];
    assert_eq!(
        crate::otlp::attribute(&rs.resource.as_ref().unwrap().attributes, "service.name"),
        Some(&Value::String("my.service".into()))
    );
    let scope = rs.scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("my.library", "1.0.0")
    );
    assert_eq!(scope.attributes[0].key, "my.scope.attribute");
    let span = &rs.scope_spans[0].spans[0];
    assert_eq!(
        ingest::hex(&span.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(ingest::hex(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(ingest::hex(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(span.kind, kind::SERVER);
    assert_eq!(
        crate::otlp::attribute(&span.attributes, "my.span.attr"),
        Some(&Value::String("some value".into()))
    );
    // The protobuf encoding decodes to the same message.
    let again = ExportTraceServiceRequest::decode(request.encode_to_vec().as_slice()).unwrap();
    assert_eq!(again, request);
}

#[test]
fn json_takes_every_value_kind_and_names_bad_paths() {
    let body = br#"{"resource_spans":[{"scopeSpans":[{"spans":[{
        "traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708",
        "name":"x","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":5,"endTimeUnixNano":"9",
        "status":{"code":"STATUS_CODE_ERROR","message":"boom"},
        "attributes":[
          {"key":"s","value":{"stringValue":"v"}},{"key":"b","value":{"boolValue":true}},
          {"key":"i","value":{"intValue":"-42"}},{"key":"d","value":{"doubleValue":"NaN"}},
          {"key":"y","value":{"bytesValue":"AAEC"}},
          {"key":"a","value":{"arrayValue":{"values":[{"intValue":1},{"stringValue":"two"}]}}},
          {"key":"m","value":{"kvlistValue":{"values":[{"key":"k","value":{"boolValue":false}}]}}}],
        "events":[{"timeUnixNano":"7","name":"retry","attributes":[{"key":"n","value":{"intValue":2}}]}],
        "links":[{"traceId":"0102030405060708090a0b0c0d0e0f11","spanId":"0102030405060709"}]
    }]}]}]}"#;
    let request = crate::json::decode_request(body).expect("decodes");
    let span = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.kind, kind::CLIENT);
    assert_eq!(span.status.as_ref().unwrap().code, status::ERROR);
    assert_eq!(span.attributes.len(), 7);
    assert_eq!(
        crate::otlp::attribute(&span.attributes, "i"),
        Some(&Value::Int(-42))
    );
    assert_eq!(
        crate::otlp::attribute(&span.attributes, "y"),
        Some(&Value::Bytes(vec![0, 1, 2]))
    );
    assert!(
        matches!(crate::otlp::attribute(&span.attributes, "d"), Some(Value::Double(d)) if d.is_nan())
    );
    assert_eq!(span.events[0].time_unix_nano, 7);
    assert_eq!(span.links.len(), 1);

    let bad = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#;
    let e = crate::json::decode_request(bad).unwrap_err();
    assert_eq!(e.path, "$.resourceSpans[0].scopeSpans[0].spans[0].traceId");
    let e = crate::json::decode_request(br#"{"resourceSpans":{}}"#).unwrap_err();
    assert!(e.message.contains("array"), "{e}");
}

#[test]
fn invalid_spans_are_rejected_alone() {
    let mut req = request(
        "a",
        &[
            (1, 1, 0, 10, 5, 200),
            (0, 2, 0, 10, 5, 200),
            (1, 3, 0, 10, 0, 200),
        ],
    );
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[2].end_time_unix_nano = 1;
    spans.push(Span {
        trace_id: vec![1; 15],
        span_id: vec![4; 8],
        start_time_unix_nano: 1,
        ..Span::default()
    });
    let prepared = ingest::prepare(req, &indexed());
    assert_eq!(prepared.batch.spans.len(), 1);
    assert_eq!(prepared.rejected, 3);
    let message = prepared.message();
    assert!(message.contains("trace id is all zeros"), "{message}");
    assert!(
        message.contains("end time is before start time"),
        "{message}"
    );
    assert!(
        message.contains("trace id has 15 bytes, want 16"),
        "{message}"
    );
}

#[test]
fn error_is_status_error_or_http_5xx_when_unset() {
    let mut span = Span {
        attributes: vec![kv("http.response.status_code", Value::Int(503))],
        ..Span::default()
    };
    assert!(crate::attrs::is_error(&span));
    span.status = Some(Status {
        code: status::OK,
        message: String::new(),
    });
    assert!(!crate::attrs::is_error(&span));
    span.status = Some(Status {
        code: status::ERROR,
        message: String::new(),
    });
    span.attributes.clear();
    assert!(crate::attrs::is_error(&span));
}

/// The protobuf path stores each span's own bytes and derives the same rows
/// as decoding the request whole; what decoding whole refuses, it refuses.
#[test]
fn protobuf_bodies_are_stored_as_sent() {
    let request = crate::json::decode_request(FIXTURE.as_bytes()).expect("fixture decodes");
    let body = request.encode_to_vec();
    let whole = ingest::prepare(request.clone(), &indexed());
    let sliced = ingest::prepare_protobuf(bytes::Bytes::from(body), &indexed()).unwrap();
    assert_eq!(sliced.batch, whole.batch);
    let sent: Vec<&Span> = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    assert_eq!(sliced.batch.spans.len(), sent.len());
    for (row, span) in sliced.batch.spans.iter().zip(&sent) {
        assert_eq!(&Span::decode(&row.blob[..]).unwrap(), *span);
    }

    // A field of a newer protocol version is kept in the stored bytes and
    // skipped when the span is read back.
    let mut span = request.resource_spans[0].scope_spans[0].spans[0].encode_to_vec();
    span.extend_from_slice(&[0xf8, 0x06, 0x01]); // field 111, varint 1
    let field = |key: u8, payload: &[u8]| {
        let mut out = vec![key];
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    };
    // ExportTraceServiceRequest.resource_spans { ResourceSpans.scope_spans { ScopeSpans.spans } }
    let body = field(0x0a, &field(0x12, &field(0x12, &span)));
    let prepared = ingest::prepare_protobuf(bytes::Bytes::from(body), &indexed()).unwrap();
    assert_eq!(prepared.batch.spans[0].blob, span);
    assert_eq!(
        Span::decode(&prepared.batch.spans[0].blob[..]).unwrap(),
        request.resource_spans[0].scope_spans[0].spans[0]
    );

    // An attribute key that is not UTF-8 fails as decoding whole fails.
    let mut bad = request.clone();
    bad.resource_spans[0].scope_spans[0].spans[0].attributes =
        vec![kv("k\u{e9}", Value::Bool(true))];
    let mut body = bad.encode_to_vec();
    let at = body
        .windows(3)
        .position(|w| w == "k\u{e9}".as_bytes())
        .unwrap();
    body[at + 1] = 0xff;
    assert!(ExportTraceServiceRequest::decode(body.as_slice()).is_err());
    let e = ingest::prepare_protobuf(bytes::Bytes::from(body), &indexed()).unwrap_err();
    assert!(e.contains("UTF-8"), "{e}");
}

/// Random and truncated bytes never panic a decoder; every failure is an error value.
#[test]
fn decoders_survive_garbage() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = request("svc", &[(1, 1, 0, 10, 5, 200), (1, 2, 1, 11, 3, 500)]).encode_to_vec();
    let json = FIXTURE.as_bytes();
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for n in 0..valid.len() {
        inputs.push(valid[..n].to_vec());
    }
    for n in (0..json.len()).step_by(7) {
        inputs.push(json[..n].to_vec());
    }
    for _ in 0..2000 {
        let len = (next() % 300) as usize;
        inputs.push((0..len).map(|_| next() as u8).collect());
    }
    for _ in 0..2000 {
        let mut flipped = valid.clone();
        let i = (next() as usize) % flipped.len();
        flipped[i] ^= next() as u8;
        inputs.push(flipped);
    }
    for input in &inputs {
        let whole = ExportTraceServiceRequest::decode(input.as_slice());
        let spans = ingest::prepare_protobuf(bytes::Bytes::from(input.clone()), &indexed());
        assert_eq!(whole.is_ok(), spans.is_ok(), "{input:?}");
        if let Ok(req) = whole {
            assert_eq!(
                spans.map(|p| p.batch.spans.len()).ok(),
                Some(ingest::prepare(req, &indexed()).batch.spans.len())
            );
        }
        if let Ok(req) = crate::json::decode_request(input) {
            let _ = ingest::prepare(req, &indexed());
        }
        let _ = crate::server::gunzip(input, 1 << 20);
        let _ = crate::server::grpc_message(input, "gzip", 1 << 20);
    }
}

#[test]
fn gzip_bombs_stop_at_the_limit() {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 8 << 20]).unwrap();
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 64 << 10);
    let e = crate::server::gunzip(&bomb, 1 << 20).unwrap_err();
    assert!(e.contains("past the limit"), "{e}");
    assert_eq!(
        crate::server::gunzip(&bomb, 8 << 20).map(|v| v.len()),
        Ok(8 << 20)
    );
}

fn write(writer: &mut Writer, req: ExportTraceServiceRequest) {
    let prepared = ingest::prepare(req, &indexed());
    assert_eq!(prepared.rejected, 0, "{}", prepared.message());
    writer.write(&[&prepared.batch]).expect("write");
}

#[test]
fn store_answers_trace_search_dependencies_and_stats() {
    let dir = TempDir::new("store");
    let mut writer = Writer::open(dir.path(), false).unwrap();
    let now = crate::store::now_ns() as u64;
    // Trace 1: a -> b (b fails with 500); trace 2: a alone, slow.
    write(
        &mut writer,
        request(
            "a",
            &[
                (1, 1, 0, now, 50_000_000, 200),
                (2, 5, 0, now + 1, 900_000_000, 200),
            ],
        ),
    );
    write(
        &mut writer,
        request("b", &[(1, 2, 1, now + 10, 20_000_000, 500)]),
    );
    let reader = writer.reader();
    assert_eq!(reader.services().unwrap(), ["a", "b"]);
    assert_eq!(
        reader.operations("b").unwrap(),
        [("GET /b".to_string(), kind::SERVER)]
    );
    let trace = reader.trace(&[1; 16]).unwrap();
    assert_eq!(trace.len(), 2);
    assert_eq!(trace[1].service, "b");
    let q = |f: &dyn Fn(&mut TraceQuery)| {
        let mut query = TraceQuery {
            service: "a".into(),
            end_ns: i64::MAX,
            limit: 10,
            ..TraceQuery::default()
        };
        f(&mut query);
        reader.find_traces(&query, &indexed(), 1000).unwrap()
    };
    assert_eq!(q(&|_| {}), [[2; 16], [1; 16]]);
    assert_eq!(q(&|q| q.min_duration_ns = Some(100_000_000)), [[2; 16]]);
    assert_eq!(q(&|q| q.max_duration_ns = Some(100_000_000)), [[1; 16]]);
    assert_eq!(
        q(&|q| {
            q.service = "b".into();
            q.errors_only = true
        }),
        [[1; 16]]
    );
    assert!(q(&|q| q.errors_only = true).is_empty());
    assert_eq!(
        q(&|q| {
            q.service = "b".into();
            q.tags = vec![("http.status_code".into(), "500".into())]
        }),
        [[1; 16]]
    );
    assert!(q(&|q| q.tags = vec![("http.status_code".into(), "500".into())]).is_empty());
    // A key without a tag index is matched on the decoded spans.
    assert_eq!(
        q(&|q| q.tags = vec![("service.name".into(), "a".into())]).len(),
        2
    );
    assert_eq!(q(&|q| q.operation = Some("GET /a".into())).len(), 2);
    assert!(q(&|q| q.operation = Some("GET /b".into())).is_empty());

    let deps = reader.dependencies(0, i64::MAX).unwrap();
    assert_eq!(deps.len(), 1);
    assert_eq!(
        (
            deps[0].parent.as_str(),
            deps[0].child.as_str(),
            deps[0].calls,
            deps[0].errors
        ),
        ("a", "b", 1, 1)
    );
    assert_eq!(reader.server_spans("b", 0).unwrap(), [(20_000_000, true)]);
    assert!(
        reader
            .server_spans("b", now as i64 + 1_000_000_000)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn jaeger_json_keeps_every_field_of_the_fixture() {
    let dir = TempDir::new("jaeger");
    let mut writer = Writer::open(dir.path(), false).unwrap();
    write(
        &mut writer,
        crate::json::decode_request(FIXTURE.as_bytes()).unwrap(),
    );
    let id: [u8; 16] = crate::json::hex_decode("5b8efff798038103d269b633813fc60c")
        .unwrap()
        .try_into()
        .unwrap();
    let spans = writer.reader().trace(&id).unwrap();
    let json = crate::jaeger::trace(&id, &spans);
    let span = &json["spans"][0];
    assert_eq!(span["spanID"], "eee19b7ec3c1b174");
    assert_eq!(span["operationName"], "I'm a server span");
    assert_eq!(span["references"][0]["spanID"], "eee19b7ec3c1b173");
    assert_eq!(span["references"][0]["refType"], "CHILD_OF");
    assert_eq!(span["startTime"], 1_544_712_660_000_000u64);
    assert_eq!(span["duration"], 1_000_000);
    let tags = span["tags"].as_array().unwrap();
    let tag = |k: &str| {
        tags.iter()
            .find(|t| t["key"] == k)
            .map(|t| t["value"].clone())
    };
    assert_eq!(tag("my.span.attr"), Some("some value".into()));
    assert_eq!(tag("span.kind"), Some("server".into()));
    assert_eq!(tag("otel.scope.name"), Some("my.library".into()));
    assert_eq!(tag("otel.scope.version"), Some("1.0.0".into()));
    assert_eq!(
        tag("my.scope.attribute"),
        Some("some scope attribute".into())
    );
    assert_eq!(
        json["processes"][span["processID"].as_str().unwrap()]["serviceName"],
        "my.service"
    );
    // And the analysis view of the Jaeger JSON is the analysis view of the store.
    let from_json = telemetry::jaeger::spans(&json);
    let from_store: Vec<traces::Span> = spans.iter().map(crate::to_analysis_span).collect();
    assert_eq!(from_json[0].span_id, from_store[0].span_id);
    assert_eq!(from_json[0].parent_span_id, from_store[0].parent_span_id);
    assert_eq!(from_json[0].kind, traces::SpanKind::Server);
    assert_eq!(from_json[0].service, "my.service");
}

#[test]
fn a_reopened_store_keeps_its_spans_and_catalog() {
    let dir = TempDir::new("reopen");
    let mut writer = Writer::open(dir.path(), false).unwrap();
    write(&mut writer, request("a", &[(1, 1, 0, 100, 5, 200)]));
    drop(writer);
    let mut writer = Writer::open(dir.path(), false).unwrap();
    write(&mut writer, request("a", &[(1, 2, 1, 101, 5, 200)]));
    let reader = writer.reader();
    assert_eq!(reader.trace(&[1; 16]).unwrap().len(), 2);
    assert_eq!(reader.services().unwrap(), ["a"]);
}

/// The segment files in a data directory, by number, with their lengths.
fn segment_files(dir: &std::path::Path) -> Vec<(i64, u64)> {
    let mut files: Vec<(i64, u64)> = std::fs::read_dir(dir.join(crate::segment::SEGMENT_DIR))
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().into_string().unwrap();
            let n = name.strip_suffix(".spans")?.parse().unwrap();
            Some((n, e.metadata().unwrap().len()))
        })
        .collect();
    files.sort_unstable();
    files
}

/// The index's commits: (segment, spans) in order.
fn commits(dir: &std::path::Path) -> Vec<(i64, i64)> {
    let conn = rusqlite::Connection::open(dir.join(crate::store::DB_FILE)).unwrap();
    let mut stmt = conn
        .prepare("SELECT segment, last_span FROM commits ORDER BY id")
        .unwrap();
    let rows: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

#[test]
fn retention_deletes_oldest_commits_by_age_and_by_size() {
    let dir = TempDir::new("retention");
    let mut writer = Writer::open(dir.path(), false).unwrap();
    writer.set_segment_bytes(8 << 10);
    for t in 1..=40u8 {
        let spans: Vec<_> = (1..=50u8)
            .map(|s| (t, s, 0, 100 + u64::from(s), 5, 200))
            .collect();
        write(&mut writer, request("a", &spans));
    }
    let reader = writer.reader();
    assert_eq!(reader.span_count().unwrap(), 2000);
    // Nothing is old enough yet.
    let keep = Retention {
        max_age_ms: Some(3_600_000),
        max_bytes: None,
    };
    assert_eq!(writer.enforce(keep, 10_000).unwrap(), 0);
    // By size: each call frees about a twentieth, oldest traces first.
    let size = writer.live_bytes().unwrap();
    let half = Retention {
        max_age_ms: None,
        max_bytes: Some(size / 2),
    };
    while writer.live_bytes().unwrap() > size / 2 {
        assert!(writer.enforce(half, 10_000).unwrap() > 0);
    }
    assert!(reader.trace(&[1; 16]).unwrap().is_empty());
    assert_eq!(reader.trace(&[40; 16]).unwrap().len(), 50);
    let left = reader.span_count().unwrap();
    assert!(left > 0 && left < 2000, "{left}");
    // By age, a bounded number of rows per call, until nothing is left.
    let all = Retention {
        max_age_ms: Some(-1),
        max_bytes: None,
    };
    let mut deleted = 0;
    while reader.span_count().unwrap() > 0 {
        let n = writer.enforce(all, 300).unwrap();
        assert!(n > 0 && n <= 300, "{n}");
        deleted += n;
    }
    assert_eq!(deleted, left);
    // The trace index went with them (its sealed files lie beside the segments),
    let left_files = std::fs::read_dir(dir.path().join(crate::segment::SEGMENT_DIR))
        .unwrap()
        .count();
    assert_eq!(left_files, 0);
    // and so did the tag index.
    let query = TraceQuery {
        service: "a".into(),
        end_ns: i64::MAX,
        limit: 10,
        tags: vec![("http.status_code".into(), "200".into())],
        ..TraceQuery::default()
    };
    assert!(
        reader
            .find_traces(&query, &indexed(), 1000)
            .unwrap()
            .is_empty()
    );
    // A writer reopened on the emptied store numbers its rows after the ones
    // retention deleted, so the next commit reads back whole and expires alone.
    drop(writer);
    let mut writer = Writer::open(dir.path(), false).unwrap();
    let reader = writer.reader();
    let spans: Vec<_> = (1..=50u8).map(|s| (41, s, 0, 200, 5, 200)).collect();
    write(&mut writer, request("a", &spans));
    assert_eq!(reader.trace(&[41; 16]).unwrap().len(), 50);
    assert_eq!(
        reader.find_traces(&query, &indexed(), 1000).unwrap(),
        [[41; 16]]
    );
    assert_eq!(writer.enforce(all, 300).unwrap(), 50);
    assert_eq!(reader.span_count().unwrap(), 0);
    assert!(segment_files(dir.path()).is_empty());
}

/// Retention frees space a whole segment at a time: the commits left are
/// exactly those of the newest segments, each of those segments' files is
/// still there, every trace is whole or gone; a segment dropped over several
/// calls (fewer spans per call than it holds) keeps its file until its last
/// commit goes.
#[test]
fn retention_drops_whole_segments() {
    let dir = TempDir::new("segments-retention");
    let mut writer = Writer::open(dir.path(), false).unwrap();
    writer.set_segment_bytes(12 << 10);
    for t in 1..=40u8 {
        let spans: Vec<_> = (1..=50u8)
            .map(|s| (t, s, 0, 100 + u64::from(s), 5, 200))
            .collect();
        write(&mut writer, request("a", &spans));
    }
    let before = commits(dir.path());
    let files = segment_files(dir.path());
    assert!(files.len() >= 5, "{files:?}");
    let named: Vec<i64> = files.iter().map(|f| f.0).collect();
    let mut in_index: Vec<i64> = before.iter().map(|c| c.0).collect();
    in_index.dedup();
    assert_eq!(named, in_index);

    let half = Retention {
        max_age_ms: None,
        max_bytes: Some(writer.live_bytes().unwrap() / 2),
    };
    assert!(writer.enforce(half, 1_000_000).unwrap() > 0);
    let after = commits(dir.path());
    let oldest = after[0].0;
    assert!(oldest > files[0].0);
    assert_eq!(
        after,
        before
            .iter()
            .copied()
            .filter(|c| c.0 >= oldest)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        segment_files(dir.path()),
        files
            .iter()
            .copied()
            .filter(|f| f.0 >= oldest)
            .collect::<Vec<_>>()
    );
    let reader = writer.reader();
    let gone = 40 - after.len() as u8;
    for t in 1..=40u8 {
        let want = if t <= gone { 0 } else { 50 };
        assert_eq!(reader.trace(&[t; 16]).unwrap().len(), want, "trace {t}");
    }

    // 60 spans per call: one commit of 50 at a time.
    let all = Retention {
        max_age_ms: Some(-1),
        max_bytes: None,
    };
    let in_oldest = after.iter().filter(|c| c.0 == oldest).count();
    assert!(in_oldest > 1, "{after:?}");
    for i in 1..in_oldest {
        assert_eq!(writer.enforce(all, 60).unwrap(), 50);
        assert_eq!(segment_files(dir.path())[0].0, oldest, "after commit {i}");
        assert_eq!(reader.trace(&[gone + i as u8 + 1; 16]).unwrap().len(), 50);
    }
    assert_eq!(writer.enforce(all, 60).unwrap(), 50);
    assert!(segment_files(dir.path())[0].0 > oldest);
}

/// A group commit whose segment write landed but whose index did not commit
/// (the collector killed between the two, or mid-write) leaves bytes past the
/// committed end, maybe a whole new segment: opening the store cuts them off,
/// and the next commit appends right after the committed bytes.
#[test]
fn a_torn_segment_write_is_cut_back_and_ingest_continues() {
    let dir = TempDir::new("segments-torn");
    let mut writer = Writer::open(dir.path(), false).unwrap();
    for t in 1..=3u8 {
        write(
            &mut writer,
            request("a", &[(t, 1, 0, 100, 5, 200), (t, 2, 1, 101, 5, 500)]),
        );
    }
    drop(writer);
    let committed = segment_files(dir.path());
    assert_eq!(committed.len(), 1);
    let (segment, length) = committed[0];
    let path = crate::segment::path(&dir.path().join(crate::segment::SEGMENT_DIR), segment);
    let mut torn = std::fs::read(&path).unwrap();
    torn.extend_from_slice(&[0xa5; 700]);
    std::fs::write(&path, &torn).unwrap();
    let next = crate::segment::path(&dir.path().join(crate::segment::SEGMENT_DIR), segment + 1);
    std::fs::write(&next, [0x5a; 300]).unwrap();

    let mut writer = Writer::open(dir.path(), false).unwrap();
    assert_eq!(segment_files(dir.path()), [(segment, length)]);
    write(&mut writer, request("b", &[(4, 1, 0, 200, 5, 200)]));
    let reader = writer.reader();
    for t in 1..=3u8 {
        let spans = reader.trace(&[t; 16]).unwrap();
        assert_eq!(spans.len(), 2, "trace {t}");
        assert_eq!(spans[1].span.parent_span_id, [1; 8]);
    }
    let spans = reader.trace(&[4; 16]).unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].service, "b");
    assert_eq!(spans[0].span.start_time_unix_nano, 200);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].1 > length);
    // What the index records as the segment's end is where the file ends.
    let end: i64 = rusqlite::Connection::open(dir.path().join(crate::store::DB_FILE))
        .unwrap()
        .query_row(
            "SELECT segment_end FROM commits ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(end as u64, files[0].1);
}

#[test]
fn one_batch_holds_each_resource_once() {
    let prepared = ingest::prepare(
        request("a", &[(1, 1, 0, 1, 1, 200), (1, 2, 0, 1, 1, 200)]),
        &indexed(),
    );
    let Batch { resources, spans } = prepared.batch;
    assert_eq!(resources.len(), 1);
    assert_eq!(spans.len(), 2);
    assert!(spans.iter().all(|s| s.resource == resources[0].hash));
    assert_eq!(spans[0].tags, [ingest::tag_hash("http.status_code", "200")]);
}

/// Trace ids are indexed once per trace per commit, whatever order its spans
/// arrive in; a trace spread over batches and commits reads back whole, in
/// order, with a span stored twice returned once, and parents are found
/// across commits.
#[test]
fn traces_are_indexed_per_commit_and_read_back_whole() {
    let dir = TempDir::new("traces");
    let mut writer = Writer::open(dir.path(), false).unwrap();
    let prepare = |service: &str, spans: &[(u8, u8, u8, u64, u64, i64)]| {
        ingest::prepare(request(service, spans), &indexed()).batch
    };
    // One commit: two requests, each interleaving traces 1 and 2.
    let a = prepare("a", &[(1, 1, 0, 10, 5, 200), (2, 1, 0, 11, 5, 200)]);
    let b = prepare("b", &[(2, 2, 1, 12, 5, 200), (1, 2, 1, 13, 5, 500)]);
    writer.write(&[&a, &b]).unwrap();
    let reader = writer.reader();
    assert_eq!(reader.trace_runs(&[1; 16]), [(1, 2)]);
    assert_eq!(reader.trace_runs(&[2; 16]), [(3, 4)]);
    // A later commit adds a grandchild to trace 1.
    writer
        .write(&[&prepare("c", &[(1, 3, 2, 14, 5, 200)])])
        .unwrap();
    assert_eq!(reader.trace_runs(&[1; 16]), [(1, 2), (5, 5)]);
    let ids = |trace: u8| -> Vec<(String, u8)> {
        reader
            .trace(&[trace; 16])
            .unwrap()
            .into_iter()
            .map(|s| (s.service, s.span.span_id[0]))
            .collect()
    };
    let names = |v: &[(&str, u8)]| -> Vec<(String, u8)> {
        v.iter().map(|&(s, i)| (s.to_string(), i)).collect()
    };
    assert_eq!(ids(1), names(&[("a", 1), ("b", 2), ("c", 3)]));
    assert_eq!(ids(2), names(&[("a", 1), ("b", 2)]));
    assert!(ids(3).is_empty());
    let deps: Vec<_> = reader
        .dependencies(0, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|d| (d.parent, d.child, d.calls, d.errors))
        .collect();
    assert_eq!(
        deps,
        [
            ("a".to_string(), "b".to_string(), 2, 1),
            ("b".to_string(), "c".to_string(), 1, 0)
        ]
    );
    // An exporter's retry stores a span again; the trace still has it once.
    writer
        .write(&[&prepare("b", &[(1, 2, 1, 13, 5, 500)])])
        .unwrap();
    assert_eq!(ids(1), names(&[("a", 1), ("b", 2), ("c", 3)]));
}

/// A store of another schema version is refused with a clear error and left as it was.
#[test]
fn a_store_of_another_schema_version_is_refused_untouched() {
    let dir = TempDir::new("schema");
    let path = dir.path().join(crate::store::DB_FILE);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         INSERT INTO meta VALUES ('schema', 1);",
    )
    .unwrap();
    let err = Writer::open(dir.path(), false).unwrap_err().to_string();
    assert!(err.contains("schema version 1"), "{err}");
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        tables, 2,
        "the table and its primary key index, nothing added"
    );
}

/// Every query the store answers, over a few hundred generated spans in both
/// encodings, several commits and a retried batch, rendered as text: the
/// store's layout and write path may change, these answers may not.
#[test]
fn query_answers_on_generated_spans_are_unchanged() {
    let services = ["front", "cart", "pay", "ship", "db"];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let base = 1_700_000_000_000_000_000u64;
    let mut requests = Vec::new();
    for t in 1..=60u8 {
        let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); services.len()];
        let spans = 1 + next(8) as u8;
        for s in 1..=spans {
            let service = if s == 1 { 0 } else { next(5) as usize };
            let start = base + u64::from(t) * 1_000_000_000 + u64::from(s) * 1_000;
            let status_code = [200, 200, 200, 404, 503][next(5) as usize];
            let mut attributes = vec![
                kv("http.status_code", Value::Int(status_code)),
                kv("http.route", Value::String(format!("/r/{}", next(3)))),
            ];
            if next(4) == 0 {
                attributes.push(kv("db.statement", Value::String("SELECT 1".into())));
            }
            by_service[service].push(Span {
                trace_id: vec![t; 16],
                span_id: vec![s; 8],
                parent_span_id: if s == 1 {
                    Vec::new()
                } else {
                    vec![1 + next(u64::from(s - 1)) as u8; 8]
                },
                name: format!("op{}", next(4)),
                kind: [kind::SERVER, kind::CLIENT, kind::INTERNAL][next(3) as usize],
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000 * (1 + next(1_000)),
                attributes,
                status: (next(6) == 0).then(|| Status {
                    message: "boom".into(),
                    code: status::ERROR,
                }),
                ..Span::default()
            });
        }
        for (service, spans) in services.iter().zip(by_service) {
            if spans.is_empty() {
                continue;
            }
            requests.push(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", Value::String((*service).into()))],
                        dropped_attributes_count: 0,
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: None,
                        spans,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            });
        }
    }
    // Half the requests as protobuf bodies, half through the decoded path (as
    // JSON arrives), in commits of several, and one batch stored twice (a retry).
    let batches: Vec<Batch> = requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if i % 2 == 0 {
                ingest::prepare_protobuf(r.encode_to_vec().into(), &indexed())
                    .unwrap()
                    .batch
            } else {
                ingest::prepare(r, &indexed()).batch
            }
        })
        .collect();
    // Once in one segment; once in segments of 4 KiB, so most traces are
    // found in sealed trace index files, with the writer reopened halfway
    // after losing the first sealed file (rebuilt from the span rows).
    for small in [false, true] {
        let dir = TempDir::new(if small { "answers-small" } else { "answers" });
        let open = || {
            let mut writer = Writer::open(dir.path(), false).unwrap();
            if small {
                writer.set_segment_bytes(4 << 10);
            }
            writer
        };
        let mut writer = open();
        // The first commit is large enough for multi-row inserts of every table.
        let (first, rest) = batches.split_at(100);
        writer.write(&first.iter().collect::<Vec<_>>()).unwrap();
        for (i, group) in rest.chunks(7).enumerate() {
            if small && i == 5 {
                drop(writer);
                let segments = dir.path().join(crate::segment::SEGMENT_DIR);
                std::fs::remove_file(crate::trace_index::path(&segments, 1)).unwrap();
                writer = open();
            }
            writer.write(&group.iter().collect::<Vec<_>>()).unwrap();
        }
        writer.write(&[&batches[3]]).unwrap();

        let reader = writer.reader();
        let hex = |b: &[u8]| ingest::hex(b);
        let mut out = String::new();
        out.push_str(&format!("spans stored: {}\n", reader.span_count().unwrap()));
        out.push_str(&format!("services: {:?}\n", reader.services().unwrap()));
        for service in services {
            out.push_str(&format!(
                "operations of {service}: {:?}\n",
                reader.operations(service).unwrap()
            ));
        }
        for t in 0..=61u8 {
            let spans = reader.trace(&[t; 16]).unwrap();
            out.push_str(&format!("trace {t}: {} spans\n", spans.len()));
            for s in &spans {
                out.push_str(&format!(
                    "  {} {} parent {} {} start {} end {} span {:016x} resource {:016x}\n",
                    s.service,
                    hex(&s.span.span_id),
                    hex(&s.span.parent_span_id),
                    s.span.name,
                    s.span.start_time_unix_nano,
                    s.span.end_time_unix_nano,
                    ingest::fnv1a(&[&s.span.encode_to_vec()]),
                    ingest::fnv1a(&[&s.resource.encode_to_vec()]),
                ));
            }
        }
        let ns = |t: u64| (base + t * 1_000_000_000) as i64;
        let queries: Vec<(&str, TraceQuery)> = vec![
            (
                "front, everything",
                TraceQuery {
                    service: "front".into(),
                    ..TraceQuery::default()
                },
            ),
            (
                "cart, traces 10 to 30",
                TraceQuery {
                    service: "cart".into(),
                    start_ns: ns(10),
                    end_ns: ns(30),
                    ..TraceQuery::default()
                },
            ),
            (
                "pay, op1",
                TraceQuery {
                    service: "pay".into(),
                    operation: Some("op1".into()),
                    ..TraceQuery::default()
                },
            ),
            (
                "ship, at least 500 us",
                TraceQuery {
                    service: "ship".into(),
                    min_duration_ns: Some(500_000),
                    ..TraceQuery::default()
                },
            ),
            (
                "db, at most 200 us",
                TraceQuery {
                    service: "db".into(),
                    max_duration_ns: Some(200_000),
                    ..TraceQuery::default()
                },
            ),
            (
                "front, errors",
                TraceQuery {
                    service: "front".into(),
                    errors_only: true,
                    ..TraceQuery::default()
                },
            ),
            (
                "cart, http.route=/r/1 (indexed)",
                TraceQuery {
                    service: "cart".into(),
                    tags: vec![("http.route".into(), "/r/1".into())],
                    ..TraceQuery::default()
                },
            ),
            (
                "pay, status 503 and route /r/2",
                TraceQuery {
                    service: "pay".into(),
                    tags: vec![
                        ("http.status_code".into(), "503".into()),
                        ("http.route".into(), "/r/2".into()),
                    ],
                    ..TraceQuery::default()
                },
            ),
            (
                "db, db.statement (not indexed)",
                TraceQuery {
                    service: "db".into(),
                    tags: vec![("db.statement".into(), "SELECT 1".into())],
                    ..TraceQuery::default()
                },
            ),
            (
                "front, error=true",
                TraceQuery {
                    service: "front".into(),
                    tags: vec![("error".into(), "true".into())],
                    ..TraceQuery::default()
                },
            ),
            (
                "ship, limit 3",
                TraceQuery {
                    service: "ship".into(),
                    limit: 3,
                    ..TraceQuery::default()
                },
            ),
            (
                "nobody",
                TraceQuery {
                    service: "nobody".into(),
                    ..TraceQuery::default()
                },
            ),
        ];
        for (name, mut q) in queries {
            if q.end_ns == 0 {
                q.end_ns = i64::MAX;
            }
            if q.limit == 0 {
                q.limit = 20;
            }
            let found = reader.find_traces(&q, &indexed(), 1000).unwrap();
            let ids: Vec<u8> = found.iter().map(|id| id[0]).collect();
            out.push_str(&format!("find {name}: {ids:?}\n"));
        }
        for (from, to) in [(0, i64::MAX), (ns(20), ns(40))] {
            for d in reader.dependencies(from, to).unwrap() {
                out.push_str(&format!(
                    "dependency {from}..{to}: {} -> {}: {} calls, {} errors\n",
                    d.parent, d.child, d.calls, d.errors
                ));
            }
        }
        for service in services {
            // In no particular order: the service statistics only count them.
            let mut spans = reader.server_spans(service, ns(30)).unwrap();
            spans.sort();
            out.push_str(&format!(
                "server spans of {service} since trace 30: {spans:?}\n"
            ));
        }
        test_support::expect_file(
            &out,
            concat!(env!("CARGO_MANIFEST_DIR"), "/src/query_answers.txt"),
        );
    }
}
