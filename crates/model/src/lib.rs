//! The fleet graph: the pure data every bulkhead capability shares.
//!
//! This crate knows nothing about files, processes or the network. Parsers
//! (`scan`) turn text into [`Facts`]; discovery (`discover`) feeds those facts
//! to [`fleet::assemble`] to get a [`Fleet`]; analyses (`impact` and later
//! capabilities) turn a fleet and a [`Change`] into an [`ImpactReport`].
//!
//! Every fact carries a [`Provenance`] so that any answer can say which file
//! and line it came from.

pub mod binary;
pub mod diagnostic;
pub mod facts;
pub mod fleet;
pub mod image_ref;
pub mod report;

pub use diagnostic::{Diagnostic, Provenance, Severity};
pub use facts::{
    CatalogEntity, Container, Dockerfile, EnvVar, Facts, Host, ImageOverride, KubeService, Route,
    RouteKind, Stage, StageBase, TemplateKind, TemplateRef, TemplateUse, TemplateUseKind, Workload,
    WorkloadKind,
};
pub use fleet::{
    AssembleInput, Dependency, DependencyVia, Edge, EdgeKind, Fleet, Image, Owner, Repo, Service,
    Tier, assemble,
};
pub use image_ref::{Digest, ImageRef, ImageRefError, Pinning};
pub use report::{
    Change, Evidence, Finding, ImpactReason, ImpactReport, ImpactedService, Plan, Risk, Rollback,
    Signal, Step, Wave,
};
