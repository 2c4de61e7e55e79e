//! The span store: the span bytes in append-only segment files
//! (`DIR/segments/`, see [`crate::segment`]) and their index in `DIR/spans.db`
//! (SQLite, WAL).
//!
//! One writer ([`Writer`], owned by the writer thread) and a pool of readers
//! ([`Reader`]); WAL lets queries run while a batch is being written. Each
//! span row holds the indexed columns and where the span's own protobuf
//! encoding lies (segment, offset, length); resources and scopes are stored
//! once and referenced. Services and operations are small catalog tables, so
//! `/api/services` never scans spans.
//!
//! Trace ids are indexed once per trace per group commit, not per span,
//! and not in SQLite: the writer inserts a commit's spans grouped by trace,
//! so each trace's spans in one commit have consecutive row ids, and the
//! [`TraceIndex`] keeps one run (first and last span row id) per trace per
//! commit, in memory for the segment being filled and in a sorted file per
//! full segment. A B-tree keyed by random trace ids would take each commit's
//! traces on as many random leaf pages, each written again to the WAL; these
//! only append. Trace-by-id reads the runs and then row-id ranges. Other
//! indexes in SQLite: `(service, start_ns)` for search and service stats, with a
//! partial twin holding only error spans; `tags(hash, span)` for the indexed
//! attribute keys. Duration and the other attributes are filtered while
//! scanning a service's time range (Jaeger's search always names a service).
//!
//! Durability: a group commit writes its span bytes to the segment first (one
//! `pwrite`), then commits the index rows that point at them, in WAL mode
//! with `synchronous=NORMAL`. Both are in the kernel's page cache before
//! `write` returns, so a commit survives the collector being killed
//! (`kill -9`); it may not survive the machine losing power, which `--fsync`
//! adds (`fdatasync` of the segment, then `synchronous=FULL`) at the cost of
//! two syncs per group commit. Opening the store cuts every segment back to
//! the end its last commit recorded, so bytes whose index never committed
//! are gone and the next commit appends where the index left off.
//!
//! Retention deletes whole segments, oldest first: every group commit records
//! its time, its segment and that segment's end, and its last span and tag
//! row ids in `commits`, so dropping a segment is a range delete on row ids
//! (in steps of at most `max_rows` spans) and then removing its file and its
//! sealed trace index.

use crate::attrs::{DERIVED_TAGS, span_has_tag};
use crate::ingest::{Batch, SpanRow, tag_hash};
use crate::otlp::{ResourceSpans, Span};
use crate::segment::{self, Appender};
use crate::trace_index::{self, TraceIndex};
use prost::Message as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The database file inside the data directory.
pub const DB_FILE: &str = "spans.db";
const SCHEMA_VERSION: i64 = 4;

const META: &str = "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS services(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS operations(
    id INTEGER PRIMARY KEY,
    service INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    UNIQUE(service, name, kind));
CREATE TABLE IF NOT EXISTS resources(id INTEGER PRIMARY KEY, hash INTEGER NOT NULL UNIQUE, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS spans(
    id INTEGER PRIMARY KEY,
    trace_id BLOB NOT NULL,
    span_id BLOB NOT NULL,
    parent_id BLOB,
    service INTEGER NOT NULL,
    operation INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    resource INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    byte_offset INTEGER NOT NULL,
    byte_length INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS spans_service_start ON spans(service, start_ns);
CREATE INDEX IF NOT EXISTS spans_service_errors ON spans(service, start_ns) WHERE error = 1;
CREATE TABLE IF NOT EXISTS tags(id INTEGER PRIMARY KEY, hash INTEGER NOT NULL, span INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tags_hash ON tags(hash, span);
CREATE TABLE IF NOT EXISTS commits(
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    last_span INTEGER NOT NULL,
    last_tag INTEGER NOT NULL,
    segment INTEGER NOT NULL,
    segment_end INTEGER NOT NULL);
";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("span store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("creating data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("span store {path} has schema version {found}; this collector knows {SCHEMA_VERSION}")]
    Schema { path: PathBuf, found: i64 },
    #[error("span segments in {path}: {source}")]
    Segment {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How much the store keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete what was stored longer ago than this many milliseconds.
    pub max_age_ms: Option<i64>,
    /// Delete the oldest commits while the live data is larger than this.
    pub max_bytes: Option<i64>,
}

/// A stored span with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSpan {
    pub service: String,
    /// The resource and scope: one `ScopeSpans` without spans.
    pub resource: Arc<ResourceSpans>,
    pub span: Span,
}

/// What `/api/traces` asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceQuery {
    pub service: String,
    pub operation: Option<String>,
    /// Attribute key and value; all must match one span.
    pub tags: Vec<(String, String)>,
    pub min_duration_ns: Option<i64>,
    pub max_duration_ns: Option<i64>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub errors_only: bool,
    pub limit: usize,
}

/// A cross-service call: `parent`'s span is the parent of `child`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub parent: String,
    pub child: String,
    pub calls: i64,
    pub errors: i64,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
    let path = path.to_path_buf();
    move |source| StoreError::Sqlite {
        path: path.clone(),
        source,
    }
}

/// The database path for a data directory, creating the directory.
///
/// # Errors
///
/// A directory that cannot be created.
pub fn db_path(dir: &Path) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(dir.join(DB_FILE))
}

