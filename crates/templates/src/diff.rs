//! Interface diffs: every change between two releases of a template, each
//! classified by the release step it requires, with the reason.
//!
//! The rules (docs/templates.md has the same table):
//!
//! | change                                              | severity | why |
//! |-----------------------------------------------------|----------|-----|
//! | template file removed                               | major    | every app including it fails |
//! | input removed                                       | major    | apps that set it fail: unknown input |
//! | input added without default / `required: true`     | major    | apps that do not set it fail |
//! | input optional -> mandatory                         | major    | apps relying on the default fail |
//! | input type changed                                  | major    | values of the old type are rejected |
//! | options narrowed, or introduced                     | major    | apps passing a dropped value fail |
//! | regex added or changed                              | major    | values the old one accepted may be rejected |
//! | job removed or renamed (hidden `.jobs` included)    | major    | apps that extend, need or override it fail |
//! | stage removed                                       | major    | app jobs in that stage fail |
//! | required secret added, secret removed, optional -> required | major | callers not passing it (or passing the removed one) fail |
//! | output removed                                      | major    | callers reading it get nothing |
//! | default changed                                     | warning  | apps relying on the default change behaviour silently; at least minor |
//! | input, job, stage, secret, output or file added (optional) | minor | new capability, nobody breaks |
//! | options widened or removed, regex removed, mandatory -> optional | minor | accepts more |
//! | job definition changed, description changed         | patch    | same interface, different behaviour or text |

use crate::interface::{Input, Interface, Job, TemplateSet};
use crate::version::Bump;
use model::Provenance;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// How much a change matters for the release number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Patch,
    Minor,
    /// Compatible on paper, but apps may behave differently: needs at least a minor release.
    Warning,
    Major,
}

impl Severity {
    /// The smallest release step that may carry the change.
    pub fn bump(self) -> Bump {
        match self {
            Severity::Patch => Bump::Patch,
            Severity::Minor | Severity::Warning => Bump::Minor,
            Severity::Major => Bump::Major,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Patch => "patch",
            Severity::Minor => "minor",
            Severity::Warning => "warning",
            Severity::Major => "major",
        })
    }
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    FileRemoved,
    FileAdded,
    InputRemoved,
    InputAdded,
    InputMadeMandatory,
    InputMadeOptional,
    InputTypeChanged,
    OptionsNarrowed,
    OptionsWidened,
    OptionsAdded,
    OptionsRemoved,
    RegexAdded,
    RegexChanged,
    RegexRemoved,
    DefaultChanged,
    DescriptionChanged,
    JobRemoved,
    JobRenamed,
    JobAdded,
    JobChanged,
    StageRemoved,
    StageAdded,
    SecretAdded,
    SecretRemoved,
    SecretMadeRequired,
    SecretMadeOptional,
    OutputRemoved,
    OutputAdded,
}

/// One change between two releases of a template file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceChange {
    /// The template file.
    pub file: String,
    pub kind: ChangeKind,
    /// What changed: `input image`, `job lint`, `stage lint`.
    pub subject: String,
    pub severity: Severity,
    pub reason: String,
    /// Where, in the newer release when the thing still exists, else in the older one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Provenance>,
}

/// The smallest release step that carries every change (`Bump::None` when nothing changed).
pub fn required_bump(changes: &[InterfaceChange]) -> Bump {
    changes
        .iter()
        .map(|c| c.severity.bump())
        .max()
        .unwrap_or(Bump::None)
}

