//! The patch runner: asks the machine what to do, records it, does it.
//!
//! Each round, every action the machine offers is recorded (`Started` or
//! `Deferred`) *before* anything is done; then the round's steps run in
//! parallel, one thread per host (hosts of a batch are patched together);
//! then their outcomes are recorded. A kill at any point leaves `Started`
//! events without outcomes, which [`execute`] turns into `Interrupted`
//! events when it resumes the run.

use crate::host::Host;
use crate::snapshot::Snapshots;
use crate::state::{StateDb, StateError};
use crate::{apt, health};
use patch::{
    Action, Event, HostRun, HostState, PackageManager, PlannedHost, Run, RunOutcome, Step,
    StepOutput, Timestamp,
};
use std::path::{Path, PathBuf};

/// How a run is executed.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// Where `runs/<id>/<host>/` work folders (apt config, saved `.deb`s) go.
    pub state_dir: &'a Path,
    /// "Now", for maintenance windows (`--now` injects it).
    pub clock: &'a dyn Fn() -> Timestamp,
    /// Only act on this host (`bulkhead patch rollback HOST`).
    pub only_host: Option<&'a str>,
    /// Test hook: once this many steps were performed, stop as if killed:
    /// the outcomes of the last round are not recorded.
    pub stop_after_steps: Option<usize>,
    /// One line per recorded event, for the user.
    pub progress: &'a (dyn Fn(&str) + Sync),
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("state_dir", &self.state_dir)
            .field("only_host", &self.only_host)
            .field("stop_after_steps", &self.stop_after_steps)
            .finish_non_exhaustive()
    }
}

/// How [`execute`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Nothing left to do now.
    Done(RunOutcome),
    /// The test hook stopped it mid-run.
    Stopped,
}

/// The work folder of a host in a run.
pub fn work_dir(state_dir: &Path, run: i64, host: &str) -> PathBuf {
    state_dir.join("runs").join(run.to_string()).join(host)
}

fn record(
    db: &StateDb,
    run_id: i64,
    run: &mut Run,
    event: Event,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), StateError> {
    run.apply(&event).map_err(|source| StateError::Replay {
        run: run_id,
        source,
    })?;
    db.append(run_id, &event)?;
    progress(&describe(&event));
    Ok(())
}

/// A line for the user about an event.
pub fn describe(event: &Event) -> String {
    match event {
        Event::Deferred { host, reason } => format!("{host}: deferred: {reason}"),
        Event::Started { host, step } => format!("{host}: {step} ..."),
        Event::Succeeded { host, step, output } => match output {
            StepOutput::Note { text } => format!("{host}: {step} ok: {text}"),
            StepOutput::State { packages, changes } => {
                format!(
                    "{host}: {step} ok: {} packages recorded, {} to change",
                    packages.len(),
                    changes.len()
                )
            }
            StepOutput::Debs { debs } => format!("{host}: {step} ok: {} .deb(s) saved", debs.len()),
            StepOutput::Snapshot { id } => format!("{host}: {step} ok: {id}"),
            StepOutput::Upgraded { changes, reboot } => {
                format!(
                    "{host}: {step} ok: {} change(s), reboot {reboot}",
                    changes.len()
                )
            }
            StepOutput::Restored { effective } => format!("{host}: {step} ok ({effective:?})"),
            StepOutput::Nothing => format!("{host}: {step} ok"),
        },
        Event::Failed { host, step, reason } => format!("{host}: {step} FAILED: {reason}"),
        Event::Interrupted { host, step } => {
            format!("{host}: {step} was interrupted (the run was killed)")
        }
        Event::RollbackRequested { host, reason } => {
            format!("{host}: rollback requested: {reason}")
        }
    }
}

