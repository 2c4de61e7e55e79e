//! Scanning's pure half: parsers, file text in, [`model::Facts`] (with
//! diagnostics) out; `discover` is its I/O edge.
//!
//! Nothing here touches the file system: `discover` walks and reads the files
//! and hands their text to [`parse`] (a whole scan is `discover::scan`). A file that cannot be parsed yields diagnostics
//! with its path and line; it never panics and never stops the caller.

pub mod catalog;
pub mod dockerfile;
pub mod github;
pub mod gitlab;
pub mod inventory;
pub mod kube;

#[cfg(test)]
mod test_support;

use model::{Diagnostic, Facts};

/// The kinds of file bulkhead reads, recognised by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Dockerfile,
    GitlabCi,
    GithubWorkflow,
    /// Any other YAML file: Kubernetes manifests, kustomizations and catalog entries.
    Yaml,
}

impl FileKind {
    /// Classifies a `/`-separated path relative to the fleet root; `None` for files bulkhead ignores.
    pub fn of(path: &str) -> Option<FileKind> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let lower = name.to_ascii_lowercase();
        if lower == "dockerfile"
            || lower.starts_with("dockerfile.")
            || lower.ends_with(".dockerfile")
            || lower == "containerfile"
        {
            return Some(FileKind::Dockerfile);
        }
        let is_yaml = lower.ends_with(".yml") || lower.ends_with(".yaml");
        if !is_yaml {
            return None;
        }
        if lower == ".gitlab-ci.yml" || lower == ".gitlab-ci.yaml" || path.contains(".gitlab/ci/") {
            return Some(FileKind::GitlabCi);
        }
        if path.contains(".github/workflows/") {
            return Some(FileKind::GithubWorkflow);
        }
        Some(FileKind::Yaml)
    }
}

/// Parses one file. `path` is relative to the fleet root and goes into every provenance.
pub fn parse(path: &str, kind: FileKind, text: &str) -> Facts {
    match kind {
        FileKind::Dockerfile => dockerfile::parse(path, text),
        FileKind::GitlabCi => gitlab::parse(path, text),
        FileKind::GithubWorkflow => github::parse(path, text),
        FileKind::Yaml => parse_yaml(path, text),
    }
}

/// A YAML file that is neither a CI file nor known by name: each document is
/// read as a Kubernetes object, a Backstage entity or a hosts inventory by its shape.
fn parse_yaml(path: &str, text: &str) -> Facts {
    let (documents, error) = yaml::load(text);
    let mut facts = Facts::default();
    let name = path.rsplit('/').next().unwrap_or(path);
    // kustomize accepts a kustomization without apiVersion and kind; only its file name says what it is.
    let is_kustomization = matches!(
        name,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    );
    for doc in &documents {
        if is_kustomization && doc.get("kind").is_none() {
            facts.extend(kube::kustomization(path, doc));
            continue;
        }
        let api_version = doc
            .get("apiVersion")
            .and_then(yaml::Node::as_str)
            .unwrap_or("");
        if api_version.starts_with("backstage.io/") {
            facts.extend(catalog::entity(path, doc));
        } else if doc.get("kind").is_some() && !api_version.is_empty() {
            facts.extend(kube::object(path, doc));
        } else if doc.get("hosts").is_some() && inventory::looks_like_inventory(doc) {
            facts.extend(inventory::hosts(path, doc));
        }
    }
    if let Some(e) = error {
        facts.diagnostics.push(yaml_diagnostic(path, &e));
    }
    facts
}

/// The diagnostic for a YAML loading error.
pub(crate) fn yaml_diagnostic(path: &str, e: &yaml::YamlError) -> Diagnostic {
    Diagnostic::error(path, Some(e.line), e.to_string())
}
