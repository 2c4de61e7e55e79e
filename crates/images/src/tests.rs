use crate::catalog::{Catalog, ParentVia};
use crate::reports::{self, ReportFormat, ScanReport, Severity};
use crate::{cluster, upgrade};
use model::{Diagnostic, ImageRef, Provenance, Stage, StageBase};
use std::collections::BTreeMap;

fn fixture(name: &str) -> String {
    test_support::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/trivy")
            .join(name),
    )
}

fn counts(report: &ScanReport) -> BTreeMap<String, usize> {
    report
        .counts()
        .into_iter()
        .map(|(s, n)| (s.to_string(), n))
        .collect()
}

/// Parses a shared Trivy fixture and checks its counts per severity.
fn check_trivy(name: &str, expected: &[(&str, usize)]) -> ScanReport {
    let (report, diagnostics) = reports::trivy(name, &fixture(name));
    assert!(diagnostics.is_empty(), "{name}: {diagnostics:?}");
    let expected: BTreeMap<String, usize> =
        expected.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    assert_eq!(counts(&report), expected, "{name}");
    assert!(!report.diff_ids.is_empty(), "{name}: layers");
    for v in &report.vulnerabilities {
        let layer = v.layer.as_deref().expect("every finding has its layer");
        assert!(
            report.diff_ids.iter().any(|d| d == layer),
            "{name}: {layer} is a layer of the image"
        );
        assert!(v.at.line > 1, "{name}: {} has a line", v.id);
    }
    report
}

#[test]
fn every_shared_trivy_report_parses_with_its_counts_per_severity() {
    check_trivy("alpine-310.json", &[("MEDIUM", 4)]);
    check_trivy("centos-7.json", &[("MEDIUM", 1), ("LOW", 2)]);
    let debian = check_trivy("debian-buster.json", &[("CRITICAL", 1), ("LOW", 1)]);
    check_trivy("distroless-base.json", &[("MEDIUM", 2), ("LOW", 2)]);
    let critical: Vec<&str> = debian
        .vulnerabilities
        .iter()
        .filter(|v| v.severity == Severity::Critical)
        .map(|v| v.id.as_str())
        .collect();
    assert_eq!(critical.len(), 1);
    // Finding lines point at the finding's id in the file.
    let text = fixture("debian-buster.json");
    for v in &debian.vulnerabilities {
        let line = text.lines().nth(v.at.line as usize - 1).expect("line");
        assert!(line.contains(&v.id), "{line}");
    }
}

#[test]
fn trivy_vm_report_with_null_lists_reads_its_findings_and_no_image() {
    let name = "amazonlinux2-gp2-x86-vm.json";
    let (report, diagnostics) = reports::trivy(name, &fixture(name));
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(report.artifact, None, "disk.img is no image reference");
    assert!(report.diff_ids.is_empty());
    assert_eq!(report.vulnerabilities.len(), 1);
    let v = &report.vulnerabilities[0];
    assert_eq!(
        (
            v.id.as_str(),
            v.package.as_str(),
            v.severity,
            v.layer.as_deref()
        ),
        ("CVE-2022-21233", "microcode_ctl", Severity::Medium, None)
    );
    assert_eq!(v.fixed.as_deref(), Some("2:2.1-47.amzn2.0.13"));
    assert_eq!(v.at.line, 28);
}

