//! Image references held in YAML besides a container's `image:` field: a
//! kustomization's `images:` entries (`name`, `newName`, `newTag`, `digest`)
//! and a Helm chart's values (`image:` blocks of `registry`, `repository`,
//! `tag`, `digest`, and `image: "repo:tag"` strings), with the edit that moves
//! each to a new reference.
//!
//! As with `FROM` lines, only the bytes of the values that change are
//! rewritten. A key the new reference needs and the entry lacks is added on
//! a line of its own at the entry's indentation; a key it must lose is removed
//! with its line. Flow mappings (`- {name: x, newTag: y}`) are edited in place
//! when only values change, and refused when a key must be added or removed.

use crate::upgrade::{FromEdit, UpgradeError};
use model::ImageRef;
use yaml::Node;

/// Which references move: with `from`, exactly that reference; without, any
/// reference to `to`'s image (same registry and repository) that is not `to`.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    pub from: Option<&'a ImageRef>,
    pub to: &'a ImageRef,
    /// `to` as the user wrote it.
    pub to_written: &'a str,
}

impl Selection<'_> {
    fn wants(&self, current: &ImageRef) -> bool {
        if current == self.to {
            return false;
        }
        match self.from {
            Some(from) => current == from,
            None => current.name() == self.to.name(),
        }
    }

    /// `to` as written, without its tag and digest.
    fn name_written(&self) -> &str {
        let without_digest = self.to_written.split('@').next().unwrap_or(self.to_written);
        match without_digest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => name,
            _ => without_digest,
        }
    }
}

/// One change to one line of the file.
#[derive(Debug)]
enum LineEdit {
    /// Replace the value written after `key:` on `line`.
    Value {
        line: u32,
        key: String,
        old: String,
        new: String,
    },
    /// Add `key: value` after `after`, at the column of the mapping's keys.
    Insert {
        after: u32,
        column: usize,
        key: String,
        value: String,
    },
    /// Remove `line` (a `key: value` of a block mapping).
    Remove { line: u32 },
}

/// The rewritten file and what moved, one [`FromEdit`] per entry.
pub type Rewrite = (String, Vec<FromEdit>);

/// Moves the selected `images:` entries of a kustomization. `None` when no
/// entry is selected.
///
/// # Errors
/// A file that is not YAML, or an entry whose keys cannot be added or
/// removed in place (a flow mapping).
pub fn rewrite_kustomization(
    path: &str,
    text: &str,
    selection: &Selection<'_>,
) -> Result<Option<Rewrite>, UpgradeError> {
    let docs = load(path, text)?;
    let mut edits = Vec::new();
    let mut moved = Vec::new();
    for doc in &docs {
        let Some(images) = doc.get("images").and_then(Node::as_seq) else {
            continue;
        };
        for entry in images {
            let Some(map) = entry.as_map() else {
                continue;
            };
            let value = |key: &str| entry.get(key).and_then(Node::string);
            let Some(name) = value("name") else {
                continue;
            };
            let mut written = value("newName").unwrap_or_else(|| name.clone());
            if let Some(tag) = value("newTag") {
                written = format!("{written}:{tag}");
            }
            if let Some(digest) = value("digest") {
                written = format!("{written}@{digest}");
            }
            let Ok(current) = ImageRef::parse(&written) else {
                continue;
            };
            if !selection.wants(&current) {
                continue;
            }
            let to = selection.to;
            let mut wanted: Vec<(&str, Option<String>)> = vec![
                ("newTag", to.tag().map(str::to_string)),
                ("digest", to.digest().map(ToString::to_string)),
            ];
            if current.name() != to.name() {
                wanted.insert(0, ("newName", Some(selection.name_written().to_string())));
            }
            edits.extend(entry_edits(path, text, entry, map, &wanted)?);
            moved.push(FromEdit {
                path: path.to_string(),
                line: entry.line,
                from: written,
                to: selection.to_written.to_string(),
            });
        }
    }
    finish(path, text, edits, moved)
}

/// Moves the selected image references of a Helm values file: mappings with
/// a `repository` (and `registry`, `tag`, `digest` when present), and
/// `image:` strings. `None` when nothing is selected.
///
/// A block without a `digest` key gets the digest on its tag
/// (`tag: 1.2@sha256:...`), which a chart's `repository:tag` template turns
/// into a pinned reference; a digest in a key the chart never reads would pin
/// nothing.
///
/// # Errors
/// A file that is not YAML, a digest to pin in a block without `digest` when
/// the new reference has no tag, or a key that cannot be added or removed in place.
pub fn rewrite_helm_values(
    path: &str,
    text: &str,
    selection: &Selection<'_>,
) -> Result<Option<Rewrite>, UpgradeError> {
    let docs = load(path, text)?;
    let mut edits = Vec::new();
    let mut moved = Vec::new();
    for doc in &docs {
        values_walk(path, text, doc, selection, &mut edits, &mut moved)?;
    }
    finish(path, text, edits, moved)
}

