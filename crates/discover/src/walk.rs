//! The parallel walk: find the files bulkhead knows, read them, parse them.

use crate::config::Config;
use crate::state::{Cache, CacheEntry};
use ignore::{WalkBuilder, WalkState, overrides::OverrideBuilder};
use model::{Diagnostic, Facts, Repo};
use scan::FileKind;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

/// Folders never worth descending into: version control internals and vendored dependencies.
const SKIPPED_DIRS: [&str; 3] = [".git", "node_modules", "vendor"];

/// Live counters of a running scan, for a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    files: AtomicU64,
    parsed: AtomicU64,
}

impl Progress {
    /// Files recognised so far.
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::Relaxed)
    }
    /// Files parsed so far (the rest came from the cache).
    pub fn parsed(&self) -> u64 {
        self.parsed.load(Ordering::Relaxed)
    }
}

pub(crate) struct Walked {
    pub entries: BTreeMap<String, CacheEntry>,
    pub parsed: u64,
    pub diagnostics: Vec<Diagnostic>,
    pub repos: Vec<Repo>,
}

enum Found {
    /// A file read and parsed in this run.
    Parsed {
        path: String,
        entry: Box<CacheEntry>,
    },
    /// An unchanged file: its entry is moved out of the cache after the walk, not copied.
    Cached {
        path: String,
    },
    Problem(Diagnostic),
}

pub(crate) fn walk(
    root: &Path,
    paths: &[PathBuf],
    config: &Config,
    state_dir: &Path,
    mut cache: Cache,
    progress: &Progress,
) -> Walked {
    // A repository's HEAD and remote are read on the walker thread that finds
    // its `.git`: three small files per repository, which over 10,000
    // repositories cost more than the rest of the walk when read one by one.
    let found_repos: std::sync::Arc<Mutex<Vec<Repo>>> = Default::default();
    let seen_repos = found_repos.clone();
    let repo_root = root.to_path_buf();
    let (builder, mut diagnostics) = builder(root, paths, config, state_dir, move |dir, _| {
        let repo = Repo {
            path: relative(&repo_root, dir),
            git: true,
            head: crate::git::head(dir),
            remote: crate::git::remote(dir),
        };
        if let Ok(mut repos) = seen_repos.lock() {
            repos.push(repo);
        }
    });

    let max_bytes = config.scan.max_file_bytes;
    // Each walker thread collects into its own list and hands it over once, when
    // the walk drops its visitor: no per-file synchronisation between threads.
    let shared: Mutex<Vec<Found>> = Mutex::new(Vec::new());
    let lookup = &cache;
    builder.build_parallel().run(|| {
        let mut results = ThreadResults {
            found: Vec::new(),
            shared: &shared,
        };
        Box::new(move |result| {
            let found = match result {
                Ok(entry) => visit(root, &entry, lookup, max_bytes, progress),
                Err(e) => Some(Found::Problem(walk_error(root, &e))),
            };
            results.found.extend(found);
            WalkState::Continue
        })
    });
    // Entries are sorted by path while boxed, then the map is built in one
    // pass: inserted one by one in the walk's order, each insert would shift
    // its neighbours' facts within the map's nodes.
    let mut found_entries: Vec<(String, Box<CacheEntry>)> = Vec::new();
    let mut parsed = 0;
    for found in shared
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        match found {
            Found::Parsed { path, entry } => {
                parsed += 1;
                found_entries.push((path, entry));
            }
            // A file walked twice (under two given paths) was taken the first time.
            Found::Cached { path } => {
                if let Some(entry) = cache.entries.remove(&path) {
                    found_entries.push((path, Box::new(entry)));
                }
            }
            Found::Problem(d) => diagnostics.push(d),
        }
    }
    // Stable, so of a file parsed twice the later entry is kept, as inserting would.
    found_entries.sort_by(|a, b| a.0.cmp(&b.0));
    let entries: BTreeMap<String, CacheEntry> = found_entries
        .into_iter()
        .map(|(path, entry)| (path, *entry))
        .collect();
    let repos = found_repos
        .lock()
        .map(|mut repos| std::mem::take(&mut *repos))
        .unwrap_or_default();
    Walked {
        entries,
        parsed,
        diagnostics,
        repos,
    }
}

