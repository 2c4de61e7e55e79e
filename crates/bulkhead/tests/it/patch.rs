//! `bulkhead patch` end to end on real dpkg/apt: each host is a root
//! directory built by `hostops::testbed` (synthetic packages served from a
//! `file:` repository). Only the local-root transport is tested; SSH hosts
//! are planned with --offline here because no SSH server exists.

use crate::{TempDir, bulkhead, json};
use hostops::testbed::{self, HEALTH_COMMAND, Testbed};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::Output;

const SATURDAY_NIGHT: &str = "2025-06-07T02:30:00+02:00";
const WEDNESDAY: &str = "2025-06-04T12:00:00+02:00";
const BASE: &[(&str, &str)] = &[("libdemo", "1.0"), ("demo", "1.0")];

struct Lab {
    temp: TempDir,
    roots: Vec<(String, PathBuf)>,
}

impl Lab {
    /// Hosts on demo 1.0, each with a repository offering its demo release.
    fn new(name: &str, hosts: &[(&str, &'static str)], window: Option<&str>) -> Lab {
        let temp = TempDir::new(name);
        let bed = Testbed::new(&temp.path().join("bed")).expect("testbed");
        let mut roots = Vec::new();
        let mut yaml = String::from("hosts:\n");
        for (host, version) in hosts {
            let repo = bed
                .repo(
                    &format!("demo-{version}"),
                    &[
                        ("demo", version),
                        ("libdemo", "1.1"),
                        ("demo-extras", "1.1"),
                        ("libdemo", "1.0"),
                        ("demo", "1.0"),
                    ],
                )
                .expect("repo");
            let root = bed.root(host, &repo, BASE).expect("root");
            // Relative to the inventory's folder, as an operator would write it.
            let relative = root
                .strip_prefix(temp.path())
                .unwrap()
                .display()
                .to_string();
            yaml.push_str(&format!(
                "  - name: {host}\n    groups: [app]\n    transport: {{local: {relative}}}\n    health_checks:\n      - command: '{HEALTH_COMMAND}'\n"
            ));
            if let Some(w) = window {
                yaml.push_str(&format!("    maintenance_window: {w}\n"));
            }
            roots.push((host.to_string(), root));
        }
        std::fs::write(temp.path().join("hosts.yaml"), yaml).unwrap();
        Lab { temp, roots }
    }

    fn root(&self, host: &str) -> &Path {
        &self.roots.iter().find(|(h, _)| h == host).unwrap().1
    }

    fn query(&self, host: &str) -> String {
        testbed::dpkg_query_w(self.root(host)).unwrap()
    }

    fn patch(&self, args: &[&str]) -> Output {
        let mut cmd = bulkhead();
        cmd.arg("patch").args(args);
        if !args.contains(&"status") && !args.contains(&"rollback") {
            cmd.arg("--inventory")
                .arg(self.temp.path().join("hosts.yaml"));
        }
        cmd.arg("--state").arg(self.temp.path().join("state"));
        cmd.output().expect("run bulkhead")
    }
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn host<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == name)
        .unwrap()
}

#[test]
fn plan_asks_the_hosts_and_renders_the_impact_report() {
    let lab = Lab::new(
        "patch-plan",
        &[("app-1", "1.1"), ("app-2", "1.3")],
        Some(r#"{days: [sat, sun], start: "02:00", end: "05:00", timezone: Europe/Berlin}"#),
    );
    let out = lab.patch(&[
        "plan",
        "--now",
        SATURDAY_NIGHT,
        "--batch",
        "1",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json(&stdout(&out));
    assert_eq!(report["change"]["kind"], "host_patch");
    assert_eq!(
        report["change"]["hosts"],
        serde_json::json!(["app-1", "app-2"])
    );
    assert_eq!(
        report["change"]["packages"],
        serde_json::json!(["demo", "demo-extras", "libdemo"])
    );
    assert_eq!(report["plan"]["waves"].as_array().unwrap().len(), 2);
    let table = stdout(&lab.patch(&["plan", "--now", SATURDAY_NIGHT, "--batch", "100%"]));
    for expected in [
        "Change: patch 2 host(s): demo, demo-extras, libdemo",
        "batch 1 (2 host(s)): app-1, app-2",
        "[safe] app-1: 3 package change(s): ",
        "demo 1.0 -> 1.1",
        "demo-extras (new) 1.1",
        "window: sat,sun 02:00-05:00 Europe/Berlin (open until 2025-06-07T05:00:00+02:00)",
        "no rollback measured yet",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in\n{table}");
    }
    assert_eq!(
        lab.query("app-1"),
        "demo\t1.0\nlibdemo\t1.0\n",
        "planning changes nothing"
    );
}

#[test]
fn plan_offline_reads_the_sample_fleet_inventory_shape() {
    let temp = TempDir::new("patch-offline");
    let inventory = temp.path().join("hosts.yaml");
    std::fs::write(
        &inventory,
        "hosts:\n  - name: web-1\n    address: web-1.acme.internal\n    groups: [web]\n    maintenance_window:\n      days: [sat, sun]\n      start: \"02:00\"\n      end: \"05:00\"\n      timezone: Europe/Berlin\n    package_manager: apt\n    transport: ssh\n  - name: db-1\n    groups: [db]\n    maintenance_window: {days: [sun], start: \"02:00\", end: \"05:00\", timezone: Europe/Berlin}\n",
    )
    .unwrap();
    let out = bulkhead()
        .args([
            "patch",
            "plan",
            "--offline",
            "--now",
            SATURDAY_NIGHT,
            "--format",
            "markdown",
            "--inventory",
        ])
        .arg(&inventory)
        .arg("--state")
        .arg(temp.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let md = stdout(&out);
    assert!(
        md.starts_with("## bulkhead impact: patch 2 host(s): all updates"),
        "{md}"
    );
    assert!(
        md.contains("outside its maintenance window; deferred until 2025-06-08T02:00:00+02:00"),
        "{md}"
    );
}

#[test]
fn run_patches_good_hosts_rolls_back_bad_ones_and_exits_1() {
    let lab = Lab::new("patch-run", &[("app-1", "1.1"), ("app-2", "1.3")], None);
    let before = lab.query("app-2");
    let out = lab.patch(&[
        "run",
        "--batch",
        "100%",
        "--max-fail-percent",
        "50",
        "--now",
        SATURDAY_NIGHT,
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 1, "a host failed\n{}", stderr(&out));
    let status = json(&stdout(&out));
    assert_eq!(status["outcome"], "failed");
    assert_eq!(host(&status, "app-1")["state"]["state"], "patched");
    let bad = host(&status, "app-2");
    assert_eq!(bad["state"]["state"], "rolled_back");
    assert!(bad["rollback_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(
        lab.query("app-1"),
        "demo\t1.1\ndemo-extras\t1.1\nlibdemo\t1.1\n"
    );
    assert_eq!(
        lab.query("app-2"),
        before,
        "dpkg-query -W identical to before the upgrade"
    );
    let table = stdout(&lab.patch(&["status"]));
    assert!(
        table.starts_with("Run 1: finished with failed hosts\n"),
        "{table}"
    );
    assert!(table.contains("health-check failed"), "{table}");
    assert!(table.contains("rolled back in"), "{table}");
    // The next plan reports the measured rollback time.
    let plan = stdout(&lab.patch(&["plan", "--now", SATURDAY_NIGHT]));
    assert!(
        plan.contains("(measured ") && plan.contains("median of 1 rollback(s)"),
        "{plan}"
    );
}

#[test]
fn the_threshold_halts_the_later_batches() {
    let lab = Lab::new(
        "patch-halt",
        &[("app-1", "1.3"), ("app-2", "1.1"), ("app-3", "1.1")],
        None,
    );
    let out = lab.patch(&["run", "--batch", "1", "--now", SATURDAY_NIGHT]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.starts_with("Run 1: halted: batch 1 failed on 1 of 1 host(s), over the 0% threshold"),
        "{text}"
    );
    assert_eq!(lab.query("app-3"), "demo\t1.0\nlibdemo\t1.0\n");
}

#[test]
fn rollback_restores_a_patched_host() {
    let lab = Lab::new("patch-rollback", &[("app-1", "1.1")], None);
    let before = lab.query("app-1");
    assert_eq!(code(&lab.patch(&["run", "--now", SATURDAY_NIGHT])), 0);
    assert_ne!(lab.query("app-1"), before);
    let out = lab.patch(&["rollback", "app-1", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        host(&json(&stdout(&out)), "app-1")["state"]["state"],
        "rolled_back"
    );
    assert_eq!(lab.query("app-1"), before);
    let again = lab.patch(&["rollback", "nope"]);
    assert_eq!(code(&again), 2);
    assert!(
        stderr(&again).contains("no run patched host nope"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn maintenance_windows_are_judged_at_the_injected_time() {
    let window = r#"{days: [sat], start: "02:00", end: "05:00", timezone: Europe/Berlin}"#;
    let lab = Lab::new("patch-window", &[("app-1", "1.1")], Some(window));
    let out = lab.patch(&["run", "--now", WEDNESDAY]);
    assert_eq!(code(&out), 0, "a deferred host is not a failure");
    assert!(
        stdout(&out).contains("outside the maintenance window; it opens 2025-06-07T02:00:00+02:00"),
        "{}",
        stdout(&out)
    );
    assert_eq!(lab.query("app-1"), "demo\t1.0\nlibdemo\t1.0\n");
    let out = lab.patch(&["run", "--now", WEDNESDAY, "--ignore-window"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        lab.query("app-1"),
        "demo\t1.1\ndemo-extras\t1.1\nlibdemo\t1.1\n"
    );
}

/// The test hook stops the run after the upgrade ran and before its outcome
/// was recorded, which is what a kill at that moment leaves behind.
#[test]
fn a_killed_run_is_refused_until_resumed_and_then_rolled_back() {
    let lab = Lab::new("patch-resume", &[("app-1", "1.1")], None);
    let before = lab.query("app-1");
    let mut cmd = bulkhead();
    cmd.args(["patch", "run", "--now", SATURDAY_NIGHT, "--inventory"])
        .arg(lab.temp.path().join("hosts.yaml"))
        .arg("--state")
        .arg(lab.temp.path().join("state"))
        .env("BULKHEAD_PATCH_TEST_STOP_AFTER_STEPS", "4");
    let out = cmd.output().unwrap();
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("stopped by the BULKHEAD_PATCH_TEST_STOP_AFTER_STEPS test hook"));
    let refused = lab.patch(&["run", "--now", SATURDAY_NIGHT]);
    assert_eq!(code(&refused), 2);
    assert!(
        stderr(&refused).contains("run 1 is unfinished (was it killed?)"),
        "{}",
        stderr(&refused)
    );
    let status = json(&stdout(&lab.patch(&["status", "--format", "json"])));
    assert_eq!(status["outcome"], "in_progress");
    let out = lab.patch(&["run", "--resume", "--now", SATURDAY_NIGHT]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("app-1: upgrade was interrupted (the run was killed)"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("the run was interrupted during the upgrade"),
        "{}",
        stdout(&out)
    );
    assert_eq!(lab.query("app-1"), before);
    assert_eq!(
        code(&lab.patch(&["run", "--resume"])),
        2,
        "nothing left to resume"
    );
}

#[test]
fn usage_and_io_errors_exit_2() {
    let temp = TempDir::new("patch-usage");
    let state = temp.path().join("state");
    let run = |args: &[&str]| {
        bulkhead()
            .arg("patch")
            .args(args)
            .arg("--state")
            .arg(&state)
            .output()
            .unwrap()
    };
    for (args, message) in [
        (&["plan", "--batch", "0", "--offline"][..], "invalid batch"),
        (&["plan", "--now", "tomorrow", "--offline"][..], "RFC 3339"),
        (
            &["plan", "--max-fail-percent", "101", "--offline"][..],
            "101",
        ),
        (
            &[
                "plan",
                "--offline",
                "--inventory",
                "/nonexistent/hosts.yaml",
            ][..],
            "reading /nonexistent/hosts.yaml",
        ),
        (&["status"][..], "no patch runs recorded"),
    ] {
        let out = run(args);
        assert_eq!(code(&out), 2, "{args:?}");
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}

/// What follows a `kill -9` in [`a_kill_9_at_any_step_leaves_a_state_the_next_command_makes_consistent`].
#[derive(Debug, Clone, Copy)]
enum After {
    /// `patch run --resume`.
    Resume,
    /// `patch rollback HOST`.
    Rollback,
}

/// `bulkhead patch run` killed with SIGKILL (the process and the dpkg/apt
/// children it started, as the OOM killer or a stopped systemd unit kills
/// a process group) at the moment the run's own record shows the step
/// `event` of `step` for the host; then `patch run --resume` or `patch
/// rollback` must leave `dpkg-query -W` equal to before the run or to the
/// completed upgrade, with `dpkg --audit` clean and the run finished.
#[test]
fn a_kill_9_at_any_step_leaves_a_state_the_next_command_makes_consistent() {
    let upgraded = "demo\t1.1\ndemo-extras\t1.1\nlibdemo\t1.1\n";
    // demo 1.1 passes the health check, 1.3 fails it (and is rolled back).
    // Killed before the upgrade, a resumed run completes it; killed during it,
    // the run rolls the host back; killed after it, the health check decides.
    let cases = [
        ("1.1", "started", "precheck", After::Resume, "upgraded"),
        ("1.1", "started", "save_debs", After::Resume, "upgraded"),
        ("1.1", "started", "upgrade", After::Resume, "before"),
        ("1.1", "started", "upgrade", After::Rollback, "before"),
        ("1.1", "succeeded", "upgrade", After::Resume, "upgraded"),
        ("1.1", "started", "health_check", After::Rollback, "before"),
        ("1.3", "started", "downgrade", After::Resume, "before"),
        ("1.3", "succeeded", "downgrade", After::Resume, "before"),
        ("1.3", "started", "verify", After::Rollback, "before"),
    ];
    for (i, (version, event, step, after, end)) in cases.into_iter().enumerate() {
        let case = format!("{version} killed at {event} {step}, then {after:?}");
        let lab = Lab::new(&format!("patch-kill-{i}"), &[("app-1", version)], None);
        let before = lab.query("app-1");
        let state = lab.temp.path().join("state");
        let mut child = bulkhead()
            .args(["patch", "run", "--now", SATURDAY_NIGHT, "--inventory"])
            .arg(lab.temp.path().join("hosts.yaml"))
            .arg("--state")
            .arg(&state)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let seen = wait_for_event(&state.join("patch.db"), event, step, &mut child);
        assert!(seen, "{case}: the run ended before recording it");
        let killed = std::process::Command::new("kill")
            .args(["-9", "--", &format!("-{}", child.id())])
            .status()
            .unwrap();
        assert!(killed.success(), "{case}: kill -9 failed");
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "{case}: {status:?}");
        let out = match after {
            After::Resume => lab.patch(&["run", "--resume", "--now", SATURDAY_NIGHT]),
            After::Rollback => lab.patch(&["rollback", "app-1"]),
        };
        assert!(
            matches!(code(&out), 0 | 1),
            "{case}: exit {}\n{}",
            code(&out),
            stderr(&out)
        );
        let want = if end == "before" { &before } else { upgraded };
        assert_eq!(
            &lab.query("app-1"),
            want,
            "{case}: dpkg-query -W should be as {end}\n{}",
            stderr(&out)
        );
        assert_eq!(
            testbed::dpkg_audit(lab.root("app-1")).unwrap(),
            "",
            "{case}"
        );
        let status = json(&stdout(&lab.patch(&["status", "--format", "json"])));
        assert_ne!(status["outcome"], "in_progress", "{case}: {status}");
    }
}

/// Polls the run's record until it holds `event` for `step`; false when
/// the run exits first or nothing appears within a minute.
fn wait_for_event(db: &Path, event: &str, step: &str, child: &mut std::process::Child) -> bool {
    let wanted = format!(r#""event":"{event}","host":"app-1","step":"{step}""#);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let recorded = rusqlite::Connection::open_with_flags(db, flags)
            .and_then(|conn| {
                let mut rows = conn.prepare("SELECT event FROM events")?;
                let events = rows.query_map([], |r| r.get::<_, String>(0))?;
                Ok(events.filter_map(Result::ok).any(|e| e.contains(&wanted)))
            })
            .unwrap_or(false);
        if recorded {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    false
}
