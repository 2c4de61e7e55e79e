//! A stat-only fingerprint of everything a scan reads ([`fingerprint()`]):
//! a 128-bit digest that changes whenever a scan of the same folders could
//! answer differently, taken without reading or parsing a single fleet file.
//!
//! It walks the folders exactly as the scan's walk does (same ignore rules,
//! same skipped folders, same state directory left out) and digests:
//! - every file the scan recognises by name: its path, type, size, mtime,
//!   ctime, inode and device. The scan cache trusts a file whose size and
//!   mtime are unchanged; the ctime and inode also catch a rewrite that
//!   restored the mtime, or a rename over it;
//! - every symlink, with what the scan would say of it (its resolved target
//!   or why it does not resolve), and every error the walk meets;
//! - every repository's checked-out commit as the scan reads it: the text of
//!   `.git/HEAD`, and the stats of the ref it names (or of `packed-refs`)
//!   and of `.git/config`;
//! - the fleet root, the folders given, the state directory, `bulkhead.toml`
//!   as loaded and the tool version.
//!
//! A file written moments before it is measured could be written again
//! within the file system's timestamp granularity, leaving every stat as it
//! was: a fingerprint that saw an mtime less than [`SETTLE`] before its walk
//! began is not [`FleetFingerprint::settled`], and a caller must not keep it.
//!
//! Adding, removing or renaming a recognised file changes the set of paths,
//! and a changed `.gitignore` or exclude pattern changes it exactly when it
//! changes what the scan walks. A caller keeps the digest taken before it
//! scanned beside what it derived from that scan: a file that changes while
//! the scan reads it then no longer matches, so the next run scans again.

use crate::config::Config;
use crate::walk::relative;
use crate::{DiscoverError, ScanOptions, StateDir};
use ignore::{WalkBuilder, WalkState, overrides::OverrideBuilder};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The folders the scan's walk never enters (its own list, repeated: the
/// tests check that both walks meet the same files).
const SKIPPED_DIRS: [&str; 3] = [".git", "node_modules", "vendor"];

/// How long before the walk an mtime must lie for the fingerprint to be
/// kept: more than the coarsest timestamp granularity of common file systems
/// (2 s on FAT), so a rewrite after the walk cannot leave the mtime unchanged.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`fingerprint()`] found: the digest, and what a caller needs to use
/// the fleet's state without scanning it.
#[derive(Debug)]
pub struct FleetFingerprint {
    /// The folder all provenance paths are relative to, as [`crate::scan()`] finds it.
    pub root: PathBuf,
    pub config: Config,
    pub state_dir: StateDir,
    /// 32 hexadecimal digits.
    pub digest: String,
    /// Every mtime lies [`SETTLE`] or more before the walk: the digest may be kept.
    pub settled: bool,
}

/// Fingerprints the fleet a scan with `options` would read (`use_cache` is
/// not part of it: it changes how a scan works, not what it finds).
///
/// # Errors
/// As [`crate::scan()`]: a path that does not exist, or an invalid `bulkhead.toml`.
pub fn fingerprint(options: &ScanOptions) -> Result<FleetFingerprint, DiscoverError> {
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
    let root = crate::common_root(&canonical);
    let config = Config::load(&root)?;
    let state_dir = StateDir::resolve(&root, options.state_dir.as_deref());
    let started = std::time::SystemTime::now();
    let settle_before = started
        .checked_sub(SETTLE)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i128);
    let walk = Walk {
        root: &root,
        settle_before,
        racy: Arc::default(),
    };
    let mut records = walk.records(&canonical, &config, state_dir.path());
    let settled = !walk.racy.load(Ordering::Relaxed);
    // The walk's threads find entries in any order; the digest must not depend on it.
    records.sort_unstable();
    let mut whole = Digest::default();
    whole.add(env!("CARGO_PKG_VERSION").as_bytes());
    whole.add(root.as_os_str().as_encoded_bytes());
    for path in &canonical {
        whole.add(path.as_os_str().as_encoded_bytes());
    }
    whole.add(state_dir.path().as_os_str().as_encoded_bytes());
    whole.add(&serde_json::to_vec(&config).unwrap_or_default());
    for record in &records {
        whole.add(&record.to_le_bytes());
    }
    Ok(FleetFingerprint {
        root,
        config,
        state_dir,
        digest: whole.hex(),
        settled,
    })
}

/// Two SipHash passes under different tags: 128 bits, as the outcome caches
/// key their entries, since a collision would answer a changed fleet wrongly.
#[derive(Default)]
struct Digest {
    parts: Vec<u8>,
}

impl Digest {
    /// Adds one length-prefixed part, so that parts cannot run into each other.
    fn add(&mut self, part: &[u8]) {
        self.parts
            .extend_from_slice(&(part.len() as u64).to_le_bytes());
        self.parts.extend_from_slice(part);
    }

    fn halves(&self) -> (u64, u64) {
        let half = |tag: u8| {
            let mut h = std::hash::DefaultHasher::new();
            tag.hash(&mut h);
            h.write(&self.parts);
            h.finish()
        };
        (half(1), half(2))
    }

    fn value(&self) -> u128 {
        let (a, b) = self.halves();
        (u128::from(a) << 64) | u128::from(b)
    }

    fn hex(&self) -> String {
        let (a, b) = self.halves();
        format!("{a:016x}{b:016x}")
    }
}

/// One fingerprint walk: the root paths are relative to, and whether a stat
/// met an mtime too recent to trust.
struct Walk<'a> {
    root: &'a Path,
    /// [`SETTLE`] before the walk began, in ns since the epoch.
    settle_before: i128,
    racy: Arc<AtomicBool>,
}

