//! Change sets: which services move, in which waves, with which strategy,
//! analysed on which services, and what a failure holds back.
//!
//! Waves follow the dependency graph: a changed service goes after every
//! changed service it depends on, directly or through unchanged services
//! (providers first; [`PlanOptions::consumers_first`] reverses it). Changed
//! services that depend on each other in a cycle share one wave, with a note.
//! Each dependency level is split by tier, least critical first (tier 9
//! before tier 1, an unknown tier last), so a new version proves itself on
//! low-risk services before it reaches critical ones. Names break every tie,
//! so the plan is the same for the same inputs in any order.

use crate::Selector;
use crate::spec::{Specs, Strategy, UnknownTemplate};
use model::{Fleet, ImpactReport, Tier};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How to plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanOptions {
    /// Upgrade consumers before the services they call (when the new callers
    /// must be in place before a provider changes its contract).
    pub consumers_first: bool,
    /// The pod label that tells versions apart.
    pub version_label: String,
    /// The version live now.
    pub stable_version: String,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            consumers_first: false,
            version_label: "version".to_string(),
            stable_version: "blue".to_string(),
        }
    }
}

/// Why an image cannot be set on a plan's service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("{0} is not in the change set")]
    NotPlanned(String),
    #[error(
        "{service} uses the {strategy} strategy: only rolling replaces the image in place (blue-green and canary move traffic between pools that already run their versions)"
    )]
    NotRolling {
        service: String,
        strategy: &'static str,
    },
    #[error("{service} already runs {image}")]
    Unchanged { service: String, image: String },
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("no services to roll out")]
    Empty,
    #[error(transparent)]
    UnknownServices(#[from] impact::UnknownServices),
    #[error("the rollout specs have errors:\n{}", .0.iter().map(|d| format!("  {}:{}: {}", d.path, d.line.map_or("-".to_string(), |l| l.to_string()), d.message)).collect::<Vec<_>>().join("\n"))]
    InvalidSpecs(Vec<model::Diagnostic>),
    #[error(transparent)]
    UnknownTemplate(#[from] UnknownTemplate),
    #[error(
        "no target version: give one (the live version {stable} has no blue/green counterpart)"
    )]
    NoTargetVersion { stable: String },
    #[error("the target version {0} is the live version")]
    SameVersion(String),
    #[error("empty version label or version (label {label:?}, live {stable:?}, target {target:?})")]
    EmptyVersion {
        label: String,
        stable: String,
        target: String,
    },
}

/// One wave: services that move together, then a gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    /// In the order they start.
    pub services: Vec<String>,
    /// What must hold before the next wave starts.
    pub gate: String,
}

/// What the plan decided for one changed service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServicePlan {
    pub service: String,
    /// 0-based index into [`Plan::waves`].
    pub wave: usize,
    pub tier: Option<Tier>,
    pub strategy: Strategy,
    /// Where its `Rollout` document is; `None` when it has none and gets
    /// [`Strategy::default_for_unspecified`].
    pub spec: Option<model::Provenance>,
    /// The routed service whose selector or weights change: blue-green's
    /// `activeService`, otherwise the service's own name.
    pub route: String,
    /// The pool live now, such as `{version: blue}`.
    pub stable: Selector,
    /// The pool with the new version, such as `{version: green}`.
    pub candidate: Selector,
    /// The services its analyses measure: the service itself first, then its direct callers.
    pub analysis_services: Vec<String>,
    /// Changed services it depends on, directly or through unchanged services.
    pub depends_on: Vec<String>,
    /// Changed services in later waves held when this one is rolled back:
    /// those that depend on it (those it depends on, when consumers go first).
    pub holds_on_failure: Vec<String>,
    /// Every service that calls it, directly or not: its blast radius.
    pub blast_radius: Vec<String>,
    /// With the rolling strategy, the workload's image replaced in place
    /// (the Deployment's container, or the references in a GitOps
    /// repository) instead of traffic moved between pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageChange>,
}

/// A rolling update by image: `from` is what runs now (rollback puts it
/// back), `to` is the new reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageChange {
    pub from: String,
    pub to: String,
}

/// A change set ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The changed services, sorted.
    pub services: Vec<String>,
    pub to_version: String,
    pub options: PlanOptions,
    pub waves: Vec<Wave>,
    /// By service name.
    pub rollouts: BTreeMap<String, ServicePlan>,
    /// What a reviewer should know: cycles moved as one wave, rollout
    /// documents for services the fleet does not have (a misspelt name
    /// would otherwise leave its service on the default strategy).
    pub notes: Vec<String>,
    /// The change's blast radius, rollback and monitoring, with these waves as its plan.
    pub report: ImpactReport,
}

