//! Deterministic generator of a realistic sample microservice fleet as real git repositories.
//!
//! [`plan`] is pure: from a [`FleetSpec`] it computes every repo as in-memory files and commits,
//! the loose fleet files, and the [`GroundTruth`] of every fact it planted. [`write_fleet`] is
//! the small I/O part: it writes the plan under a directory and records history with the real
//! `git` binary. The same seed yields byte-identical files and identical commit hashes.
//!
//! Layout under the target directory:
//!
//! - `bulkhead.toml` — where the templates, base images, reports and hosts live;
//! - `ci-templates/` — GitLab CI templates and GitHub reusable workflows, tagged v0.8.0 … v2.0.0;
//! - `base-images/` — OS and language base Dockerfiles plus `images.json`;
//! - `services/<name>/` — one repo per service (Dockerfile, CI, `deploy/k8s.yaml`,
//!   `catalog-info.yaml`, README, source stub);
//! - `reports/trivy/<base>.json` — one Trivy report per base image;
//! - `inventory/hosts.yaml` — hosts with maintenance windows;
//! - `ground-truth.json` — everything planted, for checking scanners against.

mod images;
mod render;
mod rng;
mod templates;
mod topology;
mod truth;
mod write;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

pub use truth::{
    BaseImage, CriticalCve, GroundTruth, InputValue, KustomizeImage, Language, Layer, Pinning,
    RouteKind, RouteTruth, ServiceTruth, TemplateKind, TemplatePin, TierSource,
};
pub use write::{LabError, write_fleet};

/// Folder (relative to the fleet root) holding one repo per service.
pub const SERVICES_DIR: &str = "services";
/// File name of the ground truth at the fleet root.
pub const GROUND_TRUTH: &str = "ground-truth.json";
const TRIVY_DIR: &str = "reports/trivy";
const INVENTORY: &str = "inventory/hosts.yaml";
/// Commit time of every single-commit repo (2024-10-15 12:00 UTC), in git's internal format.
const IMPORT_DATE: &str = "1728993600 +0000";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSpec {
    /// Number of service repos.
    pub services: usize,
    /// Seed of every random choice; the same seed yields the same bytes.
    pub seed: u64,
    /// Create git repositories (otherwise only the files of their last commit are written).
    pub git: bool,
}

impl Default for FleetSpec {
    fn default() -> Self {
        Self {
            services: 100,
            seed: 42,
            git: true,
        }
    }
}

/// One file: path relative to its repo (or to the fleet root for loose files), and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub content: String,
}

impl FileEntry {
    pub(crate) fn new(path: &str, content: &str) -> Self {
        Self {
            path: path.to_owned(),
            content: content.to_owned(),
        }
    }
}

/// A tag on a commit; annotated when it has a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub message: Option<String>,
}

/// One commit: the files it adds or changes (commits never delete files), its message, its
/// author/committer date in git's internal format (`<unix seconds> <offset>`), and an optional tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub message: String,
    pub date: String,
    pub files: Vec<FileEntry>,
    pub tag: Option<Tag>,
}

/// A git repository: its path relative to the fleet root and its history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPlan {
    pub path: String,
    pub commits: Vec<Commit>,
}

impl RepoPlan {
    /// Number of distinct files in the repo after its last commit.
    pub fn file_count(&self) -> usize {
        self.commits
            .iter()
            .flat_map(|commit| &commit.files)
            .map(|file| file.path.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// The whole fleet in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFleet {
    /// Files outside any repo (`bulkhead.toml`, reports, inventory, `ground-truth.json`).
    pub files: Vec<FileEntry>,
    /// ci-templates, base-images, then the service repos sorted by name.
    pub repos: Vec<RepoPlan>,
    pub truth: GroundTruth,
}

/// What [`write_fleet`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub services: usize,
    /// Git repositories (or repo folders when `git` is off).
    pub repos: usize,
    /// Files written, excluding git's own.
    pub files: usize,
    pub ground_truth: PathBuf,
}

/// Pretty JSON with a trailing newline. These are plain data types (string map keys, derived
/// impls), for which serialisation cannot fail, so a failure would be a bug in this module.
pub(crate) fn pretty_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("plain data always serialises to JSON") + "\n"
}

