//! Adoption planning: which apps try a release first, and in which waves the
//! rest follow.
//!
//! Representatives are the smallest set of apps (deterministic greedy set
//! cover) that together exercise every (template file, input actually set,
//! value class, runtime) combination the fleet uses. Among apps that cover
//! as much, the planner prefers less critical ones (higher tier number; an
//! unknown tier counts as most critical), then an owner not yet represented,
//! then the name. Waves follow: representatives, then the remaining apps from
//! the least critical tier to tier 1, untiered apps last, each wave at most
//! `wave_size` apps. Apps that would break are not planned: they are blocked
//! until fixed. Each wave's gate is its pipelines passing and a soak time;
//! its rollback is re-pinning the previous version.

use crate::check::{AppCheck, FleetCheck, interface_of};
use crate::diff::{InterfaceChange, Severity};
use crate::interface::{Input, TemplateSet};
use crate::version::Releases;
use model::{
    Change, Evidence, Finding, Fleet, ImpactReason, ImpactReport, ImpactedService, Owner, Plan,
    Provenance, Risk, Rollback, Service, Signal, Step, TemplateKind, Tier, Wave,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How waves are cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Most apps in one wave after the representatives; 0 means no limit.
    pub wave_size: usize,
    /// How long each wave soaks before the next one starts. Saved plans hold
    /// it as duration text (`24h`, `2d`), the grammar of files and flags.
    #[serde(with = "duration_text")]
    pub soak: Duration,
}

/// (De)serializes a duration as `yaml`'s duration text, so saved plans stay readable.
mod duration_text {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&yaml::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        yaml::parse_duration(&text).map_err(D::Error::custom)
    }
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            wave_size: 20,
            soak: Duration::from_secs(24 * 3600),
        }
    }
}

/// One pin a wave moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedPin {
    pub kind: TemplateKind,
    pub file: String,
    /// The version as written today, restored by a rollback.
    pub from: String,
    /// Where the pin is (the CI file, relative to the fleet root).
    pub at: Provenance,
}

/// One app of a wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedApp {
    pub service: String,
    pub repo: Option<String>,
    pub owner: Option<Owner>,
    pub tier: Option<Tier>,
    pub pins: Vec<PlannedPin>,
    /// For a representative: the combinations it is the first to cover.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covers: Vec<String>,
}

/// A wave: apps bumped together, then gated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedWave {
    /// 1-based, as `bulkhead template bump --wave N` takes it.
    pub number: usize,
    pub name: String,
    pub apps: Vec<PlannedApp>,
    pub gate: String,
}

/// The adoption plan of one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptionPlan {
    pub template: String,
    pub version: String,
    pub options: PlanOptions,
    pub waves: Vec<PlannedWave>,
    /// Apps that would break: fix them before they can join a wave.
    pub blocked: Vec<AppCheck>,
    /// Apps with a pin that names no version (nothing to rewrite: pin it by hand).
    pub unpinned: Vec<String>,
    /// Apps already on the release or a newer one.
    pub already: Vec<String>,
    pub not_using: Vec<String>,
    /// Every (file, input, value class, runtime) combination in use.
    pub combinations: usize,
}

impl AdoptionPlan {
    pub fn wave(&self, number: usize) -> Option<&PlannedWave> {
        self.waves.iter().find(|w| w.number == number)
    }
}