/// Every change between two releases of the whole set of template files,
/// sorted by file, then by severity (major first), then by subject.
pub fn diff_sets(old: &TemplateSet, new: &TemplateSet) -> Vec<InterfaceChange> {
    let mut changes = Vec::new();
    let files: BTreeSet<&String> = old.files.keys().chain(new.files.keys()).collect();
    for file in files {
        match (old.files.get(file), new.files.get(file)) {
            (Some(before), Some(after)) => changes.extend(diff(before, after)),
            (Some(before), None) => changes.push(InterfaceChange {
                file: file.clone(),
                kind: ChangeKind::FileRemoved,
                subject: format!("file {file}"),
                severity: Severity::Major,
                reason: "template file removed: every app that includes it fails".to_string(),
                at: Some(Provenance::new(&before.path, 1)),
            }),
            (None, Some(after)) => changes.push(InterfaceChange {
                file: file.clone(),
                kind: ChangeKind::FileAdded,
                subject: format!("file {file}"),
                severity: Severity::Minor,
                reason: "new template file: nobody uses it yet".to_string(),
                at: Some(Provenance::new(&after.path, 1)),
            }),
            (None, None) => {}
        }
    }
    sort(&mut changes);
    changes
}

fn sort(changes: &mut [InterfaceChange]) {
    changes.sort_by(|a, b| {
        (&a.file, std::cmp::Reverse(a.severity), &a.subject, a.kind).cmp(&(
            &b.file,
            std::cmp::Reverse(b.severity),
            &b.subject,
            b.kind,
        ))
    });
}

/// Every change between two releases of one template file.
pub fn diff(old: &Interface, new: &Interface) -> Vec<InterfaceChange> {
    let mut out = Changes {
        file: &new.path,
        changes: Vec::new(),
    };
    inputs(&mut out, old, new);
    jobs(&mut out, &old.jobs, &new.jobs);
    stages(&mut out, old, new);
    secrets(&mut out, old, new);
    outputs(&mut out, old, new);
    let mut changes = out.changes;
    sort(&mut changes);
    changes
}

struct Changes<'a> {
    file: &'a str,
    changes: Vec<InterfaceChange>,
}

impl Changes<'_> {
    fn push(
        &mut self,
        kind: ChangeKind,
        subject: String,
        severity: Severity,
        reason: String,
        at: &Provenance,
    ) {
        self.changes.push(InterfaceChange {
            file: self.file.to_string(),
            kind,
            subject,
            severity,
            reason,
            at: Some(at.clone()),
        });
    }
}

fn inputs(out: &mut Changes<'_>, old: &Interface, new: &Interface) {
    for (name, before) in &old.inputs {
        let subject = format!("input {name}");
        let Some(after) = new.inputs.get(name) else {
            out.push(
                ChangeKind::InputRemoved,
                subject,
                Severity::Major,
                format!("input {name} removed: apps that set it fail with an unknown input"),
                &before.at,
            );
            continue;
        };
        input(out, subject, before, after);
    }
    for (name, after) in new
        .inputs
        .iter()
        .filter(|(n, _)| !old.inputs.contains_key(*n))
    {
        let subject = format!("input {name}");
        if after.required {
            out.push(
                ChangeKind::InputAdded,
                subject,
                Severity::Major,
                format!(
                    "new mandatory input {name} ({}): every app that does not set it fails",
                    mandatory_why(new)
                ),
                &after.at,
            );
        } else {
            out.push(
                ChangeKind::InputAdded,
                subject,
                Severity::Minor,
                format!("new optional input {name}: existing apps keep working"),
                &after.at,
            );
        }
    }
}

fn mandatory_why(interface: &Interface) -> &'static str {
    match interface.flavor {
        crate::interface::Flavor::Gitlab => "no default",
        crate::interface::Flavor::Github => "required: true",
    }
}

