//! `bulkhead template` end to end, on generated fleets whose ci-templates
//! repository and app repositories are real git repositories.

use crate::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

/// A generated 60-service fleet (seed 11) and its ground truth.
struct Fleet {
    _dir: TempDir,
    root: PathBuf,
    truth: Value,
}

fn fleet(name: &str) -> Fleet {
    let dir = TempDir::new(name);
    let root = dir.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init"])
            .arg(&root)
            .args(["--services", "60", "--seed", "11"]),
    );
    let truth = json(&std::fs::read_to_string(root.join("ground-truth.json")).expect("truth"));
    Fleet {
        _dir: dir,
        root,
        truth,
    }
}

impl Fleet {
    fn template(&self, args: &[&str]) -> Command {
        let mut cmd = bulkhead();
        cmd.arg("template").args(args).arg("--path").arg(&self.root);
        cmd
    }

    fn service(&self, name: &str) -> &Value {
        self.truth["services"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .unwrap_or_else(|| panic!("no service {name} in the ground truth"))
    }
}

/// Runs and returns (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().expect("run bulkhead");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs git in `dir` with a fixed identity, independent of the machine's configuration.
fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn git_text(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(git(dir, args))
        .expect("utf-8")
        .trim_end()
        .to_string()
}

fn subjects(changes: &Value) -> BTreeSet<String> {
    changes
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                c["severity"].as_str().unwrap_or("?"),
                c["file"].as_str().unwrap_or("?"),
                c["subject"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn diff_reports_the_planted_major_release_and_catches_an_under_bump() {
    let f = fleet("template-diff");
    let (code, out, err) = run(&mut f.template(&["diff", "v1.4.2", "v2.0.0", "--json"]));
    assert_eq!(code, 0, "v2.0.0 is a major release: no under-bump\n{err}");
    let diff = json(&out);
    assert_eq!(diff["schema"], "bulkhead.template-diff/v1");
    assert_eq!(diff["required_bump"], "major");
    assert_eq!(diff["actual_bump"], "major");
    assert_eq!(diff["under_bumped"], false);
    let found = subjects(&diff["changes"]);
    for planted in [
        "major templates/build.yml input image_name",
        "major templates/build.yml input docker_context",
        "major templates/build.yml input image",
        "major templates/build.yml input language",
        "major templates/build.yml job lint",
        "major templates/build.yml stage lint",
        "major .github/workflows/build.yml input image_name",
        "major .github/workflows/build.yml input docker_context",
        "major .github/workflows/build.yml input image",
        "major .github/workflows/build.yml job lint",
    ] {
        assert!(found.contains(planted), "{planted} missing from {found:#?}");
    }
    let reasons: Vec<&str> = diff["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"input language options narrowed: rust no longer accepted"),
        "{reasons:#?}"
    );
    // The deploy templates did not change.
    assert!(
        !found.iter().any(|s| s.contains("deploy.yml")),
        "{found:#?}"
    );
    // Patch releases changed no interface.
    let (code, out, _) = run(&mut f.template(&["diff", "v1.4.1", "v1.4.2"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("v1.4.1 -> v1.4.2 is a patch step: ok"),
        "{out}"
    );

    // A release that removes an input but is tagged as a patch: under-bumped.
    let repo = f.root.join("ci-templates");
    let build = repo.join("templates/build.yml");
    git(&repo, &["checkout", "-q", "v1.4.2"]);
    let at_v142 = std::fs::read_to_string(&build).expect("read build.yml");
    let removed = at_v142.replace(
        "    platforms:\n      description: \"Target platforms, comma separated.\"\n      default: linux/amd64\n",
        "",
    );
    assert_ne!(at_v142, removed, "v1.4.2 declares the platforms input");
    std::fs::write(&build, removed).expect("write build.yml");
    // Bad input rides along: a template with a malformed spec header and a tag that is no version.
    std::fs::write(
        repo.join("templates/broken.yml"),
        "spec: [inputs]\n---\nj:\n  script: x\n",
    )
    .expect("write broken.yml");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "Drop the platforms input"]);
    git(&repo, &["tag", "v1.4.3"]);
    git(&repo, &["tag", "nightly"]);
    let (code, out, err) = run(&mut f.template(&["diff", "v1.4.2", "v1.4.3", "--json"]));
    assert_eq!(
        code, 1,
        "an under-bumped release fails the check\n{out}\n{err}"
    );
    let diff = json(&out);
    assert_eq!(diff["required_bump"], "major");
    assert_eq!(diff["actual_bump"], "patch");
    assert_eq!(diff["under_bumped"], true);
    assert_eq!(diff["suggested_version"], "v2.0.0");
    let found = subjects(&diff["changes"]);
    assert!(
        found.contains("major templates/build.yml input platforms"),
        "{found:#?}"
    );
    assert!(
        found.contains("minor templates/broken.yml file templates/broken.yml"),
        "{found:#?}"
    );
    assert!(err.contains("malformed spec header"), "{err}");
    assert!(
        diff["diagnostics"]
            .as_array()
            .expect("diagnostics")
            .iter()
            .any(|d| d["message"]
                .as_str()
                .is_some_and(|m| m.contains("tag nightly"))),
        "{out}"
    );
    let (code, table, _) = run(&mut f.template(&["diff", "v1.4.2", "v1.4.3"]));
    assert_eq!(code, 1);
    assert!(
        table.contains(
            "but v1.4.2 -> v1.4.3 is a patch step: UNDER-BUMPED; release it as v2.0.0 instead"
        ),
        "{table}"
    );
    // An unreleased revision: the diff says which version to tag.
    let (code, out, _) = run(&mut f.template(&["diff", "v1.4.2", "HEAD"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("HEAD is no release: tag it v2.0.0"), "{out}");
}

#[test]
fn a_moved_release_tag_is_reported() {
    let f = fleet("template-tag-moved");
    // The first read records every tag's commit.
    let (code, _, err) = run(&mut f.template(&["diff", "v1.2.0", "v1.3.0"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("moved"), "{err}");
    let repo = f.root.join("ci-templates");
    let original = git_text(&repo, &["rev-parse", "v1.2.0^{commit}"]);
    let other = git_text(&repo, &["rev-parse", "v1.3.0^{commit}"]);
    git(&repo, &["tag", "-f", "v1.2.0", &other]);

    let (code, out, err) = run(&mut f.template(&["diff", "v1.2.0", "v1.3.0", "--json"]));
    assert_eq!(code, 1, "a moved release fails the diff\n{err}");
    let expected = format!(
        "release tag v1.2.0 moved from {} to {} after apps pinned it",
        &original[..12],
        &other[..12]
    );
    assert!(err.contains(&expected), "{err}");
    let moved = json(&out)["moved_tags"].clone();
    assert_eq!(moved.as_array().map(Vec::len), Some(1), "{moved}");
    // With the fleet scanned, the warning counts the apps that pin it.
    let pinned = f.truth["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter(|s| {
            s["template"]["version"]
                .as_str()
                .map(|v| v.trim_start_matches('v'))
                == Some("1.2.0")
        })
        .count();
    assert!(pinned > 0, "the fleet pins v1.2.0");
    let (_, _, err) = run(&mut f.template(&["adoption"]));
    assert!(err.contains(&format!("({pinned} app(s) pin it)")), "{err}");
    // Restoring the tag ends the warning.
    git(&repo, &["tag", "-f", "v1.2.0", &original]);
    let (code, _, err) = run(&mut f.template(&["diff", "v1.2.0", "v1.3.0"]));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("moved"), "{err}");
}

#[test]
fn check_flags_exactly_the_apps_the_ground_truth_says_break() {
    let f = fleet("template-check");
    let (code, out, err) = run(&mut f.template(&["check", "v2.0.0", "--json"]));
    assert_eq!(code, 1, "apps break on v2.0.0\n{err}");
    let check = json(&out);
    assert_eq!(check["schema"], "bulkhead.template-check/v1");
    let names = |list: &Value| -> BTreeSet<String> {
        list.as_array()
            .expect("list")
            .iter()
            .filter_map(|a| a["service"].as_str().map(str::to_string))
            .collect()
    };
    let services = f.truth["services"].as_array().expect("services");
    let expected_breaking: BTreeSet<String> = services
        .iter()
        .filter(|s| s["breaks_on_v2"] == true)
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    let expected_safe: BTreeSet<String> = services
        .iter()
        .filter(|s| s["breaks_on_v2"] == false)
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    assert!(!expected_breaking.is_empty() && !expected_safe.is_empty());
    assert_eq!(names(&check["breaking"]), expected_breaking);
    assert_eq!(names(&check["safe"]), expected_safe);

    // And for the reasons the generator planted, each located in the app's CI file.
    for app in check["breaking"].as_array().expect("breaking") {
        let name = app["service"].as_str().expect("name");
        let truth = f.service(name);
        let expected: BTreeSet<(String, String)> = truth["v2_break_reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .filter_map(Value::as_str)
            .map(|reason| {
                let words: Vec<&str> = reason.split(' ').collect();
                match words.as_slice() {
                    ["input", input, "removed"] => ("unknown-input", format!("input {input}")),
                    ["input", input, "is", "required"] => {
                        ("missing-input", format!("input {input}"))
                    }
                    ["input", input, "value", _, "not", "in", "options"] => {
                        ("not-in-options", format!("input {input}"))
                    }
                    ["job", job, "removed"] => ("removed-job", format!("job {job}")),
                    _ => panic!("unknown planted reason {reason}"),
                }
            })
            .map(|(k, s)| (k.to_string(), s))
            .collect();
        let problems = app["problems"].as_array().expect("problems");
        let found: BTreeSet<(String, String)> = problems
            .iter()
            .map(|p| {
                (
                    p["kind"].as_str().unwrap_or("?").to_string(),
                    p["subject"].as_str().unwrap_or("?").to_string(),
                )
            })
            .collect();
        assert_eq!(found, expected, "{name}");
        let repo = truth["repo"].as_str().expect("repo");
        for p in problems {
            let path = p["at"]["path"].as_str().expect("path");
            assert!(path.starts_with(&format!("{repo}/")), "{name}: {path}");
        }
    }
    let (code, table, _) = run(&mut f.template(&["check", "v2.0.0"]));
    assert_eq!(code, 1);
    assert!(
        table.starts_with(&format!(
            "platform/ci-templates v2.0.0: {} app(s) would break, {} safe, 0 not using the template",
            expected_breaking.len(),
            expected_safe.len()
        )),
        "{table}"
    );
    // v1.x only grew compatibly, so no app breaks on the last v1 release.
    let (code, out, _) = run(&mut f.template(&["check", "v1.4.2", "--json"]));
    assert_eq!(
        code, 0,
        "v1.x only grew compatibly: every app is safe on v1.4.2\n{out}"
    );
    let (code, _, err) = run(&mut f.template(&["check", "v9.9.9"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("v9.9.9 is no release of ci-templates"),
        "{err}"
    );
}

/// The lines of `new` equal those of `old`, except lines where `from` became `to` and nothing else changed.
#[track_caller]
fn assert_only_pins_changed(old: &[u8], new: &[u8], from: &str, to: &str) -> usize {
    let old_lines: Vec<&[u8]> = old.split_inclusive(|b| *b == b'\n').collect();
    let new_lines: Vec<&[u8]> = new.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(old_lines.len(), new_lines.len(), "no line added or removed");
    let mut changed = 0;
    for (a, b) in old_lines.iter().zip(&new_lines) {
        if a != b {
            changed += 1;
            let a = String::from_utf8_lossy(a);
            let b = String::from_utf8_lossy(b);
            assert_eq!(
                a.replacen(from, to, 1),
                b,
                "only the version changed on the pin line"
            );
        }
    }
    changed
}

#[test]
fn bump_and_rollback_change_only_the_pin_with_real_git() {
    let f = fleet("template-bump");
    let (code, out, err) = run(&mut f.template(&["plan", "v2.0.0", "--json", "--wave-size", "3"]));
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    assert_eq!(report["change"]["kind"], "template_release");
    assert_eq!(report["change"]["to"], "v2.0.0");
    let waves = report["plan"]["waves"].as_array().expect("waves");
    assert_eq!(waves[0]["name"], "wave 1: representatives");
    let wave1: Vec<String> = waves[0]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["target"].as_str().map(str::to_string))
        .collect();
    assert!(!wave1.is_empty());
    // Only apps that are safe on v2.0.0 are planned.
    for name in &wave1 {
        assert_eq!(f.service(name)["breaks_on_v2"], false, "{name}");
    }

    let repos: Vec<(String, PathBuf, String, String, String)> = wave1
        .iter()
        .map(|name| {
            let s = f.service(name);
            let repo = f.root.join(s["repo"].as_str().expect("repo"));
            let ci = s["ci_file"].as_str().expect("ci file").to_string();
            let from = s["template"]["version"]
                .as_str()
                .expect("version")
                .to_string();
            let to = if from.starts_with('v') {
                "v2.0.0"
            } else {
                "2.0.0"
            }
            .to_string();
            (name.clone(), repo, ci, from, to)
        })
        .collect();
    let heads: Vec<String> = repos
        .iter()
        .map(|(_, repo, ..)| git_text(repo, &["rev-parse", "HEAD"]))
        .collect();

    // Dry run: diffs on stdout, nothing committed.
    let (code, out, err) = run(&mut f.template(&["bump", "v2.0.0", "--wave", "1"]));
    assert_eq!(code, 0, "{err}");
    for (name, repo, ci, from, to) in &repos {
        assert!(
            out.contains(&format!("# {name} (bump): branch bulkhead/template-v2.0.0")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "--- a/{}/{ci}",
                repo.strip_prefix(&f.root).expect("in fleet").display()
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("@{to}")) || out.contains(&format!("ref: {to}")),
            "{out}"
        );
        assert!(out.contains(from.as_str()));
        let branches = git_text(repo, &["branch", "--list", "bulkhead/*"]);
        assert!(branches.is_empty(), "dry run created {branches}");
    }

    let (code, out, err) = run(&mut f.template(&["bump", "v2.0.0", "--wave", "1", "--apply"]));
    assert_eq!(code, 0, "{out}\n{err}");
    let mut originals = Vec::new();
    for ((name, repo, ci, from, to), head) in repos.iter().zip(&heads) {
        let branch = "bulkhead/template-v2.0.0";
        assert!(out.contains(&format!("{name}: committed ")), "{out}");
        assert_eq!(
            &git_text(repo, &["rev-parse", "HEAD"]),
            head,
            "HEAD did not move"
        );
        assert_eq!(
            git_text(repo, &["status", "--porcelain"]),
            "",
            "working tree untouched"
        );
        assert_eq!(
            git_text(repo, &["rev-parse", &format!("{branch}~1")]),
            *head
        );
        assert_eq!(
            git_text(repo, &["diff", "--name-only", "HEAD", branch]),
            *ci
        );
        let old = git(repo, &["show", &format!("HEAD:{ci}")]);
        let new = git(repo, &["show", &format!("{branch}:{ci}")]);
        let changed = assert_only_pins_changed(&old, &new, from, to);
        // One changed line per line that writes the version: `uses: ...@v`, `component: ...@v`, `ref: v`.
        let pins = String::from_utf8_lossy(&old)
            .lines()
            .filter(|l| l.contains(&format!("@{from}")) || l.trim_start() == format!("ref: {from}"))
            .count();
        assert!(pins > 0, "{name}: the pin lines were found");
        assert_eq!(changed, pins, "{name}: one changed line per pin line");
        let message = git_text(repo, &["log", "-1", "--format=%B", branch]);
        let subject = message.lines().next().unwrap_or("");
        assert!(
            subject.starts_with("ci: adopt platform/ci-templates v2.0.0 (wave 1: representatives)"),
            "{message}"
        );
        for needle in [
            format!("from {from} to v2.0.0").as_str(),
            "bulkhead template check v2.0.0",
            "bulkhead template bump v2.0.0 --wave 1 --rollback --apply",
            format!("Bulkhead-Template-From: {from}").as_str(),
            "Bulkhead-Template-To: v2.0.0",
            "Bulkhead-Wave: 1",
        ] {
            assert!(
                message.replace('\n', " ").contains(needle),
                "{name}: {needle:?} missing from\n{message}"
            );
        }
        originals.push(old);
    }
    // Applying again changes nothing.
    let (code, out, _) = run(&mut f.template(&["bump", "v2.0.0", "--wave", "1", "--apply"]));
    assert_eq!(code, 0);
    assert!(out.contains("already holds this change"), "{out}");

    // Before the bump is merged there is nothing to roll back.
    let (code, out, _) = run(&mut f.template(&["bump", "v2.0.0", "--wave", "1", "--rollback"]));
    assert_eq!(code, 0);
    assert!(out.contains("nothing to roll back"), "{out}");

    // Merge the bumps (as a merge request would), then roll the wave back.
    for (_, repo, ..) in &repos {
        git(
            repo,
            &["merge", "-q", "--ff-only", "bulkhead/template-v2.0.0"],
        );
    }
    let (code, out, err) =
        run(&mut f.template(&["bump", "v2.0.0", "--wave", "1", "--rollback", "--apply"]));
    assert_eq!(code, 0, "{out}\n{err}");
    for ((name, repo, ci, from, _), original) in repos.iter().zip(&originals) {
        let branch = "bulkhead/template-rollback-v2.0.0";
        assert!(out.contains(&format!("{name}: committed ")), "{out}");
        let restored = git(repo, &["show", &format!("{branch}:{ci}")]);
        assert_eq!(
            &restored, original,
            "{name}: the rollback restores the file byte for byte"
        );
        let message = git_text(repo, &["log", "-1", "--format=%B", branch]);
        assert!(
            message.starts_with(&format!(
                "ci: roll back platform/ci-templates to {from} (wave 1: representatives)"
            )),
            "{message}"
        );
        assert!(message.contains("Bulkhead-Rollback: true"), "{message}");
    }
    let (code, _, err) = run(&mut f.template(&["bump", "v2.0.0", "--wave", "99"]));
    assert_eq!(code, 2);
    assert!(err.contains("has no wave 99"), "{err}");
}

#[test]
fn adoption_counts_versions_and_names_the_stragglers() {
    let f = fleet("template-adoption");
    let (code, out, err) = run(&mut f.template(&["adoption", "--json"]));
    assert_eq!(code, 0, "{err}");
    let report = json(&out);
    assert_eq!(report["latest"], "v2.0.0");
    assert_eq!(report["supported_lines"], serde_json::json!(["v2", "v1"]));
    let services = f.truth["services"].as_array().expect("services");
    assert_eq!(report["apps"], services.len());
    let counted: u64 = report["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter_map(|v| v["apps"].as_u64())
        .sum();
    assert_eq!(
        counted as usize,
        services.len(),
        "every app pins one version"
    );
    let expected: BTreeSet<String> = services
        .iter()
        .filter(|s| {
            s["template"]["version"]
                .as_str()
                .is_some_and(|v| v.trim_start_matches('v').starts_with("0."))
        })
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    let stragglers: BTreeSet<String> = report["stragglers"]
        .as_array()
        .expect("stragglers")
        .iter()
        .filter_map(|s| s["service"].as_str().map(str::to_string))
        .collect();
    assert_eq!(stragglers, expected);
    for s in report["stragglers"].as_array().expect("stragglers") {
        let name = s["service"].as_str().expect("name");
        assert_eq!(s["owner"], f.service(name)["owner"], "{name}");
    }
    let (code, table, _) = run(&mut f.template(&["adoption", "--window", "0"]));
    assert_eq!(code, 0);
    assert!(
        table.contains("supported lines: v2 (window N-0)"),
        "{table}"
    );
}
