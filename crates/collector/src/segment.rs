//! The span bytes: append-only segment files in `DIR/segments/`, numbered in
//! order (`00000001.spans`, ...). SQLite (see [`crate::store`]) holds the
//! index: each span row names its segment, offset and length, and each group
//! commit the end of its segment as of that commit.
//!
//! A group commit's span bytes are one `pwrite` at the segment's committed
//! end, made (and with `--fsync`, `fdatasync`ed) before the SQLite transaction
//! that points at them commits. What lies past the committed end is a write
//! whose index never committed: the next commit writes over it, and opening
//! the store cuts it off ([`recover`]). A segment is full past
//! [`DEFAULT_SEGMENT_BYTES`]; retention deletes whole segments, oldest first.
//!
//! Reads open the few segments a query needs and `pread` contiguous spans in
//! one call; no descriptor outlives a query, so a segment retention removed
//! frees its space at once.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The folder of segment files inside the data directory.
pub const SEGMENT_DIR: &str = "segments";

/// A segment takes no more group commits once it is this large.
pub const DEFAULT_SEGMENT_BYTES: u64 = 128 << 20;

/// A segment file's path.
pub fn path(dir: &Path, segment: i64) -> PathBuf {
    dir.join(format!("{segment:08}.spans"))
}

/// The segment numbers present in `dir`, in order.
fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".spans"))
            .and_then(|n| n.parse().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Bytes held by the files in `dir`: the segments and their sealed trace
/// indexes (see [`crate::trace_index`]).
pub fn total_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
}

/// Brings `dir` in line with the index: every segment the index names is cut
/// back to its committed end (`committed`: segment and end, in order), every
/// other segment file is removed (written but never committed, or emptied by
/// retention before it could be removed). Returns the segment to append to
/// and its end.
///
/// # Errors
///
/// The folder or a segment that cannot be read, cut or removed.
pub fn recover(dir: &Path, committed: &[(i64, u64)]) -> io::Result<(i64, u64)> {
    std::fs::create_dir_all(dir)?;
    let on_disk = list(dir)?;
    let ends: HashMap<i64, u64> = committed.iter().copied().collect();
    for &segment in &on_disk {
        let file = path(dir, segment);
        match ends.get(&segment) {
            Some(&end) => {
                let f = OpenOptions::new().write(true).open(&file)?;
                if f.metadata()?.len() > end {
                    f.set_len(end)?;
                    f.sync_all()?;
                }
            }
            None => std::fs::remove_file(&file)?,
        }
    }
    Ok(match committed.last() {
        Some(&last) => last,
        None => (on_disk.last().map_or(1, |n| n + 1), 0),
    })
}

/// The writer's side: the segment being filled and its committed end.
#[derive(Debug)]
pub struct Appender {
    dir: PathBuf,
    segment: i64,
    end: u64,
    file: Option<File>,
    max_bytes: u64,
    fsync: bool,
}

impl Appender {
    /// Appends to `segment` from `end` on (what [`recover`] returned).
    pub fn new(dir: PathBuf, (segment, end): (i64, u64), fsync: bool) -> Appender {
        Appender {
            dir,
            segment,
            end,
            file: None,
            max_bytes: DEFAULT_SEGMENT_BYTES,
            fsync,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment being filled.
    pub fn segment(&self) -> i64 {
        self.segment
    }

    pub fn set_max_bytes(&mut self, max_bytes: u64) {
        self.max_bytes = max_bytes.max(1);
    }

    /// Starts a new segment for the next write.
    pub fn roll(&mut self) {
        self.segment += 1;
        self.end = 0;
        self.file = None;
    }

    /// Writes `bytes` at the committed end (in a new segment when this one is
    /// full) without committing them; returns the segment and offset they
    /// went to. Until [`Appender::commit`], the next write goes to the same place.
    ///
    /// # Errors
    ///
    /// The segment cannot be created or written (or synced, with fsync).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<(i64, u64)> {
        if self.end > 0 && self.end + bytes.len() as u64 > self.max_bytes {
            self.roll();
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let p = path(&self.dir, self.segment);
                let created = !p.exists();
                // Not truncated: a segment opened again after a restart holds committed spans.
                let f = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&p)?;
                if created && self.fsync {
                    // The new file's name must survive power loss too.
                    File::open(&self.dir)?.sync_all()?;
                }
                self.file.insert(f)
            }
        };
        file.write_all_at(bytes, self.end)?;
        if self.fsync {
            file.sync_data()?;
        }
        Ok((self.segment, self.end))
    }

    /// The last write's index committed: the end moves past it.
    pub fn commit(&mut self, len: usize) {
        self.end += len as u64;
    }

    /// The committed end of the segment being filled.
    pub fn end(&self) -> u64 {
        self.end
    }
}

/// Reads spans by (segment, offset, length) for one query, each segment opened once.
#[derive(Debug)]
pub struct Files<'a> {
    dir: &'a Path,
    open: HashMap<i64, Option<File>>,
}

impl<'a> Files<'a> {
    pub fn new(dir: &'a Path) -> Files<'a> {
        Files {
            dir,
            open: HashMap::new(),
        }
    }

    /// `len` bytes at `offset` of `segment`; `None` when the segment is gone
    /// (retention removed it after the index rows were read) or too short.
    pub fn read(&mut self, segment: i64, offset: u64, len: usize) -> Option<Vec<u8>> {
        let dir = self.dir;
        let file = self
            .open
            .entry(segment)
            .or_insert_with(|| File::open(path(dir, segment)).ok())
            .as_ref()?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    }

    /// The bytes of each (segment, offset, length), in order, with one read
    /// per run of spans that lie back to back (a trace's spans of one commit do).
    pub fn read_all(&mut self, places: &[(i64, u64, usize)]) -> Vec<Option<Vec<u8>>> {
        let mut out = Vec::with_capacity(places.len());
        let mut i = 0;
        while i < places.len() {
            let (segment, start, _) = places[i];
            let mut end = i + 1;
            let mut stop = start + places[i].2 as u64;
            while end < places.len() && places[end].0 == segment && places[end].1 == stop {
                stop += places[end].2 as u64;
                end += 1;
            }
            match self.read(segment, start, (stop - start) as usize) {
                Some(run) => {
                    for &(_, offset, len) in &places[i..end] {
                        let at = (offset - start) as usize;
                        out.push(Some(run[at..at + len].to_vec()));
                    }
                }
                None => out.extend(std::iter::repeat_n(None, end - i)),
            }
            i = end;
        }
        out
    }
}
