//! The state directory: [`StateDir`] names every file bulkhead keeps between
//! runs, and this module reads and writes the scan cache, the per-file facts
//! that make rescans cheap. Later commands (impact, cve, template, policy) scan
//! again through it, so they see the fleet as it is now at the cost of a stat
//! per file.
//!
//! The cache is written to a temporary name and renamed into place, so a killed
//! scan leaves the previous cache intact rather than half a file. It is derived
//! data: it is not fsynced, and a cache that does not parse is ignored.

use model::Facts;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The state directory's name under the fleet root.
pub const DEFAULT_DIR: &str = ".bulkhead";
/// Bumped whenever the cached facts change shape or meaning, so an old cache is ignored rather than misread.
/// 2: template pins carry `uses` (jobs, stages, outputs and secrets relied on).
/// 3: files are classified by content as well as name (a report saved as `dockerfile.json` holds no facts).
const CACHE_FORMAT: u32 = 3;

/// Whether losing a state file loses anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Derived from the fleet or the hosts and rebuilt when missing, corrupt or
    /// of another format: deleting it costs time, never an answer.
    Cache,
    /// The only copy of what happened (a release tag's first commit, a saved
    /// plan, a run's steps): deleting it loses history a later command needs.
    Record,
}

/// Every file and folder bulkhead keeps in a state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFile {
    /// `scan-cache.json`: the facts of each file, reused while its size and mtime are unchanged.
    ScanCache,
    /// `policy-cache.json`: `policy check` outcomes, keyed by a hash of the policies and of each input.
    PolicyCache,
    /// `template-tags.json`: the commit each templates release tag pointed at when first read.
    TemplateTags,
    /// `template-plan-VERSION.json`: the saved adoption plan of a templates release.
    TemplatePlans,
    /// `patch.db`: host patching runs, every step recorded before it runs (SQLite, WAL).
    PatchDb,
    /// `runs/RUN/HOST/`: the .debs saved before a host's upgrade, for its rollback.
    PatchRuns,
    /// `facts/HOST/`: each host's work folder while `patch plan` asks what it would upgrade.
    PatchFacts,
    /// `rollouts.db`: rollouts, every transition recorded before it is acted on (SQLite, WAL).
    RolloutsDb,
}

impl StateFile {
    /// All of them, in the order `docs` and `ARCHITECTURE.md` list them.
    pub const ALL: [StateFile; 8] = [
        StateFile::ScanCache,
        StateFile::PolicyCache,
        StateFile::TemplateTags,
        StateFile::TemplatePlans,
        StateFile::PatchDb,
        StateFile::PatchRuns,
        StateFile::PatchFacts,
        StateFile::RolloutsDb,
    ];

    /// The name in the state directory (for template plans, the prefix of each plan's name).
    pub fn name(self) -> &'static str {
        match self {
            StateFile::ScanCache => "scan-cache.json",
            StateFile::PolicyCache => "policy-cache.json",
            StateFile::TemplateTags => "template-tags.json",
            StateFile::TemplatePlans => "template-plan-",
            StateFile::PatchDb => "patch.db",
            StateFile::PatchRuns => "runs",
            StateFile::PatchFacts => "facts",
            StateFile::RolloutsDb => "rollouts.db",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            StateFile::ScanCache | StateFile::PolicyCache | StateFile::PatchFacts => Kind::Cache,
            StateFile::TemplateTags
            | StateFile::TemplatePlans
            | StateFile::PatchDb
            | StateFile::PatchRuns
            | StateFile::RolloutsDb => Kind::Record,
        }
    }
}

/// A fleet's state directory, resolved one way for every command: the
/// `--state DIR` given, else `.bulkhead/` at the fleet root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir(PathBuf);

impl StateDir {
    /// `given`, or `DEFAULT_DIR` under `fleet_root`.
    pub fn resolve(fleet_root: &Path, given: Option<&Path>) -> StateDir {
        StateDir(given.map_or_else(|| fleet_root.join(DEFAULT_DIR), Path::to_path_buf))
    }

    /// The folder itself: the SQLite state databases are opened by folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where `file` lives (for template plans, use [`StateDir::template_plan`]).
    pub fn file(&self, file: StateFile) -> PathBuf {
        self.0.join(file.name())
    }

    /// The saved adoption plan of one templates release.
    pub fn template_plan(&self, version: &str) -> PathBuf {
        let safe: String = version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.0
            .join(format!("{}{safe}.json", StateFile::TemplatePlans.name()))
    }
}

