//! Measures how long rolling one host back takes after a failed upgrade:
//! `cargo run --release -p hostops --example rollback_bench [ROUNDS]`.
//!
//! Each round builds a fresh root on demo 1.0 whose repository offers the
//! broken demo 1.3, runs a patch (which fails its health check and is
//! rolled back), and reads the rollback's duration (first rollback step
//! started -> verification recorded) from the state database.

use hostops::state::{StateDb, rollback_durations, step_durations};
use hostops::testbed::{HEALTH_COMMAND, Testbed};
use hostops::{Options, execute};
use patch::{PlanOptions, Step, Timestamp};
use std::collections::BTreeMap;

fn main() -> Result<(), String> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let dir = std::env::temp_dir().join(format!("bulkhead-rollback-bench-{}", std::process::id()));
    let bed = Testbed::new(&dir.join("bed"))?;
    let repo = bed.repo(
        "broken",
        &[
            ("demo", "1.3"),
            ("libdemo", "1.1"),
            ("demo-extras", "1.1"),
            ("demo", "1.0"),
            ("libdemo", "1.0"),
        ],
    )?;
    let (mut total, mut downgrade, mut verify) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let root = bed.root(
            &format!("host-{round}"),
            &repo,
            &[("libdemo", "1.0"), ("demo", "1.0")],
        )?;
        let yaml = format!(
            "hosts:\n  - name: host\n    transport: {{local: {}}}\n    health_checks: [{{command: '{HEALTH_COMMAND}'}}]\n",
            root.display()
        );
        let inv = patch::inventory::parse("bench.yaml", &yaml);
        let now = Timestamp::parse_rfc3339("2025-06-07T02:30:00Z").map_err(|e| e.to_string())?;
        let options = PlanOptions {
            hosts: vec![],
            groups: vec![],
            batch: Default::default(),
            max_fail_percent: 0,
            now,
            ignore_window: true,
        };
        let plan = patch::plan::plan(
            &inv,
            &options,
            &hostops::zoneinfo::resolve,
            &BTreeMap::new(),
        )
        .map_err(|e| e.to_string())?;
        let state = dir.join(format!("state-{round}"));
        let db = StateDb::open(&state).map_err(|e| e.to_string())?;
        let id = db.create_run(&plan).map_err(|e| e.to_string())?;
        let clock = move || now;
        let o = Options {
            state_dir: &state,
            clock: &clock,
            only_host: None,
            stop_after_steps: None,
            progress: &|_| {},
        };
        execute(&db, id, &o).map_err(|e| e.to_string())?;
        let events = db.events(id).map_err(|e| e.to_string())?;
        let ms = rollback_durations(&events)
            .first()
            .map(|(_, ms)| *ms)
            .ok_or("the host was not rolled back")?;
        total.push(ms);
        for (_, step, ms, _) in step_durations(&events) {
            match step {
                Step::Downgrade => downgrade.push(ms),
                Step::Verify => verify.push(ms),
                _ => {}
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let median = |v: &mut Vec<i64>| {
        v.sort_unstable();
        v[v.len() / 2]
    };
    println!(
        "rollback of one host after a failed upgrade (3 packages: 2 downgraded, 1 purged), {rounds} rounds:\n  median {} ms (min {} ms, max {} ms): downgrade {} ms + verify {} ms",
        median(&mut total),
        total.iter().min().unwrap_or(&0),
        total.iter().max().unwrap_or(&0),
        median(&mut downgrade),
        median(&mut verify)
    );
    Ok(())
}
