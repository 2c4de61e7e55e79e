//! The rollout state machine: a [`Plan`] and observed [`Event`]s in, the next
//! [`Action`]s out.
//!
//! Sans-IO: it never routes traffic, measures or sleeps. The driver stores the
//! [`Rollout`] (it is plain JSON) before it performs the actions a step
//! returned, performs them, and feeds back what it observed. Every action is
//! idempotent, and [`Rollout::outstanding`] lists what must be (re)issued after
//! a crash, so a driver killed at any point resumes by loading the last stored
//! state and performing its outstanding actions again. Replaying an event that
//! was already applied yields no action: its timer, analysis or human gate is
//! no longer pending, so it is ignored with a note in [`Rollout::log`].
//!
//! Waves run in order; the services of a wave run side by side, each through
//! the program its strategy compiles to:
//!
//! ```text
//! blue-green: [analyse preview] -> [await promote] -> switch selector -> [analyse live] -> promoted (-> scale-down delay)
//! canary:     setWeight / pause (timer or promote) / analysis ... -> switch selector -> promoted
//! rolling:    per batch: weights -> [pause] -> [analysis] ... -> switch selector -> promoted
//! ```
//!
//! A failed (or errored) analysis, or a failed forward action, rolls that
//! service alone back to its stable pool and holds every changed service in a
//! later wave that depends on it; the others proceed. An inconclusive analysis
//! waits for a human: `promote` accepts it, `resume` measures again, `abort`
//! rolls back. A wave's gate passes when each of its services is promoted,
//! rolled back, held or aborted.

use crate::Selector;
use crate::analysis::{AnalysisSpec, Measurement, Verdict};
use crate::plan::{Plan, ServicePlan};
use crate::spec::{CanaryStep, Strategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What the driver must do. Every action is idempotent (applying it twice is
/// applying it once) and concerns one service of the plan; routing actions
/// address that service's [`crate::ServicePlan::route`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Action {
    /// All traffic to one pool: a blue-green switch, the end of a canary, or a rollback.
    SetSelector { service: String, selector: Selector },
    /// Split traffic between pools by weight (the weights sum to 100).
    SetWeights {
        service: String,
        weights: Vec<(Selector, u32)>,
    },
    /// Replace the workload's image `from` with `to` and wait until the new
    /// one runs (a rolling update by image; its rollback is the reverse).
    SetImage {
        service: String,
        from: String,
        to: String,
    },
    /// Measure `analysis` on every service of `services` (the rolled-out
    /// service first, then its callers); answer with [`Event::AnalysisDone`]
    /// carrying the same `id`. With `pool`, measure only that pool (the preview).
    Analyze {
        id: String,
        service: String,
        stage: AnalysisStage,
        services: Vec<String>,
        pool: Option<Selector>,
        analysis: AnalysisSpec,
    },
    /// Answer with [`Event::TimerFired`] carrying the same `id` after `seconds`.
    Wait {
        id: String,
        service: String,
        seconds: u64,
    },
    /// Nothing proceeds for this service (or, without one, the rollout) until a human acts.
    AwaitHuman {
        service: Option<String>,
        reason: String,
    },
}

impl Action {
    /// The service the action concerns.
    pub fn service(&self) -> Option<&str> {
        match self {
            Action::SetSelector { service, .. }
            | Action::SetWeights { service, .. }
            | Action::SetImage { service, .. }
            | Action::Analyze { service, .. }
            | Action::Wait { service, .. } => Some(service),
            Action::AwaitHuman { service, .. } => service.as_deref(),
        }
    }
}

/// Why an analysis runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnalysisStage {
    /// Blue-green, on the preview pool before the switch.
    PrePromotion,
    /// Blue-green, on live traffic after the switch.
    PostPromotion,
    /// A canary step or a rolling batch.
    Step,
}

/// What the driver observed, or what a human asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Event {
    Start,
    TimerFired {
        id: String,
    },
    AnalysisDone {
        id: String,
        verdict: Verdict,
        #[serde(default)]
        measurements: Vec<Measurement>,
    },
    /// The driver could not perform `action`.
    ActionFailed {
        action: Action,
        error: String,
    },
    /// Pass a manual gate: a promotion without `autoPromotionEnabled`, a pause
    /// without duration, an inconclusive analysis (accepted), or a running
    /// pause (skipped). Without a service: every service awaiting a human.
    Promote {
        service: Option<String>,
    },
    /// Start nothing new until `Resume`; rollbacks still happen.
    Pause,
    /// Continue after `Pause`; measure inconclusive analyses again; retry failed rollbacks.
    Resume,
    /// Roll back at once: every started service of the change set, or one.
    Abort {
        service: Option<String>,
    },
    /// Roll a promoted service back (every promoted one without a service).
    Undo {
        service: Option<String>,
    },
}

