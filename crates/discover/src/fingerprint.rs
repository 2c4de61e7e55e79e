//! A stat-only fingerprint of everything a scan reads: a 128-bit digest that
//! changes whenever a scan of the same folders could answer differently,
//! taken without reading or parsing a single fleet file.
//!
//! [`FleetStats::walk`] walks the folders exactly as the scan's walk does (same
//! ignore rules, same skipped folders, same state directory left out) and
//! digests one record per:
//! - file the scan recognises by name: its path, type, size, mtime, ctime,
//!   inode and device. The scan cache trusts a file whose size and mtime are
//!   unchanged; the ctime and inode also catch a rewrite that restored the
//!   mtime, or a rename over it;
//! - folder the walk enters, with the same stats: a file or folder added,
//!   removed or renamed in it changes its mtime;
//! - `.gitignore` and `.ignore` in those folders (what decides which of their
//!   entries the walk takes), with the same stats;
//! - symlink, with what the scan would say of it (its resolved target or why
//!   it does not resolve), and error the walk meets;
//! - repository: the stats of `.git/HEAD`, the ref it names (or
//!   `packed-refs`), `.git/config` and `.git/info/exclude` (or, while it is
//!   missing, the folder it would be created in), and the ref's name;
//!
//! and the fleet root, the folders given, the state directory, `bulkhead.toml`
//! as loaded and the tool version. It also lists what it digested
//! ([`StatWalk::watch`]): [`FleetStats::recheck`] stats that list again, without
//! reading a folder, and gives the same digest while nothing changed. A
//! change it does not stat directly (a new file, a new `.gitignore`, a new
//! repository) changes the mtime of a folder it does stat.
//!
//! A file written moments before it is measured could be written again
//! within the file system's timestamp granularity, leaving every stat as it
//! was: a walk that saw an mtime less than [`SETTLE`] before it began, met an
//! error, or met what the list cannot hold, is not [`StatWalk::settled`], and a
//! caller must not keep it. A caller keeps the digest taken before it scanned
//! beside what it derived from that scan: a file that changes while the scan
//! reads it then no longer matches, so the next run scans again.

use crate::config::Config;
use crate::walk::relative;
use crate::{DiscoverError, ScanOptions, StateDir};
use ignore::WalkState;
use rustix::fs::{AtFlags, FileType, OFlags, StatxFlags};
use std::hash::{Hash, Hasher};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The files in a folder that decide which of its entries the walk takes.
const IGNORE_FILES: [&str; 2] = [".gitignore", ".ignore"];

/// Where a repository's exclude file is, or else would appear: the file,
/// else `info` (whose mtime its creation moves), else `.git` itself.
const EXCLUDE_PLACES: [&str; 3] = ["info/exclude", "info", ""];

/// How long before the walk an mtime must lie for the fingerprint to be
/// kept: more than the coarsest timestamp granularity of common file systems
/// (2 s on FAT), so a rewrite after the walk cannot leave the mtime unchanged.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// A fleet located, not yet walked: its folders, root, configuration and
/// state directory, as [`crate::scan()`] starts from them.
#[derive(Debug)]
pub struct FleetStats {
    /// The folder all provenance paths are relative to.
    pub root: PathBuf,
    pub config: Config,
    pub state_dir: StateDir,
    /// The folders given, canonical.
    pub(crate) paths: Vec<PathBuf>,
}

/// What [`FleetStats::walk`] found.
#[derive(Debug)]
pub struct StatWalk {
    /// 32 hexadecimal digits.
    pub digest: String,
    /// Every mtime lies two seconds (the settle time) or more before the walk, and the walk met
    /// neither an error nor a path the list cannot hold: the digest may be kept.
    pub settled: bool,
    /// What [`FleetStats::recheck`] stats again: one line per record.
    pub watch: String,
}

