//! File classification by name and content.

use crate::{FileKind, parse};

fn trivy_fixture(name: &str) -> String {
    test_support::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/trivy")
            .join(name),
    )
}

/// Each path and text with the kind it is read as.
#[test]
fn files_are_classified_by_name_then_content() {
    let report = trivy_fixture("dockerfile.json");
    let cases: &[(&str, &str, Option<FileKind>)] = &[
        (
            "app/Dockerfile",
            "FROM alpine:3.20\n",
            Some(FileKind::Dockerfile),
        ),
        (
            "app/Dockerfile.prod",
            "# syntax=docker/dockerfile:1\n\n# build\nARG V=1\nFROM alpine:$V\n",
            Some(FileKind::Dockerfile),
        ),
        (
            "app/api.dockerfile",
            "\u{feff}from alpine\n",
            Some(FileKind::Dockerfile),
        ),
        ("app/Containerfile", "", Some(FileKind::Dockerfile)),
        // A broken Dockerfile still reaches the parser for its diagnostics.
        ("app/Dockerfile", "RUN make\n", Some(FileKind::Dockerfile)),
        // A real Trivy report saved under a Dockerfile-like name is no Dockerfile.
        ("reports/dockerfile.json", report.as_str(), None),
        (
            "app/Dockerfile.md",
            "# Building\n\nRun `make image`.\n",
            None,
        ),
        ("app/dockerfile.txt", "see ../Dockerfile\n", None),
        (
            "deploy/dockerfile.yaml",
            "apiVersion: v1\nkind: ConfigMap\n",
            Some(FileKind::Yaml),
        ),
        (
            "app/.gitlab-ci.yml",
            "include: []\n",
            Some(FileKind::GitlabCi),
        ),
        (
            "app/.github/workflows/ci.yml",
            "on: push\n",
            Some(FileKind::GithubWorkflow),
        ),
        ("deploy/app.yaml", "{}\n", Some(FileKind::Yaml)),
        ("reports/trivy.json", report.as_str(), None),
    ];
    for (path, text, kind) in cases {
        assert_eq!(FileKind::of_text(path, text), *kind, "{path}");
    }
}

#[test]
fn a_report_named_like_a_dockerfile_is_not_parsed_as_one() {
    let path = "reports/dockerfile.json";
    let text = trivy_fixture("dockerfile.json");
    // By name alone it would be a Dockerfile full of errors.
    assert_eq!(FileKind::of(path), Some(FileKind::Dockerfile));
    assert!(
        !parse(path, FileKind::Dockerfile, &text)
            .diagnostics
            .is_empty()
    );
    assert_eq!(FileKind::of_text(path, &text), None);
}
