use super::*;
use crate::inventory;
use crate::time::Timestamp;
use model::report::{render_markdown, render_table};

fn inventory() -> Inventory {
    let inv = inventory::parse(
        "inventory/hosts.yaml",
        r#"hosts:
  - name: web-1
    groups: [web]
    maintenance_window: {days: [sat, sun], start: "02:00", end: "05:00", timezone: Europe/Berlin}
    snapshot: {provider: qcow2, image: /vm/web-1.qcow2}
    health_checks: [{http: "http://web-1:8080/healthz"}]
  - name: web-2
    groups: [web]
    maintenance_window: {days: [sat, sun], start: "02:00", end: "05:00", timezone: Europe/Berlin}
    health_checks: [{http: "http://web-2:8080/healthz"}]
  - name: db-1
    groups: [db]
    maintenance_window: {days: [sun], start: "02:00", end: "05:00", timezone: Europe/Berlin}
    health_checks: [{command: pg_isready}]
  - name: cache-1
    groups: [cache]
"#,
    );
    assert!(inv.diagnostics.is_empty(), "{:?}", inv.diagnostics);
    inv
}

fn options(hosts: &[&str], groups: &[&str]) -> PlanOptions {
    PlanOptions {
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        batch: "1,50%".parse().unwrap(),
        max_fail_percent: 25,
        now: Timestamp::parse_rfc3339("2025-06-07T02:30:00+02:00").unwrap(),
        ignore_window: false,
    }
}

fn facts() -> BTreeMap<String, Result<HostFacts, String>> {
    let upgrade = |name: &str, from: &str, to: &str| PackageChange {
        name: name.into(),
        arch: Some("amd64".into()),
        from: Some(from.into()),
        to: Some(to.into()),
    };
    BTreeMap::from([
        (
            "web-1".to_string(),
            Ok(HostFacts {
                changes: vec![
                    upgrade("openssl", "3.0.15-1", "3.0.16-1"),
                    upgrade("linux-image-6.1.0-30-amd64", "6.1.124-1", "6.1.128-1"),
                ],
                reboot: RebootNeed::NotRequired,
            }),
        ),
        (
            "web-2".to_string(),
            Ok(HostFacts {
                changes: vec![upgrade("openssl", "3.0.15-1", "3.0.16-1")],
                reboot: RebootNeed::Unknown,
            }),
        ),
        (
            "db-1".to_string(),
            Err("ssh: connect to host db-1 port 22: Connection refused".to_string()),
        ),
    ])
}

#[test]
fn selection_by_host_and_group() {
    let inv = inventory();
    let names = |o: &PlanOptions| {
        select(&inv, o)
            .unwrap()
            .0
            .iter()
            .map(|h| h.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&options(&[], &[])),
        ["web-1", "web-2", "db-1", "cache-1"]
    );
    assert_eq!(names(&options(&[], &["web"])), ["web-1", "web-2"]);
    assert_eq!(names(&options(&["cache-1"], &["db"])), ["db-1", "cache-1"]);
    assert_eq!(
        select(&inv, &options(&["nope"], &[])).unwrap_err(),
        PlanError::UnknownHost("nope".into())
    );
    assert_eq!(
        select(&inv, &options(&[], &["nope"])).unwrap_err(),
        PlanError::UnknownGroup("nope".into())
    );
}

#[test]
fn the_plan_knows_windows_batches_kernels_and_reboots() {
    let p = plan(
        &inventory(),
        &options(&[], &[]),
        &|z| crate::zone::Zone::builtin(z),
        &facts(),
    )
    .unwrap();
    assert_eq!(
        p.batches,
        [vec!["web-1"], vec!["web-2", "db-1"], vec!["cache-1"]]
    );
    assert!(matches!(
        p.host("web-1").unwrap().window,
        WindowStatus::Open { .. }
    ));
    // Saturday: db-1's Sunday window is closed.
    assert_eq!(
        p.host("db-1").unwrap().window,
        WindowStatus::Closed {
            opens: Some(Timestamp::parse_rfc3339("2025-06-08T02:00:00+02:00").unwrap())
        }
    );
    assert_eq!(p.host("cache-1").unwrap().window, WindowStatus::Anytime);
    assert_eq!(p.host("web-1").unwrap().kernel_updates().len(), 1);
    let report = p.to_report(None);
    assert_eq!(
        report.change,
        Change::HostPatch {
            hosts: vec![
                "web-1".into(),
                "web-2".into(),
                "db-1".into(),
                "cache-1".into()
            ],
            packages: vec!["linux-image-6.1.0-30-amd64".into(), "openssl".into()],
        }
    );
    let table = render_table(&report);
    for expected in [
        "Change: patch 4 host(s): linux-image-6.1.0-30-amd64, openssl",
        "[risky] web-1: kernel update (linux-image-6.1.0-30-amd64 6.1.124-1 -> 6.1.128-1)",
        "[breaking] db-1: could not be asked what it would upgrade: ssh: connect to host db-1 port 22: Connection refused",
        "[safe] db-1: outside its maintenance window; deferred until 2025-06-08T02:00:00+02:00",
        "[risky] cache-1: no maintenance window",
        "[risky] cache-1: no health checks",
        "batch 1 (1 host(s)): web-1 — gate: health checks pass; failed hosts <= 25% of the batch",
        "batch 2 (2 host(s)): web-2, db-1",
        "time not known",
        "health: GET http://web-1:8080/healthz: HTTP 200 within 30s [web-1]",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in\n{table}");
    }
    let web1 = &report.plan.waves[0].steps[0];
    assert_eq!(
        web1.rollback,
        "downgrade from saved .debs, else restore qcow2 snapshot"
    );
    assert!(
        web1.action
            .contains("reboot required after the kernel update"),
        "{}",
        web1.action
    );
    assert!(
        web1.action.contains("open until 2025-06-07T05:00:00+02:00"),
        "{}",
        web1.action
    );
    assert!(render_markdown(&report).contains("### Plan"));
}

#[test]
fn measured_rollbacks_show_in_the_report() {
    let p = plan(
        &inventory(),
        &options(&["web-2"], &[]),
        &|z| crate::zone::Zone::builtin(z),
        &facts(),
    )
    .unwrap();
    let report = p.to_report(Some(RollbackTiming {
        median_seconds: 0.412,
        samples: 3,
    }));
    assert_eq!(report.untouched, ["web-1", "db-1", "cache-1"]);
    let table = render_table(&report);
    assert!(table.contains("(measured 0.412 s)"), "{table}");
    assert!(table.contains("median of 3 rollback(s)"), "{table}");
}

#[test]
fn bad_options_are_refused() {
    let mut o = options(&[], &[]);
    o.max_fail_percent = 101;
    assert_eq!(
        plan(&inventory(), &o, &|_| None, &BTreeMap::new())
            .unwrap_err()
            .to_string(),
        "max fail percent must be 0 to 100, not 101"
    );
    let empty = Inventory::default();
    assert_eq!(
        select(&empty, &options(&[], &[])).unwrap_err(),
        PlanError::NoHosts
    );
}
