//! Scenario `cve`: a CRITICAL CVE is published for the lab's OS base, and
//! the lab is remediated end to end: `cve` names the images, services,
//! running workloads and public routes; the base is rebuilt with the fixed
//! package and pushed with a new digest; `images upgrade` commits in every
//! affected repository; the webhook refuses the withdrawn digests; the
//! affected live services roll out to images on the fixed base, in waves
//! behind gates, while the rest of the fleet keeps answering.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::live::{self, Counts, Traffic, strings};
use super::{Lab, Report, ScenarioError, failed};
use crate::infra::{self, Publisher};
use crate::up;

/// The CVE the scenario publishes: libexpat in Debian 12 (CVSS 9.8).
pub const CVE: &str = "CVE-2024-45490";
/// The tag of the rebuilt bases.
const FIXED_TAG: &str = "2024.11";
/// The version the affected services roll out to.
const FIXED_VERSION: &str = "1.0.1";

/// Writes, next to each Trivy report of an image carrying the OS base's
/// layer, a report of the same image with the new CVE in that layer (what
/// a scan of every image in the lineage finds). Returns the files written.
fn publish_report(dir: &Path) -> Result<Vec<String>, ScenarioError> {
    let folder = dir.join("reports/trivy");
    let (package, installed, fixed) = infra::VULNERABLE_PACKAGE;
    let read = |path: &Path| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    };
    let entries = std::fs::read_dir(&folder).map_err(|e| {
        failed(
            "the fleet's Trivy reports",
            format!("{}: {e}", folder.display()),
        )
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("lab-"))
        })
        .collect();
    paths.sort();
    let os_layer = paths
        .iter()
        .filter_map(|p| read(p))
        .find(|r| {
            r["Metadata"]["OS"]["Family"] == "debian"
                && r["Metadata"]["DiffIDs"]
                    .as_array()
                    .is_some_and(|d| d.len() == 1)
        })
        .and_then(|r| r["Metadata"]["DiffIDs"][0].as_str().map(String::from))
        .ok_or_else(|| {
            failed(
                "the OS base's Trivy report",
                "no Debian base report with one layer",
            )
        })?;
    let mut written = Vec::new();
    for path in paths {
        let Some(mut report) = read(&path) else {
            continue;
        };
        let carries = report["Metadata"]["DiffIDs"]
            .as_array()
            .is_some_and(|d| d.iter().any(|id| id == os_layer.as_str()));
        if !carries {
            continue;
        }
        let target = report["Results"][0]["Target"].clone();
        report["CreatedAt"] = json!("2024-11-04T06:00:00Z");
        report["Results"] = json!([{
            "Target": target,
            "Class": "os-pkgs",
            "Type": "debian",
            "Vulnerabilities": [{
                "VulnerabilityID": CVE,
                "PkgID": format!("{package}@{installed}"),
                "PkgName": package,
                "InstalledVersion": installed,
                "FixedVersion": fixed,
                "Status": "fixed",
                "Layer": {"DiffID": os_layer},
                "SeveritySource": "nvd",
                "PrimaryURL": format!("https://avd.aquasec.com/nvd/{}", CVE.to_lowercase()),
                "Title": "libexpat: negative length for XML_ParseBuffer",
                "Severity": "CRITICAL",
            }],
        }]);
        let name = format!(
            "lab-{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let out = folder.join(&name);
        std::fs::write(
            &out,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
        .map_err(|e| failed("publishing the report", format!("{}: {e}", out.display())))?;
        written.push(format!("reports/trivy/{name}"));
    }
    Ok(written)
}

/// The branches `images upgrade` made in a repository, with the Dockerfile each one holds.
fn upgrade_branches(repo: &Path) -> Vec<(String, String)> {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Some(refs) = git(&[
        "for-each-ref",
        "--format=%(refname:short)",
        "refs/heads/bulkhead/",
    ]) else {
        return Vec::new();
    };
    refs.lines()
        .filter_map(|branch| {
            let file = git(&["show", &format!("{branch}:Dockerfile")])?;
            Some((branch.to_string(), file))
        })
        .collect()
}

pub fn run(lab: &mut Lab, report: &mut Report) -> Result<(), ScenarioError> {
    let registry = live::published(lab)?;
    let (webhook, _) = live::webhook(lab)?;
    let truth = lab.truth["critical_cve"].clone();
    let os_base = truth["os_base"]
        .as_str()
        .ok_or_else(|| failed("the ground truth", "no critical_cve.os_base"))?
        .to_string();
    let expected: BTreeSet<String> = strings(&truth["services"]).into_iter().collect();
    let live_services: Vec<String> = lab.record["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["kind"] == "service" && p["name"] == p["service"])
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    let affected_live: Vec<String> = live_services
        .iter()
        .filter(|s| expected.contains(*s))
        .cloned()
        .collect();

    // 1. The report, and what `cve` says about it.
    let reported = Instant::now();
    let written = publish_report(&lab.dir)?;
    report.evidence("reports_published", &written);
    let answer = lab.run_json(report, &["cve", CVE, "--path", ".", "--json"])?;
    let cve = &answer["cve"];
    let images: Vec<String> = cve["images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["name"].as_str().map(String::from))
        .collect();
    let services = cve["services"].as_array().cloned().unwrap_or_default();
    let named: BTreeSet<String> = services
        .iter()
        .filter_map(|s| s["service"].as_str().map(String::from))
        .collect();
    report.check(
        "cve names the OS base and the bases built on it",
        images.contains(&os_base)
            && strings(&truth["language_bases"])
                .iter()
                .all(|b| images.contains(b)),
        format!("images {images:?}"),
    );
    report.check(
        "cve names exactly the services of the ground truth",
        named == expected,
        format!("named {named:?}, expected {expected:?}"),
    );
    let running: BTreeMap<String, Vec<String>> = services
        .iter()
        .filter_map(|s| Some((s["service"].as_str()?.to_string(), strings(&s["running"]))))
        .collect();
    let without_pod: Vec<&String> = affected_live
        .iter()
        .filter(|s| {
            !running.get(*s).is_some_and(|r| {
                r.iter()
                    .any(|w| w.starts_with("lab/") && w.contains(" (sha256:"))
            })
        })
        .collect();
    report.check(
        "cve names the running pod of every affected live service, with its digest",
        without_pod.is_empty() && !affected_live.is_empty(),
        format!("affected live services {affected_live:?}; without a running pod: {without_pod:?}"),
    );
    let public_truth: BTreeSet<String> = lab.truth["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"].as_str().is_some_and(|n| expected.contains(n)))
        .filter(|s| {
            s["routes"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["public"] == true))
        })
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    let public_named: BTreeSet<String> = services
        .iter()
        .filter(|s| s["public_routes"].as_array().is_some_and(|r| !r.is_empty()))
        .filter_map(|s| s["service"].as_str().map(String::from))
        .collect();
    report.check(
        "cve names the public routes of exactly the public affected services",
        public_named == public_truth,
        format!("with public routes {public_named:?}, expected {public_truth:?}"),
    );
    report.evidence("images", &images);
    report.evidence("services", &named);
    report.evidence("running", &running);

    // 2. The base rebuilt with the fixed package, pushed with a new digest.
    let old = |name: &str| registry.find(name).cloned();
    let old_os = old(&os_base)
        .ok_or_else(|| failed("registry.json", format!("{os_base} was not published")))?;
    let mut publisher = Publisher::new(&registry.url).map_err(|e| failed("the registry", e))?;
    let rebuilt = publisher
        .publish_bases(&lab.dir, Some(&os_base), Some(FIXED_TAG))
        .map_err(|e| failed("rebuilding the base", e))?;
    let new_os = rebuilt
        .iter()
        .find(|p| p.name == os_base)
        .cloned()
        .ok_or_else(|| failed("rebuilding the base", "the OS base was not pushed"))?;
    report.check(
        "the rebuilt base has a new digest in the registry",
        new_os.digest != old_os.digest,
        format!("{} -> {}", old_os.reference(), new_os.reference()),
    );
    if let Some(child) = rebuilt.iter().find(|p| p.name != os_base) {
        let inspected = lab.run(
            report,
            &[
                "images",
                "inspect",
                &child.local(&registry.url),
                "--path",
                ".",
            ],
        )?;
        report.check(
            "images inspect reads the rebuilt base from the registry's annotations",
            inspected.exit == 0 && inspected.stdout.contains(&new_os.digest),
            format!(
                "{} names its base {}",
                child.local(&registry.url),
                new_os.digest
            ),
        );
    }
    report.evidence(
        "rebuilt",
        rebuilt
            .iter()
            .map(infra::Published::reference)
            .collect::<Vec<_>>(),
    );

    // 3. `images upgrade` commits in each affected repository.
    for image in &rebuilt {
        let ran = lab.run(
            report,
            &[
                "images",
                "upgrade",
                "--to",
                &image.reference(),
                "--apply",
                "--path",
                ".",
            ],
        )?;
        if ran.exit != 0 {
            return Err(ran.failed());
        }
    }
    let mut upgraded = BTreeSet::new();
    for s in lab.truth["services"].as_array().into_iter().flatten() {
        let (Some(name), Some(repo)) = (s["name"].as_str(), s["repo"].as_str()) else {
            continue;
        };
        let branches = upgrade_branches(&lab.dir.join(repo));
        if branches
            .iter()
            .any(|(_, dockerfile)| rebuilt.iter().any(|p| dockerfile.contains(&p.digest)))
        {
            upgraded.insert(name.to_string());
        }
    }
    report.check(
        "images upgrade committed in every affected repository, and only there",
        upgraded == expected,
        format!("upgraded {upgraded:?}"),
    );

    // 4. The webhook refuses the withdrawn digests.
    let withdrawn_apps: Vec<infra::Published> = registry
        .images
        .iter()
        .filter(|p| p.service.as_deref().is_some_and(|s| expected.contains(s)))
        .cloned()
        .collect();
    let mut withdrawn: Vec<String> = registry
        .images
        .iter()
        .filter(|p| rebuilt.iter().any(|r| r.name == p.name))
        .map(|p| p.digest.clone())
        .collect();
    withdrawn.extend(withdrawn_apps.iter().map(|p| p.digest.clone()));
    let policy = lab.dir.join(infra::WITHDRAWN_DIGESTS);
    std::fs::write(&policy, infra::withdrawn_digests_policy(&withdrawn))
        .map_err(|e| failed("the webhook's policy", format!("{}: {e}", policy.display())))?;
    let _ = std::fs::remove_file(lab.dir.join(infra::WEBHOOK_CA));
    up::ask(
        &lab.dir,
        "cve-webhook",
        &json!({"restart": "webhook"}),
        Duration::from_secs(30),
    )?;
    let (_, ca_now) = live::webhook(lab)?;
    let vulnerable = withdrawn_apps
        .first()
        .ok_or_else(|| failed("registry.json", "no app image of an affected service"))?;
    let (allowed, message) =
        live::eventually("the webhook answering", Duration::from_secs(30), || {
            live::admit(&webhook, &ca_now, "cve-vulnerable", &vulnerable.reference()).ok()
        })?;
    report.check(
        "the webhook denies a manifest still on a withdrawn digest",
        !allowed && message.contains("withdrawn"),
        format!("{}: {message}", vulnerable.reference()),
    );

    // 5. The affected live services roll out to images on the fixed base.
    let mut greens = Vec::new();
    for service in &affected_live {
        let old_app = registry
            .images
            .iter()
            .find(|p| p.service.as_deref() == Some(service))
            .ok_or_else(|| failed("registry.json", format!("no image of {service}")))?;
        let base = old_app
            .base
            .as_deref()
            .map(infra::name_of)
            .and_then(|b| rebuilt.iter().find(|r| r.name == b))
            .map(infra::Published::reference);
        let pushed = publisher
            .publish_apps(
                &[(service.clone(), old_app.name.clone(), base)],
                FIXED_VERSION,
            )
            .map_err(|e| failed("pushing the fixed images", e))?;
        let image = pushed[0].reference();
        let (allowed, message) = live::admit(&webhook, &ca_now, "cve-fixed", &image)?;
        report.check(
            &format!("the webhook admits {service}'s fixed image"),
            allowed,
            format!("{image} {message}"),
        );
        up::ask(
            &lab.dir,
            &format!("cve-{service}"),
            &json!({"start": {"service": service, "version": FIXED_VERSION, "image": image}}),
            Duration::from_secs(30),
        )?;
        greens.push((service.clone(), image));
    }
    for (service, _) in &greens {
        live::wait_healthy(lab, &format!("{service}@{FIXED_VERSION}"))?;
    }
    let work = lab.dir.join("scenarios/cve");
    std::fs::create_dir_all(&work).map_err(|e| failed("the scenario's folder", e.to_string()))?;
    let prometheus = lab.record["gates"] == "prometheus";
    let provider = infra::error_rate_provider(
        lab.address("prometheus")
            .ok()
            .filter(|_| prometheus)
            .as_deref(),
    );
    let mut specs = format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: cve-error-rate}}\nspec:\n  metrics:\n    - name: error-rate\n      interval: 1s\n      count: 3\n      successCondition: result < 0.05\n      failureLimit: 0\n      provider: {provider}\n"
    );
    for (service, _) in &greens {
        specs.push_str(&format!(
            "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {service}}}\nspec:\n  service: {service}\n  strategy:\n    blueGreen:\n      autoPromotionEnabled: true\n      scaleDownDelaySeconds: 0\n      postPromotionAnalysis: {{templates: [{{templateName: cve-error-rate}}]}}\n"
        ));
    }
    let specs_path = work.join("rollouts.yaml");
    std::fs::write(&specs_path, specs).map_err(|e| failed("the rollout specs", e.to_string()))?;
    let before = Counts::read(lab)?;
    let traffic = Traffic::start(&lab.address("ingress")?, &live_services, 20.0);
    let changed = affected_live.join(",");
    let admin = lab.address("gateway_admin")?;
    let state = work.join("state");
    let rolled = lab.run(
        report,
        &[
            "rollout",
            "start",
            "--services",
            &changed,
            "--stable",
            infra::SERVICE_VERSION,
            "--to",
            FIXED_VERSION,
            "--specs",
            &specs_path.display().to_string(),
            "--executor",
            "gateway",
            "--gateway-admin",
            &admin,
            "--path",
            ".",
            "--state",
            &state.display().to_string(),
        ],
    )?;
    let sent = traffic.stop();
    let remediated = reported.elapsed();
    let during = Counts::read(lab)?.since(&before);
    report.check(
        "the rollout promoted every affected live service through its gate",
        rolled.exit == 0,
        format!(
            "rollout start exited {}: {}",
            rolled.exit,
            rolled.stderr.lines().last().unwrap_or_default()
        ),
    );
    let shown = lab.run_json(
        report,
        &[
            "rollout",
            "status",
            "--path",
            ".",
            "--state",
            &state.display().to_string(),
            "--json",
        ],
    )?;
    let waves: Vec<Value> = shown["rollout"]["services"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            json!({
                "service": s["service"],
                "wave": s["wave"],
                "phase": s["phase"],
                "gates": s["analyses"].as_array().into_iter().flatten().map(|a| a["verdict"].clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let gated = waves.len() == affected_live.len()
        && waves.iter().all(|w| {
            w["gates"]
                .as_array()
                .is_some_and(|g| !g.is_empty() && g.iter().all(|v| v == "successful"))
        });
    report.check(
        "each affected live service passed its gate in its wave",
        gated,
        format!(
            "{} wave(s): {}",
            shown["rollout"]["waves"],
            Value::Array(waves.clone())
        ),
    );
    report.evidence("waves", &waves);
    let selectors = live::selectors(lab)?;
    let on_fixed: Vec<&String> = affected_live
        .iter()
        .filter(|s| {
            selectors
                .get(*s)
                .is_some_and(|sel| sel["version"] == FIXED_VERSION)
        })
        .collect();
    report.check(
        "every affected live service now runs the fixed image",
        on_fixed.len() == affected_live.len(),
        format!("routed to {FIXED_VERSION}: {on_fixed:?} of {affected_live:?}"),
    );
    let snapshot =
        std::fs::read_to_string(lab.dir.join(crate::cluster::SNAPSHOT)).unwrap_or_default();
    let not_running: Vec<&String> = greens
        .iter()
        .filter(|(_, image)| !snapshot.contains(image.as_str()))
        .map(|(_, image)| image)
        .collect();
    report.check(
        "the cluster snapshot shows a running pod of each fixed image",
        !greens.is_empty() && not_running.is_empty(),
        format!(
            "{} fixed images; not in {}: {not_running:?}",
            greens.len(),
            crate::cluster::SNAPSHOT
        ),
    );
    let errors_outside: BTreeMap<&String, u64> = live_services
        .iter()
        .filter(|s| !affected_live.contains(s))
        .map(|s| (s, during.service(s).1))
        .collect();
    report.check(
        "no service outside the change saw an error during the rollout",
        errors_outside.values().all(|n| *n == 0),
        format!("new 5xx by service: {errors_outside:?}"),
    );
    let served: BTreeMap<&String, u64> = live_services
        .iter()
        .map(|s| (s, during.service(s).0))
        .collect();
    report.evidence("gateway_requests_during_rollout", &served);
    report.evidence("gateway_errors_outside_change", &errors_outside);
    report.evidence("scenario_requests_sent", sent);
    report.evidence(
        "gates",
        if prometheus {
            "prometheus (PromQL)"
        } else {
            "gateway /metrics"
        },
    );
    report.evidence(
        "fixed_images",
        greens
            .iter()
            .map(|(s, i)| json!({"service": s, "image": i}))
            .collect::<Vec<_>>(),
    );
    report.evidence("withdrawn_digests", &withdrawn);
    // registry.json lists what the registry holds: the rebuilt bases and fixed images too.
    let mut record = registry.clone();
    record
        .images
        .extend(publisher.record.images.iter().cloned());
    record
        .write(&lab.dir)
        .map_err(|e| failed("registry.json", e))?;
    report.evidence(
        "seconds_from_report_to_remediation",
        (remediated.as_secs_f64() * 10.0).round() / 10.0,
    );

    report.answers.what_breaks = vec![
        format!(
            "{CVE} (CRITICAL, {}) is in {os_base} and every image built on it: {}",
            infra::VULNERABLE_PACKAGE.0,
            images.join(", ")
        ),
        format!(
            "{} services are built on it; {} of them run in the lab",
            expected.len(),
            affected_live.len()
        ),
    ];
    report.answers.who_is_impacted = named
        .iter()
        .map(|s| {
            let r = running.get(s).map(|r| r.join(", ")).unwrap_or_default();
            if r.is_empty() {
                s.clone()
            } else {
                format!("{s}: {r}")
            }
        })
        .collect();
    report.answers.how_fast_we_roll_back = vec![
        format!("{} s from the report to every affected live service on the fixed base", (remediated.as_secs_f64() * 10.0).round() / 10.0),
        "a failed gate switches the service's selector back to 1.0.0 alone; the old processes keep running until then".into(),
    ];
    report.answers.how_we_monitor = vec![
        format!(
            "gates on the gateway's error rate per service ({})",
            if prometheus {
                "PromQL against the lab's Prometheus"
            } else {
                "the gateway's /metrics"
            }
        ),
        "the webhook refuses the withdrawn digests, so nothing vulnerable is deployed again".into(),
        "`bulkhead cve` against the cluster snapshot lists what still runs the vulnerable images"
            .into(),
    ];
    Ok(())
}