impl Plan {
    pub fn service(&self, name: &str) -> Option<&ServicePlan> {
        self.rollouts.get(name)
    }

    /// Whether `service` can roll out by image: it is in the change set and rolls.
    ///
    /// # Errors
    /// When it is not in the change set, or its strategy moves traffic between pools.
    pub fn takes_image(&self, service: &str) -> Result<(), ImageError> {
        let plan = self
            .rollouts
            .get(service)
            .ok_or_else(|| ImageError::NotPlanned(service.to_string()))?;
        if !matches!(plan.strategy, Strategy::Rolling(_)) {
            return Err(ImageError::NotRolling {
                service: service.to_string(),
                strategy: plan.strategy.name(),
            });
        }
        Ok(())
    }

    /// Makes `service`'s rolling update replace its image `from` with `to`.
    ///
    /// # Errors
    /// When the service is not in the change set, does not roll, or already runs `to`.
    pub fn set_image(&mut self, service: &str, from: &str, to: &str) -> Result<(), ImageError> {
        self.takes_image(service)?;
        let plan = self.rollouts.get_mut(service).expect("checked");
        if from == to {
            return Err(ImageError::Unchanged {
                service: service.to_string(),
                image: to.to_string(),
            });
        }
        plan.image = Some(ImageChange {
            from: from.to_string(),
            to: to.to_string(),
        });
        Ok(())
    }
}

/// Plans rolling `changed` to `to_version` (the other of blue/green when `None`).
///
/// # Errors
/// When a name is not a service of the fleet, the specs have errors, a
/// rollout names an undefined AnalysisTemplate, or the versions are unusable.
pub fn plan(
    fleet: &Fleet,
    changed: &[String],
    to_version: Option<&str>,
    specs: &Specs,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let names: BTreeSet<&str> = changed.iter().map(String::as_str).collect();
    if names.is_empty() {
        return Err(PlanError::Empty);
    }
    let sorted: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut report = impact::services(fleet, &sorted)?;
    if specs.has_errors() {
        return Err(PlanError::InvalidSpecs(
            specs
                .diagnostics
                .iter()
                .filter(|d| d.severity == model::Severity::Error)
                .cloned()
                .collect(),
        ));
    }
    let stable_version = options.stable_version.trim();
    let to_version = match to_version.map(str::trim) {
        Some(v) => v.to_string(),
        None => match stable_version {
            "blue" => "green".to_string(),
            "green" => "blue".to_string(),
            other => {
                return Err(PlanError::NoTargetVersion {
                    stable: other.to_string(),
                });
            }
        },
    };
    if options.version_label.trim().is_empty() || stable_version.is_empty() || to_version.is_empty()
    {
        return Err(PlanError::EmptyVersion {
            label: options.version_label.clone(),
            stable: stable_version.to_string(),
            target: to_version,
        });
    }
    if to_version == stable_version {
        return Err(PlanError::SameVersion(to_version));
    }

    let reach = reachability(fleet, &names);
    let (waves, mut notes) = waves(fleet, &names, &reach, options.consumers_first);
    for spec in specs.rollouts.values() {
        if fleet.service(&spec.service).is_none() {
            let close: Vec<&str> = fleet
                .services
                .iter()
                .map(|s| s.name.as_str())
                .filter(|n| n.contains(spec.service.as_str()) || spec.service.contains(n))
                .take(3)
                .collect();
            notes.push(format!(
                "{}: the rollout for {} names no service of the fleet{}",
                spec.at,
                spec.service,
                if close.is_empty() {
                    String::new()
                } else {
                    format!(" (did you mean {}?)", close.join(", "))
                }
            ));
        }
    }
    let wave_of: BTreeMap<&str, usize> = waves
        .iter()
        .enumerate()
        .flat_map(|(i, w)| w.iter().map(move |s| (*s, i)))
        .collect();
    let callers = fleet.callers();
    let label = options.version_label.trim().to_string();
    let mut rollouts = BTreeMap::new();
    for name in &names {
        let service = fleet.service(name).expect("checked by impact::services");
        let strategy = specs.strategy_for(name)?;
        let route = match &strategy {
            Strategy::BlueGreen(bg) => bg.active_service.clone(),
            _ => None,
        }
        .unwrap_or_else(|| name.to_string());
        let depends_on: Vec<String> = reach[name].iter().map(|s| s.to_string()).collect();
        let dependents: Vec<&str> = names
            .iter()
            .copied()
            .filter(|other| reach[other].contains(name))
            .collect();
        let linked: Vec<&str> = if options.consumers_first {
            reach[name].iter().copied().collect()
        } else {
            dependents
        };
        let holds_on_failure = linked
            .into_iter()
            .filter(|other| wave_of[other] > wave_of[name])
            .map(str::to_string)
            .collect();
        let mut analysis_services = vec![name.to_string()];
        analysis_services.extend(
            callers
                .get(name)
                .into_iter()
                .flatten()
                .filter(|c| *c != name)
                .map(|c| c.to_string()),
        );
        let blast_radius = fleet
            .transitive_callers(&[name])
            .into_keys()
            .map(str::to_string)
            .collect();
        rollouts.insert(
            name.to_string(),
            ServicePlan {
                service: name.to_string(),
                wave: wave_of[name],
                tier: service.tier,
                strategy,
                spec: specs.rollouts.get(*name).map(|r| r.at.clone()),
                route,
                stable: Selector::from([(label.clone(), stable_version.to_string())]),
                candidate: Selector::from([(label.clone(), to_version.clone())]),
                analysis_services,
                depends_on,
                holds_on_failure,
                blast_radius,
                image: None,
            },
        );
    }

    let waves: Vec<Wave> = waves
        .iter()
        .map(|w| Wave {
            services: w.iter().map(|s| s.to_string()).collect(),
            gate: "every service of the wave promoted (its analyses passed on it and its callers), rolled back or held".to_string(),
        })
        .collect();
    report.change = model::Change::ServiceUpgrade {
        services: sorted.clone(),
        to_version: Some(to_version.clone()),
    };
    report.plan = model::Plan {
        waves: waves
            .iter()
            .enumerate()
            .map(|(i, w)| model::Wave {
                name: format!("wave {}", i + 1),
                steps: w.services.iter().map(|s| step(&rollouts[s])).collect(),
                gate: w.gate.clone(),
            })
            .collect(),
    };
    for p in rollouts.values() {
        report.monitoring.extend(signal(p));
    }
    Ok(Plan {
        services: sorted,
        to_version,
        options: options.clone(),
        waves,
        rollouts,
        notes,
        report,
    })
}