#[test]
fn every_list_and_text_field_of_every_report_format_reads_null_as_empty() {
    let cases: &[(ReportFormat, &str, usize)] = &[
        (
            ReportFormat::Trivy,
            r#"{"SchemaVersion": 2, "ArtifactName": null, "ArtifactType": null, "Metadata": null,
                "Results": [{"Vulnerabilities": null},
                            {"Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": null,
                              "Severity": null, "Layer": null}]}]}"#,
            1,
        ),
        (
            ReportFormat::Trivy,
            r#"{"SchemaVersion": 2, "Metadata": {"DiffIDs": null, "RepoDigests": null,
                "ImageConfig": {"rootfs": null}}, "Results": null}"#,
            0,
        ),
        (
            ReportFormat::CycloneDx,
            r#"{"bomFormat": "CycloneDX", "metadata": {"component": {"name": "x", "properties": null,
                "components": null}}, "components": [{"bom-ref": "c", "name": "curl",
                "properties": null, "components": null}],
                "vulnerabilities": [{"id": "CVE-1", "ratings": null, "affects": [{"ref": "c"}]}]}"#,
            1,
        ),
        (
            ReportFormat::CycloneDx,
            r#"{"bomFormat": "CycloneDX", "components": null, "vulnerabilities": null}"#,
            0,
        ),
        (
            ReportFormat::Grype,
            r#"{"matches": [{"vulnerability": {"id": "CVE-1", "severity": null, "fix": {"versions": null}},
                "artifact": {"name": null, "locations": null}}], "source": {"type": null}}"#,
            1,
        ),
    ];
    for (format, text, findings) in cases {
        let (report, diagnostics) = reports::parse(*format, "r.json", text);
        assert!(
            diagnostics.iter().all(|d| !d.message.contains("null")),
            "{format:?} {text:.40}: {diagnostics:?}"
        );
        assert_eq!(
            report.vulnerabilities.len(),
            *findings,
            "{format:?} {text:.40}"
        );
    }
}

#[test]
fn cyclonedx_fixture_gives_the_image_and_its_layers() {
    let name = "fluentd-multiple-lockfiles.cdx.json";
    let (report, diagnostics) = reports::cyclonedx(name, &fixture(name));
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(
        report.artifact.as_ref().map(ToString::to_string).as_deref(),
        Some("ghcr.io/aquasecurity/trivy-test-images:fluentd-multiple-lockfiles")
    );
    assert_eq!(report.diff_ids.len(), 6);
    assert!(
        report.vulnerabilities.is_empty(),
        "the fixture is an SBOM without VEX"
    );
}

#[test]
fn cyclonedx_vulnerabilities_are_tied_to_the_affected_components_layer() {
    let text = r#"{
  "bomFormat": "CycloneDX", "specVersion": "1.5",
  "metadata": {"component": {"bom-ref": "img", "name": "registry.acme.internal/apps/orders:1.0",
    "properties": [{"name": "aquasecurity:trivy:DiffID", "value": "sha256:aaa"},
                   {"name": "aquasecurity:trivy:DiffID", "value": "sha256:bbb"}]}},
  "components": [
    {"bom-ref": "pkg:deb/debian/curl@7.88.1", "name": "curl", "version": "7.88.1",
     "properties": [{"name": "aquasecurity:trivy:LayerDiffID", "value": "sha256:aaa"}]}
  ],
  "vulnerabilities": [
    {"id": "CVE-2023-38545", "ratings": [{"severity": "critical"}],
     "affects": [{"ref": "pkg:deb/debian/curl@7.88.1"}, {"ref": "pkg:missing"}]}
  ]
}"#;
    let (report, diagnostics) = reports::cyclonedx("sbom.cdx.json", text);
    assert_eq!(report.vulnerabilities.len(), 1);
    let v = &report.vulnerabilities[0];
    assert_eq!(
        (v.package.as_str(), v.severity, v.layer.as_deref()),
        ("curl", Severity::Critical, Some("sha256:aaa"))
    );
    assert_eq!(v.at.line, 11);
    assert_eq!(diagnostics.len(), 1, "the dangling affects ref is reported");
    assert!(diagnostics[0].message.contains("pkg:missing"));
}

#[test]
fn grype_matches_carry_their_layer() {
    let text = r#"{
  "matches": [
    {"vulnerability": {"id": "CVE-2023-38545", "severity": "Critical", "fix": {"versions": ["7.88.1-10+deb12u4"], "state": "fixed"}},
     "artifact": {"name": "curl", "version": "7.88.1-10+deb12u3", "type": "deb",
                  "locations": [{"path": "/var/lib/dpkg/status", "layerID": "sha256:aaa"}]}},
    {"vulnerability": {"id": "GHSA-xxxx", "severity": "Medium"},
     "artifact": {"name": "requests", "version": "2.0", "locations": []}}
  ],
  "source": {"type": "image", "target": {"userInput": "registry.acme.internal/apps/orders:1.0",
    "repoDigests": ["registry.acme.internal/apps/orders@sha256:0000000000000000000000000000000000000000000000000000000000000000"],
    "layers": [{"digest": "sha256:aaa"}, {"digest": "sha256:bbb"}]}},
  "descriptor": {"name": "grype", "version": "0.80.0"}
}"#;
    let (report, diagnostics) = reports::grype("grype.json", text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(
        report.image_name().as_deref(),
        Some("registry.acme.internal/apps/orders")
    );
    assert_eq!(report.diff_ids, vec!["sha256:aaa", "sha256:bbb"]);
    assert_eq!(report.digests().len(), 1);
    let v = &report.vulnerabilities[0];
    assert_eq!(
        (
            v.id.as_str(),
            v.severity,
            v.layer.as_deref(),
            v.fixed.as_deref()
        ),
        (
            "CVE-2023-38545",
            Severity::Critical,
            Some("sha256:aaa"),
            Some("7.88.1-10+deb12u4")
        )
    );
    assert_eq!(v.at.line, 3);
    assert_eq!(report.vulnerabilities[1].layer, None);
}

