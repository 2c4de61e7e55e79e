//! `bulkhead collector` as a real process on loopback: OTLP/HTTP (JSON and
//! protobuf) and OTLP/gRPC ingest, the Jaeger query API, `kill -9` right
//! after acknowledgements, overload with a tiny queue, bad inputs, and a
//! chain of real `bulkhead lab service` processes read back by `bulkhead trace`,
//! and forwarding to a second collector (a gateway exporting OTLP/protobuf at
//! the head of the chain), or to a target that is down.
//! The gRPC client is a minimal h2c client on hyper's HTTP/2 client.

use collector::otlp::{
    AnyValue, ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
    Value as OtlpValue,
};
use prost::Message as _;
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const FIXTURE_TRACE: &str = "5b8efff798038103d269b633813fc60c";

/// A collector process, killed when dropped.
struct Collector {
    child: Child,
    http: String,
    grpc: String,
    query: String,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Collector {
    fn start(data: &std::path::Path, extra: &[&str]) -> Collector {
        Collector::spawn(data, extra, Stdio::null())
    }

    /// As [`Collector::start`], its JSON log lines going to `log`.
    fn logged(data: &std::path::Path, extra: &[&str], log: &std::path::Path) -> Collector {
        let log = std::fs::File::create(log).expect("log file");
        Collector::spawn(data, extra, Stdio::from(log))
    }

    fn spawn(data: &std::path::Path, extra: &[&str], stderr: Stdio) -> Collector {
        let mut child = super::bulkhead()
            .arg("collector")
            .arg("--data")
            .arg(data)
            .args(["--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0"])
            .args(["--query", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start bulkhead collector");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut addr = |prefix: &str| {
            let line = lines.next().expect("a line").expect("utf-8");
            line.strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"))
                .to_string()
        };
        let http = addr("otlp-http listening on http://");
        let grpc = addr("otlp-grpc listening on http://");
        let query = addr("query listening on http://");
        Collector {
            child,
            http,
            grpc,
            query,
        }
    }

    /// The value of one sample line of `/metrics` (`name` with its labels).
    fn metric(&self, name: &str) -> Option<f64> {
        let (_, _, body) = http(&self.query, "GET", "/metrics", &[], b"");
        let text = String::from_utf8_lossy(&body).into_owned();
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = http(&self.query, "GET", path, &[], b"");
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "GET {path}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, json)
    }

    fn trace(&self, id: &str) -> Value {
        let (status, json) = self.get(&format!("/api/traces/{id}"));
        assert_eq!(status, 200, "{json}");
        json["data"][0].clone()
    }

    fn post(
        &self,
        content_type: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, Vec<u8>) {
        let mut all = vec![("Content-Type", content_type)];
        all.extend_from_slice(headers);
        http(&self.http, "POST", "/v1/traces", &all, body)
    }
}

/// One HTTP/1.1 request on its own connection: status, head, body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // The server may answer (413) and close before reading a large body.
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{method} {path}: no HTTP answer: {:?}",
                String::from_utf8_lossy(&raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head, raw[split + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Unary gRPC over h2c: (grpc-status, grpc-message, response message bytes).
fn grpc_export(addr: &str, message: &[u8]) -> (String, String, Vec<u8>) {
    use http_body_util::{BodyExt as _, Full};
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("h2 handshake");
        tokio::spawn(conn);
        let req = hyper::Request::post(format!("http://{addr}{}", collector::GRPC_EXPORT_PATH))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(bytes::Bytes::from(frame)))
            .expect("request");
        let response = sender.send_request(req).await.expect("gRPC response");
        assert_eq!(response.status(), 200);
        let head_status = response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let head_message = response
            .headers()
            .get("grpc-message")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let collected = response.into_body().collect().await.expect("body");
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes();
        let status = head_status
            .or_else(|| {
                trailers
                    .as_ref()?
                    .get("grpc-status")
                    .map(|v| v.to_str().unwrap_or("").to_string())
            })
            .expect("grpc-status in headers or trailers");
        let message = head_message.unwrap_or_default();
        let payload = if body.len() >= 5 {
            body[5..].to_vec()
        } else {
            Vec::new()
        };
        (status, message, payload)
    })
}

fn fixture() -> Vec<u8> {
    std::fs::read(super::testdata("otlp/trace.json")).expect("fixture")
}

#[test]
fn fixture_comes_back_intact_and_all_three_protocols_agree() {
    let json_dir = super::TempDir::new("collector-json");
    let over_json = Collector::start(json_dir.path(), &[]);
    let (status, _, body) = over_json.post("application/json", &[], &fixture());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        super::json(&String::from_utf8_lossy(&body)),
        serde_json::json!({})
    );
    let trace = over_json.trace(FIXTURE_TRACE);
    assert_eq!(trace["traceID"], FIXTURE_TRACE);
    let span = &trace["spans"][0];
    assert_eq!(span["spanID"], "eee19b7ec3c1b174");
    assert_eq!(span["operationName"], "I'm a server span");
    assert_eq!(
        span["references"],
        serde_json::json!([{"refType": "CHILD_OF", "traceID": FIXTURE_TRACE, "spanID": "eee19b7ec3c1b173"}])
    );
    assert_eq!(span["startTime"], 1_544_712_660_000_000u64);
    assert_eq!(span["duration"], 1_000_000);
    let tags = span["tags"].as_array().expect("tags");
    for (key, value) in [
        ("my.span.attr", "some value"),
        ("span.kind", "server"),
        ("otel.scope.name", "my.library"),
        ("otel.scope.version", "1.0.0"),
        ("my.scope.attribute", "some scope attribute"),
    ] {
        assert!(
            tags.iter()
                .any(|t| t["key"] == key && t["value"] == value && t["type"] == "string"),
            "{key}={value} missing from {tags:?}"
        );
    }
    let process = &trace["processes"][span["processID"].as_str().expect("processID")];
    assert_eq!(process["serviceName"], "my.service");
    let (_, services) = over_json.get("/api/services");
    assert_eq!(services["data"], serde_json::json!(["my.service"]));
    let (_, ops) = over_json.get("/api/services/my.service/operations");
    assert_eq!(ops["data"], serde_json::json!(["I'm a server span"]));

