//! Whole runs against real roots: upgrades, failures, rollbacks, thresholds, windows, crashes.

use super::*;
use hostops::state::{Recorded, rollback_durations};
use patch::{DebSource, Event, RunOutcome, Step};

fn assert_rolled_back(fleet: &Fleet, host: &str, before: &str) {
    assert_eq!(
        fleet.query(host),
        before,
        "{host}: dpkg-query -W must equal the state before the upgrade"
    );
    assert_eq!(
        testbed::dpkg_audit(&fleet.roots[host]).unwrap(),
        "",
        "{host}: dpkg --audit must be clean"
    );
}

#[test]
fn a_rolling_patch_upgrades_every_host_batch_by_batch() {
    let fleet = Fleet::new(
        "rolling",
        &[("web-1", "1.1"), ("web-2", "1.1"), ("web-3", "1.1")],
    );
    let (db, id, run, finish) = run_fleet(&fleet, &fleet.inventory(""), &options("1,2", 0), None);
    assert_eq!(finish, Finish::Done(RunOutcome::Succeeded));
    assert_eq!(run.plan().batches, [vec!["web-1"], vec!["web-2", "web-3"]]);
    for host in ["web-1", "web-2", "web-3"] {
        assert_eq!(state(&run, host), HostState::Patched);
        assert_eq!(
            fleet.query(host),
            "demo\t1.1\ndemo-extras\t1.1\nlibdemo\t1.1\n"
        );
        let upgraded = run.host(host).unwrap().upgraded.clone().unwrap();
        let mut text: Vec<String> = upgraded.iter().map(ToString::to_string).collect();
        text.sort();
        assert_eq!(
            text,
            [
                "demo 1.0 -> 1.1",
                "demo-extras (new) 1.1",
                "libdemo 1.0 -> 1.1"
            ],
            "from history.log"
        );
        // The repository still had 1.0: the .debs were downloaded from it.
        let debs = run.host(host).unwrap().debs.clone().unwrap();
        assert_eq!(debs.len(), 2);
        assert!(
            debs.iter()
                .all(|d| d.source == DebSource::Repository && Path::new(&d.file).exists())
        );
    }
    let events = db.events(id).unwrap();
    let first_done = events.iter().position(|r| matches!(&r.event, Event::Succeeded { host, step: Step::HealthCheck, .. } if host == "web-1")).unwrap();
    let second_start = events
        .iter()
        .position(|r| matches!(&r.event, Event::Started { host, .. } if host != "web-1"))
        .unwrap();
    assert!(
        first_done < second_start,
        "batch 2 starts after batch 1 is healthy"
    );
    // Every outcome follows its Started record.
    assert_started_before_outcomes(&events);
    assert_eq!(db.runs().unwrap()[0].outcome.as_deref(), Some("succeeded"));
}

fn assert_started_before_outcomes(events: &[Recorded]) {
    let mut open: BTreeMap<String, Step> = BTreeMap::new();
    for r in events {
        match &r.event {
            Event::Started { host, step } => assert!(open.insert(host.clone(), *step).is_none()),
            Event::Succeeded { host, step, .. } | Event::Failed { host, step, .. } => {
                assert_eq!(
                    open.remove(host),
                    Some(*step),
                    "outcome without Started: {r:?}"
                )
            }
            _ => {}
        }
    }
}