/// Where one service is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "phase")]
pub enum Phase {
    /// Its wave has not started.
    Pending,
    /// A changed service it is linked to was rolled back; it will not move.
    Held {
        because: String,
    },
    /// Moving through its strategy: step `step` (1-based) of `steps`.
    Progressing {
        step: usize,
        steps: usize,
    },
    /// An analysis is running.
    Analyzing {
        id: String,
        step: usize,
        steps: usize,
    },
    /// Waiting for a human.
    Paused {
        reason: String,
    },
    Promoted,
    RolledBack {
        reason: String,
    },
    Aborted {
        reason: String,
    },
    /// Its rollback could not be performed; `resume` retries it.
    NeedsAttention {
        reason: String,
    },
}

impl Phase {
    /// Finished for the wave's gate.
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            Phase::Held { .. } | Phase::Promoted | Phase::RolledBack { .. } | Phase::Aborted { .. }
        )
    }
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Held { .. } => "held",
            Phase::Progressing { .. } => "progressing",
            Phase::Analyzing { .. } => "analyzing",
            Phase::Paused { .. } => "paused",
            Phase::Promoted => "promoted",
            Phase::RolledBack { .. } => "rolled-back",
            Phase::Aborted { .. } => "aborted",
            Phase::NeedsAttention { .. } => "needs-attention",
        }
    }

    /// Why it is where it is: the reason a held, paused, rolled-back, aborted
    /// or stuck service carries; empty for the others.
    pub fn detail(&self) -> &str {
        match self {
            Phase::Held { because } => because,
            Phase::RolledBack { reason }
            | Phase::Aborted { reason }
            | Phase::Paused { reason }
            | Phase::NeedsAttention { reason } => reason,
            _ => "",
        }
    }
}

/// What a service's current step waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
enum Waiting {
    Nothing,
    Timer { id: String },
    Analysis { id: String },
    Human { reason: String, gate: HumanGate },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum HumanGate {
    /// A promotion or pause step: `promote` passes it.
    Step,
    /// An inconclusive analysis: `promote` accepts it, `resume` measures again.
    Inconclusive,
}

/// Where traffic of one service should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "to")]
enum Routing {
    Stable,
    Candidate,
    /// This percent on the candidate, the rest on stable.
    Weighted {
        percent: u32,
    },
}

/// The result of one analysis, kept for status and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    pub id: String,
    pub stage: AnalysisStage,
    pub verdict: Verdict,
    pub measurements: usize,
    /// Measurements that were not successful, as `metric on service: value`.
    pub findings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ServiceState {
    phase: Phase,
    /// Index of the current step of its program.
    op: usize,
    waiting: Waiting,
    routing: Routing,
    /// Whether any routing action was issued for it.
    touched: bool,
    /// The scale-down delay's timer, while the old pool is kept.
    release_timer: Option<String>,
    /// Whether the scale-down delay passed (the old pool may be gone).
    stable_released: bool,
    analyses: Vec<AnalysisRecord>,
}

/// One step of a service's program.
#[derive(Debug, Clone, PartialEq)]
enum Op<'a> {
    Route(Routing),
    Analyze(AnalysisStage, &'a AnalysisSpec),
    Wait(u64),
    AwaitPromotion(&'static str),
}

fn program(plan: &ServicePlan) -> Vec<Op<'_>> {
    let mut ops = Vec::new();
    match &plan.strategy {
        Strategy::BlueGreen(bg) => {
            if let Some(a) = &bg.pre_promotion_analysis {
                ops.push(Op::Analyze(AnalysisStage::PrePromotion, a));
            }
            if !bg.auto_promotion_enabled {
                ops.push(Op::AwaitPromotion(
                    "autoPromotionEnabled is false: promote to switch traffic",
                ));
            }
            ops.push(Op::Route(Routing::Candidate));
            if let Some(a) = &bg.post_promotion_analysis {
                ops.push(Op::Analyze(AnalysisStage::PostPromotion, a));
            }
        }
        Strategy::Canary(c) => {
            for step in &c.steps {
                match step {
                    CanaryStep::SetWeight(w) => ops.push(Op::Route(Routing::Weighted {
                        percent: (*w).min(100),
                    })),
                    CanaryStep::Pause(Some(0)) => {}
                    CanaryStep::Pause(Some(s)) => ops.push(Op::Wait(*s)),
                    CanaryStep::Pause(None) => {
                        ops.push(Op::AwaitPromotion("canary pause: promote to continue"))
                    }
                    CanaryStep::Analysis(a) => ops.push(Op::Analyze(AnalysisStage::Step, a)),
                }
            }
            ops.push(Op::Route(Routing::Candidate));
        }
        Strategy::Rolling(r) => {
            // By image, the workload's own controller paces the replacement
            // (a Deployment's maxSurge and maxUnavailable): one step.
            let batch = if plan.image.is_some() {
                100
            } else {
                r.batch_percent.clamp(1, 100)
            };
            let mut percent = 0;
            while percent < 100 {
                percent = (percent + batch).min(100);
                ops.push(Op::Route(if percent == 100 {
                    Routing::Candidate
                } else {
                    Routing::Weighted { percent }
                }));
                if r.pause_seconds > 0 {
                    ops.push(Op::Wait(r.pause_seconds));
                }
                if let Some(a) = &r.analysis {
                    ops.push(Op::Analyze(AnalysisStage::Step, a));
                }
            }
        }
    }
    ops
}

/// A change set's rollout: the plan and where every service is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub plan: Plan,
    /// 0-based index of the wave running (equals the number of waves when all passed).
    pub wave: usize,
    pub started: bool,
    /// Set by `Pause`, cleared by `Resume`.
    pub paused: bool,
    services: BTreeMap<String, ServiceState>,
    /// Numbers timers and analyses, so every id is new.
    seq: u64,
    /// What happened, and every event ignored and why, in order.
    pub log: Vec<String>,
}

