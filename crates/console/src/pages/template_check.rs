//! The check of a template release against every app, its representatives
//! and adoption waves, as `bulkhead template check` and `template plan`
//! answer them: the templates repository named by `[templates] repo` is read
//! with git at each release the check needs, and the `templates` crate
//! decides. Nothing is recorded: the console only looks.

use crate::graph::Graph;
use crate::web::Fail;
use model::TemplateKind;
use std::collections::{BTreeMap, BTreeSet};
use templates::{
    AdoptionPlan, FleetCheck, PlanOptions, Releases, Tag, TemplateSet, TemplateSource,
};

/// The templates repository of a fleet and its releases.
pub struct Repo {
    repo: vcs::Repo,
    /// `[templates] repo`, as bulkhead.toml names it.
    pub label: String,
    pub source: TemplateSource,
    pub releases: Releases,
}

/// A release checked against the fleet, and the plan to adopt it.
#[derive(Debug)]
pub struct Checked {
    pub check: FleetCheck,
    pub plan: AdoptionPlan,
}

/// Opens the fleet's templates repository and reads its release tags.
///
/// # Errors
/// A 400 when bulkhead.toml names no templates repository or no template
/// source, a 500 when git cannot read it.
pub fn open(graph: &Graph) -> Result<Repo, Fail> {
    let config = &graph.config.templates;
    let label = config.repo.clone().ok_or_else(|| {
        Fail::BadRequest(format!(
            "this fleet names no templates repository: set [templates] repo in {}",
            graph.root.join(discover::config::FILE_NAME).display()
        ))
    })?;
    let source = TemplateSource {
        gitlab_project: config.project.clone(),
        github_repo: config.github.clone(),
    };
    if source.gitlab_project.is_none() && source.github_repo.is_none() {
        return Err(Fail::BadRequest(
            "set [templates] project or github in bulkhead.toml: the console checks the pins of that source".into(),
        ));
    }
    let dir = graph.root.join(&label);
    let repo = vcs::Repo::open(&dir)
        .map_err(|e| Fail::Internal(format!("opening the templates repository {label}: {e}")))?;
    let tags: Vec<Tag> = repo
        .tags()
        .map_err(|e| Fail::Internal(format!("{label}: {e}")))?
        .into_iter()
        .map(|t| Tag {
            name: t.name,
            commit: t.commit,
        })
        .collect();
    let (releases, _) = Releases::from_tags(&label, &tags);
    Ok(Repo {
        repo,
        label,
        source,
        releases,
    })
}

impl Repo {
    /// The template files at a commit; files the apps include by path count even without a spec header.
    fn set_at(&self, commit: &str, wanted: &BTreeSet<String>) -> Result<TemplateSet, Fail> {
        let git = |e: vcs::GitError| Fail::Internal(format!("{}: {e}", self.label));
        let files: Vec<String> = self
            .repo
            .files(commit)
            .map_err(git)?
            .into_iter()
            .filter(|p| {
                let lower = p.to_ascii_lowercase();
                lower.ends_with(".yml") || lower.ends_with(".yaml")
            })
            .collect();
        let paths: Vec<&str> = files.iter().map(String::as_str).collect();
        let contents = self.repo.show_many(commit, &paths).map_err(git)?;
        let texts: Vec<(&str, String)> = paths
            .iter()
            .zip(contents)
            .filter_map(|(path, bytes)| Some((*path, String::from_utf8(bytes?).ok()?)))
            .collect();
        Ok(TemplateSet::read(texts.iter().map(|(p, t)| (*p, t.as_str())), wanted).0)
    }

    /// Checks every app against `version` and plans its adoption.
    ///
    /// # Errors
    /// A 400 when `version` is no release, a 500 when git fails.
    pub fn check(
        &self,
        graph: &Graph,
        version: &str,
        options: &PlanOptions,
    ) -> Result<Checked, Fail> {
        let target = self.releases.resolve(version).ok_or_else(|| {
            let known: Vec<&str> = self.releases.all().iter().map(|r| r.tag.as_str()).collect();
            Fail::BadRequest(format!(
                "version={version}: no release of {} (releases: {})",
                self.label,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?;
        let fleet = &graph.fleet;
        let wanted: BTreeSet<String> = fleet
            .services
            .iter()
            .flat_map(|s| self.source.pins(s))
            .filter(|p| p.kind == TemplateKind::GitlabProject)
            .map(templates::check::pinned_file)
            .collect();
        let mut sets = BTreeMap::new();
        for tag in templates::check::releases_needed(fleet, &self.source, &self.releases, target) {
            if let Some(release) = self.releases.by_tag(&tag) {
                sets.insert(tag, self.set_at(&release.commit, &wanted)?);
            }
        }
        let check = templates::check_fleet(fleet, &self.source, &self.releases, &sets, target);
        let empty = TemplateSet::default();
        let plan = templates::plan(
            &check,
            fleet,
            &self.releases,
            sets.get(&target.tag).unwrap_or(&empty),
            &self.source,
            options,
        );
        Ok(Checked { check, plan })
    }
}
