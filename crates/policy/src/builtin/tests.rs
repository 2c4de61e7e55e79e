//! Every built-in rule, with passing and failing inputs.

use crate::builtin::{BundleConfig, TemplateWindow};
use crate::{Level, Policies};
use model::{Fleet, Owner, Provenance, Service, TemplateKind, TemplateRef, Tier};

fn config() -> BundleConfig {
    BundleConfig {
        approved_base_prefixes: vec!["registry.acme.internal/base/".into()],
        allowed_registries: vec![
            "registry.acme.internal/apps/".into(),
            "docker.io/library".into(),
        ],
        templates: Some(TemplateWindow {
            latest: "v3.1.0".into(),
            window: 1,
            sources: vec!["platform/ci-templates".into()],
        }),
        version_label: None,
    }
}

/// Checks a manifest with the bundle; `expect` lists `level rule line` for every finding.
fn check(manifest: &str, expect: &[&str]) {
    let mut policies = Policies::new()
        .with_builtin(&config())
        .expect("bundle loads");
    let outcome = policies.check_manifest_file("k8s.yaml", manifest);
    assert!(outcome.diagnostics.is_empty(), "{:?}", outcome.diagnostics);
    let mut got: Vec<String> = outcome
        .findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {}",
                f.level,
                f.policy.trim_start_matches("builtin/"),
                f.at.as_ref().map_or(0, |a| a.line)
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "findings: {:#?}", outcome.findings);
}

fn deployment(image: &str, limits: bool) -> String {
    let limits = if limits {
        "\n          resources:\n            limits:\n              memory: 128Mi"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders\n  namespace: shop\nspec:\n  template:\n    metadata:\n      labels:\n        app: orders\n    spec:\n      containers:\n        - name: app\n          image: {image}{limits}\n"
    )
}

const DIGEST: &str = "@sha256:4f5c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a";

#[test]
fn pinned_image_from_an_allowed_registry_passes() {
    check(
        &deployment(
            &format!("registry.acme.internal/apps/orders:1.2.3{DIGEST}"),
            true,
        ),
        &[],
    );
}

#[test]
fn latest_and_missing_tags_are_denied_on_the_image_line() {
    check(
        &deployment("registry.acme.internal/apps/orders:latest", true),
        &["deny image-tag 14", "warn image-digest 14"],
    );
    check(
        &deployment("registry.acme.internal/apps/orders", true),
        &["deny image-tag 14", "warn image-digest 14"],
    );
    // A digest pins even an image tagged latest.
    check(
        &deployment(
            &format!("registry.acme.internal/apps/orders:latest{DIGEST}"),
            true,
        ),
        &[],
    );
}

#[test]
fn a_tag_without_digest_only_warns() {
    check(
        &deployment("registry.acme.internal/apps/orders:1.2.3", true),
        &["warn image-digest 14"],
    );
}

#[test]
fn registry_prefixes_compare_whole_path_components() {
    for evil in [
        "registry.acme.internal/apps-evil/orders",
        "registry.acme.internal.evil.com/apps/orders",
        "registry.acme.internal/appsorders",
        "evil.com/registry.acme.internal/apps/orders",
    ] {
        check(
            &deployment(&format!("{evil}:1.0{DIGEST}"), true),
            &["deny allowed-registries 14"],
        );
    }
    // `nginx` is docker.io/library/nginx, which is allowed; `someone/nginx` is not.
    check(&deployment(&format!("nginx:1.27{DIGEST}"), true), &[]);
    check(
        &deployment(&format!("someone/nginx:1.27{DIGEST}"), true),
        &["deny allowed-registries 14"],
    );
    check(
        &deployment(
            &format!("registry.acme.internal/apps/team/orders:1{DIGEST}"),
            true,
        ),
        &[],
    );
}