/// Computes the whole fleet for `spec` without touching the file system.
pub fn plan(spec: &FleetSpec) -> GeneratedFleet {
    let catalog = images::BaseCatalog::new(spec.seed);
    let topology = topology::build(spec.seed, spec.services);
    let fleet = render::Fleet {
        seed: spec.seed,
        topology: &topology,
        catalog: &catalog,
    };

    let mut services: Vec<(RepoPlan, ServiceTruth)> = (0..topology.nodes.len())
        .map(|index| {
            let (files, truth) = render::service(&fleet, index);
            let repo = RepoPlan {
                path: truth.repo.clone(),
                commits: vec![Commit {
                    message: format!("Import {}\n", truth.name),
                    date: IMPORT_DATE.to_owned(),
                    files,
                    tag: None,
                }],
            };
            (repo, truth)
        })
        .collect();
    services.sort_by(|a, b| a.1.name.cmp(&b.1.name));

    let mut repos = vec![templates::repo(), catalog.repo()];
    let mut truths = Vec::with_capacity(services.len());
    for (repo, truth) in services {
        repos.push(repo);
        truths.push(truth);
    }

    let (hosts_yaml, hosts) = inventory();
    let truth = ground_truth(spec, truths, &catalog, hosts);
    let mut files = vec![FileEntry::new("bulkhead.toml", BULKHEAD_TOML)];
    files.extend(catalog.trivy_reports(TRIVY_DIR));
    files.push(FileEntry::new(INVENTORY, &hosts_yaml));
    files.push(FileEntry::new(GROUND_TRUTH, &pretty_json(&truth)));
    GeneratedFleet {
        files,
        repos,
        truth,
    }
}

fn ground_truth(
    spec: &FleetSpec,
    services: Vec<ServiceTruth>,
    catalog: &images::BaseCatalog,
    hosts: Vec<String>,
) -> GroundTruth {
    let mut latest = BTreeSet::new();
    let mut unpinned = BTreeSet::new();
    let mut template_pins = BTreeMap::new();
    for service in &services {
        let refs = std::iter::once(&service.base_image).chain(&service.images);
        for reference in refs {
            match Pinning::of(reference) {
                Pinning::Digest => {}
                Pinning::Tag => {
                    unpinned.insert(reference.clone());
                }
                Pinning::Latest | Pinning::Untagged => {
                    unpinned.insert(reference.clone());
                    latest.insert(reference.clone());
                }
            }
        }
        let version = &service.template.version;
        let normalised = if version.starts_with('v') {
            version.clone()
        } else {
            format!("v{version}")
        };
        *template_pins.entry(normalised).or_insert(0) += 1;
    }
    let critical_services = services
        .iter()
        .filter(|service| service.critical_cve)
        .map(|service| service.name.clone())
        .collect();
    GroundTruth {
        seed: spec.seed,
        services_count: services.len(),
        latest_images: latest.into_iter().collect(),
        unpinned_images: unpinned.into_iter().collect(),
        template_pins,
        template_tags: templates::RELEASES
            .iter()
            .map(|tag| (*tag).to_owned())
            .collect(),
        base_images: catalog.images.clone(),
        critical_cve: CriticalCve {
            id: images::CRITICAL_CVE.to_owned(),
            package: images::CRITICAL_PACKAGE.to_owned(),
            severity: "CRITICAL".to_owned(),
            os_base: format!("{}{}", images::BASE_PREFIX, images::CRITICAL_OS),
            language_bases: images::BaseCatalog::critical_language_bases(),
            services: critical_services,
        },
        hosts,
        services,
    }
}

const BULKHEAD_TOML: &str = r#"# Where bulkhead finds the fleet's shared artefacts.

[templates]
repo = "ci-templates"
project = "platform/ci-templates"          # GitLab project path apps include
github = "acme/ci-templates"               # GitHub owner/repo apps `uses:`

[images]
base_repo = "base-images"
approved_registries = ["registry.acme.internal/base/"]

[reports]
trivy = ["reports/trivy"]

[hosts]
inventory = "inventory/hosts.yaml"
"#;

/// `inventory/hosts.yaml` and the host names in it. The hosts are fixed: the lab's patching
/// scenarios refer to them by name.
fn inventory() -> (String, Vec<String>) {
    const HOSTS: [(&str, &str); 10] = [
        ("web-01", "web"),
        ("web-02", "web"),
        ("web-03", "web"),
        ("web-04", "web"),
        ("worker-01", "workers"),
        ("worker-02", "workers"),
        ("worker-03", "workers"),
        ("db-01", "db"),
        ("db-02", "db"),
        ("db-03", "db"),
    ];
    let mut yaml = String::from(
        "# Hosts patched by bulkhead, with their maintenance windows.\ngroups: [web, workers, db]\nhosts:\n",
    );
    for (name, group) in HOSTS {
        // Databases only get Sunday night; everything else the whole weekend.
        let days = if group == "db" { "[sun]" } else { "[sat, sun]" };
        yaml.push_str(&format!(
            "  - name: {name}\n    address: {name}.acme.internal\n    groups: [{group}]\n    os: debian-12\n    maintenance_window:\n      days: {days}\n      start: \"02:00\"\n      end: \"05:00\"\n      timezone: Europe/Berlin\n    package_manager: apt\n    transport: ssh\n"
        ));
    }
    (
        yaml,
        HOSTS.iter().map(|(name, _)| (*name).to_owned()).collect(),
    )
}
