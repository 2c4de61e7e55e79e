//! One command-line grammar across every command, walked from `--help`: each
//! command teaches with an example; fleets come from `--path` (and `--state`),
//! reports take `--format` and `--json`, which agree; durations share one
//! grammar; old spellings keep working, hidden; secrets never come as a plain
//! flag; no flag shadows `--version`.
//!
//! A value is checked without running the command by putting `--help` after
//! it: clap parses each value as it reads it and stops at `--help`.

use super::{TempDir, bulkhead, json, run_ok};
use std::collections::BTreeSet;
use std::path::Path;

/// What a command reads and prints: (command, reads a fleet, reports).
/// Every command the help walk finds must be here, so a new one is classified.
const COMMANDS: &[(&str, bool, bool)] = &[
    ("scan", true, true),
    ("impact", false, false),
    ("impact services", true, true),
    ("impact image", true, true),
    ("lab", false, false),
    ("lab init", false, false),
    ("lab service", false, false),
    ("lab up", false, false),
    ("lab down", false, false),
    ("lab status", false, true),
    ("lab scenario", false, true),
    ("lab tour", false, true),
    ("demo", false, false),
    ("template", false, false),
    ("template diff", true, true),
    ("template check", true, true),
    ("template plan", true, true),
    ("template bump", true, false),
    ("template adoption", true, true),
    ("patch", false, false),
    ("patch plan", true, true),
    ("patch run", true, true),
    ("patch status", true, true),
    ("patch rollback", true, true),
    ("policy", false, false),
    ("policy check", true, true),
    ("policy verify", false, false),
    ("policy admit", false, false),
    ("policy serve", false, false),
    ("policy export", false, false),
    ("policy export kyverno", false, false),
    ("policy export webhook", false, false),
    ("images", false, false),
    ("images check", true, true),
    ("images lineage", true, true),
    ("images audit", true, true),
    ("images inspect", true, true),
    ("images upgrade", true, false),
    ("cve", true, true),
    ("cluster", false, false),
    ("cluster snapshot", false, false),
    ("cluster rbac", false, true),
    ("gateway", false, false),
    ("rollout", false, false),
    ("rollout plan", true, true),
    ("rollout start", true, false),
    ("rollout status", true, true),
    ("rollout promote", true, false),
    ("rollout pause", true, false),
    ("rollout resume", true, false),
    ("rollout abort", true, false),
    ("rollout undo", true, false),
    ("collector", false, false),
    ("console", true, false),
    ("trace", false, true),
    ("trace search", false, true),
];

/// Time flags: (command, flag, a value in the one grammar).
const DURATIONS: &[(&str, &str, &str)] = &[
    ("lab service", "--call-timeout", "1h30m"),
    ("lab service", "--otlp-interval", "250ms"),
    ("lab service", "--latency", "5ms"),
    ("lab service", "--latency-jitter", "1.5s"),
    ("lab scenario", "--gate-interval", "1s"),
    ("lab tour", "--gate-interval", "500ms"),
    ("lab tour", "--ready-timeout", "2m"),
    ("policy check", "--budget", "500ms"),
    ("policy admit", "--budget", "2s"),
    ("policy serve", "--budget", "1s"),
    ("policy serve", "--inventory-poll", "500ms"),
    ("policy export webhook", "--timeout", "10s"),
    ("collector", "--forward-retry-for", "1m30s"),
    ("images inspect", "--timeout", "30s"),
    ("collector", "--retention", "2d"),
    ("trace search", "--min-duration", "200ms"),
    ("trace search", "--max-duration", "1m"),
    ("trace search", "--lookback", "2d"),
    ("template plan", "--soak", "48h"),
    ("template bump", "--soak", "1h30m"),
];

