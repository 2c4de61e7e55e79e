//! The run's state machine: plan + observed events in, next actions out.
//!
//! Sans-IO: it never runs a command. An executor asks [`Run::next_actions`],
//! records `Started` *before* acting, acts, then records `Succeeded` or
//! `Failed`. The state is a fold over the recorded events, so a killed run
//! is rebuilt with [`Run::replay`]; steps that were started but never
//! finished are listed by [`Run::interrupted`], and the executor records an
//! `Interrupted` event for each. Every step is safe to repeat except the
//! upgrade: an interrupted upgrade is treated as failed and rolled back,
//! never guessed at.
//!
//! Per host:
//!
//! ```text
//! Waiting -> (window closed) Deferred
//!         -> Precheck -> RecordState -> SaveDebs -> [Snapshot] -> Upgrade -> HealthCheck -> Patched
//! failure before Upgrade:              Aborted (nothing changed)
//! Upgrade / HealthCheck failed:        Downgrade -> Verify -> RolledBack
//! Downgrade or Verify failed:          RestoreSnapshot -> Verify | RollbackPendingReboot
//! no way left:                         NeedsAttention
//! ```
//!
//! Batches run in order; a batch starts when every host of the earlier
//! batches is finished. When more than `max_fail_percent` of a finished
//! batch's attempted hosts failed, later batches are skipped.

use crate::packages::{InstalledPackage, PackageChange, RebootNeed};
use crate::plan::{PatchPlan, window_status};
use crate::time::Timestamp;
use crate::window::WindowStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One thing the executor does to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `dpkg --audit` is clean and no process holds the dpkg lock.
    Precheck,
    /// Refresh the package lists, record `dpkg-query` and what the upgrade would change.
    RecordState,
    /// Save the `.deb` of every package version about to change or go.
    SaveDebs,
    Snapshot,
    /// Non-interactive `dist-upgrade`.
    Upgrade,
    HealthCheck,
    /// Reinstall the recorded versions from the saved `.deb`s, purge new packages.
    Downgrade,
    RestoreSnapshot,
    /// `dpkg-query` equals the recorded state and `dpkg --audit` is clean.
    Verify,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Precheck => "precheck",
            Step::RecordState => "record-state",
            Step::SaveDebs => "save-debs",
            Step::Snapshot => "snapshot",
            Step::Upgrade => "upgrade",
            Step::HealthCheck => "health-check",
            Step::Downgrade => "downgrade",
            Step::RestoreSnapshot => "restore-snapshot",
            Step::Verify => "verify",
        }
    }
    pub fn is_rollback(self) -> bool {
        matches!(self, Step::Downgrade | Step::RestoreSnapshot | Step::Verify)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a saved `.deb` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DebSource {
    /// apt's own cache (`/var/cache/apt/archives`).
    Cache,
    /// `apt-get download` from a configured repository that still has the version.
    Repository,
    /// Rebuilt from the installed files, like dpkg-repack.
    Repacked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDeb {
    pub name: String,
    pub arch: String,
    pub version: String,
    /// Path on the host.
    pub file: String,
    pub source: DebSource,
}

/// When a restored snapshot is what the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effective {
    Now,
    /// Disk-level restores (qcow2, LVM merge, btrfs root) need the host rebooted.
    AtNextBoot,
}

/// What a step found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StepOutput {
    Nothing,
    /// A human-readable note (precheck and health-check details).
    Note {
        text: String,
    },
    State {
        packages: Vec<InstalledPackage>,
        changes: Vec<PackageChange>,
    },
    Debs {
        debs: Vec<SavedDeb>,
    },
    Snapshot {
        id: String,
    },
    Upgraded {
        changes: Vec<PackageChange>,
        reboot: RebootNeed,
    },
    Restored {
        effective: Effective,
    },
}

/// What happened, as recorded in the state database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    Deferred {
        host: String,
        reason: String,
    },
    Started {
        host: String,
        step: Step,
    },
    Succeeded {
        host: String,
        step: Step,
        output: StepOutput,
    },
    Failed {
        host: String,
        step: Step,
        reason: String,
    },
    /// The process died between `Started` and the step's outcome.
    Interrupted {
        host: String,
        step: Step,
    },
    /// `bulkhead patch rollback HOST`.
    RollbackRequested {
        host: String,
        reason: String,
    },
}

