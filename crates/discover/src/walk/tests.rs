//! The read path: opening a file, measuring it through its handle and reading
//! it in one call gives the facts, size and mtime that reading the whole file
//! by path gives, for every kind of file the walk meets.

use super::walk;
use crate::Progress;
use crate::config::Config;
use crate::state::Cache;
use model::{Diagnostic, Facts};
use test_support::TempDir;

/// What the walk knew a file by before it read in one call: its metadata by
/// path, then the whole file read to its end.
fn read_whole(path: &std::path::Path, rel: &str, max_bytes: u64) -> (u64, u128, Facts) {
    let metadata = std::fs::metadata(path).unwrap();
    let (size, mtime_ns) = super::measure(&metadata);
    if size > max_bytes {
        let facts = Facts::from_diagnostic(Diagnostic::warning(
            rel,
            None,
            format!(
                "file is {size} bytes, over the {max_bytes}-byte limit; skipped (raise [scan] max_file_bytes in bulkhead.toml to read it)"
            ),
        ));
        return (size, mtime_ns, facts);
    }
    let bytes = std::fs::read(path).unwrap();
    (size, mtime_ns, super::parse_bytes(rel, bytes, max_bytes))
}

#[test]
fn one_read_per_file_answers_as_reading_the_whole_file() {
    let dir = TempDir::new("walk-read");
    let root = dir.join("fleet");
    let files: [(&str, &[u8]); 9] = [
        ("a/Dockerfile", b"FROM debian:12 AS build\nRUN make\nFROM gcr.io/distroless/base:nonroot\n"),
        ("a/catalog-info.yaml", b"apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: a\nspec:\n  owner: group:shop\n"),
        ("a/deploy/k8s.yaml", b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: a\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          image: registry.acme/a:1.0\n"),
        ("a/.gitlab-ci.yml", b"include:\n  - project: platform/ci-templates\n    ref: v1.2.3\n    file: build.yml\n"),
        ("b/Dockerfile", b""),
        ("b/binary.yaml", b"kind: \0Deployment\n"),
        ("b/latin1.yaml", b"kind: caf\xe9\n"),
        ("b/large.yaml", &[b'#'; 300]),
        ("b/Dockerfile.md", b"From the root, run make.\n"),
    ];
    for (rel, bytes) in files {
        dir.write(format!("fleet/{rel}"), bytes);
    }
    let mut config = Config::default();
    config.scan.max_file_bytes = 200;
    let state = dir.join("state");
    let progress = Progress::default();
    let walked = walk(
        &root,
        std::slice::from_ref(&root),
        &config,
        &state,
        Cache::default(),
        &progress,
    );
    assert_eq!(walked.parsed, files.len() as u64);
    for (rel, _) in files {
        let entry = &walked.entries[rel];
        let (size, mtime_ns, facts) = read_whole(&root.join(rel), rel, 200);
        assert_eq!((entry.size, entry.mtime_ns), (size, mtime_ns), "{rel}");
        assert_eq!(entry.facts, facts, "{rel}");
    }
    assert!(!walked.entries["a/Dockerfile"].facts.dockerfiles.is_empty());
    assert!(
        !walked.entries["a/deploy/k8s.yaml"]
            .facts
            .workloads
            .is_empty()
    );

    // A second walk over the first one's entries reads nothing again.
    let again = walk(
        &root,
        std::slice::from_ref(&root),
        &config,
        &state,
        Cache::with_entries(walked.entries),
        &progress,
    );
    assert_eq!((again.parsed, again.entries.len()), (0, files.len()));
}
