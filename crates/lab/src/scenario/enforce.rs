//! Scenario `enforce`: image versions enforced at every gate. `policy check`
//! over the fleet as SARIF (for code scanning); a change that introduces
//! `:latest` is refused; the running webhook denies an image from an
//! unapproved registry and an undigested one, and admits a compliant one;
//! the same rules are exported for Kyverno; `images audit` gives the
//! pinning figures; `images upgrade` plans the forced move to pinned bases.

use std::collections::BTreeMap;

use serde_json::Value;

use super::live;
use super::{Lab, Report, ScenarioError, failed};
use crate::infra::RegistryRecord;

pub fn run(lab: &mut Lab, report: &mut Report) -> Result<(), ScenarioError> {
    let work = lab.dir.join("scenarios/enforce");
    std::fs::create_dir_all(&work).map_err(|e| failed("the scenario's folder", e.to_string()))?;
    let truth_latest: Vec<String> = lab.truth["latest_images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str().map(String::from))
        .collect();

    // 1. The fleet as SARIF.
    let sarif = lab.run(report, &["policy", "check", ".", "--format", "sarif"])?;
    let sarif_json: Value = sarif.json()?;
    let results = sarif_json["runs"][0]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let sarif_path = work.join("policy.sarif");
    std::fs::write(&sarif_path, &sarif.stdout)
        .map_err(|e| failed("policy.sarif", e.to_string()))?;
    let missed: Vec<&String> = truth_latest
        .iter()
        .filter(|i| !sarif.stdout.contains(i.as_str()))
        .collect();
    report.check(
        "policy check reports every :latest or untagged image of the ground truth, as SARIF 2.1.0",
        sarif.exit == 1 && sarif_json["version"] == "2.1.0" && missed.is_empty(),
        format!(
            "exit {}, {} results; missed {missed:?}",
            sarif.exit,
            results.len()
        ),
    );
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    for r in &results {
        *by_rule
            .entry(r["ruleId"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    report.evidence("sarif", sarif_path.display().to_string());
    report.evidence("sarif_results_by_rule", &by_rule);

    // 2. A change that introduces `:latest` is refused.
    let pinned = lab.truth["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|s| {
            let image = s["images"].as_array()?.iter().find_map(Value::as_str)?;
            image.contains("@sha256:").then(|| {
                (
                    s["repo"].as_str().unwrap_or_default().to_string(),
                    image.to_string(),
                )
            })
        })
        .ok_or_else(|| failed("the ground truth", "no service image pinned by digest"))?;
    let (repo, image) = pinned;
    let manifest = lab.dir.join(&repo).join("deploy/k8s.yaml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        failed(
            "the service's manifest",
            format!("{}: {e}", manifest.display()),
        )
    })?;
    let name = crate::infra::name_of(&image).to_string();
    let changed = work.join("changed-k8s.yaml");
    std::fs::write(&changed, text.replace(&image, &format!("{name}:latest")))
        .map_err(|e| failed("the changed manifest", e.to_string()))?;
    let original = lab.run(
        report,
        &[
            "policy",
            "check",
            &format!("{repo}/deploy/k8s.yaml"),
            "--json",
        ],
    )?;
    let refused = lab.run(
        report,
        &["policy", "check", &changed.display().to_string(), "--json"],
    )?;
    report.check(
        "a change that introduces :latest is refused (exit 1 on the changed manifest)",
        refused.exit == 1
            && refused.stdout.contains("builtin/image-tag")
            && !original.stdout.contains("builtin/image-tag"),
        format!(
            "{repo}/deploy/k8s.yaml exits {}; with {name}:latest it exits {}",
            original.exit, refused.exit
        ),
    );

    // 3. The running webhook.
    let (webhook, ca) = live::webhook(lab)?;
    let published = RegistryRecord::read(&lab.dir).ok();
    let compliant = image.clone();
    let cases = [
        ("unapproved-registry", "docker.io/library/nginx:1.27@sha256:0000000000000000000000000000000000000000000000000000000000000001".to_string(), false),
        ("undigested", format!("{name}:3.0.0"), false),
        ("compliant", compliant, true),
    ];
    let mut decisions = Vec::new();
    for (uid, image, want) in cases {
        let (allowed, message) = live::eventually(
            "the webhook answering",
            std::time::Duration::from_secs(30),
            || live::admit(&webhook, &ca, uid, &image).ok(),
        )?;
        report.check(
            &format!(
                "the webhook {} the {uid} image",
                if want { "admits" } else { "denies" }
            ),
            allowed == want,
            format!("{image}: allowed {allowed} {message}"),
        );
        decisions.push(serde_json::json!({"case": uid, "image": image, "allowed": allowed, "message": message}));
    }
    report.evidence("webhook_decisions", &decisions);

    // 4. The same rules for Kyverno.
    let kyverno = lab.run(
        report,
        &[
            "policy",
            "export",
            "kyverno",
            "--allowed-registry",
            "registry.acme.internal/",
        ],
    )?;
    let kyverno_path = work.join("kyverno.yaml");
    std::fs::write(&kyverno_path, &kyverno.stdout)
        .map_err(|e| failed("kyverno.yaml", e.to_string()))?;
    report.check(
        "the Kyverno export is written",
        kyverno.exit == 0 && kyverno.stdout.contains("kind: ClusterPolicy"),
        format!(
            "{} ({} bytes)",
            kyverno_path.display(),
            kyverno.stdout.len()
        ),
    );

    // 5. Pinning figures.
    let audit = lab.run_json(report, &["images", "audit", "--path", ".", "--json"])?;
    let images = audit["images"].as_array().cloned().unwrap_or_default();
    let mut pinning: BTreeMap<String, usize> = BTreeMap::new();
    for i in &images {
        *pinning
            .entry(i["pinning"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let digest_share =
        pinning.get("digest").copied().unwrap_or(0) as f64 / images.len().max(1) as f64;
    let unpinned_named: Vec<&String> = truth_latest
        .iter()
        .filter(|l| {
            !images
                .iter()
                .any(|i| i["image"] == l.as_str() && i["pinning"] != "digest")
        })
        .collect();
    report.check(
        "images audit counts every :latest or untagged image of the ground truth as unpinned",
        unpinned_named.is_empty(),
        format!("pinning {pinning:?}; not counted: {unpinned_named:?}"),
    );
    report.evidence("pinning", &pinning);
    report.evidence(
        "digest_pinned_percent",
        (digest_share * 1000.0).round() / 10.0,
    );

    // 6. The forced-upgrade plan: every final stage onto the published, pinned bases.
    let mut plan = Vec::new();
    if let Some(record) = &published {
        for base in record
            .images
            .iter()
            .filter(|p| p.service.is_none() && p.tag != "2024.11")
        {
            let ran = lab.run(
                report,
                &[
                    "images",
                    "upgrade",
                    "--to",
                    &base.reference(),
                    "--path",
                    ".",
                ],
            )?;
            if ran.exit != 0 {
                return Err(ran.failed());
            }
            let edits: Vec<String> = ran
                .stdout
                .lines()
                .filter(|l| l.contains(" -> "))
                .map(String::from)
                .collect();
            plan.push(serde_json::json!({"to": base.reference(), "edits": edits}));
        }
    }
    let edits: usize = plan
        .iter()
        .map(|p| p["edits"].as_array().map_or(0, Vec::len))
        .sum();
    report.check(
        "the forced-upgrade plan moves final stages onto the published digests",
        edits > 0,
        format!("{edits} FROM line(s) to move, over {} base(s)", plan.len()),
    );
    report.evidence("forced_upgrade_plan", &plan);

    report.answers.what_breaks = vec![
        format!(
            "{} unpinned image references (latest, tag only or none) drift with every push",
            images.len() - pinning.get("digest").copied().unwrap_or(0)
        ),
        format!(
            "{} policy findings over the fleet: {by_rule:?}",
            results.len()
        ),
    ];
    report.answers.who_is_impacted = truth_latest
        .iter()
        .map(|i| format!("{i} (:latest or no tag)"))
        .collect();
    report.answers.how_fast_we_roll_back = vec![
        "nothing to roll back: a refused change never merges and a denied manifest never runs"
            .into(),
        format!("the forced upgrade is {edits} one-line FROM commits, each reverted alone"),
    ];
    report.answers.how_we_monitor = vec![
        "SARIF in code scanning on every pull request; the webhook's bulkhead_admission_decisions_total{result}".into(),
        format!("pinned by digest: {:.1}% of {} references (images audit)", digest_share * 100.0, images.len()),
    ];
    Ok(())
}
