//! `bulkhead lab service` as real processes: a chain of six services on
//! loopback, a -> b -> c -> d -> e -> f, exporting spans to a fake OTLP
//! collector. The collector is a fake because none can be installed here
//! (bulkhead's own collector is a later issue); it is a small HTTP/1.1 server
//! that keeps every JSON export it is sent. The test client is plain std too.

use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "lab-admin-token-for-tests";

/// One `bulkhead lab service` process, its stdout read line by line.
struct Process {
    name: String,
    child: Child,
    addr: String,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Process {
    fn start(name: &str, calls: Option<&str>, collector: &str, seed: u64, admin: bool) -> Process {
        let mut cmd = super::bulkhead();
        cmd.args([
            "lab",
            "service",
            "--name",
            name,
            "--service-version",
            "1.0.0",
        ])
        .args(["--listen", "127.0.0.1:0", "--seed", &seed.to_string()])
        .args(["--otlp-endpoint", collector, "--otlp-interval", "20ms"])
        .env_remove("BULKHEAD_LAB_ADMIN_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if let Some(calls) = calls {
            cmd.args(["--calls", calls]);
        }
        if admin {
            cmd.env("BULKHEAD_LAB_ADMIN_TOKEN", TOKEN);
        }
        let mut child = cmd.spawn().expect("start bulkhead lab service");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("read the first line");
        if first.is_empty() {
            let mut stderr = String::new();
            let _ = child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr);
            panic!("{name} exited before listening: {stderr}");
        }
        let listening: Value = serde_json::from_str(&first).expect("the first line is JSON");
        assert_eq!(listening["event"], "listening", "{first}");
        assert_eq!(listening["service"], name);
        let addr = listening["addr"].as_str().expect("addr").to_string();
        let lines = Arc::new(Mutex::new(vec![listening]));
        let sink = Arc::clone(&lines);
        // Drains stdout so that the service never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
                sink.lock().unwrap().push(value);
            }
        });
        Process {
            name: name.to_string(),
            child,
            addr,
            lines,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    fn requests_logged(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["event"] == "request_finished")
            .collect()
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` until it holds, for at most 30 seconds.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One HTTP/1.1 request on a fresh connection; the answer's status and JSON body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let text = String::from_utf8(answer).expect("utf-8 answer");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string())),
    )
}

/// A fake OTLP/HTTP collector keeping every export (keep-alive connections included).
struct Collector {
    addr: String,
    exports: Arc<Mutex<Vec<Value>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let exports = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&exports);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve_exports(stream, &sink));
            }
        });
        Collector { addr, exports }
    }

    /// Every exported span of `trace_id`, with the service that sent it.
    fn spans(&self, trace_id: &str) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for export in self.exports.lock().unwrap().iter() {
            for rs in export["resourceSpans"].as_array().unwrap() {
                let service = rs["resource"]["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|kv| kv["key"] == "service.name")
                    .and_then(|kv| kv["value"]["stringValue"].as_str())
                    .unwrap()
                    .to_string();
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    for span in ss["spans"].as_array().unwrap() {
                        if span["traceId"] == trace_id {
                            out.push((service.clone(), span.clone()));
                        }
                    }
                }
            }
        }
        out
    }
}

fn serve_exports(stream: TcpStream, sink: &Mutex<Vec<Value>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = None;
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        assert!(
            request_line.starts_with("POST /v1/traces "),
            "{request_line}"
        );
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>().unwrap());
            }
            if name.eq_ignore_ascii_case("content-type") {
                assert_eq!(value.trim(), "application/json");
            }
        }
        let mut body = vec![0; length.expect("content-length")];
        reader.read_exact(&mut body).unwrap();
        sink.lock()
            .unwrap()
            .push(serde_json::from_slice(&body).expect("OTLP JSON"));
        writer
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            )
            .unwrap();
    }
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// The trace of one request through the chain: checks every server span and
/// client span hangs off the one before it, and returns the server spans by service.
fn check_chain(collector: &Collector, names: &[&str], trace_id: &str) -> Vec<Value> {
    let expected = names.len() * 2 - 1;
    wait_until("every span of the trace", || {
        collector.spans(trace_id).len() >= expected
    });
    let spans = collector.spans(trace_id);
    assert_eq!(spans.len(), expected, "{spans:#?}");
    let find = |service: &str, kind: u64| -> Value {
        let found: Vec<&Value> = spans
            .iter()
            .filter(|(s, span)| s == service && span["kind"] == kind)
            .map(|(_, span)| span)
            .collect();
        assert_eq!(found.len(), 1, "{service} kind {kind}: {found:#?}");
        found[0].clone()
    };
    let servers: Vec<Value> = names.iter().map(|n| find(n, 2)).collect();
    assert!(
        servers[0].get("parentSpanId").is_none(),
        "{:#?}",
        servers[0]
    );
    for (i, name) in names.iter().enumerate().take(names.len() - 1) {
        let client = find(name, 3);
        assert_eq!(client["parentSpanId"], servers[i]["spanId"], "{name}");
        assert_eq!(
            servers[i + 1]["parentSpanId"],
            client["spanId"],
            "{}",
            names[i + 1]
        );
    }
    servers
}

#[test]
fn a_chain_of_six_processes_shares_one_trace_and_names_the_failing_service() {
    let names = ["a", "b", "c", "d", "e", "f"];
    let collector = Collector::start();
    let collector_url = format!("http://{}", collector.addr);
    let mut processes: Vec<Process> = Vec::new();
    for (i, name) in names.iter().enumerate().rev() {
        let calls = processes.last().map(Process::url);
        let admin = *name == "d";
        processes.push(Process::start(
            name,
            calls.as_deref(),
            &collector_url,
            i as u64,
            admin,
        ));
    }
    processes.reverse();
    for p in &processes {
        wait_until(&format!("{} to be ready", p.name), || {
            http(&p.addr, "GET", "/readyz", &[], "").0 == 200
        });
    }

    // One request to a: one trace through all six.
    let (status, body) = http(&processes[0].addr, "GET", "/checkout", &[], "");
    assert_eq!(status, 200, "{body}");
    let trace_id = body["trace_id"].as_str().unwrap().to_string();
    let mut hop = &body;
    for name in &names[1..] {
        hop = &hop["downstream"][0]["body"];
        assert_eq!(hop["service"], *name);
        assert_eq!(hop["trace_id"], trace_id.as_str());
    }
    let servers = check_chain(&collector, &names, &trace_id);
    assert_eq!(
        attribute(&servers[0], "url.path"),
        Some(&json!({ "stringValue": "/checkout" }))
    );
    for p in &processes {
        wait_until(&format!("{}'s log line", p.name), || {
            !p.requests_logged().is_empty()
        });
        let requests = p.requests_logged();
        assert_eq!(requests.len(), 1, "{}: {requests:#?}", p.name);
        assert_eq!(requests[0]["trace_id"], trace_id.as_str(), "{}", p.name);
        assert_eq!(requests[0]["status"], 200);
        for line in p.lines() {
            if let Some(id) = line.get("trace_id") {
                assert_eq!(id, trace_id.as_str(), "{}: {line}", p.name);
            }
        }
    }

    // Inject an error in d through its admin endpoint; the wrong token changes nothing.
    let d = &processes[3];
    let faults = r#"{"error_rate": 1.0}"#;
    let (status, _) = http(
        &d.addr,
        "PUT",
        "/admin/faults",
        &[("authorization", "Bearer nope")],
        faults,
    );
    assert_eq!(status, 401);
    let (status, _) = http(
        &processes[2].addr,
        "PUT",
        "/admin/faults",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        faults,
    );
    assert_eq!(status, 403, "c was started without a token");
    let (status, body) = http(
        &d.addr,
        "PUT",
        "/admin/faults",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        faults,
    );
    assert_eq!(status, 200, "{body}");

    let (status, body) = http(&processes[0].addr, "GET", "/checkout", &[], "");
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["error"]["origin"],
        json!({ "service": "d", "version": "1.0.0" })
    );
    let failing_trace = body["trace_id"].as_str().unwrap().to_string();
    assert_ne!(failing_trace, trace_id);
    // d called e and f before failing: the trace is whole, and d's span says why.
    let servers = check_chain(&collector, &names, &failing_trace);
    let codes: Vec<&Value> = servers.iter().map(|s| &s["status"]["code"]).collect();
    assert_eq!(
        codes,
        [
            &json!(2),
            &json!(2),
            &json!(2),
            &json!(2),
            &Value::Null,
            &Value::Null
        ]
    );
    assert_eq!(
        attribute(&servers[3], "fault.injected"),
        Some(&json!({ "stringValue": "error" }))
    );
    assert_eq!(
        attribute(&servers[3], "http.response.status_code"),
        Some(&json!({ "intValue": "500" }))
    );
    for (p, status) in processes.iter().zip([502, 502, 502, 500, 200, 200]) {
        wait_until(&format!("{}'s second log line", p.name), || {
            p.requests_logged().len() == 2
        });
        let line = &p.requests_logged()[1];
        assert_eq!(line["trace_id"], failing_trace.as_str(), "{}", p.name);
        assert_eq!(line["status"], status, "{}", p.name);
    }
    let metrics = http(&d.addr, "GET", "/metrics", &[], "").1;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("http_requests_total{code=\"500\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("spans_dropped_total 0"), "{metrics}");

    // SIGTERM stops a service cleanly.
    let a = &mut processes[0];
    let status = a.terminate();
    assert!(status.success(), "{status}");
    wait_until("a's last log line", || {
        a.lines()
            .last()
            .is_some_and(|l| l["event"] == "server_stopped")
    });
}

#[test]
fn bad_flags_are_refused_with_exit_status_2() {
    let out = super::bulkhead()
        .args([
            "lab",
            "service",
            "--name",
            "x",
            "--service-version",
            "1",
            "--error-rate",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error_rate must be between 0.0 and 1.0"),
        "{stderr}"
    );
    let out = super::bulkhead()
        .args([
            "lab",
            "service",
            "--name",
            "x",
            "--service-version",
            "1",
            "--calls",
            "https://a/",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("https is not supported"), "{stderr}");
}