/// The rollout's own gate on a service, as a signal to watch.
fn signal(p: &ServicePlan) -> Option<model::Signal> {
    let mut metrics = Vec::new();
    let mut add = |a: &crate::AnalysisSpec| {
        for m in &a.metrics {
            let condition = match (&m.success_condition, &m.failure_condition) {
                (Some(s), Some(f)) => format!("{s}, fails when {f}"),
                (Some(s), None) => s.to_string(),
                (None, Some(f)) => format!("fails when {f}"),
                (None, None) => "measured only".to_string(),
            };
            let line = format!("{}: {condition}", m.name);
            if !metrics.contains(&line) {
                metrics.push(line);
            }
        }
    };
    match &p.strategy {
        Strategy::BlueGreen(bg) => {
            bg.pre_promotion_analysis.iter().for_each(&mut add);
            bg.post_promotion_analysis.iter().for_each(&mut add);
        }
        Strategy::Canary(c) => c.steps.iter().for_each(|s| {
            if let crate::spec::CanaryStep::Analysis(a) = s {
                add(a);
            }
        }),
        Strategy::Rolling(r) => r.analysis.iter().for_each(&mut add),
    }
    if metrics.is_empty() {
        return None;
    }
    Some(model::Signal {
        name: format!("rollout analysis of {}", p.service),
        services: p.analysis_services.clone(),
        threshold: metrics.join("; "),
    })
}

