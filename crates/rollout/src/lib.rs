//! Progressive delivery's pure half (`orchestrator` is its I/O edge): per-service rollout specs (blue-green, canary,
//! rolling, modelled on Argo Rollouts), change sets planned as dependency-ordered
//! waves, analysis verdicts, and the state machine that turns a plan and observed
//! events into the next actions.
//!
//! Nothing here touches the network, the file system or a process: the
//! `orchestrator` crate performs the [`Action`]s, measures the analyses and
//! stores the [`Rollout`] as JSON before it acts.

pub mod analysis;
pub mod machine;
pub mod plan;
pub mod spec;

pub use analysis::{
    AnalysisSpec, Condition, ConditionError, Measurement, Metric, MetricKind, Provider, Verdict,
    evaluate, progress,
};
pub use machine::{Action, AnalysisStage, Event, Phase, Rollout, ServiceStatus, Status};
pub use plan::{ImageChange, ImageError, Plan, PlanError, PlanOptions, ServicePlan, Wave, plan};
pub use spec::{BlueGreen, Canary, CanaryStep, Rolling, Specs, Strategy};

/// Traffic selector: pod labels, such as `{version: green}`.
pub type Selector = std::collections::BTreeMap<String, String>;
