//! Everything the image analyses read beside the fleet, parsed in one call:
//! the base-images catalog, the scanner reports and the cluster snapshots.
//!
//! The file system edge (`discover`) reads the files `bulkhead.toml` names and
//! hands their text here; a file it could not read arrives as a diagnostic.

use crate::bases::{self, BaseImage};
use crate::catalog::Catalog;
use crate::cluster::{self, RunningContainer};
use crate::reports::{self, ReportFormat};
use model::Diagnostic;

/// One file's text and its path relative to the fleet root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFile {
    pub path: String,
    pub text: String,
}

/// The files named by `[images] base_repo`, `[reports]` and `[cluster] snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputFiles {
    /// `images.json` of the base images repository, with that repository's folder.
    pub base_catalog: Option<(TextFile, String)>,
    /// Scanner reports, each with its format.
    pub reports: Vec<(ReportFormat, TextFile)>,
    /// Saved `kubectl get ... -o json` outputs; each file's stem names its cluster.
    pub snapshots: Vec<TextFile>,
    /// Files that could not be read.
    pub diagnostics: Vec<Diagnostic>,
}

/// The parsed inputs: the catalog of known images, what runs in the clusters,
/// and every diagnostic of reading and parsing.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub catalog: Catalog,
    pub running: Vec<RunningContainer>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Where the base-images catalog of the repository at `base_repo` is, relative to the fleet root.
pub fn catalog_path(base_repo: &str) -> String {
    format!(
        "{}/{}",
        base_repo.trim_end_matches('/'),
        bases::CATALOG_FILE
    )
}

/// Parses every input file and builds the catalog over the fleet's Dockerfiles.
pub fn parse(files: &InputFiles, dockerfiles: &[model::Dockerfile]) -> Inputs {
    let mut diagnostics = files.diagnostics.clone();
    let mut bases: Vec<BaseImage> = Vec::new();
    if let Some((file, repo)) = &files.base_catalog {
        let (b, d) = bases::parse_catalog(&file.path, repo, &file.text);
        bases = b;
        diagnostics.extend(d);
    }
    let mut parsed = Vec::new();
    for (format, file) in &files.reports {
        let (report, d) = reports::parse(*format, &file.path, &file.text);
        parsed.push(report);
        diagnostics.extend(d);
    }
    let mut running = Vec::new();
    for file in &files.snapshots {
        let (r, d) = cluster::parse_snapshot(&file.path, &cluster_name(&file.path), &file.text);
        running.extend(r);
        diagnostics.extend(d);
    }
    Inputs {
        catalog: Catalog::new(bases, dockerfiles, parsed),
        running,
        diagnostics,
    }
}

/// A snapshot's cluster: its file name without the extension.
fn cluster_name(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => name.to_string(),
    }
}