/// Plans the adoption of the checked release.
pub fn plan(
    check: &FleetCheck,
    fleet: &Fleet,
    releases: &Releases,
    target_set: &TemplateSet,
    fleet_pins: &crate::check::TemplateSource,
    options: &PlanOptions,
) -> AdoptionPlan {
    let target = releases.by_tag(&check.version);
    let mut blocked = Vec::new();
    let mut unpinned = Vec::new();
    let mut already = Vec::new();
    let mut movable: Vec<(&AppCheck, &Service)> = Vec::new();
    for app in &check.apps {
        let Some(service) = fleet.service(&app.service) else {
            continue;
        };
        if app.breaks() {
            blocked.push(app.clone());
        } else if app.pins.iter().any(|p| p.version.is_none()) {
            unpinned.push(app.service.clone());
        } else if app.pins.iter().all(|p| {
            let on = p.release.as_deref().and_then(|t| releases.by_tag(t));
            matches!((on, target), (Some(on), Some(target)) if on.version >= target.version)
        }) {
            already.push(app.service.clone());
        } else {
            movable.push((app, service));
        }
    }

    // What each movable app exercises.
    let combos: Vec<BTreeSet<String>> = movable
        .iter()
        .map(|(_, service)| combinations(service, fleet_pins, target_set))
        .collect();
    let universe: BTreeSet<&String> = combos.iter().flatten().collect();
    let mut uncovered: BTreeSet<&String> = universe.clone();
    let mut chosen: Vec<(usize, Vec<String>)> = Vec::new();
    let mut owners: BTreeSet<Option<&Owner>> = BTreeSet::new();
    let mut taken = vec![false; movable.len()];
    while !uncovered.is_empty() {
        let best = (0..movable.len())
            .filter(|&i| !taken[i])
            .map(|i| {
                let gain = combos[i].iter().filter(|c| uncovered.contains(c)).count();
                let (app, _) = movable[i];
                let new_owner = !owners.contains(&app.owner.as_ref());
                (
                    gain,
                    tier_rank(app.tier),
                    new_owner,
                    std::cmp::Reverse(&app.service),
                    i,
                )
            })
            .max();
        let Some((gain, _, _, _, i)) = best else {
            break;
        };
        if gain == 0 {
            break;
        }
        taken[i] = true;
        owners.insert(movable[i].0.owner.as_ref());
        let covers: Vec<String> = combos[i]
            .iter()
            .filter(|c| uncovered.contains(c))
            .cloned()
            .collect();
        for c in &covers {
            uncovered.remove(c);
        }
        chosen.push((i, covers));
    }

    let planned = |i: usize, covers: Vec<String>| {
        let (app, service) = movable[i];
        PlannedApp {
            service: app.service.clone(),
            repo: app.repo.clone(),
            owner: app.owner.clone(),
            tier: app.tier,
            pins: fleet_pins
                .pins(service)
                .into_iter()
                .map(|p| PlannedPin {
                    kind: p.kind,
                    file: crate::check::pinned_file(p),
                    from: p.version.clone().unwrap_or_default(),
                    at: p.at.clone(),
                })
                .collect(),
            covers,
        }
    };
    let mut groups: Vec<(String, Vec<PlannedApp>)> = Vec::new();
    let mut representatives: Vec<PlannedApp> =
        chosen.into_iter().map(|(i, c)| planned(i, c)).collect();
    representatives.sort_by(|a, b| a.service.cmp(&b.service));
    if !representatives.is_empty() {
        groups.push(("representatives".to_string(), representatives));
    }
    let mut by_tier: BTreeMap<std::cmp::Reverse<u8>, Vec<PlannedApp>> = BTreeMap::new();
    for i in (0..movable.len()).filter(|&i| !taken[i]) {
        let tier = movable[i].0.tier.map_or(0, |t| t.0);
        by_tier
            .entry(std::cmp::Reverse(tier))
            .or_default()
            .push(planned(i, Vec::new()));
    }
    for (std::cmp::Reverse(tier), apps) in by_tier {
        let name = if tier == 0 {
            "untiered".to_string()
        } else {
            format!("tier {tier}")
        };
        let size = if options.wave_size == 0 {
            apps.len().max(1)
        } else {
            options.wave_size
        };
        let parts = apps.len().div_ceil(size);
        for (k, chunk) in apps.chunks(size).enumerate() {
            let label = if parts > 1 {
                format!("{name} ({}/{parts})", k + 1)
            } else {
                name.clone()
            };
            groups.push((label, chunk.to_vec()));
        }
    }
    let count = groups.len();
    let waves = groups
        .into_iter()
        .enumerate()
        .map(|(k, (name, apps))| {
            let number = k + 1;
            let next = if number < count {
                format!("before wave {} starts", number + 1)
            } else {
                "before the adoption is declared done".to_string()
            };
            let gate = format!(
                "the {} app pipeline(s) of this wave pass on {} and their deployments stay healthy for {} {next}",
                apps.len(),
                check.version,
                yaml::format_duration(options.soak)
            );
            PlannedWave {
                number,
                name,
                apps,
                gate,
            }
        })
        .collect();
    AdoptionPlan {
        template: check.template.clone(),
        version: check.version.clone(),
        options: options.clone(),
        waves,
        blocked,
        unpinned,
        already,
        not_using: check.not_using.clone(),
        combinations: universe.len(),
    }
}

