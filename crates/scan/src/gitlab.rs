//! GitLab CI: which shared templates a `.gitlab-ci.yml` (or a CI file it includes) pulls in.
//!
//! Template governance needs to know, for every repository, which template
//! is pinned at which version and with which inputs, so this module reads
//! `include:` in every shape GitLab accepts (<https://docs.gitlab.com/ci/yaml/#include>):
//!
//! - a single entry or a list of entries;
//! - a string: `remote` when it is an `http(s)://` URL, `local` otherwise
//!   (GitLab's own rule);
//! - a mapping with exactly one of `local:`, `project:` (+ `ref:`, + `file:` as
//!   a string or a list), `remote:`, `template:` or `component:`
//!   (`host/path/name@version`), optionally with `inputs:`.
//!
//! Child pipelines (`<job>: trigger: include:`) name their configuration the
//! same way, so they are read too and carry the job's name in
//! [`TemplateRef::job`]; `artifact:` entries there are generated at run time
//! and pin nothing, so they are skipped.
//!
//! Conventions of the resulting [`TemplateRef`]s:
//!
//! | kind      | `source`                  | `file`           | `version`   |
//! |-----------|---------------------------|------------------|-------------|
//! | local     | `.` (this repository)     | the path         | none        |
//! | project   | the project path          | one per `file:`  | `ref:`      |
//! | remote    | the URL                   | none             | none        |
//! | template  | the template name         | none             | none        |
//! | component | `host/path` before name   | component name   | after `@`   |
//!
//! Every reference is located at its include entry (for a `file:` list, at
//! that file's item), which is the line a bump commit has to rewrite.
//!
//! A pipeline file may start with a `spec:` header document (declared inputs)
//! separated from the configuration by `---`; `include:` is read only from
//! the configuration. `rules:` on include entries are ignored: a conditional
//! include is still a dependency on the template.

use model::{
    Diagnostic, Facts, Provenance, TemplateKind, TemplateRef, TemplateUse, TemplateUseKind,
};
use std::collections::{BTreeMap, BTreeSet};
use yaml::{Node, Value};

/// Reads the template references of one GitLab CI file.
///
/// Pure and total: a malformed file or entry yields a diagnostic with its
/// line, and the rest of the file is still read.
pub fn parse(path: &str, text: &str) -> Facts {
    let (documents, error) = yaml::load(text);
    let mut reader = Reader {
        path,
        facts: Facts::default(),
    };
    // The header is only a header when configuration follows it; a lone
    // document is the configuration, whatever its keys.
    let has_header = documents.len() > 1 && documents[0].get("spec").is_some();
    for document in documents.iter().skip(usize::from(has_header)) {
        reader.document(document);
    }
    if let Some(e) = error {
        reader
            .facts
            .diagnostics
            .push(crate::yaml_diagnostic(path, &e));
    }
    reader.facts
}

/// The keys that say where an include entry's file comes from; an entry needs exactly one.
const SOURCE_KEYS: [&str; 5] = ["local", "project", "remote", "template", "component"];

struct Reader<'a> {
    path: &'a str,
    facts: Facts,
}

