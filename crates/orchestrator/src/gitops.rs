//! The GitOps executor: a routing change is a commit on the branch a GitOps
//! controller (Argo CD, Flux) syncs from. The Service's selector values (and
//! an HTTPRoute's backend weights) are rewritten in place: only the bytes of
//! each value change, so comments, order and formatting stay as the team
//! wrote them. One commit per action; none when the manifest already says so.
//!
//! A rolling update by image rewrites every reference to the old image in
//! the branch's YAML: container `image:` fields of plain manifests,
//! kustomization `images:` entries, Helm values (`images::yaml_refs`). The
//! images of one wave go in one commit, whose `Bulkhead-Image:` trailers
//! say what moved; rolling them back is a `git revert` of that commit (a
//! rewrite back when the commit moved other services too, or no longer
//! reverts cleanly).
//!
//! With a remote, every commit is pushed there; with an Argo CD
//! Application (`argocd.rs`), each action then waits for it to be synced
//! and healthy at the branch's new commit.

mod argocd;

pub use argocd::ArgoCd;

use crate::executor::{ExecError, Executor, ImageMove, Labels, WeightedPool};
use images::yaml_refs::Selection;
use model::ImageRef;
use std::collections::BTreeMap;
use vcs::{FileChange, Repo};
use yaml::Node;

/// The trailer line that records one image move in a commit message.
const IMAGE_TRAILER: &str = "Bulkhead-Image:";

fn trailer(service: &str, from: &str, to: &str) -> String {
    format!("{IMAGE_TRAILER} {service} {from} -> {to}")
}

