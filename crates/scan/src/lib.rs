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
#[cfg(test)]
mod tests;

use model::{Diagnostic, Facts};

/// The kinds of file bulkhead reads, recognised by name ([`FileKind::of`])
/// and then by content ([`FileKind::of_text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Dockerfile,
    GitlabCi,
    GithubWorkflow,
    /// Any other YAML file: Kubernetes manifests, kustomizations and catalog entries.
    Yaml,
}

impl FileKind {
    /// Classifies a `/`-separated path relative to the fleet root by its name:
    /// the files worth reading; `None` for files bulkhead ignores.
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

impl FileKind {
    /// Classifies a file by name and content: what [`FileKind::of`] says,
    /// unless the text is not of that kind. A name is a weak signal: a
    /// scanner report saved as `dockerfile.json`, or notes in `Dockerfile.md`,
    /// is no Dockerfile. Such a file is read as YAML when its name says YAML,
    /// and otherwise not at all (`None`).
    pub fn of_text(path: &str, text: &str) -> Option<FileKind> {
        let kind = FileKind::of(path)?;
        let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        // `Dockerfile` and `Containerfile` are Dockerfiles by convention; a
        // suffixed name (`Dockerfile.prod`, `api.dockerfile`) must also read like one.
        let exact = name == "dockerfile" || name == "containerfile";
        if kind != FileKind::Dockerfile || looks_like_dockerfile(text, exact) {
            return Some(kind);
        }
        (name.ends_with(".yml") || name.ends_with(".yaml")).then_some(FileKind::Yaml)
    }
}

/// Every instruction Docker knows.
const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Whether the first line that is not blank, a comment or a parser directive
/// starts with a Dockerfile instruction. An empty file counts: the parser
/// says what it lacks.
///
/// `lenient` (a file named just `Dockerfile`) accepts any instruction, so
/// that a broken Dockerfile still gets the parser's diagnostics. Otherwise
/// the line must open with the only instructions a valid Dockerfile may
/// start with, `FROM` or `ARG`, written in one case as Dockerfiles are:
/// prose (`From the root, run...`) writes them capitalised.
fn looks_like_dockerfile(text: &str, lenient: bool) -> bool {
    let Some(first) = text
        .trim_start_matches('\u{feff}')
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
    else {
        return true;
    };
    let word = first
        .split(|c: char| c.is_whitespace() || c == '\\')
        .next()
        .unwrap_or_default();
    if lenient {
        return INSTRUCTIONS.iter().any(|i| i.eq_ignore_ascii_case(word));
    }
    let one_case = word == word.to_ascii_uppercase() || word == word.to_ascii_lowercase();
    one_case && (word.eq_ignore_ascii_case("FROM") || word.eq_ignore_ascii_case("ARG"))
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
