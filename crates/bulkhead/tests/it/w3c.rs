//! The official W3C Trace Context test harness (testdata/w3c-trace-context,
//! python3 with aiohttp) against `bulkhead lab service`, and against the
//! gateway with a lab service behind it, at Trace Context level 2 and the
//! harness's strictest level.
//!
//! The harness posts each case to the service's `POST /test` (through the
//! gateway's route, for the gateway) and the service calls the harness back
//! directly; the harness then checks the `traceparent` and `tracestate` of
//! each callback.

use super::{TempDir, bulkhead, testdata};
use std::io::{BufRead as _, BufReader, Lines};
use std::net::TcpListener;
use std::process::{Child, ChildStdout, Command, Stdio};

/// Every test of `test.py` at SPEC_LEVEL=2 STRICT_LEVEL=2 (none is skipped).
const HARNESS_TESTS: usize = 41;

/// A child process, killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bulkhead` with `args`, returns it and its first stdout line; the
/// rest of stdout is drained so that the process never blocks on a full pipe.
fn start(args: &[&str]) -> (Running, String) {
    let mut child = Running(
        bulkhead()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env_remove("BULKHEAD_LAB_ADMIN_TOKEN")
            .spawn()
            .expect("start bulkhead"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("{args:?} exited before listening"))
        .expect("utf-8");
    std::thread::spawn(move || drain(lines));
    (child, first)
}

fn drain(lines: Lines<BufReader<ChildStdout>>) {
    for line in lines {
        if line.is_err() {
            break;
        }
    }
}

/// `bulkhead lab service` on a free loopback port: the process and HOST:PORT.
fn lab_service() -> (Running, String) {
    let (child, first) = start(&[
        "lab",
        "service",
        "--name",
        "w3c",
        "--service-version",
        "1.0.0",
        "--listen",
        "127.0.0.1:0",
    ]);
    let listening: serde_json::Value = serde_json::from_str(&first).expect("JSON first line");
    assert_eq!(listening["event"], "listening", "{first}");
    let addr = listening["addr"].as_str().expect("addr").to_string();
    (child, addr)
}

/// What the harness's unittest runner printed: tests run, passed, and the summary line.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    ran: usize,
    passed: usize,
    result: String,
}

/// Reads unittest's verbose output: one `... ok` per passing test, then
/// `Ran N tests in Ts` and `OK` or `FAILED (...)`.
fn summary(output: &str) -> Summary {
    let ran = output
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split_once(" test")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no `Ran N tests` line:\n{output}"));
    let passed = output.lines().filter(|l| l.ends_with(" ... ok")).count();
    let result = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_string();
    Summary {
        ran,
        passed,
        result,
    }
}

/// A port that was free a moment ago, for the harness's callback server (its
/// default, 7777, may be taken, and tests run in parallel).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// Runs `test.py` against `endpoint` (`http://HOST:PORT/test`), bounded in time.
fn run_harness(endpoint: &str) -> Summary {
    let port = free_port().to_string();
    let out = Command::new("timeout")
        .args(["--kill-after=5", "180", "python3", "test.py", endpoint])
        .current_dir(testdata("w3c-trace-context"))
        .env("SPEC_LEVEL", "2")
        .env("STRICT_LEVEL", "2")
        .env("HARNESS_HOST", "127.0.0.1")
        .env("HARNESS_PORT", &port)
        .env("HARNESS_TIMEOUT", "5")
        .env_remove("HARNESS_BIND_HOST")
        .env_remove("HARNESS_BIND_PORT")
        .env_remove("HARNESS_DEBUG")
        // The vendored files stay as they are: no __pycache__ beside them.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3 (scripts/setup installs aiohttp)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named 'aiohttp'"),
        "python3 lacks aiohttp: run scripts/setup"
    );
    let summary = summary(&text);
    assert!(out.status.success(), "{summary:?}\n{text}");
    summary
}

fn every_test_passes() -> Summary {
    Summary {
        ran: HARNESS_TESTS,
        passed: HARNESS_TESTS,
        result: "OK".to_string(),
    }
}

#[test]
fn unittest_output_is_read() {
    let cases = [
        (
            "test_a (__main__.T.test_a)\nharness sends ... ok\ntest_b (__main__.T.test_b)\n\
             harness sends ... FAIL\n\n---\nRan 2 tests in 0.1s\n\nFAILED (failures=1)\n",
            Summary {
                ran: 2,
                passed: 1,
                result: "FAILED (failures=1)".to_string(),
            },
        ),
        (
            "test_a (__main__.T.test_a) ... ok\n\n---\nRan 1 test in 0.0s\n\nOK\n",
            Summary {
                ran: 1,
                passed: 1,
                result: "OK".to_string(),
            },
        ),
    ];
    for (output, expect) in cases {
        assert_eq!(summary(output), expect, "{output}");
    }
}

#[test]
fn harness_passes_against_lab_service() {
    let (_service, addr) = lab_service();
    assert_eq!(
        run_harness(&format!("http://{addr}/test")),
        every_test_passes()
    );
}

#[test]
fn harness_passes_through_the_gateway() {
    let (_service, addr) = lab_service();
    let dir = TempDir::new("w3c-gateway");
    let config = dir.path().join("gateway.yaml");
    // Every path goes to the lab service, so the harness's POST /test is forwarded.
    std::fs::write(
        &config,
        format!(
            "listeners: [{{address: 127.0.0.1:0}}]
routes: [{{prefix: /, service: w3c}}]
services:
  w3c:
    endpoints: [{{address: {addr}, labels: {{app: w3c}}}}]
    selector: {{app: w3c}}
"
        ),
    )
    .unwrap();
    let config = config.to_str().expect("utf-8 path");
    let (_gateway, first) = start(&["gateway", "--access-log", "off", "--config", config]);
    let proxy = first
        .strip_prefix("proxy listening on ")
        .unwrap_or_else(|| panic!("{first}"));
    assert_eq!(run_harness(&format!("{proxy}/test")), every_test_passes());
}
