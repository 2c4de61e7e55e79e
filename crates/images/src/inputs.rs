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

/// One cluster's `kubectl get -A -o json` output, saved or read live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The cluster's name in answers.
    pub cluster: String,
    pub file: TextFile,
}

impl Snapshot {
    /// A saved snapshot: its file name without the extension names its cluster.
    pub fn saved(file: TextFile) -> Snapshot {
        Snapshot {
            cluster: cluster_name(&file.path),
            file,
        }
    }

    /// A cluster read live through the kubeconfig context `context`: its
    /// objects are placed at `live:CONTEXT` and the line of the `List` text.
    pub fn live(context: &str, text: String) -> Snapshot {
        Snapshot {
            cluster: context.to_string(),
            file: TextFile {
                path: format!("live:{context}"),
                text,
            },
        }
    }
}

/// The files named by `[images] base_repo`, `[reports]` and `[cluster]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputFiles {
    /// `images.json` of the base images repository, with that repository's folder.
    pub base_catalog: Option<(TextFile, String)>,
    /// Scanner reports, each with its format.
    pub reports: Vec<(ReportFormat, TextFile)>,
    /// `kubectl get ... -o json` outputs: saved files and live reads.
    pub snapshots: Vec<Snapshot>,
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
    for snapshot in &files.snapshots {
        let file = &snapshot.file;
        let (r, d) = cluster::parse_snapshot(&file.path, &snapshot.cluster, &file.text);
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