fn input(out: &mut Changes<'_>, subject: String, before: &Input, after: &Input) {
    let name = &after.name;
    let at = &after.at;
    if !before.required && after.required {
        out.push(
            ChangeKind::InputMadeMandatory,
            subject.clone(),
            Severity::Major,
            format!("input {name} is now mandatory: apps that relied on its default fail"),
            at,
        );
    } else if before.required && !after.required {
        out.push(
            ChangeKind::InputMadeOptional,
            subject.clone(),
            Severity::Minor,
            format!("input {name} is now optional"),
            at,
        );
    }
    if before.ty != after.ty {
        out.push(
            ChangeKind::InputTypeChanged,
            subject.clone(),
            Severity::Major,
            format!(
                "input {name} changed type from {} to {}: apps passing a {} fail",
                before.ty.name(),
                after.ty.name(),
                before.ty.name()
            ),
            at,
        );
    }
    options(out, &subject, before, after);
    match (&before.regex, &after.regex) {
        (None, Some(regex)) => out.push(
            ChangeKind::RegexAdded,
            subject.clone(),
            Severity::Major,
            format!("input {name} now must match {regex:?}: values that do not fail"),
            at,
        ),
        (Some(old), Some(new)) if old != new => out.push(
            ChangeKind::RegexChanged,
            subject.clone(),
            Severity::Major,
            format!(
                "input {name} regex changed from {old:?} to {new:?}: values the old one accepted may be rejected"
            ),
            at,
        ),
        (Some(old), None) => out.push(
            ChangeKind::RegexRemoved,
            subject.clone(),
            Severity::Minor,
            format!("input {name} no longer has to match {old:?}"),
            at,
        ),
        _ => {}
    }
    if before.default != after.default && !after.required && !before.required {
        out.push(
            ChangeKind::DefaultChanged,
            subject.clone(),
            Severity::Warning,
            format!(
                "input {name} default changed from {} to {}: apps that do not set it behave differently",
                show(before.default.as_ref()),
                show(after.default.as_ref())
            ),
            at,
        );
    }
    if before.description != after.description {
        out.push(
            ChangeKind::DescriptionChanged,
            subject,
            Severity::Patch,
            format!("input {name} description changed"),
            at,
        );
    }
}

fn options(out: &mut Changes<'_>, subject: &str, before: &Input, after: &Input) {
    let name = &after.name;
    let at = &after.at;
    match (before.options.is_empty(), after.options.is_empty()) {
        (true, true) => {}
        (true, false) => out.push(
            ChangeKind::OptionsAdded,
            subject.to_string(),
            Severity::Major,
            format!(
                "input {name} now accepts only {}: any other value fails",
                list(&after.options)
            ),
            at,
        ),
        (false, true) => out.push(
            ChangeKind::OptionsRemoved,
            subject.to_string(),
            Severity::Minor,
            format!("input {name} accepts any value now"),
            at,
        ),
        (false, false) => {
            let dropped: Vec<serde_json::Value> = before
                .options
                .iter()
                .filter(|o| !after.options.contains(o))
                .cloned()
                .collect();
            let added: Vec<serde_json::Value> = after
                .options
                .iter()
                .filter(|o| !before.options.contains(o))
                .cloned()
                .collect();
            if !dropped.is_empty() {
                out.push(
                    ChangeKind::OptionsNarrowed,
                    subject.to_string(),
                    Severity::Major,
                    format!(
                        "input {name} options narrowed: {} no longer accepted",
                        list(&dropped)
                    ),
                    at,
                );
            }
            if !added.is_empty() {
                out.push(
                    ChangeKind::OptionsWidened,
                    subject.to_string(),
                    Severity::Minor,
                    format!("input {name} options widened: {} accepted", list(&added)),
                    at,
                );
            }
        }
    }
}

fn jobs(out: &mut Changes<'_>, old: &BTreeMap<String, Job>, new: &BTreeMap<String, Job>) {
    let removed: Vec<&Job> = old
        .values()
        .filter(|j| !new.contains_key(&j.name))
        .collect();
    let mut added: Vec<&Job> = new
        .values()
        .filter(|j| !old.contains_key(&j.name))
        .collect();
    for job in removed {
        let name = &job.name;
        // A removed job whose exact definition reappears under another name was renamed.
        let renamed = added.iter().position(|a| a.body == job.body);
        match renamed {
            Some(i) => {
                let to = added.remove(i);
                out.push(
                    ChangeKind::JobRenamed,
                    format!("job {name}"),
                    Severity::Major,
                    format!(
                        "job {name} renamed to {}: apps that extend, need or override {name} fail",
                        to.name
                    ),
                    &to.at,
                );
            }
            None => out.push(
                ChangeKind::JobRemoved,
                format!("job {name}"),
                Severity::Major,
                format!("job {name} removed: apps that extend, need or override it fail"),
                &job.at,
            ),
        }
    }
    for job in added {
        out.push(
            ChangeKind::JobAdded,
            format!("job {}", job.name),
            Severity::Minor,
            format!("new job {}: pipelines run one more job", job.name),
            &job.at,
        );
    }
    for (name, after) in new {
        if let Some(before) = old.get(name)
            && before.body != after.body
        {
            out.push(
                ChangeKind::JobChanged,
                format!("job {name}"),
                Severity::Patch,
                format!("job {name} definition changed"),
                &after.at,
            );
        }
    }
}