/// Bad input: every parser answers with a diagnostic, never a panic.
#[test]
fn malformed_reports_are_diagnostics_with_a_line() {
    let truncated = &fixture("alpine-310.json")[..2000];
    for format in [
        ReportFormat::Trivy,
        ReportFormat::CycloneDx,
        ReportFormat::Grype,
    ] {
        for (text, line) in [
            (truncated, None),
            ("", Some(1)),
            ("[1,2]", Some(1)),
            ("{\"Results\": 5}", Some(1)),
        ] {
            let (report, diagnostics) = reports::parse(format, "r.json", text);
            assert!(report.vulnerabilities.is_empty());
            let errors: Vec<&Diagnostic> = diagnostics
                .iter()
                .filter(|d| {
                    d.severity == model::Severity::Error || d.severity == model::Severity::Warning
                })
                .collect();
            assert!(!errors.is_empty(), "{format:?} {text:.20}: {diagnostics:?}");
            if let Some(line) = line {
                assert!(errors.iter().all(|d| d.line.is_none_or(|l| l >= line)));
            }
        }
    }
    let (_, diagnostics) = reports::trivy("r.json", truncated);
    assert!(
        diagnostics[0].line.is_some_and(|l| l > 10),
        "{diagnostics:?}"
    );
    // Unknown fields and an unknown schema version are read anyway.
    let (report, diagnostics) = reports::trivy(
        "r.json",
        r#"{"SchemaVersion": 3, "Shiny": {"new": true}, "ArtifactName": "nginx:1.27",
            "Results": [{"Vulnerabilities": [{"VulnerabilityID": "CVE-1", "Severity": "HIGH", "Extra": 1}]}]}"#,
    );
    assert_eq!(report.vulnerabilities.len(), 1);
    assert_eq!(
        report.image_name().as_deref(),
        Some("docker.io/library/nginx")
    );
    assert!(diagnostics[0].message.contains("SchemaVersion 3"));
    // An artefact name with invalid characters is a warning, the findings still count.
    let (report, diagnostics) = reports::trivy(
        "r.json",
        r#"{"SchemaVersion": 2, "ArtifactName": "Bad//Image!", "Results": [{"Vulnerabilities": [{"VulnerabilityID": "CVE-1"}]}]}"#,
    );
    assert_eq!(report.vulnerabilities.len(), 1);
    assert!(
        diagnostics
            .iter()
            .any(|d| d.message.contains("ArtifactName")),
        "{diagnostics:?}"
    );
}

fn report(name: &str, diff_ids: &[&str], vulns: &[(&str, &str)]) -> ScanReport {
    ScanReport {
        path: format!("{name}.json"),
        format: ReportFormat::Trivy,
        artifact: Some(ImageRef::parse(&format!("{name}:1")).expect("ref")),
        source: None,
        repo_digests: Vec::new(),
        packages: Vec::new(),
        diff_ids: diff_ids.iter().map(|s| s.to_string()).collect(),
        vulnerabilities: vulns
            .iter()
            .map(|(id, layer)| reports::Vulnerability {
                id: id.to_string(),
                package: "curl".into(),
                installed: None,
                fixed: None,
                severity: Severity::Critical,
                layer: Some(layer.to_string()),
                at: Provenance::new(format!("{name}.json"), 1),
            })
            .collect(),
    }
}