fn values_walk(
    path: &str,
    text: &str,
    node: &Node,
    selection: &Selection<'_>,
    edits: &mut Vec<LineEdit>,
    moved: &mut Vec<FromEdit>,
) -> Result<(), UpgradeError> {
    if let Some(seq) = node.as_seq() {
        for item in seq {
            values_walk(path, text, item, selection, edits, moved)?;
        }
        return Ok(());
    }
    let Some(map) = node.as_map() else {
        return Ok(());
    };
    if let Some(repository) = node.get("repository").and_then(Node::as_str) {
        let value = |key: &str| node.get(key).and_then(Node::string);
        let mut written = match value("registry").filter(|r| !r.is_empty()) {
            Some(registry) => format!("{registry}/{repository}"),
            None => repository.to_string(),
        };
        if let Some(tag) = value("tag").filter(|t| !t.is_empty()) {
            written = format!("{written}:{tag}");
        }
        if let Some(digest) = value("digest").filter(|d| !d.is_empty()) {
            written = format!("{written}@{digest}");
        }
        if let Ok(current) = ImageRef::parse(&written)
            && selection.wants(&current)
        {
            let to = selection.to;
            let has_digest_key = node.get("digest").is_some();
            let digest = to.digest().map(ToString::to_string);
            let tag = match (to.tag(), &digest, has_digest_key) {
                (Some(tag), Some(d), false) => Some(format!("{tag}@{d}")),
                (None, Some(_), false) => {
                    return Err(UpgradeError::Unsupported {
                        path: path.to_string(),
                        line: node.line,
                        reason: "this values block has no digest key; give --to a tag with the digest so it can go on tag".into(),
                    });
                }
                (tag, _, _) => tag.map(str::to_string),
            };
            let mut wanted: Vec<(&str, Option<String>)> = vec![("tag", tag)];
            if has_digest_key {
                wanted.push(("digest", digest));
            }
            if current.name() != to.name() {
                if node.get("registry").is_some() {
                    wanted.push(("registry", Some(to.registry().to_string())));
                    wanted.push(("repository", Some(to.repository().to_string())));
                } else {
                    wanted.push(("repository", Some(selection.name_written().to_string())));
                }
            }
            edits.extend(entry_edits(path, text, node, map, &wanted)?);
            moved.push(FromEdit {
                path: path.to_string(),
                line: node.line,
                from: written,
                to: selection.to_written.to_string(),
            });
            return Ok(());
        }
    }
    for (key, value) in map {
        if key.as_str() == Some("image")
            && let Some(written) = value.as_str()
            && let Ok(current) = ImageRef::parse(written)
            && selection.wants(&current)
        {
            edits.push(LineEdit::Value {
                line: value.line,
                key: "image".into(),
                old: written.to_string(),
                new: selection.to_written.to_string(),
            });
            moved.push(FromEdit {
                path: path.to_string(),
                line: value.line,
                from: written.to_string(),
                to: selection.to_written.to_string(),
            });
            continue;
        }
        values_walk(path, text, value, selection, edits, moved)?;
    }
    Ok(())
}

fn load(path: &str, text: &str) -> Result<Vec<Node>, UpgradeError> {
    let (docs, error) = yaml::load(text);
    match error {
        Some(e) => Err(UpgradeError::Unsupported {
            path: path.to_string(),
            line: e.line,
            reason: format!("not YAML: {}", e.message),
        }),
        None => Ok(docs),
    }
}