#[test]
fn a_failed_health_check_is_rolled_back_to_the_identical_package_state() {
    let fleet = Fleet::new("health", &[("app-1", "1.3")]);
    let before = fleet.query("app-1");
    let (db, id, run, finish) = run_fleet(&fleet, &fleet.inventory(""), &options("1", 0), None);
    assert_eq!(finish, Finish::Done(RunOutcome::Failed));
    match state(&run, "app-1") {
        HostState::RolledBack { reason } => assert!(
            reason.starts_with("health-check failed: `grep -qx ok"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert_rolled_back(&fleet, "app-1", &before);
    assert_eq!(before, "demo\t1.0\nlibdemo\t1.0\n");
    let timings = rollback_durations(&db.events(id).unwrap());
    assert_eq!(timings.len(), 1);
    assert!(db.rollback_timing().unwrap().is_some());
}

#[test]
fn a_half_configured_package_is_recovered() {
    let fleet = Fleet::new("halfconf", &[("app-1", "1.2")]);
    let before = fleet.query("app-1");
    let (db, id, run, _) = run_fleet(&fleet, &fleet.inventory(""), &options("1", 0), None);
    let events = db.events(id).unwrap();
    let failure = events.iter().find_map(|r| match &r.event {
        Event::Failed {
            step: Step::Upgrade,
            reason,
            ..
        } => Some(reason.clone()),
        _ => None,
    });
    let failure = failure.expect("the upgrade fails");
    assert!(
        failure.contains("history.log: Sub-process /usr/bin/dpkg returned an error code (1)"),
        "{failure}"
    );
    assert!(matches!(state(&run, "app-1"), HostState::RolledBack { .. }));
    assert_rolled_back(&fleet, "app-1", &before);
}

#[test]
fn a_batch_over_the_threshold_stops_the_later_batches() {
    let fleet = Fleet::new(
        "threshold",
        &[("a-1", "1.3"), ("b-2", "1.1"), ("c-3", "1.1")],
    );
    let before: Vec<String> = ["a-1", "b-2", "c-3"]
        .iter()
        .map(|h| fleet.query(h))
        .collect();
    let (_db, _id, run, finish) = run_fleet(&fleet, &fleet.inventory(""), &options("1", 0), None);
    assert_eq!(finish, Finish::Done(RunOutcome::Halted));
    assert!(matches!(state(&run, "a-1"), HostState::RolledBack { .. }));
    for (i, host) in ["b-2", "c-3"].iter().enumerate() {
        assert!(
            matches!(state(&run, host), HostState::Skipped { .. }),
            "{host}"
        );
        assert_eq!(fleet.query(host), before[i + 1], "{host} untouched");
    }
}

#[test]
fn hosts_outside_their_window_are_deferred_and_untouched() {
    let fleet = Fleet::new("window", &[("sat", "1.1"), ("sun", "1.1")]);
    let mut inv = fleet.inventory("");
    for h in &mut inv.hosts {
        let day = if h.name == "sat" { "sat" } else { "sun" };
        h.window = Some(patch::MaintenanceWindow {
            days: vec![patch::Weekday::parse(day).unwrap()],
            start: patch::TimeOfDay::parse("02:00").unwrap(),
            end: patch::TimeOfDay::parse("05:00").unwrap(),
            timezone: "Europe/Berlin".into(),
        });
    }
    // Saturday 02:30 in Berlin.
    let (_db, _id, run, finish) = run_fleet(&fleet, &inv, &options("100%", 0), None);
    assert_eq!(finish, Finish::Done(RunOutcome::Succeeded));
    assert_eq!(state(&run, "sat"), HostState::Patched);
    assert_eq!(
        state(&run, "sun"),
        HostState::Deferred {
            reason: "outside the maintenance window; it opens 2025-06-08T02:00:00+02:00".into()
        }
    );
    assert_eq!(fleet.query("sun"), "demo\t1.0\nlibdemo\t1.0\n");
}

/// The run is stopped (as if killed) right after the upgrade ran, before
/// its outcome was recorded; resuming must not guess: it rolls back.
#[test]
fn a_run_killed_during_the_upgrade_is_rolled_back_on_resume() {
    let fleet = Fleet::new("kill-upgrade", &[("app-1", "1.1")]);
    let before = fleet.query("app-1");
    // precheck, record-state, save-debs, upgrade.
    let (db, id, _, finish) = run_fleet(&fleet, &fleet.inventory(""), &options("1", 0), Some(4));
    assert_eq!(finish, Finish::Stopped);
    assert_eq!(
        fleet.query("app-1"),
        "demo\t1.1\ndemo-extras\t1.1\nlibdemo\t1.1\n",
        "the upgrade did happen"
    );
    let (_, events) = db.load(id).unwrap();
    assert!(matches!(
        events.last().map(|r| &r.event),
        Some(Event::Started {
            step: Step::Upgrade,
            ..
        })
    ));
    let (run, finish) = resume(&fleet, &db, id);
    assert_eq!(finish, Finish::Done(RunOutcome::Failed));
    assert_eq!(
        state(&run, "app-1"),
        HostState::RolledBack {
            reason: "the run was interrupted during the upgrade".into()
        }
    );
    assert_rolled_back(&fleet, "app-1", &before);
}

#[test]
fn a_run_killed_before_the_upgrade_resumes_and_finishes() {
    let fleet = Fleet::new("kill-early", &[("app-1", "1.1"), ("app-2", "1.1")]);
    let (db, id, _, finish) = run_fleet(&fleet, &fleet.inventory(""), &options("1", 0), Some(2));
    assert_eq!(finish, Finish::Stopped);
    assert_eq!(
        db.load(id).unwrap().0.interrupted(),
        [("app-1".to_string(), Step::RecordState)]
    );
    let (run, finish) = resume(&fleet, &db, id);
    assert_eq!(finish, Finish::Done(RunOutcome::Succeeded));
    for h in ["app-1", "app-2"] {
        assert_eq!(state(&run, h), HostState::Patched);
        assert_eq!(
            fleet.query(h),
            "demo\t1.1\ndemo-extras\t1.1\nlibdemo\t1.1\n"
        );
    }
    let events = db.events(id).unwrap();
    assert!(events.iter().any(|r| r.event
        == Event::Interrupted {
            host: "app-1".into(),
            step: Step::RecordState
        }));
}

/// Debian drops old versions from its repositories: the installed 1.0
/// packages are rebuilt from their files, and the rollback uses them.
#[test]
fn versions_gone_from_the_repository_are_rebuilt_and_rolled_back_to() {
    let temp = TempDir::new("repack");
    let bed = Testbed::new(&temp.path().join("bed")).unwrap();
    let repo = bed.repo("only-new", &release("1.3", false)).unwrap();
    let root = bed.root("app-1", &repo, BASE).unwrap();
    let fleet = Fleet {
        temp,
        bed,
        roots: BTreeMap::from([("app-1".to_string(), root)]),
    };
    let before = fleet.query("app-1");
    let (_db, _id, run, _) = run_fleet(&fleet, &fleet.inventory(""), &options("1", 0), None);
    let debs = run.host("app-1").unwrap().debs.clone().unwrap();
    assert_eq!(
        debs.iter().map(|d| d.source).collect::<Vec<_>>(),
        [DebSource::Repacked, DebSource::Repacked]
    );
    assert!(matches!(state(&run, "app-1"), HostState::RolledBack { .. }));
    assert_rolled_back(&fleet, "app-1", &before);
    // The conffile came back with the 1.0 content.
    let conf = std::fs::read_to_string(fleet.roots["app-1"].join("etc/demo/demo.conf")).unwrap();
    assert!(conf.contains("version = 1.0"), "{conf}");
}

/// When the downgrade cannot work (the saved .debs are gone), the snapshot
/// (here a command hook archiving the root with tar) restores the host.
#[test]
fn the_snapshot_restores_a_host_the_downgrade_cannot() {
    let fleet = Fleet::new("snap-hook", &[("app-1", "1.3")]);
    let snaps = fleet.temp.path().join("snaps");
    std::fs::create_dir_all(&snaps).unwrap();
    let extra = format!(
        "    snapshot:\n      provider: command\n      create: 'tar -C \"$BULKHEAD_ROOT\" -cf {s}/\"$BULKHEAD_SNAPSHOT_NAME\".tar . && echo {s}/\"$BULKHEAD_SNAPSHOT_NAME\".tar'\n      restore: 'find \"$BULKHEAD_ROOT\" -mindepth 1 -delete && tar -C \"$BULKHEAD_ROOT\" -xf \"$BULKHEAD_SNAPSHOT_ID\"'\n",
        s = snaps.display()
    );
    let before = fleet.query("app-1");
    // precheck, record-state, save-debs, snapshot, upgrade: then "killed".
    let (db, id, _, _) = run_fleet(&fleet, &fleet.inventory(&extra), &options("1", 0), Some(5));
    let run = db.load(id).unwrap().0;
    for deb in run.host("app-1").unwrap().debs.as_ref().unwrap() {
        std::fs::remove_file(&deb.file).unwrap();
    }
    let (run, _) = resume(&fleet, &db, id);
    let steps: Vec<Step> = db
        .events(id)
        .unwrap()
        .iter()
        .filter_map(|r| match &r.event {
            Event::Started { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps[4..],
        [
            Step::Upgrade,
            Step::Downgrade,
            Step::RestoreSnapshot,
            Step::Verify
        ]
    );
    assert!(matches!(state(&run, "app-1"), HostState::RolledBack { .. }));
    assert_rolled_back(&fleet, "app-1", &before);
}

#[test]
fn a_rollback_can_be_requested_for_a_patched_host() {
    let fleet = Fleet::new("manual", &[("app-1", "1.1")]);
    let before = fleet.query("app-1");
    let (db, id, run, _) = run_fleet(&fleet, &fleet.inventory(""), &options("1", 0), None);
    assert_eq!(state(&run, "app-1"), HostState::Patched);
    let state_dir = fleet.state_dir();
    let clock = || at("2025-06-07T03:00:00+02:00");
    let o = Options {
        state_dir: &state_dir,
        clock: &clock,
        only_host: None,
        stop_after_steps: None,
        progress: &|_| {},
    };
    let s = hostops::rollback_host(&db, id, "app-1", "requested by the test", &o).unwrap();
    assert_eq!(
        s,
        HostState::RolledBack {
            reason: "requested by the test".into()
        }
    );
    assert_rolled_back(&fleet, "app-1", &before);
}

#[test]
fn a_broken_dpkg_database_stops_the_host_before_any_change() {
    let fleet = Fleet::new("audit", &[("app-1", "1.1")]);
    // Leave demo 1.2 half-configured, as a failed earlier upgrade would.
    let root = &fleet.roots["app-1"];
    let out = std::process::Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "-i"])
        .arg(fleet.bed.deb("libdemo", "1.1"))
        .arg(fleet.bed.deb("demo-extras", "1.1"))
        .arg(fleet.bed.deb("demo", "1.2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let before = fleet.query("app-1");
    let (_db, _id, run, _) = run_fleet(&fleet, &fleet.inventory(""), &options("1", 0), None);
    match state(&run, "app-1") {
        HostState::Aborted { reason } => assert!(
            reason.contains("dpkg --audit reports broken packages: demo"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(fleet.query("app-1"), before);
}
