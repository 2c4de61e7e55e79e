//! Integration tests of the fleet generator: determinism of files and git history, the planted
//! distributions, the ci-templates tags, the Trivy reports and the target-directory guard.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use test_support::TempDir;

use lab::generate::{
    self, FleetSpec, GeneratedFleet, LabError, Layer, Pinning, ServiceTruth, TemplateKind,
};

fn spec(services: usize, seed: u64, git: bool) -> FleetSpec {
    FleetSpec {
        services,
        seed,
        git,
    }
}

/// Every file under `root` except git's own, keyed by relative path.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.file_name().is_some_and(|name| name == ".git") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).expect("under root");
                out.insert(
                    relative.to_string_lossy().into_owned(),
                    fs::read(&path).expect("read file"),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} failed in {}",
        dir.display()
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

fn repo_heads(root: &Path, fleet: &GeneratedFleet) -> BTreeMap<String, String> {
    fleet
        .repos
        .iter()
        .map(|repo| {
            (
                repo.path.clone(),
                git(&root.join(&repo.path), &["rev-parse", "HEAD"]),
            )
        })
        .collect()
}

#[test]
fn same_seed_gives_identical_files_and_commits_and_another_seed_differs() {
    let first = TempDir::new("same-a");
    let second = TempDir::new("same-b");
    let other = TempDir::new("same-other");
    let same = spec(20, 7, true);

    let summary = generate::write_fleet(first.path(), &same).expect("first fleet");
    generate::write_fleet(second.path(), &same).expect("second fleet");
    generate::write_fleet(other.path(), &spec(20, 8, false)).expect("other fleet");

    let files = tree(first.path());
    assert_eq!(files.len(), summary.files);
    assert_eq!(summary.services, 20);
    assert_eq!(summary.repos, 22);
    assert_eq!(summary.ground_truth, first.path().join("ground-truth.json"));
    assert!(
        files == tree(second.path()),
        "same seed must give the same bytes"
    );
    assert!(
        files != tree(other.path()),
        "another seed must give other files"
    );

    let fleet = generate::plan(&same);
    let heads = repo_heads(first.path(), &fleet);
    assert_eq!(heads.len(), 22);
    assert_eq!(heads, repo_heads(second.path(), &fleet));
    assert!(
        !other.path().join("ci-templates/.git").exists(),
        "git off means no repos"
    );
}

#[test]
fn written_files_are_exactly_the_plan() {
    let dir = TempDir::new("plan-files");
    let spec = spec(12, 3, false);
    generate::write_fleet(dir.path(), &spec).expect("fleet");
    let fleet = generate::plan(&spec);
    let mut expected = BTreeMap::new();
    for file in &fleet.files {
        expected.insert(file.path.clone(), file.content.clone().into_bytes());
    }
    for repo in &fleet.repos {
        for file in repo.commits.iter().flat_map(|commit| &commit.files) {
            expected.insert(
                format!("{}/{}", repo.path, file.path),
                file.content.clone().into_bytes(),
            );
        }
    }
    assert_eq!(tree(dir.path()), expected);

    let truth: serde_json::Value = serde_json::from_slice(
        &fs::read(dir.path().join("ground-truth.json")).expect("truth file"),
    )
    .expect("truth is JSON");
    assert_eq!(truth["seed"], 3);
    assert_eq!(truth["services_count"], 12);
    let names: Vec<&str> = truth["services"]
        .as_array()
        .expect("services array")
        .iter()
        .map(|service| service["name"].as_str().expect("name"))
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "services are sorted by name");
}

fn count<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut out = BTreeMap::new();
    for item in items {
        *out.entry(item).or_insert(0) += 1;
    }
    out
}

#[test]
fn plan_of_100_services_has_the_planted_distributions() {
    for seed in [42, 1, 2024] {
        let fleet = generate::plan(&FleetSpec {
            seed,
            ..FleetSpec::default()
        });
        assert_distributions(&fleet);
    }
}

