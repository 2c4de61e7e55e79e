//! The driver: runs a rollout's state machine against an executor and the
//! metric providers, recording every transition before acting on it.
//!
//! One loop, one thread: apply queued events (each one a recorded
//! transition, then its actions), take operator events from the database
//! inbox, fire due timers, take due measurements. It returns when the
//! rollout is finished, or when nothing can move without a human (then
//! `promote`, `resume` or `abort` carry on).
//!
//! Test hooks (environment variables, for the crash tests): with
//! `BULKHEAD_ROLLOUT_TEST_KILL_AFTER_TRANSITION=N` the process sends itself
//! SIGKILL right after transition N is committed, before any of its actions;
//! with `BULKHEAD_ROLLOUT_TEST_KILL_AFTER_ACTION=N`, right after this process
//! performed its Nth routing action, before marking it done.

use crate::analysis::{AnalysisRun, Sources};
use crate::executor::{ExecError, Executor, ImageMove, WeightedPool};
use crate::state::{StateDb, StateError, Step, now_us};
use rollout::{Action, Event, Phase, Rollout, Verdict};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Kill this process right after committing transition N (test hook).
pub const KILL_AFTER_TRANSITION_ENV: &str = "BULKHEAD_ROLLOUT_TEST_KILL_AFTER_TRANSITION";
/// Kill this process right after its Nth routing action, before recording it done (test hook).
pub const KILL_AFTER_ACTION_ENV: &str = "BULKHEAD_ROLLOUT_TEST_KILL_AFTER_ACTION";

/// How often the inbox is read and the lease renewed while waiting.
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("rollout {id} is being driven by process {pid}")]
    Busy { id: i64, pid: u32 },
}

/// Why the driver returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every service is settled.
    Finished,
    /// Nothing moves until a human acts (a manual gate, an inconclusive
    /// analysis, a pause, a failed rollback).
    WaitingForHuman,
}

#[derive(Debug, Default)]
struct Hooks {
    kill_after_transition: Option<i64>,
    kill_after_action: Option<u64>,
    actions: u64,
}

impl Hooks {
    fn from_env() -> Hooks {
        let read = |name| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Hooks {
            kill_after_transition: read(KILL_AFTER_TRANSITION_ENV).map(|n: u64| n as i64),
            kill_after_action: read(KILL_AFTER_ACTION_ENV),
            actions: 0,
        }
    }
}

/// Ends this process as `kill -9` would: no destructor, no flush, no cleanup.
fn die() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-9", &std::process::id().to_string()])
        .status();
    std::process::abort()
}

/// An event waiting to be applied, with what it settles in the database.
#[derive(Debug)]
struct Queued {
    event: Event,
    inbox: Option<i64>,
    /// Action rows this event completes (a fired timer, a finished analysis).
    settles: Vec<i64>,
}

pub struct Driver<'a> {
    db: &'a mut StateDb,
    id: i64,
    rollout: Rollout,
    executor: Box<dyn Executor>,
    sources: Sources,
    /// Timer id -> (action row, deadline in microseconds).
    timers: BTreeMap<String, (i64, i64)>,
    analyses: BTreeMap<String, AnalysisRun>,
    queue: VecDeque<Queued>,
    hooks: Hooks,
    last_heartbeat_us: i64,
}

impl std::fmt::Debug for Driver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("id", &self.id)
            .field("executor", &self.executor.kind())
            .finish_non_exhaustive()
    }
}

/// A short description of an event, for progress lines.
pub fn event_name(event: &Event) -> String {
    match event {
        Event::Start => "start".into(),
        Event::TimerFired { id } => format!("timer {id} fired"),
        Event::AnalysisDone { id, verdict, .. } => format!("analysis {id} {verdict}"),
        Event::ActionFailed { action, error } => {
            format!("{} failed: {error}", action_name(action))
        }
        Event::Promote { service } => format!("promote {}", service.as_deref().unwrap_or("all")),
        Event::Pause => "pause".into(),
        Event::Resume => "resume".into(),
        Event::Abort { service } => format!("abort {}", service.as_deref().unwrap_or("all")),
        Event::Undo { service } => format!("undo {}", service.as_deref().unwrap_or("all")),
    }
}

