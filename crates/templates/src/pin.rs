//! Pin rewrites: change the version of one template pin in a CI file's raw
//! text, leaving every other byte as it was.
//!
//! The YAML is never re-serialised (that would lose comments, quoting, key
//! order and line endings): the pin's provenance line locates the version
//! token, and only those bytes are replaced. For `include: project` the
//! version sits on the entry's `ref:` line, found through the line-keeping
//! YAML loader.

use model::TemplateKind;
use std::fmt::Write as _;
use yaml::{Node, Value};

/// Why a pin could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinEditError {
    #[error("{path}:{line}: no such line (the file has {lines})")]
    NoLine {
        path: String,
        line: u32,
        lines: usize,
    },
    #[error("{path}:{line}: no include entry with a ref: starts or lists a file here")]
    NoRef { path: String, line: u32 },
    #[error(
        "{path}:{line}: the pin does not say {version} here (was the file changed since the scan?)"
    )]
    NoVersion {
        path: String,
        line: u32,
        version: String,
    },
    #[error("{path}: cannot rewrite a {kind} pin")]
    Unsupported { path: String, kind: String },
}

/// One version rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinEdit {
    /// The 1-based line whose version changed (the `ref:` line for project includes).
    pub line: u32,
    pub from: String,
    pub to: String,
}

/// Rewrites the pin found at `line` from version `from` to `to` (spelled like
/// `from`: with or without the `v`). Returns the new text and the edit.
///
/// # Errors
/// When the line does not exist or does not hold `from` where a pin of that
/// kind writes its version.
pub fn rewrite_pin(
    path: &str,
    text: &str,
    kind: TemplateKind,
    line: u32,
    from: &str,
    to: &str,
) -> Result<(String, PinEdit), PinEditError> {
    let to = crate::version::spelled_like(to, from);
    let after_at = match kind {
        TemplateKind::GithubWorkflow | TemplateKind::GitlabComponent => true,
        TemplateKind::GitlabProject => false,
        other => {
            return Err(PinEditError::Unsupported {
                path: path.to_string(),
                kind: format!("{other:?}"),
            });
        }
    };
    let version_line = version_line(text, kind, line).ok_or(PinEditError::NoRef {
        path: path.to_string(),
        line,
    })?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let index = version_line as usize;
    let Some(raw) = index.checked_sub(1).and_then(|i| lines.get(i)) else {
        return Err(PinEditError::NoLine {
            path: path.to_string(),
            line: version_line,
            lines: lines.len(),
        });
    };
    let start_of_line: usize = lines[..index - 1].iter().map(|l| l.len()).sum();
    let offset = token_offset(raw, from, after_at).ok_or_else(|| PinEditError::NoVersion {
        path: path.to_string(),
        line: version_line,
        version: from.to_string(),
    })?;
    let at = start_of_line + offset;
    let mut out = String::with_capacity(text.len() + to.len());
    out.push_str(&text[..at]);
    out.push_str(&to);
    out.push_str(&text[at + from.len()..]);
    Ok((
        out,
        PinEdit {
            line: version_line,
            from: from.to_string(),
            to,
        },
    ))
}

/// The line that holds the version of the pin found at `line`: that line for
/// workflows, the `component:` line for components (an entry's line is its
/// first key's), the `ref:` line for project includes. `None` when a project
/// include has no `ref:`, or for kinds that pin no version.
pub fn version_line(text: &str, kind: TemplateKind, line: u32) -> Option<u32> {
    match kind {
        TemplateKind::GithubWorkflow => Some(line),
        TemplateKind::GitlabComponent => Some(value_line(text, line, "component").unwrap_or(line)),
        TemplateKind::GitlabProject => value_line(text, line, "ref"),
        _ => None,
    }
}

/// Where `version` is written on `line`: after `@` for components and
/// workflows, after the `ref` key for project includes; whole tokens only,
/// so `v1.2.0` never matches inside `v1.2.0-rc.1`.
fn token_offset(line: &str, version: &str, after_at: bool) -> Option<usize> {
    if version.is_empty() {
        return None;
    }
    let search_from = if after_at {
        0
    } else {
        line.find("ref")? + "ref".len()
    };
    line[search_from..]
        .match_indices(version)
        .map(|(i, _)| search_from + i)
        .find(|&i| {
            let before = line[..i].chars().next_back();
            let after = line[i + version.len()..].chars().next();
            let starts = if after_at {
                before == Some('@')
            } else {
                matches!(before, Some(' ' | '\t' | '"' | '\'' | ':'))
            };
            let ends = matches!(
                after,
                None | Some(' ' | '\t' | '"' | '\'' | ',' | '}' | ']' | '#' | '\r' | '\n')
            );
            starts && ends
        })
}

/// The line of `key` (`ref` or `component`) in the include entry that starts
/// at `line` or lists a file at `line`.
fn value_line(text: &str, line: u32, key: &str) -> Option<u32> {
    let (documents, _) = yaml::load(text);
    documents.iter().find_map(|d| find_entry_key(d, line, key))
}

fn find_entry_key(node: &Node, line: u32, key: &str) -> Option<u32> {
    match &node.value {
        Value::Map(pairs) => {
            let source = if key == "ref" { "project" } else { key };
            if node.get(source).is_some() {
                let files = node.get("file");
                let here = node.line == line
                    || files.is_some_and(|f| {
                        f.line == line
                            || f.as_seq()
                                .unwrap_or_default()
                                .iter()
                                .any(|i| i.line == line)
                    });
                if here {
                    return node.get(key).map(|r| r.line);
                }
            }
            pairs.iter().find_map(|(_, v)| find_entry_key(v, line, key))
        }
        Value::Seq(items) => items.iter().find_map(|i| find_entry_key(i, line, key)),
        Value::Scalar { .. } => None,
    }
}

/// A unified diff of two versions of a file (three lines of context), empty when they are equal.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let mut out = format!("--- a/{path}\n+++ b/{path}\n");
    // Pin rewrites never add or remove lines; anything else is shown whole.
    if a.len() != b.len() {
        let _ = writeln!(out, "@@ -1,{} +1,{} @@", a.len(), b.len());
        for l in &a {
            push_line(&mut out, '-', l);
        }
        for l in &b {
            push_line(&mut out, '+', l);
        }
        return out;
    }
    let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &i in &changed {
        let start = i.saturating_sub(3);
        let end = (i + 4).min(a.len());
        match hunks.last_mut() {
            Some(last) if start <= last.1 => last.1 = end,
            _ => hunks.push((start, end)),
        }
    }
    for (start, end) in hunks {
        let _ = writeln!(
            out,
            "@@ -{},{} +{},{} @@",
            start + 1,
            end - start,
            start + 1,
            end - start
        );
        for i in start..end {
            if a[i] == b[i] {
                push_line(&mut out, ' ', a[i]);
            } else {
                push_line(&mut out, '-', a[i]);
                push_line(&mut out, '+', b[i]);
            }
        }
    }
    out
}

fn push_line(out: &mut String, mark: char, line: &str) {
    out.push(mark);
    out.push_str(line);
    if !line.ends_with('\n') {
        out.push_str("\n\\ No newline at end of file\n");
    }
}

#[cfg(test)]
mod tests;