/// Old spellings scripts may use: (command, flag, value in its old unit). They
/// must parse and stay out of the help.
const HIDDEN_ALIASES: &[(&str, &str, &str)] = &[
    ("lab service", "--call-timeout-ms", "10000"),
    ("lab service", "--otlp-interval-ms", "20"),
    ("lab service", "--latency-ms", "5"),
    ("lab service", "--latency-jitter-ms", "5"),
    ("policy check", "--budget-ms", "50"),
    ("policy admit", "--budget-ms", "50"),
    ("policy serve", "--budget-ms", "50"),
    ("collector", "--retention-hours", "72"),
];

fn words(command: &str) -> Vec<&str> {
    command.split_whitespace().collect()
}

/// Exit code, stdout and stderr of `bulkhead COMMAND ARGS...`.
fn outcome(command: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = bulkhead()
        .args(words(command))
        .args(args)
        .output()
        .expect("run bulkhead");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn help(command: &str) -> String {
    let (code, stdout, stderr) = outcome(command, &["--help"]);
    assert_eq!(code, Some(0), "bulkhead {command} --help: {stderr}");
    stdout
}

/// The subcommands listed under "Commands:" in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line is indented by two; wrapped descriptions by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// The long options a help text lists.
fn options(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-h, ")
                .or(l.strip_prefix("-V, "))
                .unwrap_or(l);
            let name = l.strip_prefix("--")?;
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(name[..end].to_string())
        })
        .collect()
}

/// Every command, found by walking the help from the top.
fn walk() -> Vec<String> {
    let mut found = Vec::new();
    let mut queue: Vec<String> = subcommands(&help(""));
    while let Some(command) = queue.pop() {
        queue.extend(
            subcommands(&help(&command))
                .into_iter()
                .map(|s| format!("{command} {s}")),
        );
        found.push(command);
    }
    found.sort();
    found
}

#[test]
fn every_command_is_classified_teaches_and_takes_the_shared_flags() {
    let walked = walk();
    let table: Vec<String> = {
        let mut t: Vec<String> = COMMANDS.iter().map(|c| c.0.to_string()).collect();
        t.sort();
        t
    };
    assert_eq!(walked, table, "the help walk and the table differ");
    for &(command, fleet, reports) in COMMANDS {
        let text = help(command);
        assert!(
            text.contains("Example: bulkhead "),
            "bulkhead {command} --help has no example"
        );
        let opts = options(&text);
        assert_eq!(
            opts.contains("path"),
            fleet,
            "bulkhead {command}: --path listed: {opts:?}"
        );
        if fleet {
            assert!(opts.contains("state"), "bulkhead {command}: no --state");
            let (code, _, stderr) = outcome(command, &["--path", ".", "--help"]);
            assert_eq!(code, Some(0), "bulkhead {command} --path: {stderr}");
        }
        for flag in ["format", "json"] {
            assert_eq!(
                opts.contains(flag),
                reports,
                "bulkhead {command}: --{flag} listed: {opts:?}"
            );
        }
        if reports {
            for args in [&["--format", "json", "--help"][..], &["--json", "--help"]] {
                let (code, _, stderr) = outcome(command, args);
                assert_eq!(code, Some(0), "bulkhead {command} {args:?}: {stderr}");
            }
        }
        // --version is clap's everywhere: no command takes the name for itself.
        let (code, stdout, stderr) = outcome(command, &["--version"]);
        assert_eq!(code, Some(0), "bulkhead {command} --version: {stderr}");
        assert!(stdout.starts_with("bulkhead"), "{command}: {stdout}");
        // Secrets only by name: an environment variable or a file.
        for opt in &opts {
            if ["token", "password", "secret"]
                .iter()
                .any(|w| opt.contains(w))
            {
                assert!(
                    opt.ends_with("-env") || opt.ends_with("-file"),
                    "bulkhead {command} --{opt} takes a secret on the command line"
                );
            }
        }
    }
}