    // The same spans as protobuf, over OTLP/HTTP and over OTLP/gRPC, each into its own store.
    let protobuf = collector::json::decode_request(&fixture())
        .expect("fixture")
        .encode_to_vec();
    let proto_dir = super::TempDir::new("collector-proto");
    let over_proto = Collector::start(proto_dir.path(), &[]);
    let (status, head, body) = over_proto.post("application/x-protobuf", &[], &protobuf);
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("application/x-protobuf")
    );
    let response =
        collector::otlp::ExportTraceServiceResponse::decode(body.as_slice()).expect("response");
    assert_eq!(response.partial_success, None);
    let grpc_dir = super::TempDir::new("collector-grpc");
    let over_grpc = Collector::start(grpc_dir.path(), &[]);
    let (status, message, payload) = grpc_export(&over_grpc.grpc, &protobuf);
    assert_eq!(status, "0", "{message}");
    collector::otlp::ExportTraceServiceResponse::decode(payload.as_slice())
        .expect("gRPC response message");

    assert_eq!(over_proto.trace(FIXTURE_TRACE), trace);
    assert_eq!(over_grpc.trace(FIXTURE_TRACE), trace);
}

fn kv(key: &str, value: OtlpValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// `n` spans of one trace (`trace` fills the trace id), ten attributes each.
fn batch(trace: u32, n: usize) -> ExportTraceServiceRequest {
    let mut trace_id = [7u8; 16];
    trace_id[..4].copy_from_slice(&trace.to_be_bytes());
    let spans = (0..n)
        .map(|i| {
            let mut span_id = [1u8; 8];
            span_id[..4].copy_from_slice(&(i as u32 + 1).to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                name: "GET /items/{id}".into(),
                kind: 2,
                start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                end_time_unix_nano: 1_700_000_000_050_000_000 + i as u64,
                attributes: (0..10)
                    .map(|a| {
                        kv(
                            &format!("attr.{a}"),
                            OtlpValue::String(format!("value-{a}-{i}")),
                        )
                    })
                    .collect(),
                ..Span::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", OtlpValue::String("load".into()))],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn trace_hex(trace: u32) -> String {
    let mut id = [7u8; 16];
    id[..4].copy_from_slice(&trace.to_be_bytes());
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Acknowledged spans survive SIGKILL: the sender posts until the test kills
/// the collector mid-stream, then a new collector on the same data directory
/// must hold every span of every request that was answered 200.
#[test]
fn acknowledged_spans_survive_kill_9() {
    let dir = super::TempDir::new("collector-crash");
    let mut first = Collector::start(dir.path(), &[]);
    let addr = first.http.clone();
    let (acked_tx, acked_rx) = std::sync::mpsc::channel::<u32>();
    let sender = std::thread::spawn(move || {
        for trace in 1..=10_000u32 {
            let body = batch(trace, 50).encode_to_vec();
            let Ok(mut stream) = TcpStream::connect(&addr) else {
                return;
            };
            let head = format!(
                "POST /v1/traces HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body))
                .is_err()
            {
                return;
            }
            let mut raw = Vec::new();
            let _ = stream.read_to_end(&mut raw);
            if raw.starts_with(b"HTTP/1.1 200") {
                if acked_tx.send(trace).is_err() {
                    return;
                }
            } else if raw.is_empty() {
                return;
            }
        }
    });
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 30 && Instant::now() < deadline {
        if let Ok(t) = acked_rx.recv_timeout(Duration::from_secs(1)) {
            acked.push(t);
        }
    }
    // SIGKILL, while the sender is still posting.
    first.child.kill().expect("kill -9");
    first.child.wait().expect("wait");
    sender.join().expect("sender");
    acked.extend(acked_rx.try_iter());
    assert!(
        acked.len() >= 30,
        "only {} requests acknowledged",
        acked.len()
    );

    let second = Collector::start(dir.path(), &[]);
    for trace in &acked {
        let got = second.trace(&trace_hex(*trace));
        assert_eq!(
            got["spans"].as_array().map(Vec::len),
            Some(50),
            "trace {trace} lost spans after kill -9"
        );
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The memory bound this test holds the collector to under overload.
const RSS_BOUND_KIB: u64 = 256 * 1024;

#[test]
fn overload_is_refused_with_429_and_memory_stays_bounded() {
    let dir = super::TempDir::new("collector-overload");
    let c = Collector::start(
        dir.path(),
        &[
            "--queue-spans",
            "1",
            "--max-inflight",
            "4",
            "--max-body-mb",
            "4",
        ],
    );
    let body = std::sync::Arc::new(batch(1, 512).encode_to_vec());
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..12)
        .map(|w| {
            let addr = c.http.clone();
            let body = body.clone();
            let refused = refused.clone();
            std::thread::spawn(move || {
                let mut statuses = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                for _ in 0..400 {
                    if refused.load(std::sync::atomic::Ordering::Relaxed) && statuses.len() > 20
                        || Instant::now() > deadline
                    {
                        break;
                    }
                    let (status, head, _) = http(
                        &addr,
                        "POST",
                        "/v1/traces",
                        &[("Content-Type", "application/x-protobuf")],
                        &body,
                    );
                    if status == 429 {
                        assert_eq!(header(&head, "retry-after"), Some("1"), "worker {w}");
                        refused.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect();
    let mut peak = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        peak = peak.max(rss_kib(c.pid()).expect("the collector is alive"));
        std::thread::sleep(Duration::from_millis(20));
    }
    let statuses: Vec<u16> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    assert!(
        statuses.iter().all(|s| [200, 429, 503].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "no 429 in {} responses",
        statuses.len()
    );
    assert!(statuses.contains(&200));
    assert!(peak < RSS_BOUND_KIB, "peak RSS {peak} KiB");
    let (status, _, _) = http(&c.query, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    let (_, _, metrics) = http(&c.query, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("collector_ingest_requests_total{protocol=\"http\",status=\"429\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("collector_spans_dropped_total"),
        "{metrics}"
    );
}

#[test]
fn bad_inputs_get_clear_4xx_answers() {
    let dir = super::TempDir::new("collector-bad");
    let c = Collector::start(dir.path(), &["--max-body-mb", "1"]);
    let valid = batch(1, 20).encode_to_vec();
    let check = |what: &str, (status, _, body): (u16, String, Vec<u8>), want: u16, needle: &str| {
        let text = String::from_utf8_lossy(&body).to_string();
        assert_eq!(status, want, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text:?} lacks {needle:?}");
    };
    check(
        "garbage protobuf",
        c.post("application/x-protobuf", &[], b"\xff\xff\xff\xffgarbage"),
        400,
        "not an OTLP ExportTraceServiceRequest",
    );
    check(
        "truncated protobuf",
        c.post("application/x-protobuf", &[], &valid[..valid.len() - 7]),
        400,
        "not an OTLP",
    );
    check(
        "garbage JSON",
        c.post("application/json", &[], b"{\"resourceSpans\": [1"),
        400,
        "not OTLP/JSON",
    );
    check(
        "wrong JSON shape",
        c.post("application/json", &[], b"{\"resourceSpans\": {}}"),
        400,
        "$.resourceSpans: expected an array",
    );
    check(
        "wrong content type",
        c.post("text/plain", &[], b"hello"),
        415,
        "is not application/x-protobuf or application/json",
    );
    check(
        "oversized body",
        c.post("application/x-protobuf", &[], &vec![0u8; 2 << 20]),
        413,
        "larger than the limit",
    );
    let bomb = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 64 << 20]).expect("gzip");
        enc.finish().expect("gzip")
    };
    check(
        "gzip bomb",
        c.post(
            "application/x-protobuf",
            &[("Content-Encoding", "gzip")],
            &bomb,
        ),
        413,
        "inflates past the limit",
    );
    check(
        "not gzip",
        c.post(
            "application/x-protobuf",
            &[("Content-Encoding", "gzip")],
            &valid,
        ),
        400,
        "does not inflate",
    );
    let (status, _, _) = http(&c.http, "GET", "/v1/traces", &[], b"");
    assert_eq!(status, 405);

    // One bad span is rejected alone and reported; the good one is stored.
    let partial = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"ok","startTimeUnixNano":"1","endTimeUnixNano":"2"},
        {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"0000000000000000","name":"bad","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}"#;
    let (status, _, body) = c.post("application/json", &[], partial);
    assert_eq!(status, 200);
    let answer = super::json(&String::from_utf8_lossy(&body));
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "1");
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap_or("")
            .contains("span id is all zeros")
    );
    assert_eq!(
        c.trace("0af7651916cd43dd8448eb211c80319c")["spans"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    let (status, message, _) = grpc_export(&c.grpc, b"\xff\xffnot protobuf");
    assert_eq!(status, "3", "{message}");
    let (status, json) = c.get("/api/traces/4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(status, 404);
    assert_eq!(json["errors"][0]["msg"], "trace not found");
    let (status, json) = c.get("/api/traces?service=");
    assert_eq!(status, 400);
    assert!(
        json["errors"][0]["msg"]
            .as_str()
            .unwrap_or("")
            .contains("service"),
        "{json}"
    );
    // Still alive after all of it.
    assert_eq!(http(&c.query, "GET", "/healthz", &[], b"").0, 200);
}

/// A lab service process exporting to the collector; killed when dropped.
struct Service {
    child: Child,
    addr: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lab_service(name: &str, calls: Option<&str>, otlp: &str, extra: &[&str]) -> Service {
    let mut cmd = super::bulkhead();
    cmd.args([
        "lab",
        "service",
        "--name",
        name,
        "--service-version",
        "1.0.0",
        "--listen",
        "127.0.0.1:0",
    ])
    .args(["--otlp-endpoint", otlp, "--otlp-interval", "20ms"])
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if let Some(calls) = calls {
        cmd.args(["--calls", calls]);
    }
    let mut child = cmd.spawn().expect("start lab service");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("first line");
    let listening = super::json(&first);
    let addr = listening["addr"].as_str().expect("addr").to_string();
    // Drain the log so the service never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Service { child, addr }
}

/// frontend -> checkout -> payments, payments failing every request: the
/// collector assembles the trace from three processes' exports and
/// `bulkhead trace ID --json` blames payments.
#[test]
fn lab_chain_failure_is_blamed_on_the_failing_service() {
    let dir = super::TempDir::new("collector-e2e");
    let c = Collector::start(dir.path(), &[]);
    let otlp = format!("http://{}", c.http);
    let payments = lab_service("payments", None, &otlp, &["--error-rate", "1.0"]);
    let checkout = lab_service(
        "checkout",
        Some(&format!("http://{}/pay", payments.addr)),
        &otlp,
        &[],
    );
    let frontend = lab_service(
        "frontend",
        Some(&format!("http://{}/checkout", checkout.addr)),
        &otlp,
        &[],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let (status, head, _) = http(
        &frontend.addr,
        "GET",
        "/buy",
        &[("traceparent", &traceparent)],
        b"",
    );
    assert_eq!(status, 502, "{head}");
    // Every service exports its spans within a few intervals.
    let mut last = Value::Null;
    let complete = crate::eventually_or(30, || {
        let (status, json) = c.get(&format!("/api/traces/{trace_id}"));
        let processes = json["data"][0]["processes"]
            .as_object()
            .map(|p| p.len())
            .unwrap_or(0);
        last = json;
        (status == 200 && processes == 3).then_some(())
    });
    assert!(
        complete.is_some(),
        "the trace never held 3 services: {last:#}"
    );
    let out = super::run_ok(
        super::bulkhead()
            .args(["trace", trace_id, "--json", "--collector"])
            .arg(format!("http://{}", c.query)),
    );
    let analysis = super::json(&out);
    assert_eq!(
        analysis["root_causes"][0]["blamed_service"], "payments",
        "{analysis:#}"
    );
    let table = super::run_ok(
        super::bulkhead()
            .args(["trace", trace_id, "--collector"])
            .arg(format!("http://{}", c.query)),
    );
    assert!(table.contains("payments"), "{table}");

    let found = super::json(&super::run_ok(
        super::bulkhead()
            .args([
                "trace",
                "search",
                "--service",
                "payments",
                "--error",
                "--json",
                "--collector",
            ])
            .arg(format!("http://{}", c.query)),
    ));
    assert_eq!(found[0]["trace_id"], trace_id, "{found:#}");
    assert_eq!(found[0]["root_service"], "frontend");

    let (_, deps) = c.get("/api/dependencies?lookback=3600000");
    let pairs: Vec<(String, String)> = deps["data"]
        .as_array()
        .expect("dependencies")
        .iter()
        .map(|d| {
            (
                d["parent"].as_str().unwrap_or("").into(),
                d["child"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        pairs.contains(&("frontend".into(), "checkout".into())),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&("checkout".into(), "payments".into())),
        "{pairs:?}"
    );

    let (status, stats) = c.get("/api/bulkhead/service-stats?service=payments&lookback=3600000");
    assert_eq!(status, 200);
    assert_eq!(stats["service"], "payments");
    assert_eq!(stats["spans"], 1);
    assert_eq!(stats["errors"], 1);
    assert_eq!(stats["error_rate"], 1.0);
    let (status, analysis) = c.get(&format!("/api/bulkhead/analysis/{trace_id}"));
    assert_eq!(status, 200);
    assert_eq!(analysis["root_causes"][0]["blamed_service"], "payments");
}

/// An address nothing listens on: bound by the OS, then released.
fn closed_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

/// A gateway exporting OTLP/protobuf to collector `edge`, which keeps a small
/// store and forwards to collector `central`: the gateway's span and a posted
/// trace reach `central` whole, and `edge` counts what it forwarded.
#[test]
fn a_collector_forwards_what_it_commits_to_a_second_collector() {
    let dirs = super::TempDir::new("collector-forward");
    let central = Collector::start(&dirs.path().join("central"), &[]);
    let edge = Collector::start(
        &dirs.path().join("edge"),
        &[
            "--forward",
            &format!("http://{}", central.http),
            "--retention",
            "1h",
        ],
    );
    let (status, _, _) = edge.post("application/json", &[], &fixture());
    assert_eq!(status, 200);
    let forwarded = super::eventually_or(20, || {
        let (status, json) = central.get(&format!("/api/traces/{FIXTURE_TRACE}"));
        (status == 200).then(|| json["data"][0].clone())
    })
    .expect("the fixture trace reaches the central collector");
    assert_eq!(forwarded, edge.trace(FIXTURE_TRACE));

    let config = dirs.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "listeners: [{address: 127.0.0.1:0}]\nroutes: [{prefix: /orders, service: orders}]\n\
         services:\n  orders:\n    endpoints: [{address: 127.0.0.1:1, labels: {version: blue}}]\n    \
         selector: {version: blue}\n",
    )
    .expect("gateway config");
    let mut gateway = super::bulkhead()
        .args(["gateway", "--config"])
        .arg(&config)
        .args(["--access-log", "off", "--otlp-protocol", "http/protobuf"])
        .arg("--otlp-endpoint")
        .arg(format!("http://{}", edge.http))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bulkhead gateway");
    let proxy = BufReader::new(gateway.stdout.take().expect("stdout"))
        .lines()
        .next()
        .expect("a line")
        .expect("utf-8")
        .strip_prefix("proxy listening on http://")
        .expect("the proxy address")
        .to_string();
    let (status, _) = super::http_request(&proxy, "GET", "/nowhere", None, "");
    assert_eq!(status, 404);
    let services = super::eventually_or(20, || {
        let (_, json) = central.get("/api/services");
        let names = super::strings(&json["data"]);
        names
            .contains(&"bulkhead-gateway".to_string())
            .then_some(names)
    });
    let _ = gateway.kill();
    let _ = gateway.wait();
    assert_eq!(
        services,
        Some(vec![
            "bulkhead-gateway".to_string(),
            "my.service".to_string()
        ])
    );
    assert_eq!(
        edge.metric("collector_forward_spans_sent_total"),
        Some(2.0),
        "the fixture's span and the gateway's"
    );
    assert_eq!(edge.metric("collector_forward_queue_bytes"), Some(0.0));
}

/// With the forward target down, the collector still stores and acknowledges
/// every export; forwarding retries, logs why, gives up after
/// --forward-retry-for, drops what does not fit its queue, and counts both.
#[test]
fn a_forward_target_that_is_down_costs_counted_drops_not_memory() {
    let dir = super::TempDir::new("collector-forward-down");
    let log = dir.path().join("collector.log");
    let target = closed_address();
    let edge = Collector::logged(
        &dir.path().join("data"),
        &[
            "--forward",
            &format!("http://{target}"),
            "--forward-queue-mb",
            "1",
            "--forward-retry-for",
            "2s",
        ],
        &log,
    );
    // Each body is about 0.4 MiB: one in flight, two fit the queue, the rest do not.
    let bodies: Vec<Vec<u8>> = (1..=6).map(|t| batch(t, 1000).encode_to_vec()).collect();
    assert!(
        bodies
            .iter()
            .all(|b| b.len() > 300_000 && b.len() < 600_000)
    );
    for body in &bodies {
        let (status, _, _) = edge.post("application/x-protobuf", &[], body);
        assert_eq!(status, 200, "ingest does not wait on forwarding");
        let queued = edge.metric("collector_forward_queue_bytes").expect("gauge");
        assert!(queued <= f64::from(1 << 20), "{queued} bytes queued");
    }
    let dropped = |reason: &str| {
        edge.metric(&format!(
            "collector_forward_spans_dropped_total{{reason=\"{reason}\"}}"
        ))
        .unwrap_or(0.0)
    };
    let settled = super::eventually_or(30, || {
        let total = dropped("queue_full") + dropped("retries_exhausted");
        (total == 6000.0).then_some(())
    });
    assert!(
        settled.is_some(),
        "queue_full {} retries_exhausted {}",
        dropped("queue_full"),
        dropped("retries_exhausted")
    );
    assert!(dropped("queue_full") >= 1000.0);
    assert!(dropped("retries_exhausted") >= 1000.0);
    assert_eq!(edge.metric("collector_forward_spans_sent_total"), Some(0.0));
    assert!(edge.metric("collector_forward_retries_total") > Some(0.0));
    assert_eq!(edge.metric("collector_forward_queue_bytes"), Some(0.0));
    for t in 1..=6 {
        assert_eq!(
            edge.trace(&trace_hex(t))["spans"].as_array().map(Vec::len),
            Some(1000),
            "trace {t} is in the local store"
        );
    }
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed = lines
        .iter()
        .find(|l| l["event"] == "forward_failed")
        .expect("a forward_failed line");
    assert_eq!(failed["target"], format!("http://{target}/v1/traces"));
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("connecting to")),
        "{failed}"
    );
    assert!(lines.iter().any(|l| {
        l["event"] == "forward_dropped"
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("forward queue full"))
    }));
}
