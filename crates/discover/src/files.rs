//! Reading the YAML documents a command is pointed at, or that a fleet keeps
//! in a folder (rollout specs, Gatekeeper policies, manifests), so the binary
//! names files and never opens them itself.

use crate::DiscoverError;
use std::path::{Path, PathBuf};

/// The `.yaml`/`.yml` files at `path`: `path` itself when it is not a folder,
/// else the ones in it (and in its subfolders when `recursive`), sorted.
///
/// # Errors
/// A folder that cannot be listed.
pub fn yaml_files(path: &Path, recursive: bool) -> Result<Vec<PathBuf>, DiscoverError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let io = |source| DiscoverError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let p = entry.map_err(io)?.path();
        if p.is_dir() {
            if recursive {
                files.extend(yaml_files(&p, true)?);
            }
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// What tells whether the `.yaml`/`.yml` files at `path` changed: each
/// file with its size and modification time, sorted. A file added, removed,
/// rewritten or touched changes it.
///
/// # Errors
/// A folder that cannot be listed.
pub fn yaml_fingerprint(
    path: &Path,
    recursive: bool,
) -> Result<Vec<(PathBuf, u64, Option<std::time::SystemTime>)>, DiscoverError> {
    Ok(yaml_files(path, recursive)?
        .into_iter()
        .map(|file| {
            let meta = std::fs::metadata(&file).ok();
            let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
            let modified = meta.and_then(|m| m.modified().ok());
            (file, len, modified)
        })
        .collect())
}

/// A file's text.
///
/// # Errors
/// A file that cannot be read or is not UTF-8.
pub fn read_text(path: &Path) -> Result<String, DiscoverError> {
    std::fs::read_to_string(path).map_err(|source| DiscoverError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })
}
