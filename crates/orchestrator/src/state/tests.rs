use super::*;
use crate::testutil::Scratch;
use model::{Fleet, Service};

/// `web` calls `orders`; both change.
fn rollout() -> Rollout {
    let service = |name: &str, deps: &[&str]| Service {
        name: name.to_string(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..Service::default()
    };
    let fleet = Fleet {
        services: vec![service("orders", &[]), service("web", &["orders"])],
        ..Fleet::default()
    };
    let changed = ["orders".to_string(), "web".to_string()];
    let plan = rollout::plan(
        &fleet,
        &changed,
        Some("green"),
        &rollout::Specs::default(),
        &rollout::PlanOptions::default(),
    )
    .expect("plan");
    Rollout::new(plan)
}

fn target() -> Target {
    Target::Gateway {
        admin: "http://127.0.0.1:9901".into(),
        token_env: Some("TOKEN".into()),
        metrics: "http://127.0.0.1:9901/metrics".into(),
    }
}

fn step<'a>(
    event: &'a Event,
    rollout: &'a Rollout,
    actions: &'a [Action],
    inbox: Option<i64>,
    settled: &'a [(i64, &'a str)],
) -> Step<'a> {
    Step {
        event,
        rollout,
        status: "running",
        actions,
        inbox,
        settled,
    }
}

#[test]
fn a_transition_is_recorded_whole_with_its_open_actions() {
    let dir = Scratch::new("state");
    let mut db = StateDb::open(dir.path()).unwrap();
    let mut r = rollout();
    let id = db.create(&r, &target()).unwrap();
    let actions = r.step(Event::Start);
    assert!(!actions.is_empty());
    let (seq, rows) = db
        .record(id, &step(&Event::Start, &r, &actions, None, &[]))
        .unwrap();
    assert_eq!((seq, rows.len()), (1, actions.len()));
    assert_eq!(db.load(id).unwrap(), r);
    assert_eq!(db.open_actions(id).unwrap().len(), actions.len());
    db.done(rows[0], None).unwrap();
    let open = db.open_actions(id).unwrap();
    assert_eq!(open.len(), actions.len() - 1);
    assert_eq!(open[0].action, actions[1]);

    // The next transition settles an open action in the same transaction.
    let event = Event::Pause;
    let more = r.step(event.clone());
    let (seq, _) = db
        .record(
            id,
            &step(&event, &r, &more, None, &[(open[0].id, "superseded")]),
        )
        .unwrap();
    assert_eq!(seq, 2);
    let all = db.actions(id).unwrap();
    assert_eq!(all[1].outcome.as_deref(), Some("superseded"));
    let log = db.transitions(id).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].event, Event::Start);
    assert_eq!(log[0].actions, actions);

    // Reopened, everything is as recorded.
    drop(db);
    let db = StateDb::open(dir.path()).unwrap();
    assert_eq!(db.load(id).unwrap(), r);
    assert_eq!(db.latest().unwrap(), id);
    assert_eq!(db.row(id).unwrap().target, target());
}

#[test]
fn operator_events_wait_in_the_inbox_until_a_transition_takes_them() {
    let dir = Scratch::new("inbox");
    let mut db = StateDb::open(dir.path()).unwrap();
    let mut r = rollout();
    let id = db.create(&r, &target()).unwrap();
    let abort = Event::Abort {
        service: Some("orders".into()),
    };
    let entry = db.send(id, &abort).unwrap();
    assert_eq!(db.inbox(id).unwrap(), vec![(entry, abort.clone())]);
    assert_eq!(db.taken(entry).unwrap(), None);
    let actions = r.step(abort.clone());
    db.record(id, &step(&abort, &r, &actions, Some(entry), &[]))
        .unwrap();
    assert_eq!(db.taken(entry).unwrap(), Some(1));
    assert_eq!(db.routed(id, 1).unwrap(), actions.is_empty());
    assert!(db.inbox(id).unwrap().is_empty());
}

#[test]
fn the_lease_belongs_to_one_live_process() {
    let dir = Scratch::new("lease");
    let db = StateDb::open(dir.path()).unwrap();
    let id = db.create(&rollout(), &target()).unwrap();
    assert_eq!(db.acquire(id).unwrap(), Ok(()));
    assert_eq!(db.row(id).unwrap().driver, Some(std::process::id()));
    // Our own lease can be taken again (a driver in the same process).
    assert_eq!(db.acquire(id).unwrap(), Ok(()));
    db.release(id).unwrap();
    assert_eq!(db.row(id).unwrap().driver, None);

    // A lease held by a process that is gone is free.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    db.conn
        .execute(
            "UPDATE rollouts SET driver = ?2, heartbeat_us = ?3 WHERE id = ?1",
            params![id, gone, now_us()],
        )
        .unwrap();
    assert_eq!(db.row(id).unwrap().driver, None);
    assert_eq!(db.acquire(id).unwrap(), Ok(()));
}

#[test]
fn snapshots_and_errors() {
    let dir = Scratch::new("snap");
    let db = StateDb::open(dir.path()).unwrap();
    assert!(matches!(db.latest(), Err(StateError::NoRollouts { .. })));
    let id = db.create(&rollout(), &target()).unwrap();
    assert!(matches!(
        db.load(id + 1),
        Err(StateError::NoSuchRollout { .. })
    ));
    let routing: BTreeMap<String, String> = [(
        "cart".to_string(),
        r#"[{"selector":"version=blue"}]"#.to_string(),
    )]
    .into();
    db.save_snapshot(id, "before", &routing).unwrap();
    assert_eq!(db.snapshot(id, "before").unwrap(), Some(routing));
    assert_eq!(db.snapshot(id, "after").unwrap(), None);
}
