//! GitHub Actions: which reusable workflows and actions a workflow file pins, at which refs.
//!
//! Template governance needs every repository's pins with their inputs, so
//! this module reads the two places a workflow names shared code
//! (<https://docs.github.com/actions/reference/workflows-and-actions/workflow-syntax>):
//!
//! - `jobs.<id>.uses: owner/repo/path/to/workflow.yml@ref` (a reusable
//!   workflow; inputs from the job's `with:`) becomes a
//!   [`TemplateKind::GithubWorkflow`] with source `owner/repo`, the path as
//!   file and the ref as version;
//! - `jobs.<id>.steps[].uses: owner/repo[/path]@ref` (an action; inputs from
//!   the step's `with:`) becomes a [`TemplateKind::GithubAction`] with source
//!   `owner/repo`, the path (if any) as file and the ref as version.
//!
//! Both carry the job id. Local references (`./...`) have source `.`, the
//! path without its `./` as file, and no version: they move with the
//! repository itself. `docker://` steps are skipped: they name a container
//! image, not a template, and image governance reads images elsewhere.
//!
//! A remote `uses:` without `@ref` is reported as unpinned (GitHub rejects
//! it at run time) and still recorded with no version, because the
//! dependency on the template is real either way. A commit SHA is a valid
//! pin and is kept as the version. `secrets:` (including `inherit`) is not
//! an input and is ignored. Each reference is located at its `uses:` line,
//! the line a bump commit rewrites.

use model::{
    Diagnostic, Facts, Provenance, TemplateKind, TemplateRef, TemplateUse, TemplateUseKind,
};
use std::collections::{BTreeMap, BTreeSet};
use yaml::{Node, Value};

/// Reads the template references of one workflow file.
///
/// Pure and total: a malformed file, job or step yields a diagnostic with
/// its line, and the rest of the file is still read.
pub fn parse(path: &str, text: &str) -> Facts {
    let (documents, error) = yaml::load(text);
    let mut reader = Reader {
        path,
        facts: Facts::default(),
    };
    for document in &documents {
        reader.workflow(document);
    }
    if let Some(e) = error {
        reader
            .facts
            .diagnostics
            .push(crate::yaml_diagnostic(path, &e));
    }
    reader.facts
}

struct Reader<'a> {
    path: &'a str,
    facts: Facts,
}

/// What a `uses:` names, before it becomes a [`TemplateRef`].
struct Target<'t> {
    source: &'t str,
    file: Option<&'t str>,
    version: Option<&'t str>,
}

