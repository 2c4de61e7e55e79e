//! Shared pipeline governance: the CI templates repository as a versioned API.
//!
//! Apps pin a release of the shared templates (`include: project/ref/file`,
//! `include: component: ...@1.2.3`, `uses: org/repo/.github/workflows/x.yml@v1`).
//! Changing the templates in place would change 100 pipelines at once, so
//! the templates are released as semver tags, and this crate answers the
//! questions a release raises, from text alone:
//!
//! - [`interface`]: what a template promises at a release (inputs with their
//!   type, default, options and regex; jobs and stages; workflow secrets and
//!   outputs);
//! - [`mod@diff`]: every change between two releases, classified major, minor,
//!   patch or warning with its reason, and the release step it requires;
//! - [`check`]: whether each app's pins would still be valid on a release,
//!   without running a pipeline;
//! - [`mod@plan`]: representative apps and adoption waves, as the
//!   [`model::ImpactReport`] every change kind produces;
//! - [`pin`]: the byte-exact rewrite of one pin's version in a CI file;
//! - [`adoption`]: who is on which release, and who straggles.
//!
//! Pure: no file system, no git, no network. The binary reads the templates
//! at each tag (through the `vcs` crate) and hands the text in.

pub mod adoption;
pub mod check;
pub mod diff;
pub mod interface;
pub mod pin;
pub mod plan;
pub mod version;

pub use check::{AppCheck, FleetCheck, Problem, ProblemKind, TemplateSource, check_fleet};
pub use diff::{ChangeKind, InterfaceChange, Severity, diff, diff_sets, required_bump};
pub use interface::{Flavor, Input, InputType, Interface, TemplateSet};
pub use plan::{AdoptionPlan, PlanOptions, impact_report, plan};
pub use version::{Bump, Release, Releases, Tag, Version};
