//! The run's state machine, driven by scripted step outcomes.

use super::*;
use crate::batch::BatchSpec;
use crate::inventory::{self, Inventory};
use crate::plan::{PlanOptions, plan};
use crate::zone::Zone;
use std::collections::BTreeMap;

const NOW: &str = "2025-06-07T00:30:00Z"; // Saturday 02:30 in Berlin

fn now() -> Timestamp {
    Timestamp::parse_rfc3339(NOW).unwrap()
}

/// `n` hosts `h1..hn`; with `snapshot`, each has a command snapshot.
fn inventory(n: usize, snapshot: bool) -> Inventory {
    let mut yaml = String::from("hosts:\n");
    for i in 1..=n {
        yaml.push_str(&format!(
            "  - name: h{i}\n    transport: {{local: /roots/h{i}}}\n"
        ));
        if snapshot {
            yaml.push_str("    snapshot: {provider: command, create: c, restore: r}\n");
        }
    }
    let inv = inventory::parse("hosts.yaml", &yaml);
    assert!(inv.diagnostics.is_empty(), "{:?}", inv.diagnostics);
    inv
}

fn run_of(inv: &Inventory, batch: &str, max_fail_percent: u32) -> Run {
    let options = PlanOptions {
        hosts: vec![],
        groups: vec![],
        batch: batch.parse::<BatchSpec>().unwrap(),
        max_fail_percent,
        now: now(),
        ignore_window: false,
    };
    Run::new(plan(inv, &options, &|z| Zone::builtin(z), &BTreeMap::new()).unwrap())
}

fn pkgs(version: &str) -> Vec<InstalledPackage> {
    vec![InstalledPackage {
        name: "demo".into(),
        arch: "all".into(),
        version: version.into(),
        status: "ii".into(),
    }]
}

fn change() -> Vec<PackageChange> {
    vec![PackageChange {
        name: "demo".into(),
        arch: Some("all".into()),
        from: Some("1.0".into()),
        to: Some("1.1".into()),
    }]
}

/// What a healthy host answers for each step.
fn good(step: Step) -> Result<StepOutput, String> {
    Ok(match step {
        Step::RecordState => StepOutput::State {
            packages: pkgs("1.0"),
            changes: change(),
        },
        Step::SaveDebs => StepOutput::Debs { debs: vec![] },
        Step::Snapshot => StepOutput::Snapshot {
            id: "snap-1".into(),
        },
        Step::Upgrade => StepOutput::Upgraded {
            changes: change(),
            reboot: RebootNeed::Unknown,
        },
        Step::RestoreSnapshot => StepOutput::Restored {
            effective: Effective::Now,
        },
        _ => StepOutput::Nothing,
    })
}

/// Drives the run like the executor does (lock-step rounds), answering each
/// step with `oracle`, and returns the events it recorded.
fn drive(run: &mut Run, oracle: &dyn Fn(&str, Step) -> Result<StepOutput, String>) -> Vec<Event> {
    let mut events = Vec::new();
    for _round in 0..1000 {
        let actions = run.next_actions(now());
        if actions.is_empty() {
            return events;
        }
        let mut record = |run: &mut Run, e: Event| {
            run.apply(&e).unwrap_or_else(|err| panic!("{err}"));
            events.push(e);
        };
        for a in actions {
            match a {
                Action::Defer { host, reason } => record(run, Event::Deferred { host, reason }),
                Action::Perform { host, step } => {
                    record(
                        run,
                        Event::Started {
                            host: host.clone(),
                            step,
                        },
                    );
                    match oracle(&host, step) {
                        Ok(output) => record(run, Event::Succeeded { host, step, output }),
                        Err(reason) => record(run, Event::Failed { host, step, reason }),
                    }
                }
            }
        }
    }
    panic!("the run did not settle in 1000 rounds");
}

/// The steps performed for `host`, in order.
fn steps(events: &[Event], host: &str) -> Vec<&'static str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Started { host: h, step } if h == host => Some(step.name()),
            _ => None,
        })
        .collect()
}

fn state(run: &Run, host: &str) -> HostState {
    run.host_state(host).unwrap()
}