#[test]
fn lineage_by_diff_ids_prefix_and_the_layer_that_introduced_a_finding() {
    let catalog = Catalog::new(
        Vec::new(),
        &[],
        vec![
            report("r.io/base/os", &["sha256:a"], &[("CVE-1", "sha256:a")]),
            report(
                "r.io/base/lang",
                &["sha256:a", "sha256:b"],
                &[("CVE-1", "sha256:a"), ("CVE-2", "sha256:b")],
            ),
            report(
                "r.io/apps/x",
                &["sha256:a", "sha256:b", "sha256:c"],
                &[("CVE-3", "sha256:c")],
            ),
            report("r.io/other", &["sha256:z", "sha256:a"], &[]),
        ],
    );
    assert_eq!(
        catalog.parent("r.io/base/lang"),
        Some(("r.io/base/os".to_string(), ParentVia::DiffIds))
    );
    let lineage: Vec<String> = catalog
        .lineage("r.io/apps/x")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(lineage, ["r.io/apps/x", "r.io/base/lang", "r.io/base/os"]);
    assert_eq!(
        catalog.parent("r.io/other"),
        None,
        "a prefix must start at the bottom layer"
    );
    assert_eq!(
        catalog.introduced_by("r.io/apps/x", Some("sha256:a")),
        "r.io/base/os"
    );
    assert_eq!(
        catalog.introduced_by("r.io/apps/x", Some("sha256:b")),
        "r.io/base/lang"
    );
    assert_eq!(
        catalog.introduced_by("r.io/apps/x", Some("sha256:c")),
        "r.io/apps/x"
    );
    assert_eq!(
        catalog.descendants("r.io/base/os"),
        ["r.io/apps/x", "r.io/base/lang"]
    );
}

#[test]
fn every_workload_kind_says_which_image_it_runs() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "cache", "namespace": "ops"},
   "spec": {"template": {"spec": {"containers": [{"name": "redis", "image": "redis:7.2"}]}}}},
  {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "kube-system"},
   "spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "r.io/agent:1"}]}}}},
  {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "namespace": "ops"},
   "spec": {"template": {"spec": {"containers": [{"name": "migrate", "image": "r.io/migrate:3"}]}}}},
  {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup", "namespace": "ops"},
   "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "backup", "image": "r.io/backup:1.4"}]}}}}}}
]}"#;
    let (running, diagnostics) = cluster::parse_snapshot("prod.json", "prod", text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let seen: Vec<(&str, &str, &str, u32)> = running
        .iter()
        .map(|r| {
            (
                r.kind.as_str(),
                r.name.as_str(),
                r.image.as_str(),
                r.at.line,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("StatefulSet", "cache", "redis:7.2", 2),
            ("DaemonSet", "agent", "r.io/agent:1", 4),
            ("Job", "migrate", "r.io/migrate:3", 6),
            ("CronJob", "backup", "r.io/backup:1.4", 8),
        ]
    );
}

#[test]
fn kubectl_lists_say_which_digest_runs_where() {
    let text = r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"kind": "Pod", "metadata": {"name": "orders-7d9f-abc", "namespace": "shop", "labels": {"app": "orders"}},
   "status": {"containerStatuses": [{"name": "orders", "image": "registry.acme.internal/apps/orders:1.0",
     "imageID": "docker-pullable://registry.acme.internal/apps/orders@sha256:1111111111111111111111111111111111111111111111111111111111111111"}]}},
  {"kind": "Deployment", "metadata": {"name": "orders", "namespace": "shop", "labels": {"app.kubernetes.io/name": "orders"}},
   "spec": {"template": {"spec": {"containers": [{"name": "orders", "image": "registry.acme.internal/apps/orders:1.0"},
                                                {"name": "bad", "image": "Not A Ref"}]}}}}
]}"#;
    let (running, diagnostics) = cluster::parse_snapshot("prod.json", "prod", text);
    assert_eq!(running.len(), 3);
    assert_eq!(running[0].service, "orders");
    assert_eq!(running[0].digest.as_ref().map(|d| d.hex().len()), Some(64));
    assert_eq!(running[0].at.line, 2);
    assert_eq!(running[1].kind, "Deployment");
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert!(
        cluster::parse_snapshot("x", "c", "{\"items\": [").1[0]
            .line
            .is_some()
    );
    assert_eq!(
        cluster::digest_of_image_id(
            "sha256:22222222222222222222222222222222222222222222222222222222222222222"
        )
        .map(|d| d.to_string()),
        None
    );
}

