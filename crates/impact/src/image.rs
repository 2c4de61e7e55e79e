//! "What does a base image change reach?" (`impact image`): the image, every
//! known image built on it, the services built on or running any of them, and
//! the four answers with a plan that rebuilds the images before the services.
//!
//! The lineage, the catalog and the walk from affected images to services are
//! the `images` crate's ([`images::cve::reach`], shared with `cve ID`); this
//! module asks them about a change instead of a vulnerability.

use images::Catalog;
use images::cve::{AffectedImage, CveAnswer, CveQuery, ReachStart, impact_report, reach};
use model::{Change, Evidence, Finding, Fleet, ImageRef, ImpactReport, Risk};
use std::collections::BTreeSet;

/// Answers "what if this image changes?": the image, every known image built
/// on it, and everything [`reach`] finds from them (the services built on or
/// running them, ranked as for a CVE). The answer's `id` is the image's name;
/// nothing is `introduced` and no image is `reported`.
pub fn image(query: CveQuery<'_>, reference: &ImageRef) -> CveAnswer {
    let catalog = query.catalog;
    let root = reference.name();
    let mut affected: BTreeSet<String> = catalog.descendants(&root).into_iter().collect();
    affected.insert(root.clone());
    let images = affected
        .iter()
        .map(|name| AffectedImage::new(catalog, name, false, |n| n == root))
        .collect();
    reach(
        query,
        ReachStart {
            id: &root,
            severity: None,
            introduced: Vec::new(),
            images,
        },
        &affected,
    )
}

/// The four answers for moving `answer.id` (an image, from [`image`]) to
/// `to`: the images built on it to rebuild first, then the same canary and
/// waves as for a CVE.
pub fn image_report(
    answer: &CveAnswer,
    fleet: &Fleet,
    catalog: &Catalog,
    to: &str,
) -> ImpactReport {
    let mut report = impact_report(answer, fleet);
    report.change = Change::ImageUpdate {
        image: answer.id.clone(),
        to: to.to_string(),
    };
    report.what_breaks = answer
        .images
        .iter()
        .map(|i| Finding {
            subject: i.name.clone(),
            risk: Risk::Risky,
            summary: if i.name == answer.id {
                "the image that changes".to_string()
            } else {
                format!("built on it: {}", i.lineage.join(" -> "))
            },
            evidence: catalog
                .get(&i.name)
                .and_then(|k| k.at.clone())
                .map(|at| Evidence {
                    statement: match catalog.get(&i.name).and_then(|k| k.base.as_ref()) {
                        Some(base) => format!("FROM {base}"),
                        None => "declared here".to_string(),
                    },
                    at: Some(at),
                })
                .into_iter()
                .collect(),
        })
        .collect();
    report
        .monitoring
        .retain(|s| !s.name.ends_with("in scanner reports"));
    report.rollback.action =
        "redeploy each service's previous image digest (kept in the registry); revert the FROM commits".to_string();
    if let Some(wave) = report.plan.waves.first_mut()
        && wave.name == "rebuild base images"
    {
        wave.steps.retain(|s| s.target != answer.id);
        for step in &mut wave.steps {
            step.action = format!("rebuild on {to} and publish a new digest");
        }
        wave.gate = "the rebuilt images pass their smoke tests and scans".to_string();
        if wave.steps.is_empty() {
            report.plan.waves.remove(0);
        }
    }
    report
}

#[cfg(test)]
mod tests;
