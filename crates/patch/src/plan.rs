//! The patch plan: which hosts, in which windows, in which batches, with
//! which package changes and reboot needs, and the same plan as an
//! [`ImpactReport`] (`Change::HostPatch`).

use crate::batch::BatchSpec;
use crate::inventory::{HealthCheck, HostSpec, Inventory, PackageManager, SnapshotSpec};
use crate::packages::{PackageChange, RebootNeed};
use crate::time::Timestamp;
use crate::window::WindowStatus;
use crate::zone::Zone;
use model::{
    Change, Diagnostic, Evidence, Finding, ImpactReason, ImpactReport, ImpactedService, Plan, Risk,
    Rollback, Signal, Step, Wave,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which hosts, how many at a time, how many may fail, and when "now" is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Host names; with `groups`, a host named by either is selected. Both empty: every host.
    pub hosts: Vec<String>,
    pub groups: Vec<String>,
    pub batch: BatchSpec,
    /// A batch in which more than this share of the attempted hosts failed stops the run.
    pub max_fail_percent: u32,
    pub now: Timestamp,
    pub ignore_window: bool,
}

/// What a host will do, found by asking it (`apt-get --simulate`, reboot flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub changes: Vec<PackageChange>,
    pub reboot: RebootNeed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedHost {
    pub spec: HostSpec,
    /// The window's zone; `None` when its name is unknown here.
    pub zone: Option<Zone>,
    /// The window at the plan's `now`.
    pub window: WindowStatus,
    /// `Err` holds why the host could not be asked.
    pub facts: Option<Result<HostFacts, String>>,
}

impl PlannedHost {
    pub fn kernel_updates(&self) -> Vec<&PackageChange> {
        match &self.facts {
            Some(Ok(f)) => f
                .changes
                .iter()
                .filter(|c| c.is_kernel() && c.to.is_some())
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchPlan {
    pub created: Timestamp,
    pub hosts: Vec<PlannedHost>,
    pub batches: Vec<Vec<String>>,
    pub batch: BatchSpec,
    pub max_fail_percent: u32,
    pub ignore_window: bool,
    /// Inventory hosts not selected.
    pub untouched: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("no host named {0} in the inventory")]
    UnknownHost(String),
    #[error("no host is in group {0}")]
    UnknownGroup(String),
    #[error("the selection matches no host")]
    NoHosts,
    #[error("max fail percent must be 0 to 100, not {0}")]
    MaxFailPercent(u32),
}

/// The selected hosts in inventory order, and the names of the others.
///
/// # Errors
///
/// A named host or group that does not exist, or an empty selection.
pub fn select<'a>(
    inventory: &'a Inventory,
    options: &PlanOptions,
) -> Result<(Vec<&'a HostSpec>, Vec<String>), PlanError> {
    for h in &options.hosts {
        if inventory.host(h).is_none() {
            return Err(PlanError::UnknownHost(h.clone()));
        }
    }
    for g in &options.groups {
        if !inventory.hosts.iter().any(|h| h.groups.contains(g)) {
            return Err(PlanError::UnknownGroup(g.clone()));
        }
    }
    let all = options.hosts.is_empty() && options.groups.is_empty();
    let (selected, other): (Vec<&HostSpec>, Vec<&HostSpec>) =
        inventory.hosts.iter().partition(|h| {
            all || options.hosts.contains(&h.name)
                || h.groups.iter().any(|g| options.groups.contains(g))
        });
    if selected.is_empty() {
        return Err(PlanError::NoHosts);
    }
    Ok((
        selected,
        other.into_iter().map(|h| h.name.clone()).collect(),
    ))
}

/// The window of a host at `now`.
pub fn window_status(
    spec: &HostSpec,
    zone: Option<&Zone>,
    now: Timestamp,
    ignore: bool,
) -> WindowStatus {
    match (&spec.window, zone) {
        _ if ignore => WindowStatus::Ignored,
        (None, _) => WindowStatus::Anytime,
        (Some(w), None) => WindowStatus::UnknownZone {
            zone: w.timezone.clone(),
        },
        (Some(w), Some(z)) => w.status(z, now),
    }
}

/// Builds the plan. `zones` resolves a window's time zone name; `facts`
/// holds what each host said it would change (hosts missing there are "not asked").
///
/// # Errors
///
/// See [`select`]; and a max fail percent over 100.
pub fn plan(
    inventory: &Inventory,
    options: &PlanOptions,
    zones: &dyn Fn(&str) -> Option<Zone>,
    facts: &BTreeMap<String, Result<HostFacts, String>>,
) -> Result<PatchPlan, PlanError> {
    if options.max_fail_percent > 100 {
        return Err(PlanError::MaxFailPercent(options.max_fail_percent));
    }
    let (selected, untouched) = select(inventory, options)?;
    let hosts: Vec<PlannedHost> = selected
        .into_iter()
        .map(|spec| {
            let zone = spec.window.as_ref().and_then(|w| zones(&w.timezone));
            PlannedHost {
                window: window_status(spec, zone.as_ref(), options.now, options.ignore_window),
                zone,
                facts: facts.get(&spec.name).cloned(),
                spec: spec.clone(),
            }
        })
        .collect();
    let names: Vec<String> = hosts.iter().map(|h| h.spec.name.clone()).collect();
    Ok(PatchPlan {
        created: options.now,
        batches: options.batch.split(&names),
        hosts,
        batch: options.batch.clone(),
        max_fail_percent: options.max_fail_percent,
        ignore_window: options.ignore_window,
        untouched,
        diagnostics: inventory.diagnostics.clone(),
    })
}

/// Measured rollback times from earlier runs (the state database keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RollbackTiming {
    /// Median seconds from the start of the rollback to a verified package state.
    pub median_seconds: f64,
    pub samples: usize,
}

