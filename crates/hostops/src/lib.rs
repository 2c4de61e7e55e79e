//! Host patching's I/O edge; `patch` is its pure half. Here: dpkg and apt on
//! a host, snapshots, health checks, the state database, and the runner that
//! drives [`patch::Run`].
//!
//! `patch` decides what happens; this crate makes it happen and records it.
//! Hosts are reached through a local root directory (dpkg `--root`, apt
//! `Dir`) or SSH (the system client). Every step is recorded in SQLite
//! before it is acted on ([`state`]), so a killed run resumes or rolls back.
//!
//! - [`apt`]: pre-checks, `dpkg-query`, saving `.deb`s, upgrade, downgrade, verify.
//! - [`snapshot`]: btrfs, qcow2, LVM and command-hook snapshots.
//! - [`health`]: command and HTTP checks.
//! - [`runner`]: the run loop (record, act, record) and per-host rollback.
//! - [`testbed`]: synthetic packages, local repositories and host roots, for
//!   tests, the rollback benchmark and trying bulkhead without a fleet.

pub mod apt;
pub mod exec;
pub mod health;
pub mod host;
pub mod repack;
pub mod runner;
pub mod snapshot;
pub mod state;
pub mod testbed;
pub mod zoneinfo;

pub use host::Host;
pub use runner::{Finish, Options, execute, rollback_host};
pub use state::{StateDb, StateError};

/// Asks each host what it would change, a few hosts at a time.
pub fn gather_facts(
    hosts: &[&patch::HostSpec],
    work_root: &std::path::Path,
) -> std::collections::BTreeMap<String, Result<patch::HostFacts, String>> {
    const PARALLEL: usize = 8;
    let mut out = std::collections::BTreeMap::new();
    for chunk in hosts.chunks(PARALLEL) {
        let results: Vec<(String, Result<patch::HostFacts, String>)> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|spec| {
                    s.spawn(move || {
                        let host = Host::new(spec, work_root.join(&spec.name), 0);
                        let facts = if spec.package_manager == patch::PackageManager::Dnf {
                            Err("dnf hosts cannot be asked yet: only apt is implemented"
                                .to_string())
                        } else {
                            apt::facts(&host)
                        };
                        (spec.name.clone(), facts)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("facts thread"))
                .collect()
        });
        out.extend(results);
    }
    out
}