impl Reader<'_> {
    fn warn(&mut self, line: u32, message: String) {
        self.facts
            .diagnostics
            .push(Diagnostic::warning(self.path, Some(line), message));
    }

    fn document(&mut self, document: &Node) {
        if document.is_null() {
            return;
        }
        let Some(pairs) = document.as_map() else {
            self.warn(
                document.line,
                "expected a mapping of keywords and jobs at the top level".to_string(),
            );
            return;
        };
        let first = self.facts.templates.len();
        if let Some((key, include)) = pair(document, "include") {
            self.includes(key, include, None);
        }
        for (name, job) in pairs {
            if let Some((key, include)) = job.get("trigger").and_then(|t| pair(t, "include")) {
                self.includes(key, include, name.as_str());
            }
        }
        if self.facts.templates.len() > first {
            let uses = template_uses(self.path, pairs);
            for template in &mut self.facts.templates[first..] {
                template.uses.clone_from(&uses);
            }
        }
    }

    /// An `include:` value: one entry or a list of them.
    fn includes(&mut self, key: &Node, include: &Node, job: Option<&str>) {
        match &include.value {
            Value::Seq(entries) => {
                for entry in entries {
                    self.entry(entry, job);
                }
            }
            // An empty value has no line of its own worth showing; its key has.
            _ if include.is_null() => self.warn(key.line, "empty include".to_string()),
            _ => self.entry(include, job),
        }
    }

    fn entry(&mut self, entry: &Node, job: Option<&str>) {
        match &entry.value {
            Value::Map(_) => self.mapping_entry(entry, job),
            // A plain `42` or `true` is not a path to GitLab either; a quoted one is.
            Value::Scalar { text, .. } if entry.to_json().is_string() => {
                self.string_entry(text, entry.line, job);
            }
            _ => self.warn(
                entry.line,
                format!(
                    "include entry must be a string or a mapping, found {}",
                    entry.shape()
                ),
            ),
        }
    }

    fn string_entry(&mut self, text: &str, line: u32, job: Option<&str>) {
        let text = text.trim();
        if text.is_empty() {
            self.warn(line, "empty include".to_string());
            return;
        }
        match scheme(text) {
            None => {
                let local = TemplateRef {
                    file: Some(text.to_string()),
                    ..self.template(TemplateKind::GitlabLocal, ".", job, line)
                };
                self.facts.templates.push(local);
            }
            Some(s) if s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http") => {
                let remote = self.template(TemplateKind::GitlabRemote, text, job, line);
                self.facts.templates.push(remote);
            }
            Some(s) => self.warn(
                line,
                format!(
                    "include {text}: unsupported URL scheme {s} (GitLab fetches http and https only)"
                ),
            ),
        }
    }

    fn mapping_entry(&mut self, entry: &Node, job: Option<&str>) {
        let line = entry.line;
        let keys: Vec<&str> = SOURCE_KEYS
            .into_iter()
            .filter(|k| entry.get(k).is_some())
            .collect();
        let key = match keys.as_slice() {
            [key] => *key,
            // Generated by an earlier job of the same pipeline: nothing to pin.
            [] if job.is_some() && entry.get("artifact").is_some() => return,
            [] => {
                self.warn(
                    line,
                    "include entry has none of local, project, remote, template or component"
                        .to_string(),
                );
                return;
            }
            _ => {
                self.warn(
                    line,
                    format!(
                        "include entry mixes {}; GitLab accepts only one",
                        keys.join(" and ")
                    ),
                );
                return;
            }
        };
        let inputs = self.inputs(entry);
        let Some(value) = self.text(entry, key) else {
            return;
        };
        let template = match key {
            "local" => TemplateRef {
                file: Some(value.to_string()),
                ..self.template(TemplateKind::GitlabLocal, ".", job, line)
            },
            "remote" => self.template(TemplateKind::GitlabRemote, value, job, line),
            "template" => self.template(TemplateKind::GitlabTemplate, value, job, line),
            "component" => match split_component(value) {
                Some((source, name, version)) => TemplateRef {
                    file: Some(name.to_string()),
                    version: Some(version.to_string()),
                    ..self.template(TemplateKind::GitlabComponent, source, job, line)
                },
                None => {
                    self.warn(
                        line,
                        format!("invalid component {value}: expected host/project/name@version"),
                    );
                    return;
                }
            },
            _ => return self.project(entry, value, inputs, job),
        };
        self.facts
            .templates
            .push(TemplateRef { inputs, ..template });
    }

    /// `project:` + `ref:` + `file:`; one reference per file, each at its own line.
    fn project(
        &mut self,
        entry: &Node,
        project: &str,
        inputs: BTreeMap<String, serde_json::Value>,
        job: Option<&str>,
    ) {
        let line = entry.line;
        let Some(file) = entry.get("file").filter(|f| !f.is_null()) else {
            self.warn(line, format!("include of project {project} has no file"));
            return;
        };
        // A single file is located at its entry, like every other include;
        // each item of a list at its own line, so one can be bumped alone.
        let files: Vec<(&Node, u32)> = match &file.value {
            Value::Seq(items) => items.iter().map(|f| (f, f.line)).collect(),
            _ => vec![(file, line)],
        };
        if files.is_empty() {
            self.warn(
                file.line,
                format!("include of project {project} has an empty file list"),
            );
            return;
        }
        let version = match entry.get("ref") {
            Some(r) if r.is_null() => None,
            Some(r) => match r.as_str() {
                Some(text) => Some(text),
                None => {
                    self.warn(
                        r.line,
                        format!(
                            "ref of project {project} must be a string, found {}",
                            r.shape()
                        ),
                    );
                    return;
                }
            },
            None => None,
        };
        if version.is_none() {
            self.warn(
                line,
                format!("unpinned include of {project}: follows the default branch"),
            );
        }
        for (file, at) in files {
            match file.as_str() {
                Some(name) => {
                    let template = TemplateRef {
                        file: Some(name.to_string()),
                        version: version.map(str::to_string),
                        inputs: inputs.clone(),
                        ..self.template(TemplateKind::GitlabProject, project, job, at)
                    };
                    self.facts.templates.push(template);
                }
                None => self.warn(
                    file.line,
                    format!(
                        "file of project {project} must be a string, found {}",
                        file.shape()
                    ),
                ),
            }
        }
    }

    /// The string under `key`, or a warning when it is something else.
    fn text<'n>(&mut self, entry: &'n Node, key: &str) -> Option<&'n str> {
        let node = entry.get(key)?;
        match node.as_str().map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => Some(text),
            None => {
                self.warn(
                    node.line,
                    format!(
                        "include {key} must be a non-empty string, found {}",
                        node.shape()
                    ),
                );
                None
            }
        }
    }

    /// `inputs:` as JSON values; a malformed one is reported and read as empty,
    /// since the reference itself is still a dependency.
    fn inputs(&mut self, entry: &Node) -> BTreeMap<String, serde_json::Value> {
        let Some(inputs) = entry.get("inputs").filter(|i| !i.is_null()) else {
            return BTreeMap::new();
        };
        inputs.json_map().unwrap_or_else(|| {
            self.warn(
                inputs.line,
                format!("include inputs must be a mapping, found {}", inputs.shape()),
            );
            BTreeMap::new()
        })
    }

    /// A reference to `source` with no file, version or inputs yet.
    fn template(
        &self,
        kind: TemplateKind,
        source: &str,
        job: Option<&str>,
        line: u32,
    ) -> TemplateRef {
        TemplateRef {
            kind,
            source: source.to_string(),
            file: None,
            version: None,
            inputs: BTreeMap::new(),
            job: job.map(str::to_string),
            uses: Vec::new(),
            at: Provenance::new(self.path, line),
        }
    }
}

