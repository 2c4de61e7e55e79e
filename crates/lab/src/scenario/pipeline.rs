//! Scenario `pipeline`: "A shared pipeline was updated. How do you prevent breaking 80 apps?"
//!
//! The lab's ci-templates repository has released an incompatible v2.0.0.
//! `template diff` classifies it as a major release, and refuses a v2.0.1
//! that narrows an input's options (tagged in a clone, so the lab's
//! repository keeps its releases); `template check` names the apps that would
//! break, checked against the ground truth; `template plan` picks the
//! representatives and the waves; `template bump --wave 1 --apply` commits in
//! each wave-1 repository, whose branch is then merged as a reviewer would;
//! the adoption report counts the apps on v2.0.0; one app is rolled back by
//! merging its re-pin commit, which restores its CI file byte for byte. At
//! the end every repository's HEAD is put back where it was (the commits stay
//! on their branches), so the scenario runs again the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use super::live;
use super::{Lab, Report, ScenarioError, Step, failed};

/// Where the lab keeps its templates repository (`[templates] repo` of its bulkhead.toml).
const TEMPLATES_REPO: &str = "ci-templates";
/// The template file the under-bumped release changes, and how.
const NARROWED_FILE: &str = "templates/build.yml";
const OPTIONS_BEFORE: &str = "options: [go, java, python, node]";
const OPTIONS_AFTER: &str = "options: [go, java, python]";

