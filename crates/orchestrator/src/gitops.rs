//! The GitOps executor: a routing change is a commit on the branch a GitOps
//! controller (Argo CD, Flux) syncs from. The Service's selector values (and
//! an HTTPRoute's backend weights) are rewritten in place: only the bytes of
//! each value change, so comments, order and formatting stay as the team
//! wrote them. One commit per action; none when the manifest already says so.

use crate::executor::{ExecError, Executor, Labels, WeightedPool};
use std::collections::BTreeMap;
use vcs::{FileChange, Repo};
use yaml::Node;

#[derive(Debug)]
pub struct GitOpsExecutor {
    repo: Repo,
    branch: String,
}

/// A manifest document found for a service.
struct Found {
    path: String,
    text: String,
    doc: Node,
}

impl GitOpsExecutor {
    /// Commits to `branch` of the repository whose working tree is `root`.
    /// The branch ref is moved; the working tree and index are not touched.
    ///
    /// # Errors
    /// When `root` is not a git repository or has no such branch.
    pub fn new(root: &std::path::Path, branch: &str) -> Result<GitOpsExecutor, ExecError> {
        let repo = Repo::open(root)?;
        if repo.resolve(&format!("refs/heads/{branch}"))?.is_none() {
            return Err(ExecError::Refused {
                target: root.display().to_string(),
                detail: format!("no branch {branch:?}"),
            });
        }
        Ok(GitOpsExecutor {
            repo,
            branch: branch.to_string(),
        })
    }

    /// Every YAML document on the branch with its file's path and text, by path.
    fn documents(&self) -> Result<Vec<(String, std::rc::Rc<str>, Node)>, ExecError> {
        let rev = format!("refs/heads/{}", self.branch);
        let paths: Vec<String> = self
            .repo
            .files(&rev)?
            .into_iter()
            .filter(|p| p.ends_with(".yaml") || p.ends_with(".yml"))
            .collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let contents = self.repo.show_many(&rev, &refs)?;
        let mut out = Vec::new();
        for (path, content) in paths.iter().zip(contents) {
            let Some(text) = content.and_then(|c| String::from_utf8(c).ok()) else {
                continue;
            };
            let text: std::rc::Rc<str> = text.into();
            let (docs, _) = yaml::load(&text);
            out.extend(docs.into_iter().map(|d| (path.clone(), text.clone(), d)));
        }
        Ok(out)
    }

    /// The first document (by path, then order in the file) of `kind` named `name`.
    fn find(&self, kind: &str, name: &str) -> Result<Found, ExecError> {
        let hit = self.documents()?.into_iter().find(|(_, _, d)| {
            d.get("kind").and_then(Node::as_str) == Some(kind)
                && d.at(&["metadata", "name"]).and_then(Node::as_str) == Some(name)
        });
        match hit {
            Some((path, text, doc)) => Ok(Found {
                path,
                text: text.to_string(),
                doc,
            }),
            None => Err(ExecError::Refused {
                target: format!("{}@{}", self.repo.root().display(), self.branch),
                detail: format!("no {kind} named {name:?} in any YAML file"),
            }),
        }
    }

    fn commit(&self, found: &Found, text: String, message: &str) -> Result<(), ExecError> {
        if text == found.text {
            return Ok(());
        }
        let change = FileChange {
            path: found.path.clone(),
            content: text.into_bytes(),
        };
        self.repo
            .commit_on_branch(&self.branch, &[change], message)?;
        Ok(())
    }
}

/// Replaces the scalar `value` of `key` on 1-based `line` with `new`, keeping
/// every other byte (quotes included).
fn rewrite_value(
    text: &str,
    path: &str,
    line: u32,
    key: &str,
    value: &str,
    new: &str,
) -> Result<String, ExecError> {
    let bad = |detail: String| ExecError::Manifest {
        path: path.to_string(),
        line,
        detail,
    };
    let start: usize = text
        .split_inclusive('\n')
        .take(line as usize - 1)
        .map(str::len)
        .sum();
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let row = &text[start..end];
    // The value follows `key:` on its line, in block (`key: v`) or flow (`{key: v}`) style.
    let mut search = 0;
    while let Some(found) = row[search..].find(key) {
        let at = search + found;
        let after = row[at + key.len()..].trim_start_matches(['"', '\'']);
        let before_ok =
            at == 0 || matches!(row.as_bytes()[at - 1], b' ' | b'{' | b',' | b'"' | b'\'');
        if before_ok && let Some(rest) = after.strip_prefix(':') {
            let offset = row.len() - rest.len();
            let rest_trimmed = rest.trim_start();
            let value_at = offset + (rest.len() - rest_trimmed.len());
            let quoted = rest_trimmed.starts_with(['"', '\'']);
            let value_at = value_at + usize::from(quoted);
            if row[value_at..].starts_with(value) {
                let absolute = start + value_at;
                return Ok(format!(
                    "{}{new}{}",
                    &text[..absolute],
                    &text[absolute + value.len()..]
                ));
            }
        }
        search = at + key.len();
    }
    Err(bad(format!(
        "cannot find `{key}: {value}` on this line to rewrite"
    )))
}

