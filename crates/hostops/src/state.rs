//! The state database: `patch.db` (SQLite, WAL) in the state directory.
//!
//! A run is its plan (JSON) plus an append-only list of events (JSON, the
//! machine's [`Event`]s) with the wall-clock millisecond each was recorded.
//! The runner appends `Started` before it acts and the outcome after, in
//! separate committed transactions (`synchronous=FULL`), so after a kill the
//! events say exactly which step was under way. The machine's state is
//! never stored: it is replayed from the events.

use patch::{Event, PatchPlan, RollbackTiming, Run, RunOutcome, Step};
use rusqlite::{Connection, OptionalExtension as _, params};
use std::path::{Path, PathBuf};

/// The database file inside the state directory.
pub const DB_FILE: &str = "patch.db";
const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {path}: {what} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        what: String,
        source: serde_json::Error,
    },
    #[error("state database {path}: run {run} does not exist")]
    NoSuchRun { path: PathBuf, run: i64 },
    #[error(transparent)]
    Open(#[from] statedb::OpenError),
    #[error("run {run}: {source}")]
    Replay {
        run: i64,
        source: patch::MachineError,
    },
}

/// An event as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub seq: i64,
    /// Wall clock, milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: i64,
    pub created_ms: i64,
    /// Set when the runner finished it; `None` for a run in progress or killed.
    pub finished_ms: Option<i64>,
    pub outcome: Option<String>,
}

#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
}

/// Milliseconds since the Unix epoch: the stamp of every row.
pub use clock::now_ms;

