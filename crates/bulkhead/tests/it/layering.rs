//! The architecture's arrows, checked from `cargo metadata` and the sources
//! (see ARCHITECTURE.md, "Invariants").

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Workspace crate -> the workspace crates it may depend on (normal dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("scan", &["model"]),
    ("impact", &["model"]),
    ("discover", &["model", "scan"]),
    ("lab", &[]),
    ("lab-service", &["http-client", "signals", "telemetry"]),
    ("templates", &["model", "scan"]),
    ("policy", &["model", "scan"]),
    ("admission", &["policy", "signals"]),
    ("vcs", &[]),
    ("images", &["model"]),
    ("http-client", &[]),
    ("clock", &[]),
    ("yaml", &[]),
    ("registry", &["http-client", "model"]),
    ("patch", &["model", "scan", "telemetry"]),
    ("hostops", &["clock", "model", "patch", "statedb"]),
    ("statedb", &[]),
    ("signals", &[]),
    (
        "gateway",
        &["clock", "http-client", "scan", "signals", "telemetry"],
    ),
    ("traces", &[]),
    ("telemetry", &["traces"]),
    ("collector", &["clock", "signals", "traces"]),
    ("rollout", &["model", "scan", "impact"]),
    (
        "orchestrator",
        &["clock", "http-client", "rollout", "scan", "statedb", "vcs"],
    ),
    (
        "bulkhead",
        &[
            "model",
            "scan",
            "discover",
            "impact",
            "lab",
            "lab-service",
            "templates",
            "policy",
            "admission",
            "vcs",
            "images",
            "registry",
            "http-client",
            "patch",
            "hostops",
            "gateway",
            "orchestrator",
            "rollout",
            "collector",
            "traces",
            "telemetry",
        ],
    ),
    // bench-collector fills a span store through the store API.
    ("xtask", &["collector"]),
];

/// Crates whose code must stay pure: no file system, processes or network.
const PURE: &[&str] = &[
    "model",
    "scan",
    "impact",
    "templates",
    "images",
    "policy",
    "patch",
    "rollout",
    "traces",
    "telemetry",
];

fn metadata() -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata JSON")
}

#[test]
fn workspace_dependencies_follow_the_layers() {
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let members: BTreeSet<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for package in packages {
        let name = package["name"].as_str().expect("name");
        let rules = allowed.get(name).unwrap_or_else(|| {
            panic!("crate {name} is not in the layering table: add it to ARCHITECTURE.md and here")
        });
        let manifest = Path::new(package["manifest_path"].as_str().expect("path"));
        let folder = manifest
            .parent()
            .and_then(Path::file_name)
            .and_then(|f| f.to_str());
        assert_eq!(folder, Some(name), "folder name must equal crate name");
        for dep in package["dependencies"].as_array().expect("deps") {
            let dep_name = dep["name"].as_str().expect("dep name");
            let normal = dep["kind"].is_null();
            if members.contains(dep_name) && normal {
                assert!(
                    rules.contains(&dep_name),
                    "{name} must not depend on {dep_name}"
                );
            }
            if dep_name == "clap" {
                assert_eq!(name, "bulkhead", "only the binary knows clap");
            }
            if PURE.contains(&name) && normal {
                assert!(
                    !["ignore", "tokio", "hyper", "rusqlite", "toml"].contains(&dep_name),
                    "{name} is pure and must not depend on {dep_name}"
                );
            }
        }
    }
}

#[test]
fn pure_crates_do_no_io() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for name in PURE {
        let mut stack = vec![crates.join(name).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                // Tests may read fixtures; the code under test may not.
                if path.file_name().is_some_and(|f| f == "tests.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read source");
                for forbidden in [
                    "std::fs",
                    "std::net",
                    "std::process",
                    "File::open",
                    "std::env::var",
                ] {
                    assert!(
                        !text.contains(forbidden),
                        "{} uses {forbidden}: {name} must stay pure",
                        path.display()
                    );
                }
            }
        }
    }
}