/// The backend name that carries a pool of `service` in an HTTPRoute:
/// the service name and the selector's values, joined with `-`
/// (`orders` + `{version: green}` -> `orders-green`).
pub fn backend_name(service: &str, selector: &Labels) -> String {
    std::iter::once(service)
        .chain(selector.values().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
}

impl Executor for GitOpsExecutor {
    fn kind(&self) -> &'static str {
        "gitops"
    }

    /// Sets each label of `selector` in the Service's `spec.selector`; other
    /// labels (such as `app`) stay. Every label must already be in the manifest.
    fn set_selector(&mut self, service: &str, selector: &Labels) -> Result<(), ExecError> {
        let found = self.find("Service", service)?;
        let Some(current) = found.doc.at(&["spec", "selector"]) else {
            return Err(ExecError::Manifest {
                path: found.path.clone(),
                line: found.doc.line,
                detail: format!("Service {service} has no spec.selector"),
            });
        };
        let mut text = found.text.clone();
        // Rewrite from the bottom up so earlier line numbers stay valid.
        let mut edits: Vec<(u32, &str, String, &str)> = Vec::new();
        for (key, want) in selector {
            let node = current.get(key).ok_or_else(|| ExecError::Manifest {
                path: found.path.clone(),
                line: current.line,
                detail: format!(
                    "the selector of Service {service} has no label {key:?}; add it to the manifest first"
                ),
            })?;
            let have = node.string().unwrap_or_default();
            if &have != want {
                edits.push((node.line, key, have, want));
            }
        }
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (line, key, have, want) in &edits {
            text = rewrite_value(&text, &found.path, *line, key, have, want)?;
        }
        let shown: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let message = format!(
            "rollout: {service}: select {}\n\nSet by bulkhead rollout (executor gitops) in {}.\n",
            shown.join(","),
            found.path
        );
        self.commit(&found, text, &message)
    }

    /// Sets the `weight` of each HTTPRoute backend named by [`backend_name`]
    /// in the HTTPRoute named after the service. Each weighted backendRef
    /// must already have a `weight` key.
    fn set_weights(&mut self, service: &str, pools: &[WeightedPool]) -> Result<(), ExecError> {
        let found = self.find("HTTPRoute", service)?;
        let wanted: BTreeMap<String, u32> = pools
            .iter()
            .map(|p| (backend_name(service, &p.selector), p.weight))
            .collect();
        let mut edits: Vec<(u32, String, String)> = Vec::new();
        let mut seen = Vec::new();
        let rules = found
            .doc
            .at(&["spec", "rules"])
            .and_then(Node::as_seq)
            .unwrap_or_default();
        for rule in rules {
            for backend in rule
                .get("backendRefs")
                .and_then(Node::as_seq)
                .unwrap_or_default()
            {
                let Some(name) = backend.get("name").and_then(Node::as_str) else {
                    continue;
                };
                let Some(weight) = wanted.get(name) else {
                    continue;
                };
                seen.push(name.to_string());
                let node = backend.get("weight").ok_or_else(|| ExecError::Manifest {
                    path: found.path.clone(),
                    line: backend.line,
                    detail: format!("backendRef {name} has no weight to set"),
                })?;
                let have = node.string().unwrap_or_default();
                if have != weight.to_string() {
                    edits.push((node.line, have, weight.to_string()));
                }
            }
        }
        if let Some(missing) = wanted.keys().find(|k| !seen.contains(k)) {
            return Err(ExecError::Manifest {
                path: found.path.clone(),
                line: found.doc.line,
                detail: format!("HTTPRoute {service} has no backendRef named {missing}"),
            });
        }
        edits.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut text = found.text.clone();
        for (line, have, want) in &edits {
            text = rewrite_value(&text, &found.path, *line, "weight", have, want)?;
        }
        let shown: Vec<String> = wanted.iter().map(|(k, w)| format!("{k}={w}")).collect();
        let message = format!(
            "rollout: {service}: weights {}\n\nSet by bulkhead rollout (executor gitops) in {}.\n",
            shown.join(","),
            found.path
        );
        self.commit(&found, text, &message)
    }

    /// Every Service's selector as the manifests on the branch have it.
    fn routing(&mut self) -> Result<BTreeMap<String, String>, ExecError> {
        let mut out = BTreeMap::new();
        for (_, _, doc) in self.documents()? {
            if doc.get("kind").and_then(Node::as_str) != Some("Service") {
                continue;
            }
            let Some(name) = doc.at(&["metadata", "name"]).and_then(Node::as_str) else {
                continue;
            };
            let selector = doc
                .at(&["spec", "selector"])
                .map(Node::to_json)
                .unwrap_or_default();
            out.entry(name.to_string())
                .or_insert_with(|| selector.to_string());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
