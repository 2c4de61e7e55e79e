//! A lab without its optional programs (`docker-registry`, `prometheus`):
//! it runs, says what is missing, and the scenarios that need them say so.

use crate::lab_up::{all_healthy, wait_for};
use crate::{TempDir, bulkhead, run_ok};
use serde_json::Value;
use std::process::Stdio;

/// A PATH with every program of this one except `docker-registry` and `prometheus`.
fn path_without_optional_programs(tmp: &TempDir) -> std::ffi::OsString {
    let bin = tmp.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for folder in std::env::split_paths(&path) {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name == "docker-registry" || name == "prometheus" || bin.join(&name).exists() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(entry.path(), bin.join(&name));
        }
    }
    bin.into_os_string()
}

#[test]
fn the_lab_runs_without_docker_registry_and_prometheus_and_says_so() {
    let tmp = TempDir::new("lab-without-optional");
    let dir = tmp.join("lab");
    let mut lab = bulkhead();
    lab.args([
        "lab",
        "up",
        "--fleet-size",
        "8",
        "--services",
        "3",
        "--rate",
        "0",
        "--listen",
        "127.0.0.1:0",
        "--dir",
    ])
    .arg(&dir)
    .env("PATH", path_without_optional_programs(&tmp))
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    let child = lab.spawn().unwrap();
    let ready = wait_for(&dir, "every process healthy", all_healthy);
    assert_eq!(ready["addresses"]["registry"], Value::Null);
    assert_eq!(ready["addresses"]["prometheus"], Value::Null);
    assert_eq!(ready["gates"], "gateway");
    assert_eq!(
        ready["missing"],
        serde_json::json!(["prometheus", "docker-registry"])
    );
    let text = run_ok(bulkhead().args(["lab", "status", "--dir"]).arg(&dir));
    assert!(
        text.contains("missing: prometheus, docker-registry (not on PATH)"),
        "{text}"
    );
    let cve = bulkhead()
        .args(["lab", "scenario", "cve", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(cve.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&cve.stderr).contains("the lab has no registry"),
        "{}",
        String::from_utf8_lossy(&cve.stderr)
    );
    run_ok(bulkhead().args(["lab", "down", "--dir"]).arg(&dir));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "lab up exits 0: {}", out.status);
    let announced = String::from_utf8_lossy(&out.stdout);
    assert!(
        announced.contains("missing: prometheus, docker-registry (not on PATH; scripts/setup installs them): the lab runs without them"),
        "{announced}"
    );
    assert!(announced.contains(lab::up::REGISTRY_MISSING), "{announced}");
}