impl Reader<'_> {
    fn warn(&mut self, line: u32, message: String) {
        self.facts
            .diagnostics
            .push(Diagnostic::warning(self.path, Some(line), message));
    }

    fn workflow(&mut self, document: &Node) {
        if document.is_null() {
            return;
        }
        if document.as_map().is_none() {
            self.warn(
                document.line,
                "expected a mapping with on: and jobs: at the top level".to_string(),
            );
            return;
        }
        let Some(jobs) = document.get("jobs").filter(|j| !j.is_null()) else {
            return;
        };
        let Some(jobs) = jobs.as_map() else {
            self.warn(
                jobs.line,
                format!("jobs must be a mapping of job ids, found {}", jobs.shape()),
            );
            return;
        };
        let reads = output_reads(self.path, jobs);
        for (id, job) in jobs {
            let Some(id) = id.as_str() else {
                self.warn(id.line, "job id must be a string".to_string());
                continue;
            };
            if job.as_map().is_none() {
                self.warn(
                    job.line,
                    format!("job {id} must be a mapping, found {}", job.shape()),
                );
                continue;
            }
            self.job(id, job, &reads);
        }
    }

    fn job(&mut self, id: &str, job: &Node, reads: &BTreeMap<&str, Vec<TemplateUse>>) {
        if let Some(uses) = job.get("uses") {
            let first = self.facts.templates.len();
            self.workflow_call(id, uses, job.get("with"));
            if let Some(template) = self.facts.templates.get_mut(first) {
                template.uses = workflow_uses(self.path, id, job, reads);
            }
        }
        let Some(steps) = job.get("steps").filter(|s| !s.is_null()) else {
            return;
        };
        let Some(steps) = steps.as_seq() else {
            self.warn(
                steps.line,
                format!("steps of job {id} must be a list, found {}", steps.shape()),
            );
            return;
        };
        for step in steps {
            if step.as_map().is_none() {
                self.warn(
                    step.line,
                    format!("step of job {id} must be a mapping, found {}", step.shape()),
                );
                continue;
            }
            if let Some(uses) = step.get("uses") {
                self.action(id, uses, step.get("with"));
            }
        }
    }

    /// `jobs.<id>.uses`: a reusable workflow.
    fn workflow_call(&mut self, id: &str, uses: &Node, with: Option<&Node>) {
        let Some(text) = self.uses_text(id, uses) else {
            return;
        };
        let target = if let Some(local) = text.strip_prefix("./") {
            Target {
                source: ".",
                file: Some(local),
                version: None,
            }
        } else {
            match split_remote(text) {
                Some(target @ Target { file: Some(_), .. }) => target,
                _ => {
                    self.warn(
                        uses.line,
                        format!(
                            "invalid reusable workflow {text} in job {id}: expected owner/repo/path/to/workflow.yml@ref or ./path"
                        ),
                    );
                    return;
                }
            }
        };
        self.record(
            TemplateKind::GithubWorkflow,
            "reusable workflow",
            id,
            uses,
            with,
            target,
        );
    }

    /// `jobs.<id>.steps[].uses`: an action.
    fn action(&mut self, id: &str, uses: &Node, with: Option<&Node>) {
        let Some(text) = self.uses_text(id, uses) else {
            return;
        };
        if text.starts_with("docker://") {
            return;
        }
        let target = if let Some(local) = text.strip_prefix("./") {
            let local = local.trim_end_matches('/');
            Target {
                source: ".",
                file: (!local.is_empty()).then_some(local),
                version: None,
            }
        } else {
            match split_remote(text) {
                Some(target) => target,
                None => {
                    self.warn(
                        uses.line,
                        format!(
                            "invalid action {text} in job {id}: expected owner/repo[/path]@ref, ./path or docker://image"
                        ),
                    );
                    return;
                }
            }
        };
        self.record(TemplateKind::GithubAction, "action", id, uses, with, target);
    }

    /// The text of a `uses:`, or a warning when it is not a non-empty string.
    fn uses_text<'n>(&mut self, id: &str, uses: &'n Node) -> Option<&'n str> {
        let text = uses.as_str().map(str::trim).filter(|t| !t.is_empty());
        if text.is_none() {
            self.warn(
                uses.line,
                format!(
                    "uses in job {id} must be a non-empty string, found {}",
                    uses.shape()
                ),
            );
        }
        text
    }

    fn record(
        &mut self,
        kind: TemplateKind,
        what: &str,
        id: &str,
        uses: &Node,
        with: Option<&Node>,
        target: Target<'_>,
    ) {
        if target.version.is_none() && target.source != "." {
            let name = match target.file {
                Some(file) => format!("{}/{file}", target.source),
                None => target.source.to_string(),
            };
            self.warn(
                uses.line,
                format!(
                    "unpinned {what} {name} in job {id}: no @ref (GitHub requires a tag, branch or commit SHA)"
                ),
            );
        }
        let inputs = self.inputs(id, with);
        self.facts.templates.push(TemplateRef {
            kind,
            source: target.source.to_string(),
            file: target.file.map(str::to_string),
            version: target.version.map(str::to_string),
            inputs,
            job: Some(id.to_string()),
            uses: Vec::new(),
            at: Provenance::new(self.path, uses.line),
        });
    }

    /// `with:` as JSON values; a malformed one is reported and read as empty,
    /// since the reference itself is still a dependency.
    fn inputs(&mut self, id: &str, with: Option<&Node>) -> BTreeMap<String, serde_json::Value> {
        let Some(with) = with.filter(|w| !w.is_null()) else {
            return BTreeMap::new();
        };
        with.json_map().unwrap_or_else(|| {
            self.warn(
                with.line,
                format!("with in job {id} must be a mapping, found {}", with.shape()),
            );
            BTreeMap::new()
        })
    }
}

