//! End-to-end tests of the `bulkhead` binary on real fleets: the online-boutique
//! manifests from testdata/, generated sample fleets, and fleets full of
//! bad input built by the tests themselves.

mod admission;
mod bad_input;
mod boutique;
mod browser;
mod cluster;
mod collector;
mod console;
mod fake_kube;
mod fake_tls;
mod forge;
mod gatekeeper_library;
mod gateway;
mod grammar;
mod handwritten;
mod images;
mod k8s_rollout;
mod lab_optional;
mod lab_service;
mod lab_tour;
mod lab_up;
mod layering;
mod patch;
mod policy;
mod rollout;
mod sample_fleet;
mod templates;
mod w3c;
mod walk;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use test_support::TempDir;

pub fn bulkhead() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
}

/// Runs the command, insisting on success, and returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("run bulkhead");
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"))
}

/// `bulkhead scan PATH --json` with its state kept in `state`.
pub fn scan_json(path: &Path, state: &Path) -> Value {
    json(&run_ok(
        bulkhead()
            .arg("scan")
            .arg(path)
            .arg("--json")
            .arg("--state")
            .arg(state),
    ))
}

/// Runs git in `dir` with a fixed identity and neither the user's nor the
/// system's configuration, insisting on success; returns stdout, trimmed.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A file or folder under the repository's `testdata/`.
pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(rel)
}

pub fn service<'a>(scan: &'a Value, name: &str) -> &'a Value {
    scan["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("service {name} missing"))
}

/// The names of a scan's services, in its order.
pub fn service_names(scan: &Value) -> Vec<&str> {
    scan["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect()
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One HTTP/1.1 request on a fresh connection (`connection: close`, an
/// optional bearer token); returns the status and body.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("host", "gw")];
    headers.extend(auth.as_deref().map(|a| ("authorization", a)));
    http_exchange(addr, method, path, &headers, body)
}

/// One HTTP/1.1 request on a fresh connection with `headers` in this order,
/// then `content-length` and `connection: close`; returns the status and body.
pub fn http_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let head: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\n{head}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub fn eventually_or<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