#[test]
fn a_healthy_host_is_prechecked_recorded_saved_upgraded_and_checked() {
    let mut run = run_of(&inventory(1, false), "1", 0);
    let events = drive(&mut run, &|_, s| good(s));
    assert_eq!(
        steps(&events, "h1"),
        [
            "precheck",
            "record-state",
            "save-debs",
            "upgrade",
            "health-check"
        ]
    );
    assert_eq!(state(&run, "h1"), HostState::Patched);
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    let h = run.host("h1").unwrap();
    assert_eq!(h.before.as_deref(), Some(&pkgs("1.0")[..]));
    assert_eq!(h.upgraded.as_deref(), Some(&change()[..]));
}

#[test]
fn a_snapshot_is_taken_before_the_upgrade_when_configured() {
    let mut run = run_of(&inventory(1, true), "1", 0);
    let events = drive(&mut run, &|_, s| good(s));
    assert_eq!(
        steps(&events, "h1"),
        [
            "precheck",
            "record-state",
            "save-debs",
            "snapshot",
            "upgrade",
            "health-check"
        ]
    );
    assert_eq!(run.host("h1").unwrap().snapshot.as_deref(), Some("snap-1"));
}

#[test]
fn a_host_already_up_to_date_is_not_touched() {
    let mut run = run_of(&inventory(1, true), "1", 0);
    let events = drive(&mut run, &|_, s| match s {
        Step::RecordState => Ok(StepOutput::State {
            packages: pkgs("1.1"),
            changes: vec![],
        }),
        s => good(s),
    });
    assert_eq!(steps(&events, "h1"), ["precheck", "record-state"]);
    assert_eq!(state(&run, "h1"), HostState::Patched);
}

#[test]
fn a_failed_health_check_is_downgraded_and_verified() {
    let mut run = run_of(&inventory(1, false), "1", 0);
    let events = drive(&mut run, &|_, s| match s {
        Step::HealthCheck => Err("GET / -> 500".into()),
        s => good(s),
    });
    assert_eq!(
        steps(&events, "h1"),
        [
            "precheck",
            "record-state",
            "save-debs",
            "upgrade",
            "health-check",
            "downgrade",
            "verify"
        ]
    );
    assert_eq!(
        state(&run, "h1"),
        HostState::RolledBack {
            reason: "health-check failed: GET / -> 500".into()
        }
    );
    assert_eq!(run.outcome(), RunOutcome::Failed);
}

#[test]
fn a_failed_upgrade_falls_back_to_the_snapshot_when_the_downgrade_fails() {
    let mut run = run_of(&inventory(1, true), "1", 0);
    let events = drive(&mut run, &|_, s| match s {
        Step::Upgrade => Err("dpkg returned 1".into()),
        Step::Downgrade => Err("no saved .deb for demo 1.0".into()),
        s => good(s),
    });
    assert_eq!(
        steps(&events, "h1")[4..],
        ["upgrade", "downgrade", "restore-snapshot", "verify"]
    );
    assert!(matches!(state(&run, "h1"), HostState::RolledBack { .. }));
}

#[test]
fn a_verify_mismatch_after_downgrade_tries_the_snapshot_which_may_need_a_reboot() {
    let mut run = run_of(&inventory(1, true), "1", 0);
    drive(&mut run, &|_, s| match s {
        Step::HealthCheck => Err("unhealthy".into()),
        Step::Verify => Err("demo is 1.1, was 1.0".into()),
        Step::RestoreSnapshot => Ok(StepOutput::Restored {
            effective: Effective::AtNextBoot,
        }),
        s => good(s),
    });
    assert_eq!(
        state(&run, "h1"),
        HostState::RollbackPendingReboot {
            reason: "health-check failed: unhealthy".into()
        }
    );
}