fn stages(out: &mut Changes<'_>, old: &Interface, new: &Interface) {
    for stage in &old.stages {
        if !new.has_stage(&stage.name) {
            let at = stage
                .at
                .clone()
                .unwrap_or_else(|| Provenance::new(&old.path, 1));
            out.push(
                ChangeKind::StageRemoved,
                format!("stage {}", stage.name),
                Severity::Major,
                format!(
                    "stage {} removed: app jobs in that stage fail with an unknown stage",
                    stage.name
                ),
                &at,
            );
        }
    }
    for stage in &new.stages {
        if !old.has_stage(&stage.name) {
            let at = stage
                .at
                .clone()
                .unwrap_or_else(|| Provenance::new(&new.path, 1));
            out.push(
                ChangeKind::StageAdded,
                format!("stage {}", stage.name),
                Severity::Minor,
                format!("new stage {}", stage.name),
                &at,
            );
        }
    }
}

fn secrets(out: &mut Changes<'_>, old: &Interface, new: &Interface) {
    for (name, before) in &old.secrets {
        match new.secrets.get(name) {
            None => out.push(
                ChangeKind::SecretRemoved,
                format!("secret {name}"),
                Severity::Major,
                format!("secret {name} removed: callers that pass it explicitly fail"),
                &before.at,
            ),
            Some(after) if after.required && !before.required => out.push(
                ChangeKind::SecretMadeRequired,
                format!("secret {name}"),
                Severity::Major,
                format!("secret {name} is now required: callers that do not pass it fail"),
                &after.at,
            ),
            Some(after) if !after.required && before.required => out.push(
                ChangeKind::SecretMadeOptional,
                format!("secret {name}"),
                Severity::Minor,
                format!("secret {name} is now optional"),
                &after.at,
            ),
            Some(_) => {}
        }
    }
    for (name, after) in new
        .secrets
        .iter()
        .filter(|(n, _)| !old.secrets.contains_key(*n))
    {
        let (severity, reason) = if after.required {
            (
                Severity::Major,
                format!(
                    "new required secret {name}: callers that neither pass it nor inherit secrets fail"
                ),
            )
        } else {
            (Severity::Minor, format!("new optional secret {name}"))
        };
        out.push(
            ChangeKind::SecretAdded,
            format!("secret {name}"),
            severity,
            reason,
            &after.at,
        );
    }
}

fn outputs(out: &mut Changes<'_>, old: &Interface, new: &Interface) {
    for (name, before) in &old.outputs {
        if !new.outputs.contains_key(name) {
            out.push(
                ChangeKind::OutputRemoved,
                format!("output {name}"),
                Severity::Major,
                format!("output {name} removed: callers that read it get nothing"),
                &before.at,
            );
        }
    }
    for (name, after) in new
        .outputs
        .iter()
        .filter(|(n, _)| !old.outputs.contains_key(*n))
    {
        out.push(
            ChangeKind::OutputAdded,
            format!("output {name}"),
            Severity::Minor,
            format!("new output {name}"),
            &after.at,
        );
    }
}

fn show(value: Option<&serde_json::Value>) -> String {
    value.map_or_else(|| "none".to_string(), ToString::to_string)
}

fn list(values: &[serde_json::Value]) -> String {
    values
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