fn stage(line: u32, written: &str) -> Stage {
    Stage {
        index: 1,
        name: None,
        base: StageBase::Image(ImageRef::parse("r.io/base/go:1").expect("ref")),
        platform: None,
        written: written.to_string(),
        at: Provenance::new("Dockerfile", line),
    }
}

/// Rewrites and checks that only the reference's bytes changed.
fn check_rewrite(text: &str, stage: &Stage, to: &str, expected: &str) {
    let (new, edit) = upgrade::rewrite_from("Dockerfile", text, stage, to).expect("rewrite");
    assert_eq!(new, expected);
    assert_eq!(edit.to, to);
}

#[test]
fn upgrades_rewrite_only_the_reference() {
    let to =
        "r.io/base/go:2@sha256:3333333333333333333333333333333333333333333333333333333333333333";
    check_rewrite(
        "FROM golang AS build\r\nRUN go build\r\n\r\nFROM  --platform=$TARGETPLATFORM r.io/base/go:1   AS run # keep\r\nCOPY . .\n",
        &stage(4, "r.io/base/go:1"),
        to,
        &format!(
            "FROM golang AS build\r\nRUN go build\r\n\r\nFROM  --platform=$TARGETPLATFORM {to}   AS run # keep\r\nCOPY . .\n"
        ),
    );
    check_rewrite(
        "ARG BASE_IMAGE=r.io/base/go:1\nARG OTHER=r.io/base/go:1\nFROM ${BASE_IMAGE}\n",
        &stage(3, "${BASE_IMAGE}"),
        to,
        &format!("ARG BASE_IMAGE={to}\nARG OTHER=r.io/base/go:1\nFROM ${{BASE_IMAGE}}\n"),
    );
    let err = upgrade::rewrite_from(
        "Dockerfile",
        "FROM r.io/base/go:1-rc\n",
        &stage(1, "r.io/base/go:1"),
        to,
    )
    .unwrap_err();
    assert!(err.to_string().contains("not on this line"), "{err}");
    let err = upgrade::rewrite_from(
        "Dockerfile",
        "FROM r.io/base/go:${V}\n",
        &stage(1, "r.io/base/go:${V}"),
        to,
    )
    .unwrap_err();
    assert!(err.to_string().contains("variable"), "{err}");
}

#[test]
fn manifest_image_fields_are_rewritten_in_place_quoted_or_not() {
    let text = "spec:\n  containers:\n    - name: app\n      image: \"reg/a/app:1.0\"   # pinned\n    - name: side\n      image: reg/a/app:1.0\n\r\n";
    let (new, edit) = upgrade::rewrite_image_field(
        "k8s.yaml",
        text,
        3,
        "reg/a/app:1.0",
        "reg/a/app:2.0@sha256:ab",
    )
    .expect("rewrite");
    assert_eq!(edit.line, 4);
    assert_eq!(
        new,
        text.replacen("reg/a/app:1.0", "reg/a/app:2.0@sha256:ab", 1)
    );
    // From the second container's line, the second field.
    let (new, edit) = upgrade::rewrite_image_field("k8s.yaml", text, 5, "reg/a/app:1.0", "x/y:2")
        .expect("rewrite");
    assert_eq!(edit.line, 6);
    assert_eq!(new, text.replace("image: reg/a/app:1.0", "image: x/y:2"));
    // A prefix is not the value.
    let err =
        upgrade::rewrite_image_field("k8s.yaml", text, 1, "reg/a/app:1", "x/y:2").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("k8s.yaml:1: \"reg/a/app:1\" is not on this line"),
        "{err}"
    );
}

