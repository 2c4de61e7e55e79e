//! The adoption report: how many apps are on each release, and which apps
//! straggle on a release line that is no longer supported.
//!
//! The support window counts release lines back from the newest: with the
//! default window of 1 (N-1), the newest line and the one before it are
//! supported. A line is a major version, or `0.minor` below 1.0.0 (where the
//! minor number is the compatibility boundary).

use crate::check::TemplateSource;
use crate::version::Releases;
use model::{Fleet, Owner, Provenance, Tier};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Apps on one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionCount {
    /// The release tag, or the version as written when it is no release.
    pub version: String,
    pub apps: usize,
    /// `None` when the version is no release of the repository.
    pub supported: Option<bool>,
    pub services: Vec<String>,
}

/// An app on an unsupported line, or on something that is no release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Straggler {
    pub service: String,
    pub owner: Option<Owner>,
    pub tier: Option<Tier>,
    pub versions: Vec<String>,
    pub reason: String,
    pub at: Provenance,
}

/// Stragglers per owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerCount {
    pub owner: Option<Owner>,
    pub stragglers: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptionReport {
    pub template: String,
    pub latest: Option<String>,
    /// How many lines before the newest are still supported.
    pub window: u64,
    /// The supported lines, newest first (`v2`, `v1`, `v0.9`).
    pub supported_lines: Vec<String>,
    /// Apps that pin the template.
    pub apps: usize,
    /// Newest first; versions that are no release last.
    pub versions: Vec<VersionCount>,
    pub stragglers: Vec<Straggler>,
    pub straggler_owners: Vec<OwnerCount>,
}

fn line_name((major, minor): (u64, u64)) -> String {
    if major == 0 {
        format!("v0.{minor}")
    } else {
        format!("v{major}")
    }
}

/// Counts apps per version and finds the stragglers.
pub fn adoption(
    fleet: &Fleet,
    source: &TemplateSource,
    releases: &Releases,
    window: u64,
) -> AdoptionReport {
    let latest = releases.latest();
    let mut lines: Vec<(u64, u64)> = releases
        .all()
        .iter()
        .filter(|r| r.version.pre.is_none())
        .map(|r| r.version.line())
        .filter(|l| latest.is_none_or(|latest| *l <= latest.version.line()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    lines.reverse();
    let supported: BTreeSet<(u64, u64)> = lines
        .iter()
        .take(
            usize::try_from(window)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        )
        .copied()
        .collect();

    let mut per_version: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stragglers = Vec::new();
    let mut apps = 0;
    for service in &fleet.services {
        let pins = source.pins(service);
        if pins.is_empty() {
            continue;
        }
        apps += 1;
        let mut versions = BTreeSet::new();
        let mut reasons = Vec::new();
        let mut at = None;
        for pin in pins {
            let written = pin.version.as_deref();
            let release = written.and_then(|v| releases.resolve(v));
            let label = match (release, written) {
                (Some(r), _) => r.tag.clone(),
                (None, Some(v)) => v.to_string(),
                (None, None) => "unpinned".to_string(),
            };
            per_version
                .entry(label.clone())
                .or_default()
                .insert(service.name.clone());
            let reason = match (release, written) {
                (Some(r), _) if supported.contains(&r.version.line()) => None,
                (Some(r), _) => Some(format!(
                    "{} is on line {}, outside the support window",
                    r.tag,
                    line_name(r.version.line())
                )),
                (None, Some(v)) => Some(format!("{v} is not a release of the template")),
                (None, None) => Some("not pinned: follows the default branch".to_string()),
            };
            if let Some(reason) = reason {
                reasons.push(reason);
                at.get_or_insert_with(|| pin.at.clone());
            }
            versions.insert(label);
        }
        if let Some(at) = at {
            reasons.dedup();
            stragglers.push(Straggler {
                service: service.name.clone(),
                owner: service.owner.clone(),
                tier: service.tier,
                versions: versions.into_iter().collect(),
                reason: reasons.join("; "),
                at,
            });
        }
    }
    // The newest release is always listed, even before anyone adopts it.
    if let Some(latest) = latest {
        per_version.entry(latest.tag.clone()).or_default();
    }
    let mut versions: Vec<VersionCount> = per_version
        .into_iter()
        .map(|(version, services)| {
            let release = releases.by_tag(&version);
            VersionCount {
                supported: release.map(|r| supported.contains(&r.version.line())),
                apps: services.len(),
                services: services.into_iter().collect(),
                version,
            }
        })
        .collect();
    versions.sort_by(|a, b| {
        let key = |v: &VersionCount| releases.by_tag(&v.version).map(|r| r.version.clone());
        match (key(a), key(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.version.cmp(&b.version),
        }
    });
    let mut owners: BTreeMap<Option<Owner>, usize> = BTreeMap::new();
    for s in &stragglers {
        *owners.entry(s.owner.clone()).or_default() += 1;
    }
    let mut straggler_owners: Vec<OwnerCount> = owners
        .into_iter()
        .map(|(owner, stragglers)| OwnerCount { owner, stragglers })
        .collect();
    straggler_owners.sort_by(|a, b| b.stragglers.cmp(&a.stragglers).then(a.owner.cmp(&b.owner)));
    AdoptionReport {
        template: source.name(),
        latest: latest.map(|r| r.tag.clone()),
        window,
        supported_lines: lines
            .iter()
            .filter(|l| supported.contains(l))
            .map(|l| line_name(*l))
            .collect(),
        apps,
        versions,
        stragglers,
        straggler_owners,
    }
}

#[cfg(test)]
mod tests;