fn labels(selector: &rollout::Selector) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A short description of an action, for progress lines.
pub fn action_name(action: &Action) -> String {
    match action {
        Action::SetSelector { service, selector } => {
            format!("{service} -> {}", labels(selector))
        }
        Action::SetWeights { service, weights } => format!(
            "{service} weights {}",
            weights
                .iter()
                .map(|(s, w)| format!("{}:{w}", labels(s)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Action::SetImage { service, from, to } => format!("{service} image {from} -> {to}"),
        Action::Analyze { id, services, .. } => {
            format!("analyse {id} on {}", services.join(","))
        }
        Action::Wait { id, seconds, .. } => format!("wait {id} {seconds}s"),
        Action::AwaitHuman { service, reason } => format!(
            "await human{}: {reason}",
            service
                .as_ref()
                .map_or(String::new(), |s| format!(" ({s})"))
        ),
    }
}

impl<'a> Driver<'a> {
    /// Loads a stored rollout to drive it. Takes the driver lease.
    ///
    /// # Errors
    /// When another live process drives it, or the state cannot be read.
    pub fn load(
        db: &'a mut StateDb,
        id: i64,
        executor: Box<dyn Executor>,
        sources: Sources,
    ) -> Result<Driver<'a>, DriverError> {
        if let Err(pid) = db.acquire(id)? {
            return Err(DriverError::Busy { id, pid });
        }
        let rollout = db.load(id)?;
        Ok(Driver {
            db,
            id,
            rollout,
            executor,
            sources,
            timers: BTreeMap::new(),
            analyses: BTreeMap::new(),
            queue: VecDeque::new(),
            hooks: Hooks::from_env(),
            last_heartbeat_us: now_us(),
        })
    }

    pub fn rollout(&self) -> &Rollout {
        &self.rollout
    }

    /// Carries on from the recorded state: performs again every action not
    /// marked done (they are idempotent), restarts pending timers from their
    /// recorded deadlines and pending analyses from scratch, and starts the
    /// rollout if it was created but never started.
    ///
    /// # Errors
    /// When the database fails.
    pub fn recover(&mut self) -> Result<(), DriverError> {
        let wanted = self.wanted();
        for row in self.db.open_actions(self.id)? {
            self.perform(row.id, row.created_us, &row.action, &wanted)?;
        }
        if !self.rollout.started {
            self.queue.push_back(Queued {
                event: Event::Start,
                inbox: None,
                settles: Vec::new(),
            });
        }
        Ok(())
    }

    /// Queues an event (from an operator) to apply next.
    pub fn push(&mut self, event: Event) {
        self.queue.push_back(Queued {
            event,
            inbox: None,
            settles: Vec::new(),
        });
    }

    /// Applies every queued event, and the events their actions cause.
    ///
    /// # Errors
    /// When the database fails; the rollout is then as last recorded.
    pub fn drain(&mut self) -> Result<(), DriverError> {
        while let Some(queued) = self.queue.pop_front() {
            self.apply(queued)?;
        }
        Ok(())
    }

    /// Runs until the rollout is finished or waits for a human.
    ///
    /// # Errors
    /// When the database fails; the rollout is then as last recorded and
    /// `resume` continues it.
    pub fn run(&mut self) -> Result<Outcome, DriverError> {
        loop {
            self.drain()?;
            if self.rollout.is_finished() {
                self.db.set_status(self.id, "finished")?;
                return Ok(Outcome::Finished);
            }
            for (entry, event) in self.db.inbox(self.id)? {
                self.queue.push_back(Queued {
                    event,
                    inbox: Some(entry),
                    settles: Vec::new(),
                });
            }
            let now = now_us();
            let fired: Vec<String> = self
                .timers
                .iter()
                .filter(|(_, (_, deadline))| *deadline <= now)
                .map(|(id, _)| id.clone())
                .collect();
            for id in fired {
                let (row, _) = self.timers.remove(&id).expect("listed");
                self.queue.push_back(Queued {
                    event: Event::TimerFired { id },
                    inbox: None,
                    settles: vec![row],
                });
            }
            let due: Vec<String> = self
                .analyses
                .iter()
                .filter(|(_, a)| a.next_due_us().is_some_and(|t| t <= now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in due {
                let run = self.analyses.get_mut(&id).expect("listed");
                if let Some((verdict, measurements)) = run.poll(&self.sources) {
                    let row = run.action;
                    self.analyses.remove(&id);
                    self.queue.push_back(Queued {
                        event: Event::AnalysisDone {
                            id,
                            verdict,
                            measurements,
                        },
                        inbox: None,
                        settles: vec![row],
                    });
                }
            }
            if !self.queue.is_empty() {
                continue;
            }
            if self.timers.is_empty() && self.analyses.is_empty() {
                self.db.set_status(self.id, "waiting")?;
                return Ok(Outcome::WaitingForHuman);
            }
            if now - self.last_heartbeat_us > 500_000 {
                self.db.heartbeat(self.id)?;
                self.last_heartbeat_us = now;
            }
            let next = self
                .timers
                .values()
                .map(|(_, d)| *d)
                .chain(self.analyses.values().filter_map(AnalysisRun::next_due_us))
                .min()
                .unwrap_or(now);
            let wait = Duration::from_micros(u64::try_from(next - now).unwrap_or(0)).min(TICK);
            std::thread::sleep(wait);
        }
    }

    /// Gives the lease up.
    ///
    /// # Errors
    /// When the database fails.
    pub fn release(self) -> Result<(), DriverError> {
        self.db.release(self.id)?;
        Ok(())
    }

    /// Ids of the timers and analyses the machine still waits for.
    fn wanted(&self) -> BTreeSet<String> {
        self.rollout
            .outstanding()
            .into_iter()
            .filter_map(|a| match a {
                Action::Wait { id, .. } | Action::Analyze { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    }

    fn apply(&mut self, queued: Queued) -> Result<(), DriverError> {
        let before = self.rollout.status();
        let actions = self.rollout.step(queued.event.clone());
        let wanted = self.wanted();
        // Timers and analyses the new state no longer waits for (an abort
        // during an analysis) are dropped and recorded as superseded.
        let mut settled: Vec<(i64, &str)> = queued.settles.iter().map(|r| (*r, "")).collect();
        let dropped_timers: Vec<String> = self
            .timers
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        for id in dropped_timers {
            let (row, _) = self.timers.remove(&id).expect("listed");
            settled.push((row, "superseded"));
        }
        let dropped_analyses: Vec<String> = self
            .analyses
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        for id in dropped_analyses {
            let run = self.analyses.remove(&id).expect("listed");
            settled.push((run.action, "superseded"));
        }
        let status = if self.rollout.is_finished() {
            "finished"
        } else {
            "running"
        };
        let (seq, rows) = self.db.record(
            self.id,
            &Step {
                event: &queued.event,
                rollout: &self.rollout,
                status,
                actions: &actions,
                inbox: queued.inbox,
                settled: &settled,
            },
        )?;
        if self.hooks.kill_after_transition == Some(seq) {
            die();
        }
        self.print_transition(seq, &queued.event, &before, &actions);
        let created = now_us();
        // The images a transition replaces (a wave's start) go as one change:
        // one commit and one sync for a GitOps repository.
        let images: Vec<(i64, &Action)> = rows
            .iter()
            .zip(&actions)
            .filter(|(_, a)| matches!(a, Action::SetImage { .. }))
            .map(|(row, a)| (*row, a))
            .collect();
        if !images.is_empty() {
            self.perform_images(&images)?;
        }
        for (row, action) in rows.iter().zip(&actions) {
            if !matches!(action, Action::SetImage { .. }) {
                self.perform(*row, created, action, &wanted)?;
            }
        }
        Ok(())
    }

    /// Replaces the images of `items` in one executor call; each row is
    /// marked done, or failed with the executor's error.
    fn perform_images(&mut self, items: &[(i64, &Action)]) -> Result<(), DriverError> {
        let moves: Vec<ImageMove> = items
            .iter()
            .filter_map(|(_, action)| match action {
                Action::SetImage { service, from, to } => Some(ImageMove {
                    service: self.route_of(service),
                    from: from.clone(),
                    to: to.clone(),
                }),
                _ => None,
            })
            .collect();
        let result = self.executor.set_images(&moves);
        for (row, action) in items {
            self.hooks.actions += 1;
            if self.hooks.kill_after_action == Some(self.hooks.actions) {
                die();
            }
            self.settle_route(
                *row,
                action,
                result.as_ref().map(|_| ()).map_err(ToString::to_string),
            )?;
        }
        Ok(())
    }

    /// Marks a routing action's row done, or failed and queues its failure.
    fn settle_route(
        &mut self,
        row: i64,
        action: &Action,
        result: Result<(), String>,
    ) -> Result<(), DriverError> {
        match result {
            Ok(()) => {
                self.db.done(row, None)?;
            }
            Err(error) => {
                eprintln!(
                    "rollout {}: {} failed: {error}",
                    self.id,
                    action_name(action)
                );
                self.db.done(row, Some(&format!("failed: {error}")))?;
                self.queue.push_back(Queued {
                    event: Event::ActionFailed {
                        action: action.clone(),
                        error,
                    },
                    inbox: None,
                    settles: Vec::new(),
                });
            }
        }
        Ok(())
    }

    fn print_transition(
        &self,
        seq: i64,
        event: &Event,
        before: &rollout::Status,
        actions: &[Action],
    ) {
        let after = self.rollout.status();
        let changes: Vec<String> = after
            .services
            .iter()
            .filter(|s| {
                before
                    .services
                    .iter()
                    .find(|b| b.service == s.service)
                    .is_none_or(|b| b.phase.name() != s.phase.name())
            })
            .map(|s| match &s.phase {
                Phase::RolledBack { reason }
                | Phase::Aborted { reason }
                | Phase::Held { because: reason }
                | Phase::NeedsAttention { reason } => {
                    format!("{} {} ({reason})", s.service, s.phase.name())
                }
                p => format!("{} {}", s.service, p.name()),
            })
            .collect();
        let mut line = format!(
            "rollout {} #{seq} wave {}/{}: {}",
            self.id,
            after.wave,
            after.waves,
            event_name(event)
        );
        if !changes.is_empty() {
            line.push_str(&format!("; {}", changes.join(", ")));
        }
        if !actions.is_empty() {
            let names: Vec<String> = actions.iter().map(action_name).collect();
            line.push_str(&format!(" -> {}", names.join("; ")));
        }
        eprintln!("{line}");
    }

    /// Performs one recorded action. Routing is done now; timers and
    /// analyses are scheduled (unless the machine no longer waits for them).
    fn perform(
        &mut self,
        row: i64,
        created_us: i64,
        action: &Action,
        wanted: &BTreeSet<String>,
    ) -> Result<(), DriverError> {
        match action {
            Action::SetSelector { .. } | Action::SetWeights { .. } => {
                let result = self.route(action);
                self.hooks.actions += 1;
                if self.hooks.kill_after_action == Some(self.hooks.actions) {
                    die();
                }
                self.settle_route(row, action, result.map_err(|e| e.to_string()))?;
            }
            Action::SetImage { .. } => self.perform_images(&[(row, action)])?,
            Action::Wait { id, seconds, .. } => {
                if wanted.contains(id) {
                    let deadline = created_us
                        + i64::try_from(seconds.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
                    self.timers.insert(id.clone(), (row, deadline));
                } else {
                    self.db.done(row, Some("superseded"))?;
                }
            }
            Action::Analyze {
                id,
                services,
                pool,
                analysis,
                ..
            } => {
                if wanted.contains(id) {
                    let label = &self.rollout.plan.options.version_label;
                    let version = pool.as_ref().and_then(|p| p.get(label).cloned());
                    let run = AnalysisRun::start(
                        id.clone(),
                        row,
                        analysis.clone(),
                        services.clone(),
                        version,
                        &self.sources,
                    );
                    self.analyses.insert(id.clone(), run);
                } else {
                    self.db.done(row, Some("superseded"))?;
                }
            }
            Action::AwaitHuman { service, reason } => {
                eprintln!(
                    "rollout {}: waiting for a human{}: {reason}",
                    self.id,
                    service
                        .as_ref()
                        .map_or(String::new(), |s| format!(" ({s})"))
                );
                self.db.done(row, None)?;
            }
        }
        Ok(())
    }

    fn route(&mut self, action: &Action) -> Result<(), ExecError> {
        match action {
            Action::SetSelector { service, selector } => {
                let route = self.route_of(service);
                self.executor.set_selector(&route, selector)
            }
            Action::SetWeights { service, weights } => {
                let route = self.route_of(service);
                self.executor
                    .set_weights(&route, &WeightedPool::of(weights))
            }
            _ => Ok(()),
        }
    }

    fn route_of(&self, service: &str) -> String {
        self.rollout
            .plan
            .service(service)
            .map_or_else(|| service.to_string(), |p| p.route.clone())
    }
}

/// How long each rollback took: from the recorded decision (the transition
/// that ordered traffic back to the stable pool) to the executor's call returning.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RollbackTime {
    pub service: String,
    /// What decided it: `analysis failed`, `abort`, `undo`, ...
    pub trigger: String,
    pub decided_us: i64,
    pub done_us: i64,
    pub millis: f64,
}

/// The stable pool of a service of the plan (empty when it is not in it).
fn plan_stable(rollout: &Rollout, service: &str) -> rollout::Selector {
    rollout
        .plan
        .service(service)
        .map(|p| p.stable.clone())
        .unwrap_or_default()
}

/// Every rollback recorded for a rollout, in order.
///
/// # Errors
/// When the database fails.
pub fn rollback_times(db: &StateDb, id: i64) -> Result<Vec<RollbackTime>, StateError> {
    let rollout = db.load(id)?;
    let transitions: BTreeMap<i64, (i64, Event)> = db
        .transitions(id)?
        .into_iter()
        .map(|t| (t.seq, (t.at_us, t.event)))
        .collect();
    let mut out = Vec::new();
    for row in db.actions(id)? {
        let (service, stable) = match &row.action {
            Action::SetSelector { service, selector } => {
                (service, selector == &plan_stable(&rollout, service))
            }
            Action::SetImage { service, to, .. } => (
                service,
                rollout
                    .plan
                    .service(service)
                    .and_then(|p| p.image.as_ref())
                    .is_some_and(|i| &i.from == to),
            ),
            _ => continue,
        };
        let (Some(done_us), None) = (row.done_us, &row.outcome) else {
            continue;
        };
        if rollout.plan.service(service).is_none() {
            continue;
        }
        let Some((at_us, event)) = transitions.get(&row.seq) else {
            continue;
        };
        let trigger = match event {
            Event::AnalysisDone { verdict, .. } if *verdict != Verdict::Successful => {
                format!("analysis {verdict}")
            }
            Event::ActionFailed { .. } => "action failed".to_string(),
            Event::Abort { .. } => "abort".to_string(),
            Event::Undo { .. } => "undo".to_string(),
            _ => continue,
        };
        if !stable {
            continue;
        }
        out.push(RollbackTime {
            service: service.clone(),
            trigger,
            decided_us: *at_us,
            done_us,
            millis: (done_us - at_us) as f64 / 1000.0,
        });
    }
    Ok(out)
}