/// Top-level keys of a pipeline that are keywords, not job names.
pub const KEYWORDS: [&str; 11] = [
    "default",
    "include",
    "stages",
    "variables",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
    "spec",
];

/// What the file's jobs rely on included templates to define: jobs they
/// `extends:` or `needs:` that the file does not define itself, jobs that only
/// override keys of an included job (no `script`, `trigger` or `extends` of
/// their own), and the stages its jobs run in when it declares no `stages:`.
fn template_uses(path: &str, pairs: &[(Node, Node)]) -> Vec<TemplateUse> {
    let jobs: Vec<(&str, &Node, &Node)> = pairs
        .iter()
        .filter_map(|(key, body)| {
            let name = key.as_str()?;
            (!KEYWORDS.contains(&name) && body.as_map().is_some()).then_some((name, key, body))
        })
        .collect();
    let defined: BTreeSet<&str> = jobs.iter().map(|(name, ..)| *name).collect();
    let own_stages = pairs.iter().any(|(k, _)| k.as_str() == Some("stages"));
    let mut uses = Vec::new();
    for (job, key, body) in jobs {
        let mut add = |kind, name: &str, line| {
            uses.push(TemplateUse {
                kind,
                name: name.to_string(),
                job: job.to_string(),
                at: Provenance::new(path, line),
            });
        };
        let extends = body.get("extends").map_or(&[][..], |e| match &e.value {
            Value::Seq(items) => items.as_slice(),
            _ => std::slice::from_ref(e),
        });
        for target in extends {
            if let Some(name) = target.as_str().filter(|n| !defined.contains(n)) {
                add(TemplateUseKind::Extends, name, target.line);
            }
        }
        for need in body.get("needs").and_then(Node::as_seq).unwrap_or_default() {
            // Cross-project and parent-pipeline needs, and optional ones, cannot break on a template.
            let optional = need.get("optional").map(Node::to_json) == Some(true.into());
            let other_pipeline = need.get("pipeline").is_some() || need.get("project").is_some();
            let name = need
                .as_str()
                .or_else(|| need.get("job").and_then(Node::as_str));
            if let Some(name) =
                name.filter(|n| !defined.contains(n) && !optional && !other_pipeline)
            {
                add(TemplateUseKind::Needs, name, need.line);
            }
        }
        let hidden = job.starts_with('.');
        let complete = ["script", "trigger", "extends", "run"]
            .iter()
            .any(|k| body.get(k).is_some());
        if !hidden && !complete {
            add(TemplateUseKind::Overrides, job, key.line);
        }
        if let Some(stage) = body.get("stage").filter(|_| !hidden && !own_stages)
            && let Some(name) = stage.as_str()
        {
            add(TemplateUseKind::Stage, name, stage.line);
        }
    }
    uses.sort();
    uses.dedup();
    uses
}

/// The key and value nodes of a mapping entry.
fn pair<'n>(map: &'n Node, key: &str) -> Option<(&'n Node, &'n Node)> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(k, v)| (k, v))
}

/// The URL scheme of an include string, if it has one (`https` in `https://...`).
fn scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// Splits `host/path/name@version` into (`host/path`, `name`, `version`).
///
/// The first `@` ends the path (project paths cannot hold one), while the
/// version may hold `/` (a branch like `feature/x`).
fn split_component(spec: &str) -> Option<(&str, &str, &str)> {
    let (path, version) = spec.split_once('@')?;
    let (source, name) = path.rsplit_once('/')?;
    let all_set = !source.is_empty() && !name.is_empty() && !version.trim().is_empty();
    all_set.then_some((source, name, version.trim()))
}

#[cfg(test)]
mod tests;
