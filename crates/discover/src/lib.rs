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
mod fingerprint;
mod git;
mod image_inputs;
pub mod state;
#[cfg(test)]
mod tests;
mod walk;

pub use config::Config;
pub use fingerprint::{FleetStats, StatWalk};
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
    let (resident, stats, save) = Resident::walk(options, progress)?;
    Ok(resident.into_outcome(stats, save))
}

/// A fleet held in memory between changes: every file's facts from the last
/// walk, refreshed folder by folder ([`Resident::refresh`]), so a changed file
/// costs a walk of its repository, not of the fleet.
#[derive(Debug)]
pub struct Resident {
    root: PathBuf,
    paths: Vec<PathBuf>,
    config: Config,
    state_dir: StateDir,
    cache: state::Cache,
    /// Problems the walk found (symlinks, unreadable folders), by file.
    walk_diagnostics: Vec<model::Diagnostic>,
    repos: Vec<model::Repo>,
}

impl Resident {
    /// Scans the fleet as [`scan()`] does and keeps what the walk found.
    ///
    /// # Errors
    /// As [`scan()`].
    pub fn load(
        options: &ScanOptions,
        progress: &Progress,
    ) -> Result<(Resident, ScanOutcome), DiscoverError> {
        let (resident, stats, save) = Resident::walk(options, progress)?;
        let outcome = resident.assemble(stats, save);
        Ok((resident, outcome))
    }

    /// Walks the fleet: what it found, its counts, and whether the cache must be written.
    fn walk(
        options: &ScanOptions,
        progress: &Progress,
    ) -> Result<(Resident, ScanStats, bool), DiscoverError> {
        let FleetStats {
            root,
            config,
            state_dir,
            paths: canonical,
        } = FleetStats::locate(options)?;
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
        let mut resident = Resident {
            root,
            paths: canonical,
            config,
            state_dir,
            cache: state::Cache::default(),
            walk_diagnostics: Vec::new(),
            repos: Vec::new(),
        };
        // A cache that holds exactly the walked files, none of them re-read,
        // would be written back byte for byte: skip the write.
        let unchanged = walked.parsed == 0 && cached_files == walked.entries.len();
        let stats = ScanStats {
            files_considered: walked.entries.len() as u64,
            files_parsed: walked.parsed,
            files_from_cache: walked.entries.len() as u64 - walked.parsed,
            repos: walked.repos.len() as u64,
        };
        resident.cache.entries = walked.entries;
        resident.walk_diagnostics = walked.diagnostics;
        resident.repos = walked.repos;
        Ok((resident, stats, !unchanged))
    }