/// The edits that make the keys of mapping `entry` hold `wanted` (`None`: absent).
fn entry_edits(
    path: &str,
    text: &str,
    entry: &Node,
    map: &[(Node, Node)],
    wanted: &[(&str, Option<String>)],
) -> Result<Vec<LineEdit>, UpgradeError> {
    let lines: Vec<&str> = text.lines().collect();
    let line_text = |n: u32| lines.get(n as usize - 1).copied().unwrap_or("");
    let first_key = map.first().map(|(k, _)| k);
    let flow = first_key.is_some_and(|k| {
        let t = line_text(k.line)
            .trim_start()
            .trim_start_matches("- ")
            .trim_start();
        t.starts_with('{')
    });
    let refuse = |reason: &str| UpgradeError::Unsupported {
        path: path.to_string(),
        line: entry.line,
        reason: reason.to_string(),
    };
    let mut edits = Vec::new();
    for (key, value) in wanted {
        let present = map.iter().find(|(k, _)| k.as_str() == Some(key));
        match (present, value) {
            (Some((_, v)), Some(new)) => {
                let old = v.string().unwrap_or_default();
                if old != *new {
                    edits.push(LineEdit::Value {
                        line: v.line,
                        key: (*key).to_string(),
                        old,
                        new: new.clone(),
                    });
                }
            }
            (Some((k, v)), None) => {
                if flow || k.line != v.line {
                    return Err(refuse(&format!(
                        "remove {key} by hand: bulkhead removes only a block mapping's one-line key"
                    )));
                }
                edits.push(LineEdit::Remove { line: k.line });
            }
            (None, Some(new)) => {
                let Some(first) = first_key else {
                    return Err(refuse("an empty entry"));
                };
                if flow {
                    return Err(refuse(&format!(
                        "add {key} by hand: bulkhead adds keys to block mappings only"
                    )));
                }
                let first_name = first.as_str().unwrap_or_default();
                let column = line_text(first.line).find(first_name).unwrap_or(0);
                let after = map
                    .iter()
                    .map(|(k, v)| k.line.max(v.line))
                    .max()
                    .unwrap_or(first.line);
                edits.push(LineEdit::Insert {
                    after,
                    column,
                    key: (*key).to_string(),
                    value: new.clone(),
                });
            }
            (None, None) => {}
        }
    }
    Ok(edits)
}

/// Applies `edits` bottom up, so earlier lines keep their numbers.
fn finish(
    path: &str,
    text: &str,
    mut edits: Vec<LineEdit>,
    moved: Vec<FromEdit>,
) -> Result<Option<Rewrite>, UpgradeError> {
    if moved.is_empty() {
        return Ok(None);
    }
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let line_of = |e: &LineEdit| match e {
        LineEdit::Value { line, .. } | LineEdit::Remove { line } => *line,
        LineEdit::Insert { after, .. } => *after,
    };
    // Bottom up; on one line, inserts (which go below it) before value edits.
    edits.sort_by_key(|e| std::cmp::Reverse((line_of(e), matches!(e, LineEdit::Insert { .. }))));
    for edit in edits {
        match edit {
            LineEdit::Value {
                line,
                key,
                old,
                new,
            } => {
                let not_found = || UpgradeError::NotFound {
                    path: path.to_string(),
                    line,
                    written: old.clone(),
                };
                let raw = lines.get_mut(line as usize - 1).ok_or_else(not_found)?;
                let key_at = raw.find(&format!("{key}:")).ok_or_else(not_found)?;
                let (start, end, quoted) =
                    value_span(raw, key_at + key.len() + 1).ok_or_else(not_found)?;
                if raw[start..end] != old {
                    return Err(not_found());
                }
                let new = if quoted || !needs_quotes(&new) {
                    new
                } else {
                    format!("\"{new}\"")
                };
                raw.replace_range(start..end, &new);
            }
            LineEdit::Remove { line } => {
                lines.remove(line as usize - 1);
            }
            LineEdit::Insert {
                after,
                column,
                key,
                value,
            } => {
                let at = (after as usize).min(lines.len());
                if at > 0 && !lines[at - 1].ends_with('\n') {
                    lines[at - 1].push('\n');
                }
                let value = if needs_quotes(&value) {
                    format!("\"{value}\"")
                } else {
                    value
                };
                lines.insert(at, format!("{}{key}: {value}\n", " ".repeat(column)));
            }
        }
    }
    Ok(Some((lines.concat(), moved)))
}

/// The bytes of the scalar that starts after `from` on `line` (past spaces):
/// inside its quotes when quoted (and `true`), else up to a `,` or `}` of a
/// flow mapping, a comment, or the line's end.
fn value_span(line: &str, from: usize) -> Option<(usize, usize, bool)> {
    let rest = line.get(from..)?;
    let start = from + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
    let body = &line[start..];
    match body.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let close = body[1..].find(q)?;
            Some((start + 1, start + 1 + close, true))
        }
        _ => {
            let end = body
                .find([',', '}', '\n', '\r'])
                .into_iter()
                .chain(body.find(" #"))
                .min()
                .unwrap_or(body.len());
            Some((start, start + body[..end].trim_end().len(), false))
        }
    }
}

/// Whether a plain scalar would not read back as the string `value` (a
/// number-like tag such as `1.20`, or one YAML gives another meaning).
fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value.parse::<f64>().is_ok()
        || matches!(
            value,
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~"
        )
        || value.contains(": ")
        || value.contains(" #")
}

#[cfg(test)]
mod tests;