#[test]
fn image_references_are_read_the_way_docker_reads_them() {
    // (image, findings on its line 14); allowed: `registry.acme.internal/apps/`, `docker.io/library`.
    let cases = [
        // Docker Hub, spelled every way.
        (format!("busybox:1{DIGEST}"), vec![]),
        (format!("library/busybox:1{DIGEST}"), vec![]),
        (format!("docker.io/library/busybox:1{DIGEST}"), vec![]),
        (format!("index.docker.io/library/busybox:1{DIGEST}"), vec![]),
        (format!("INDEX.DOCKER.IO/library/busybox:1{DIGEST}"), vec![]),
        (format!("docker.io/busybox:1{DIGEST}"), vec![]),
        (format!("index.docker.io/busybox:1{DIGEST}"), vec![]),
        (
            format!("docker.io/someone/busybox:1{DIGEST}"),
            vec!["deny allowed-registries 14"],
        ),
        // The registry is lowered, the repository is not.
        (
            format!("Registry.ACME.internal/apps/orders:1{DIGEST}"),
            vec![],
        ),
        (
            format!("registry.acme.internal/Apps/orders:1{DIGEST}"),
            vec!["deny allowed-registries 14"],
        ),
        // A port or localhost names a registry; "LOCALHOST" is a Docker Hub user.
        (
            format!("localhost:5000/apps/orders:1{DIGEST}"),
            vec!["deny allowed-registries 14"],
        ),
        (
            format!("localhost/apps/orders:1{DIGEST}"),
            vec!["deny allowed-registries 14"],
        ),
        (
            format!("LOCALHOST/orders:1{DIGEST}"),
            vec!["deny allowed-registries 14"],
        ),
        (
            "registry.acme.internal:5000/apps/orders:1".to_string(),
            vec!["deny allowed-registries 14", "warn image-digest 14"],
        ),
        // A digest without a tag pins; an empty digest does not.
        (
            format!("registry.acme.internal/apps/orders{DIGEST}"),
            vec![],
        ),
        (
            "registry.acme.internal/apps/orders@".to_string(),
            vec!["deny image-tag 14", "warn image-digest 14"],
        ),
        // Tags are case-sensitive: only `latest` floats.
        (
            "registry.acme.internal/apps/orders:LATEST".to_string(),
            vec!["warn image-digest 14"],
        ),
        (
            "'registry.acme.internal/apps/orders:'".to_string(),
            vec!["deny image-tag 14", "warn image-digest 14"],
        ),
    ];
    for (image, expect) in cases {
        check(&deployment(&image, true), &expect);
    }
}

#[test]
fn init_and_ephemeral_containers_need_pinned_images_but_no_limits() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: debug\nspec:\n  initContainers:\n    - name: init\n      image: registry.acme.internal/apps/init:latest\n  containers:\n    - name: app\n      image: registry.acme.internal/apps/app:1\n  ephemeralContainers:\n    - name: shell\n      image: registry.acme.internal/apps/shell\n";
    check(
        pod,
        &[
            "deny image-tag 8",
            "warn image-digest 8",
            "deny container-limits 10",
            "warn image-digest 11",
            "deny image-tag 14",
            "warn image-digest 14",
        ],
    );
}

#[test]
fn messages_name_the_object_the_container_and_the_image() {
    let mut policies = Policies::new().with_builtin(&config()).expect("bundle");
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: evil.com/orders\n        - image: nginx:latest\n          resources: {limits: {cpu: 1}}\n";
    let outcome = policies.check_manifest_file("k.yaml", manifest);
    let mut got: Vec<String> = outcome
        .findings
        .iter()
        .map(|f| format!("{} {}: {}", f.level, f.policy, f.message))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "deny builtin/allowed-registries: Deployment orders: container app: image evil.com/orders is not from an allowed registry (registry.acme.internal/apps/, docker.io/library)",
            "deny builtin/container-limits: Deployment orders: container app has no resource limits (resources.limits.cpu or memory)",
            "deny builtin/image-tag: Deployment orders: container ?: image nginx:latest floats on latest (explicit :latest tag); pin a version",
            "deny builtin/image-tag: Deployment orders: container app: image evil.com/orders floats on latest (no tag); pin a version",
            "warn builtin/image-digest: Deployment orders: container ?: image nginx:latest is not pinned by digest",
            "warn builtin/image-digest: Deployment orders: container app: image evil.com/orders is not pinned by digest",
        ]
    );
}

#[test]
fn containers_without_limits_are_denied() {
    check(
        &deployment(
            &format!("registry.acme.internal/apps/orders:1{DIGEST}"),
            false,
        ),
        &["deny container-limits 13"],
    );
}

