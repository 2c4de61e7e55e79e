//! Every `FROM` in the fleet, classified: pinned by digest, tag only, `latest`
//! or no tag, from an unapproved registry, on a base the catalog does not know.
//!
//! The base images repository is where upstream images are admitted, so its
//! own `FROM`s are not held to the approved-registries list.

use crate::catalog::Catalog;
use model::{Dockerfile, Fleet, ImageRef, Pinning, Provenance, StageBase};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageRole {
    /// The stage the shipped image is built on.
    Final,
    /// A stage used only to build.
    Builder,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum FromProblem {
    /// A tag can be moved: the build is not reproducible.
    TagOnly,
    /// `:latest` written out.
    Latest,
    /// No tag and no digest: `latest` implicitly.
    NoTag,
    /// Not under any of `[images] approved_registries`.
    UnapprovedRegistry,
    /// The final stage is built on an image the base catalog does not know.
    UnknownBase,
    /// The reference could not be resolved (unset `ARG`, invalid reference).
    Unresolved(String),
}

impl FromProblem {
    pub fn text(&self) -> String {
        match self {
            FromProblem::TagOnly => "tag only (not pinned by digest)".into(),
            FromProblem::Latest => "latest tag".into(),
            FromProblem::NoTag => "no tag (pulls latest)".into(),
            FromProblem::UnapprovedRegistry => "unapproved registry".into(),
            FromProblem::UnknownBase => "unknown base image".into(),
            FromProblem::Unresolved(why) => format!("unresolved: {why}"),
        }
    }
}

/// One `FROM` line and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromCheck {
    pub at: Provenance,
    /// The service whose repository holds the Dockerfile.
    pub service: Option<String>,
    pub role: StageRole,
    /// Whether the Dockerfile is in the base images repository.
    pub base_repo: bool,
    pub written: String,
    pub image: Option<ImageRef>,
    pub pinning: Option<Pinning>,
    /// `None` when no approved registries are configured.
    pub approved: Option<bool>,
    /// The image's lineage in the catalog, the image itself first.
    pub lineage: Vec<String>,
    pub problems: Vec<FromProblem>,
}

/// Folder -> services whose repository it is.
pub fn services_by_repo(fleet: &Fleet) -> BTreeMap<&str, Vec<&str>> {
    let mut map: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &fleet.services {
        if let Some(repo) = &s.repo {
            map.entry(repo.as_str()).or_default().push(s.name.as_str());
        }
    }
    map
}

/// The services owning the deepest repository folder that holds `path`.
pub fn owners<'a>(by_repo: &BTreeMap<&str, Vec<&'a str>>, path: &str) -> Vec<&'a str> {
    let mut dir = path;
    while let Some((parent, _)) = dir.rsplit_once('/') {
        if let Some(names) = by_repo.get(parent) {
            return names.clone();
        }
        dir = parent;
    }
    by_repo.get("").cloned().unwrap_or_default()
}

/// Whether `image` is under one of the approved prefixes (`None` when none are configured).
pub fn approved(image: &ImageRef, approved_registries: &[String]) -> Option<bool> {
    if approved_registries.is_empty() {
        return None;
    }
    Some(approved_registries.iter().any(|p| image.is_under(p)))
}

/// Classifies every `FROM` of every Dockerfile in the fleet.
pub fn check_fleet(
    fleet: &Fleet,
    catalog: &Catalog,
    approved_registries: &[String],
    base_repo: Option<&str>,
) -> Vec<FromCheck> {
    let by_repo = services_by_repo(fleet);
    let mut checks = Vec::new();
    for dockerfile in &fleet.dockerfiles {
        let in_base_repo = base_repo.is_some_and(|r| {
            let r = r.trim_end_matches('/');
            dockerfile.path.starts_with(r) && dockerfile.path[r.len()..].starts_with('/')
        });
        let service = owners(&by_repo, &dockerfile.path)
            .first()
            .map(|s| s.to_string());
        checks.extend(check_dockerfile(
            dockerfile,
            service,
            in_base_repo,
            catalog,
            approved_registries,
        ));
    }
    checks.sort_by(|a, b| a.at.cmp(&b.at));
    checks
}

fn check_dockerfile(
    dockerfile: &Dockerfile,
    service: Option<String>,
    in_base_repo: bool,
    catalog: &Catalog,
    approved_registries: &[String],
) -> Vec<FromCheck> {
    let final_base = dockerfile.final_base();
    let mut checks = Vec::new();
    for stage in &dockerfile.stages {
        let (image, unresolved) = match &stage.base {
            StageBase::Image(image) => (Some(image), None),
            StageBase::Unresolved { reason, .. } => (None, Some(reason.clone())),
            StageBase::Stage(_) | StageBase::Scratch => continue,
        };
        let role = match (image, final_base) {
            (Some(i), Some(f)) if std::ptr::eq(i, f) => StageRole::Final,
            // An unresolved last stage is the shipped one as far as we can tell.
            (None, _) if stage.index as usize + 1 == dockerfile.stages.len() => StageRole::Final,
            _ => StageRole::Builder,
        };
        let mut problems = Vec::new();
        if let Some(reason) = unresolved {
            problems.push(FromProblem::Unresolved(reason));
        }
        let pinning = image.map(ImageRef::pinning);
        match pinning {
            Some(Pinning::Tag) => problems.push(FromProblem::TagOnly),
            Some(Pinning::Latest) => problems.push(FromProblem::Latest),
            Some(Pinning::None) => problems.push(FromProblem::NoTag),
            _ => {}
        }
        let approved = image.and_then(|i| approved(i, approved_registries));
        if approved == Some(false) && !in_base_repo {
            problems.push(FromProblem::UnapprovedRegistry);
        }
        let lineage = image.map_or_else(Vec::new, |i| {
            if catalog.get(&i.name()).is_some() {
                catalog
                    .lineage(&i.name())
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect()
            } else {
                Vec::new()
            }
        });
        if role == StageRole::Final
            && !in_base_repo
            && !catalog.images.is_empty()
            && image.is_some_and(|i| catalog.get(&i.name()).is_none())
        {
            problems.push(FromProblem::UnknownBase);
        }
        checks.push(FromCheck {
            at: stage.at.clone(),
            service: service.clone(),
            role,
            base_repo: in_base_repo,
            written: stage.written.clone(),
            image: image.cloned(),
            pinning,
            approved,
            lineage,
            problems,
        });
    }
    checks
}