/// What a previous scan learned from each file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cache {
    format: u32,
    tool_version: String,
    pub(crate) entries: BTreeMap<String, CacheEntry>,
}

impl Cache {
    /// A cache of these entries, as the current version would write it.
    pub(crate) fn with_entries(entries: BTreeMap<String, CacheEntry>) -> Self {
        Cache {
            entries,
            ..Cache::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub size: u64,
    pub mtime_ns: u128,
    pub facts: Facts,
}

/// Loads the cache; a missing, unreadable or outdated cache is an empty one.
pub fn load_cache(dir: &Path) -> Cache {
    std::fs::read(dir.join(StateFile::ScanCache.name()))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Cache>(&bytes).ok())
        .filter(|c| c.format == CACHE_FORMAT && c.tool_version == env!("CARGO_PKG_VERSION"))
        .unwrap_or_default()
}

pub(crate) fn save(
    dir: &Path,
    entries: &BTreeMap<String, CacheEntry>,
) -> Result<(), crate::DiscoverError> {
    ensure_dir(dir)?;
    #[derive(Serialize)]
    struct CacheOut<'a> {
        format: u32,
        tool_version: &'a str,
        entries: &'a BTreeMap<String, CacheEntry>,
    }
    let cache = CacheOut {
        format: CACHE_FORMAT,
        tool_version: env!("CARGO_PKG_VERSION"),
        entries,
    };
    write_atomically(&dir.join(StateFile::ScanCache.name()), &cache)
}

/// Writes a cache file of the state directory (not the scan cache, which
/// [`crate::scan`] keeps): atomically, creating the directory and its `.gitignore`.
///
/// # Errors
/// When the directory or the file cannot be written.
pub fn save_cache_file(
    dir: &Path,
    file: StateFile,
    value: &impl Serialize,
) -> Result<(), crate::DiscoverError> {
    ensure_dir(dir)?;
    write_atomically(&dir.join(file.name()), value)
}

/// Reads a cache file of the state directory; missing or unreadable is `None`.
pub fn load_cache_file<T: serde::de::DeserializeOwned>(dir: &Path, file: StateFile) -> Option<T> {
    std::fs::read(dir.join(file.name()))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

fn ensure_dir(dir: &Path) -> Result<(), crate::DiscoverError> {
    let io = |action, path: PathBuf| {
        move |source| crate::DiscoverError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir.to_path_buf()))?;
    // The state is derived data: keep it out of the fleet's own git history.
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n").map_err(io("writing", ignore.clone()))?;
    }
    Ok(())
}

fn write_atomically(path: &Path, value: &impl Serialize) -> Result<(), crate::DiscoverError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| crate::DiscoverError::Io {
            action,
            path,
            source,
        }
    };
    let file = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    let mut writer = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut writer, value).map_err(|e| crate::DiscoverError::Io {
        action: "writing",
        path: tmp.clone(),
        source: e.into(),
    })?;
    writer.into_inner().map_err(|e| crate::DiscoverError::Io {
        action: "writing",
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    std::fs::rename(&tmp, path).map_err(io("renaming", path))
}

#[cfg(test)]
mod tests {
    use super::{Kind, StateDir, StateFile};
    use std::path::Path;

    #[test]
    fn the_state_dir_is_given_or_at_the_fleet_root_and_names_every_file() {
        let root = Path::new("/fleet");
        let default = StateDir::resolve(root, None);
        assert_eq!(default.path(), Path::new("/fleet/.bulkhead"));
        let given = StateDir::resolve(root, Some(Path::new("/var/state")));
        assert_eq!(
            given.file(StateFile::RolloutsDb),
            Path::new("/var/state/rollouts.db")
        );
        assert_eq!(
            default.template_plan("v2.0.0/../x"),
            Path::new("/fleet/.bulkhead/template-plan-v2.0.0_.._x.json")
        );
        let table: Vec<(&str, Kind)> = StateFile::ALL
            .iter()
            .map(|f| (f.name(), f.kind()))
            .collect();
        assert_eq!(
            table,
            [
                ("scan-cache.json", Kind::Cache),
                ("policy-cache.json", Kind::Cache),
                ("template-tags.json", Kind::Record),
                ("template-plan-", Kind::Record),
                ("patch.db", Kind::Record),
                ("runs", Kind::Record),
                ("facts", Kind::Cache),
                ("rollouts.db", Kind::Record),
            ]
        );
    }
}