/// The walk the scan takes, and the fleet fingerprint with it: `paths`
/// under `root`, honouring ignore files and `config`'s excludes (an invalid
/// pattern is a diagnostic), never entering [`SKIPPED_DIRS`] or the state
/// directory. `on_git` is told of each repository, with its `.git` entry, as
/// the walk meets it; the walk still does not enter `.git`.
pub(crate) fn builder(
    root: &Path,
    paths: &[PathBuf],
    config: &Config,
    state_dir: &Path,
    on_git: impl Fn(&Path, &ignore::DirEntry) + Send + Sync + 'static,
) -> (WalkBuilder, Vec<Diagnostic>) {
    let mut builder = WalkBuilder::new(&paths[0]);
    for path in &paths[1..] {
        builder.add(path);
    }
    let mut diagnostics = Vec::new();
    let mut overrides = OverrideBuilder::new(root);
    for pattern in &config.scan.exclude {
        if let Err(e) = overrides.add(&format!("!{pattern}")) {
            diagnostics.push(Diagnostic::error(
                crate::config::FILE_NAME,
                None,
                format!("invalid exclude pattern {pattern:?}: {e}"),
            ));
        }
    }
    match overrides.build() {
        Ok(o) => {
            builder.overrides(o);
        }
        Err(e) => diagnostics.push(Diagnostic::error(
            crate::config::FILE_NAME,
            None,
            format!("invalid exclude patterns: {e}"),
        )),
    }
    let state_dir = state_dir.to_path_buf();
    builder
        .hidden(false)
        .parents(false)
        .git_global(false)
        .require_git(false)
        .follow_links(false)
        .threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .filter_entry(move |entry| {
            let name = entry.file_name();
            if name == ".git"
                && let Some(dir) = entry.path().parent()
            {
                on_git(dir, entry);
            }
            let skipped = SKIPPED_DIRS.iter().any(|d| name == *d)
                && entry.file_type().is_some_and(|t| t.is_dir());
            !skipped && entry.path() != state_dir
        });
    (builder, diagnostics)
}

/// One walker thread's findings, handed to `shared` when the thread is done.
struct ThreadResults<'a> {
    found: Vec<Found>,
    shared: &'a Mutex<Vec<Found>>,
}

impl Drop for ThreadResults<'_> {
    fn drop(&mut self) {
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.append(&mut self.found);
    }
}

fn visit(
    root: &Path,
    entry: &ignore::DirEntry,
    cache: &Cache,
    max_bytes: u64,
    progress: &Progress,
) -> Option<Found> {
    let rel = relative(root, entry.path());
    if entry.path_is_symlink() {
        return symlink_problem(root, entry.path(), &rel).map(Found::Problem);
    }
    let file_type = entry.file_type()?;
    if file_type.is_dir() {
        return None;
    }
    // The name decides whether the file is read at all (`FileKind::of_text` then checks its content).
    FileKind::of(&rel)?;
    progress.files.fetch_add(1, Ordering::Relaxed);
    if !file_type.is_file() {
        return Some(Found::Problem(Diagnostic::error(
            &rel,
            None,
            "not a regular file; skipped",
        )));
    }
    // A file the cache knows is measured by path and read only if it changed.
    // Any other is opened at once and measured through its handle: one path
    // lookup instead of two, and the size and mtime kept are those of the text read.
    if let Some(known) = cache.entries.get(&rel) {
        let (size, mtime_ns) = match entry.metadata() {
            Ok(m) => measure(&m),
            Err(e) => {
                return Some(Found::Problem(Diagnostic::error(
                    &rel,
                    None,
                    format!("cannot read metadata: {e}"),
                )));
            }
        };
        if known.size == size && known.mtime_ns == mtime_ns && mtime_ns != 0 {
            return Some(Found::Cached { path: rel });
        }
    }
    let (size, mtime_ns, facts) = read_and_parse(entry.path(), &rel, max_bytes);
    progress.parsed.fetch_add(1, Ordering::Relaxed);
    Some(Found::Parsed {
        path: rel,
        entry: Box::new(CacheEntry {
            size,
            mtime_ns,
            facts,
        }),
    })
}

/// A file's size and modification time (ns since the epoch, 0 when unknown).
fn measure(metadata: &std::fs::Metadata) -> (u64, u128) {
    let mtime_ns = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    (metadata.len(), mtime_ns)
}

