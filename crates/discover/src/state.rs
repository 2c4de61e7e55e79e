//! The state directory: the per-file cache that makes rescans cheap, and the
//! last scanned fleet that later commands (impact, cve, template, policy) read.
//!
//! Files are written to a temporary name and renamed into place, so a killed
//! scan leaves the previous state intact rather than half a file.

use crate::ScanStats;
use model::{Facts, Fleet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The state directory's name under the fleet root.
pub const DEFAULT_DIR: &str = ".bulkhead";
const CACHE_FILE: &str = "scan-cache.json";
const FLEET_FILE: &str = "fleet.json";
/// Bumped whenever the cached facts change shape, so an old cache is ignored rather than misread.
const CACHE_FORMAT: u32 = 1;

/// What a previous scan learned from each file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cache {
    format: u32,
    tool_version: String,
    pub(crate) entries: BTreeMap<String, CacheEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    pub size: u64,
    pub mtime_ns: u128,
    pub facts: Facts,
}

/// A scan saved for later commands.
#[derive(Debug, Serialize, Deserialize)]
pub struct SavedScan {
    pub stats: ScanStats,
    pub fleet: Fleet,
}

/// Loads the cache; a missing, unreadable or outdated cache is an empty one.
pub fn load_cache(dir: &Path) -> Cache {
    std::fs::read(dir.join(CACHE_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Cache>(&bytes).ok())
        .filter(|c| c.format == CACHE_FORMAT && c.tool_version == env!("CARGO_PKG_VERSION"))
        .unwrap_or_default()
}

/// Loads the last saved fleet from a state directory.
///
/// # Errors
/// When there is no saved scan there, or it cannot be read.
pub fn load_fleet(dir: &Path) -> Result<SavedScan, crate::DiscoverError> {
    let path = dir.join(FLEET_FILE);
    let bytes = std::fs::read(&path).map_err(|source| crate::DiscoverError::Io {
        action: "reading",
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| crate::DiscoverError::Io {
        action: "parsing",
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

pub(crate) fn save(
    dir: &Path,
    entries: &BTreeMap<String, CacheEntry>,
    fleet: &Fleet,
    stats: &ScanStats,
) -> Result<(), crate::DiscoverError> {
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
    #[derive(Serialize)]
    struct CacheOut<'a> {
        format: u32,
        tool_version: &'a str,
        entries: &'a BTreeMap<String, CacheEntry>,
    }
    #[derive(Serialize)]
    struct SavedOut<'a> {
        stats: &'a ScanStats,
        fleet: &'a Fleet,
    }
    let cache = CacheOut {
        format: CACHE_FORMAT,
        tool_version: env!("CARGO_PKG_VERSION"),
        entries,
    };
    write_atomically(&dir.join(CACHE_FILE), &cache)?;
    write_atomically(&dir.join(FLEET_FILE), &SavedOut { stats, fleet })
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
    let file = writer.into_inner().map_err(|e| crate::DiscoverError::Io {
        action: "writing",
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", path))
}
