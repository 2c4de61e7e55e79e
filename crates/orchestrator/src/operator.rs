//! Operator commands (promote, pause, resume, abort, undo) delivered to a
//! rollout: to the process driving it through the database inbox, or applied
//! here when none does. `bulkhead rollout` and the console both act through it.

use crate::driver::{Driver, DriverError, Outcome};
use crate::state::{StateDb, StateError};
use crate::{ExecError, analysis::Sources};
use rollout::Event;
use std::time::{Duration, Instant};

/// How long a running driver is given to apply a delivered command.
pub const APPLY_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("rollout {id}: process {pid} started driving it meanwhile; try again")]
    Busy { id: i64, pid: u32 },
    #[error(
        "rollout {id}: the driver (process {pid}) has not applied the request within 30 s; it stays queued"
    )]
    NotApplied { id: i64, pid: u32 },
}

impl From<DriverError> for OperateError {
    fn from(e: DriverError) -> Self {
        match e {
            DriverError::State(e) => OperateError::State(e),
            DriverError::Busy { id, pid } => OperateError::Busy { id, pid },
        }
    }
}

/// Whether the command, applied with no driver running, should drive the
/// rollout on afterwards (promote and resume) rather than stop once applied.
pub fn keeps_driving(event: &Event) -> bool {
    matches!(event, Event::Promote { .. } | Event::Resume)
}

/// Hands `event` to the process driving rollout `id`, if another one does,
/// and waits until it is applied: recorded, and its routing performed (so an
/// abort's traffic is on the stable pool when this returns). `Some(pid)` when
/// that driver applied it; `None` when no driver runs or it stopped first
/// (the entry is then withdrawn, and the caller applies the command itself).
///
/// # Errors
/// The database, or a driver that does not apply it within [`APPLY_DEADLINE`].
pub fn send_to_driver(db: &StateDb, id: i64, event: &Event) -> Result<Option<u32>, OperateError> {
    let row = db.row(id)?;
    let Some(pid) = row.driver.filter(|p| *p != std::process::id()) else {
        return Ok(None);
    };
    let entry = db.send(id, event)?;
    let deadline = Instant::now() + APPLY_DEADLINE;
    loop {
        match db.taken(entry)? {
            Some(seq) if db.routed(id, seq)? => return Ok(Some(pid)),
            Some(_) => {}
            None if db.row(id)?.driver.is_none() && db.withdraw(entry)? => return Ok(None),
            None => {}
        }
        if Instant::now() > deadline {
            return Err(OperateError::NotApplied { id, pid });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Applies `event` in this process without driving on (pause, abort, undo):
/// records it, performs its routing, and marks the rollout `finished` or
/// `waiting`. Returns whether the rollout is finished.
///
/// # Errors
/// The database, the executor, or another process that took the rollout.
pub fn apply(db: &mut StateDb, id: i64, event: Event) -> Result<bool, OperateError> {
    let row = db.row(id)?;
    let (executor, sources) = crate::connect(&row.target)?;
    let mut driver = Driver::load(db, id, executor, sources)?;
    driver.recover()?;
    driver.push(event);
    let applied = driver.drain();
    let finished = driver.rollout().is_finished();
    driver.release()?;
    applied?;
    if finished {
        record_after(db, id)?;
        db.set_status(id, "finished")?;
    } else {
        db.set_status(id, "waiting")?;
    }
    Ok(finished)
}

/// Drives rollout `id` (after `event`, when given) until it is finished or
/// waits for a human; records the routing outside the change set when it finishes.
///
/// # Errors
/// The database, the executor, or another process driving the rollout.
pub fn drive(
    db: &mut StateDb,
    id: i64,
    executor: Box<dyn crate::Executor>,
    sources: Sources,
    event: Option<Event>,
) -> Result<Outcome, OperateError> {
    let mut driver = Driver::load(db, id, executor, sources)?;
    driver.recover()?;
    if let Some(event) = event {
        driver.push(event);
    }
    let outcome = driver.run();
    let finished = driver.rollout().is_finished();
    driver.release()?;
    let outcome = outcome?;
    if finished {
        record_after(db, id)?;
    }
    Ok(outcome)
}

/// Records the routing outside the change set at the end, for the comparison with the start.
///
/// # Errors
/// The database, or an executor that cannot be read.
pub fn record_after(db: &StateDb, id: i64) -> Result<(), OperateError> {
    let row = db.row(id)?;
    let (mut executor, _) = crate::connect(&row.target)?;
    let plan = db.load(id)?.plan;
    let after = crate::outside_routing(executor.as_mut(), &plan)?;
    db.save_snapshot(id, "after", &after)?;
    Ok(())
}