impl FleetStats {
    /// Locates the fleet a scan with `options` would read: its root,
    /// configuration and state directory (`use_cache` plays no part).
    ///
    /// # Errors
    /// As [`crate::scan()`]: a path that does not exist, or an invalid `bulkhead.toml`.
    pub fn locate(options: &ScanOptions) -> Result<FleetStats, DiscoverError> {
        let given: Vec<PathBuf> = if options.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            options.paths.clone()
        };
        let mut paths = Vec::new();
        for path in &given {
            let c = std::fs::canonicalize(path)
                .map_err(|_| DiscoverError::NotFound { path: path.clone() })?;
            paths.push(c);
        }
        let root = crate::common_root(&paths);
        let config = Config::load(&root)?;
        let state_dir = StateDir::resolve(&root, options.state_dir.as_deref());
        Ok(FleetStats {
            root,
            config,
            state_dir,
            paths,
        })
    }

    /// Walks the fleet as the scan does, statting instead of reading.
    pub fn walk(&self) -> StatWalk {
        let settle_before = std::time::SystemTime::now()
            .checked_sub(SETTLE)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        let stats = Arc::new(Stats::new(&self.root, settle_before));
        let mut found = walk_records(self, &stats);
        let records: Vec<u128> = found.iter().map(|(record, _)| *record).collect();
        found.sort_unstable_by(|a, b| a.1.cmp(&b.1));
        let mut watch = String::new();
        for (_, line) in &found {
            if line.contains('\n') {
                stats.unsettle();
            }
            watch.push_str(line);
            watch.push('\n');
        }
        StatWalk {
            digest: self.digest(records),
            settled: !stats.unsettled.load(Ordering::Relaxed),
            watch,
        }
    }

    /// The digest of the records `watch` lists, taken again by stats alone:
    /// [`StatWalk::digest`] while nothing changed.
    pub fn recheck(&self, watch: &str) -> String {
        let stats = Stats::new(&self.root, i128::MAX);
        let lines: Vec<&str> = watch.lines().collect();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = lines.len().div_ceil(threads).max(1);
        let records = std::thread::scope(|s| {
            let parts: Vec<_> = lines
                .chunks(chunk)
                .map(|part| {
                    let stats = &stats;
                    s.spawn(move || {
                        part.iter()
                            .map(|line| stats.again(line))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().unwrap_or_default())
                .collect()
        });
        self.digest(records)
    }

    /// The digest of the fleet's records, in any order, and of where and how it is scanned.
    fn digest(&self, mut records: Vec<u128>) -> String {
        records.sort_unstable();
        let mut whole = Digest::default();
        whole.add(env!("CARGO_PKG_VERSION").as_bytes());
        whole.add(self.root.as_os_str().as_encoded_bytes());
        for path in &self.paths {
            whole.add(path.as_os_str().as_encoded_bytes());
        }
        whole.add(self.state_dir.path().as_os_str().as_encoded_bytes());
        whole.add(&serde_json::to_vec(&self.config).unwrap_or_default());
        for record in &records {
            whole.add(&record.to_le_bytes());
        }
        whole.hex()
    }
}

/// Two SipHash passes under different tags: 128 bits, as the outcome caches
/// key their entries, since a collision would answer a changed fleet wrongly.
#[derive(Default)]
struct Digest {
    parts: Vec<u8>,
}

impl Digest {
    fn new(kind: &[u8], rel: &str) -> Digest {
        let mut d = Digest::default();
        d.add(kind);
        d.add(rel.as_bytes());
        d
    }

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

/// The walk of [`crate::walk::walk`] with stats in place of reads: each
/// record with its line of the watch list.
fn walk_records(fleet: &FleetStats, stats: &Arc<Stats>) -> Vec<(u128, String)> {
    // `on_git` must own what it uses: repositories go to a list of their own.
    // Invalid patterns are reported by the scan from the configuration, which the digest holds.
    let found_repos: Arc<Mutex<Vec<(u128, String)>>> = Default::default();
    let seen_repos = found_repos.clone();
    let repo_stats = stats.clone();
    let (builder, _) = crate::walk::builder(
        &fleet.root,
        &fleet.paths,
        &fleet.config,
        fleet.state_dir.path(),
        move |dir, git| {
            let found = repo_stats.first_repo(dir, git);
            if let Ok(mut repos) = seen_repos.lock() {
                repos.push(found);
            }
        },
    );
    let shared: Mutex<Vec<(u128, String)>> = Mutex::new(Vec::new());
    builder.build_parallel().run(|| {
        let mut mine = ThreadRecords {
            records: Vec::new(),
            shared: &shared,
        };
        let stats = &**stats;
        Box::new(move |result| {
            match result {
                Ok(entry) => stats.first_entry(&entry, &mut mine.records),
                Err(e) => {
                    stats.unsettle();
                    let mut d = Digest::new(b"error", "");
                    d.add(e.to_string().as_bytes());
                    mine.records.push((d.value(), format!("e{e}")));
                }
            }
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

/// One walker thread's records, handed over when the walk drops its visitor.
struct ThreadRecords<'a> {
    records: Vec<(u128, String)>,
    shared: &'a Mutex<Vec<(u128, String)>>,
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

/// Makes records from stats, the same way on the walk and on the recheck.
/// A watch line is a kind letter, the path relative to the root, and for a
/// repository a tab and the ref its HEAD names.
struct Stats {
    root: PathBuf,
    /// The root, open: every stat is relative to it, so the kernel resolves
    /// only the path below the root (most of a recheck's time is resolving
    /// paths).
    root_fd: std::io::Result<OwnedFd>,
    /// [`SETTLE`] before the walk began, in ns since the epoch.
    settle_before: i128,
    unsettled: AtomicBool,
}

/// What a record holds of a file's stats.
struct Stat {
    mode: u32,
    size: u64,
    mtime: i64,
    mtime_nsec: u32,
    ctime: i64,
    ctime_nsec: u32,
    ino: u64,
    dev: u64,
}

/// `tail` under the folder `rel` (relative to the root; empty for the root).
fn under(rel: &str, tail: &str) -> String {
    if rel.is_empty() {
        tail.to_string()
    } else {
        format!("{rel}/{tail}")
    }
}

impl Stats {
    fn new(root: &Path, settle_before: i128) -> Stats {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        Stats {
            root: root.to_path_buf(),
            root_fd: rustix::fs::open(root, flags, rustix::fs::Mode::empty()).map_err(Into::into),
            settle_before,
            unsettled: AtomicBool::new(false),
        }
    }

    /// The stats of `rel` (relative to the root), of a symlink itself unless `follow`.
    fn stat(&self, rel: &str, follow: bool) -> std::io::Result<Stat> {
        let root = self
            .root_fd
            .as_ref()
            .map_err(|e| std::io::Error::new(e.kind(), e.to_string()))?;
        let flags = if follow {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        let rel = if rel.is_empty() { "." } else { rel };
        let s = rustix::fs::statx(root, rel, flags, StatxFlags::BASIC_STATS)?;
        Ok(Stat {
            mode: u32::from(s.stx_mode),
            size: s.stx_size,
            mtime: s.stx_mtime.tv_sec,
            mtime_nsec: s.stx_mtime.tv_nsec,
            ctime: s.stx_ctime.tv_sec,
            ctime_nsec: s.stx_ctime.tv_nsec,
            ino: s.stx_ino,
            dev: rustix::fs::makedev(s.stx_dev_major, s.stx_dev_minor),
        })
    }

    fn unsettle(&self) {
        self.unsettled.store(true, Ordering::Relaxed);
    }

    /// The records of one walked entry, if the scan makes anything of it.
    fn first_entry(&self, entry: &ignore::DirEntry, out: &mut Vec<(u128, String)>) {
        let rel = relative(&self.root, entry.path());
        if entry.path().to_str().is_none() {
            // Its name, made readable, is not a path the recheck could stat.
            self.unsettle();
        }
        if entry.path_is_symlink() {
            out.push((self.symlink(&rel), format!("s{rel}")));
            return;
        }
        let Some(file_type) = entry.file_type() else {
            return;
        };
        if file_type.is_dir() {
            out.push((
                self.file(b"dir", &rel, self.stat(&rel, false)),
                format!("d{rel}"),
            ));
            // Their absence is in the folder's mtime; their presence needs their own stats.
            for name in IGNORE_FILES {
                let rel = under(&rel, name);
                if let Ok(m) = self.stat(&rel, false) {
                    out.push((self.file(b"ignore", &rel, Ok(m)), format!("i{rel}")));
                }
            }
            return;
        }
        if scan::FileKind::of(&rel).is_some() {
            let m = self.stat(&rel, false);
            out.push((self.file(b"file", &rel, m), format!("f{rel}")));
        }
    }

    /// A repository's record on the walk, reading the ref name from `HEAD`.
    fn first_repo(&self, dir: &Path, git: &ignore::DirEntry) -> (u128, String) {
        let rel = relative(&self.root, dir);
        if !git.file_type().is_some_and(|t| t.is_dir()) {
            // A `.git` file points elsewhere, where the list does not follow.
            self.unsettle();
        }
        // HEAD is measured before it is read: a change between leaves the
        // record unlike the next one.
        let head = self.stat(&under(&rel, ".git/HEAD"), true);
        let text = std::fs::read_to_string(dir.join(".git/HEAD")).unwrap_or_default();
        let reference = text.trim().strip_prefix("ref: ").unwrap_or("").to_string();
        if reference.contains(['\t', '\n']) {
            self.unsettle();
        }
        let (record, exclude_at) = self.repo(&rel, head, &reference, None);
        (record, format!("g{rel}\t{reference}\t{exclude_at}"))
    }

    /// The record of one watch line, statted again.
    fn again(&self, line: &str) -> u128 {
        let (kind, rest) = line.split_at(line.len().min(1));
        match kind {
            "f" => self.file(b"file", rest, self.stat(rest, false)),
            "d" => self.file(b"dir", rest, self.stat(rest, false)),
            "i" => self.file(b"ignore", rest, self.stat(rest, false)),
            "s" => self.symlink(rest),
            "g" => {
                let mut parts = rest.splitn(3, '\t');
                let (rel, reference) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let exclude_at = parts.next();
                match EXCLUDE_PLACES.into_iter().find(|p| exclude_at == Some(*p)) {
                    Some(at) => {
                        let head = self.stat(&under(rel, ".git/HEAD"), true);
                        self.repo(rel, head, reference, Some(at)).0
                    }
                    None => Digest::new(b"unknown", line).value(),
                }
            }
            // Errors are never kept; anything else is not a line this module wrote.
            _ => Digest::new(b"unknown", line).value(),
        }
    }

    fn file(&self, kind: &[u8], rel: &str, m: std::io::Result<Stat>) -> u128 {
        let mut d = Digest::new(kind, rel);
        self.add(&mut d, &m);
        d.value()
    }

    /// The scan reports a symlink by where it leads.
    fn symlink(&self, rel: &str) -> u128 {
        let mut d = Digest::new(b"symlink", rel);
        match std::fs::canonicalize(self.root.join(rel)) {
            Ok(target) => d.add(target.as_os_str().as_encoded_bytes()),
            Err(e) => d.add(e.to_string().as_bytes()),
        }
        d.value()
    }

    /// A repository's checked-out commit and remote as [`crate::git`] reads
    /// them, and the exclude file the walk reads, by their stats.
    /// `exclude_at` is where the walk found the exclude file or would see it
    /// created (one of [`EXCLUDE_PLACES`]); `None` on the walk, which finds it
    /// and returns it.
    fn repo(
        &self,
        rel: &str,
        head: std::io::Result<Stat>,
        reference: &str,
        exclude_at: Option<&'static str>,
    ) -> (u128, &'static str) {
        let git_dir = under(rel, ".git");
        let mut d = Digest::new(b"repo", rel);
        d.add(reference.as_bytes());
        self.add(&mut d, &head);
        // Through symlinks, as reading does.
        let stat = |d: &mut Digest, tail: &str| {
            let m = self.stat(&under(&git_dir, tail), true);
            self.add(d, &m);
            m.is_ok_and(|m| FileType::from_raw_mode(m.mode) == FileType::RegularFile)
        };
        if !reference.is_empty() && !stat(&mut d, reference) {
            stat(&mut d, "packed-refs");
        }
        stat(&mut d, "config");
        let exclude = |at: &str| self.stat(&under(&git_dir, at), true);
        let (at, m) = match exclude_at {
            Some(at) => (at, exclude(at)),
            None => EXCLUDE_PLACES
                .into_iter()
                .map(|at| (at, exclude(at)))
                .find(|(at, m)| m.is_ok() || at.is_empty())
                .unwrap_or(("", Err(std::io::ErrorKind::NotFound.into()))),
        };
        d.add(at.as_bytes());
        self.add(&mut d, &m);
        (d.value(), at)
    }

    /// Adds what decides a file's content under the scan's trust in file stats.
    fn add(&self, d: &mut Digest, m: &std::io::Result<Stat>) {
        let m = match m {
            Ok(m) => m,
            Err(e) => {
                d.add(b"unreadable");
                d.add(format!("{:?}", e.kind()).as_bytes());
                return;
            }
        };
        let mtime = i128::from(m.mtime) * 1_000_000_000 + i128::from(m.mtime_nsec);
        if mtime >= self.settle_before {
            self.unsettle();
        }
        for n in [
            u64::from(m.mode),
            m.size,
            m.mtime as u64,
            u64::from(m.mtime_nsec),
            m.ctime as u64,
            u64::from(m.ctime_nsec),
            m.ino,
            m.dev,
        ] {
            d.add(&n.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