#[test]
fn inputs_name_clusters_by_file_stem_and_keep_every_diagnostic() {
    let snapshot = r#"{"kind": "List", "items": [
  {"kind": "Deployment", "metadata": {"name": "orders", "namespace": "shop", "labels": {"app": "orders"}},
   "spec": {"template": {"spec": {"containers": [{"name": "orders", "image": "registry.acme.internal/apps/orders:1.0"}]}}}}
]}"#;
    let files = crate::InputFiles {
        base_catalog: Some((
            crate::TextFile {
                path: crate::inputs::catalog_path("base-images/"),
                text: "[".to_string(),
            },
            "base-images".to_string(),
        )),
        reports: vec![(
            ReportFormat::Trivy,
            crate::TextFile {
                path: "reports/broken.json".to_string(),
                text: "{".to_string(),
            },
        )],
        snapshots: vec![
            crate::Snapshot::saved(crate::TextFile {
                path: "clusters/prod-eu.json".to_string(),
                text: snapshot.to_string(),
            }),
            crate::Snapshot::live(
                "arn:aws:eks:eu-west-1:1:cluster/prod.eu",
                snapshot.to_string(),
            ),
        ],
        diagnostics: vec![Diagnostic::error(
            "reports/gone.json",
            None,
            "reading: gone",
        )],
    };
    let inputs = crate::inputs::parse(&files, &[]);
    assert_eq!(inputs.running.len(), 2);
    assert_eq!(inputs.running[0].cluster, "prod-eu");
    assert_eq!(inputs.running[0].at.path, "clusters/prod-eu.json");
    // A live read is named by its context, whatever characters that holds.
    assert_eq!(
        inputs.running[1].cluster,
        "arn:aws:eks:eu-west-1:1:cluster/prod.eu"
    );
    assert_eq!(
        inputs.running[1].at.to_string(),
        "live:arn:aws:eks:eu-west-1:1:cluster/prod.eu:2"
    );
    let paths: Vec<&str> = inputs.diagnostics.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "reports/gone.json",
            "base-images/images.json",
            "reports/broken.json"
        ]
    );
    assert!(inputs.diagnostics[1..].iter().all(|d| d.line.is_some()));
}

/// A source report (`trivy repo`, `trivy fs`) reaches the service whose
/// repository it scanned, named by path or by remote URL.
#[test]
fn source_reports_reach_the_service_built_from_the_scanned_repository() {
    use crate::cve::{self, CveQuery};
    use model::{Fleet, Service};
    // Sorted by name, as an assembled fleet's are.
    let fleet = Fleet {
        services: [
            ("billing", "billing"),
            ("pom", "services/pom"),
            ("web", "web"),
        ]
        .iter()
        .map(|(name, repo)| Service {
            name: name.to_string(),
            repo: Some(repo.to_string()),
            ..Service::default()
        })
        .collect(),
        ..Fleet::default()
    };
    let (pom, diagnostics) = reports::trivy("reports/pom.json", &fixture("pom.json"));
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(pom.artifact, None, "a repository is no image");
    assert_eq!(pom.source.as_deref(), Some("testdata/fixtures/repo/pom"));
    assert_eq!(
        counts(&pom),
        BTreeMap::from([("CRITICAL".into(), 1), ("HIGH".into(), 1)])
    );
    // Newer Trivy names the remote too; it names the repository better than CI's work folder.
    let (billing, _) = reports::trivy(
        "reports/billing.json",
        r#"{"SchemaVersion": 2, "ArtifactName": "/workspace", "ArtifactType": "repository",
            "Metadata": {"RepoURL": "https://gitlab.acme.internal/apps/billing.git"},
            "Results": [{"Target": "package-lock.json", "Vulnerabilities": [
              {"VulnerabilityID": "CVE-2020-9548", "PkgName": "minimist", "Severity": "LOW"}]}]}"#,
    );
    let catalog = Catalog::new(Vec::new(), &[], vec![pom, billing]);
    let query = CveQuery {
        fleet: &fleet,
        catalog: &catalog,
        running: &[],
    };
    let cases: &[(&str, &[&str], Option<Severity>)] = &[
        (
            "CVE-2020-9548",
            &["billing", "pom"],
            Some(Severity::Critical),
        ),
        ("CVE-2021-20190", &["pom"], Some(Severity::High)),
        ("CVE-1999-0001", &[], None),
    ];
    for (id, services, severity) in cases {
        let answer = cve::cve(query, id);
        let names: Vec<&str> = answer.services.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(names, *services, "{id}");
        assert_eq!(answer.severity, *severity, "{id}");
        assert!(answer.images.is_empty(), "{id}: no image carries it");
        for s in &answer.services {
            let at = s.at.as_ref().expect("the finding's location");
            assert!(
                at.path.starts_with("reports/") && at.line > 1,
                "{id}: {at:?}"
            );
        }
    }
    let report = cve::impact_report(&cve::cve(query, "CVE-2021-20190"), &fleet);
    assert_eq!(report.untouched, ["billing", "web"]);
    let jackson = &report.what_breaks[0];
    assert_eq!(jackson.subject, "testdata/fixtures/repo/pom");
    assert!(
        jackson.summary.contains("jackson-databind 2.9.1"),
        "{}",
        jackson.summary
    );
    assert!(
        jackson.summary.contains("fixed in 2.9.10.7"),
        "{}",
        jackson.summary
    );
}