impl Event {
    pub fn host(&self) -> &str {
        match self {
            Event::Deferred { host, .. }
            | Event::Started { host, .. }
            | Event::Succeeded { host, .. }
            | Event::Failed { host, .. }
            | Event::Interrupted { host, .. }
            | Event::RollbackRequested { host, .. } => host,
        }
    }
}

/// What the executor should do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Record that the host is skipped for now (window closed).
    Defer { host: String, reason: String },
    /// Record `Started`, perform the step, record its outcome.
    Perform { host: String, step: Step },
}

/// Where a host is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum HostState {
    Waiting,
    Deferred {
        reason: String,
    },
    /// `next` is the step to perform (or being performed).
    Active {
        next: Step,
    },
    Patched,
    /// Failed before anything changed.
    Aborted {
        reason: String,
    },
    /// Failed, rolled back, and verified equal to the recorded state.
    RolledBack {
        reason: String,
    },
    /// Failed; a disk snapshot was restored that applies at the next boot.
    RollbackPendingReboot {
        reason: String,
    },
    /// Failed and could not be rolled back: a person must look.
    NeedsAttention {
        reason: String,
    },
    /// Not attempted: an earlier batch exceeded the failure threshold.
    Skipped {
        reason: String,
    },
}

impl HostState {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, HostState::Waiting | HostState::Active { .. })
    }
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            HostState::Aborted { .. }
                | HostState::RolledBack { .. }
                | HostState::RollbackPendingReboot { .. }
                | HostState::NeedsAttention { .. }
        )
    }
    pub fn label(&self) -> &'static str {
        match self {
            HostState::Waiting => "waiting",
            HostState::Deferred { .. } => "deferred",
            HostState::Active { .. } => "in progress",
            HostState::Patched => "patched",
            HostState::Aborted { .. } => "aborted",
            HostState::RolledBack { .. } => "rolled back",
            HostState::RollbackPendingReboot { .. } => "rolled back (at next boot)",
            HostState::NeedsAttention { .. } => "needs attention",
            HostState::Skipped { .. } => "skipped",
        }
    }
    pub fn reason(&self) -> Option<&str> {
        match self {
            HostState::Deferred { reason }
            | HostState::Aborted { reason }
            | HostState::RolledBack { reason }
            | HostState::RollbackPendingReboot { reason }
            | HostState::NeedsAttention { reason }
            | HostState::Skipped { reason } => Some(reason),
            _ => None,
        }
    }
}

/// One host's progress and what its steps found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRun {
    pub state: HostState,
    pub in_flight: Option<Step>,
    /// `dpkg-query` before the upgrade: what a rollback restores.
    pub before: Option<Vec<InstalledPackage>>,
    pub planned_changes: Vec<PackageChange>,
    /// `None` until saved, or when saving failed.
    pub debs: Option<Vec<SavedDeb>>,
    pub snapshot: Option<String>,
    pub upgraded: Option<Vec<PackageChange>>,
    pub reboot: Option<RebootNeed>,
    /// Why the host is being (or was) rolled back.
    pub failure: Option<String>,
    pub last_restore: Option<Step>,
}

impl HostRun {
    fn new() -> HostRun {
        HostRun {
            state: HostState::Waiting,
            in_flight: None,
            before: None,
            planned_changes: Vec::new(),
            debs: None,
            snapshot: None,
            upgraded: None,
            reboot: None,
            failure: None,
            last_restore: None,
        }
    }
}

/// An event that does not fit the run: the database and the machine disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MachineError {
    #[error("event for host {0}, which is not in the run")]
    UnknownHost(String),
    #[error("host {host}: {event} does not fit state {state}")]
    Unexpected {
        host: String,
        event: String,
        state: String,
    },
    #[error("host {host}: nothing to roll back ({why})")]
    NothingToRollBack { host: String, why: String },
}

