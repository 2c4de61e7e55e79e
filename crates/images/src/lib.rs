//! Base image and container governance, as pure functions over the fleet graph.
//!
//! The questions after "a critical CVE is in the base image": which images
//! carry it, which image *introduced* it (the OS base, a language base, or the
//! app itself), which services build on those images, what runs them in the
//! cluster, who owns them, what is internet-facing, and in which order to fix
//! them. Trivy alone scans one image at a time and cannot tell inherited
//! findings from added ones (trivy#1198); here every finding's layer is
//! placed in the lineage (app image -> language base -> OS base).
//!
//! This crate does no I/O: `discover` reads the report files, cluster
//! snapshots and the base-images catalog that `bulkhead.toml` names and hands
//! their text to [`inputs::parse`], which runs the parsers here ([`reports`],
//! [`cluster`], [`bases`]); the registry client lives in the `registry` crate. Parsers return facts plus diagnostics and never
//! panic on bad input.

pub mod audit;
pub mod bases;
pub mod catalog;
pub mod check;
pub mod cluster;
pub mod cve;
pub mod inputs;
pub mod reports;
pub mod upgrade;
pub mod yaml_refs;

pub use audit::{AuditRow, RefKind};
pub use bases::BaseImage;
pub use catalog::{Catalog, KnownImage};
pub use check::{FromCheck, FromProblem, StageRole};
pub use cluster::RunningContainer;
pub use cve::{CveAnswer, CveQuery};
pub use inputs::{InputFiles, Inputs, Snapshot, TextFile};
pub use reports::{ReportFormat, ScanReport, Severity, Vulnerability};

/// The line (1-based) of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> u32 {
    let end = offset.min(text.len());
    u32::try_from(
        text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1,
    )
    .unwrap_or(u32::MAX)
}

/// A `serde_json` error as a diagnostic at its line.
pub(crate) fn json_error(path: &str, what: &str, e: &serde_json::Error) -> model::Diagnostic {
    let line = u32::try_from(e.line()).ok().filter(|l| *l > 0);
    model::Diagnostic::error(path, line, format!("invalid {what}: {e}"))
}

#[cfg(test)]
mod tests;
