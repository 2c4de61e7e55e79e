//! The state directory: the per-file cache that makes rescans cheap. Later
//! commands (impact, cve, template, policy) scan again through it, so they see
//! the fleet as it is now at the cost of a stat per file.
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
const CACHE_FILE: &str = "scan-cache.json";
/// Bumped whenever the cached facts change shape, so an old cache is ignored rather than misread.
/// 2: template pins carry `uses` (jobs, stages, outputs and secrets relied on).
const CACHE_FORMAT: u32 = 2;

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

/// Loads the cache; a missing, unreadable or outdated cache is an empty one.
pub fn load_cache(dir: &Path) -> Cache {
    std::fs::read(dir.join(CACHE_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Cache>(&bytes).ok())
        .filter(|c| c.format == CACHE_FORMAT && c.tool_version == env!("CARGO_PKG_VERSION"))
        .unwrap_or_default()
}

pub(crate) fn save(
    dir: &Path,
    entries: &BTreeMap<String, CacheEntry>,
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
    let cache = CacheOut {
        format: CACHE_FORMAT,
        tool_version: env!("CARGO_PKG_VERSION"),
        entries,
    };
    write_atomically(&dir.join(CACHE_FILE), &cache)
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
