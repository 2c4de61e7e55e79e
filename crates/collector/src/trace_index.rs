//! The trace-id index: for each trace id, the runs of span row ids
//! (first, last) that hold its spans.
//!
//! Trace ids are random, so a B-tree keyed by them takes every group commit's
//! new traces on as many random leaf pages, each written again to the WAL.
//! This index only ever appends: the segment being filled keeps its runs in
//! memory (a hash map, updated after each commit), and a segment that is
//! full is sealed into a sorted file beside it, `NNNNNNNN.traces`, written
//! once. A lookup reads the map and, for each sealed file, looks the id's
//! first four bytes up in that file's prefixes (kept in memory, 4 bytes per
//! run): only a file that holds the prefix is read, and only its matching
//! entries, so a lookup costs no I/O for the segments without the trace.
//!
//! The index holds nothing SQLite does not: a sealed file is derived from the
//! span rows (written to a temporary name, synced, then renamed, so a file
//! under its own name is whole), and the map of the open segment is rebuilt
//! from them when the store opens (see [`crate::store::Writer::open`]); a
//! sealed file that is missing or of the wrong length is rebuilt as well.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A trace id.
pub type TraceId = [u8; 16];

/// Span row ids `first..=last`, all of one trace.
pub type Run = (i64, i64);

/// Bytes of one entry in a sealed file: trace id, first and last row id (little-endian).
const ENTRY: usize = 32;

/// Ends a sealed file: its entry count follows, so a file of any other length is not taken.
const MAGIC: &[u8; 8] = b"bhtrace1";

/// A sealed segment's index file.
pub fn path(dir: &Path, segment: i64) -> PathBuf {
    dir.join(format!("{segment:08}.traces"))
}

/// A sealed file, open, with the first four bytes of each entry's trace id
/// (sorted, as the entries are).
#[derive(Debug)]
struct Sealed {
    file: File,
    prefixes: Vec<u32>,
}

fn prefix(id: &[u8]) -> u32 {
    u32::from_be_bytes([id[0], id[1], id[2], id[3]])
}

fn prefixes(body: &[u8]) -> Vec<u32> {
    body.chunks_exact(ENTRY).map(prefix).collect()
}

impl Sealed {
    /// Opens and checks a sealed file; `None` when it is missing or not whole.
    fn open(file: &Path) -> io::Result<Option<Sealed>> {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(body_len) = bytes.len().checked_sub(16) else {
            return Ok(None);
        };
        let (body, tail) = bytes.split_at(body_len);
        let entries = u64::from_le_bytes(tail[8..].try_into().unwrap_or_default()) as usize;
        if &tail[..8] != MAGIC || entries.checked_mul(ENTRY) != Some(body.len()) {
            return Ok(None);
        }
        Ok(Some(Sealed {
            file: File::open(file)?,
            prefixes: prefixes(body),
        }))
    }

    /// The runs of `id` in this file: the entries whose prefix is the id's, read in one `pread`.
    fn runs(&self, id: &TraceId, out: &mut Vec<Run>) {
        let p = prefix(id);
        let from = self.prefixes.partition_point(|&q| q < p);
        let to = from + self.prefixes[from..].partition_point(|&q| q == p);
        if from == to {
            return;
        }
        let mut buf = vec![0u8; (to - from) * ENTRY];
        if self
            .file
            .read_exact_at(&mut buf, (from * ENTRY) as u64)
            .is_err()
        {
            return;
        }
        out.extend(
            buf.chunks_exact(ENTRY)
                .filter(|entry| entry[..16] == id[..])
                .map(decode_run),
        );
    }
}

fn decode_run(entry: &[u8]) -> Run {
    let int = |at: usize| i64::from_le_bytes(entry[at..at + 8].try_into().unwrap_or_default());
    (int(16), int(24))
}

#[derive(Debug, Default)]
struct State {
    /// Runs of the segment being filled.
    open: HashMap<TraceId, Vec<Run>>,
    sealed: BTreeMap<i64, Arc<Sealed>>,
}

/// The trace-id index of one store, shared by its writer and its readers.
#[derive(Debug)]
pub struct TraceIndex {
    dir: PathBuf,
    state: RwLock<State>,
}