/// Each way a source report names its repository, with the services it names.
#[test]
fn a_source_names_the_repository_by_its_trailing_folders() {
    use crate::cve::services_of_source;
    use model::{Fleet, Service};
    let fleet = Fleet {
        services: [
            ("legacy-orders", "legacy/orders"),
            ("orders", "services/orders"),
            ("root", ""),
            ("web", "web"),
        ]
        .iter()
        .map(|(name, repo)| Service {
            name: name.to_string(),
            repo: Some(repo.to_string()),
            ..Service::default()
        })
        .collect(),
        ..Fleet::default()
    };
    let cases: &[(&str, &[&str])] = &[
        ("services/orders", &["orders"]),
        ("/builds/acme/services/orders/", &["orders"]),
        ("orders", &["legacy-orders", "orders"]),
        ("https://github.com/acme/web.git", &["web"]),
        (
            "git@gitlab.acme.internal:legacy/orders.git",
            &["legacy-orders"],
        ),
        ("./web", &["web"]),
        (".", &[]),
        ("/workspace", &[]),
        ("", &[]),
    ];
    for (source, expected) in cases {
        let mut found = services_of_source(&fleet, source);
        found.sort_unstable();
        assert_eq!(found, *expected, "{source:?}");
    }
}

fn spdx_fixture(name: &str) -> String {
    test_support::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/spdx")
            .join(name),
    )
}

/// SPDX SBOMs: the described package is the image (a container) or the
/// source (a directory); every other versioned package is listed, with its line.
#[test]
fn spdx_sboms_list_the_packages_of_an_image_or_a_source() {
    // File, the image's name, the source, the packages with their versions.
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        &'a [(&'a str, &'a str)],
    );
    let cases: &[Case] = &[
        (
            "syft-image-encoder.spdx.json",
            Some("docker.io/library/user-image-input"),
            None,
            &[("package-1", "1.0.1"), ("package-2", "2.0.1")],
        ),
        (
            "payments-image.spdx.json",
            Some("registry.acme.internal/apps/payments"),
            None,
            &[
                ("base-files", "12.4+deb12u5"),
                ("libssl3", "3.0.11-1~deb12u2"),
                ("jackson-databind", "2.9.1"),
                ("jackson-core", "2.9.1"),
            ],
        ),
        (
            "ledger-directory.spdx.json",
            None,
            Some("/builds/acme/ledger"),
            &[("jackson-databind", "2.9.1"), ("guava", "32.1.3-jre")],
        ),
    ];
    for (file, image, source, packages) in cases {
        let text = spdx_fixture(file);
        let (report, diagnostics) = reports::parse(ReportFormat::Spdx, file, &text);
        assert!(diagnostics.is_empty(), "{file}: {diagnostics:?}");
        assert_eq!(report.image_name().as_deref(), *image, "{file}");
        assert_eq!(report.source.as_deref(), *source, "{file}");
        let listed: Vec<(&str, &str)> = report
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(listed, *packages, "{file}");
        for p in &report.packages {
            let line = text.lines().nth(p.at.line as usize - 1).unwrap_or_default();
            assert!(line.contains("SPDXID"), "{file}: {p:?} at {line:?}");
        }
        assert!(report.vulnerabilities.is_empty());
    }
    let (_, diagnostics) =
        reports::spdx("x.json", r#"{"spdxVersion": "SPDX-3.0", "packages": null}"#);
    let messages: Vec<&str> = diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "spdxVersion is \"SPDX-3.0\"; SPDX 2.2 and 2.3 are read",
            "the document describes no package: its packages belong to no image or source"
        ]
    );
    assert_eq!(reports::spdx("x.json", "{").1[0].line, Some(1));
}

