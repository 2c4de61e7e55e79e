//! The resident scan: after each change, a refresh of the changed folders
//! gives the fleet a full scan gives, and re-reads only what changed.

use crate::{Progress, Resident, ScanOptions, scan};
use test_support::TempDir;

fn catalog(name: &str) -> String {
    catalog_owned(name, "shop", &[])
}

fn catalog_owned(name: &str, owner: &str, depends_on: &[&str]) -> String {
    let mut text = format!(
        "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: service\n  lifecycle: production\n  owner: group:{owner}\n"
    );
    if !depends_on.is_empty() {
        text.push_str("  dependsOn:\n");
        for d in depends_on {
            text.push_str(&format!("    - component:{d}\n"));
        }
    }
    text
}

/// A Deployment of `name` calling `calls` through an env value, and its Service.
fn manifest(name: &str, calls: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n        - name: {name}\n          image: registry.acme.internal/shop/{name}:1.0\n          env:\n            - name: UPSTREAM\n              value: http://{calls}-svc:8080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}-svc\n  namespace: shop\nspec:\n  selector:\n    app: {name}\n"
    )
}

/// One change to the fleet: what is written (`Some`) or removed (`None`), and
/// what the refresh re-reads.
struct Step {
    what: &'static str,
    files: Vec<(&'static str, Option<String>)>,
    /// `None`: the refresh has nothing to do.
    parsed: Option<u64>,
    services: &'static [&'static str],
}

#[test]
fn a_refresh_gives_what_a_full_scan_gives() {
    let dir = TempDir::new("resident");
    let fleet = dir.join("fleet");
    dir.write("fleet/a/catalog-info.yaml", catalog("a"));
    dir.write("fleet/a/Dockerfile", "FROM debian:12\n");
    dir.write("fleet/b/catalog-info.yaml", catalog("b"));
    dir.write("fleet/b/Dockerfile", "FROM alpine:3.20\n");
    let options = ScanOptions {
        paths: vec![fleet.clone()],
        state_dir: Some(dir.join("state")),
        use_cache: true,
    };
    let (mut resident, first) = Resident::load(&options, &Progress::default()).unwrap();
    assert_eq!(first.fleet.services.len(), 2);
    let steps = [
        Step {
            what: "a's base changes",
            files: vec![("a/Dockerfile", Some("FROM debian:13\n".into()))],
            parsed: Some(1),
            services: &["a", "b"],
        },
        Step {
            what: "a new folder with a service",
            files: vec![("c/catalog-info.yaml", Some(catalog("c")))],
            parsed: Some(1),
            services: &["a", "b", "c"],
        },
        Step {
            what: "b's folder goes",
            files: vec![
                ("b/catalog-info.yaml", None),
                ("b/Dockerfile", None),
                ("b", None),
            ],
            parsed: Some(0),
            services: &["a", "c"],
        },
        Step {
            what: "a catalog edit: a new owner and a dependency on another repository",
            files: vec![(
                "a/catalog-info.yaml",
                Some(catalog_owned("a", "payments", &["c"])),
            )],
            parsed: Some(1),
            services: &["a", "c"],
        },
        Step {
            what: "a manifest calls a service of another repository through its Service",
            files: vec![
                ("c/deploy/app.yaml", Some(manifest("c", "a"))),
                ("a/deploy/app.yaml", Some(manifest("a", "gone"))),
            ],
            parsed: Some(2),
            services: &["a", "c"],
        },
        Step {
            what: "the called repository's Service goes: the caller's dependency is unresolved",
            files: vec![("a/deploy/app.yaml", None)],
            parsed: Some(0),
            services: &["a", "c"],
        },
        Step {
            what: "git internals only",
            files: vec![(".git/index", Some(String::new()))],
            parsed: None,
            services: &["a", "c"],
        },
        Step {
            what: "bulkhead.toml excludes c",
            files: vec![(
                "bulkhead.toml",
                Some("[scan]\nexclude = [\"c/**\"]\n".into()),
            )],
            parsed: Some(0),
            services: &["a"],
        },
    ];
    for step in steps {
        let mut changed = Vec::new();
        for (rel, text) in &step.files {
            let path = fleet.join(rel);
            match text {
                Some(text) => {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(&path, text).unwrap();
                }
                None if path.is_dir() => std::fs::remove_dir_all(&path).unwrap(),
                None => std::fs::remove_file(&path).unwrap(),
            }
            changed.push(path);
        }
        let refreshed = resident.refresh(&changed, &Progress::default()).unwrap();
        assert_eq!(
            refreshed.as_ref().map(|o| o.stats.files_parsed),
            step.parsed,
            "{}",
            step.what
        );
        let full = scan(&options, &Progress::default()).unwrap();
        let names: Vec<&str> = full
            .fleet
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, step.services, "{}", step.what);
        if let Some(refreshed) = refreshed {
            assert_eq!(refreshed.fleet, full.fleet, "{}", step.what);
        }
    }
}
