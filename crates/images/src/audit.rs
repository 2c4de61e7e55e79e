//! `images audit`: every image reference in the fleet (final and builder
//! `FROM`s, workload containers) and in its clusters (saved snapshots and
//! live reads) with its pinning, whether its registry is
//! approved, its lineage and the open CRITICAL/HIGH findings it carries.
//!
//! An image's findings are those of the nearest image in its lineage that has
//! a scanner report: a scan covers every layer, inherited ones included, so a
//! report of the image itself wins over its base's, and an app image nobody
//! scanned carries what its base carries.

use crate::catalog::Catalog;
use crate::check::{FromCheck, StageRole, approved};
use crate::cluster::RunningContainer;
use crate::reports::Severity;
use model::{Fleet, ImageRef, Pinning, Provenance};
use serde::Serialize;
use std::collections::BTreeSet;

/// Where an image reference appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefKind {
    /// The final stage's `FROM`: the base the shipped image is built on.
    FinalFrom,
    /// A builder stage's `FROM`.
    BuilderFrom,
    /// A container (or init container) of a workload.
    Workload,
    /// A container of a cluster's pod or workload controller.
    Running,
}

impl RefKind {
    pub fn text(self) -> &'static str {
        match self {
            RefKind::FinalFrom => "final FROM",
            RefKind::BuilderFrom => "builder FROM",
            RefKind::Workload => "workload",
            RefKind::Running => "running",
        }
    }
}

/// One image reference and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    /// The reference as written (after `ARG` substitution for `FROM`s).
    pub image: String,
    pub kind: RefKind,
    pub service: Option<String>,
    pub at: Provenance,
    /// `None` when the reference could not be parsed or resolved.
    pub pinning: Option<Pinning>,
    /// `None` when no approved registries are configured.
    pub approved: Option<bool>,
    /// The image itself (`registry/repository`), then its bases.
    pub lineage: Vec<String>,
    /// Distinct CRITICAL findings (id and package) in the nearest scanned image of the lineage.
    pub critical: usize,
    pub high: usize,
    /// The image whose scanner reports gave the counts.
    pub scanned_as: Option<String>,
}

/// Audits every image reference in the fleet and the clusters' `running`
/// containers; rows sorted by path and line.
pub fn audit(
    fleet: &Fleet,
    catalog: &Catalog,
    froms: &[FromCheck],
    running: &[RunningContainer],
    approved_registries: &[String],
) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    for from in froms {
        let lineage = match &from.image {
            Some(image) => lineage_of(catalog, image, &[]),
            None => Vec::new(),
        };
        rows.push(row(
            catalog,
            from.image
                .as_ref()
                .map_or_else(|| from.written.clone(), ToString::to_string),
            match from.role {
                StageRole::Final => RefKind::FinalFrom,
                StageRole::Builder => RefKind::BuilderFrom,
            },
            from.service.clone(),
            from.at.clone(),
            from.pinning,
            from.approved,
            lineage,
        ));
    }
    for workload in &fleet.workloads {
        let service = fleet.service(workload.service_name());
        for container in &workload.containers {
            let (pinning, ok, lineage) = judged(
                catalog,
                container.image_ref.as_ref(),
                service,
                approved_registries,
            );
            rows.push(row(
                catalog,
                container.image.clone(),
                RefKind::Workload,
                service.map(|s| s.name.clone()),
                container.at.clone(),
                pinning,
                ok,
                lineage,
            ));
        }
    }
    for container in running {
        let (pinning, ok, lineage) = judged(
            catalog,
            container.image_ref.as_ref(),
            fleet.service(&container.service),
            approved_registries,
        );
        rows.push(row(
            catalog,
            container.image.clone(),
            RefKind::Running,
            Some(container.service.clone()),
            container.at.clone(),
            pinning,
            ok,
            lineage,
        ));
    }
    rows.sort_by(|a, b| a.at.cmp(&b.at).then(a.kind.cmp(&b.kind)));
    rows
}

/// A container image's pinning, approval and lineage, as a container of `service`.
fn judged(
    catalog: &Catalog,
    image: Option<&ImageRef>,
    service: Option<&model::Service>,
    approved_registries: &[String],
) -> (Option<Pinning>, Option<bool>, Vec<String>) {
    // Only the service's own image is built from its Dockerfile; a sidecar
    // (an agent, a proxy) is someone else's build.
    let own = |image: &ImageRef| {
        service.is_some_and(|s| image.repository().rsplit('/').next() == Some(s.name.as_str()))
    };
    let bases: &[ImageRef] = match (image, service) {
        (Some(image), Some(s)) if own(image) => s.base_images.as_slice(),
        _ => &[],
    };
    match image {
        Some(image) => (
            Some(image.pinning()),
            approved(image, approved_registries),
            lineage_of(catalog, image, bases),
        ),
        None => (None, None, Vec::new()),
    }
}

/// `image`'s lineage from the catalog; an image the catalog does not know
/// (an app image) hangs under `bases`, its service's final-stage `FROM`s.
fn lineage_of(catalog: &Catalog, image: &ImageRef, bases: &[ImageRef]) -> Vec<String> {
    let name = image.name();
    if catalog.get(&name).is_some() {
        return catalog.lineage(&name).into_iter().map(|(n, _)| n).collect();
    }
    let mut chain = vec![name.clone()];
    if let Some(base) = bases.iter().find(|b| b.name() != name) {
        chain.extend(catalog.lineage(&base.name()).into_iter().map(|(n, _)| n));
    }
    chain
}

#[allow(clippy::too_many_arguments)]
fn row(
    catalog: &Catalog,
    image: String,
    kind: RefKind,
    service: Option<String>,
    at: Provenance,
    pinning: Option<Pinning>,
    approved: Option<bool>,
    lineage: Vec<String>,
) -> AuditRow {
    let scanned = lineage
        .iter()
        .find_map(|n| catalog.get(n).filter(|i| !i.reports.is_empty()));
    let count = |severity: Severity| {
        scanned.map_or(0, |known| {
            known
                .reports
                .iter()
                .flat_map(|&r| &catalog.reports[r].vulnerabilities)
                .filter(|v| v.severity == severity)
                .map(|v| (v.id.as_str(), v.package.as_str()))
                .collect::<BTreeSet<_>>()
                .len()
        })
    };
    AuditRow {
        image,
        kind,
        service,
        at,
        pinning,
        approved,
        critical: count(Severity::Critical),
        high: count(Severity::High),
        scanned_as: scanned.map(|i| i.name.clone()),
        lineage,
    }
}