/// Runs git in `repo`, records it as a step, and returns its output.
fn git(report: &mut Report, repo: &Path, args: &[&str]) -> Result<String, ScenarioError> {
    let started = Instant::now();
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .output()
        .map_err(|e| failed("running git", e.to_string()))?;
    let exit = output.status.code().unwrap_or(-1);
    report.steps.push(Step {
        command: format!("git -C {} {}", repo.display(), args.join(" ")),
        exit,
        ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    });
    if exit != 0 {
        return Err(failed(
            &format!("git -C {} {}", repo.display(), args.join(" ")),
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A release tag's numbers.
fn semver(tag: &str) -> Option<(u64, u64, u64)> {
    let mut parts = tag.strip_prefix('v')?.split('.');
    let version = (
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    );
    parts.next().is_none().then_some(version)
}

/// Repositories whose HEAD the scenario moved, with where it was: dropping it
/// puts every HEAD back, whatever happened in between.
struct Merged {
    heads: BTreeMap<PathBuf, String>,
}

impl Merged {
    /// Fast-forwards `repo` to `branch`, as merging its pull request would.
    fn merge(
        &mut self,
        report: &mut Report,
        repo: &Path,
        branch: &str,
    ) -> Result<(), ScenarioError> {
        if !self.heads.contains_key(repo) {
            let head = git(report, repo, &["rev-parse", "HEAD"])?;
            self.heads.insert(repo.to_path_buf(), head);
        }
        git(report, repo, &["merge", "--ff-only", "--quiet", branch]).map(drop)
    }

    /// Resets every moved HEAD; returns how many.
    fn restore(&mut self) -> usize {
        let n = self.heads.len();
        for (repo, head) in std::mem::take(&mut self.heads) {
            let _ = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["reset", "--hard", "--quiet", &head])
                .output();
        }
        n
    }
}

impl Drop for Merged {
    fn drop(&mut self) {
        self.restore();
    }
}

pub fn run(lab: &mut Lab, report: &mut Report) -> Result<(), ScenarioError> {
    let work = live::work_dir(lab, "pipeline")?;
    let dir = lab.dir.display().to_string();
    let templates = lab.dir.join(TEMPLATES_REPO);

    // The newest release and the newest one of the major line before it.
    let tags = git(report, &templates, &["tag", "--list", "v*"])?;
    let mut releases: Vec<((u64, u64, u64), String)> = tags
        .lines()
        .filter_map(|t| semver(t).map(|v| (v, t.to_string())))
        .collect();
    releases.sort();
    let (latest_v, latest) = releases
        .last()
        .cloned()
        .ok_or_else(|| failed("the templates repository", "has no release tag"))?;
    let previous = releases
        .iter()
        .rev()
        .find(|(v, _)| v.0 < latest_v.0)
        .map(|(_, t)| t.clone())
        .ok_or_else(|| failed("the templates repository", "has no release before a major"))?;
    report.evidence("release", json!({"from": previous, "to": latest}));

    // 1. The release is a major one; an under-bumped patch on top of it is refused.
    let diff = lab.run_json(
        report,
        &[
            "template", "diff", &previous, &latest, "--path", &dir, "--json",
        ],
    )?;
    let majors: Vec<String> = diff["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["severity"] == "major")
        .filter_map(|c| c["reason"].as_str().map(String::from))
        .collect();
    report.check(
        "template diff finds the major change",
        diff["required_bump"] == "major" && diff["under_bumped"] == false && !majors.is_empty(),
        format!(
            "{previous} -> {latest}: required {}, tagged {}, {} major changes",
            diff["required_bump"],
            diff["actual_bump"],
            majors.len()
        ),
    );
    let patch = format!("v{}.{}.{}", latest_v.0, latest_v.1, latest_v.2 + 1);
    let refused = under_bumped_release(lab, report, &work, &latest, &patch)?;
    report.check(
        "an under-bumped release is refused",
        refused.0 == 1 && refused.1["under_bumped"] == true,
        format!(
            "{patch} narrows the language options: exit {}, required {}, suggested {}",
            refused.0, refused.1["required_bump"], refused.1["suggested_version"]
        ),
    );

    // 2. Which apps would break, against the ground truth.
    let check = lab.run_json(
        report,
        &["template", "check", &latest, "--path", &dir, "--json"],
    )?;
    let breaking: BTreeSet<String> = names(&check["breaking"]);
    let safe: BTreeSet<String> = names(&check["safe"]);
    let truth_breaking: BTreeSet<String> = lab.truth["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["breaks_on_v2"] == true)
        .filter_map(|s| s["name"].as_str().map(String::from))
        .collect();
    report.check(
        "template check names the apps that would break",
        breaking == truth_breaking,
        format!(
            "{} would break, {} are safe; the ground truth plants {} that break; differences {:?}",
            breaking.len(),
            safe.len(),
            truth_breaking.len(),
            breaking
                .symmetric_difference(&truth_breaking)
                .collect::<Vec<_>>()
        ),
    );
    let example = check["breaking"][0].clone();

    // 3. Representatives and waves.
    let plan = lab.run_json(
        report,
        &["template", "plan", &latest, "--path", &dir, "--json"],
    )?;
    let waves: Vec<(String, Vec<String>)> = plan["plan"]["waves"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            (
                w["name"].as_str().unwrap_or_default().to_string(),
                w["steps"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s["target"].as_str().map(String::from))
                    .collect(),
            )
        })
        .collect();
    let planned: BTreeSet<String> = waves.iter().flat_map(|(_, apps)| apps.clone()).collect();
    let representatives = waves.first().map(|(_, a)| a.clone()).unwrap_or_default();
    report.check(
        "template plan keeps breaking apps out and every safe app in",
        !representatives.is_empty() && planned.is_disjoint(&breaking) && planned == safe,
        format!(
            "{} waves, {} representatives, {} apps planned of {} safe",
            waves.len(),
            representatives.len(),
            planned.len(),
            safe.len()
        ),
    );

    // 4. Wave 1 bumped with commits, then merged.
    let bump = lab.run(
        report,
        &[
            "template", "bump", &latest, "--wave", "1", "--apply", "--path", &dir,
        ],
    )?;
    if bump.exit != 0 {
        return Err(bump.failed());
    }
    let branch = format!("bulkhead/template-{latest}");
    let mut merged = Merged {
        heads: BTreeMap::new(),
    };
    let mut commits = BTreeMap::new();
    for app in &representatives {
        let repo = repo_of(lab, app)?;
        let log = git(report, &repo, &["log", "-1", "--format=%h %s", &branch])?;
        commits.insert(app.clone(), log);
        merged.merge(report, &repo, &branch)?;
    }
    let subject = format!("ci: adopt platform/ci-templates {latest} (wave 1");
    report.check(
        "wave 1 is bumped with one commit per repository",
        commits.len() == representatives.len() && commits.values().all(|c| c.contains(&subject)),
        format!("{} commits on {branch}", commits.len()),
    );
    let adoption = lab.run_json(report, &["template", "adoption", "--path", &dir, "--json"])?;
    let adopted = apps_on(&adoption, &latest);
    report.check(
        "the adoption report counts wave 1 on the new release",
        adopted == representatives.iter().cloned().collect(),
        format!("{} apps on {latest}", adopted.len()),
    );

    // 5. One app rolled back by re-pinning.
    let victim = representatives[0].clone();
    let victim_repo = repo_of(lab, &victim)?;
    let before_bump = merged.heads.get(&victim_repo).cloned().unwrap_or_default();
    let started = Instant::now();
    let rollback = lab.run(
        report,
        &[
            "template",
            "bump",
            &latest,
            "--wave",
            "1",
            "--rollback",
            "--apply",
            "--path",
            &dir,
        ],
    )?;
    if rollback.exit != 0 {
        return Err(rollback.failed());
    }
    let rollback_branch = format!("bulkhead/template-rollback-{latest}");
    merged.merge(report, &victim_repo, &rollback_branch)?;
    let rollback_ms = started.elapsed().as_millis();
    let rollback_commit = git(report, &victim_repo, &["log", "-1", "--format=%h %s"])?;
    let identical = git(
        report,
        &victim_repo,
        &["diff", "--stat", &before_bump, "HEAD"],
    )?;
    report.check(
        "the rolled-back app pins exactly what it pinned before",
        identical.is_empty() && rollback_commit.contains("ci: roll back platform/ci-templates"),
        format!("{victim}: {rollback_commit}; diff against before the bump: {identical:?}"),
    );
    let after_rollback =
        lab.run_json(report, &["template", "adoption", "--path", &dir, "--json"])?;
    let still = apps_on(&after_rollback, &latest);
    report.check(
        "the adoption report shows the rollback",
        !still.contains(&victim) && still.len() + 1 == adopted.len(),
        format!(
            "{} apps on {latest} after rolling {victim} back",
            still.len()
        ),
    );
    let restored = merged.restore();

    report.evidence(
        "diff",
        json!({"required_bump": diff["required_bump"], "major_changes": majors}),
    );
    report.evidence(
        "under_bumped",
        json!({"tag": patch, "exit": refused.0, "diff": {
            "required_bump": refused.1["required_bump"],
            "actual_bump": refused.1["actual_bump"],
            "suggested_version": refused.1["suggested_version"],
            "changes": refused.1["changes"],
        }}),
    );
    report.evidence(
        "check",
        json!({"breaking": breaking.len(), "safe": safe.len(), "example": example}),
    );
    report.evidence(
        "waves",
        waves
            .iter()
            .map(|(name, apps)| json!({"name": name, "apps": apps}))
            .collect::<Vec<_>>(),
    );
    report.evidence("wave_1_commits", &commits);
    report.evidence(
        "adoption",
        json!({"after_wave_1": adopted.len(), "after_rollback": still.len(), "stragglers": adoption["stragglers"].as_array().map_or(0, Vec::len)}),
    );
    report.evidence(
        "rollback",
        json!({"app": victim, "commit": rollback_commit, "ms": rollback_ms}),
    );
    report.evidence(
        "lab_restored",
        format!("HEAD of {restored} repositories put back; the commits stay on {branch} and {rollback_branch}"),
    );

    let mut owners: BTreeMap<String, usize> = BTreeMap::new();
    for app in check["breaking"].as_array().into_iter().flatten() {
        *owners
            .entry(app["owner"].as_str().unwrap_or("unowned").to_string())
            .or_default() += 1;
    }
    report.answers.what_breaks = vec![
        format!(
            "{latest} is a major release of platform/ci-templates: {} major changes against {previous}, e.g. {}",
            majors.len(),
            majors.first().cloned().unwrap_or_default()
        ),
        format!(
            "{} of {} apps would break on it (`template check`, matching the ground truth), each reason located in its CI file, e.g. {}: {}",
            breaking.len(),
            breaking.len() + safe.len(),
            example["service"].as_str().unwrap_or_default(),
            example["problems"][0]["message"]
                .as_str()
                .unwrap_or_default()
        ),
        format!(
            "a {patch} that drops an option of `language` is refused: it needs a {} release (exit {})",
            refused.1["required_bump"].as_str().unwrap_or("major"),
            refused.0
        ),
    ];
    report.answers.who_is_impacted = vec![
        format!(
            "blocked until fixed: {} apps of {} teams ({})",
            breaking.len(),
            owners.len(),
            owners
                .iter()
                .map(|(o, n)| format!("{o} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "adopting: {} safe apps in {} waves, representatives first: {}",
            safe.len(),
            waves.len(),
            representatives.join(", ")
        ),
    ];
    report.answers.how_fast_we_roll_back = vec![
        format!(
            "re-pinning: `template bump {latest} --wave 1 --rollback --apply` committed the old pin on {rollback_branch}; merging it took {victim} back in {rollback_ms} ms, its CI file identical to before the bump"
        ),
        "no release is ever changed in place: rolling back is a commit in the app, reviewed like any other".into(),
    ];
    report.answers.how_we_monitor = vec![
        format!(
            "the adoption report: {} apps on {latest} after wave 1, {} after the rollback; stragglers outside the support window are listed with their owners",
            adopted.len(),
            still.len()
        ),
        "each wave's gate: its pipelines pass on the bump branch and its deployments stay healthy for the soak time before the next wave".into(),
        format!("`template diff` on every new tag refuses an under-bumped release before any app pins it ({patch} here)"),
    ];
    Ok(())
}

/// Tags `patch` in a clone of the templates repository, on top of `latest`,
/// with a narrowed input, and asks `template diff` about it. The lab's
/// repository never sees the tag.
fn under_bumped_release(
    lab: &Lab,
    report: &mut Report,
    work: &Path,
    latest: &str,
    patch: &str,
) -> Result<(i32, Value), ScenarioError> {
    let clone = work.join("ci-templates-release");
    git(
        report,
        work,
        &[
            "clone",
            "--quiet",
            &lab.dir.join(TEMPLATES_REPO).display().to_string(),
            &clone.display().to_string(),
        ],
    )?;
    git(report, &clone, &["checkout", "--quiet", "--detach", latest])?;
    let file = clone.join(NARROWED_FILE);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| failed(&format!("reading {}", file.display()), e.to_string()))?;
    if !text.contains(OPTIONS_BEFORE) {
        return Err(failed(
            &format!("{NARROWED_FILE} at {latest}"),
            format!("has no {OPTIONS_BEFORE:?} to narrow"),
        ));
    }
    std::fs::write(&file, text.replacen(OPTIONS_BEFORE, OPTIONS_AFTER, 1))
        .map_err(|e| failed(&format!("writing {}", file.display()), e.to_string()))?;
    git(
        report,
        &clone,
        &[
            "-c",
            "user.name=bulkhead",
            "-c",
            "user.email=bulkhead@localhost",
            "commit",
            "--quiet",
            "--all",
            "--message",
            "build: node is no longer a supported language",
        ],
    )?;
    git(report, &clone, &["tag", patch])?;
    let ran = lab.run(
        report,
        &[
            "template",
            "diff",
            latest,
            patch,
            "--path",
            &lab.dir.display().to_string(),
            "--templates",
            &clone.display().to_string(),
            "--state",
            &work.join("release-state").display().to_string(),
            "--json",
        ],
    )?;
    if ran.exit != 0 && ran.exit != 1 {
        return Err(ran.failed());
    }
    Ok((ran.exit, ran.json()?))
}

/// The repository of a service, from the ground truth.
fn repo_of(lab: &Lab, service: &str) -> Result<PathBuf, ScenarioError> {
    lab.truth["services"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == service)
        .and_then(|s| s["repo"].as_str())
        .map(|repo| lab.dir.join(repo))
        .ok_or_else(|| ScenarioError::Missing {
            what: format!("repository of {service}"),
            detail: "the ground truth does not name it".into(),
        })
}

/// The `service` of every entry of a list.
fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["service"].as_str().map(String::from))
        .collect()
}

/// The apps the adoption report puts on `version`.
fn apps_on(adoption: &Value, version: &str) -> BTreeSet<String> {
    adoption["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["version"] == version)
        .flat_map(|v| v["services"].as_array().into_iter().flatten())
        .filter_map(|s| s.as_str().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_tags_read_as_three_numbers() {
        assert_eq!(semver("v2.0.0"), Some((2, 0, 0)));
        assert_eq!(semver("v1.4.12"), Some((1, 4, 12)));
        for not in ["2.0.0", "v2.0", "v2.0.0.1", "vnext", "latest"] {
            assert_eq!(semver(not), None, "{not}");
        }
    }
}