fn assert_distributions(fleet: &GeneratedFleet) {
    let truth = &fleet.truth;
    let services = &truth.services;
    assert_eq!(services.len(), 100);
    assert_eq!(truth.services_count, 100);

    let base_pinning = count(services.iter().map(|s| s.base_pinning));
    for pinning in [
        Pinning::Digest,
        Pinning::Tag,
        Pinning::Latest,
        Pinning::Untagged,
    ] {
        assert!(
            base_pinning.contains_key(&pinning),
            "base pinning {pinning:?} missing"
        );
    }
    assert!(
        base_pinning[&Pinning::Digest] >= 70,
        "most bases pinned by digest"
    );
    assert!(services.iter().any(|s| !s.base_registry_approved));
    let image_pinning = count(services.iter().map(|s| s.image_pinning));
    for pinning in [Pinning::Digest, Pinning::Tag, Pinning::Latest] {
        assert!(
            image_pinning.contains_key(&pinning),
            "image pinning {pinning:?} missing"
        );
    }

    let kinds = count(services.iter().map(|s| s.template.kind));
    let gitlab = kinds
        .get(&TemplateKind::GitlabProject)
        .copied()
        .unwrap_or(0)
        + kinds
            .get(&TemplateKind::GitlabComponent)
            .copied()
            .unwrap_or(0);
    let github = kinds
        .get(&TemplateKind::GithubWorkflow)
        .copied()
        .unwrap_or(0);
    assert!(
        gitlab > github && github > 0,
        "both CI kinds, GitLab the majority"
    );
    assert!(kinds.contains_key(&TemplateKind::GitlabComponent));
    assert_eq!(truth.template_pins.values().sum::<usize>(), 100);
    assert!(
        truth
            .template_pins
            .keys()
            .any(|version| version.starts_with("v0.")),
        "at least one straggler on v0.x"
    );

    assert!(services.iter().any(|s| s.breaks_on_v2));
    assert!(services.iter().any(|s| !s.breaks_on_v2));
    for service in services {
        assert_eq!(service.breaks_on_v2, !service.v2_break_reasons.is_empty());
    }

    let teams = count(services.iter().map(|s| s.owner.as_str()));
    assert!((8..=12).contains(&teams.len()), "{} teams", teams.len());
    let tiers = count(services.iter().map(|s| s.tier));
    assert_eq!(tiers.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);

    let layers: BTreeMap<&str, Layer> = services
        .iter()
        .map(|s| (s.name.as_str(), s.layer))
        .collect();
    for service in services {
        assert!(service.layer == Layer::Data || !service.depends_on.is_empty());
        assert!(service.depends_on.len() <= 4);
        for dep in &service.depends_on {
            let dep_layer = layers.get(dep.as_str()).expect("dependency exists");
            // Downward, except the domain services that call each other (the core flow).
            assert!(
                dep_layer.rank() > service.layer.rank()
                    || (service.layer == Layer::Domain && *dep_layer == Layer::Domain),
                "{} -> {dep} is not downward",
                service.name
            );
        }
        for dep in &service.env_dependencies {
            assert!(service.depends_on.contains(dep));
        }
        for dep in &service.unresolved_dependencies {
            assert!(!layers.contains_key(dep.as_str()), "{dep} must not exist");
        }
    }
    let unresolved: usize = services
        .iter()
        .map(|s| s.unresolved_dependencies.len())
        .sum();
    assert!((2..=3).contains(&unresolved));

    let public = services.iter().filter(|s| !s.routes.is_empty());
    assert!(
        public
            .clone()
            .all(|s| matches!(s.layer, Layer::Edge | Layer::Bff))
    );
    assert_eq!(
        public.count(),
        services
            .iter()
            .filter(|s| matches!(s.layer, Layer::Edge | Layer::Bff))
            .count()
    );

    // Exactly one OS base carries a CRITICAL finding, and it is the one the truth names.
    let os_names: BTreeSet<String> = truth
        .base_images
        .iter()
        .filter(|image| image.dockerfile.starts_with("os/"))
        .map(|image| image.name.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    let critical_os: Vec<&String> = os_names
        .iter()
        .filter(|name| {
            let report = fleet
                .files
                .iter()
                .find(|file| file.path == format!("reports/trivy/{name}.json"))
                .expect("report per OS base");
            report.content.contains("\"Severity\": \"CRITICAL\"")
        })
        .collect();
    assert_eq!(critical_os.len(), 1);
    assert!(
        truth
            .critical_cve
            .os_base
            .ends_with(critical_os[0].as_str())
    );
    let affected: Vec<&String> = services
        .iter()
        .filter(|s| s.critical_cve)
        .map(|s| &s.name)
        .collect();
    assert!(!affected.is_empty() && affected.len() < 100);
    assert_eq!(
        affected,
        truth.critical_cve.services.iter().collect::<Vec<_>>()
    );
}

/// The truth of one service must be readable from the files it was planted in.
fn check_service_files(fleet: &GeneratedFleet, service: &ServiceTruth) {
    let repo = fleet
        .repos
        .iter()
        .find(|repo| repo.path == service.repo)
        .expect("repo per service");
    let file = |path: &str| -> &str {
        repo.commits[0]
            .files
            .iter()
            .find(|file| file.path == path)
            .map(|file| file.content.as_str())
            .unwrap_or_else(|| panic!("{} has no {path}", service.name))
    };
    let dockerfile = file("Dockerfile");
    assert!(
        dockerfile.contains(&service.base_image),
        "{}: base image",
        service.name
    );
    let manifests = file("deploy/k8s.yaml");
    for image in &service.images {
        assert!(
            manifests.contains(&format!("image: {image}\n")),
            "{}: image",
            service.name
        );
    }
    for dep in service
        .env_dependencies
        .iter()
        .chain(&service.unresolved_dependencies)
    {
        assert!(
            manifests.contains(&format!("value: http://{dep}:8080/"))
                || manifests.contains(&format!("value: {dep}:9090"))
                || manifests.contains(&format!("value: {dep}."))
        );
    }
    let ci = file(&service.ci_file);
    assert!(
        ci.contains(&service.template.version),
        "{}: template version",
        service.name
    );
    for (name, value) in &service.template.inputs {
        let value = serde_json::to_value(value).expect("input value");
        let written = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        assert!(
            ci.contains(&format!("{name}: {written}\n")),
            "{}: input {name}",
            service.name
        );
    }
    let catalog = file("catalog-info.yaml");
    assert!(catalog.contains(&format!("owner: group:{}\n", service.owner)));
    for dep in &service.depends_on {
        assert!(catalog.contains(&format!("- component:{dep}\n")));
    }
}

#[test]
fn ground_truth_matches_the_generated_files() {
    let fleet = generate::plan(&spec(60, 11, true));
    for service in &fleet.truth.services {
        check_service_files(&fleet, service);
    }
}

#[test]
fn ci_templates_repo_has_every_release_tag() {
    let dir = TempDir::new("tags");
    generate::write_fleet(dir.path(), &spec(2, 1, true)).expect("fleet");
    let repo = dir.path().join("ci-templates");
    let tags: BTreeSet<String> = git(&repo, &["tag"]).lines().map(str::to_owned).collect();
    let expected: BTreeSet<String> = [
        "v0.8.0", "v0.9.0", "v1.0.0", "v1.1.0", "v1.2.0", "v1.3.0", "v1.4.0", "v1.4.1", "v1.4.2",
        "v2.0.0",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(tags, expected);
    assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]).trim(), "10");
    // Old tags show old inputs: image_name exists at v1.3.0 and is gone at v2.0.0.
    let v13 = git(&repo, &["show", "v1.3.0:templates/build.yml"]);
    let v2 = git(&repo, &["show", "v2.0.0:templates/build.yml"]);
    assert!(v13.contains("    image_name:\n") && !v2.contains("    image_name:\n"));
    assert!(git(&repo, &["cat-file", "-t", "v1.0.0"]).trim() == "tag");
    assert!(git(&repo, &["cat-file", "-t", "v0.8.0"]).trim() == "commit");
}