/// The threshold was exceeded in `batch` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    pub batch: usize,
    pub failed: usize,
    pub attempted: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Steps remain (or were interrupted).
    InProgress,
    /// Every host patched, deferred, or already up to date.
    Succeeded,
    /// Finished, with failed hosts within the threshold.
    Failed,
    /// A batch exceeded the threshold; later batches were skipped.
    Halted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    plan: PatchPlan,
    hosts: BTreeMap<String, HostRun>,
}

impl Run {
    pub fn new(plan: PatchPlan) -> Run {
        let hosts = plan
            .hosts
            .iter()
            .map(|h| (h.spec.name.clone(), HostRun::new()))
            .collect();
        Run { plan, hosts }
    }

    /// Rebuilds a run from its recorded events.
    ///
    /// # Errors
    ///
    /// When an event does not fit (see [`Run::apply`]).
    pub fn replay<'a>(
        plan: PatchPlan,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Run, MachineError> {
        let mut run = Run::new(plan);
        for e in events {
            run.apply(e)?;
        }
        Ok(run)
    }

    pub fn plan(&self) -> &PatchPlan {
        &self.plan
    }

    pub fn host(&self, name: &str) -> Option<&HostRun> {
        self.hosts.get(name)
    }

    /// The host's state, with `Skipped` for hosts behind a halted batch.
    pub fn host_state(&self, name: &str) -> Option<HostState> {
        let h = self.hosts.get(name)?;
        if h.state == HostState::Waiting
            && let Some(halt) = self.halt()
            && self.batch_of(name).is_some_and(|b| b > halt.batch)
        {
            return Some(HostState::Skipped {
                reason: format!(
                    "batch {} failed on {} of {} host(s), over the {}% threshold",
                    halt.batch + 1,
                    halt.failed,
                    halt.attempted,
                    self.plan.max_fail_percent
                ),
            });
        }
        Some(h.state.clone())
    }

    fn batch_of(&self, name: &str) -> Option<usize> {
        self.plan
            .batches
            .iter()
            .position(|b| b.iter().any(|h| h == name))
    }

    fn batch_finished(&self, batch: &[String]) -> bool {
        batch.iter().all(|h| {
            self.hosts
                .get(h)
                .is_some_and(|r| r.state.is_terminal() && r.in_flight.is_none())
        })
    }

    /// The first finished batch whose failures exceed the threshold.
    pub fn halt(&self) -> Option<Halt> {
        for (i, batch) in self.plan.batches.iter().enumerate() {
            if !self.batch_finished(batch) {
                return None;
            }
            let states: Vec<&HostState> = batch
                .iter()
                .filter_map(|h| self.hosts.get(h))
                .map(|r| &r.state)
                .collect();
            let attempted = states
                .iter()
                .filter(|s| !matches!(s, HostState::Deferred { .. }))
                .count();
            let failed = states.iter().filter(|s| s.is_failure()).count();
            if failed * 100 > self.plan.max_fail_percent as usize * attempted {
                return Some(Halt {
                    batch: i,
                    failed,
                    attempted,
                });
            }
        }
        None
    }

    /// The batch whose waiting hosts may start: every earlier batch finished, no halt.
    pub fn current_batch(&self) -> Option<usize> {
        if self.halt().is_some() {
            return None;
        }
        for (i, batch) in self.plan.batches.iter().enumerate() {
            if !self.batch_finished(batch) {
                return Some(i);
            }
        }
        None
    }

    /// Steps interrupted by a crash: started, never finished.
    pub fn interrupted(&self) -> Vec<(String, Step)> {
        self.hosts
            .iter()
            .filter_map(|(n, h)| h.in_flight.map(|s| (n.clone(), s)))
            .collect()
    }