fn selector_text(s: &Selector) -> String {
    s.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn step(p: &ServicePlan) -> model::Step {
    let (stable, candidate) = (selector_text(&p.stable), selector_text(&p.candidate));
    let analysis = if p.analysis_services.len() > 1 {
        format!(
            "analysis on {} and its callers {}",
            p.service,
            p.analysis_services[1..].join(", ")
        )
    } else {
        format!("analysis on {}", p.service)
    };
    let action = match &p.strategy {
        Strategy::BlueGreen(bg) => format!(
            "blue-green: {}switch {} to {candidate}{}; {analysis}",
            if bg.pre_promotion_analysis.is_some() {
                "analyse the preview, "
            } else {
                ""
            },
            p.route,
            if bg.auto_promotion_enabled {
                ""
            } else {
                " after `promote`"
            },
        ),
        Strategy::Canary(c) => format!(
            "canary to {candidate} in {} step(s) ({}); {analysis}",
            c.steps.len(),
            c.steps
                .iter()
                .map(|s| match s {
                    crate::spec::CanaryStep::SetWeight(w) => format!("{w}%"),
                    crate::spec::CanaryStep::Pause(Some(d)) => format!("pause {d}s"),
                    crate::spec::CanaryStep::Pause(None) => "pause for promote".to_string(),
                    crate::spec::CanaryStep::Analysis(_) => "analysis".to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Strategy::Rolling(r) => format!(
            "rolling to {candidate} in batches of {}% of traffic; {analysis}",
            r.batch_percent
        ),
    };
    let held = if p.holds_on_failure.is_empty() {
        String::new()
    } else {
        format!("; holds {}", p.holds_on_failure.join(", "))
    };
    model::Step {
        target: p.service.clone(),
        action,
        rollback: format!("switch {} back to {stable}{held}", p.route),
    }
}

/// For each changed service, the other changed services it reaches through
/// `depends_on` (through unchanged services too).
fn reachability<'a>(
    fleet: &'a Fleet,
    names: &BTreeSet<&'a str>,
) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
    let mut out = BTreeMap::new();
    for &start in names {
        let mut seen: BTreeSet<&str> = BTreeSet::from([start]);
        let mut queue = VecDeque::from([start]);
        let mut reached = BTreeSet::new();
        while let Some(n) = queue.pop_front() {
            for dep in fleet.service(n).into_iter().flat_map(|s| &s.depends_on) {
                let dep = dep.as_str();
                if seen.insert(dep) {
                    if names.contains(dep) {
                        reached.insert(dep);
                    }
                    queue.push_back(dep);
                }
            }
        }
        out.insert(start, reached);
    }
    out
}

/// The waves, as service names, and notes about cycles.
fn waves<'a>(
    fleet: &Fleet,
    names: &BTreeSet<&'a str>,
    reach: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    consumers_first: bool,
) -> (Vec<Vec<&'a str>>, Vec<String>) {
    // Services that reach each other form one component: a cycle moves as one.
    let mut component: BTreeMap<&str, usize> = BTreeMap::new();
    let mut members: Vec<Vec<&str>> = Vec::new();
    let mut notes = Vec::new();
    for &n in names {
        if component.contains_key(n) {
            continue;
        }
        let group: Vec<&str> = names
            .iter()
            .copied()
            .filter(|&m| m == n || (reach[n].contains(m) && reach[m].contains(n)))
            .collect();
        if group.len() > 1 {
            notes.push(format!(
                "{} depend on each other in a cycle; they move in one wave",
                group.join(", ")
            ));
        }
        for m in &group {
            component.insert(m, members.len());
        }
        members.push(group);
    }
    // The components a component must wait for.
    let before: Vec<BTreeSet<usize>> = members
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let mut deps = BTreeSet::new();
            for &m in group {
                for &other in names {
                    let j = component[other];
                    if j == i {
                        continue;
                    }
                    let waits = if consumers_first {
                        reach[other].contains(m)
                    } else {
                        reach[m].contains(other)
                    };
                    if waits {
                        deps.insert(j);
                    }
                }
            }
            deps
        })
        .collect();
    // Longest-path levels in topological order (Kahn). Components make the
    // graph acyclic, so every component is reached.
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); members.len()];
    let mut waiting_for: Vec<usize> = before.iter().map(BTreeSet::len).collect();
    for (i, deps) in before.iter().enumerate() {
        for &j in deps {
            after[j].push(i);
        }
    }
    let mut level: Vec<usize> = vec![0; members.len()];
    let mut ready: VecDeque<usize> = (0..members.len())
        .filter(|&i| waiting_for[i] == 0)
        .collect();
    while let Some(i) = ready.pop_front() {
        for &k in &after[i] {
            level[k] = level[k].max(level[i] + 1);
            waiting_for[k] -= 1;
            if waiting_for[k] == 0 {
                ready.push_back(k);
            }
        }
    }
    let tier_key = |group: &[&str]| {
        // The most critical member decides; an unknown tier counts as most critical.
        group
            .iter()
            .map(|n| fleet.service(n).and_then(|s| s.tier).map_or(0, |t| t.0))
            .min()
            .unwrap_or(0)
    };
    let mut keyed: BTreeMap<(usize, std::cmp::Reverse<u8>), Vec<&str>> = BTreeMap::new();
    for (i, group) in members.iter().enumerate() {
        keyed
            .entry((level[i], std::cmp::Reverse(tier_key(group))))
            .or_default()
            .extend(group.iter().copied());
    }
    let waves = keyed
        .into_values()
        .map(|mut w| {
            w.sort_unstable();
            w
        })
        .collect();
    (waves, notes)
}

#[cfg(test)]
mod tests;