    /// The fleet root every provenance path is relative to.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.state_dir
    }

    /// Walks again only the folders holding `changed` (absolute paths under
    /// the root): the deepest repository containing each, or its top-level
    /// folder. Files whose size and mtime did not change keep their facts;
    /// only the others are read and parsed again. A change to `bulkhead.toml`
    /// reloads everything. Changes inside the state directory or `.git`
    /// internals are ignored; `None` when nothing was left to do.
    ///
    /// # Errors
    /// As [`scan()`]: a root that disappeared, or an invalid `bulkhead.toml`.
    pub fn refresh(
        &mut self,
        changed: &[PathBuf],
        progress: &Progress,
    ) -> Result<Option<ScanOutcome>, DiscoverError> {
        let mut units: Vec<String> = Vec::new();
        for path in changed {
            let Ok(rel) = path.strip_prefix(&self.root) else {
                continue;
            };
            if path.starts_with(self.state_dir.path()) {
                continue;
            }
            let rel = walk::relative(&self.root, &self.root.join(rel));
            if rel == config::FILE_NAME {
                let options = ScanOptions {
                    paths: self.paths.clone(),
                    state_dir: Some(self.state_dir.path().to_path_buf()),
                    use_cache: true,
                };
                let (resident, outcome) = Resident::load(&options, progress)?;
                *self = resident;
                return Ok(Some(outcome));
            }
            // `.git` internals change on every commit; the files a commit touches are reported themselves.
            if rel.split('/').any(|c| c == ".git") && !rel.ends_with("/.git") {
                continue;
            }
            let unit = self.unit_of(&rel);
            if !units.iter().any(|u| is_under(&unit, u)) {
                units.retain(|u| !is_under(u, &unit));
                units.push(unit);
            }
        }
        if units.is_empty() {
            return Ok(None);
        }
        let existing: Vec<PathBuf> = units
            .iter()
            .map(|u| self.root.join(u))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
        let under_units = |path: &str| units.iter().any(|u| is_under(path, u));
        // The walk takes the entries it may reuse; the others stay here.
        let (under, kept): (std::collections::BTreeMap<_, _>, _) =
            std::mem::take(&mut self.cache.entries)
                .into_iter()
                .partition(|(path, _)| under_units(path));
        self.cache.entries = kept;
        let walked = if existing.is_empty() {
            walk::Walked {
                entries: Default::default(),
                parsed: 0,
                diagnostics: Vec::new(),
                repos: Vec::new(),
            }
        } else {
            walk::walk(
                &self.root,
                &existing,
                &self.config,
                self.state_dir.path(),
                state::Cache::with_entries(under),
                progress,
            )
        };
        self.walk_diagnostics.retain(|d| !under_units(&d.path));
        self.repos.retain(|r| !under_units(&r.path));
        self.cache.entries.extend(walked.entries);
        self.walk_diagnostics.extend(walked.diagnostics);
        self.repos.extend(walked.repos);
        self.repos.sort_by(|a, b| a.path.cmp(&b.path));
        let files = self.cache.entries.len() as u64;
        let stats = ScanStats {
            files_considered: files,
            files_parsed: walked.parsed,
            files_from_cache: files - walked.parsed,
            repos: self.repos.len() as u64,
        };
        // The cache on disk is left as the load saved it: rewriting every
        // file's facts costs more than the refresh itself at 10,000 services,
        // and a later scan re-reads only the files that changed since.
        Ok(Some(self.assemble(stats, false)))
    }

    /// The folder walked again for a change at `rel`: the deepest repository
    /// holding it, else its top-level folder (or the file itself at the root).
    fn unit_of(&self, rel: &str) -> String {
        self.repos
            .iter()
            .filter(|r| !r.path.is_empty() && is_under(rel, &r.path))
            .max_by_key(|r| r.path.len())
            .map_or_else(
                || rel.split('/').next().unwrap_or(rel).to_string(),
                |r| r.path.clone(),
            )
    }

    /// Assembles the fleet from copies of the files' facts (the resident keeps
    /// them for its refreshes), saving the cache meanwhile when `save`.
    fn assemble(&self, stats: ScanStats, save: bool) -> ScanOutcome {
        let (fleet, state_error) = std::thread::scope(|s| {
            let saving = s.spawn(|| {
                if save {
                    state::save(self.state_dir.path(), &state::encode(&self.cache.entries))
                } else {
                    Ok(())
                }
            });
            let facts = || self.cache.entries.values().map(|e| &e.facts);
            let mut merged = sized_facts(facts(), self.walk_diagnostics.len());
            for f in facts() {
                merged.dockerfiles.extend_from_slice(&f.dockerfiles);
                merged.templates.extend_from_slice(&f.templates);
                merged.workloads.extend_from_slice(&f.workloads);
                merged.kube_services.extend_from_slice(&f.kube_services);
                merged.routes.extend_from_slice(&f.routes);
                merged.catalog.extend_from_slice(&f.catalog);
                merged.image_overrides.extend_from_slice(&f.image_overrides);
                merged.hosts.extend_from_slice(&f.hosts);
                merged.diagnostics.extend_from_slice(&f.diagnostics);
            }
            merged.diagnostics.extend_from_slice(&self.walk_diagnostics);
            let fleet = model::assemble(AssembleInput {
                facts: merged,
                repos: self.repos.clone(),
                shared: shared_repos(&self.config),
            });
            (fleet, saved(saving.join()))
        });
        ScanOutcome {
            root: self.root.clone(),
            config: self.config.clone(),
            fleet,
            stats,
            state_dir: self.state_dir.clone(),
            state_error,
        }
    }

    /// Assembles the fleet from the files' facts themselves, moved rather than
    /// copied, for a scan that keeps nothing resident. When `save`, the cache is
    /// encoded first (the facts move into the fleet next) and written to disk
    /// while the fleet is assembled.
    fn into_outcome(self, stats: ScanStats, save: bool) -> ScanOutcome {
        let Resident {
            root,
            config,
            state_dir,
            cache,
            walk_diagnostics,
            repos,
            ..
        } = self;
        let encoded = save.then(|| state::encode(&cache.entries));
        let (fleet, state_error) = std::thread::scope(|s| {
            let saving = s.spawn(|| match encoded {
                Some(parts) => state::save(state_dir.path(), &parts),
                None => Ok(()),
            });
            let mut merged = sized_facts(
                cache.entries.values().map(|e| &e.facts),
                walk_diagnostics.len(),
            );
            for entry in cache.entries.into_values() {
                merged.extend(entry.facts);
            }
            merged.diagnostics.extend(walk_diagnostics);
            let fleet = model::assemble(AssembleInput {
                facts: merged,
                repos,
                shared: shared_repos(&config),
            });
            (fleet, saved(saving.join()))
        });
        ScanOutcome {
            root,
            config,
            fleet,
            stats,
            state_dir,
            state_error,
        }
    }
}

