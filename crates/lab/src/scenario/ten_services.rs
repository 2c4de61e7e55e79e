//! Scenario `ten-services`: "10 services were upgraded. How do you isolate the impact?"
//!
//! Ten live services get a green version at once: the scenario asks the lab's
//! supervisor for one green `lab service` process per changed service, one of
//! them faulty (30% errors); each joins its service's pool at the gateway
//! while the version live now (1.0.0, or what an earlier rollout moved it to)
//! stays selected. `bulkhead rollout start`
//! then moves them in dependency-ordered waves through the gateway's admin
//! API, each gated on the live error rate of the service and its callers. The
//! faulty one is rolled back alone, the changed services calling it are held,
//! the rest promoted. A monitor samples the gateway's counters and routing
//! throughout, so the report shows which services failed requests, and when.
//! At the end the selectors are put back and the greens stopped (on every
//! path): the lab is back on the versions it ran before.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::live::{self, Counts, LiveService, SETTLE, strings};
use super::{Lab, Report, ScenarioError, failed};
use crate::up;

/// How many services the scenario changes at most.
const CHANGED: usize = 10;
/// Live services the scenario leaves outside the change set.
const OUTSIDE: usize = 2;
/// The faulty green's share of failed requests.
const FAULTY_ERROR_RATE: f64 = 0.3;
const GREEN: &str = "green";
/// Requests per second the scenario adds on the longest route while the rollout
/// runs, so every gate window holds enough requests to judge.
const EXTRA_RATE: f64 = 20.0;

