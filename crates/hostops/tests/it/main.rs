//! hostops on real dpkg and apt: synthetic packages in `file:` repositories,
//! one root directory per host under a unique temporary folder.
//!
//! Only the local-root transport is exercised: there is no SSH server here.
//! The SSH transport wraps the same commands in `ssh -o BatchMode=yes HOST --`.

mod patching;
mod providers;

use hostops::testbed::{self, HEALTH_COMMAND, Testbed};
use hostops::{Finish, Options, StateDb};
use patch::{BatchSpec, HostState, PlanOptions, Run, Timestamp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use test_support::TempDir;

pub const BASE: &[(&str, &str)] = &[("libdemo", "1.0"), ("demo", "1.0")];

/// The repository a release of demo ships in: demo at `version`, with
/// what it depends on; `keep_old` keeps the 1.0 packages in it too.
pub fn release(version: &str, keep_old: bool) -> Vec<(&'static str, &'static str)> {
    let version: &'static str = match version {
        "1.1" => "1.1",
        "1.2" => "1.2",
        "1.3" => "1.3",
        other => panic!("no demo {other}"),
    };
    let mut p = vec![
        ("demo", version),
        ("libdemo", "1.1"),
        ("demo-extras", "1.1"),
    ];
    if keep_old {
        p.extend(BASE);
    }
    p
}

/// A fleet of local roots and its state folder.
#[derive(Debug)]
pub struct Fleet {
    pub temp: TempDir,
    pub bed: Testbed,
    pub roots: BTreeMap<String, PathBuf>,
}

impl Fleet {
    /// Hosts named `hosts`, each on demo 1.0, each using the repository of its release.
    pub fn new(name: &str, hosts: &[(&str, &str)]) -> Fleet {
        let temp = TempDir::new(name);
        let bed = Testbed::new(&temp.path().join("bed")).expect("testbed");
        let mut roots = BTreeMap::new();
        for (host, version) in hosts {
            let repo = bed
                .repo(&format!("demo-{version}"), &release(version, true))
                .expect("repo");
            roots.insert(host.to_string(), bed.root(host, &repo, BASE).expect("root"));
        }
        Fleet { temp, bed, roots }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.temp.path().join("state")
    }

    /// An inventory of the roots; `extra` is appended to every host.
    pub fn inventory(&self, extra: &str) -> patch::Inventory {
        let mut yaml = String::from("hosts:\n");
        for (name, root) in &self.roots {
            yaml.push_str(&format!(
                "  - name: {name}\n    transport: {{local: {}}}\n    health_checks:\n      - command: '{HEALTH_COMMAND}'\n        timeout: 30s\n{extra}",
                root.display()
            ));
        }
        let inv = patch::inventory::parse("hosts.yaml", &yaml);
        assert!(inv.diagnostics.is_empty(), "{:?}\n{yaml}", inv.diagnostics);
        inv
    }

    pub fn query(&self, host: &str) -> String {
        testbed::dpkg_query_w(&self.roots[host]).expect("dpkg-query")
    }
}

pub fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap()
}

pub fn options(batch: &str, max_fail_percent: u32) -> PlanOptions {
    PlanOptions {
        hosts: vec![],
        groups: vec![],
        batch: batch.parse::<BatchSpec>().unwrap(),
        max_fail_percent,
        now: at("2025-06-07T02:30:00+02:00"),
        ignore_window: false,
    }
}

/// Plans (asking every host), stores the run, executes it; returns the run and its id.
pub fn run_fleet(
    fleet: &Fleet,
    inv: &patch::Inventory,
    opts: &PlanOptions,
    stop_after: Option<usize>,
) -> (StateDb, i64, Run, Finish) {
    let state = fleet.state_dir();
    let (selected, _) = patch::plan::select(inv, opts).unwrap();
    let facts = hostops::gather_facts(&selected, &state.join("facts"));
    let plan = patch::plan::plan(inv, opts, &hostops::zoneinfo::resolve, &facts).unwrap();
    let db = StateDb::open(&state).unwrap();
    let id = db.create_run(&plan).unwrap();
    let now = opts.now;
    let clock = move || now;
    let o = Options {
        state_dir: &state,
        clock: &clock,
        only_host: None,
        stop_after_steps: stop_after,
        progress: &|_| {},
    };
    let (run, finish) = hostops::execute(&db, id, &o).unwrap();
    (db, id, run, finish)
}

pub fn resume(fleet: &Fleet, db: &StateDb, id: i64) -> (Run, Finish) {
    let state = fleet.state_dir();
    let clock = || at("2025-06-07T02:31:00+02:00");
    let o = Options {
        state_dir: &state,
        clock: &clock,
        only_host: None,
        stop_after_steps: None,
        progress: &|_| {},
    };
    hostops::execute(db, id, &o).unwrap()
}

pub fn state(run: &Run, host: &str) -> HostState {
    run.host_state(host).unwrap()
}