/// What a job calling a reusable workflow relies on it to define besides its
/// inputs: the secrets it passes (or `inherit`) and the outputs other jobs read.
fn workflow_uses(
    path: &str,
    id: &str,
    job: &Node,
    reads: &BTreeMap<&str, Vec<TemplateUse>>,
) -> Vec<TemplateUse> {
    let mut uses = reads.get(id).cloned().unwrap_or_default();
    let secret = |kind, name: &str, line| TemplateUse {
        kind,
        name: name.to_string(),
        job: id.to_string(),
        at: Provenance::new(path, line),
    };
    if let Some(secrets) = job.get("secrets") {
        match secrets.as_map() {
            Some(pairs) => {
                uses.extend(pairs.iter().filter_map(|(k, _)| {
                    Some(secret(TemplateUseKind::Secret, k.as_str()?, k.line))
                }))
            }
            None if secrets.as_str() == Some("inherit") => uses.push(secret(
                TemplateUseKind::InheritsSecrets,
                "inherit",
                secrets.line,
            )),
            None => {}
        }
    }
    uses.sort();
    uses.dedup();
    uses
}

/// Every `needs.<job>.outputs.<name>` expression in the workflow's jobs, by the job it reads.
fn output_reads<'n>(path: &str, jobs: &'n [(Node, Node)]) -> BTreeMap<&'n str, Vec<TemplateUse>> {
    fn scalars<'a>(node: &'a Node, out: &mut Vec<(&'a str, u32)>) {
        match &node.value {
            Value::Scalar { text, .. } => out.push((text, node.line)),
            Value::Seq(items) => items.iter().for_each(|n| scalars(n, out)),
            Value::Map(pairs) => pairs.iter().for_each(|(_, v)| scalars(v, out)),
        }
    }
    let mut reads: BTreeMap<&str, Vec<TemplateUse>> = BTreeMap::new();
    let ids: BTreeSet<&str> = jobs.iter().filter_map(|(k, _)| k.as_str()).collect();
    for (reader, body) in jobs {
        let Some(reader) = reader.as_str() else {
            continue;
        };
        let mut texts = Vec::new();
        scalars(body, &mut texts);
        for (text, line) in texts {
            let mut rest = text;
            while let Some(at) = rest.find("needs.") {
                rest = &rest[at + "needs.".len()..];
                let word = |s: &str| {
                    s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                        .unwrap_or(s.len())
                };
                let (job, after) = rest.split_at(word(rest));
                let Some(after) = after.strip_prefix(".outputs.") else {
                    continue;
                };
                let output = &after[..word(after)];
                if let (Some(job), false) = (ids.get(job), output.is_empty()) {
                    reads.entry(job).or_default().push(TemplateUse {
                        kind: TemplateUseKind::Output,
                        name: output.to_string(),
                        job: reader.to_string(),
                        at: Provenance::new(path, line),
                    });
                }
            }
        }
    }
    reads
}

/// Splits `owner/repo[/path]@ref`; `None` when owner or repo is missing.
///
/// The first `@` ends the path (GitHub paths cannot hold one); the ref may
/// hold `/` (a branch like `release/v2`). An empty ref counts as no ref.
fn split_remote(text: &str) -> Option<Target<'_>> {
    let (target, version) = match text.split_once('@') {
        Some((target, version)) => (target, Some(version.trim()).filter(|v| !v.is_empty())),
        None => (text, None),
    };
    let mut parts = target.splitn(3, '/');
    let owner = parts.next().filter(|p| !p.is_empty())?;
    let repo = parts.next().filter(|p| !p.is_empty())?;
    let file = parts
        .next()
        .map(|f| f.trim_end_matches('/'))
        .filter(|f| !f.is_empty());
    Some(Target {
        source: &target[..owner.len() + 1 + repo.len()],
        file,
        version,
    })
}

#[cfg(test)]
mod tests;