fn connect(path: &Path, fsync: bool) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(sqlite(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite(path))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite(path))?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })
        .map_err(sqlite(path))?;
    Ok(conn)
}

/// The single writer.
#[derive(Debug)]
pub struct Writer {
    conn: Connection,
    path: PathBuf,
    services: HashMap<String, i64>,
    /// Operation ids by service and kind, then name (looked up without a key allocation per span).
    operations: HashMap<(i64, i32), HashMap<String, i64>>,
    resources: HashMap<i64, i64>,
    /// The row ids the next commit's first span and tag get.
    next_span: i64,
    next_tag: i64,
    segments: Appender,
    /// The segment whose trace runs the index holds in memory.
    open_segment: i64,
    traces: Arc<TraceIndex>,
}

impl Writer {
    /// Opens (creating if needed) `DIR/spans.db` and `DIR/segments/`, cutting
    /// the segments back to what the index committed.
    ///
    /// # Errors
    ///
    /// An unreadable or foreign database, one of another schema version, or
    /// segments that cannot be read, cut or removed.
    pub fn open(dir: &Path, fsync: bool) -> Result<Writer, StoreError> {
        let path = db_path(dir)?;
        let conn = connect(&path, fsync)?;
        let e = sqlite(&path);
        // Index pages touched between group commits stay cached.
        conn.pragma_update(None, "cache_size", -65_536)
            .map_err(&e)?;
        // Checkpoints (which fsync the database file) every 64 MiB of WAL, not every 4 MiB.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)
            .map_err(&e)?;
        // The version is checked before creating tables, so an older store is left as it was.
        conn.execute_batch(META).map_err(&e)?;
        let found: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&e)?;
        match found {
            None => {
                conn.execute_batch(SCHEMA).map_err(&e)?;
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(&e)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(found) => return Err(StoreError::Schema { path, found }),
        }
        let services = conn
            .prepare("SELECT name, id FROM services")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<HashMap<_, _>, _>>()
            })
            .map_err(&e)?;
        let mut operations: HashMap<(i64, i32), HashMap<String, i64>> = HashMap::new();
        for (service, name, kind, id) in conn
            .prepare("SELECT service, name, kind, id FROM operations")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<Result<Vec<(i64, String, i32, i64)>, _>>()
            })
            .map_err(&e)?
        {
            operations
                .entry((service, kind))
                .or_default()
                .insert(name, id);
        }
        let resources = conn
            .prepare("SELECT hash, id FROM resources")
            .and_then(|mut s| {
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<HashMap<_, _>, _>>()
            })
            .map_err(&e)?;
        // Past every id in use or recorded by a commit (retention may have
        // emptied a table whose last commit still names its ids).
        let (next_span, next_tag) = conn
            .query_row(
                "SELECT max(coalesce((SELECT max(id) FROM spans), 0), coalesce((SELECT max(last_span) FROM commits), 0)) + 1, \
                        max(coalesce((SELECT max(id) FROM tags), 0), coalesce((SELECT max(last_tag) FROM commits), 0)) + 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&e)?;
        // Each segment's committed end and its last span row id.
        let committed = conn
            .prepare(
                "SELECT segment, max(segment_end), max(last_span) FROM commits \
                 GROUP BY segment ORDER BY segment",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)?))
                })?
                .collect::<Result<Vec<(i64, u64, i64)>, _>>()
            })
            .map_err(&e)?;
        drop(e);
        let segment_dir = dir.join(segment::SEGMENT_DIR);
        let ends: Vec<(i64, u64)> = committed.iter().map(|&(s, end, _)| (s, end)).collect();
        let append_at =
            segment::recover(&segment_dir, &ends).map_err(|source| StoreError::Segment {
                path: segment_dir.clone(),
                source,
            })?;
        let traces = Arc::new(TraceIndex::new(segment_dir.clone()));
        let writer = Writer {
            conn,
            path,
            services,
            operations,
            resources,
            next_span,
            next_tag,
            segments: Appender::new(segment_dir, append_at, fsync),
            open_segment: append_at.0,
            traces,
        };
        writer.recover_trace_index(&committed)?;
        Ok(writer)
    }

    /// Brings the trace index in line with the span rows: every committed
    /// segment but the one being filled has its sealed file (rebuilt from
    /// its span rows when missing or not whole), the one being filled has its
    /// runs in memory, and no other sealed file is left.
    fn recover_trace_index(&self, committed: &[(i64, u64, i64)]) -> Result<(), StoreError> {
        let e = sqlite(&self.path);
        let io = |source| self.segment_error(source);
        let dir = self.segments.dir();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let Some(name) = name.to_str() else { continue };
            let segment = name
                .strip_suffix(".traces")
                .and_then(|n| n.parse::<i64>().ok());
            let named = segment
                .is_some_and(|s| s != self.open_segment && committed.iter().any(|c| c.0 == s));
            if !named && (segment.is_some() || name.ends_with(".traces.tmp")) {
                std::fs::remove_file(dir.join(name)).map_err(io)?;
            }
        }
        let mut rows = self
            .conn
            .prepare("SELECT id, trace_id FROM spans WHERE id > ?1 AND id <= ?2 ORDER BY id")
            .map_err(&e)?;
        let mut runs_between = |after: i64, through: i64| {
            rows.query_map([after, through], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, [u8; 16]>(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map(trace_index::runs_of)
            .map_err(&e)
        };
        let mut after = 0;
        for &(segment, _, last_span) in committed {
            if segment == self.open_segment {
                self.traces.add(runs_between(after, i64::MAX)?);
            } else if !self.traces.load(segment).map_err(io)? {
                let runs = runs_between(after, last_span)?;
                self.traces.seal(segment, Some(runs)).map_err(io)?;
            }
            after = last_span;
        }
        Ok(())
    }

    /// A reader of this store, sharing the writer's trace index.
    pub fn reader(&self) -> Reader {
        Reader {
            path: self.path.clone(),
            segments: self.segments.dir().to_path_buf(),
            pool: Mutex::new(Vec::new()),
            traces: self.traces.clone(),
        }
    }

    /// Seals the trace index of the segment being filled once appends moved
    /// on to `segment`.
    fn seal_before(&mut self, segment: i64) -> Result<(), StoreError> {
        if segment != self.open_segment {
            self.traces
                .seal(self.open_segment, None)
                .map_err(|source| self.segment_error(source))?;
            self.open_segment = segment;
        }
        Ok(())
    }

    /// Starts a new segment once one holds this many bytes (by default
    /// [`segment::DEFAULT_SEGMENT_BYTES`]): retention frees space in steps of one segment.
    pub fn set_segment_bytes(&mut self, bytes: u64) {
        self.segments.set_max_bytes(bytes);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn segment_error(&self, source: std::io::Error) -> StoreError {
        StoreError::Segment {
            path: self.segments.dir().to_path_buf(),
            source,
        }
    }

    /// Writes the batches as one group commit: their span bytes in one write
    /// to the segment, then their index rows in one transaction.
    ///
    /// The spans are stored grouped by trace id (in arrival order within a
    /// trace), so each trace gets one run in the trace index per commit and
    /// its spans of one commit lie back to back in the segment. Row ids are
    /// assigned here, not by SQLite, so the rows of a table go in with one
    /// multi-row `INSERT` per 32 rows instead of a statement per row, and tags
    /// and trace runs name their spans without asking SQLite for each id.
    ///
    /// # Errors
    ///
    /// The segment or SQLite failing (disk full, I/O error); nothing of the
    /// batches is stored then.
    pub fn write(&mut self, batches: &[&Batch]) -> Result<(), StoreError> {
        let e = sqlite(&self.path);
        let mut spans: Vec<&SpanRow> = batches.iter().flat_map(|b| &b.spans).collect();
        if spans.is_empty() {
            return Ok(());
        }
        spans.sort_by_key(|s| s.trace_id);
        // Where each span lies in the commit's bytes.
        let mut bytes = Vec::with_capacity(spans.iter().map(|s| s.blob.len()).sum());
        let mut offsets = Vec::with_capacity(spans.len());
        for s in &spans {
            offsets.push(bytes.len() as u64);
            bytes.extend_from_slice(&s.blob);
        }
        let (segment, base) = self
            .segments
            .write(&bytes)
            .map_err(|source| self.segment_error(source))?;
        self.seal_before(segment)?;
        let tx = self.conn.transaction().map_err(&e)?;
        for r in batches.iter().flat_map(|b| &b.resources) {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.resources.entry(r.hash) {
                let id: i64 = tx
                    .query_row(
                        "INSERT INTO resources(hash, blob) VALUES (?1, ?2) \
                         ON CONFLICT(hash) DO UPDATE SET hash = hash RETURNING id",
                        params![r.hash, r.blob],
                        |row| row.get(0),
                    )
                    .map_err(&e)?;
                slot.insert(id);
            }
        }
        // Catalog ids first: a new service or operation is a row of its own.
        let mut catalog = Vec::with_capacity(spans.len());
        for s in &spans {
            let service = match self.services.get(&*s.service) {
                Some(&id) => id,
                None => {
                    let id: i64 = tx
                        .query_row(
                            "INSERT INTO services(name) VALUES (?1) RETURNING id",
                            [&*s.service],
                            |row| row.get(0),
                        )
                        .map_err(&e)?;
                    self.services.insert(s.service.to_string(), id);
                    id
                }
            };
            let names = self.operations.entry((service, s.kind)).or_default();
            let operation = match names.get(s.operation.as_str()) {
                Some(&id) => id,
                None => {
                    let id: i64 = tx
                        .query_row(
                            "INSERT INTO operations(service, name, kind) VALUES (?1, ?2, ?3) \
                             RETURNING id",
                            params![service, s.operation, s.kind],
                            |row| row.get(0),
                        )
                        .map_err(&e)?;
                    names.insert(s.operation.clone(), id);
                    id
                }
            };
            catalog.push((service, operation));
        }
        let first_span = self.next_span;
        let last_span = first_span + spans.len() as i64 - 1;
        insert_rows(&tx, SPAN_COLUMNS, spans.len(), |stmt, i, at| {
            let s = spans[i];
            let (service, operation) = catalog[i];
            stmt.raw_bind_parameter(at, first_span + i as i64)?;
            stmt.raw_bind_parameter(at + 1, &s.trace_id[..])?;
            stmt.raw_bind_parameter(at + 2, &s.span_id[..])?;
            stmt.raw_bind_parameter(at + 3, s.parent_id.as_ref().map(|p| &p[..]))?;
            stmt.raw_bind_parameter(at + 4, service)?;
            stmt.raw_bind_parameter(at + 5, operation)?;
            stmt.raw_bind_parameter(at + 6, s.start_ns)?;
            stmt.raw_bind_parameter(at + 7, s.duration_ns)?;
            stmt.raw_bind_parameter(at + 8, s.error)?;
            stmt.raw_bind_parameter(
                at + 9,
                self.resources.get(&s.resource).copied().unwrap_or(0),
            )?;
            stmt.raw_bind_parameter(at + 10, segment)?;
            stmt.raw_bind_parameter(at + 11, (base + offsets[i]) as i64)?;
            stmt.raw_bind_parameter(at + 12, s.blob.len() as i64)
        })
        .map_err(&e)?;
        let tags: Vec<(i64, i64)> = spans
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.tags
                    .iter()
                    .map(move |&hash| (hash, first_span + i as i64))
            })
            .collect();
        let first_tag = self.next_tag;
        insert_rows(&tx, TAG_COLUMNS, tags.len(), |stmt, i, at| {
            stmt.raw_bind_parameter(at, first_tag + i as i64)?;
            stmt.raw_bind_parameter(at + 1, tags[i].0)?;
            stmt.raw_bind_parameter(at + 2, tags[i].1)
        })
        .map_err(&e)?;
        // Runs of one trace id: (index of the first span, index of the last).
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for (i, s) in spans.iter().enumerate() {
            match runs.last_mut() {
                Some(run) if spans[run.0].trace_id == s.trace_id => run.1 = i,
                _ => runs.push((i, i)),
            }
        }
        let last_tag = first_tag + tags.len() as i64 - 1;
        tx.execute(
            "INSERT INTO commits(at_ms, last_span, last_tag, segment, segment_end) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                now_ms(),
                last_span,
                last_tag,
                segment,
                (base + bytes.len() as u64) as i64
            ],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        self.segments.commit(bytes.len());
        self.next_span = last_span + 1;
        self.next_tag = last_tag + 1;
        // Before the requests are answered, so an acknowledged trace is found.
        self.traces.add(runs.iter().map(|&(first, last)| {
            (
                spans[first].trace_id,
                (first_span + first as i64, first_span + last as i64),
            )
        }));
        Ok(())
    }

    /// Deletes whole segments, oldest first: those whose newest commit is
    /// older than the age limit, then more while the store is larger than the
    /// size limit. At most `max_rows` spans go per call (so the writer never
    /// stalls for long; a segment larger than that goes over several calls,
    /// commit by commit), but always at least one commit when one is due.
    /// Returns the number of spans deleted.
    ///
    /// # Errors
    ///
    /// SQLite failing, or a segment file that cannot be removed.
    pub fn enforce(&mut self, retention: Retention, max_rows: i64) -> Result<i64, StoreError> {
        let mut deleted = 0;
        if let Some(max_age) = retention.max_age_ms {
            let cutoff = now_ms() - max_age;
            while deleted < max_rows || deleted == 0 {
                let Some((segment, newest_ms)) = self.oldest_segment()? else {
                    break;
                };
                if newest_ms >= cutoff {
                    break;
                }
                let (n, whole) = self.drop_segment(segment, max_rows - deleted, deleted == 0)?;
                deleted += n;
                if !whole {
                    break;
                }
            }
        }
        if let Some(max_bytes) = retention.max_bytes {
            while (deleted < max_rows || deleted == 0) && self.live_bytes()? > max_bytes {
                let Some((segment, _)) = self.oldest_segment()? else {
                    break;
                };
                let (n, whole) = self.drop_segment(segment, max_rows - deleted, deleted == 0)?;
                deleted += n;
                if !whole {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// The oldest segment with index rows, and the time of its newest commit.
    fn oldest_segment(&self) -> Result<Option<(i64, i64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT segment, max(at_ms) FROM commits \
                 WHERE segment = (SELECT segment FROM commits ORDER BY id LIMIT 1)",
                [],
                |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get(1)?)),
            )
            .map_err(sqlite(&self.path))
    }

    /// Deletes the index rows of `segment`'s oldest commits, as many as fit
    /// in `quota` spans (or the oldest alone when none fits and `at_least_one`),
    /// and the segment's file once no commit names it. Returns the spans
    /// deleted and whether the segment went whole.
    fn drop_segment(
        &mut self,
        segment: i64,
        quota: i64,
        at_least_one: bool,
    ) -> Result<(i64, bool), StoreError> {
        let e = sqlite(&self.path);
        if segment == self.segments.segment() {
            // New commits must not go to a file about to be removed.
            self.segments.roll();
            self.seal_before(self.segments.segment())?;
        }
        let cut = |sql: &str, args: &[&dyn rusqlite::ToSql]| {
            self.conn
                .query_row(sql, args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(&e)
        };
        let mut cut: Option<(i64, i64, i64)> = cut(
            "SELECT id, last_span, last_tag FROM commits WHERE segment = ?1 \
             AND last_span < (SELECT min(id) FROM spans) + ?2 ORDER BY id DESC LIMIT 1",
            &[&segment, &quota],
        )?
        .or(if at_least_one {
            cut(
                "SELECT id, last_span, last_tag FROM commits WHERE segment = ?1 \
                 ORDER BY id LIMIT 1",
                &[&segment],
            )?
        } else {
            None
        });
        let Some(cut) = cut.take() else {
            return Ok((0, false));
        };
        let n = self.delete_through(cut)?;
        let left: bool = self
            .conn
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM commits WHERE segment = ?1)",
                [segment],
                |r| r.get(0),
            )
            .map_err(&e)?;
        if !left {
            let file = segment::path(self.segments.dir(), segment);
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(self.segment_error(source)),
            }
            self.traces
                .remove(segment)
                .map_err(|source| self.segment_error(source))?;
        }
        Ok((n, !left))
    }

    fn delete_through(
        &mut self,
        (commit, last_span, last_tag): (i64, i64, i64),
    ) -> Result<i64, StoreError> {
        let e = sqlite(&self.path);
        let tx = self.conn.transaction().map_err(&e)?;
        let n = tx
            .execute("DELETE FROM spans WHERE id <= ?1", [last_span])
            .map_err(&e)?;
        tx.execute("DELETE FROM tags WHERE id <= ?1", [last_tag])
            .map_err(&e)?;
        tx.execute("DELETE FROM commits WHERE id <= ?1", [commit])
            .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(n as i64)
    }

    /// Bytes of live data: the segments, and the index's live pages (the
    /// database file keeps freed pages for reuse).
    ///
    /// # Errors
    ///
    /// SQLite failing.
    pub fn live_bytes(&self) -> Result<i64, StoreError> {
        Ok(live_bytes(&self.conn, &self.path)? + segment::total_bytes(self.segments.dir()) as i64)
    }

    /// Bytes of the database, its WAL and the segments on disk.
    pub fn disk_bytes(&self) -> i64 {
        disk_bytes(&self.path) + segment::total_bytes(self.segments.dir()) as i64
    }
}