/// Less critical first: tier 3 before tier 1; an unknown tier counts as most critical.
fn tier_rank(tier: Option<Tier>) -> u8 {
    tier.map_or(0, |t| t.0)
}

/// The (file, input, value class, runtime) combinations a service's pins exercise.
fn combinations(
    service: &Service,
    source: &crate::check::TemplateSource,
    target_set: &TemplateSet,
) -> BTreeSet<String> {
    let runtime = runtime(service);
    let mut out = BTreeSet::new();
    for pin in source.pins(service) {
        let file = crate::check::pinned_file(pin);
        let declared = interface_of(pin, target_set);
        if pin.inputs.is_empty() {
            out.insert(format!("{file} (no inputs) {runtime}"));
        }
        for (name, value) in &pin.inputs {
            let input = declared.and_then(|i| i.inputs.get(name));
            out.insert(format!(
                "{file} {name}={} {runtime}",
                value_class(input, value)
            ));
        }
    }
    out
}

/// The class of a value: the same class means the same code path in the template.
pub fn value_class(input: Option<&Input>, value: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match value {
        J::String(s) if s.contains("${{") || s.contains("$[[") || s.starts_with('$') => {
            "expression".to_string()
        }
        J::String(s) if input.is_some_and(|i| !i.options.is_empty()) => s.clone(),
        J::String(s) if s.is_empty() => "empty".to_string(),
        _ if input.and_then(|i| i.default.as_ref()) == Some(value) => "default".to_string(),
        J::String(_) => "custom".to_string(),
        J::Bool(b) => b.to_string(),
        J::Number(_) => "number".to_string(),
        J::Array(items) if items.is_empty() => "empty-list".to_string(),
        J::Array(_) => "list".to_string(),
        J::Null => "null".to_string(),
        J::Object(_) => "mapping".to_string(),
    }
}

/// The language or runtime a service builds with: its `language` input when it
/// sets one, else a language recognised in its builder or base images, else
/// the base image's name.
pub fn runtime(service: &Service) -> String {
    for pin in &service.templates {
        if let Some(serde_json::Value::String(language)) = pin.inputs.get("language") {
            return language.clone();
        }
    }
    const KNOWN: [(&str, &str); 12] = [
        ("golang", "go"),
        ("go", "go"),
        ("maven", "java"),
        ("gradle", "java"),
        ("temurin", "java"),
        ("java", "java"),
        ("jdk", "java"),
        ("python", "python"),
        ("node", "node"),
        ("rust", "rust"),
        ("dotnet", "dotnet"),
        ("ruby", "ruby"),
    ];
    let images = service.builder_images.iter().chain(&service.base_images);
    for image in images.clone() {
        let name = image.repository().to_ascii_lowercase();
        let last = name.rsplit('/').next().unwrap_or(&name);
        if let Some((_, language)) = KNOWN.iter().find(|(k, _)| last.contains(k)) {
            return (*language).to_string();
        }
    }
    images
        .map(|i| i.repository().rsplit('/').next().unwrap_or("").to_string())
        .next()
        .unwrap_or_else(|| "unknown".to_string())
}