impl PatchPlan {
    pub fn host(&self, name: &str) -> Option<&PlannedHost> {
        self.hosts.iter().find(|h| h.spec.name == name)
    }

    /// The plan as the common impact report.
    pub fn to_report(&self, measured: Option<RollbackTiming>) -> ImpactReport {
        let mut packages: Vec<String> = self
            .hosts
            .iter()
            .filter_map(|h| h.facts.as_ref()?.as_ref().ok())
            .flat_map(|f| f.changes.iter().map(|c| c.name.clone()))
            .collect();
        packages.sort();
        packages.dedup();
        let mut what_breaks = Vec::new();
        let mut who = Vec::new();
        for h in &self.hosts {
            let name = &h.spec.name;
            let at = Some(h.spec.at.clone());
            let ev = |statement: String| Evidence {
                statement,
                at: at.clone(),
            };
            let kernels = h.kernel_updates();
            if !kernels.is_empty() {
                what_breaks.push(Finding {
                    subject: name.clone(),
                    risk: Risk::Risky,
                    summary: format!(
                        "kernel update ({}): the new kernel runs only after a reboot, which bulkhead does not perform",
                        kernels.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                    evidence: vec![ev("apt-get --simulate dist-upgrade".into())],
                });
            }
            match &h.facts {
                Some(Ok(f)) => {
                    what_breaks.push(Finding {
                        subject: name.clone(),
                        risk: Risk::Safe,
                        summary: format!(
                            "{} package change(s): {}; reboot {}",
                            f.changes.len(),
                            summarize(&f.changes, 6),
                            reboot_after(h)
                        ),
                        evidence: vec![ev(format!("window: {}", window_text(h)))],
                    });
                    if let RebootNeed::Required { .. } = f.reboot {
                        what_breaks.push(Finding {
                            subject: name.clone(),
                            risk: Risk::Risky,
                            summary: format!("reboot already pending: {}", f.reboot),
                            evidence: vec![ev("/var/run/reboot-required or needrestart -b".into())],
                        });
                    }
                    let removals: Vec<String> = f
                        .changes
                        .iter()
                        .filter(|c| c.to.is_none())
                        .map(ToString::to_string)
                        .collect();
                    if !removals.is_empty() {
                        what_breaks.push(Finding {
                            subject: name.clone(),
                            risk: Risk::Risky,
                            summary: format!(
                                "the upgrade removes packages: {}",
                                removals.join(", ")
                            ),
                            evidence: vec![ev("apt-get --simulate dist-upgrade".into())],
                        });
                    }
                }
                Some(Err(e)) => what_breaks.push(Finding {
                    subject: name.clone(),
                    risk: Risk::Breaking,
                    summary: format!("could not be asked what it would upgrade: {e}"),
                    evidence: vec![ev(h.spec.target())],
                }),
                None => {}
            }
            match &h.window {
                WindowStatus::Closed { opens } => what_breaks.push(Finding {
                    subject: name.clone(),
                    risk: Risk::Safe,
                    summary: match opens {
                        Some(t) => format!(
                            "outside its maintenance window; deferred until {}",
                            local_time(h, *t)
                        ),
                        None => "its maintenance window lists no days; never patched".into(),
                    },
                    evidence: vec![ev(window_text(h))],
                }),
                WindowStatus::UnknownZone { zone } => what_breaks.push(Finding {
                    subject: name.clone(),
                    risk: Risk::Breaking,
                    summary: format!("time zone {zone:?} is unknown here; the host is not patched"),
                    evidence: vec![ev(window_text(h))],
                }),
                WindowStatus::Anytime => what_breaks.push(Finding {
                    subject: name.clone(),
                    risk: Risk::Risky,
                    summary: "no maintenance window: patched whenever the run reaches it".into(),
                    evidence: vec![ev("no maintenance_window in the inventory".into())],
                }),
                _ => {}
            }
            if h.spec.package_manager == PackageManager::Dnf {
                what_breaks.push(Finding {
                    subject: name.clone(),
                    risk: Risk::Breaking,
                    summary: "dnf hosts are planned but not patched yet: the dnf executor is not implemented".into(),
                    evidence: vec![ev("package_manager: dnf".into())],
                });
            }
            if h.spec.health_checks.is_empty() {
                what_breaks.push(Finding {
                    subject: name.clone(),
                    risk: Risk::Risky,
                    summary:
                        "no health checks: a broken service is not noticed and not rolled back"
                            .into(),
                    evidence: vec![ev("no health_checks in the inventory".into())],
                });
            }
            let mut evidence = vec![ev(format!("groups: {}", h.spec.groups.join(", ")))];
            evidence.push(ev(format!("window: {}", window_text(h))));
            if let Some(Ok(f)) = &h.facts {
                evidence.push(ev(format!(
                    "{} package change(s): {}",
                    f.changes.len(),
                    summarize(&f.changes, 6)
                )));
                evidence.push(ev(format!("reboot: {}", reboot_after(h))));
            }
            who.push(ImpactedService {
                service: name.clone(),
                owner: None,
                tier: None,
                reason: ImpactReason::Changed,
                public_routes: Vec::new(),
                evidence,
            });
        }
        let snapshots: Vec<&str> = self
            .hosts
            .iter()
            .filter_map(|h| h.spec.snapshot.as_ref().map(SnapshotSpec::provider))
            .collect();
        let mut action = "downgrade each failed host to its recorded package versions from the .debs saved before the upgrade, then verify dpkg-query equals the recorded state".to_string();
        if !snapshots.is_empty() {
            action.push_str("; if that fails, restore the host's snapshot");
        }
        let rollback = Rollback {
            action,
            expected_seconds: measured.map(|m| m.median_seconds),
            measured: measured.is_some(),
            evidence: match measured {
                Some(m) => vec![Evidence {
                    statement: format!(
                        "median of {} rollback(s) recorded in the state database",
                        m.samples
                    ),
                    at: None,
                }],
                None => vec![Evidence {
                    statement: "no rollback measured yet in this state database".into(),
                    at: None,
                }],
            },
        };
        let mut monitoring = Vec::new();
        let mut checks: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
        for h in &self.hosts {
            for c in &h.spec.health_checks {
                let (name, threshold) = match c {
                    HealthCheck::Command {
                        command,
                        timeout_secs,
                    } => (
                        format!("health: {command}"),
                        format!("exit status 0 within {timeout_secs}s"),
                    ),
                    HealthCheck::Http {
                        url,
                        status,
                        timeout_secs,
                    } => (
                        format!("health: GET {url}"),
                        format!("HTTP {status} within {timeout_secs}s"),
                    ),
                };
                checks
                    .entry(name)
                    .or_insert_with(|| (Vec::new(), threshold))
                    .0
                    .push(h.spec.name.clone());
            }
        }
        for (name, (services, threshold)) in checks {
            monitoring.push(Signal {
                name,
                services,
                threshold,
            });
        }
        monitoring.push(Signal {
            name: "failed hosts per batch".into(),
            services: self.hosts.iter().map(|h| h.spec.name.clone()).collect(),
            threshold: format!(
                "<= {}% of the batch, else the run stops",
                self.max_fail_percent
            ),
        });
        monitoring.push(Signal {
            name: "dpkg state after rollback".into(),
            services: Vec::new(),
            threshold: "dpkg-query -W identical to the recorded state; dpkg --audit empty".into(),
        });
        let waves = self
            .batches
            .iter()
            .enumerate()
            .map(|(i, batch)| Wave {
                name: format!("batch {} ({} host(s))", i + 1, batch.len()),
                steps: batch
                    .iter()
                    .filter_map(|n| self.host(n))
                    .map(|h| Step {
                        target: h.spec.name.clone(),
                        action: step_action(h),
                        rollback: match &h.spec.snapshot {
                            Some(s) => format!(
                                "downgrade from saved .debs, else restore {} snapshot",
                                s.provider()
                            ),
                            None => "downgrade from saved .debs".into(),
                        },
                    })
                    .collect(),
                gate: format!(
                    "health checks pass; failed hosts <= {}% of the batch",
                    self.max_fail_percent
                ),
            })
            .collect();
        ImpactReport {
            change: Change::HostPatch {
                hosts: self.hosts.iter().map(|h| h.spec.name.clone()).collect(),
                packages,
            },
            what_breaks,
            who_is_impacted: who,
            rollback,
            monitoring,
            plan: Plan { waves },
            untouched: self.untouched.clone(),
        }
    }
}

fn summarize(changes: &[PackageChange], max: usize) -> String {
    if changes.is_empty() {
        return "up to date".into();
    }
    let mut parts: Vec<String> = changes.iter().take(max).map(ToString::to_string).collect();
    if changes.len() > max {
        parts.push(format!("and {} more", changes.len() - max));
    }
    parts.join(", ")
}

fn local_time(h: &PlannedHost, t: Timestamp) -> String {
    match &h.zone {
        Some(z) => t.to_rfc3339_with_offset(z.offset_at(t)),
        None => t.to_rfc3339(),
    }
}

fn window_text(h: &PlannedHost) -> String {
    let base = match &h.spec.window {
        Some(w) => w.to_string(),
        None => "none".into(),
    };
    let state = match &h.window {
        WindowStatus::Open { closes } => format!("open until {}", local_time(h, *closes)),
        WindowStatus::Closed { opens: Some(t) } => format!("closed, opens {}", local_time(h, *t)),
        WindowStatus::Closed { opens: None } => "closed".into(),
        WindowStatus::Anytime => "any time".into(),
        WindowStatus::Ignored => "ignored (--ignore-window)".into(),
        WindowStatus::UnknownZone { .. } => "unknown zone".into(),
    };
    format!("{base} ({state})")
}

/// "required", "likely (kernel update)", "not required", "unknown".
fn reboot_after(h: &PlannedHost) -> String {
    let Some(Ok(f)) = &h.facts else {
        return "unknown".into();
    };
    match (&f.reboot, h.kernel_updates().is_empty()) {
        (RebootNeed::Required { .. }, _) => f.reboot.to_string(),
        (_, false) => "required after the kernel update".into(),
        (RebootNeed::NotRequired, true) => "not required".into(),
        (RebootNeed::Unknown, true) => "unknown".into(),
    }
}

fn step_action(h: &PlannedHost) -> String {
    let what = match &h.facts {
        Some(Ok(f)) => summarize(&f.changes, 4),
        Some(Err(_)) => "unknown changes (host not reachable)".into(),
        None => "all pending updates".into(),
    };
    let snapshot = h
        .spec
        .snapshot
        .as_ref()
        .map(|s| format!(", {} snapshot", s.provider()))
        .unwrap_or_default();
    format!(
        "save .debs{snapshot}, dist-upgrade: {what}; window {}; reboot {}",
        window_text(h),
        reboot_after(h)
    )
}

#[cfg(test)]
mod tests;
