//! `bulkhead gateway` as a process: addresses on the first lines, admin auth,
//! a switch and a reload through the admin API, metrics, the access log on stdout,
//! draining on SIGTERM. The routing itself is tested against real upstreams in
//! crates/gateway/tests/it.

use super::{TempDir, bulkhead, http_request as http};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Stdio};

/// Kills the gateway when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn gateway_command_prints_addresses_and_guards_its_admin_api() {
    let dir = TempDir::new("gateway");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "listeners: [{address: 127.0.0.1:0}]
routes: [{prefix: /orders, service: orders}]
services:
  orders:
    endpoints:
      - {address: 127.0.0.1:1, labels: {version: blue}}
      - {address: 127.0.0.1:2, labels: {version: green}}
    selector: {version: blue}
",
    )
    .unwrap();
    let mut child = Running(
        bulkhead()
            .args(["gateway", "--config"])
            .arg(&config)
            .args([
                "--admin",
                "127.0.0.1:0",
                "--admin-token-env",
                "GW_TEST_TOKEN",
            ])
            .env("GW_TEST_TOKEN", "t0ken")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bulkhead gateway"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("a line").expect("utf-8");
    let proxy = next()
        .strip_prefix("proxy listening on http://")
        .unwrap()
        .to_string();
    let admin = next()
        .strip_prefix("admin listening on http://")
        .unwrap()
        .to_string();

    assert_eq!(http(&admin, "GET", "/state", None, "").0, 401);
    assert_eq!(http(&admin, "GET", "/state", Some("t0ken2"), "").0, 401);
    let (status, body) = http(
        &admin,
        "PUT",
        "/services/orders/selector",
        Some("t0ken"),
        r#"{"version":"green"}"#,
    );
    assert_eq!((status, body.trim()), (200, r#"{"generation":2}"#));

    assert_eq!(http(&proxy, "GET", "/nowhere", None, "").0, 404);
    let log = super::json(&next());
    assert_eq!(log["status"], 404);
    assert_eq!(log["path"], "/nowhere");
    assert_eq!(log["trace_id"].as_str().map(str::len), Some(32));

    let (status, metrics) = http(&admin, "GET", "/metrics", Some("t0ken"), "");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nbulkhead_gateway_config_generation 2\n"),
        "{metrics}"
    );
    // The file still says blue: a reload brings it back, as the next generation.
    let (status, body) = http(&admin, "POST", "/reload", Some("t0ken"), "");
    assert_eq!((status, body.trim()), (200, r#"{"generation":3}"#));
    let (_, config) = http(&admin, "GET", "/config", Some("t0ken"), "");
    let config = super::json(&config);
    assert_eq!(
        config["config"]["services"]["orders"]["selection"]["selector"]["version"],
        "blue"
    );
}

/// An upstream that takes its time: answers each request 800 ms after reading it,
/// and reports on `got` when a request has arrived.
fn slow_upstream(got: std::sync::mpsc::Sender<()>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let got = got.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let _ = got.send(());
                std::thread::sleep(std::time::Duration::from_millis(800));
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                );
            });
        }
    });
    addr
}

#[test]
fn sigterm_drains_requests_in_flight_then_exits() {
    let (got_tx, got) = std::sync::mpsc::channel();
    let upstream = slow_upstream(got_tx);
    let dir = TempDir::new("gateway-drain");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners: [{{address: 127.0.0.1:0}}]
routes: [{{prefix: /, service: slow}}]
services:
  slow:
    endpoints: [{{address: {upstream}, labels: {{app: slow}}}}]
    selector: {{app: slow}}
"
        ),
    )
    .unwrap();
    let mut child = Running(
        bulkhead()
            .args(["gateway", "--access-log", "off", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bulkhead gateway"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let proxy = lines
        .next()
        .unwrap()
        .unwrap()
        .strip_prefix("proxy listening on http://")
        .unwrap()
        .to_string();
    let client = std::thread::spawn(move || http(&proxy, "GET", "/work", None, ""));
    got.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the request reached the upstream");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(client.join().unwrap(), (200, "slow".to_string()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn gateway_command_reports_config_errors_with_file_and_line() {
    let dir = TempDir::new("gateway-bad");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "listeners: []\nroutes:\n  - prefix: /\n    service: nope\nservices: {}\n",
    )
    .unwrap();
    let out = bulkhead()
        .args(["gateway", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gateway.yaml:4: unknown service \"nope\""),
        "{stderr}"
    );
}