/// The folders of the fleet's shared artefacts: their files make no app.
fn shared_repos(config: &Config) -> Vec<String> {
    config
        .templates
        .repo
        .iter()
        .chain(&config.images.base_repo)
        .cloned()
        .collect()
}

/// Why the cache could not be saved, from the saving thread's result.
fn saved(result: std::thread::Result<Result<(), DiscoverError>>) -> Option<String> {
    match result {
        Ok(result) => result.err().map(|e| e.to_string()),
        Err(_) => Some("saving the cache failed unexpectedly".to_string()),
    }
}

/// Empty facts with room for all of `facts` and `walk_diagnostics` more
/// diagnostics: at 10,000 services, lists that grow as files are appended
/// copy their contents several times over.
fn sized_facts<'a>(
    facts: impl Iterator<Item = &'a model::Facts> + Clone,
    walk_diagnostics: usize,
) -> model::Facts {
    let facts = || facts.clone();
    model::Facts {
        dockerfiles: Vec::with_capacity(facts().map(|f| f.dockerfiles.len()).sum()),
        templates: Vec::with_capacity(facts().map(|f| f.templates.len()).sum()),
        workloads: Vec::with_capacity(facts().map(|f| f.workloads.len()).sum()),
        kube_services: Vec::with_capacity(facts().map(|f| f.kube_services.len()).sum()),
        routes: Vec::with_capacity(facts().map(|f| f.routes.len()).sum()),
        catalog: Vec::with_capacity(facts().map(|f| f.catalog.len()).sum()),
        image_overrides: Vec::with_capacity(facts().map(|f| f.image_overrides.len()).sum()),
        hosts: Vec::with_capacity(facts().map(|f| f.hosts.len()).sum()),
        diagnostics: Vec::with_capacity(
            facts().map(|f| f.diagnostics.len()).sum::<usize>() + walk_diagnostics,
        ),
    }
}

/// Whether `path` is `folder` or inside it (`/`-separated, relative paths).
fn is_under(path: &str, folder: &str) -> bool {
    path == folder || (path.starts_with(folder) && path.as_bytes().get(folder.len()) == Some(&b'/'))
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