    /// What to do now. Hosts with a step in flight get nothing until it is recorded.
    pub fn next_actions(&self, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        for (name, h) in &self.hosts {
            if let (HostState::Active { next }, None) = (&h.state, h.in_flight) {
                out.push(Action::Perform {
                    host: name.clone(),
                    step: *next,
                });
            }
        }
        let Some(b) = self.current_batch() else {
            return out;
        };
        for name in &self.plan.batches[b] {
            if self
                .hosts
                .get(name)
                .is_none_or(|h| h.state != HostState::Waiting)
            {
                continue;
            }
            let Some(planned) = self.plan.host(name) else {
                continue;
            };
            let status = window_status(
                &planned.spec,
                planned.zone.as_ref(),
                now,
                self.plan.ignore_window,
            );
            if status.allows_patching() {
                out.push(Action::Perform {
                    host: name.clone(),
                    step: Step::Precheck,
                });
            } else {
                let reason = match status {
                    WindowStatus::Closed { opens: Some(t) } => {
                        let offset = planned.zone.as_ref().map_or(0, |z| z.offset_at(t));
                        format!(
                            "outside the maintenance window; it opens {}",
                            t.to_rfc3339_with_offset(offset)
                        )
                    }
                    WindowStatus::Closed { opens: None } => {
                        "the maintenance window lists no days".into()
                    }
                    WindowStatus::UnknownZone { zone } => format!("unknown time zone {zone:?}"),
                    _ => "window closed".into(),
                };
                out.push(Action::Defer {
                    host: name.clone(),
                    reason,
                });
            }
        }
        out
    }

    pub fn outcome(&self) -> RunOutcome {
        if self
            .hosts
            .values()
            .any(|h| h.in_flight.is_some() || matches!(h.state, HostState::Active { .. }))
        {
            return RunOutcome::InProgress;
        }
        if self.hosts.values().any(|h| h.state == HostState::Waiting) {
            // Waiting hosts behind a halted batch are skipped, not pending.
            return if self.halt().is_some() {
                RunOutcome::Halted
            } else {
                RunOutcome::InProgress
            };
        }
        if self.hosts.values().any(|h| h.state.is_failure()) {
            RunOutcome::Failed
        } else {
            RunOutcome::Succeeded
        }
    }