#[test]
fn without_a_snapshot_a_failed_rollback_needs_attention() {
    let mut run = run_of(&inventory(1, false), "1", 0);
    drive(&mut run, &|_, s| match s {
        Step::Upgrade => Err("dpkg returned 1".into()),
        Step::Downgrade => Err("dpkg -i failed".into()),
        s => good(s),
    });
    assert_eq!(
        state(&run, "h1"),
        HostState::NeedsAttention {
            reason: "upgrade failed: dpkg returned 1; then downgrade failed: dpkg -i failed".into()
        }
    );
    // Snapshot restore fails too: nothing left.
    let mut run = run_of(&inventory(1, true), "1", 0);
    drive(&mut run, &|_, s| match s {
        Step::Upgrade | Step::Downgrade | Step::RestoreSnapshot => Err("no".into()),
        s => good(s),
    });
    assert!(matches!(
        state(&run, "h1"),
        HostState::NeedsAttention { .. }
    ));
}

#[test]
fn failures_before_the_upgrade_abort_without_changes() {
    for failing in [Step::Precheck, Step::RecordState, Step::SaveDebs] {
        let mut run = run_of(&inventory(1, false), "1", 0);
        let events = drive(&mut run, &|_, s| {
            if s == failing {
                Err("boom".into())
            } else {
                good(s)
            }
        });
        assert!(!steps(&events, "h1").contains(&"upgrade"), "{failing}");
        assert!(
            matches!(state(&run, "h1"), HostState::Aborted { .. }),
            "{failing}"
        );
    }
    // With a snapshot, unsaved .debs are survivable: the snapshot is the way back.
    let mut run = run_of(&inventory(1, true), "1", 0);
    let events = drive(&mut run, &|_, s| match s {
        Step::SaveDebs => Err("repository dropped demo 1.0".into()),
        Step::HealthCheck => Err("unhealthy".into()),
        s => good(s),
    });
    assert_eq!(
        steps(&events, "h1")[2..],
        [
            "save-debs",
            "snapshot",
            "upgrade",
            "health-check",
            "restore-snapshot",
            "verify"
        ]
    );
    // A failed snapshot aborts: the operator asked for one.
    let mut run = run_of(&inventory(1, true), "1", 0);
    let events = drive(&mut run, &|_, s| {
        if s == Step::Snapshot {
            Err("no space".into())
        } else {
            good(s)
        }
    });
    assert!(!steps(&events, "h1").contains(&"upgrade"));
}