pub fn run(lab: &mut Lab, report: &mut Report) -> Result<(), ScenarioError> {
    let services = live::services(lab)?;
    if services.len() < 4 {
        return Err(failed(
            "the lab's live services",
            format!(
                "{} live; the scenario needs at least 4: start the lab with --services 12",
                services.len()
            ),
        ));
    }
    let target = CHANGED.min(services.len() - OUTSIDE.min(services.len() - 2));
    let work = live::work_dir(lab, "ten-services")?;
    let fleet = work.join("fleet");
    write_live_fleet(lab, &services, &fleet)?;
    let admin = lab.address("gateway_admin")?;
    let state = work.join("state");

    // The faulty service: one in the middle of the longest chain, alone among
    // the services its wave gates on, so its callers' errors blame no one else.
    let (faulty, changed, plan) = choose(lab, report, &services, target, &fleet)?;
    let outside: Vec<String> = services
        .iter()
        .map(|s| s.name.clone())
        .filter(|s| !changed.contains(s))
        .collect();
    let callers_of_faulty = ancestors(&services, &faulty);
    // The version a rollback returns to: the one the gateway routes the faulty service to now.
    let stable = faulty_version(&services, &faulty)?;
    report.evidence("change_set", &changed);
    report.evidence("outside", &outside);
    report.evidence(
        "faulty",
        json!({"service": faulty, "stable": stable, "green_error_rate": FAULTY_ERROR_RATE, "callers": callers_of_faulty}),
    );
    report.evidence(
        "waves",
        plan["waves"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w["services"].clone())
            .collect::<Vec<_>>(),
    );
    std::fs::write(
        fleet.join("rollouts.yaml"),
        specs(&changed, lab.gate_interval),
    )
    .map_err(|e| failed("writing the rollout specs", e.to_string()))?;

    // Green versions, added to the gateway's pools (the live version still selected).
    let mut greens = Greens::new(lab, &changed)?;
    for name in &changed {
        let rate = if *name == faulty {
            FAULTY_ERROR_RATE
        } else {
            0.0
        };
        greens.start(lab, name, rate)?;
    }
    report.evidence(
        "greens",
        greens
            .started
            .iter()
            .map(|(name, addr, pid)| (name.clone(), json!({"addr": addr, "pid": pid})))
            .collect::<BTreeMap<_, _>>(),
    );

    // The rollout, with extra load on the longest route and a monitor sampling the gateway.
    let route = services[0]
        .public_paths
        .first()
        .cloned()
        .unwrap_or_default();
    let ingress = lab.address("ingress")?;
    let stop = Arc::new(AtomicBool::new(false));
    let before = Counts::read(lab)?;
    let (ran, samples) = std::thread::scope(|scope| {
        let extra = scope.spawn(|| extra_load(&ingress, &route, &stop));
        let monitor = scope.spawn(|| monitor(&admin, &faulty, &stop));
        let ran = lab.run(
            report,
            &[
                "rollout",
                "start",
                "--services",
                &changed.join(","),
                "--to",
                GREEN,
                "--stable",
                &stable,
                "--path",
                &fleet.display().to_string(),
                "--state",
                &state.display().to_string(),
                "--specs",
                &fleet.join("rollouts.yaml").display().to_string(),
                "--executor",
                "gateway",
                "--gateway-admin",
                &admin,
            ],
        );
        stop.store(true, Ordering::SeqCst);
        let sent = extra.join().unwrap_or_default();
        let samples = monitor.join().unwrap_or_default();
        (ran.map(|r| (r, sent)), samples)
    });
    let (ran, extra_sent) = ran?;
    if ran.exit != 0 && ran.exit != 1 {
        return Err(ran.failed());
    }
    let after = Counts::read(lab)?;
    let during = after.since(&before);
    let status = lab.run_json(
        report,
        &[
            "rollout",
            "status",
            "--json",
            "--path",
            &fleet.display().to_string(),
            "--state",
            &state.display().to_string(),
        ],
    )?;
    let restored = greens.stop();
    report.check(
        "the lab is back on the versions it ran before",
        restored.is_ok(),
        restored.clone().err().unwrap_or_else(|| {
            "the selectors put back, the green processes stopped and removed from the gateway"
                .into()
        }),
    );

    // Outcome per service, against what the plan says a rollback holds.
    let phases: BTreeMap<String, String> = changed
        .iter()
        .map(|s| (s.clone(), phase(&status, s)))
        .collect();
    report.evidence("phases", &phases);
    let held_expected: BTreeSet<String> = strings(&plan["rollouts"][&faulty]["holds_on_failure"])
        .into_iter()
        .collect();
    report.check(
        "the faulty service is rolled back",
        phases.get(&faulty).map(String::as_str) == Some("rolled-back"),
        format!(
            "{faulty}: {}",
            phases.get(&faulty).cloned().unwrap_or_default()
        ),
    );
    let held: BTreeSet<String> = phases
        .iter()
        .filter(|(_, p)| *p == "held")
        .map(|(s, _)| s.clone())
        .collect();
    report.check(
        "its dependents are held",
        held == held_expected,
        format!("held {held:?}; the plan holds {held_expected:?}"),
    );
    let promoted: Vec<&String> = phases
        .iter()
        .filter(|(_, p)| *p == "promoted")
        .map(|(s, _)| s)
        .collect();
    let others = changed.len() - 1 - held_expected.len();
    report.check(
        "the rest are promoted",
        promoted.len() == others,
        format!("{} of {others} promoted: {promoted:?}", promoted.len()),
    );
    report.check(
        "routing outside the change set is untouched",
        status["untouched"]["identical"] == true,
        format!("{}", status["untouched"]),
    );

    // Failed requests: none outside the change set, none while the faulty green was not live.
    let outside_failed: u64 = outside.iter().map(|s| during.service(s).1).sum();
    report.check(
        "no failed request outside the change set",
        outside_failed == 0,
        format!("{outside_failed} 5xx on {}", outside.join(", ")),
    );
    let (while_live, otherwise) = attribute(&samples);
    report.check(
        "failures only while the faulty green was live",
        while_live > 0 && otherwise == 0,
        format!(
            "{while_live} 5xx while {faulty}'s green was selected, {otherwise} otherwise ({} samples of the gateway)",
            samples.len()
        ),
    );
    let rollback = &status["rollbacks"][0];
    let rollback_ms = rollback["millis"].as_f64();
    report.check(
        "the rollback is timed",
        rollback["service"] == faulty.as_str() && rollback_ms.is_some(),
        format!("{rollback}"),
    );
    report.evidence("gateway_counts_during_rollout", during.to_json());
    report.evidence(
        "failed_requests",
        json!({"while_faulty_green_live": while_live, "otherwise": otherwise, "outside_change_set": outside_failed}),
    );
    report.evidence("rollback", rollback);
    report.evidence("extra_requests", extra_sent);
    report.evidence(
        "rollout_log",
        ran.stderr.lines().map(String::from).collect::<Vec<_>>(),
    );

    let green_failed = during
        .0
        .get(&(faulty.clone(), GREEN.to_string()))
        .copied()
        .unwrap_or_default();
    let other_greens_failed: u64 = changed
        .iter()
        .filter(|s| **s != faulty)
        .filter_map(|s| during.0.get(&(s.clone(), GREEN.to_string())))
        .map(|(_, errors)| errors)
        .sum();
    report.check(
        "only the faulty green failed requests",
        green_failed.1 > 0 && other_greens_failed == 0,
        format!(
            "{faulty}'s green: {} 5xx; the other greens: {other_greens_failed}",
            green_failed.1
        ),
    );
    let rollback_text = rollback_ms.map_or("not measured".into(), |ms| format!("{ms:.1} ms"));
    report.answers.what_breaks = vec![
        format!(
            "{faulty}'s green answered {} of {} requests with 5xx ({:.0}% injected); the {} other greens answered {other_greens_failed}",
            green_failed.1,
            green_failed.0,
            FAULTY_ERROR_RATE * 100.0,
            changed.len() - 1
        ),
        format!(
            "while it was live its callers failed with it: {}",
            callers_of_faulty.join(", ")
        ),
    ];
    let scaled = (changed.len() < CHANGED).then(|| {
        format!(
            "the lab runs {} live services, so {} changed instead of {CHANGED}, leaving {} outside",
            services.len(),
            changed.len(),
            outside.len()
        )
    });
    report.answers.who_is_impacted = scaled.into_iter().collect();
    report.answers.who_is_impacted.extend([
        format!(
            "only requests through {faulty} while its green was selected: {while_live} failed, {otherwise} at any other time"
        ),
        format!(
            "outside the change set ({}): {outside_failed} failed requests, routing byte-identical",
            outside.join(", ")
        ),
        format!(
            "held, never switched: {}",
            held.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    ]);
    report.answers.how_fast_we_roll_back = vec![
        format!(
            "{faulty} alone went back to {stable} {rollback_text} after its gate failed (the decision recorded, then one selector change at the gateway)"
        ),
        format!(
            "the other {} promoted services stayed on green; a wave never waits for a person",
            promoted.len()
        ),
    ];
    report.answers.how_we_monitor = vec![
        format!(
            "each service's gate: the gateway's error rate of the service and of its direct callers, every {}, below 5% three times",
            yaml_duration(lab.gate_interval)
        ),
        format!(
            "`bulkhead rollout status --path {} --state {}` shows every wave, phase, analysis and the rollback time",
            fleet.display(),
            state.display()
        ),
        "the gateway's bulkhead_gateway_requests_total{service,version,code} per version tells the green's errors from the blue's".into(),
    ];
    Ok(())
}

/// Picks the faulty service and the change set, and plans it: the faulty
/// service is tried along the longest chain, from its middle out, until the
/// plan puts it in a wave where no other service's gate covers a caller of it.
fn choose(
    lab: &Lab,
    report: &mut Report,
    services: &[LiveService],
    target: usize,
    fleet: &Path,
) -> Result<(String, Vec<String>, Value), ScenarioError> {
    let chain = longest_chain(services);
    let middle = chain.len() / 2;
    let mut order: Vec<usize> = (0..chain.len()).collect();
    order.sort_by_key(|i| (i.abs_diff(middle), *i));
    let mut last = String::new();
    for i in order.into_iter().filter(|i| *i > 0) {
        let faulty = chain[i].clone();
        let mut changed: Vec<String> = ancestors(services, &faulty);
        changed.push(faulty.clone());
        // Fill with the services of the chain first, then the rest in the lab's order.
        for s in chain.iter().chain(services.iter().map(|s| &s.name)) {
            if changed.len() >= target {
                break;
            }
            if !changed.contains(s) {
                changed.push(s.clone());
            }
        }
        if changed.len() > target {
            continue;
        }
        changed.sort();
        let plan = lab.run_json(
            report,
            &[
                "rollout",
                "plan",
                "--services",
                &changed.join(","),
                "--to",
                GREEN,
                "--stable",
                &faulty_version(services, &faulty)?,
                "--path",
                &fleet.display().to_string(),
                "--format",
                "json",
            ],
        )?;
        let callers: BTreeSet<String> = ancestors(services, &faulty).into_iter().collect();
        let wave = &plan["rollouts"][&faulty]["wave"];
        let confounded: Vec<String> = changed
            .iter()
            .filter(|s| **s != faulty && plan["rollouts"][s.as_str()]["wave"] == *wave)
            .filter(|s| {
                strings(&plan["rollouts"][s.as_str()]["analysis_services"])
                    .iter()
                    .any(|a| callers.contains(a))
            })
            .cloned()
            .collect();
        if confounded.is_empty() {
            return Ok((faulty, changed, plan));
        }
        last = format!("{faulty}: {confounded:?} share its wave and gate on its callers");
    }
    Err(failed(
        "choosing the faulty service",
        format!("no service of the longest chain can fail without blaming another: {last}"),
    ))
}

/// The version the gateway routes `faulty` to now.
fn faulty_version(services: &[LiveService], faulty: &str) -> Result<String, ScenarioError> {
    services
        .iter()
        .find(|s| s.name == faulty)
        .map(|s| s.version.clone())
        .ok_or_else(|| failed(faulty, "not live"))
}

/// The longest call chain among the live services, from the first one.
fn longest_chain(services: &[LiveService]) -> Vec<String> {
    let fleet: Vec<up::FleetService> = services
        .iter()
        .map(|s| up::FleetService {
            name: s.name.clone(),
            depends_on: s.calls.clone(),
            public_paths: s.public_paths.clone(),
            namespace: String::new(),
            image: None,
        })
        .collect();
    let by_name: BTreeMap<&str, &up::FleetService> =
        fleet.iter().map(|s| (s.name.as_str(), s)).collect();
    up::longest_chain(&by_name, &services[0].name)
        .into_iter()
        .map(String::from)
        .collect()
}

/// Every live service that calls `name`, directly or not, sorted.
fn ancestors(services: &[LiveService], name: &str) -> Vec<String> {
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut frontier = vec![name.to_string()];
    while let Some(callee) = frontier.pop() {
        for s in services {
            if s.calls.contains(&callee) && found.insert(s.name.clone()) {
                frontier.push(s.name.clone());
            }
        }
    }
    found.into_iter().collect()
}

/// The live part of the fleet as the rollout planner reads it: a
/// `catalog-info.yaml` per live service with its tier and the live services
/// it calls. Services that are not running have no traffic for a gate to
/// judge, so they are left out of the graph.
fn write_live_fleet(
    lab: &Lab,
    services: &[LiveService],
    fleet: &Path,
) -> Result<(), ScenarioError> {
    for s in services {
        let tier = lab.truth["services"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["name"] == s.name.as_str())
            .and_then(|t| t["tier"].as_u64())
            .unwrap_or(3);
        let mut text = format!(
            "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {}\n  annotations:\n    bulkhead.io/tier: \"{tier}\"\nspec:\n  type: service\n  lifecycle: production\n  owner: group:lab\n",
            s.name
        );
        if !s.calls.is_empty() {
            text.push_str("  dependsOn:\n");
            for dep in &s.calls {
                let _ = writeln!(text, "    - component:{dep}");
            }
        }
        let folder = fleet.join("services").join(&s.name);
        std::fs::create_dir_all(&folder)
            .and_then(|()| std::fs::write(folder.join("catalog-info.yaml"), text))
            .map_err(|e| failed(&format!("writing {}", folder.display()), e.to_string()))?;
    }
    Ok(())
}

/// A duration as rollout specs write it (whole seconds, at least one).
fn yaml_duration(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

/// Blue-green for every changed service, promoted automatically, gated after
/// the switch on the gateway's error rate: three measurements `interval`
/// apart, failed by one at or above 5%.
fn specs(changed: &[String], interval: Duration) -> String {
    let mut out = format!(
        "apiVersion: bulkhead.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: lab-error-rate}}\nspec:\n  metrics:\n    - name: error-rate\n      interval: {}\n      count: 3\n      successCondition: result < 0.05\n      failureLimit: 0\n      provider: {{gateway: {{metric: error-rate}}}}\n",
        yaml_duration(interval)
    );
    for service in changed {
        let _ = write!(
            out,
            "---\napiVersion: bulkhead.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {service}}}\nspec:\n  service: {service}\n  strategy:\n    blueGreen:\n      autoPromotionEnabled: true\n      scaleDownDelaySeconds: 0\n      postPromotionAnalysis: {{templates: [{{templateName: lab-error-rate}}]}}\n"
        );
    }
    out
}

/// The green versions of the change set, started by the lab's supervisor
/// (so `lab down` stops them too), and the selectors the gateway applied
/// before: dropping it puts those selectors back and asks the supervisor to
/// stop the greens, whatever happened.
struct Greens {
    dir: PathBuf,
    admin: String,
    /// The selector of each changed service before the rollout.
    selectors: BTreeMap<String, Value>,
    /// (service, address, pid) of each green.
    started: Vec<(String, String, u32)>,
}

impl Greens {
    fn new(lab: &Lab, changed: &[String]) -> Result<Greens, ScenarioError> {
        let selectors = live::selectors(lab)?
            .into_iter()
            .filter(|(s, _)| changed.contains(s))
            .collect();
        Ok(Greens {
            dir: lab.dir.clone(),
            admin: lab.address("gateway_admin")?,
            selectors,
            started: Vec::new(),
        })
    }

    /// Has the supervisor start `service`'s green, which joins its pool at
    /// the gateway (the selector still names the version live now), and
    /// waits until it answers its health check.
    fn start(&mut self, lab: &Lab, service: &str, error_rate: f64) -> Result<(), ScenarioError> {
        let name = format!("{service}@{GREEN}");
        up::ask(
            &self.dir,
            &format!("ten-services-{service}"),
            &json!({"start": {"service": service, "version": GREEN, "error_rate": error_rate}}),
            SETTLE,
        )?;
        // Recorded before the wait, so that a green that never gets healthy is stopped too.
        self.started.push((service.to_string(), String::new(), 0));
        let process = live::wait_healthy(lab, &name)?;
        if let Some(last) = self.started.last_mut() {
            last.1 = process["addr"].as_str().unwrap_or_default().to_string();
            last.2 = process["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or_default();
        }
        Ok(())
    }

    /// Puts the selectors back, then stops the greens; says what went wrong, if anything.
    fn stop(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        for (service, selector) in std::mem::take(&mut self.selectors) {
            let put = live::http(
                "PUT",
                &format!("{}/services/{service}/selector", self.admin),
                &[("Content-Type", "application/json".into())],
                selector.to_string().as_bytes(),
                Duration::from_secs(5),
            );
            match put {
                Ok(r) if r.status == 200 => {}
                Ok(r) => problems.push(format!(
                    "{service}'s selector {selector}: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                )),
                Err(e) => problems.push(format!("{service}'s selector {selector}: {e}")),
            }
        }
        for (service, _, _) in std::mem::take(&mut self.started) {
            let stopped = up::ask(
                &self.dir,
                &format!("ten-services-stop-{service}"),
                &json!({"stop": format!("{service}@{GREEN}")}),
                SETTLE,
            );
            if let Err(e) = stopped {
                problems.push(format!("stopping {service}@{GREEN}: {e}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

impl Drop for Greens {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// GET requests on `route` at [`EXTRA_RATE`] until `stop`; returns how many were sent.
fn extra_load(ingress: &str, route: &str, stop: &AtomicBool) -> u64 {
    let interval = Duration::from_secs_f64(1.0 / EXTRA_RATE);
    let mut sent = 0;
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let _ = live::get(&format!("{ingress}{route}"), Duration::from_secs(10));
        sent += 1;
        if let Some(rest) = interval.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    sent
}

/// One look at the gateway: its 5xx count over every service and whether the
/// faulty service's selector named the green.
#[derive(Debug, Clone)]
struct Sample {
    errors: u64,
    faulty_green: bool,
}

/// Samples the gateway every 100 ms until `stop`: routing first, counters second,
/// so an error counted in a sample happened before its routing was read... or
/// during the next one's, which `attribute` takes into account.
fn monitor(admin: &str, faulty: &str, stop: &AtomicBool) -> Vec<Sample> {
    let mut samples = Vec::new();
    loop {
        let done = stop.load(Ordering::SeqCst);
        let green = live::get(&format!("{admin}/state"), Duration::from_secs(5))
            .ok()
            .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .map(|state| {
                state["services"][faulty]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|pool| {
                        pool["selector"]
                            .as_str()
                            .is_some_and(|s| s.contains(&format!("version={GREEN}")))
                    })
            });
        let counts = live::get(&format!("{admin}/metrics"), Duration::from_secs(5))
            .ok()
            .map(|r| Counts::parse(&String::from_utf8_lossy(&r.body)));
        if let (Some(faulty_green), Some(counts)) = (green, counts) {
            samples.push(Sample {
                errors: counts.0.values().map(|(_, e)| e).sum(),
                faulty_green,
            });
        }
        if done {
            return samples;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 5xx counted between samples while the faulty green was selected at either
/// end of the interval, and the 5xx counted otherwise.
fn attribute(samples: &[Sample]) -> (u64, u64) {
    let mut live = 0;
    let mut otherwise = 0;
    for pair in samples.windows(2) {
        let delta = pair[1].errors.saturating_sub(pair[0].errors);
        if pair[0].faulty_green || pair[1].faulty_green {
            live += delta;
        } else {
            otherwise += delta;
        }
    }
    (live, otherwise)
}

/// A service's phase in `rollout status --json`.
fn phase(status: &Value, service: &str) -> String {
    status["rollout"]["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["service"] == service)
        .and_then(|s| s["phase"].as_str())
        .unwrap_or("unknown")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_count_while_the_faulty_green_was_selected_at_either_end() {
        let s = |errors, faulty_green| Sample {
            errors,
            faulty_green,
        };
        let samples = [
            s(0, false),
            s(0, false),
            s(2, true),
            s(5, true),
            s(6, false),
            s(6, false),
        ];
        assert_eq!(attribute(&samples), (6, 0));
        assert_eq!(attribute(&[s(1, false), s(3, false)]), (0, 2));
    }

    #[test]
    fn specs_gate_every_changed_service_on_the_gateway_error_rate() {
        let text = specs(&["a".into()], Duration::from_millis(500));
        assert!(text.contains("interval: 1s\n"), "{text}");
        assert!(text.contains("metadata: {name: a}\n"), "{text}");
        assert!(text.contains("templateName: lab-error-rate"), "{text}");
    }
}