impl TraceIndex {
    /// An empty index whose sealed files go to `dir` (the segments' folder).
    pub fn new(dir: PathBuf) -> TraceIndex {
        TraceIndex {
            dir,
            state: RwLock::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every run of `id`, in row-id order.
    pub fn runs(&self, id: &TraceId) -> Vec<Run> {
        let (mut out, sealed): (Vec<Run>, Vec<Arc<Sealed>>) = {
            let state = self.state();
            (
                state.open.get(id).cloned().unwrap_or_default(),
                state.sealed.values().cloned().collect(),
            )
        };
        // The files are read without the lock, so a commit never waits for a lookup's reads.
        for s in &sealed {
            s.runs(id, &mut out);
        }
        out.sort_unstable();
        out
    }

    /// Adds the runs of a commit to the segment being filled.
    pub fn add(&self, runs: impl IntoIterator<Item = (TraceId, Run)>) {
        let mut state = self.state_mut();
        for (id, run) in runs {
            state.open.entry(id).or_default().push(run);
        }
    }

    /// Takes the sealed file of `segment` when it is there and whole; returns
    /// whether it was (if not, [`TraceIndex::seal`] must write it).
    ///
    /// # Errors
    ///
    /// A file that exists but cannot be read.
    pub fn load(&self, segment: i64) -> io::Result<bool> {
        let Some(sealed) = Sealed::open(&path(&self.dir, segment))? else {
            return Ok(false);
        };
        self.state_mut().sealed.insert(segment, Arc::new(sealed));
        Ok(true)
    }

    /// Seals `segment`: writes `runs` (or, when `None`, the runs in memory)
    /// sorted into its file, then serves lookups from the file and empties
    /// the map. A segment without runs gets no file.
    ///
    /// # Errors
    ///
    /// The file cannot be written, synced or renamed; the runs then stay
    /// where they were.
    pub fn seal(&self, segment: i64, runs: Option<Vec<(TraceId, Run)>>) -> io::Result<()> {
        let from_memory = runs.is_none();
        let mut entries = runs.unwrap_or_else(|| {
            self.state()
                .open
                .iter()
                .flat_map(|(id, runs)| runs.iter().map(move |&r| (*id, r)))
                .collect()
        });
        let mut sealed = None;
        if !entries.is_empty() {
            entries.sort_unstable();
            let mut bytes = Vec::with_capacity(entries.len() * ENTRY + 16);
            for (id, (first, last)) in &entries {
                bytes.extend_from_slice(id);
                bytes.extend_from_slice(&first.to_le_bytes());
                bytes.extend_from_slice(&last.to_le_bytes());
            }
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&(entries.len() as u64).to_le_bytes());
            let file = path(&self.dir, segment);
            let temporary = file.with_extension("traces.tmp");
            let mut f = File::create(&temporary)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            std::fs::rename(&temporary, &file)?;
            sealed = Some(Sealed {
                file: File::open(&file)?,
                prefixes: prefixes(&bytes[..entries.len() * ENTRY]),
            });
        }
        // One step, so no lookup sees a run both in the map and in the file.
        let mut state = self.state_mut();
        if let Some(sealed) = sealed {
            state.sealed.insert(segment, Arc::new(sealed));
        }
        if from_memory {
            state.open.clear();
        }
        Ok(())
    }

    /// Forgets `segment` (retention removed it) and removes its file.
    ///
    /// # Errors
    ///
    /// The file exists and cannot be removed.
    pub fn remove(&self, segment: i64) -> io::Result<()> {
        self.state_mut().sealed.remove(&segment);
        match std::fs::remove_file(path(&self.dir, segment)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The runs of span rows `(id, trace id)` given in row-id order: rows of one
/// trace with consecutive ids make one run.
pub fn runs_of(rows: impl IntoIterator<Item = (i64, TraceId)>) -> Vec<(TraceId, Run)> {
    let mut out: Vec<(TraceId, Run)> = Vec::new();
    for (row, id) in rows {
        match out.last_mut() {
            Some((last_id, run)) if *last_id == id && run.1 + 1 == row => run.1 = row,
            _ => out.push((id, (row, row))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::TempDir;

    /// Ids `[i; 16]` for i in 0..n with `runs(i)` runs each, and beside each
    /// a sibling id of the same first four bytes (the prefix kept in memory).
    fn entries(n: u8, runs: impl Fn(u8) -> i64) -> Vec<(TraceId, Run)> {
        let mut row = 0;
        let mut out = Vec::new();
        for i in 0..n {
            let mut sibling = [i; 16];
            sibling[15] = !i;
            for id in [[i; 16], sibling] {
                for _ in 0..runs(i) {
                    row += 1;
                    out.push((id, (row, row)));
                }
            }
        }
        out
    }

    #[test]
    fn sealed_files_answer_like_the_map() {
        let dir = TempDir::new("trace-index");
        let runs = |i: u8| i64::from(i % 7) * 5;
        let index = TraceIndex::new(dir.path().to_path_buf());
        index.add(entries(200, runs));
        let from_map: Vec<Vec<Run>> = (0..=200).map(|i| index.runs(&[i; 16])).collect();
        index.seal(3, None).unwrap();
        // The map is empty now: every answer comes from the file.
        assert!(index.state().open.is_empty());
        for i in 0..=200u8 {
            let want = &from_map[usize::from(i)];
            assert_eq!(want.len() as i64, if i < 200 { runs(i) } else { 0 });
            assert_eq!(&index.runs(&[i; 16]), want, "trace {i}");
        }
        // Reopened from the file alone.
        let again = TraceIndex::new(dir.path().to_path_buf());
        assert!(again.load(3).unwrap());
        for i in 0..=200u8 {
            assert_eq!(&again.runs(&[i; 16]), &from_map[usize::from(i)]);
        }
        // A file cut short is not taken; a removed one is forgotten.
        let file = path(dir.path(), 3);
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 1]).unwrap();
        assert!(!TraceIndex::new(dir.path().to_path_buf()).load(3).unwrap());
        again.remove(3).unwrap();
        assert!(again.runs(&[1; 16]).is_empty());
        assert!(!file.exists());
    }

    #[test]
    fn runs_of_rows_join_consecutive_rows_of_one_trace() {
        let rows = [
            (1, [1; 16]),
            (2, [1; 16]),
            (3, [2; 16]),
            (5, [2; 16]),
            (6, [1; 16]),
        ];
        assert_eq!(
            runs_of(rows),
            [
                ([1; 16], (1, 2)),
                ([2; 16], (3, 3)),
                ([2; 16], (5, 5)),
                ([1; 16], (6, 6))
            ]
        );
    }
}