/// Opens, measures, reads and parses one file: its size, mtime and facts.
fn read_and_parse(path: &Path, rel: &str, max_bytes: u64) -> (u64, u128, Facts) {
    let cannot = |what: &str, e: std::io::Error| {
        (
            0,
            0,
            Facts::from_diagnostic(Diagnostic::error(rel, None, format!("{what}: {e}"))),
        )
    };
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) => return cannot("cannot read", e),
    };
    let (size, mtime_ns) = match file.metadata() {
        Ok(m) => measure(&m),
        Err(e) => return cannot("cannot read metadata", e),
    };
    if size > max_bytes {
        let warning = Diagnostic::warning(
            rel,
            None,
            format!(
                "file is {size} bytes, over the {max_bytes}-byte limit; skipped (raise [scan] max_file_bytes in bulkhead.toml to read it)"
            ),
        );
        return (size, mtime_ns, Facts::from_diagnostic(warning));
    }
    let facts = match read_within(&mut file, size, max_bytes) {
        Ok(bytes) => parse_bytes(rel, bytes, max_bytes),
        Err(e) => Facts::from_diagnostic(Diagnostic::error(rel, None, format!("cannot read: {e}"))),
    };
    (size, mtime_ns, facts)
}

/// The file's bytes, at most one past `max_bytes` (`size`, what it measured, is within it).
/// One read normally takes it all: the buffer has room for a byte more than
/// measured, so a read that stops short at the measured size has met the end
/// of the file, and the second read that would only confirm it is saved.
fn read_within(file: &mut std::fs::File, size: u64, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0; usize::try_from(size + 1).unwrap_or(usize::MAX)];
    let first = match file.read(&mut bytes) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
        Err(e) => return Err(e),
    };
    bytes.truncate(first);
    if first as u64 != size {
        // The file changed size since it was measured, or the read was cut short: read on.
        file.take(max_bytes + 1 - first as u64)
            .read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// Checks and parses one file's bytes.
fn parse_bytes(rel: &str, bytes: Vec<u8>, max_bytes: u64) -> Facts {
    if bytes.len() as u64 > max_bytes {
        return Facts::from_diagnostic(Diagnostic::warning(
            rel,
            None,
            format!("file grew over the {max_bytes}-byte limit while being read; skipped"),
        ));
    }
    if bytes.contains(&0) {
        return Facts::from_diagnostic(Diagnostic::error(
            rel,
            None,
            "binary file (contains NUL bytes); skipped",
        ));
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() as u32 + 1;
            return Facts::from_diagnostic(Diagnostic::error(
                rel,
                Some(line),
                format!("not valid UTF-8 (byte {at}); skipped"),
            ));
        }
    };
    // The name chose the file; the content confirms what it is.
    let Some(kind) = FileKind::of_text(rel, &text) else {
        return Facts::default();
    };
    // The parsers are written not to panic; this guard keeps a parser bug from
    // taking the whole fleet scan down with one file.
    std::panic::catch_unwind(|| scan::parse(rel, kind, &text)).unwrap_or_else(|_| {
        Facts::from_diagnostic(Diagnostic::error(
            rel,
            None,
            "internal error while parsing this file; please report it",
        ))
    })
}

fn symlink_problem(root: &Path, path: &Path, rel: &str) -> Option<Diagnostic> {
    match std::fs::canonicalize(path) {
        Err(e) if e.raw_os_error() == Some(40) => Some(Diagnostic::error(
            rel,
            None,
            format!("symlink loop; not followed ({e})"),
        )),
        Err(e) => Some(Diagnostic::warning(
            rel,
            None,
            format!("broken symlink; not followed ({e})"),
        )),
        Ok(target) if !target.starts_with(root) => Some(Diagnostic::warning(
            rel,
            None,
            format!(
                "symlink points outside the fleet root, to {}; not followed",
                target.display()
            ),
        )),
        // A target inside the root is scanned under its own path.
        Ok(_) => None,
    }
}

fn walk_error(root: &Path, error: &ignore::Error) -> Diagnostic {
    fn path_of(error: &ignore::Error) -> Option<&Path> {
        match error {
            ignore::Error::WithPath { path, .. } => Some(path),
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                path_of(err)
            }
            ignore::Error::Loop { child, .. } => Some(child),
            _ => None,
        }
    }
    let path = path_of(error).map_or_else(String::new, |p| relative(root, p));
    Diagnostic::error(path, None, error.to_string())
}

/// `path` relative to `root`, `/`-separated.
pub(crate) fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests;