#[test]
fn batches_run_in_order_and_one_at_a_time() {
    let mut run = run_of(&inventory(5, false), "1,2", 0);
    assert_eq!(
        run.plan().batches,
        [vec!["h1"], vec!["h2", "h3"], vec!["h4", "h5"]]
    );
    let first = run.next_actions(now());
    assert_eq!(
        first,
        [Action::Perform {
            host: "h1".into(),
            step: Step::Precheck
        }]
    );
    let events = drive(&mut run, &|_, s| good(s));
    // h2 and h3 start together, after h1 finished.
    let starts: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Started {
                host,
                step: Step::Precheck,
            } => Some(host.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(starts, ["h1", "h2", "h3", "h4", "h5"]);
    let h1_done = events
        .iter()
        .position(
            |e| matches!(e, Event::Succeeded { host, step: Step::HealthCheck, .. } if host == "h1"),
        )
        .unwrap();
    let h2_start = events
        .iter()
        .position(|e| matches!(e, Event::Started { host, .. } if host == "h2"))
        .unwrap();
    assert!(h1_done < h2_start);
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
}

#[test]
fn a_batch_over_the_threshold_halts_the_later_batches() {
    let mut run = run_of(&inventory(4, false), "2", 0);
    let events = drive(&mut run, &|h, s| {
        if h == "h2" && s == Step::HealthCheck {
            Err("bad".into())
        } else {
            good(s)
        }
    });
    assert_eq!(state(&run, "h1"), HostState::Patched);
    assert!(matches!(state(&run, "h2"), HostState::RolledBack { .. }));
    for h in ["h3", "h4"] {
        assert!(steps(&events, h).is_empty());
        assert_eq!(
            state(&run, h),
            HostState::Skipped {
                reason: "batch 1 failed on 1 of 2 host(s), over the 0% threshold".into()
            }
        );
    }
    assert_eq!(
        run.halt(),
        Some(Halt {
            batch: 0,
            failed: 1,
            attempted: 2
        })
    );
    assert_eq!(run.outcome(), RunOutcome::Halted);
}

#[test]
fn failures_within_the_threshold_let_the_run_go_on() {
    let mut run = run_of(&inventory(4, false), "2", 50);
    drive(&mut run, &|h, s| {
        if h == "h2" && s == Step::HealthCheck {
            Err("bad".into())
        } else {
            good(s)
        }
    });
    assert_eq!(state(&run, "h4"), HostState::Patched);
    assert_eq!(run.outcome(), RunOutcome::Failed);
    // 2 of 2 is over 50%.
    let mut run = run_of(&inventory(4, false), "2", 50);
    drive(&mut run, &|h, s| {
        if h != "h4" && s == Step::Upgrade {
            Err("bad".into())
        } else {
            good(s)
        }
    });
    assert!(matches!(state(&run, "h3"), HostState::Skipped { .. }));
}

#[test]
fn closed_windows_defer_hosts_without_counting_them_as_failures() {
    let yaml = r#"hosts:
  - name: open
    maintenance_window: {days: [sat], start: "02:00", end: "05:00", timezone: Europe/Berlin}
  - name: closed
    maintenance_window: {days: [mon], start: "02:00", end: "05:00", timezone: Europe/Berlin}
  - name: unknown-zone
    maintenance_window: {days: [sat], start: "02:00", end: "05:00", timezone: Mars/Olympus}
"#;
    let inv = inventory::parse("h.yaml", yaml);
    let options = |ignore_window| PlanOptions {
        hosts: vec![],
        groups: vec![],
        batch: "100%".parse().unwrap(),
        max_fail_percent: 0,
        now: now(),
        ignore_window,
    };
    let mut run = Run::new(
        plan(
            &inv,
            &options(false),
            &|z| Zone::builtin(z),
            &BTreeMap::new(),
        )
        .unwrap(),
    );
    drive(&mut run, &|_, s| good(s));
    assert_eq!(state(&run, "open"), HostState::Patched);
    assert_eq!(
        state(&run, "closed"),
        HostState::Deferred {
            reason: "outside the maintenance window; it opens 2025-06-09T02:00:00+02:00".into()
        }
    );
    assert_eq!(
        state(&run, "unknown-zone"),
        HostState::Deferred {
            reason: "unknown time zone \"Mars/Olympus\"".into()
        }
    );
    assert_eq!(run.outcome(), RunOutcome::Succeeded);
    let mut run = Run::new(
        plan(
            &inv,
            &options(true),
            &|z| Zone::builtin(z),
            &BTreeMap::new(),
        )
        .unwrap(),
    );
    drive(&mut run, &|_, s| good(s));
    assert_eq!(state(&run, "closed"), HostState::Patched, "--ignore-window");
}

/// Crash after every possible event: replaying the prefix, marking the
/// in-flight steps interrupted and driving on always settles, and a host
/// whose upgrade was interrupted is rolled back, never assumed patched.
#[test]
fn a_run_killed_after_any_event_resumes_or_rolls_back() {
    let inv = inventory(3, false);
    let mut reference = run_of(&inv, "1,2", 0);
    let all = drive(&mut reference, &|_, s| good(s));
    assert_eq!(reference.outcome(), RunOutcome::Succeeded);
    for k in 0..=all.len() {
        let plan = reference.plan().clone();
        let mut run = Run::replay(plan, &all[..k]).unwrap();
        let interrupted = run.interrupted();
        let mut events = Vec::new();
        for (host, step) in &interrupted {
            let e = Event::Interrupted {
                host: host.clone(),
                step: *step,
            };
            run.apply(&e).unwrap();
            events.push(e);
        }
        events.extend(drive(&mut run, &|_, s| good(s)));
        assert_ne!(run.outcome(), RunOutcome::InProgress, "k={k}");
        for (host, step) in interrupted {
            let s = state(&run, &host);
            if step == Step::Upgrade {
                assert_eq!(
                    s,
                    HostState::RolledBack {
                        reason: "the run was interrupted during the upgrade".into()
                    },
                    "k={k}"
                );
                assert_eq!(steps(&events, &host), ["downgrade", "verify"], "k={k}");
            } else {
                assert_eq!(s, HostState::Patched, "k={k}: {step} is repeated");
                assert_eq!(steps(&events, &host).first(), Some(&step.name()), "k={k}");
            }
        }
        // Replaying everything gives the same run as living through it.
        let mut full = all[..k].to_vec();
        full.extend(events);
        assert_eq!(
            Run::replay(reference.plan().clone(), &full).unwrap(),
            run,
            "k={k}"
        );
    }
}

#[test]
fn a_finished_host_can_be_rolled_back_on_request() {
    let mut run = run_of(&inventory(1, false), "1", 0);
    drive(&mut run, &|_, s| good(s));
    run.apply(&Event::RollbackRequested {
        host: "h1".into(),
        reason: "requested by alice".into(),
    })
    .unwrap();
    assert_eq!(
        run.next_actions(now()),
        [Action::Perform {
            host: "h1".into(),
            step: Step::Downgrade
        }]
    );
    let events = drive(&mut run, &|_, s| good(s));
    assert_eq!(steps(&events, "h1"), ["downgrade", "verify"]);
    assert_eq!(
        state(&run, "h1"),
        HostState::RolledBack {
            reason: "requested by alice".into()
        }
    );
}

#[test]
fn rollback_requests_without_a_recorded_state_are_refused() {
    let mut run = run_of(&inventory(2, false), "1", 0);
    drive(&mut run, &|h, s| {
        if h == "h1" && s == Step::Precheck {
            Err("dpkg lock held".into())
        } else {
            good(s)
        }
    });
    let e = run
        .apply(&Event::RollbackRequested {
            host: "h1".into(),
            reason: "x".into(),
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "host h1: nothing to roll back (its package state was never recorded (state: aborted))"
    );
    let e = run
        .apply(&Event::RollbackRequested {
            host: "nope".into(),
            reason: "x".into(),
        })
        .unwrap_err();
    assert_eq!(e, MachineError::UnknownHost("nope".into()));
}

#[test]
fn events_that_do_not_fit_are_errors_not_guesses() {
    let mut run = run_of(&inventory(1, false), "1", 0);
    let h = || "h1".to_string();
    let bad = [
        Event::Succeeded {
            host: h(),
            step: Step::Precheck,
            output: StepOutput::Nothing,
        },
        Event::Started {
            host: h(),
            step: Step::Upgrade,
        },
        Event::Interrupted {
            host: h(),
            step: Step::Precheck,
        },
        Event::Failed {
            host: h(),
            step: Step::Upgrade,
            reason: "x".into(),
        },
    ];
    for e in &bad {
        assert!(
            matches!(run.apply(e), Err(MachineError::Unexpected { .. })),
            "{e:?}"
        );
    }
    run.apply(&Event::Started {
        host: h(),
        step: Step::Precheck,
    })
    .unwrap();
    assert!(
        run.apply(&Event::Started {
            host: h(),
            step: Step::Precheck
        })
        .is_err(),
        "started twice"
    );
    assert!(
        run.apply(&Event::Deferred {
            host: h(),
            reason: "x".into()
        })
        .is_err()
    );
    assert!(
        run.next_actions(now()).is_empty(),
        "nothing new while a step is in flight"
    );
    run.apply(&Event::Succeeded {
        host: h(),
        step: Step::Precheck,
        output: StepOutput::Nothing,
    })
    .unwrap();
    run.apply(&Event::Started {
        host: h(),
        step: Step::RecordState,
    })
    .unwrap();
    let wrong_output = Event::Succeeded {
        host: h(),
        step: Step::RecordState,
        output: StepOutput::Nothing,
    };
    assert!(run.apply(&wrong_output).is_err());
    assert_eq!(
        run.interrupted(),
        [("h1".to_string(), Step::RecordState)],
        "a refused event changes nothing"
    );
}

#[test]
fn events_round_trip_through_json() {
    let e = Event::Succeeded {
        host: "h1".into(),
        step: Step::Upgrade,
        output: StepOutput::Upgraded {
            changes: change(),
            reboot: RebootNeed::Required {
                reasons: vec!["linux-image-x".into()],
            },
        },
    };
    let text = serde_json::to_string(&e).unwrap();
    assert!(
        text.starts_with(r#"{"event":"succeeded","host":"h1","step":"upgrade""#),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
}