#[test]
fn time_flags_read_one_duration_grammar() {
    for &(command, flag, good) in DURATIONS {
        assert!(
            options(&help(command)).contains(&flag[2..]),
            "bulkhead {command} lists {flag}"
        );
        let (code, _, stderr) = outcome(command, &[flag, good, "--help"]);
        assert_eq!(code, Some(0), "bulkhead {command} {flag} {good}: {stderr}");
        let (code, _, stderr) = outcome(command, &[flag, "soon", "--help"]);
        assert_eq!(code, Some(2), "bulkhead {command} {flag} soon");
        assert!(
            stderr.contains("is not a duration"),
            "bulkhead {command} {flag} soon: {stderr}"
        );
    }
    // A bare number could be seconds or milliseconds: refused, except where it was the old unit.
    let (code, _, stderr) = outcome("policy check", &["--budget", "30", "--help"]);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, _, stderr) = outcome("images inspect", &["--timeout", "30", "--help"]);
    assert_eq!(code, Some(0), "--timeout in seconds, as before: {stderr}");
}

#[test]
fn old_spellings_still_parse_and_stay_hidden() {
    for &(command, flag, value) in HIDDEN_ALIASES {
        let (code, _, stderr) = outcome(command, &[flag, value, "--help"]);
        assert_eq!(code, Some(0), "bulkhead {command} {flag} {value}: {stderr}");
        assert!(
            !options(&help(command)).contains(&flag[2..]),
            "bulkhead {command} shows the old {flag}"
        );
    }
    // The plain secret is gone: a token on the command line is refused.
    let (code, _, stderr) = outcome("lab service", &["--admin-token", "t"]);
    assert_eq!(code, Some(2), "{stderr}");
}

/// Runs a reporting command both ways and insists they print the same.
fn agree(fleet: &Path, command: &str, args: &[&str]) {
    let path = fleet.to_str().expect("utf-8 path");
    let mut outputs = Vec::new();
    for format in [&["--format", "json"][..], &["--json"]] {
        let out = bulkhead()
            .args(words(command))
            .args(args)
            .args(["--path", path])
            .args(format)
            .output()
            .expect("run bulkhead");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "bulkhead {command} {args:?} {format:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&stdout);
        outputs.push((out.status.code(), stdout));
    }
    assert_eq!(outputs[0], outputs[1], "bulkhead {command} {args:?}");
}

#[test]
fn format_json_and_json_agree_and_the_state_lives_at_the_fleet() {
    let temp = TempDir::new("grammar");
    let fleet = temp.path().join("fleet");
    run_ok(
        bulkhead()
            .args(["lab", "init", "--services", "8"])
            .arg(&fleet),
    );
    // Run elsewhere: every command finds the fleet's state through --path.
    let elsewhere = temp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let positional = json(&run_ok(
        bulkhead()
            .current_dir(&elsewhere)
            .args(["scan", "--json"])
            .arg(&fleet),
    ));
    let flagged = json(&run_ok(
        bulkhead()
            .current_dir(&elsewhere)
            .args(["scan", "--json", "--path"])
            .arg(&fleet),
    ));
    assert_eq!(positional["services"], flagged["services"]);
    let name = positional["services"][0]["name"]
        .as_str()
        .expect("a service")
        .to_string();
    run_ok(
        bulkhead()
            .current_dir(&elsewhere)
            .args(["rollout", "plan", "--services", &name, "--path"])
            .arg(&fleet),
    );
    assert!(fleet.join(".bulkhead/scan-cache.bin").is_file());
    assert!(
        !elsewhere.join(".bulkhead").exists(),
        "rollout plan --path made a second state directory where it ran"
    );
    for (command, args) in [
        ("scan", &[][..]),
        ("impact services", &[name.as_str()]),
        ("impact image", &["registry.acme.internal/base/debian-12"]),
        ("cve", &["CVE-2023-38545"]),
        ("images check", &[]),
        ("images lineage", &[]),
        ("images audit", &[]),
        ("policy check", &[]),
        ("template check", &["v2.0.0"]),
        ("template adoption", &[]),
        ("rollout plan", &["--services", name.as_str()]),
    ] {
        agree(&fleet, command, args);
    }
}