/// A service's place in [`Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
    /// 1-based.
    pub wave: usize,
    pub strategy: String,
    #[serde(flatten)]
    pub phase: Phase,
    /// Percent of its traffic on the new version, as last routed.
    pub candidate_percent: u32,
    /// Whether the scale-down delay passed after promotion.
    pub stable_released: bool,
    pub analyses: Vec<AnalysisRecord>,
}

/// The rollout at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// 1-based wave running; 0 before start; `waves` once all passed.
    pub wave: usize,
    pub waves: usize,
    pub started: bool,
    pub paused: bool,
    pub done: bool,
    /// In wave order, then in the wave's order.
    pub services: Vec<ServiceStatus>,
    /// What humans are asked to do.
    pub awaiting_human: Vec<String>,
    pub promoted: usize,
    pub rolled_back: usize,
    pub held: usize,
    pub aborted: usize,
}

impl Rollout {
    pub fn new(plan: Plan) -> Self {
        let services = plan
            .rollouts
            .keys()
            .map(|name| {
                (
                    name.clone(),
                    ServiceState {
                        phase: Phase::Pending,
                        op: 0,
                        waiting: Waiting::Nothing,
                        routing: Routing::Stable,
                        touched: false,
                        release_timer: None,
                        stable_released: false,
                        analyses: Vec::new(),
                    },
                )
            })
            .collect();
        Rollout {
            plan,
            wave: 0,
            started: false,
            paused: false,
            services,
            seq: 0,
            log: Vec::new(),
        }
    }

