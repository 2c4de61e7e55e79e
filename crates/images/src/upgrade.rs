//! Base image upgrades: which Dockerfiles build on an image, and the edit that
//! moves one to a new reference, changing only the reference's bytes on the
//! `FROM` line (or on the `ARG` line whose default the `FROM` uses), or on a
//! manifest's `image:` line.

use model::{Dockerfile, ImageRef, Stage, StageBase};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("{path}:{line}: no such line")]
    NoLine { path: String, line: u32 },
    #[error(
        "{path}:{line}: {written:?} is not on this line (was the file changed since the scan?)"
    )]
    NotFound {
        path: String,
        line: u32,
        written: String,
    },
    #[error("{path}:{line}: {reason}")]
    Unsupported {
        path: String,
        line: u32,
        reason: String,
    },
    #[error(
        "{path}:{line}: FROM {written} uses a variable bulkhead cannot trace to one ARG default"
    )]
    Variable {
        path: String,
        line: u32,
        written: String,
    },
}

/// One rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromEdit {
    pub path: String,
    pub line: u32,
    pub from: String,
    pub to: String,
}

/// The final stage of `dockerfile` when it is built on `name` (`registry/repository`)
/// with a reference other than `to`.
pub fn stage_to_upgrade<'d>(
    dockerfile: &'d Dockerfile,
    name: &str,
    to: &ImageRef,
) -> Option<&'d Stage> {
    let base = dockerfile.final_base()?;
    if base.name() != name || base == to {
        return None;
    }
    dockerfile
        .stages
        .iter()
        .find(|s| matches!(&s.base, StageBase::Image(i) if std::ptr::eq(i, base)))
}

/// The final stage of `dockerfile` when its base is exactly `from` (as parsed:
/// same registry, repository, tag and digest) and not already `to`.
pub fn stage_built_on<'d>(
    dockerfile: &'d Dockerfile,
    from: &ImageRef,
    to: &ImageRef,
) -> Option<&'d Stage> {
    let base = dockerfile.final_base()?;
    if base != from || base == to {
        return None;
    }
    dockerfile
        .stages
        .iter()
        .find(|s| matches!(&s.base, StageBase::Image(i) if std::ptr::eq(i, base)))
}

/// Rewrites a manifest's `image:` field holding `from` to `to`: the first
/// `image:` line at or after `line` (a container's first line) whose value is
/// `from`, quoted or not. Every other byte is kept.
///
/// # Errors
/// When no such line follows `line` within the container (the file changed
/// since the scan, or the reference comes from elsewhere, such as a
/// kustomize `images:` override).
pub fn rewrite_image_field(
    path: &str,
    text: &str,
    line: u32,
    from: &str,
    to: &str,
) -> Result<(String, FromEdit), UpgradeError> {
    let not_found = || UpgradeError::NotFound {
        path: path.to_string(),
        line,
        written: from.to_string(),
    };
    let mut start = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let here = start;
        start += raw.len();
        if number < line {
            continue;
        }
        let trimmed = raw.trim_start().trim_start_matches("- ").trim_start();
        let Some(value) = trimmed.strip_prefix("image:") else {
            continue;
        };
        // The value without a trailing comment or quotes.
        let value = value
            .split(" #")
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches(|c| c == '"' || c == '\'');
        if value != from {
            continue;
        }
        let offset = whole_token(raw, from).ok_or_else(not_found)?;
        let at = here + offset;
        let mut out = String::with_capacity(text.len() + to.len());
        out.push_str(&text[..at]);
        out.push_str(to);
        out.push_str(&text[at + from.len()..]);
        return Ok((
            out,
            FromEdit {
                path: path.to_string(),
                line: number,
                from: from.to_string(),
                to: to.to_string(),
            },
        ));
    }
    Err(not_found())
}

/// Rewrites the reference of `stage` in `text` to `to`. Every other byte is kept.
///
/// # Errors
/// When the line does not hold what the scan read, or the `FROM` uses a
/// variable that is not one `ARG NAME=default`.
pub fn rewrite_from(
    path: &str,
    text: &str,
    stage: &Stage,
    to: &str,
) -> Result<(String, FromEdit), UpgradeError> {
    let written = stage.written.as_str();
    let (line, token) = match variable_name(written) {
        Some(var) => {
            let (line, value) =
                arg_default(text, stage.at.line, var).ok_or_else(|| UpgradeError::Variable {
                    path: path.to_string(),
                    line: stage.at.line,
                    written: written.to_string(),
                })?;
            (line, value)
        }
        None if written.contains('$') => {
            return Err(UpgradeError::Variable {
                path: path.to_string(),
                line: stage.at.line,
                written: written.to_string(),
            });
        }
        None => (stage.at.line, written.to_string()),
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let Some(raw) = (line as usize).checked_sub(1).and_then(|i| lines.get(i)) else {
        return Err(UpgradeError::NoLine {
            path: path.to_string(),
            line,
        });
    };
    let start: usize = lines[..line as usize - 1].iter().map(|l| l.len()).sum();
    let offset = whole_token(raw, &token).ok_or_else(|| UpgradeError::NotFound {
        path: path.to_string(),
        line,
        written: token.clone(),
    })?;
    let at = start + offset;
    let mut out = String::with_capacity(text.len() + to.len());
    out.push_str(&text[..at]);
    out.push_str(to);
    out.push_str(&text[at + token.len()..]);
    Ok((
        out,
        FromEdit {
            path: path.to_string(),
            line,
            from: token,
            to: to.to_string(),
        },
    ))
}

/// `NAME` when `written` is exactly `$NAME` or `${NAME}`.
fn variable_name(written: &str) -> Option<&str> {
    let name = written
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| written.strip_prefix('$'))?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

/// The last `ARG NAME=value` before line `before`: its line and its value as written.
fn arg_default(text: &str, before: u32, name: &str) -> Option<(u32, String)> {
    let mut found = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .take(before.saturating_sub(1) as usize)
    {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed
            .get(..4)
            .filter(|k| k.eq_ignore_ascii_case("ARG "))
            .map(|_| &trimmed[4..])
        else {
            continue;
        };
        for decl in rest.split_whitespace() {
            if let Some((n, v)) = decl.split_once('=')
                && n == name
            {
                let v = v.trim_matches('"');
                found = Some((u32::try_from(i + 1).unwrap_or(u32::MAX), v.to_string()));
            }
        }
    }
    found
}

/// The byte offset of `token` in `line` as a whole word (bounded by whitespace,
/// `=`, quotes or the line's ends).
fn whole_token(line: &str, token: &str) -> Option<usize> {
    let boundary =
        |c: Option<char>| c.is_none_or(|c| c.is_whitespace() || c == '=' || c == '"' || c == '\'');
    line.match_indices(token).map(|(i, _)| i).find(|&i| {
        boundary(line[..i].chars().next_back()) && boundary(line[i + token.len()..].chars().next())
    })
}
