//! Template interfaces: what a template promises the apps that use it, read
//! from its text at one release.
//!
//! - A GitLab CI template (`include: project` file or CI/CD component) declares
//!   its inputs in a `spec: inputs:` header document, separated from the jobs
//!   by `---` (<https://docs.gitlab.com/ci/inputs/>). Each input has a `type`
//!   (`string` by default, `number`, `boolean`, `array`), an optional
//!   `default` (an input without one is mandatory), `options`, `regex` and
//!   `description`. The configuration after the header defines jobs (hidden
//!   `.name` jobs included: apps `extends:` them) and `stages:`.
//! - A GitHub reusable workflow declares `on: workflow_call:` with `inputs`
//!   (`type`, `required`, `default`), `secrets` (`required`) and `outputs`,
//!   and its `jobs`.
//!
//! Reading is total: a malformed header, a bad type or a YAML error yields a
//! diagnostic with the line, and the rest of the interface is still read.

use model::{Diagnostic, Provenance};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use yaml::{Node, Value};

/// Which CI system a template is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavor {
    /// A GitLab CI template or component with a `spec: inputs:` header.
    Gitlab,
    /// A GitHub reusable workflow (`on: workflow_call`).
    Github,
}

/// The type an input's values must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Boolean,
    Array,
}

impl InputType {
    fn parse(text: &str) -> Option<InputType> {
        match text {
            "string" => Some(InputType::String),
            "number" => Some(InputType::Number),
            "boolean" => Some(InputType::Boolean),
            "array" => Some(InputType::Array),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::Array => "array",
        }
    }

    /// Whether a JSON value has this type.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        matches!(
            (self, value),
            (InputType::String, J::String(_))
                | (InputType::Number, J::Number(_))
                | (InputType::Boolean, J::Bool(_))
                | (InputType::Array, J::Array(_))
        )
    }
}

/// One declared input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: InputType,
    /// Apps must set it: a GitLab input without `default`, a GitHub input with `required: true`.
    pub required: bool,
    pub default: Option<serde_json::Value>,
    /// The only values accepted; empty means any value of the type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<serde_json::Value>,
    /// A regular expression string values must match (GitLab; RE2 syntax, unanchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub at: Provenance,
}

/// A job the template defines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub name: String,
    /// Its `stage:` (GitLab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The job's definition, to tell a renamed job from a removed one and a
    /// changed job from an unchanged one.
    pub body: serde_json::Value,
    pub at: Provenance,
}

/// A secret a reusable workflow declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub name: String,
    pub required: bool,
    pub at: Provenance,
}

/// An output a reusable workflow declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub name: String,
    pub at: Provenance,
}

/// A GitLab stage the template declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageDecl {
    pub name: String,
    /// Where `stages:` says it; `None` for GitLab's default stages.
    pub at: Option<Provenance>,
}

/// GitLab's stages when a pipeline declares none.
pub const DEFAULT_STAGES: [&str; 5] = [".pre", "build", "test", "deploy", ".post"];

/// What one template file promises its users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub flavor: Flavor,
    /// The file inside the templates repository.
    pub path: String,
    pub inputs: BTreeMap<String, Input>,
    pub jobs: BTreeMap<String, Job>,
    /// GitLab: declared (or default) stages, in order. Empty for GitHub.
    pub stages: Vec<StageDecl>,
    pub secrets: BTreeMap<String, Secret>,
    pub outputs: BTreeMap<String, Output>,
}