/// Rows per multi-row `INSERT` in [`Writer::write`]: SQLite's cost per
/// statement run (bind, step, reset) is paid once for this many rows.
const ROWS_PER_INSERT: usize = 32;

const SPAN_COLUMNS: (&str, usize) = (
    "spans(id, trace_id, span_id, parent_id, service, operation, start_ns, duration_ns, error, resource, segment, byte_offset, byte_length)",
    13,
);
const TAG_COLUMNS: (&str, usize) = ("tags(id, hash, span)", 3);

/// Inserts `n` rows into `table` (its column list, its column count):
/// [`ROWS_PER_INSERT`] rows per statement, the rest one by one; `bind`
/// binds row `i`'s values from parameter `at` on.
fn insert_rows(
    tx: &rusqlite::Transaction<'_>,
    (table, width): (&str, usize),
    n: usize,
    mut bind: impl FnMut(&mut rusqlite::Statement<'_>, usize, usize) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let sql = |rows: usize| {
        let row = format!("({})", vec!["?"; width].join(", "));
        // OR FAIL: an INSERT of many rows that could abort halfway makes SQLite
        // journal every page it changes, to undo that statement alone. Nothing
        // here is undone alone: a failed statement rolls back the whole commit.
        format!(
            "INSERT OR FAIL INTO {table} VALUES {}",
            vec![row; rows].join(", ")
        )
    };
    let (many, one) = (sql(ROWS_PER_INSERT), sql(1));
    let mut done = 0;
    while done < n {
        let rows = if n - done >= ROWS_PER_INSERT {
            ROWS_PER_INSERT
        } else {
            1
        };
        let mut stmt = tx.prepare_cached(if rows == 1 { &one } else { &many })?;
        for r in 0..rows {
            bind(&mut stmt, done + r, r * width + 1)?;
        }
        stmt.raw_execute()?;
        done += rows;
    }
    Ok(())
}