    /// Applies one recorded event.
    ///
    /// # Errors
    ///
    /// When the event names an unknown host or does not fit its state (an
    /// outcome for a step not in flight, a second start...).
    pub fn apply(&mut self, event: &Event) -> Result<(), MachineError> {
        let name = event.host().to_string();
        let has_snapshot_spec = self
            .plan
            .host(&name)
            .ok_or_else(|| MachineError::UnknownHost(name.clone()))?
            .spec
            .snapshot
            .is_some();
        let h = self
            .hosts
            .get_mut(&name)
            .ok_or_else(|| MachineError::UnknownHost(name.clone()))?;
        let unexpected = |h: &HostRun| MachineError::Unexpected {
            host: name.clone(),
            event: format!("{event:?}"),
            state: format!("{:?} (in flight: {:?})", h.state, h.in_flight),
        };
        match event {
            Event::Deferred { reason, .. } => {
                if h.state != HostState::Waiting {
                    return Err(unexpected(h));
                }
                h.state = HostState::Deferred {
                    reason: reason.clone(),
                };
            }
            Event::Started { step, .. } => {
                let fits = h.in_flight.is_none()
                    && match &h.state {
                        HostState::Waiting => *step == Step::Precheck,
                        HostState::Active { next } => next == step,
                        _ => false,
                    };
                if !fits {
                    return Err(unexpected(h));
                }
                h.state = HostState::Active { next: *step };
                h.in_flight = Some(*step);
            }
            Event::Interrupted { step, .. } => {
                if h.in_flight != Some(*step) {
                    return Err(unexpected(h));
                }
                h.in_flight = None;
                if *step == Step::Upgrade {
                    h.failure = Some("the run was interrupted during the upgrade".into());
                    h.state = start_rollback(h);
                }
            }
            Event::Succeeded { step, output, .. } => {
                if h.in_flight != Some(*step) {
                    return Err(unexpected(h));
                }
                h.in_flight = None;
                h.state = match (step, output) {
                    (Step::Precheck, _) => HostState::Active {
                        next: Step::RecordState,
                    },
                    (Step::RecordState, StepOutput::State { packages, changes }) => {
                        h.before = Some(packages.clone());
                        h.planned_changes = changes.clone();
                        if changes.is_empty() {
                            h.upgraded = Some(Vec::new());
                            HostState::Patched
                        } else {
                            HostState::Active {
                                next: Step::SaveDebs,
                            }
                        }
                    }
                    (Step::SaveDebs, StepOutput::Debs { debs }) => {
                        h.debs = Some(debs.clone());
                        HostState::Active {
                            next: if has_snapshot_spec {
                                Step::Snapshot
                            } else {
                                Step::Upgrade
                            },
                        }
                    }
                    (Step::Snapshot, StepOutput::Snapshot { id }) => {
                        h.snapshot = Some(id.clone());
                        HostState::Active {
                            next: Step::Upgrade,
                        }
                    }
                    (Step::Upgrade, StepOutput::Upgraded { changes, reboot }) => {
                        h.upgraded = Some(changes.clone());
                        h.reboot = Some(reboot.clone());
                        HostState::Active {
                            next: Step::HealthCheck,
                        }
                    }
                    (Step::HealthCheck, _) => HostState::Patched,
                    (Step::Downgrade, _) => {
                        h.last_restore = Some(Step::Downgrade);
                        HostState::Active { next: Step::Verify }
                    }
                    (Step::RestoreSnapshot, StepOutput::Restored { effective }) => {
                        h.last_restore = Some(Step::RestoreSnapshot);
                        match effective {
                            Effective::Now => HostState::Active { next: Step::Verify },
                            Effective::AtNextBoot => HostState::RollbackPendingReboot {
                                reason: failure_text(h),
                            },
                        }
                    }
                    (Step::Verify, _) => HostState::RolledBack {
                        reason: failure_text(h),
                    },
                    _ => {
                        h.in_flight = Some(*step);
                        return Err(unexpected(h));
                    }
                };
            }
            Event::Failed { step, reason, .. } => {
                if h.in_flight != Some(*step) {
                    return Err(unexpected(h));
                }
                h.in_flight = None;
                let failed = format!("{step} failed: {reason}");
                h.state = match step {
                    Step::Precheck | Step::RecordState | Step::Snapshot => {
                        HostState::Aborted { reason: failed }
                    }
                    Step::SaveDebs if has_snapshot_spec => HostState::Active {
                        next: Step::Snapshot,
                    },
                    Step::SaveDebs => HostState::Aborted {
                        reason: format!(
                            "{failed}; no snapshot configured, so no way back: not upgraded"
                        ),
                    },
                    Step::Upgrade | Step::HealthCheck => {
                        h.failure = Some(failed);
                        start_rollback(h)
                    }
                    Step::Downgrade | Step::Verify => {
                        if h.snapshot.is_some() && h.last_restore != Some(Step::RestoreSnapshot) {
                            HostState::Active {
                                next: Step::RestoreSnapshot,
                            }
                        } else {
                            HostState::NeedsAttention {
                                reason: format!("{}; then {failed}", failure_text(h)),
                            }
                        }
                    }
                    Step::RestoreSnapshot => HostState::NeedsAttention {
                        reason: format!("{}; then {failed}", failure_text(h)),
                    },
                };
            }
            Event::RollbackRequested { reason, .. } => {
                if h.in_flight.is_some() || h.before.is_none() {
                    return Err(MachineError::NothingToRollBack {
                        host: name.clone(),
                        why: if h.in_flight.is_some() {
                            "a step is in flight".into()
                        } else {
                            format!(
                                "its package state was never recorded (state: {})",
                                h.state.label()
                            )
                        },
                    });
                }
                h.failure = Some(reason.clone());
                h.last_restore = None;
                h.state = start_rollback(h);
                if let HostState::NeedsAttention { reason } = &h.state {
                    return Err(MachineError::NothingToRollBack {
                        host: name.clone(),
                        why: reason.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn failure_text(h: &HostRun) -> String {
    h.failure.clone().unwrap_or_else(|| "failed".into())
}

fn start_rollback(h: &HostRun) -> HostState {
    if h.debs.is_some() {
        HostState::Active {
            next: Step::Downgrade,
        }
    } else if h.snapshot.is_some() {
        HostState::Active {
            next: Step::RestoreSnapshot,
        }
    } else {
        HostState::NeedsAttention {
            reason: format!(
                "{}; no saved .debs and no snapshot to roll back with",
                failure_text(h)
            ),
        }
    }
}

#[cfg(test)]
mod tests;