impl Interface {
    fn new(flavor: Flavor, path: &str) -> Interface {
        Interface {
            flavor,
            path: path.to_string(),
            inputs: BTreeMap::new(),
            jobs: BTreeMap::new(),
            stages: Vec::new(),
            secrets: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    /// Whether a job may run in `name`: a declared stage, or `.pre` / `.post`, which always exist.
    pub fn has_stage(&self, name: &str) -> bool {
        matches!(name, ".pre" | ".post") || self.stages.iter().any(|s| s.name == name)
    }
}

/// Reads a GitLab CI template.
pub fn gitlab(path: &str, text: &str) -> (Interface, Vec<Diagnostic>) {
    let (documents, error) = yaml::load(text);
    let mut reader = Reader::new(path);
    let mut interface = Interface::new(Flavor::Gitlab, path);
    let header = documents.first().filter(|d| d.get("spec").is_some());
    if let Some(header) = header {
        if documents.len() == 1 && error.is_none() {
            reader.warn(
                header.line,
                "spec header is not followed by --- and the configuration; GitLab reads this file as jobs".to_string(),
            );
        }
        reader.gitlab_header(header, &mut interface);
    }
    let mut declared_stages = None;
    for document in documents.iter().skip(usize::from(header.is_some())) {
        reader.gitlab_configuration(document, &mut interface, &mut declared_stages);
    }
    interface.stages = declared_stages.unwrap_or_else(|| {
        DEFAULT_STAGES
            .iter()
            .map(|s| StageDecl {
                name: (*s).to_string(),
                at: None,
            })
            .collect()
    });
    if let Some(e) = error {
        reader
            .diagnostics
            .push(Diagnostic::error(path, Some(e.line), e.to_string()));
    }
    (interface, reader.diagnostics)
}

/// Reads a GitHub workflow; `None` when it is not a reusable one (no `on: workflow_call`).
pub fn github(path: &str, text: &str) -> (Option<Interface>, Vec<Diagnostic>) {
    let (documents, error) = yaml::load(text);
    let mut reader = Reader::new(path);
    let mut result = None;
    if let Some(document) = documents.first() {
        result = reader.github_workflow(document);
    }
    if let Some(e) = error {
        reader
            .diagnostics
            .push(Diagnostic::error(path, Some(e.line), e.to_string()));
    }
    (result, reader.diagnostics)
}

struct Reader<'a> {
    path: &'a str,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    fn new(path: &'a str) -> Self {
        Reader {
            path,
            diagnostics: Vec::new(),
        }
    }

    fn warn(&mut self, line: u32, message: String) {
        self.diagnostics
            .push(Diagnostic::warning(self.path, Some(line), message));
    }

    fn error(&mut self, line: u32, message: String) {
        self.diagnostics
            .push(Diagnostic::error(self.path, Some(line), message));
    }

    fn at(&self, line: u32) -> Provenance {
        Provenance::new(self.path, line)
    }

    fn gitlab_header(&mut self, header: &Node, interface: &mut Interface) {
        let Some(spec) = header.get("spec").filter(|s| !s.is_null()) else {
            return;
        };
        if spec.as_map().is_none() {
            self.error(
                spec.line,
                format!(
                    "malformed spec header: spec must be a mapping, found {}",
                    spec.shape()
                ),
            );
            return;
        }
        let Some(inputs) = spec.get("inputs").filter(|i| !i.is_null()) else {
            return;
        };
        let Some(pairs) = inputs.as_map() else {
            self.error(
                inputs.line,
                format!(
                    "malformed spec header: inputs must be a mapping of input names, found {}",
                    inputs.shape()
                ),
            );
            return;
        };
        for (key, declaration) in pairs {
            let Some(name) = key.as_str() else {
                self.error(
                    key.line,
                    "malformed spec header: input name must be a string".to_string(),
                );
                continue;
            };
            if let Some(input) = self.gitlab_input(name, key.line, declaration) {
                interface.inputs.insert(name.to_string(), input);
            }
        }
    }

    fn gitlab_input(&mut self, name: &str, line: u32, declaration: &Node) -> Option<Input> {
        let mut input = Input {
            name: name.to_string(),
            ty: InputType::String,
            required: true,
            default: None,
            options: Vec::new(),
            regex: None,
            description: None,
            at: self.at(line),
        };
        // `name:` alone declares a mandatory string input.
        if declaration.is_null() {
            return Some(input);
        }
        if declaration.as_map().is_none() {
            self.error(
                declaration.line,
                format!(
                    "malformed spec header: input {name} must be a mapping, found {}",
                    declaration.shape()
                ),
            );
            return None;
        }
        if let Some(ty) = declaration.get("type") {
            match ty.as_str().and_then(InputType::parse) {
                Some(t) => input.ty = t,
                None => self.error(
                    ty.line,
                    format!(
                        "input {name}: unknown type {}; expected string, number, boolean or array (read as string)",
                        ty.shape()
                    ),
                ),
            }
        }
        if let Some(default) = declaration.get("default") {
            let value = default.to_json();
            if !input.ty.accepts(&value) {
                self.warn(
                    default.line,
                    format!(
                        "input {name}: default {value} is not a {}; GitLab rejects the template",
                        input.ty.name()
                    ),
                );
            }
            input.default = Some(value);
            input.required = false;
        }
        if let Some(options) = declaration.get("options") {
            match options.as_seq() {
                Some(items) => input.options = items.iter().map(Node::to_json).collect(),
                None => self.error(
                    options.line,
                    format!(
                        "input {name}: options must be a list, found {}",
                        options.shape()
                    ),
                ),
            }
            if let Some(default) = &input.default
                && !input.options.is_empty()
                && !input.options.contains(default)
            {
                self.warn(
                    options.line,
                    format!("input {name}: default {default} is not one of the options"),
                );
            }
        }
        if let Some(regex) = declaration.get("regex") {
            match regex.as_str() {
                Some(text) => {
                    let pattern = strip_slashes(text);
                    if let Err(e) = regex::Regex::new(pattern) {
                        self.error(
                            regex.line,
                            format!("input {name}: invalid regex {text:?}: {e}"),
                        );
                    }
                    if input.ty != InputType::String {
                        self.warn(
                            regex.line,
                            format!("input {name}: regex applies to string inputs only"),
                        );
                    }
                    input.regex = Some(pattern.to_string());
                }
                None => self.error(
                    regex.line,
                    format!(
                        "input {name}: regex must be a string, found {}",
                        regex.shape()
                    ),
                ),
            }
        }
        input.description = declaration.get("description").and_then(Node::string);
        Some(input)
    }

