//! Scanning's I/O edge (`scan` is its pure half): finds a fleet's files, reads
//! them in parallel and turns them into a [`model::Fleet`] ([`scan()`]).
//!
//! This is where the file system is touched. It walks the given folders
//! (honouring `.gitignore`, skipping `.git`, `vendor/` and `node_modules/`,
//! never following a symlink), reads the files bulkhead knows by name, hands
//! their text to the pure parsers in `scan`, and assembles the fleet. Whatever
//! goes wrong with one file — unreadable, binary, too large, not UTF-8, a
//! symlink loop — becomes a diagnostic; only a missing root or a broken
//! `bulkhead.toml` stops the scan.
//!
//! Results are cached per file in the state directory (default `.bulkhead/`
//! at the fleet root), so a rescan re-reads only the files that changed.

pub mod config;
pub mod files;
mod git;
mod image_inputs;
pub mod state;
mod walk;

pub use config::Config;
pub use image_inputs::{load_image_inputs, read_image_inputs};
pub use state::{StateDir, StateFile};
pub use walk::Progress;

use model::{AssembleInput, Fleet};
use std::path::{Path, PathBuf};

/// Why a scan could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: invalid configuration: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to scan and where to keep the state.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub paths: Vec<PathBuf>,
    /// Defaults to `.bulkhead/` under the fleet root.
    pub state_dir: Option<PathBuf>,
    /// Reuse facts of unchanged files from the previous scan.
    pub use_cache: bool,
}

/// Counts that tell what a scan did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScanStats {
    /// Files bulkhead recognised by name.
    pub files_considered: u64,
    /// Of those, parsed in this run.
    pub files_parsed: u64,
    /// Of those, taken unchanged from the previous scan.
    pub files_from_cache: u64,
    pub repos: u64,
}

/// The result of a scan.
#[derive(Debug)]
pub struct ScanOutcome {
    /// The folder all provenance paths are relative to.
    pub root: PathBuf,
    pub config: Config,
    pub fleet: Fleet,
    pub stats: ScanStats,
    pub state_dir: StateDir,
    /// Why the state could not be saved, if it could not (the scan itself still succeeded).
    pub state_error: Option<String>,
}

/// Scans a fleet: walks its folders, reads each file (or takes its facts from
/// the cache), parses it with the `scan` crate and assembles the fleet.
///
/// # Errors
/// Only when the scan cannot run: a path that does not exist, or an invalid
/// `bulkhead.toml`. Problems with individual files are diagnostics in the fleet.
pub fn scan(options: &ScanOptions, progress: &Progress) -> Result<ScanOutcome, DiscoverError> {
    let paths: Vec<PathBuf> = if options.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        options.paths.clone()
    };
    let mut canonical = Vec::new();
    for path in &paths {
        let c = std::fs::canonicalize(path)
            .map_err(|_| DiscoverError::NotFound { path: path.clone() })?;
        canonical.push(c);
    }
    let root = common_root(&canonical);
    let config = Config::load(&root)?;
    let state_dir = StateDir::resolve(&root, options.state_dir.as_deref());
    let cache = if options.use_cache {
        state::load_cache(state_dir.path())
    } else {
        state::Cache::default()
    };

    let cached_files = cache.entries.len();
    let walked = walk::walk(
        &root,
        &canonical,
        &config,
        state_dir.path(),
        cache,
        progress,
    );
    let stats = ScanStats {
        files_considered: walked.entries.len() as u64,
        files_parsed: walked.parsed,
        files_from_cache: walked.entries.len() as u64 - walked.parsed,
        repos: walked.repos.len() as u64,
    };
    // A cache that holds exactly the walked files, none of them re-read, would
    // be written back byte for byte: skip the write, and move the facts into
    // the fleet instead of copying them.
    let unchanged = walked.parsed == 0 && cached_files == walked.entries.len();
    let shared: Vec<String> = config
        .templates
        .repo
        .iter()
        .chain(&config.images.base_repo)
        .cloned()
        .collect();
    let (fleet, state_error) = if unchanged {
        let walk::Walked {
            entries,
            diagnostics,
            repos,
            ..
        } = walked;
        let mut facts = model::Facts::default();
        for (_, entry) in entries {
            facts.extend(entry.facts);
        }
        facts.diagnostics.extend(diagnostics);
        let fleet = model::assemble(AssembleInput {
            facts,
            repos,
            shared,
        });
        (fleet, None)
    } else {
        // Saving the cache and assembling the fleet only read the walk's results:
        // do them side by side.
        std::thread::scope(|s| {
            let saving = s.spawn(|| state::save(state_dir.path(), &walked.entries));
            let mut facts = model::Facts::default();
            for entry in walked.entries.values() {
                facts.extend(entry.facts.clone());
            }
            facts.diagnostics.extend(walked.diagnostics.iter().cloned());
            let fleet = model::assemble(AssembleInput {
                facts,
                repos: walked.repos.clone(),
                shared,
            });
            let state_error = match saving.join() {
                Ok(result) => result.err().map(|e| e.to_string()),
                Err(_) => Some("saving the cache failed unexpectedly".to_string()),
            };
            (fleet, state_error)
        })
    };
    Ok(ScanOutcome {
        root,
        config,
        fleet,
        stats,
        state_dir,
        state_error,
    })
}

/// The deepest folder containing every path (a file's folder for a file).
fn common_root(paths: &[PathBuf]) -> PathBuf {
    let dir_of = |p: &PathBuf| {
        if p.is_dir() {
            p.clone()
        } else {
            p.parent().map_or_else(|| p.clone(), Path::to_path_buf)
        }
    };
    let mut root = paths.first().map(dir_of).unwrap_or_default();
    for path in paths.iter().skip(1) {
        let path = dir_of(path);
        while !path.starts_with(&root) {
            if !root.pop() {
                break;
            }
        }
    }
    root
}