#[test]
fn trivy_reports_are_schema_version_2() {
    let dir = TempDir::new("trivy");
    generate::write_fleet(dir.path(), &spec(5, 2, false)).expect("fleet");
    let reports = dir.path().join("reports/trivy");
    let mut seen = 0;
    for entry in fs::read_dir(&reports).expect("reports dir") {
        let path = entry.expect("entry").path();
        let report: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).expect("read report")).expect("report is JSON");
        assert_eq!(report["SchemaVersion"], 2, "{}", path.display());
        assert_eq!(report["ArtifactType"], "container_image");
        assert!(
            report["Metadata"]["ImageID"]
                .as_str()
                .is_some_and(|id| id.starts_with("sha256:"))
        );
        assert!(
            report["Metadata"]["RepoDigests"][0]
                .as_str()
                .is_some_and(|d| d.contains("@sha256:"))
        );
        for result in report["Results"].as_array().expect("results") {
            assert!(result["Target"].is_string() && result["Class"].is_string());
            for vuln in result["Vulnerabilities"]
                .as_array()
                .expect("vulnerabilities")
            {
                for key in [
                    "VulnerabilityID",
                    "PkgName",
                    "InstalledVersion",
                    "Severity",
                    "Title",
                ] {
                    assert!(vuln[key].is_string(), "{key} in {}", path.display());
                }
                assert!(vuln["Layer"]["DiffID"].is_string());
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 8, "one report per base image");
}

#[test]
fn refuses_a_non_empty_target() {
    let dir = TempDir::new("non-empty");
    fs::create_dir_all(dir.path()).expect("create dir");
    fs::write(dir.path().join("keep.txt"), "mine").expect("seed file");
    let error = generate::write_fleet(dir.path(), &spec(3, 1, false)).expect_err("must refuse");
    assert!(matches!(error, LabError::NotEmpty { .. }), "{error}");
    assert!(error.to_string().contains("not empty"));
    assert_eq!(
        fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "nothing written"
    );
}
