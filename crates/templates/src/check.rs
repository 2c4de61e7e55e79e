//! Static validation: would this app's pipeline still be valid on that release?
//!
//! For every pin of the template in the fleet, the app's `include:` / `uses:`
//! and inputs are checked against the release's interface, without running a
//! pipeline: missing mandatory inputs, unknown inputs, values of the wrong
//! type, outside the options or not matching the regex; template files that
//! no longer exist; jobs the app extends, needs or overrides, and stages its
//! jobs run in, that the release removed; outputs it reads and secrets it
//! passes that the release no longer declares, and required secrets it does
//! not pass.

use crate::interface::{Flavor, Input, Interface, TemplateSet};
use crate::version::{Release, Releases};
use model::{Fleet, Owner, Provenance, Service, TemplateKind, TemplateRef, TemplateUseKind, Tier};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Which pins are pins of the governed templates repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSource {
    /// The GitLab project path apps `include: project:` (and whose components they use).
    pub gitlab_project: Option<String>,
    /// The GitHub `owner/repo` apps `uses:` reusable workflows from.
    pub github_repo: Option<String>,
}

impl TemplateSource {
    /// The name reports give the template: the GitLab project, else the GitHub repository.
    pub fn name(&self) -> String {
        self.gitlab_project
            .clone()
            .or_else(|| self.github_repo.clone())
            .unwrap_or_else(|| "templates".to_string())
    }

    /// Whether `pin` pins a file of this repository.
    pub fn matches(&self, pin: &TemplateRef) -> bool {
        let source = pin.source.trim_matches('/');
        match pin.kind {
            TemplateKind::GitlabProject => self
                .gitlab_project
                .as_deref()
                .is_some_and(|p| source.eq_ignore_ascii_case(p.trim_matches('/'))),
            // `host/group/project`: the host is whatever the instance is called.
            TemplateKind::GitlabComponent => self.gitlab_project.as_deref().is_some_and(|p| {
                let p = p.trim_matches('/');
                source.eq_ignore_ascii_case(p)
                    || source
                        .to_ascii_lowercase()
                        .ends_with(&format!("/{}", p.to_ascii_lowercase()))
            }),
            TemplateKind::GithubWorkflow => self
                .github_repo
                .as_deref()
                .is_some_and(|r| source.eq_ignore_ascii_case(r)),
            _ => false,
        }
    }

    /// The service's pins of this repository.
    pub fn pins<'s>(&self, service: &'s Service) -> Vec<&'s TemplateRef> {
        service
            .templates
            .iter()
            .filter(|t| self.matches(t))
            .collect()
    }
}

/// The template file a pin names: the included file, the component, the workflow.
pub fn pinned_file(pin: &TemplateRef) -> String {
    let file = pin.file.as_deref().unwrap_or("");
    match pin.kind {
        TemplateKind::GitlabComponent => format!("templates/{file}.yml"),
        _ => file.trim_start_matches('/').to_string(),
    }
}

/// The interface a pin uses in a release, if the file exists there.
pub fn interface_of<'s>(pin: &TemplateRef, set: &'s TemplateSet) -> Option<&'s Interface> {
    match pin.kind {
        TemplateKind::GitlabComponent => set.component(pin.file.as_deref().unwrap_or("")),
        _ => set.files.get(&pinned_file(pin)),
    }
}

/// Why an app would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    MissingFile,
    MissingInput,
    UnknownInput,
    TypeMismatch,
    NotInOptions,
    RegexMismatch,
    RemovedJob,
    RemovedStage,
    RemovedOutput,
    MissingSecret,
    UnknownSecret,
}

/// One reason an app would break, located in the app's CI file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    pub at: Provenance,
    pub kind: ProblemKind,
    /// What is at fault: `input image`, `job lint`.
    pub subject: String,
    pub message: String,
}

