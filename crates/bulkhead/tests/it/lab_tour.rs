//! `bulkhead lab tour`, shortened (a small lab, one-second gates): it starts a
//! lab, runs all six scenarios against it in order, stops it, and its JSON
//! report holds each scenario's checks and evidence, which must agree with the ground
//! truth and with the faults the scenarios injected. No process survives.

use crate::lab_up::alive;
use crate::{TempDir, bulkhead, strings};
use serde_json::Value;
use std::collections::BTreeSet;

/// The evidence of scenario `name` of the tour, which passed every check,
/// `checks` among them.
fn scenario<'a>(tour: &'a Value, name: &str, checks: &[&str]) -> &'a Value {
    let step = tour["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scenario"] == name)
        .unwrap_or_else(|| panic!("scenario {name} in the tour: {tour:#}"));
    assert_eq!(step["passed"], true, "{name}: {step:#}");
    assert_eq!(step["error"], Value::Null, "{name}");
    let report = &step["report"];
    for check in report["checks"].as_array().unwrap() {
        assert_eq!(check["ok"], true, "{name}: {check}");
    }
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for check in checks {
        assert!(names.contains(check), "{name} checks {check:?}: {names:?}");
    }
    for answer in [
        "what_breaks",
        "who_is_impacted",
        "how_fast_we_roll_back",
        "how_we_monitor",
    ] {
        assert!(
            !report["answers"][answer].as_array().unwrap().is_empty(),
            "{name} answers {answer}"
        );
    }
    &report["evidence"]
}

#[test]
fn a_short_tour_runs_all_six_scenarios_on_one_lab_and_leaves_no_process() {
    let tmp = TempDir::new("lab-tour");
    let dir = tmp.join("lab");
    let out = bulkhead()
        .args([
            "lab",
            "tour",
            "--services",
            "8",
            "--fleet-size",
            "30",
            "--gate-interval",
            "1s",
            "--json",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tour: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("tour --json is JSON ({e}):\n{stderr}"));
    assert_eq!(out.status.code(), Some(0), "{tour:#}\n{stderr}");
    assert_eq!(tour["passed"], true);
    let order: Vec<&str> = tour["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "cve",
            "pipeline",
            "ten-services",
            "trace",
            "enforce",
            "patch"
        ]
    );
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ground-truth.json")).unwrap())
            .unwrap();

    // cve: the ground truth's services; the fixed images run, on the registry's digests.
    let cve = scenario(
        &tour,
        "cve",
        &[
            "cve names exactly the services of the ground truth",
            "images upgrade committed in every affected repository, and only there",
            "the webhook denies a manifest still on a withdrawn digest",
            "each affected live service passed its gate in its wave",
            "every affected live service now runs the fixed image",
            "the cluster snapshot shows a running pod of each fixed image",
            "no service outside the change saw an error during the rollout",
        ],
    );
    assert_eq!(cve["services"], truth["critical_cve"]["services"]);
    assert!(cve["seconds_from_report_to_remediation"].as_f64().is_some());
    let registry: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("registry.json")).unwrap()).unwrap();
    assert!(
        registry["images"].as_array().unwrap().len() > 8,
        "bases and apps published"
    );
    assert!(
        !cve["fixed_images"].as_array().unwrap().is_empty(),
        "{cve:#}"
    );

    // pipeline: the breaking apps are the planted ones; the patch tag is refused.
    let pipeline = scenario(&tour, "pipeline", &[]);
    let planted = truth["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["breaks_on_v2"] == true)
        .count();
    assert_eq!(pipeline["check"]["breaking"], planted);
    assert_eq!(pipeline["under_bumped"]["exit"], 1);
    assert_eq!(pipeline["under_bumped"]["diff"]["required_bump"], "major");
    assert!(!strings(&pipeline["waves"][0]["apps"]).is_empty());
    assert_eq!(
        pipeline["adoption"]["after_rollback"].as_u64().unwrap() + 1,
        pipeline["adoption"]["after_wave_1"].as_u64().unwrap()
    );

    // ten-services: eight live services, so six change; the faulty one alone
    // is rolled back, its callers held, and nothing fails outside the change.
    let ten = scenario(
        &tour,
        "ten-services",
        &["the lab is back on the versions it ran before"],
    );
    let changed = strings(&ten["change_set"]);
    assert_eq!(changed.len(), 6, "{ten:#}");
    assert_eq!(strings(&ten["outside"]).len(), 2);
    let faulty = ten["faulty"]["service"].as_str().unwrap();
    assert_eq!(ten["phases"][faulty], "rolled-back");
    let callers: BTreeSet<String> = strings(&ten["faulty"]["callers"]).into_iter().collect();
    for service in &changed {
        let phase = ten["phases"][service].as_str().unwrap();
        let want = if service == faulty {
            "rolled-back"
        } else if callers.contains(service) {
            "held"
        } else {
            "promoted"
        };
        assert_eq!(phase, want, "{service}");
    }
    assert_eq!(ten["failed_requests"]["outside_change_set"], 0);
    assert_eq!(ten["failed_requests"]["otherwise"], 0);
    assert!(ten["failed_requests"]["while_faulty_green_live"].as_u64() > Some(0));
    assert_eq!(ten["rollback"]["service"], faulty);

    // trace: six services deep; the trace blames what was injected.
    let trace = scenario(&tour, "trace", &[]);
    let chain = strings(&trace["call_chain"]);
    assert!(chain.len() >= 6, "{chain:?}");
    let failing = trace["injected"]["failing"]["service"].as_str().unwrap();
    assert_eq!(failing, chain[3]);
    assert_eq!(trace["failed_trace"]["root_cause"]["service"], failing);
    assert_eq!(
        trace["slow_trace"]["bottleneck"]["service"],
        trace["injected"]["slow"]["service"]
    );
    for hop in &chain[..4] {
        assert!(
            trace["logs"][hop]["lines"].as_u64() > Some(0),
            "{hop} logged"
        );
    }
    assert!(trace["error_rate"]["rate"].as_f64() >= Some(0.5));

    // enforce and patch, after the others changed the lab.
    scenario(
        &tour,
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
        &tour,
        "patch",
        &["the host that failed its health check is rolled back: dpkg-query -W identical"],
    );
    assert_eq!(patch["states"]["lab-host-3"], "rolled_back");
    assert_eq!(patch["states"]["lab-host-1"], "patched");

    // Nothing is left running: the lab's processes and the scenario's greens.
    assert_eq!(tour["survivors"], Value::Array(Vec::new()));
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("lab.json")).unwrap()).unwrap();
    assert_eq!(record["state"], "stopped");
    let mut pids: Vec<u64> = record["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    pids.extend(
        ten["greens"]
            .as_object()
            .unwrap()
            .values()
            .filter_map(|g| g["pid"].as_u64()),
    );
    let survivors: Vec<u64> = pids.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(survivors.is_empty(), "still alive: {survivors:?}");
}
