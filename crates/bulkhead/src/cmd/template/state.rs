//! What `bulkhead template` keeps in the state directory:
//!
//! - `template-tags.json`: the commit every release tag pointed at when
//!   bulkhead first read it, per templates repository. A tag found at another
//!   commit later was moved after apps may have pinned it, which breaks the
//!   "never modify a release in place" rule; the first commit stays recorded,
//!   so the warning repeats until the tag is restored.
//! - `template-plan-<version>.json`: the adoption plan of a release, saved by
//!   `template plan` (or the first `template bump`), so that wave numbers and
//!   each app's previous version stay stable while apps move.
//!
//! Files are written to a temporary name and renamed into place.

use anyhow::{Context as _, Result};
use discover::{StateDir, StateFile};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use templates::{AdoptionPlan, Tag};

const FORMAT: u32 = 1;

/// A release tag that points somewhere else than when it was first read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovedTag {
    pub tag: String,
    pub recorded: String,
    pub now: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TagsFile {
    format: u32,
    /// Templates repository (relative to the fleet root) -> tag -> commit.
    repos: BTreeMap<String, BTreeMap<String, String>>,
}

/// Records the tags of `repo` and returns the ones that moved since they were first recorded.
///
/// # Errors
/// When the state directory cannot be written.
pub fn record_tags(state_dir: &StateDir, repo: &str, tags: &[Tag]) -> Result<Vec<MovedTag>> {
    let path = state_dir.file(StateFile::TemplateTags);
    let mut file: TagsFile = match read_json(&path) {
        Some(f) => f,
        None => TagsFile {
            format: FORMAT,
            ..TagsFile::default()
        },
    };
    let known = file.repos.entry(repo.to_string()).or_default();
    let mut moved = Vec::new();
    let mut changed = false;
    for tag in tags {
        match known.get(&tag.name) {
            Some(recorded) if *recorded != tag.commit => moved.push(MovedTag {
                tag: tag.name.clone(),
                recorded: recorded.clone(),
                now: tag.commit.clone(),
            }),
            Some(_) => {}
            None => {
                known.insert(tag.name.clone(), tag.commit.clone());
                changed = true;
            }
        }
    }
    if changed {
        write_json(state_dir, &path, &file)?;
    }
    Ok(moved)
}

#[derive(Debug, Serialize, Deserialize)]
struct PlanFile {
    format: u32,
    repo: String,
    plan: AdoptionPlan,
}

/// The saved plan of `version` for `repo`, if there is a readable one.
pub fn load_plan(
    state_dir: &StateDir,
    repo: &str,
    version: &str,
) -> Option<(AdoptionPlan, PathBuf)> {
    let path = state_dir.template_plan(version);
    let file: PlanFile = read_json(&path)?;
    (file.format == FORMAT && file.repo == repo && file.plan.version == version)
        .then_some((file.plan, path))
}

/// Saves the plan of its version; returns where.
///
/// # Errors
/// When the state directory cannot be written.
pub fn save_plan(state_dir: &StateDir, repo: &str, plan: &AdoptionPlan) -> Result<PathBuf> {
    let path = state_dir.template_plan(&plan.version);
    let file = PlanFile {
        format: FORMAT,
        repo: repo.to_string(),
        plan: plan.clone(),
    };
    write_json(state_dir, &path, &file)?;
    Ok(path)
}

/// A missing or unreadable file is `None`: the state is derived data.
fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_json(state_dir: &StateDir, path: &Path, value: &impl Serialize) -> Result<()> {
    let state_dir = state_dir.path();
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    // The state is derived data: keep it out of the fleet's own git history.
    let ignore = state_dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n").with_context(|| format!("writing {}", ignore.display()))?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(value)?;
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", path.display()))
}
