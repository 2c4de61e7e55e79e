//! Reads what the image analyses need beside the fleet: the base-images
//! catalog (`[images] base_repo`), the scanner reports (`[reports] trivy,
//! cyclonedx, grype, spdx`) and the cluster snapshots (`[cluster] snapshots`).
//! `images::inputs` parses them; a file that cannot be read is a diagnostic.

use crate::{Config, ScanOutcome};
use images::reports::ReportFormat;
use images::{InputFiles, Inputs, TextFile};
use model::Diagnostic;
use std::path::Path;

/// The catalog, running containers and diagnostics of a scanned fleet's image inputs.
pub fn load_image_inputs(outcome: &ScanOutcome) -> Inputs {
    let files = read_image_inputs(&outcome.root, &outcome.config);
    images::inputs::parse(&files, &outcome.fleet.dockerfiles)
}

/// Reads the files `config` names, relative to `root`. A missing base-images
/// catalog is no diagnostic (bases are then known from the reports); every
/// other file that cannot be read is.
pub fn read_image_inputs(root: &Path, config: &Config) -> InputFiles {
    let mut files = InputFiles::default();
    if let Some(repo) = &config.images.base_repo {
        let rel = images::inputs::catalog_path(repo);
        match std::fs::read_to_string(root.join(&rel)) {
            Ok(text) => files.base_catalog = Some((TextFile { path: rel, text }, repo.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                files
                    .diagnostics
                    .push(Diagnostic::error(&rel, None, format!("reading: {e}")))
            }
        }
    }
    for (format, entries) in [
        (ReportFormat::Trivy, &config.reports.trivy),
        (ReportFormat::CycloneDx, &config.reports.cyclonedx),
        (ReportFormat::Grype, &config.reports.grype),
        (ReportFormat::Spdx, &config.reports.spdx),
    ] {
        for file in read_json_files(root, entries, &mut files.diagnostics) {
            files.reports.push((format, file));
        }
    }
    files.snapshots = read_json_files(root, &config.cluster.snapshots, &mut files.diagnostics)
        .into_iter()
        .map(images::Snapshot::saved)
        .collect();
    files
}

/// The `.json` files named by `entries` (files, or folders read one level deep), sorted per folder.
fn read_json_files(
    root: &Path,
    entries: &[String],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<TextFile> {
    let mut paths = Vec::new();
    for entry in entries {
        let path = root.join(entry);
        if !path.is_dir() {
            paths.push(entry.clone());
            continue;
        }
        match std::fs::read_dir(&path) {
            Ok(dir) => {
                let mut names: Vec<String> = dir
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.ends_with(".json"))
                    .collect();
                names.sort();
                let folder = entry.trim_end_matches('/');
                paths.extend(names.into_iter().map(|n| format!("{folder}/{n}")));
            }
            Err(e) => diagnostics.push(Diagnostic::error(
                entry,
                None,
                format!("reading the folder: {e}"),
            )),
        }
    }
    paths
        .into_iter()
        .filter_map(|path| match std::fs::read_to_string(root.join(&path)) {
            Ok(text) => Some(TextFile { path, text }),
            Err(e) => {
                diagnostics.push(Diagnostic::error(&path, None, format!("reading: {e}")));
                None
            }
        })
        .collect()
}