/// Resumes or continues run `run_id` until the machine has nothing to do.
///
/// # Errors
///
/// A database failure, or events that do not fit the machine.
pub fn execute(
    db: &StateDb,
    run_id: i64,
    options: &Options<'_>,
) -> Result<(Run, Finish), StateError> {
    let (mut run, _) = db.load(run_id)?;
    for (host, step) in run.interrupted() {
        if options.only_host.is_none_or(|h| h == host) {
            record(
                db,
                run_id,
                &mut run,
                Event::Interrupted { host, step },
                options.progress,
            )?;
        }
    }
    let mut performed = 0usize;
    loop {
        let actions: Vec<Action> = run
            .next_actions((options.clock)())
            .into_iter()
            .filter(|a| {
                let host = match a {
                    Action::Defer { host, .. } | Action::Perform { host, .. } => host,
                };
                options.only_host.is_none_or(|h| h == host)
            })
            .collect();
        if actions.is_empty() {
            break;
        }
        let mut work = Vec::new();
        for action in actions {
            match action {
                Action::Defer { host, reason } => record(
                    db,
                    run_id,
                    &mut run,
                    Event::Deferred { host, reason },
                    options.progress,
                )?,
                Action::Perform { host, step } => {
                    record(
                        db,
                        run_id,
                        &mut run,
                        Event::Started {
                            host: host.clone(),
                            step,
                        },
                        options.progress,
                    )?;
                    work.push((host, step));
                }
            }
        }
        let allowed = options
            .stop_after_steps
            .map_or(usize::MAX, |k| k.saturating_sub(performed));
        work.truncate(allowed);
        let state_dir = options.state_dir;
        let outcomes: Vec<Event> = std::thread::scope(|s| {
            let handles: Vec<_> = work
                .iter()
                .map(|(host, step)| {
                    let planned = run.plan().host(host).expect("planned host").clone();
                    let record = run.host(host).expect("host run").clone();
                    let step = *step;
                    s.spawn(move || perform(&planned, &record, step, run_id, state_dir))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("step thread panicked"))
                .collect()
        });
        performed += work.len();
        if options.stop_after_steps.is_some_and(|k| performed >= k) {
            return Ok((run, Finish::Stopped));
        }
        for event in outcomes {
            record(db, run_id, &mut run, event, options.progress)?;
        }
    }
    let outcome = run.outcome();
    if outcome != RunOutcome::InProgress && options.only_host.is_none() {
        db.finish(run_id, outcome)?;
    }
    Ok((run, Finish::Done(outcome)))
}

/// Rolls one host of a run back: marks its interrupted step, requests the
/// rollback (unless one is already under way), and executes it.
///
/// # Errors
///
/// A database failure, or a host with nothing to roll back.
pub fn rollback_host(
    db: &StateDb,
    run_id: i64,
    host: &str,
    reason: &str,
    options: &Options<'_>,
) -> Result<HostState, StateError> {
    let (mut run, _) = db.load(run_id)?;
    if let Some((_, step)) = run.interrupted().into_iter().find(|(h, _)| h == host) {
        record(
            db,
            run_id,
            &mut run,
            Event::Interrupted {
                host: host.to_string(),
                step,
            },
            options.progress,
        )?;
    }
    let rolling_back = matches!(run.host(host).map(|h| &h.state), Some(HostState::Active { next }) if next.is_rollback());
    if !rolling_back {
        record(
            db,
            run_id,
            &mut run,
            Event::RollbackRequested {
                host: host.to_string(),
                reason: reason.to_string(),
            },
            options.progress,
        )?;
    }
    let options = Options {
        only_host: Some(host),
        ..*options
    };
    let (run, _) = execute(db, run_id, &options)?;
    Ok(run.host_state(host).expect("host in run"))
}

/// Performs one step; never panics on a host failure, it becomes a `Failed` event.
pub fn perform(
    planned: &PlannedHost,
    record: &HostRun,
    step: Step,
    run_id: i64,
    state_dir: &Path,
) -> Event {
    let spec = &planned.spec;
    let host = Host::new(spec, work_dir(state_dir, run_id, &spec.name), run_id);
    let result = if spec.package_manager == PackageManager::Dnf {
        Err("dnf hosts cannot be patched yet: only apt hosts can be patched".to_string())
    } else {
        perform_apt(&host, planned, record, step, run_id)
    };
    let name = spec.name.clone();
    match result {
        Ok(output) => Event::Succeeded {
            host: name,
            step,
            output,
        },
        Err(reason) => Event::Failed {
            host: name,
            step,
            reason,
        },
    }
}

fn perform_apt(
    host: &Host,
    planned: &PlannedHost,
    record: &HostRun,
    step: Step,
    run_id: i64,
) -> Result<StepOutput, String> {
    let spec = &planned.spec;
    let before = || {
        record
            .before
            .clone()
            .ok_or_else(|| "no recorded package state".to_string())
    };
    let snapshots = || {
        spec.snapshot
            .as_ref()
            .map(|s| Snapshots { spec: s, host })
            .ok_or_else(|| "no snapshot provider configured".to_string())
    };
    match step {
        Step::Precheck => apt::precheck(host).map(|text| StepOutput::Note { text }),
        Step::RecordState => {
            apt::refresh(host)?;
            let packages = apt::installed(host)?;
            let changes = apt::simulate(host)?;
            Ok(StepOutput::State { packages, changes })
        }
        Step::SaveDebs => {
            let dir = format!("{}/debs", host.host_work_dir);
            apt::save_debs(host, &before()?, &record.planned_changes, &dir)
                .map(|debs| StepOutput::Debs { debs })
        }
        Step::Snapshot => {
            let name = format!("bulkhead-run{run_id}-{}", spec.name);
            snapshots()?
                .create(&name)
                .map(|id| StepOutput::Snapshot { id })
        }
        Step::Upgrade => {
            apt::upgrade(host).map(|(changes, reboot)| StepOutput::Upgraded { changes, reboot })
        }
        Step::HealthCheck => {
            health::run_checks(host, &spec.health_checks).map(|text| StepOutput::Note { text })
        }
        Step::Downgrade => {
            let debs = record.debs.clone().ok_or("no saved .debs")?;
            apt::downgrade(host, &before()?, &debs).map(|text| StepOutput::Note { text })
        }
        Step::RestoreSnapshot => {
            let id = record.snapshot.clone().ok_or("no snapshot was taken")?;
            snapshots()?
                .restore(&id)
                .map(|effective| StepOutput::Restored { effective })
        }
        Step::Verify => apt::verify(host, &before()?).map(|text| StepOutput::Note { text }),
    }
}