    /// Applies one event and returns the actions to perform, in order.
    /// Deterministic and total: an event that does not apply (an unknown id,
    /// a service not awaiting it, a replay) returns no action and is noted in
    /// [`Rollout::log`].
    pub fn step(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => {
                if self.started {
                    self.note("ignored start: already started");
                } else {
                    self.started = true;
                    self.note("started");
                    self.start_wave(&mut out);
                }
            }
            Event::TimerFired { id } => self.timer_fired(&id, &mut out),
            Event::AnalysisDone {
                id,
                verdict,
                measurements,
            } => self.analysis_done(&id, verdict, &measurements, &mut out),
            Event::ActionFailed { action, error } => self.action_failed(&action, &error, &mut out),
            Event::Promote { service } => self.promote(service.as_deref(), &mut out),
            Event::Pause => {
                if self.paused || self.is_finished() {
                    self.note("ignored pause: already paused or finished");
                } else {
                    self.paused = true;
                    self.note("paused");
                }
            }
            Event::Resume => self.resume(&mut out),
            Event::Abort { service } => self.abort(service.as_deref(), &mut out),
            Event::Undo { service } => self.undo(service.as_deref(), &mut out),
        }
        self.advance_waves(&mut out);
        out
    }

    /// Whether nothing is left to do: every service settled and no scale-down delay running.
    pub fn is_finished(&self) -> bool {
        self.started
            && self
                .services
                .values()
                .all(|s| s.phase.is_settled() && s.release_timer.is_none())
    }

    /// What the driver must (re)issue to carry on from this state after a
    /// restart: the routing of every service it touched, then every timer,
    /// analysis and human gate still pending. All idempotent.
    pub fn outstanding(&self) -> Vec<Action> {
        let mut out = Vec::new();
        for (name, s) in &self.services {
            if s.touched {
                out.push(self.route_action(name, s.routing));
            }
        }
        for (name, s) in &self.services {
            let plan = &self.plan.rollouts[name];
            match &s.waiting {
                Waiting::Nothing => {}
                Waiting::Timer { id } => {
                    if let Some(Op::Wait(seconds)) = program(plan).get(s.op) {
                        out.push(Action::Wait {
                            id: id.clone(),
                            service: name.clone(),
                            seconds: *seconds,
                        });
                    }
                }
                Waiting::Analysis { id } => {
                    if let Some(Op::Analyze(stage, analysis)) = program(plan).get(s.op) {
                        out.push(self.analyze_action(id, name, *stage, analysis));
                    }
                }
                Waiting::Human { reason, .. } => out.push(Action::AwaitHuman {
                    service: Some(name.clone()),
                    reason: reason.clone(),
                }),
            }
            if let (Some(id), Strategy::BlueGreen(bg)) = (&s.release_timer, &plan.strategy) {
                out.push(Action::Wait {
                    id: id.clone(),
                    service: name.clone(),
                    seconds: bg.scale_down_delay_seconds,
                });
            }
            if let Phase::NeedsAttention { reason } = &s.phase {
                out.push(Action::AwaitHuman {
                    service: Some(name.clone()),
                    reason: reason.clone(),
                });
            }
        }
        out
    }

    pub fn status(&self) -> Status {
        let mut services = Vec::new();
        let mut awaiting_human = Vec::new();
        for (index, wave) in self.plan.waves.iter().enumerate() {
            for name in &wave.services {
                let Some(s) = self.services.get(name) else {
                    continue;
                };
                match (&s.waiting, &s.phase) {
                    (Waiting::Human { reason, .. }, _) | (_, Phase::NeedsAttention { reason }) => {
                        awaiting_human.push(format!("{name}: {reason}"));
                    }
                    _ => {}
                }
                services.push(ServiceStatus {
                    service: name.clone(),
                    wave: index + 1,
                    strategy: self.plan.rollouts[name].strategy.name().to_string(),
                    phase: s.phase.clone(),
                    candidate_percent: match s.routing {
                        Routing::Stable => 0,
                        Routing::Candidate => 100,
                        Routing::Weighted { percent } => percent,
                    },
                    stable_released: s.stable_released,
                    analyses: s.analyses.clone(),
                });
            }
        }
        if self.paused {
            awaiting_human.push("the rollout is paused: resume to continue".to_string());
        }
        let count = |f: fn(&Phase) -> bool| services.iter().filter(|s| f(&s.phase)).count();
        Status {
            wave: if self.started {
                (self.wave + 1).min(self.plan.waves.len())
            } else {
                0
            },
            waves: self.plan.waves.len(),
            started: self.started,
            paused: self.paused,
            done: self.is_finished(),
            promoted: count(|p| matches!(p, Phase::Promoted)),
            rolled_back: count(|p| matches!(p, Phase::RolledBack { .. })),
            held: count(|p| matches!(p, Phase::Held { .. })),
            aborted: count(|p| matches!(p, Phase::Aborted { .. })),
            services,
            awaiting_human,
        }
    }

    /// The phase of one service.
    pub fn phase(&self, service: &str) -> Option<&Phase> {
        self.services.get(service).map(|s| &s.phase)
    }

    fn note(&mut self, message: impl Into<String>) {
        self.log.push(message.into());
    }

    fn next_id(&mut self, service: &str, kind: &str) -> String {
        self.seq += 1;
        format!("{service}/{kind}-{}", self.seq)
    }

    fn route_action(&self, service: &str, routing: Routing) -> Action {
        let plan = &self.plan.rollouts[service];
        if let Some(image) = &plan.image {
            let (from, to) = match routing {
                Routing::Stable => (&image.to, &image.from),
                Routing::Candidate | Routing::Weighted { .. } => (&image.from, &image.to),
            };
            return Action::SetImage {
                service: service.to_string(),
                from: from.clone(),
                to: to.clone(),
            };
        }
        match routing {
            Routing::Stable => Action::SetSelector {
                service: service.to_string(),
                selector: plan.stable.clone(),
            },
            Routing::Candidate => Action::SetSelector {
                service: service.to_string(),
                selector: plan.candidate.clone(),
            },
            Routing::Weighted { percent } => Action::SetWeights {
                service: service.to_string(),
                weights: vec![
                    (plan.stable.clone(), 100 - percent),
                    (plan.candidate.clone(), percent),
                ],
            },
        }
    }

    fn analyze_action(
        &self,
        id: &str,
        service: &str,
        stage: AnalysisStage,
        analysis: &AnalysisSpec,
    ) -> Action {
        let plan = &self.plan.rollouts[service];
        Action::Analyze {
            id: id.to_string(),
            service: service.to_string(),
            stage,
            services: if stage == AnalysisStage::PrePromotion {
                // Before the switch no caller reaches the new pool.
                vec![service.to_string()]
            } else {
                plan.analysis_services.clone()
            },
            pool: (stage == AnalysisStage::PrePromotion).then(|| plan.candidate.clone()),
            analysis: analysis.clone(),
        }
    }

    /// Starts the current wave's pending services.
    fn start_wave(&mut self, out: &mut Vec<Action>) {
        let Some(wave) = self.plan.waves.get(self.wave) else {
            return;
        };
        let names = wave.services.clone();
        let startable: Vec<&str> = names
            .iter()
            .filter(|n| {
                self.services
                    .get(*n)
                    .is_some_and(|s| s.phase == Phase::Pending)
            })
            .map(String::as_str)
            .collect();
        if !startable.is_empty() {
            let message = format!("wave {} started: {}", self.wave + 1, startable.join(", "));
            self.note(message);
        }
        for name in names {
            if let Some(s) = self.services.get_mut(&name)
                && s.phase == Phase::Pending
            {
                s.phase = Phase::Progressing { step: 1, steps: 1 };
                self.mark_progressing(&name);
                self.advance(&name, out);
            }
        }
    }

    /// Passes every gate that holds and starts the next wave.
    fn advance_waves(&mut self, out: &mut Vec<Action>) {
        while self.started && !self.paused && self.wave < self.plan.waves.len() {
            let settled = self.plan.waves[self.wave]
                .services
                .iter()
                .all(|n| self.services.get(n).is_none_or(|s| s.phase.is_settled()));
            if !settled {
                return;
            }
            self.note(format!("wave {} gate passed", self.wave + 1));
            self.wave += 1;
            self.start_wave(out);
        }
    }

    /// Runs `service`'s program from its current step until something must be waited for.
    fn advance(&mut self, service: &str, out: &mut Vec<Action>) {
        loop {
            if self.paused {
                return;
            }
            let Some(state) = self.services.get(service) else {
                return;
            };
            if state.waiting != Waiting::Nothing
                || !matches!(
                    state.phase,
                    Phase::Progressing { .. } | Phase::Analyzing { .. } | Phase::Paused { .. }
                )
            {
                return;
            }
            let plan = &self.plan.rollouts[service];
            let ops = program(plan);
            let index = state.op;
            let steps = ops.len();
            let Some(op) = ops.get(index).cloned() else {
                let delay = match &plan.strategy {
                    Strategy::BlueGreen(bg) => bg.scale_down_delay_seconds,
                    _ => 0,
                };
                let timer = (delay > 0).then(|| self.next_id(service, "scale-down"));
                if let Some(id) = &timer {
                    out.push(Action::Wait {
                        id: id.clone(),
                        service: service.to_string(),
                        seconds: delay,
                    });
                }
                let s = self.services.get_mut(service).expect("present");
                s.phase = Phase::Promoted;
                s.release_timer = timer;
                self.note(format!("{service} promoted"));
                return;
            };
            match op {
                Op::Route(routing) => {
                    out.push(self.route_action(service, routing));
                    let s = self.services.get_mut(service).expect("present");
                    s.routing = routing;
                    s.touched = true;
                    s.op += 1;
                    s.phase = Phase::Progressing {
                        step: (index + 2).min(steps),
                        steps,
                    };
                }
                Op::Wait(seconds) => {
                    let id = self.next_id(service, "pause");
                    out.push(Action::Wait {
                        id: id.clone(),
                        service: service.to_string(),
                        seconds,
                    });
                    let s = self.services.get_mut(service).expect("present");
                    s.waiting = Waiting::Timer { id };
                    s.phase = Phase::Progressing {
                        step: index + 1,
                        steps,
                    };
                    return;
                }
                Op::Analyze(stage, analysis) => {
                    let analysis = analysis.clone();
                    let id = self.next_id(service, "analysis");
                    out.push(self.analyze_action(&id, service, stage, &analysis));
                    let s = self.services.get_mut(service).expect("present");
                    s.waiting = Waiting::Analysis { id: id.clone() };
                    s.phase = Phase::Analyzing {
                        id,
                        step: index + 1,
                        steps,
                    };
                    return;
                }
                Op::AwaitPromotion(reason) => {
                    out.push(Action::AwaitHuman {
                        service: Some(service.to_string()),
                        reason: reason.to_string(),
                    });
                    let s = self.services.get_mut(service).expect("present");
                    s.waiting = Waiting::Human {
                        reason: reason.to_string(),
                        gate: HumanGate::Step,
                    };
                    s.phase = Phase::Paused {
                        reason: reason.to_string(),
                    };
                    return;
                }
            }
        }
    }

    /// The current step is done: move to the next.
    fn complete_step(&mut self, service: &str, out: &mut Vec<Action>) {
        if let Some(s) = self.services.get_mut(service) {
            s.waiting = Waiting::Nothing;
            s.op += 1;
        }
        self.mark_progressing(service);
        self.advance(service, out);
    }

    /// Shows an active service as progressing at its current step.
    fn mark_progressing(&mut self, service: &str) {
        let steps = program(&self.plan.rollouts[service]).len();
        if let Some(s) = self.services.get_mut(service)
            && matches!(
                s.phase,
                Phase::Paused { .. } | Phase::Analyzing { .. } | Phase::Progressing { .. }
            )
        {
            s.phase = Phase::Progressing {
                step: (s.op + 1).min(steps),
                steps,
            };
        }
    }

    fn service_waiting_on(&self, id: &str) -> Option<String> {
        self.services
            .iter()
            .find(|(_, s)| match &s.waiting {
                Waiting::Timer { id: t } | Waiting::Analysis { id: t } => t == id,
                _ => false,
            })
            .map(|(n, _)| n.clone())
    }

    fn timer_fired(&mut self, id: &str, out: &mut Vec<Action>) {
        if let Some(name) = self
            .services
            .iter()
            .find(|(_, s)| s.release_timer.as_deref() == Some(id))
            .map(|(n, _)| n.clone())
        {
            let s = self.services.get_mut(&name).expect("present");
            s.release_timer = None;
            s.stable_released = true;
            self.note(format!(
                "{name}: scale-down delay passed; the old pool may be scaled down"
            ));
            return;
        }
        match self.service_waiting_on(id) {
            Some(name) if matches!(&self.services[&name].waiting, Waiting::Timer { .. }) => {
                self.note(format!("{name}: pause {id} over"));
                self.complete_step(&name, out);
            }
            _ => self.note(format!("ignored timer {id}: no such timer is running")),
        }
    }

    fn analysis_done(
        &mut self,
        id: &str,
        verdict: Verdict,
        measurements: &[Measurement],
        out: &mut Vec<Action>,
    ) {
        let Some(name) = self
            .service_waiting_on(id)
            .filter(|n| matches!(&self.services[n].waiting, Waiting::Analysis { .. }))
        else {
            self.note(format!(
                "ignored analysis {id} ({verdict}): no such analysis is running"
            ));
            return;
        };
        let stage = match program(&self.plan.rollouts[&name]).get(self.services[&name].op) {
            Some(Op::Analyze(stage, _)) => *stage,
            _ => AnalysisStage::Step,
        };
        let findings = match program(&self.plan.rollouts[&name]).get(self.services[&name].op) {
            Some(Op::Analyze(_, analysis)) => findings(analysis, measurements),
            _ => Vec::new(),
        };
        let s = self.services.get_mut(&name).expect("present");
        s.analyses.push(AnalysisRecord {
            id: id.to_string(),
            stage,
            verdict,
            measurements: measurements.len(),
            findings,
        });
        self.note(format!("{name}: analysis {id} {verdict}"));
        match verdict {
            Verdict::Successful => self.complete_step(&name, out),
            Verdict::Failed | Verdict::Error => {
                let reason = format!("analysis {id} {verdict}");
                self.roll_back(&name, RollbackKind::RolledBack, &reason, out);
            }
            Verdict::Inconclusive => {
                let reason = format!(
                    "analysis {id} was inconclusive: promote to accept, resume to measure again, abort to roll back"
                );
                out.push(Action::AwaitHuman {
                    service: Some(name.clone()),
                    reason: reason.clone(),
                });
                let s = self.services.get_mut(&name).expect("present");
                s.waiting = Waiting::Human {
                    reason: reason.clone(),
                    gate: HumanGate::Inconclusive,
                };
                s.phase = Phase::Paused { reason };
            }
        }
    }

    fn action_failed(&mut self, action: &Action, error: &str, out: &mut Vec<Action>) {
        let Some(name) = action
            .service()
            .filter(|n| self.services.contains_key(*n))
            .map(str::to_string)
        else {
            self.note(format!(
                "ignored failure of an action for no service of the plan: {error}"
            ));
            return;
        };
        let s = &self.services[&name];
        let current_route = s.touched && *action == self.route_action(&name, s.routing);
        let active = matches!(
            s.phase,
            Phase::Progressing { .. }
                | Phase::Analyzing { .. }
                | Phase::Paused { .. }
                | Phase::Promoted
        );
        let pending = match action {
            Action::Analyze { id, .. } => {
                matches!(&s.waiting, Waiting::Analysis { id: w } if w == id)
            }
            Action::Wait { id, .. } => {
                matches!(&s.waiting, Waiting::Timer { id: w } if w == id)
                    || s.release_timer.as_deref() == Some(id.as_str())
            }
            _ => false,
        };
        let rollback_failed = current_route
            && s.routing == Routing::Stable
            && matches!(s.phase, Phase::RolledBack { .. } | Phase::Aborted { .. });
        if rollback_failed {
            let plan = &self.plan.rollouts[&name];
            let stable = plan
                .image
                .as_ref()
                .map_or_else(|| selector_text(&plan.stable), |i| i.from.clone());
            let reason = format!("rolling {name} back to {stable} failed: {error}; resume retries");
            out.push(Action::AwaitHuman {
                service: Some(name.clone()),
                reason: reason.clone(),
            });
            self.note(reason.clone());
            self.services.get_mut(&name).expect("present").phase = Phase::NeedsAttention { reason };
        } else if let (true, Action::Wait { id, .. }) = (pending, action)
            && self.services[&name].release_timer.as_deref() == Some(id.as_str())
        {
            self.note(format!(
                "{name}: the scale-down timer failed ({error}); the old pool is kept"
            ));
            self.services.get_mut(&name).expect("present").release_timer = None;
        } else if active && (current_route || pending) {
            let reason = format!("action failed: {error}");
            self.roll_back(&name, RollbackKind::RolledBack, &reason, out);
        } else {
            self.note(format!(
                "ignored failure of a stale action for {name}: {error}"
            ));
        }
    }

    fn promote(&mut self, service: Option<&str>, out: &mut Vec<Action>) {
        let targets: Vec<String> = match service {
            Some(name) => vec![name.to_string()],
            None => self
                .services
                .iter()
                .filter(|(_, s)| matches!(s.waiting, Waiting::Human { .. }))
                .map(|(n, _)| n.clone())
                .collect(),
        };
        if targets.is_empty() {
            self.note("ignored promote: no service awaits promotion");
        }
        for name in targets {
            let Some(s) = self.services.get(&name) else {
                self.note(format!("ignored promote {name}: not in the plan"));
                continue;
            };
            match s.waiting.clone() {
                Waiting::Human { gate, .. } => {
                    self.note(match gate {
                        HumanGate::Step => format!("{name}: promoted past its manual gate"),
                        HumanGate::Inconclusive => {
                            format!("{name}: inconclusive analysis accepted by a human")
                        }
                    });
                    self.complete_step(&name, out);
                }
                Waiting::Timer { id } => {
                    self.note(format!("{name}: pause {id} skipped by promote"));
                    self.complete_step(&name, out);
                }
                Waiting::Analysis { id } => self.note(format!(
                    "ignored promote {name}: analysis {id} is running (wait for it or abort)"
                )),
                Waiting::Nothing => self.note(format!(
                    "ignored promote {name}: it is {}, not awaiting promotion",
                    s.phase.name()
                )),
            }
        }
    }

    fn resume(&mut self, out: &mut Vec<Action>) {
        let mut acted = false;
        if self.paused {
            self.paused = false;
            self.note("resumed");
            acted = true;
        }
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in &names {
            let s = &self.services[name];
            if let Phase::NeedsAttention { .. } = s.phase {
                self.note(format!("{name}: retrying its rollback"));
                out.push(self.route_action(name, Routing::Stable));
                self.services.get_mut(name).expect("present").phase = Phase::RolledBack {
                    reason: "rollback retried by resume".to_string(),
                };
                acted = true;
            } else if let Waiting::Human {
                gate: HumanGate::Inconclusive,
                ..
            } = s.waiting
            {
                self.note(format!("{name}: measuring the inconclusive analysis again"));
                self.services.get_mut(name).expect("present").waiting = Waiting::Nothing;
                self.mark_progressing(name);
                acted = true;
            }
        }
        if !acted {
            self.note("ignored resume: nothing is paused");
            return;
        }
        for name in &names {
            self.advance(name, out);
        }
    }

    fn abort(&mut self, service: Option<&str>, out: &mut Vec<Action>) {
        if !self.started {
            self.note("ignored abort: not started");
            return;
        }
        let targets: Vec<String> = match service {
            Some(name) if !self.services.contains_key(name) => {
                self.note(format!("ignored abort {name}: not in the plan"));
                return;
            }
            Some(name) => vec![name.to_string()],
            None => self.services.keys().cloned().collect(),
        };
        let mut acted = false;
        for name in targets {
            let s = &self.services[&name];
            match s.phase {
                Phase::Progressing { .. }
                | Phase::Analyzing { .. }
                | Phase::Paused { .. }
                | Phase::Promoted
                | Phase::NeedsAttention { .. } => {
                    self.roll_back(&name, RollbackKind::Aborted, "aborted", out);
                    acted = true;
                }
                Phase::Pending | Phase::Held { .. } => {
                    self.services.get_mut(&name).expect("present").phase = Phase::Aborted {
                        reason: "aborted before it started".to_string(),
                    };
                    self.hold_linked(&name);
                    acted = true;
                }
                Phase::RolledBack { .. } | Phase::Aborted { .. } => {
                    // A release timer still running is cancelled so the rollout can end.
                    if let Some(s) = self.services.get_mut(&name)
                        && s.release_timer.take().is_some()
                    {
                        acted = true;
                    }
                }
            }
        }
        if acted {
            self.note(match service {
                Some(name) => format!("aborted {name}"),
                None => "aborted the change set".to_string(),
            });
        } else {
            self.note("ignored abort: nothing left to roll back");
        }
    }

    fn undo(&mut self, service: Option<&str>, out: &mut Vec<Action>) {
        let targets: Vec<String> = match service {
            Some(name) => vec![name.to_string()],
            None => self
                .services
                .iter()
                .filter(|(_, s)| s.phase == Phase::Promoted)
                .map(|(n, _)| n.clone())
                .collect(),
        };
        if targets.is_empty() {
            self.note("ignored undo: no service is promoted");
        }
        for name in targets {
            match self.services.get(&name) {
                Some(s) if s.phase == Phase::Promoted => {
                    if s.stable_released {
                        self.note(format!(
                            "{name}: undo after the scale-down delay; the stable pool must still have endpoints"
                        ));
                    }
                    self.roll_back(&name, RollbackKind::RolledBack, "undone", out);
                }
                Some(s) => {
                    let phase = s.phase.name();
                    self.note(format!("ignored undo {name}: it is {phase}, not promoted"));
                }
                None => self.note(format!("ignored undo {name}: not in the plan")),
            }
        }
    }

    /// Sends all of `service`'s traffic back to its stable pool and holds what depends on it.
    fn roll_back(
        &mut self,
        service: &str,
        kind: RollbackKind,
        reason: &str,
        out: &mut Vec<Action>,
    ) {
        out.push(self.route_action(service, Routing::Stable));
        let s = self.services.get_mut(service).expect("present");
        s.routing = Routing::Stable;
        s.touched = true;
        s.waiting = Waiting::Nothing;
        s.release_timer = None;
        s.phase = match kind {
            RollbackKind::RolledBack => Phase::RolledBack {
                reason: reason.to_string(),
            },
            RollbackKind::Aborted => Phase::Aborted {
                reason: reason.to_string(),
            },
        };
        self.note(format!("{service} rolled back: {reason}"));
        self.hold_linked(service);
    }

    fn hold_linked(&mut self, service: &str) {
        let linked = self.plan.rollouts[service].holds_on_failure.clone();
        for other in linked {
            if let Some(s) = self.services.get_mut(&other)
                && s.phase == Phase::Pending
            {
                s.phase = Phase::Held {
                    because: service.to_string(),
                };
                self.log
                    .push(format!("{other} held: {service} was rolled back"));
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum RollbackKind {
    RolledBack,
    Aborted,
}

fn selector_text(s: &Selector) -> String {
    s.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The measurements that were not successful, for the record.
fn findings(analysis: &AnalysisSpec, measurements: &[Measurement]) -> Vec<String> {
    measurements
        .iter()
        .filter_map(|m| {
            let metric = analysis.metrics.iter().find(|x| x.name == m.metric)?;
            let verdict = m.judge(metric);
            (verdict != Verdict::Successful).then(|| match (&m.value, &m.error) {
                (_, Some(e)) => format!("{} on {}: error: {e}", m.metric, m.service),
                (Some(v), None) => format!("{} on {}: {v} ({verdict})", m.metric, m.service),
                (None, None) => format!("{} on {}: no value", m.metric, m.service),
            })
        })
        .take(20)
        .collect()
}

#[cfg(test)]
mod tests;