    fn gitlab_configuration(
        &mut self,
        document: &Node,
        interface: &mut Interface,
        stages: &mut Option<Vec<StageDecl>>,
    ) {
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
        for (key, value) in pairs {
            let Some(name) = key.as_str() else {
                continue;
            };
            if name == "stages" {
                let declared = value
                    .as_seq()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|s| {
                        Some(StageDecl {
                            name: s.string()?,
                            at: Some(self.at(s.line)),
                        })
                    })
                    .collect();
                *stages = Some(declared);
                continue;
            }
            if scan::gitlab::KEYWORDS.contains(&name) || value.as_map().is_none() {
                continue;
            }
            interface.jobs.insert(
                name.to_string(),
                Job {
                    name: name.to_string(),
                    stage: value.get("stage").and_then(Node::string),
                    body: value.to_json(),
                    at: self.at(key.line),
                },
            );
        }
    }

    fn github_workflow(&mut self, document: &Node) -> Option<Interface> {
        let on = document.get("on")?;
        let call = match &on.value {
            Value::Map(_) => on
                .as_map()
                .into_iter()
                .flatten()
                .find(|(k, _)| k.as_str() == Some("workflow_call"))
                .map(|(k, v)| (k, v))?,
            Value::Seq(items) => (
                items.iter().find(|i| i.as_str() == Some("workflow_call"))?,
                on,
            ),
            Value::Scalar { .. } if on.as_str() == Some("workflow_call") => (on, on),
            Value::Scalar { .. } => return None,
        };
        let mut interface = Interface::new(Flavor::Github, self.path);
        // In the list and string forms `workflow_call` has no body.
        let body = match &on.value {
            Value::Map(_) => Some(call.1).filter(|b| !b.is_null()),
            _ => None,
        };
        if let Some(body) = body {
            if body.as_map().is_none() {
                self.error(
                    body.line,
                    format!("workflow_call must be a mapping, found {}", body.shape()),
                );
            } else {
                self.github_inputs(body, &mut interface);
                self.github_secrets(body, &mut interface);
                self.github_outputs(body, &mut interface);
            }
        }
        if let Some(jobs) = document.get("jobs").and_then(Node::as_map) {
            for (key, job) in jobs {
                let Some(name) = key.as_str() else {
                    continue;
                };
                interface.jobs.insert(
                    name.to_string(),
                    Job {
                        name: name.to_string(),
                        stage: None,
                        body: job.to_json(),
                        at: self.at(key.line),
                    },
                );
            }
        }
        Some(interface)
    }

    /// The entries of `body.<key>` as (name, line, declaration), with a diagnostic when malformed.
    fn entries<'n>(&mut self, body: &'n Node, key: &str) -> Vec<(&'n str, u32, &'n Node)> {
        let Some(section) = body.get(key).filter(|s| !s.is_null()) else {
            return Vec::new();
        };
        let Some(pairs) = section.as_map() else {
            self.error(
                section.line,
                format!(
                    "workflow_call {key} must be a mapping, found {}",
                    section.shape()
                ),
            );
            return Vec::new();
        };
        pairs
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?, k.line, v)))
            .collect()
    }

    fn github_inputs(&mut self, body: &Node, interface: &mut Interface) {
        for (name, line, declaration) in self.entries(body, "inputs") {
            let ty = match declaration.get("type").and_then(Node::as_str) {
                Some(text) => match InputType::parse(text) {
                    Some(t) if t != InputType::Array => t,
                    _ => {
                        self.error(
                            line,
                            format!("input {name}: unknown type {text}; workflow_call inputs are boolean, number or string (read as string)"),
                        );
                        InputType::String
                    }
                },
                None => {
                    self.warn(
                        line,
                        format!("input {name} has no type; GitHub requires one for workflow_call (read as string)"),
                    );
                    InputType::String
                }
            };
            let required = declaration.get("required").map(Node::to_json)
                == Some(serde_json::Value::Bool(true));
            let default = declaration.get("default").map(Node::to_json);
            interface.inputs.insert(
                name.to_string(),
                Input {
                    name: name.to_string(),
                    ty,
                    required,
                    default,
                    options: Vec::new(),
                    regex: None,
                    description: declaration.get("description").and_then(Node::string),
                    at: self.at(line),
                },
            );
        }
    }

    fn github_secrets(&mut self, body: &Node, interface: &mut Interface) {
        for (name, line, declaration) in self.entries(body, "secrets") {
            let required = declaration.get("required").map(Node::to_json)
                == Some(serde_json::Value::Bool(true));
            interface.secrets.insert(
                name.to_string(),
                Secret {
                    name: name.to_string(),
                    required,
                    at: self.at(line),
                },
            );
        }
    }

    fn github_outputs(&mut self, body: &Node, interface: &mut Interface) {
        for (name, line, _) in self.entries(body, "outputs") {
            interface.outputs.insert(
                name.to_string(),
                Output {
                    name: name.to_string(),
                    at: self.at(line),
                },
            );
        }
    }
}