impl StateDb {
    /// Opens (creating if needed) `DIR/patch.db`.
    ///
    /// # Errors
    ///
    /// When the folder or the database cannot be created, or the schema is newer than this program.
    pub fn open(dir: &Path) -> Result<StateDb, StateError> {
        let (conn, path) = statedb::open(dir, DB_FILE, SCHEMA_VERSION)?;
        let sql = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY,
                 created_ms INTEGER NOT NULL,
                 plan TEXT NOT NULL,
                 finished_ms INTEGER,
                 outcome TEXT
             );
             CREATE TABLE IF NOT EXISTS events (
                 run INTEGER NOT NULL REFERENCES runs(id),
                 seq INTEGER NOT NULL,
                 at_ms INTEGER NOT NULL,
                 event TEXT NOT NULL,
                 PRIMARY KEY (run, seq)
             );
             PRAGMA user_version = 1;",
        )
        .map_err(sql)?;
        Ok(StateDb { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        |source| StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Stores a new run; returns its id.
    ///
    /// # Errors
    ///
    /// On a database failure.
    pub fn create_run(&self, plan: &PatchPlan) -> Result<i64, StateError> {
        let json = serde_json::to_string(plan).expect("plans serialize");
        self.conn
            .execute(
                "INSERT INTO runs (created_ms, plan) VALUES (?1, ?2)",
                params![now_ms(), json],
            )
            .map_err(self.sql())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Appends an event, committed before this returns.
    ///
    /// # Errors
    ///
    /// On a database failure.
    pub fn append(&self, run: i64, event: &Event) -> Result<(), StateError> {
        let json = serde_json::to_string(event).expect("events serialize");
        self.conn
            .execute(
                "INSERT INTO events (run, seq, at_ms, event)
                 VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run = ?1), ?2, ?3)",
                params![run, now_ms(), json],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Marks a run finished with its outcome.
    ///
    /// # Errors
    ///
    /// On a database failure.
    pub fn finish(&self, run: i64, outcome: RunOutcome) -> Result<(), StateError> {
        let text = serde_json::to_value(outcome)
            .expect("outcome")
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.conn
            .execute(
                "UPDATE runs SET finished_ms = ?2, outcome = ?3 WHERE id = ?1",
                params![run, now_ms(), text],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Every run, newest first.
    ///
    /// # Errors
    ///
    /// On a database failure.
    pub fn runs(&self) -> Result<Vec<RunRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, created_ms, finished_ms, outcome FROM runs ORDER BY id DESC")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    created_ms: r.get(1)?,
                    finished_ms: r.get(2)?,
                    outcome: r.get(3)?,
                })
            })
            .map_err(self.sql())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sql())
    }

    pub fn latest_run(&self) -> Result<Option<i64>, StateError> {
        self.conn
            .query_row("SELECT MAX(id) FROM runs", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .optional()
            .map(Option::flatten)
            .map_err(self.sql())
    }

    /// The plan of a run.
    ///
    /// # Errors
    ///
    /// When the run does not exist or its plan cannot be read.
    pub fn plan(&self, run: i64) -> Result<PatchPlan, StateError> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT plan FROM runs WHERE id = ?1", [run], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        let text = text.ok_or_else(|| StateError::NoSuchRun {
            path: self.path.clone(),
            run,
        })?;
        serde_json::from_str(&text).map_err(|source| StateError::Json {
            path: self.path.clone(),
            what: format!("the plan of run {run}"),
            source,
        })
    }

    /// A run's events in order.
    ///
    /// # Errors
    ///
    /// On a database failure or an unreadable event.
    pub fn events(&self, run: i64) -> Result<Vec<Recorded>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at_ms, event FROM events WHERE run = ?1 ORDER BY seq")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([run], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(self.sql())?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, at_ms, text) = row.map_err(self.sql())?;
            let event = serde_json::from_str(&text).map_err(|source| StateError::Json {
                path: self.path.clone(),
                what: format!("event {seq} of run {run}"),
                source,
            })?;
            out.push(Recorded { seq, at_ms, event });
        }
        Ok(out)
    }

    /// The run rebuilt from its plan and events.
    ///
    /// # Errors
    ///
    /// When it cannot be read, or its events do not fit the machine.
    pub fn load(&self, run: i64) -> Result<(Run, Vec<Recorded>), StateError> {
        let plan = self.plan(run)?;
        let events = self.events(run)?;
        let machine = Run::replay(plan, events.iter().map(|r| &r.event))
            .map_err(|source| StateError::Replay { run, source })?;
        Ok((machine, events))
    }

    /// Median time from the first rollback step to a verified state, over every run.
    ///
    /// # Errors
    ///
    /// On a database failure.
    pub fn rollback_timing(&self) -> Result<Option<RollbackTiming>, StateError> {
        let mut samples = Vec::new();
        for row in self.runs()? {
            samples.extend(
                rollback_durations(&self.events(row.id)?)
                    .into_iter()
                    .map(|(_, ms)| ms as f64 / 1000.0),
            );
        }
        if samples.is_empty() {
            return Ok(None);
        }
        samples.sort_by(f64::total_cmp);
        Ok(Some(RollbackTiming {
            median_seconds: samples[samples.len() / 2],
            samples: samples.len(),
        }))
    }
}

/// Per host, the milliseconds from the start of its rollback (downgrade or
/// snapshot restore) to the successful verification.
pub fn rollback_durations(events: &[Recorded]) -> Vec<(String, i64)> {
    let mut started: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for r in events {
        match &r.event {
            Event::Started {
                host,
                step: Step::Downgrade | Step::RestoreSnapshot,
            } => {
                started.entry(host).or_insert(r.at_ms);
            }
            Event::Succeeded {
                host,
                step: Step::Verify,
                ..
            } => {
                if let Some(t0) = started.remove(host.as_str()) {
                    out.push((host.clone(), r.at_ms - t0));
                }
            }
            _ => {}
        }
    }
    out
}

/// Milliseconds each step took, per host, in order: (host, step, ms, ok).
pub fn step_durations(events: &[Recorded]) -> Vec<(String, Step, i64, bool)> {
    let mut open: std::collections::BTreeMap<&str, (Step, i64)> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for r in events {
        match &r.event {
            Event::Started { host, step } => {
                open.insert(host, (*step, r.at_ms));
            }
            Event::Succeeded { host, step, .. } | Event::Failed { host, step, .. } => {
                if let Some((s, t0)) = open.remove(host.as_str())
                    && s == *step
                {
                    out.push((
                        host.clone(),
                        s,
                        r.at_ms - t0,
                        matches!(r.event, Event::Succeeded { .. }),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}
