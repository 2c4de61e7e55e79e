//! The lab's infrastructure scenarios (cve, enforce, patch) on a real `lab
//! up` with its registry, webhook and dpkg hosts, and a lab without the
//! optional programs.

use crate::lab_up::{alive, all_healthy, pids, start_lab, status, wait_for};
use crate::{TempDir, bulkhead, run_ok};
use serde_json::Value;
use std::process::Stdio;

/// `lab scenario NAME --json` on the lab in `dir`: its report, which must pass.
fn scenario(dir: &std::path::Path, name: &str, checks: &[&str]) -> Value {
    let out = bulkhead()
        .args(["lab", "scenario", name, "--json", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: {e}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{name}: {report:#}");
    assert_eq!(report["scenario"], name);
    assert_eq!(report["passed"], true, "{report:#}");
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for check in checks {
        assert!(names.contains(check), "{name} checks {check:?}: {names:?}");
    }
    report
}

#[test]
fn cve_enforce_and_patch_pass_on_a_live_lab_and_leave_no_process() {
    let tmp = TempDir::new("lab-scenarios-infra");
    let dir = tmp.join("lab");
    let mut lab = start_lab(
        &dir,
        &["--fleet-size", "12", "--services", "6", "--rate", "5"],
    );
    let ready = wait_for(&dir, "every process healthy", all_healthy);
    for kind in ["registry", "webhook"] {
        assert!(
            ready["processes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["kind"] == kind),
            "{kind} runs: {ready:#}"
        );
    }
    assert!(ready["addresses"]["registry"].is_string(), "{ready:#}");
    // Requests per second come from each process's counters between two writes of lab.json.
    wait_for(&dir, "the gateway's requests/s under load", |s| {
        s["processes"].as_array().is_some_and(|ps| {
            ps.iter().any(|p| {
                p["kind"] == "gateway" && p["requests_per_s"].as_f64().is_some_and(|r| r > 0.0)
            })
        })
    });

    let cve = scenario(
        &dir,
        "cve",
        &[
            "cve names exactly the services of the ground truth",
            "images upgrade committed in every affected repository, and only there",
            "the webhook denies a manifest still on a withdrawn digest",
            "each affected live service passed its gate in its wave",
            "every affected live service now runs the fixed image",
            "no service outside the change saw an error during the rollout",
        ],
    );
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground-truth.json")).unwrap())
            .unwrap();
    assert_eq!(
        cve["evidence"]["services"],
        truth["critical_cve"]["services"]
    );
    assert!(
        cve["evidence"]["seconds_from_report_to_remediation"]
            .as_f64()
            .is_some()
    );
    let registry: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("registry.json")).unwrap()).unwrap();
    let snapshot = std::fs::read_to_string(dir.join("cluster/lab.json")).unwrap();
    for fixed in cve["evidence"]["fixed_images"].as_array().unwrap() {
        let image = fixed["image"].as_str().unwrap();
        assert!(snapshot.contains(image), "a pod runs {image}");
    }
    assert!(
        registry["images"].as_array().unwrap().len() > 8,
        "bases and apps published"
    );

    scenario(
        &dir,
        "enforce",
        &[
            "a change that introduces :latest is refused (exit 1 on the changed manifest)",
            "the webhook denies the unapproved-registry image",
            "the webhook denies the undigested image",
            "the webhook admits the compliant image",
            "the Kyverno export is written",
        ],
    );
    assert!(dir.join("scenarios/enforce/kyverno.yaml").is_file());
    let patch = scenario(
        &dir,
        "patch",
        &["the host that failed its health check is rolled back: dpkg-query -W identical"],
    );
    assert_eq!(patch["evidence"]["states"]["lab-host-3"], "rolled_back");
    assert_eq!(patch["evidence"]["states"]["lab-host-1"], "patched");

    let mut recorded = pids(&ready);
    recorded.extend(pids(&status(&dir)));
    run_ok(bulkhead().args(["lab", "down", "--dir"]).arg(&dir));
    assert!(lab.child.wait().unwrap().success());
    let survivors: Vec<u64> = recorded.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(
        survivors.is_empty(),
        "still alive after lab down (registry, webhook and new versions included): {survivors:?}"
    );
}

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
