//! Helpers for bulkhead's own tests, and only its tests: every crate takes
//! this one as a dev-dependency, never as a dependency, so none of it ships.
//!
//! - [`TempDir`]: a fresh folder per call, removed when dropped;
//! - [`dedent`]: indented text in a test, plain text out;
//! - [`expect_text`] and [`expect_file`]: compare a rendering with its
//!   expectation, and with `UPDATE_EXPECT=1` rewrite the expectation instead
//!   (the string literal in the test's source, or the file).
//!
//! Fixture files are read with [`read`] so that the pure crates, whose
//! clippy configuration forbids `std::fs`, can still load test data that is
//! too large or too many to `include_str!`.

mod expect;
mod temp;
mod text;

pub use expect::{UPDATE_ENV, expect_file, expect_text};
pub use temp::{TempDir, git};
pub use text::dedent;

use std::path::{Path, PathBuf};

/// The text of a fixture file; panics naming the file when it cannot be read.
#[track_caller]
pub fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The files directly in `dir` whose names end with `suffix`, sorted by name,
/// as (file name, text).
#[track_caller]
pub fn read_dir(dir: impl AsRef<Path>, suffix: &str) -> Vec<(String, String)> {
    let dir = dir.as_ref();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(suffix))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default()
                .to_string();
            (name, read(&path))
        })
        .collect()
}

/// The files under `dir` at any depth whose names end with one of
/// `suffixes`, sorted by path, as (path relative to `dir`, text).
#[track_caller]
pub fn read_tree(dir: impl AsRef<Path>, suffixes: &[&str]) -> Vec<(String, String)> {
    let root = dir.as_ref();
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        {
            let path = entry.expect("directory entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if path.is_dir() {
                dirs.push(path);
            } else if suffixes.iter().any(|s| name.ends_with(s)) {
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                files.push((relative, read(&path)));
            }
        }
    }
    files.sort();
    files
}