impl Walk<'_> {
    /// The walk of [`crate::walk::walk`] with a stat in place of each read:
    /// one 128-bit record per recognised file, symlink, walk error and repository.
    fn records(&self, paths: &[PathBuf], config: &Config, state_dir: &Path) -> Vec<u128> {
        let mut builder = WalkBuilder::new(&paths[0]);
        for path in &paths[1..] {
            builder.add(path);
        }
        // Invalid patterns are reported by the scan from `config`, which the digest holds.
        let mut overrides = OverrideBuilder::new(self.root);
        for pattern in &config.scan.exclude {
            let _ = overrides.add(&format!("!{pattern}"));
        }
        if let Ok(o) = overrides.build() {
            builder.overrides(o);
        }
        // `filter_entry` must own what it uses: repositories go to a list of their own.
        let found_repos: Arc<Mutex<Vec<u128>>> = Default::default();
        let seen_repos = found_repos.clone();
        let repo_root = self.root.to_path_buf();
        let state_dir = state_dir.to_path_buf();
        let stats = Stats {
            settle_before: self.settle_before,
            racy: self.racy.clone(),
        };
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
                    let record = stats.repo_record(&relative(&repo_root, dir), dir);
                    if let Ok(mut repos) = seen_repos.lock() {
                        repos.push(record);
                    }
                }
                let skipped = SKIPPED_DIRS.iter().any(|d| name == *d)
                    && entry.file_type().is_some_and(|t| t.is_dir());
                !skipped && entry.path() != state_dir
            });
        let shared: Mutex<Vec<u128>> = Mutex::new(Vec::new());
        let stats = Stats {
            settle_before: self.settle_before,
            racy: self.racy.clone(),
        };
        builder.build_parallel().run(|| {
            let mut mine = ThreadRecords {
                records: Vec::new(),
                shared: &shared,
            };
            let stats = &stats;
            Box::new(move |result| {
                let record = match result {
                    Ok(entry) => stats.entry_record(self.root, &entry),
                    Err(e) => {
                        let mut d = Digest::default();
                        d.add(b"error");
                        d.add(e.to_string().as_bytes());
                        Some(d.value())
                    }
                };
                mine.records.extend(record);
                WalkState::Continue
            })
        });
        let mut records = shared
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(mut repos) = found_repos.lock() {
            records.append(&mut repos);
        }
        records
    }
}

/// One walker thread's records, handed over when the walk drops its visitor.
struct ThreadRecords<'a> {
    records: Vec<u128>,
    shared: &'a Mutex<Vec<u128>>,
}

impl Drop for ThreadRecords<'_> {
    fn drop(&mut self) {
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.append(&mut self.records);
    }
}

/// Digests stats, and flags the walk when one is too recent to trust.
struct Stats {
    settle_before: i128,
    racy: Arc<AtomicBool>,
}

impl Stats {
    /// The record of what the scan would make of one walked entry, if it makes anything.
    fn entry_record(&self, root: &Path, entry: &ignore::DirEntry) -> Option<u128> {
        let rel = relative(root, entry.path());
        let mut d = Digest::default();
        if entry.path_is_symlink() {
            // The scan reports a symlink by where it leads.
            d.add(b"symlink");
            d.add(rel.as_bytes());
            match std::fs::canonicalize(entry.path()) {
                Ok(target) => d.add(target.as_os_str().as_encoded_bytes()),
                Err(e) => d.add(e.to_string().as_bytes()),
            }
            return Some(d.value());
        }
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            return None;
        }
        scan::FileKind::of(&rel)?;
        d.add(b"file");
        d.add(rel.as_bytes());
        match entry.metadata() {
            Ok(m) => self.add(&mut d, &m),
            Err(e) => d.add(e.to_string().as_bytes()),
        }
        Some(d.value())
    }

    /// The record of a repository's checked-out commit and remote, as
    /// [`crate::git`] reads them: `HEAD`'s text, then the stats of the files
    /// it reads after it.
    fn repo_record(&self, rel: &str, dir: &Path) -> u128 {
        let git_dir = dir.join(".git");
        let mut d = Digest::default();
        d.add(b"repo");
        d.add(rel.as_bytes());
        // Through symlinks, as reading does; `true` for a regular file.
        let stat = |d: &mut Digest, path: &Path| match std::fs::metadata(path) {
            Ok(m) => {
                d.add(b"found");
                self.add(d, &m);
                m.is_file()
            }
            Err(_) => {
                d.add(b"missing");
                false
            }
        };
        match std::fs::read(git_dir.join("HEAD")) {
            Ok(head) => {
                d.add(&head);
                let text = String::from_utf8_lossy(&head);
                if let Some(reference) = text.trim().strip_prefix("ref: ")
                    && !stat(&mut d, &git_dir.join(reference))
                {
                    stat(&mut d, &git_dir.join("packed-refs"));
                }
            }
            Err(_) => d.add(b"no HEAD"),
        }
        stat(&mut d, &git_dir.join("config"));
        d.value()
    }

    /// Adds what decides a file's content under the scan's trust in file stats.
    fn add(&self, d: &mut Digest, m: &std::fs::Metadata) {
        let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
        if mtime >= self.settle_before {
            self.racy.store(true, Ordering::Relaxed);
        }
        for n in [
            u64::from(m.mode()),
            m.size(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            m.ctime() as u64,
            m.ctime_nsec() as u64,
            m.ino(),
            m.dev(),
        ] {
            d.add(&n.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
