//! Host patching's pure half (`hostops` is its I/O edge): the inventory,
//! maintenance windows, batches, the plan, and the run's state machine.
//!
//! This crate decides; `hostops` acts. Nothing here touches the file system,
//! a process or the network (the layering test checks it), which is why the
//! whole decision logic — including what happens after a crash — is tested
//! with plain values in `*/tests.rs`.
//!
//! - [`inventory::parse`] reads `hosts.yaml` with line numbers.
//! - [`window::MaintenanceWindow::status`] says whether a host may be patched
//!   at an instant, in its zone ([`zone::Zone`]: UTC, offsets, POSIX rules).
//! - [`batch::BatchSpec`] splits hosts like Ansible's `serial`.
//! - [`plan::plan`] builds the [`plan::PatchPlan`]; [`plan::PatchPlan::to_report`]
//!   renders it as the common `ImpactReport`.
//! - [`machine::Run`] turns the plan and recorded events into next actions.
//! - [`packages`] parses what dpkg and apt print.

pub mod batch;
pub mod inventory;
pub mod machine;
pub mod packages;
pub mod plan;
pub mod time;
pub mod window;
pub mod zone;

pub use batch::{BatchSize, BatchSpec};
pub use inventory::{HealthCheck, HostSpec, Inventory, PackageManager, SnapshotSpec, Transport};
pub use machine::{
    Action, DebSource, Effective, Event, Halt, HostRun, HostState, MachineError, Run, RunOutcome,
    SavedDeb, Step, StepOutput,
};
pub use packages::{InstalledPackage, PackageChange, RebootNeed};
pub use plan::{HostFacts, PatchPlan, PlanError, PlanOptions, PlannedHost, RollbackTiming};
pub use time::{Timestamp, Weekday};
pub use window::{MaintenanceWindow, TimeOfDay, WindowStatus};
pub use zone::Zone;