#[test]
fn cronjob_and_pod_containers_are_found() {
    let cron = format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: nightly\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n            - name: job\n              image: registry.acme.internal/apps/job:latest\n              resources: {{limits: {{cpu: 1}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: debug\nspec:\n  containers:\n    - name: sh\n      image: busybox:1.36{DIGEST}\n"
    );
    check(
        &cron,
        &[
            "deny image-tag 12",
            "warn image-digest 12",
            "deny container-limits 21",
        ],
    );
}

const BLUE_GREEN: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: orders-blue\nspec:\n  template:\n    metadata:\n      labels: {app: orders, version: blue}\n    spec:\n      containers: []\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: orders\nspec:\n  selector:\n    app: orders\n";

#[test]
fn blue_green_service_selector_needs_the_version_label() {
    check(BLUE_GREEN, &["deny blue-green-selector 17"]);
    check(
        &BLUE_GREEN.replace("    app: orders\n", "    app: orders\n    version: blue\n"),
        &[],
    );
    // Not a blue-green service: no pool carries a version label.
    check(&BLUE_GREEN.replace(", version: blue", ""), &[]);
    // Declared blue-green by annotation, alone in its file.
    let annotated = "apiVersion: v1\nkind: Service\nmetadata:\n  name: pay\n  annotations:\n    bulkhead.io/strategy: blue-green\nspec:\n  selector: {app: pay}\n";
    check(annotated, &["deny blue-green-selector 8"]);
}

fn service_fleet(base: &str, owner: bool, tier: bool, version: Option<&str>) -> (Fleet, Service) {
    let dockerfile = scan::dockerfile::parse(
        "svc/orders/Dockerfile",
        &format!(
            "FROM golang:1.22 AS build\nRUN go build\nFROM {base}\nCOPY --from=build /app /app\n"
        ),
    );
    let fleet = Fleet {
        dockerfiles: dockerfile.dockerfiles,
        ..Fleet::default()
    };
    let base_ref = fleet.dockerfiles[0].final_base().cloned().expect("base");
    let service = Service {
        name: "orders".into(),
        repo: Some("svc/orders".into()),
        owner: owner.then(|| Owner("team-a".into())),
        tier: tier.then_some(Tier(2)),
        base_images: vec![base_ref],
        templates: vec![TemplateRef {
            kind: TemplateKind::GitlabProject,
            source: "platform/ci-templates".into(),
            file: Some("build.yml".into()),
            version: version.map(str::to_string),
            inputs: Default::default(),
            job: None,
            uses: Vec::new(),
            at: Provenance::new("svc/orders/.gitlab-ci.yml", 3),
        }],
        declared_at: vec![Provenance::new("svc/orders/catalog-info.yaml", 1)],
        ..Service::default()
    };
    (fleet, service)
}

fn check_service(base: &str, owner: bool, tier: bool, version: Option<&str>, expect: &[&str]) {
    let (fleet, service) = service_fleet(base, owner, tier, version);
    let mut policies = Policies::new()
        .with_builtin(&config())
        .expect("bundle loads");
    let outcome = policies.check_service(&fleet, &service);
    assert!(outcome.diagnostics.is_empty(), "{:?}", outcome.diagnostics);
    let mut got: Vec<String> = outcome
        .findings
        .iter()
        .map(|f| {
            let at = f.at.as_ref().map_or("-".to_string(), ToString::to_string);
            format!(
                "{} {} {at}",
                f.level,
                f.policy.trim_start_matches("builtin/")
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "{:#?}", outcome.findings);
}

#[test]
fn approved_pinned_base_with_catalog_and_supported_template_passes() {
    check_service(
        &format!("registry.acme.internal/base/go:1.22{DIGEST}"),
        true,
        true,
        Some("v2.4.0"),
        &[],
    );
}

#[test]
fn base_image_rules_point_at_the_from_line() {
    check_service(
        "registry.acme.internal/base-evil/go:latest",
        true,
        true,
        Some("v3.0.0"),
        &[
            "deny approved-base svc/orders/Dockerfile:3",
            "deny image-tag svc/orders/Dockerfile:3",
            "warn image-digest svc/orders/Dockerfile:3",
        ],
    );
}

#[test]
fn catalog_metadata_is_required() {
    check_service(
        &format!("registry.acme.internal/base/go:1.22{DIGEST}"),
        false,
        false,
        Some("v3.1.0"),
        &[
            "deny catalog-metadata svc/orders/catalog-info.yaml:1",
            "deny catalog-metadata svc/orders/catalog-info.yaml:1",
        ],
    );
}

#[test]
fn template_pins_outside_the_window_are_denied() {
    let base = format!("registry.acme.internal/base/go:1.22{DIGEST}");
    check_service(
        &base,
        true,
        true,
        Some("v1.9.0"),
        &["deny template-window svc/orders/.gitlab-ci.yml:3"],
    );
    check_service(&base, true, true, Some("2.0.0"), &[]);
    check_service(
        &base,
        true,
        true,
        Some("main"),
        &["warn template-window svc/orders/.gitlab-ci.yml:3"],
    );
    check_service(
        &base,
        true,
        true,
        None,
        &["warn template-window svc/orders/.gitlab-ci.yml:3"],
    );
}

#[test]
fn rules_are_off_without_configuration() {
    let mut policies = Policies::new()
        .with_builtin(&BundleConfig::default())
        .expect("bundle");
    let outcome = policies.check_manifest_file(
        "k.yaml",
        &deployment(&format!("evil.com/x:1{DIGEST}"), true),
    );
    assert_eq!(outcome.findings, vec![]);
}

#[test]
fn findings_levels_are_typed() {
    let mut policies = Policies::new().with_builtin(&config()).expect("bundle");
    let outcome = policies.check_manifest_file(
        "k.yaml",
        &deployment("registry.acme.internal/apps/o:1", true),
    );
    assert_eq!(outcome.findings[0].level, Level::Warn);
    assert_eq!(
        outcome.findings[0].image.as_deref(),
        Some("registry.acme.internal/apps/o:1")
    );
}

/// Image and prefix pairs, with whether the image lies under the prefix.
const UNDER: &[(&str, &str, bool)] = &[
    // Docker Hub, the image spelled every way, the prefix too.
    ("busybox", "docker.io/library", true),
    ("docker.io/busybox", "docker.io/library", true),
    ("docker.io/busybox", "docker.io/library/busybox", true),
    ("index.docker.io/busybox", "docker.io/library/", true),
    ("busybox:1.36", "docker.io/busybox", true),
    ("library/busybox", "index.docker.io/busybox", true),
    ("busybox", "busybox", true),
    ("busybox", "docker.io", true),
    ("docker.io/library/busybox", "index.docker.io", true),
    ("busyboxer", "docker.io/busybox", false),
    ("someone/busybox", "docker.io/busybox", false),
    ("someone/busybox", "docker.io/library", false),
    // One Docker Hub component is also a namespace.
    ("bitnami/redis", "docker.io/bitnami", true),
    ("docker.io/bitnami/redis", "bitnami/", true),
    ("bitnami", "bitnami", true),
    // Other registries: whole components, no Docker Hub reading.
    ("registry.acme/base/go", "registry.acme/base/", true),
    ("registry.acme/base/go", "registry.acme/base", true),
    ("registry.acme/base", "registry.acme/base/", true),
    ("registry.acme/base-evil/go", "registry.acme/base/", false),
    (
        "registry.acme.evil.com/base/go",
        "registry.acme/base/",
        false,
    ),
    ("registry.acme/go", "registry.acme/library/go", false),
    ("registry.acme/go", "registry.acme", true),
    ("localhost:5000/app", "localhost:5000", true),
    ("localhost/app", "localhost/", true),
    ("localhost/app", "docker.io/localhost", false),
];

#[test]
fn image_prefixes_read_as_docker_reads_names_as_the_model_does() {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy(
            "images.rego".to_string(),
            include_str!("../../rego/images.rego").to_string(),
        )
        .expect("images.rego compiles");
    let mut wrong = Vec::new();
    for &(image, prefix, expect) in UNDER {
        engine.set_input(regorus::Value::from(serde_json::json!({
            "image": image,
            "prefix": prefix,
        })));
        let rego = engine
            .eval_bool_query(
                "count({1 | data.bulkhead.lib.images.under_any(data.bulkhead.lib.images.parse(input.image).name, [input.prefix])}) == 1"
                    .to_string(),
                false,
            )
            .expect("query evaluates");
        let model = model::ImageRef::parse(image)
            .expect("a valid reference")
            .is_under(prefix);
        if (rego, model) != (expect, expect) {
            wrong.push(format!(
                "{image} under {prefix}: want {expect}, Rego {rego}, model {model}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn docker_hub_names_normalise_in_the_bundle_rules() {
    let mut policies = Policies::new()
        .with_builtin(&BundleConfig {
            allowed_registries: vec!["docker.io/busybox".into()],
            ..config()
        })
        .expect("bundle loads");
    for (image, findings) in [
        (format!("busybox:1{DIGEST}"), 0),
        (format!("index.docker.io/library/busybox:1{DIGEST}"), 0),
        (format!("docker.io/nginx:1{DIGEST}"), 1),
    ] {
        let outcome = policies.check_manifest_file("k.yaml", &deployment(&image, true));
        assert_eq!(outcome.findings.len(), findings, "{image}: {outcome:?}");
    }
}

/// The indexed service inputs equal the plain reading of the rule: every
/// Dockerfile under the service's repo (every one for a service without a
/// repo) whose final base the service builds on, in the fleet's order.
#[test]
fn service_inputs_index_finds_what_a_scan_of_every_dockerfile_finds() {
    let files = [
        ("a/Dockerfile", "FROM alpine:3.19\n"),
        ("a/b/Dockerfile", "FROM busybox:1\n"),
        ("a/b/c/Dockerfile", "FROM alpine:3.19 AS x\nFROM x\n"),
        ("ab/Dockerfile", "FROM alpine:3.19\n"),
        ("a-b/Dockerfile", "FROM busybox:1\n"),
        ("z/Dockerfile", "FROM scratch\n"),
    ];
    let mut fleet = Fleet::default();
    for (path, text) in files {
        fleet
            .dockerfiles
            .extend(scan::dockerfile::parse(path, text).dockerfiles);
    }
    let bases: Vec<_> = fleet
        .dockerfiles
        .iter()
        .filter_map(|d| d.final_base().cloned())
        .collect();
    let plain = |service: &Service| -> Vec<String> {
        let under = |path: &str| match service.repo.as_deref() {
            None | Some("") => true,
            Some(repo) => path.strip_prefix(repo).is_some_and(|r| r.starts_with('/')),
        };
        fleet
            .dockerfiles
            .iter()
            .filter(|d| under(&d.path))
            .filter_map(|d| Some((d, d.final_base()?)))
            .filter(|(_, b)| service.base_images.contains(b))
            .map(|(d, b)| format!("{} {b}", d.path))
            .collect()
    };
    let inputs = crate::ServiceInputs::new(&fleet);
    let mut checked = 0;
    for repo in [
        None,
        Some(""),
        Some("a"),
        Some("a/b"),
        Some("ab"),
        Some("a/"),
        Some("q"),
    ] {
        for images in [bases.clone(), bases[..1].to_vec(), Vec::new()] {
            let service = Service {
                name: "s".into(),
                repo: repo.map(str::to_string),
                base_images: images,
                ..Service::default()
            };
            let input = inputs.of(&service);
            let got: Vec<String> = input["base_images"]
                .as_array()
                .expect("a list")
                .iter()
                .map(|b| {
                    format!(
                        "{} {}",
                        b["at"]["path"].as_str().unwrap_or("?"),
                        b["image"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            assert_eq!(got, plain(&service), "repo {repo:?}");
            assert_eq!(
                input["service"],
                serde_json::to_value(&service).expect("json")
            );
            checked += got.len();
        }
    }
    assert!(checked > 10, "the table exercises matches, not only misses");
}

#[test]
fn release_versions_read_as_the_semver_pattern_reads_them() {
    let mut engine = regorus::Engine::new();
    for (name, text) in crate::builtin::SOURCES {
        engine
            .add_policy((*name).to_string(), (*text).to_string())
            .expect("the bundle compiles");
    }
    let versions = [
        "v1.2.3",
        "1.2.3",
        "v10.20.30",
        "0.0.0",
        "v01.002.0003",
        "v1.2",
        "1.2.3.4",
        "1.2.3.",
        ".1.2.3",
        "vv1.2.3",
        "V1.2.3",
        "v1..3",
        "v1.2.3-rc1",
        "v1.2.3\n",
        " 1.2.3",
        "1.2.3 ",
        "v",
        "",
        "1.2.x",
        "+1.2.3",
        "-1.2.3",
        "1e3.2.3",
        "\u{0661}.2.3",
        "main",
        "v1.2.3v",
    ];
    let query = |q: &str| format!("count({{1 | {q}}}) == 1");
    let mut wrong = Vec::new();
    let mut releases = Vec::new();
    for version in versions {
        engine.set_input(regorus::Value::from(serde_json::json!({ "v": version })));
        let mut eval = |q: &str| {
            engine
                .eval_bool_query(query(q), false)
                .expect("query evaluates")
        };
        let released = eval("data.bulkhead.service.released(input.v)");
        let pattern = eval(r"regex.match(`^v?[0-9]+\.[0-9]+\.[0-9]+$`, input.v)");
        if released {
            releases.push(version);
        }
        if released != pattern {
            wrong.push(format!(
                "{version:?}: released {released}, pattern {pattern}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        releases,
        ["v1.2.3", "1.2.3", "v10.20.30", "0.0.0", "v01.002.0003"]
    );
}