/// The plan as the impact report every change kind produces.
///
/// `changes` are the interface changes to show under "what breaks" (the
/// binary passes the diff from the oldest release in use to the target).
pub fn impact_report(
    plan: &AdoptionPlan,
    fleet: &Fleet,
    changes: &[InterfaceChange],
    from: Option<String>,
) -> ImpactReport {
    let mut what_breaks = Vec::new();
    for change in changes.iter().filter(|c| c.severity >= Severity::Warning) {
        what_breaks.push(Finding {
            subject: format!("{} {}", change.file, change.subject),
            risk: if change.severity == Severity::Major {
                Risk::Breaking
            } else {
                Risk::Risky
            },
            summary: format!("{}: {}", change.severity, change.reason),
            evidence: change
                .at
                .iter()
                .map(|at| Evidence {
                    statement: format!("declared here in {}", plan.version),
                    at: Some(at.clone()),
                })
                .collect(),
        });
    }
    let compatible = changes
        .iter()
        .filter(|c| c.severity < Severity::Warning)
        .count();
    if compatible > 0 {
        what_breaks.push(Finding {
            subject: plan.template.clone(),
            risk: Risk::Safe,
            summary: format!("{compatible} compatible change(s) (minor or patch)"),
            evidence: Vec::new(),
        });
    }
    for app in &plan.blocked {
        let problems: Vec<&str> = app.problems.iter().map(|p| p.message.as_str()).collect();
        what_breaks.push(Finding {
            subject: app.service.clone(),
            risk: Risk::Breaking,
            summary: format!(
                "blocked from every wave until fixed: {}",
                problems.join("; ")
            ),
            evidence: app
                .problems
                .first()
                .map(|p| Evidence {
                    statement: "pinned here".to_string(),
                    at: Some(p.at.clone()),
                })
                .into_iter()
                .collect(),
        });
    }

    let mut who = Vec::new();
    let impacted = |name: &str, pins: Vec<(String, String, Provenance)>| {
        let service = fleet.service(name);
        let artefact = pins
            .iter()
            .map(|(_, from, _)| format!("{}@{from}", plan.template))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(", ");
        ImpactedService {
            service: name.to_string(),
            owner: service.and_then(|s| s.owner.clone()),
            tier: service.and_then(|s| s.tier),
            reason: ImpactReason::Uses { artefact },
            public_routes: service
                .map(|s| {
                    s.public_routes()
                        .map(|r| format!("{}{}", r.host.as_deref().unwrap_or("*"), r.path))
                        .collect()
                })
                .unwrap_or_default(),
            evidence: pins
                .into_iter()
                .map(|(file, from, at)| Evidence {
                    statement: format!("pins {file} at {from}"),
                    at: Some(at),
                })
                .collect(),
        }
    };
    for wave in &plan.waves {
        for app in &wave.apps {
            let pins = app
                .pins
                .iter()
                .map(|p| (p.file.clone(), p.from.clone(), p.at.clone()))
                .collect();
            who.push(impacted(&app.service, pins));
        }
    }
    for app in &plan.blocked {
        let pins = app
            .pins
            .iter()
            .map(|p| {
                (
                    p.file.clone(),
                    p.version.clone().unwrap_or_else(|| "unpinned".to_string()),
                    p.at.clone(),
                )
            })
            .collect();
        who.push(impacted(&app.service, pins));
    }

    let moving: Vec<String> = plan
        .waves
        .iter()
        .flat_map(|w| w.apps.iter().map(|a| a.service.clone()))
        .collect();
    let representatives: Vec<String> = plan
        .waves
        .first()
        .filter(|w| w.name == "representatives")
        .map(|w| w.apps.iter().map(|a| a.service.clone()).collect())
        .unwrap_or_default();
    let monitoring = vec![
        Signal {
            name: format!("CI pipelines on {}", plan.version),
            services: if representatives.is_empty() {
                moving.clone()
            } else {
                representatives
            },
            threshold: "every pipeline on the bump branch passes before it is merged".to_string(),
        },
        Signal {
            name: "deployments after the merge".to_string(),
            services: moving,
            threshold: format!(
                "error rate and p99 latency stay within the pre-bump baseline for {}",
                yaml::format_duration(plan.options.soak)
            ),
        },
    ];
    let waves = plan
        .waves
        .iter()
        .map(|wave| Wave {
            name: format!("wave {}: {}", wave.number, wave.name),
            steps: wave
                .apps
                .iter()
                .map(|app| Step {
                    target: app.service.clone(),
                    action: app
                        .pins
                        .iter()
                        .map(|p| {
                            format!("pin {} {} -> {} ({})", p.file, p.from, plan.version, p.at)
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                    rollback: format!(
                        "re-pin {}",
                        app.pins
                            .iter()
                            .map(|p| p.from.as_str())
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
                .collect(),
            gate: wave.gate.clone(),
        })
        .collect();
    let mut untouched: Vec<String> = plan
        .not_using
        .iter()
        .chain(&plan.already)
        .cloned()
        .collect();
    untouched.sort();
    ImpactReport {
        change: Change::TemplateRelease {
            template: plan.template.clone(),
            from,
            to: plan.version.clone(),
        },
        what_breaks,
        who_is_impacted: who,
        rollback: Rollback {
            action: format!(
                "re-pin the previous version: `bulkhead template bump {} --wave N --rollback --apply` commits each app's old pin back on a branch (one commit per repository)",
                plan.version
            ),
            expected_seconds: None,
            measured: false,
            evidence: Vec::new(),
        },
        monitoring,
        plan: Plan { waves },
        untouched,
    }
}

#[cfg(test)]
mod tests;