#[derive(Debug)]
pub struct GitOpsExecutor {
    repo: Repo,
    branch: String,
    /// Pushed to after each commit.
    remote: Option<String>,
    argocd: Option<ArgoCd>,
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
            remote: None,
            argocd: None,
        })
    }

    /// Pushes the branch to `remote` after every action.
    #[must_use]
    pub fn pushing_to(mut self, remote: &str) -> GitOpsExecutor {
        self.remote = Some(remote.to_string());
        self
    }

    /// Waits for this Argo CD Application to sync every action's commit.
    #[must_use]
    pub fn syncing_with(mut self, argocd: ArgoCd) -> GitOpsExecutor {
        self.argocd = Some(argocd);
        self
    }

    /// Pushes the branch, then waits for Argo CD to sync its head. Done after
    /// every action, commit or not, so an action performed again after a
    /// crash between commit and sync finishes the job.
    fn publish(&self) -> Result<(), ExecError> {
        if let Some(remote) = &self.remote {
            self.repo.push(remote, &self.branch, &[])?;
        }
        if let Some(argocd) = &self.argocd {
            let head = self
                .repo
                .resolve(&format!("refs/heads/{}", self.branch))?
                .unwrap_or_default();
            argocd.await_revision(&head)?;
        }
        Ok(())
    }

    /// Every YAML file on the branch with `moves` applied: the changed files,
    /// and which moves changed something.
    fn rewrite_images(
        &self,
        moves: &[ImageMove],
    ) -> Result<(Vec<FileChange>, Vec<bool>), ExecError> {
        let parsed = moves
            .iter()
            .map(|m| Ok((parse_image(&m.from)?, parse_image(&m.to)?)))
            .collect::<Result<Vec<_>, ExecError>>()?;
        let mut changes = Vec::new();
        let mut moved = vec![false; moves.len()];
        for (path, text) in self.yaml_files()? {
            let mut new = text.clone();
            for (i, (m, (from, to))) in moves.iter().zip(&parsed).enumerate() {
                let selection = Selection {
                    from: Some(from),
                    to,
                    to_written: &m.to,
                };
                if let Some((rewritten, _)) = rewrite_refs(&path, &new, &selection)? {
                    new = rewritten;
                    moved[i] = true;
                }
            }
            if new != text {
                changes.push(FileChange {
                    path,
                    content: new.into_bytes(),
                });
            }
        }
        Ok((changes, moved))
    }

    /// The YAML files on the branch, by path.
    fn yaml_files(&self) -> Result<Vec<(String, String)>, ExecError> {
        let rev = format!("refs/heads/{}", self.branch);
        let paths: Vec<String> = self
            .repo
            .files(&rev)?
            .into_iter()
            .filter(|p| p.ends_with(".yaml") || p.ends_with(".yml") || is_kustomization(p))
            .collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let contents = self.repo.show_many(&rev, &refs)?;
        Ok(paths
            .into_iter()
            .zip(contents)
            .filter_map(|(path, c)| Some((path, String::from_utf8(c?).ok()?)))
            .collect())
    }

    /// Whether a YAML file on the branch refers to exactly `reference`: the
    /// move from it to `other` would change something.
    fn refers_to(&self, reference: &str, other: &str) -> Result<bool, ExecError> {
        let (from, to) = (parse_image(reference)?, parse_image(other)?);
        let selection = Selection {
            from: Some(&from),
            to: &to,
            to_written: other,
        };
        for (path, text) in self.yaml_files()? {
            if rewrite_refs(&path, &text, &selection)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The newest commit on the branch that made exactly the reverse of
    /// `moves` and nothing else, which a rollback reverts.
    fn commit_to_revert(&self, moves: &[ImageMove]) -> Result<Option<String>, ExecError> {
        let Some(first) = moves.first() else {
            return Ok(None);
        };
        let mut wanted: Vec<String> = moves
            .iter()
            .map(|m| trailer(&m.service, &m.to, &m.from))
            .collect();
        wanted.sort();
        let rev = format!("refs/heads/{}", self.branch);
        let candidates = self
            .repo
            .log_grep(&rev, &trailer(&first.service, &first.to, &first.from))?;
        Ok(candidates.into_iter().next().and_then(|(id, message)| {
            let mut trailers: Vec<String> = message
                .lines()
                .filter(|l| l.starts_with(IMAGE_TRAILER))
                .map(str::to_string)
                .collect();
            trailers.sort();
            (trailers == wanted).then_some(id)
        }))
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

fn is_kustomization(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(
        name,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    )
}

fn parse_image(reference: &str) -> Result<ImageRef, ExecError> {
    ImageRef::parse(reference).map_err(|e| ExecError::Refused {
        target: reference.to_string(),
        detail: format!("not an image reference: {e}"),
    })
}

/// Rewrites the selected references of one file: a kustomization's
/// `images:` entries, or the `image:` fields and Helm values blocks of any
/// other YAML (plain manifests, values files).
fn rewrite_refs(
    path: &str,
    text: &str,
    selection: &Selection<'_>,
) -> Result<Option<images::yaml_refs::Rewrite>, ExecError> {
    let result = if is_kustomization(path) {
        images::yaml_refs::rewrite_kustomization(path, text, selection)
    } else {
        images::yaml_refs::rewrite_helm_values(path, text, selection)
    };
    result.map_err(|e| ExecError::Refused {
        target: path.to_string(),
        detail: e.to_string(),
    })
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
        self.commit(&found, text, &message)?;
        self.publish()
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
        self.commit(&found, text, &message)?;
        self.publish()
    }

    /// The first reference on the branch to `to`'s image (same registry and
    /// repository) that is not `to` itself.
    fn image(&mut self, service: &str, to: &str) -> Result<String, ExecError> {
        let to_ref = parse_image(to)?;
        let selection = Selection {
            from: None,
            to: &to_ref,
            to_written: to,
        };
        // A kustomization's entry overrides the manifests' own reference, so it counts first.
        let mut files = self.yaml_files()?;
        files.sort_by_key(|(path, _)| !is_kustomization(path));
        for (path, text) in files {
            if let Some((_, edits)) = rewrite_refs(&path, &text, &selection)?
                && let Some(edit) = edits.into_iter().next()
            {
                return Ok(edit.from);
            }
        }
        Err(ExecError::Refused {
            target: format!("{}@{}", self.repo.root().display(), self.branch),
            detail: format!(
                "no YAML file refers to {} other than as {to} (the image of {service})",
                to_ref.name()
            ),
        })
    }

    /// One commit for every move (or a revert of the commit that made their
    /// reverse), pushed, then synced by Argo CD when one is set.
    fn set_images(&mut self, moves: &[ImageMove]) -> Result<(), ExecError> {
        let (changes, moved) = self.rewrite_images(moves)?;
        for (m, moved) in moves.iter().zip(&moved) {
            // Nothing to move for it: done already, unless its new image is not there either.
            if !moved && !self.refers_to(&m.to, &m.from)? {
                return Err(ExecError::Refused {
                    target: format!("{}@{}", self.repo.root().display(), self.branch),
                    detail: format!(
                        "no YAML file refers to {} or {} (the image of {})",
                        m.from, m.to, m.service
                    ),
                });
            }
        }
        if !changes.is_empty() {
            let reverted = match self.commit_to_revert(moves)? {
                Some(commit) => self.repo.revert_on_branch(&self.branch, &commit).is_ok(),
                None => false,
            };
            if !reverted {
                let services: Vec<String> = moves
                    .iter()
                    .map(|m| format!("{} {}", m.service, m.to))
                    .collect();
                let files: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
                let trailers: Vec<String> = moves
                    .iter()
                    .map(|m| trailer(&m.service, &m.from, &m.to))
                    .collect();
                let message = format!(
                    "rollout: images {}\n\nSet by bulkhead rollout (executor gitops) in {}.\n\n{}\n",
                    services.join(", "),
                    files.join(", "),
                    trailers.join("\n")
                );
                self.repo
                    .commit_on_branch(&self.branch, &changes, &message)?;
            }
        }
        self.publish()
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