/// GitLab accepts `regex: /^v\d+$/` as well as `regex: ^v\d+$`.
fn strip_slashes(text: &str) -> &str {
    text.strip_prefix('/')
        .and_then(|t| t.strip_suffix('/'))
        .filter(|t| !t.is_empty())
        .unwrap_or(text)
}

/// Every template file of a templates repository at one release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateSet {
    pub files: BTreeMap<String, Interface>,
}

impl TemplateSet {
    /// Reads the template files among `files` (path, text): GitHub workflows
    /// under `.github/workflows/` that are reusable, GitLab YAML under
    /// `templates/` (where CI/CD components live), any other YAML with a
    /// `spec:` header, and any file in `wanted` (files apps include by path).
    pub fn read<'f>(
        files: impl IntoIterator<Item = (&'f str, &'f str)>,
        wanted: &BTreeSet<String>,
    ) -> (TemplateSet, Vec<Diagnostic>) {
        let mut set = TemplateSet::default();
        let mut diagnostics = Vec::new();
        for (path, text) in files {
            let lower = path.to_ascii_lowercase();
            if !(lower.ends_with(".yml") || lower.ends_with(".yaml")) {
                continue;
            }
            if path.starts_with(".github/workflows/") {
                let (interface, found) = github(path, text);
                if let Some(interface) = interface {
                    diagnostics.extend(found);
                    set.files.insert(path.to_string(), interface);
                }
                continue;
            }
            let candidate = path.starts_with("templates/")
                || wanted.contains(path)
                || text.lines().any(|l| l.trim_end() == "spec:");
            if !candidate {
                continue;
            }
            let (interface, found) = gitlab(path, text);
            let declared = !interface.inputs.is_empty() || !interface.jobs.is_empty();
            if declared || path.starts_with("templates/") || wanted.contains(path) {
                diagnostics.extend(found);
                set.files.insert(path.to_string(), interface);
            }
        }
        (set, diagnostics)
    }

    /// The file a GitLab CI/CD component name refers to: `templates/<name>.yml`
    /// or `templates/<name>/template.yml` (GitLab's two layouts).
    pub fn component(&self, name: &str) -> Option<&Interface> {
        [
            format!("templates/{name}.yml"),
            format!("templates/{name}.yaml"),
            format!("templates/{name}/template.yml"),
            format!("templates/{name}/template.yaml"),
        ]
        .iter()
        .find_map(|p| self.files.get(p))
    }
}

#[cfg(test)]
mod tests;