/// A finding names a package as its scanner does; an SBOM's package is the
/// same one when a spelling of its name or purl and its version agree.
#[test]
fn a_finding_matches_an_sbom_package_by_name_or_purl_and_version() {
    let package = |name: &str, version: &str, purl: Option<&str>| reports::Package {
        name: name.into(),
        version: version.into(),
        purl: purl.map(String::from),
        layer: None,
        at: Provenance::new("sbom.json", 1),
    };
    let jackson = package(
        "jackson-databind",
        "2.9.1",
        Some("pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.1"),
    );
    let scoped = package(
        "core",
        "7.0.0",
        Some("pkg:npm/%40angular/core@7.0.0?x=1#sub"),
    );
    let cases = [
        (
            &jackson,
            "com.fasterxml.jackson.core:jackson-databind",
            Some("2.9.1"),
            true,
        ),
        (&jackson, "jackson-databind", Some("2.9.1"), true),
        (&jackson, "jackson-databind", None, true),
        (&jackson, "jackson-databind", Some("2.9.10"), false),
        (&jackson, "jackson-core", Some("2.9.1"), false),
        (&scoped, "@angular/core", Some("7.0.0"), true),
        (&scoped, "core", Some("7.0.0"), true),
        (&scoped, "@angular/core", Some("7.0.1"), false),
    ];
    for (p, name, version, want) in cases {
        assert_eq!(
            p.is(name, version),
            want,
            "{} vs {name} {version:?}",
            p.name
        );
    }
}

/// A library CVE a scanner found in one repository reaches every image and
/// source whose SBOM lists the same package at the same version.
#[test]
fn a_cve_reaches_the_images_and_sources_whose_sboms_list_the_package() {
    use crate::cve::{self, CveQuery};
    use model::{Fleet, Service};
    let fleet = Fleet {
        services: [
            ("ledger", "ledger"),
            ("orders", "orders"),
            ("payments", "payments"),
        ]
        .iter()
        .map(|(name, repo)| Service {
            name: name.to_string(),
            repo: Some(repo.to_string()),
            images: if *name == "payments" {
                vec![ImageRef::parse("registry.acme.internal/apps/payments:2.0.0").unwrap()]
            } else {
                Vec::new()
            },
            ..Service::default()
        })
        .collect(),
        ..Fleet::default()
    };
    let (pom, _) = reports::trivy(
        "reports/orders.json",
        &fixture("pom.json").replace("testdata/fixtures/repo/pom", "/builds/acme/orders"),
    );
    let mut all = vec![pom];
    for file in [
        "payments-image.spdx.json",
        "ledger-directory.spdx.json",
        "syft-image-encoder.spdx.json",
    ] {
        all.push(reports::spdx(&format!("sboms/{file}"), &spdx_fixture(file)).0);
    }
    let catalog = Catalog::new(Vec::new(), &[], all);
    let query = CveQuery {
        fleet: &fleet,
        catalog: &catalog,
        running: &[],
    };
    let answer = cve::cve(query, "CVE-2020-9548");
    let reached: Vec<(&str, &str)> = answer
        .services
        .iter()
        .map(|s| {
            (
                s.service.as_str(),
                s.at.as_ref().map_or("", |a| a.path.as_str()),
            )
        })
        .collect();
    assert_eq!(
        reached,
        [
            ("ledger", "sboms/ledger-directory.spdx.json"),
            ("orders", "reports/orders.json"),
            ("payments", ""),
        ]
    );
    let images: Vec<&str> = answer.images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(images, ["registry.acme.internal/apps/payments"]);
    assert_eq!(answer.severity, Some(Severity::Critical));
    assert!(
        answer
            .introduced
            .iter()
            .any(|i| i.package == "jackson-databind"
                && i.at.path == "sboms/payments-image.spdx.json"),
        "{:?}",
        answer.introduced
    );
    // No scanner found it: an SBOM alone names no CVE.
    assert!(cve::cve(query, "CVE-2021-44228").services.is_empty());
}