/// Checks one pin against a release.
///
/// `current` is the release the pin is on today, when it is known: a job,
/// stage or output the app relies on is reported as removed only when that
/// release had it, so the app's own jobs (or jobs from other includes) are
/// never mistaken for template jobs.
pub fn check_pin(
    pin: &TemplateRef,
    target: &TemplateSet,
    target_tag: &str,
    current: Option<&TemplateSet>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(interface) = interface_of(pin, target) else {
        problems.push(Problem {
            at: pin.at.clone(),
            kind: ProblemKind::MissingFile,
            subject: format!("file {}", pinned_file(pin)),
            message: format!("{} does not exist in {target_tag}", pinned_file(pin)),
        });
        return problems;
    };
    let before = current.and_then(|set| interface_of(pin, set));
    let mut problem = |kind, subject: String, message: String, at: &Provenance| {
        problems.push(Problem {
            at: at.clone(),
            kind,
            subject,
            message,
        });
    };
    for (name, input) in &interface.inputs {
        if input.required && !pin.inputs.contains_key(name) {
            problem(
                ProblemKind::MissingInput,
                format!("input {name}"),
                format!("input {name} is mandatory in {target_tag} and not set"),
                &pin.at,
            );
        }
    }
    for (name, value) in &pin.inputs {
        match interface.inputs.get(name) {
            None => problem(
                ProblemKind::UnknownInput,
                format!("input {name}"),
                format!("input {name} is not declared in {target_tag} (removed or misspelt)"),
                &pin.at,
            ),
            Some(declared) => {
                if let Some((kind, message)) = check_value(interface.flavor, declared, value) {
                    problem(kind, format!("input {name}"), message, &pin.at);
                }
            }
        }
    }
    let inherits = pin
        .uses
        .iter()
        .any(|u| u.kind == TemplateUseKind::InheritsSecrets);
    for u in &pin.uses {
        let name = &u.name;
        let had = |f: &dyn Fn(&Interface) -> bool| before.is_some_and(f);
        match u.kind {
            TemplateUseKind::Extends | TemplateUseKind::Needs | TemplateUseKind::Overrides
                if had(&|i| i.jobs.contains_key(name)) && !interface.jobs.contains_key(name) =>
            {
                let how = match u.kind {
                    TemplateUseKind::Extends => "extends it".to_string(),
                    TemplateUseKind::Needs => "needs it".to_string(),
                    _ => "only overrides some of its keys (no script of its own)".to_string(),
                };
                problem(
                    ProblemKind::RemovedJob,
                    format!("job {name}"),
                    format!(
                        "job {name} is removed in {target_tag}; the app's job {} {how}",
                        u.job
                    ),
                    &u.at,
                );
            }
            TemplateUseKind::Stage if had(&|i| i.has_stage(name)) && !interface.has_stage(name) => {
                problem(
                    ProblemKind::RemovedStage,
                    format!("stage {name}"),
                    format!(
                        "stage {name} is removed in {target_tag}; the app's job {} runs in it",
                        u.job
                    ),
                    &u.at,
                );
            }
            TemplateUseKind::Output if !interface.outputs.contains_key(name) => problem(
                ProblemKind::RemovedOutput,
                format!("output {name}"),
                format!(
                    "output {name} is not declared in {target_tag}; the app's job {} reads it",
                    u.job
                ),
                &u.at,
            ),
            TemplateUseKind::Secret if !interface.secrets.contains_key(name) => problem(
                ProblemKind::UnknownSecret,
                format!("secret {name}"),
                format!("secret {name} is passed but not declared in {target_tag}"),
                &u.at,
            ),
            _ => {}
        }
    }
    if interface.flavor == Flavor::Github && !inherits {
        for (name, secret) in &interface.secrets {
            let passed = pin
                .uses
                .iter()
                .any(|u| u.kind == TemplateUseKind::Secret && u.name == *name);
            if secret.required && !passed {
                problem(
                    ProblemKind::MissingSecret,
                    format!("secret {name}"),
                    format!(
                        "secret {name} is required in {target_tag} and neither passed nor inherited"
                    ),
                    &pin.at,
                );
            }
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// Checks one value against its declaration; `None` when it is fine or
/// cannot be known before the pipeline runs (an expression).
pub fn check_value(
    flavor: Flavor,
    input: &Input,
    value: &serde_json::Value,
) -> Option<(ProblemKind, String)> {
    let name = &input.name;
    if let serde_json::Value::String(text) = value {
        let expression = match flavor {
            Flavor::Github => text.contains("${{"),
            Flavor::Gitlab => text.contains("$[["),
        };
        if expression {
            return None;
        }
    }
    if !input.ty.accepts(value) {
        return Some((
            ProblemKind::TypeMismatch,
            format!(
                "input {name} is a {} but the app passes {value}",
                input.ty.name()
            ),
        ));
    }
    if !input.options.is_empty() && !input.options.contains(value) {
        let options: Vec<String> = input.options.iter().map(plain).collect();
        return Some((
            ProblemKind::NotInOptions,
            format!(
                "input {name} value {} is not one of the options ({})",
                plain(value),
                options.join(", ")
            ),
        ));
    }
    if let (Some(pattern), serde_json::Value::String(text)) = (&input.regex, value)
        && let Ok(regex) = regex::Regex::new(pattern)
        && !regex.is_match(text)
    {
        return Some((
            ProblemKind::RegexMismatch,
            format!("input {name} value {text:?} does not match {pattern:?}"),
        ));
    }
    None
}

fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A pin as found in an app, with the release it resolves to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinState {
    pub kind: TemplateKind,
    /// The template file it names (`templates/build.yml`, `.github/workflows/build.yml`).
    pub file: String,
    /// The version as written (`v1.3.0`, `1.3.0`); `None` when unpinned.
    pub version: Option<String>,
    /// The release tag it resolves to, when it does.
    pub release: Option<String>,
    pub at: Provenance,
}

/// One app's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppCheck {
    pub service: String,
    pub repo: Option<String>,
    pub owner: Option<Owner>,
    pub tier: Option<Tier>,
    pub pins: Vec<PinState>,
    /// Empty when the app is safe on the release.
    pub problems: Vec<Problem>,
}

impl AppCheck {
    pub fn breaks(&self) -> bool {
        !self.problems.is_empty()
    }

    /// The distinct releases (or versions as written) the app is on today.
    pub fn current_versions(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .pins
            .iter()
            .map(|p| {
                p.release
                    .clone()
                    .or_else(|| p.version.clone())
                    .unwrap_or_else(|| "unpinned".to_string())
            })
            .collect();
        set.into_iter().collect()
    }
}

/// The verdict for every app using the template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetCheck {
    pub template: String,
    pub version: String,
    /// Every app that pins the template, sorted by name.
    pub apps: Vec<AppCheck>,
    /// Services that do not use the template.
    pub not_using: Vec<String>,
}

impl FleetCheck {
    pub fn breaking(&self) -> impl Iterator<Item = &AppCheck> {
        self.apps.iter().filter(|a| a.breaks())
    }

    pub fn safe(&self) -> impl Iterator<Item = &AppCheck> {
        self.apps.iter().filter(|a| !a.breaks())
    }
}

/// The releases a check needs the interfaces of: the target and every release pinned today.
pub fn releases_needed(
    fleet: &Fleet,
    source: &TemplateSource,
    releases: &Releases,
    target: &Release,
) -> BTreeSet<String> {
    let mut tags: BTreeSet<String> = fleet
        .services
        .iter()
        .flat_map(|s| source.pins(s))
        .filter_map(|p| releases.resolve(p.version.as_deref()?))
        .map(|r| r.tag.clone())
        .collect();
    tags.insert(target.tag.clone());
    tags
}

/// Checks every app of the fleet against `target`. `sets` holds the template
/// files of each release in [`releases_needed`], by tag.
pub fn check_fleet(
    fleet: &Fleet,
    source: &TemplateSource,
    releases: &Releases,
    sets: &BTreeMap<String, TemplateSet>,
    target: &Release,
) -> FleetCheck {
    let empty = TemplateSet::default();
    let target_set = sets.get(&target.tag).unwrap_or(&empty);
    let mut apps = Vec::new();
    let mut not_using = Vec::new();
    for service in &fleet.services {
        let pins = source.pins(service);
        if pins.is_empty() {
            not_using.push(service.name.clone());
            continue;
        }
        let mut states = Vec::new();
        let mut problems = Vec::new();
        for pin in pins {
            let release = pin.version.as_deref().and_then(|v| releases.resolve(v));
            let current = release.and_then(|r| sets.get(&r.tag));
            problems.extend(check_pin(pin, target_set, &target.tag, current));
            states.push(PinState {
                kind: pin.kind,
                file: pinned_file(pin),
                version: pin.version.clone(),
                release: release.map(|r| r.tag.clone()),
                at: pin.at.clone(),
            });
        }
        problems.sort();
        problems.dedup();
        apps.push(AppCheck {
            service: service.name.clone(),
            repo: service.repo.clone(),
            owner: service.owner.clone(),
            tier: service.tier,
            pins: states,
            problems,
        });
    }
    FleetCheck {
        template: source.name(),
        version: target.tag.clone(),
        apps,
        not_using,
    }
}

#[cfg(test)]
mod tests;