/// Bytes of the database file and its WAL.
fn disk_bytes(db: &Path) -> i64 {
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len() as i64);
    let mut wal = db.to_path_buf().into_os_string();
    wal.push("-wal");
    len(db) + len(Path::new(&wal))
}

fn live_bytes(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let get = |pragma: &str| -> Result<i64, StoreError> {
        conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
            .map_err(sqlite(path))
    };
    Ok((get("page_count")? - get("freelist_count")?) * get("page_size")?)
}

/// The wall clock, for catalog stamps, retention and query time ranges.
pub use clock::{now_ms, now_ns};

/// Query connections, opened on demand and reused, and the writer's trace
/// index ([`Writer::reader`] makes one).
#[derive(Debug)]
pub struct Reader {
    path: PathBuf,
    segments: PathBuf,
    pool: Mutex<Vec<Connection>>,
    traces: Arc<TraceIndex>,
}

impl Reader {
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = connect(&self.path, false)?;
                c.pragma_update(None, "query_only", true)
                    .map_err(sqlite(&self.path))?;
                c
            }
        };
        let result = f(&conn).map_err(sqlite(&self.path));
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(conn);
        }
        result
    }

    /// Every service name, sorted.
    ///
    /// # Errors
    ///
    /// SQLite failing, as for every query here.
    pub fn services(&self) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT name FROM services ORDER BY name")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
    }

    /// The operations of a service with their span kinds, sorted.
    pub fn operations(&self, service: &str) -> Result<Vec<(String, i32)>, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT o.name, o.kind FROM operations o JOIN services s ON s.id = o.service \
                 WHERE s.name = ?1 ORDER BY o.name, o.kind",
            )?
            .query_map([service], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    /// Every span of a trace (a span stored twice is returned once).
    ///
    /// The trace index gives the trace's runs of span rows; the spans' bytes
    /// are read from the segments, one read per run of spans stored back to back.
    pub fn trace(&self, trace_id: &[u8; 16]) -> Result<Vec<StoredSpan>, StoreError> {
        type Row = (String, i64, Vec<u8>, (i64, u64, usize));
        let runs = self.traces.runs(trace_id);
        let rows: Vec<Row> = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT sv.name, s.resource, s.span_id, s.segment, s.byte_offset, s.byte_length \
                 FROM spans s JOIN services sv ON sv.id = s.service \
                 WHERE s.id BETWEEN ?1 AND ?2 ORDER BY s.id",
            )?;
            let mut rows = Vec::new();
            for (first, last) in runs {
                for row in stmt.query_map([first, last], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        (
                            r.get(3)?,
                            r.get::<_, i64>(4)? as u64,
                            r.get::<_, i64>(5)? as usize,
                        ),
                    ))
                })? {
                    rows.push(row?);
                }
            }
            Ok(rows)
        })?;
        let places: Vec<(i64, u64, usize)> = rows.iter().map(|r| r.3).collect();
        let blobs = segment::Files::new(&self.segments).read_all(&places);
        let mut resources: HashMap<i64, Arc<ResourceSpans>> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(rows.len());
        for ((service, resource_id, span_id, _), blob) in rows.into_iter().zip(blobs) {
            if !seen.insert(span_id) {
                continue;
            }
            let resource = match resources.get(&resource_id) {
                Some(r) => r.clone(),
                None => {
                    let blob: Vec<u8> = self.with(|c| {
                        c.prepare_cached("SELECT blob FROM resources WHERE id = ?1")?
                            .query_row([resource_id], |r| r.get(0))
                            .optional()
                            .map(Option::unwrap_or_default)
                    })?;
                    let r = Arc::new(ResourceSpans::decode(blob.as_slice()).unwrap_or_default());
                    resources.insert(resource_id, r.clone());
                    r
                }
            };
            // Span bytes were written by this collector from decoded spans; bytes
            // that are missing (retention removed the segment meanwhile) or do
            // not decode (disk corruption) are skipped.
            if let Some(span) = blob.and_then(|b| Span::decode(b.as_slice()).ok()) {
                out.push(StoredSpan {
                    service,
                    resource,
                    span,
                });
            }
        }
        Ok(out)
    }

    /// The trace's runs of span row ids, as the trace index holds them.
    #[cfg(test)]
    pub(crate) fn trace_runs(&self, trace_id: &[u8; 16]) -> Vec<trace_index::Run> {
        self.traces.runs(trace_id)
    }

    /// Trace ids matching the query, the most recent first.
    ///
    /// Indexed tag keys narrow the rows through the tag index; every tag is
    /// then checked on the decoded span (and its resource), which also covers
    /// keys that are not indexed. At most `scan_limit` candidate spans are read.
    pub fn find_traces(
        &self,
        q: &TraceQuery,
        indexed: &std::collections::HashSet<String>,
        scan_limit: usize,
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        let mut sql = String::from(
            "SELECT s.trace_id, s.resource, s.segment, s.byte_offset, s.byte_length FROM spans s \
             WHERE s.service = (SELECT id FROM services WHERE name = ?1) \
             AND s.start_ns >= ?2 AND s.start_ns <= ?3",
        );
        let mut args: Vec<rusqlite::types::Value> =
            vec![q.service.clone().into(), q.start_ns.into(), q.end_ns.into()];
        let mut arg = |sql: &mut String, text: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&text.replace('?', &format!("?{}", args.len())));
        };
        if let Some(op) = &q.operation {
            arg(
                &mut sql,
                " AND s.operation IN (SELECT id FROM operations WHERE name = ?)",
                op.clone().into(),
            );
        }
        if let Some(min) = q.min_duration_ns {
            arg(&mut sql, " AND s.duration_ns >= ?", min.into());
        }
        if let Some(max) = q.max_duration_ns {
            arg(&mut sql, " AND s.duration_ns <= ?", max.into());
        }
        if q.errors_only {
            sql.push_str(" AND s.error = 1");
        }
        for (k, v) in &q.tags {
            // Tags the Jaeger mapping derives (error, span.kind, ...) are not
            // attributes, so the tag index does not hold them.
            if indexed.contains(k) && !DERIVED_TAGS.contains(&k.as_str()) {
                arg(
                    &mut sql,
                    " AND s.id IN (SELECT span FROM tags WHERE hash = ?)",
                    tag_hash(k, v).into(),
                );
            }
        }
        sql.push_str(" ORDER BY s.start_ns DESC");
        let check_tags = !q.tags.is_empty();
        let mut files = segment::Files::new(&self.segments);
        self.with(|c| {
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
            let mut out: Vec<[u8; 16]> = Vec::new();
            let mut resources: HashMap<i64, Option<ResourceSpans>> = HashMap::new();
            let mut scanned = 0;
            while let Some(row) = rows.next()? {
                scanned += 1;
                if scanned > scan_limit || out.len() >= q.limit {
                    break;
                }
                let id: Vec<u8> = row.get(0)?;
                let Ok(id) = <[u8; 16]>::try_from(id.as_slice()) else {
                    continue;
                };
                if out.contains(&id) {
                    continue;
                }
                if check_tags {
                    let blob = files.read(
                        row.get(2)?,
                        row.get::<_, i64>(3)? as u64,
                        row.get::<_, i64>(4)? as usize,
                    );
                    let Some(Ok(span)) = blob.map(|b| Span::decode(b.as_slice())) else {
                        continue;
                    };
                    let resource_id: i64 = row.get(1)?;
                    let resource = match resources.get(&resource_id) {
                        Some(r) => r.clone(),
                        None => {
                            let blob: Option<Vec<u8>> = c
                                .prepare_cached("SELECT blob FROM resources WHERE id = ?1")?
                                .query_row([resource_id], |r| r.get(0))
                                .optional()?;
                            let r = blob.and_then(|b| ResourceSpans::decode(b.as_slice()).ok());
                            resources.insert(resource_id, r.clone());
                            r
                        }
                    };
                    if !q
                        .tags
                        .iter()
                        .all(|(k, v)| span_has_tag(&span, resource.as_ref(), k, v))
                    {
                        continue;
                    }
                }
                out.push(id);
            }
            Ok(out)
        })
    }

    /// Cross-service parent/child pairs among spans that started in the window:
    /// a child's parent is looked for in its trace's runs of rows, and each
    /// (parent row, child row) pair of different services counts once.
    pub fn dependencies(&self, start_ns: i64, end_ns: i64) -> Result<Vec<Dependency>, StoreError> {
        type Child = (Vec<u8>, i64, i64);
        self.with(|c| {
            let mut children: HashMap<[u8; 16], Vec<Child>> = HashMap::new();
            let mut stmt = c.prepare_cached(
                "SELECT trace_id, parent_id, service, error FROM spans \
                 WHERE start_ns >= ?1 AND start_ns <= ?2 AND parent_id IS NOT NULL",
            )?;
            let mut rows = stmt.query([start_ns, end_ns])?;
            while let Some(r) = rows.next()? {
                children
                    .entry(r.get(0)?)
                    .or_default()
                    .push((r.get(1)?, r.get(2)?, r.get(3)?));
            }
            let mut in_runs =
                c.prepare_cached("SELECT span_id, service FROM spans WHERE id BETWEEN ?1 AND ?2")?;
            // (parent service, child service) -> (calls, errors)
            let mut pairs: HashMap<(i64, i64), (i64, i64)> = HashMap::new();
            for (trace, children) in children {
                let mut services_of: HashMap<Vec<u8>, Vec<i64>> = HashMap::new();
                for (first, last) in self.traces.runs(&trace) {
                    let mut rows = in_runs.query([first, last])?;
                    while let Some(r) = rows.next()? {
                        services_of.entry(r.get(0)?).or_default().push(r.get(1)?);
                    }
                }
                for (parent_id, child, error) in children {
                    for &parent in services_of.get(&parent_id).into_iter().flatten() {
                        if parent != child {
                            let pair = pairs.entry((parent, child)).or_default();
                            pair.0 += 1;
                            pair.1 += error;
                        }
                    }
                }
            }
            let names: HashMap<i64, String> = c
                .prepare_cached("SELECT id, name FROM services")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut out: Vec<Dependency> = pairs
                .into_iter()
                .filter_map(|((parent, child), (calls, errors))| {
                    Some(Dependency {
                        parent: names.get(&parent)?.clone(),
                        child: names.get(&child)?.clone(),
                        calls,
                        errors,
                    })
                })
                .collect();
            out.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
            Ok(out)
        })
    }

    /// `(duration_ns, error)` of the service's SERVER spans that started at or after `since_ns`.
    pub fn server_spans(
        &self,
        service: &str,
        since_ns: i64,
    ) -> Result<Vec<(i64, bool)>, StoreError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT s.duration_ns, s.error FROM spans s \
                 WHERE s.service = (SELECT id FROM services WHERE name = ?1) AND s.start_ns >= ?2 \
                 AND s.operation IN (SELECT o.id FROM operations o JOIN services sv ON sv.id = o.service \
                 WHERE sv.name = ?1 AND o.kind = 2)",
            )?
            .query_map(params![service, since_ns], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
    }

    /// Bytes of the database, its WAL and the segments on disk.
    pub fn disk_bytes(&self) -> i64 {
        disk_bytes(&self.path) + segment::total_bytes(&self.segments) as i64
    }

    /// Spans stored.
    pub fn span_count(&self) -> Result<i64, StoreError> {
        self.with(|c| c.query_row("SELECT count(*) FROM spans", [], |r| r.get(0)))
    }
}
