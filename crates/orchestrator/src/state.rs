//! The rollout state database: `rollouts.db` (SQLite, WAL) in the state directory.
//!
//! - `rollouts`: one row per rollout: its plan, the machine's state (JSON),
//!   a status, how to reach the executor, and the lease of the driver running it.
//! - `transitions`: append-only: every event applied, with the actions it produced.
//! - `actions`: the actions of each transition, marked done once performed.
//! - `inbox`: operator events (`promote`, `abort`, ...) written by another
//!   process for the running driver to apply, with the transition that did.
//! - `snapshots`: the routing of the services outside the change set at the
//!   start and at the end, for the proof that they were untouched.
//!
//! A transition (event, new state, actions) is committed in one transaction
//! before any of its actions is performed (`synchronous=FULL`), so after a
//! kill the database holds the state and exactly the actions that may not
//! have happened; they are idempotent and performed again on resume.

use rollout::{Action, Event, Rollout};
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The database file inside the state directory.
pub const DB_FILE: &str = "rollouts.db";
const SCHEMA_VERSION: i64 = 1;
/// A driver that has not renewed its lease for this long is presumed hung
/// and may be replaced. A driver whose process is gone loses its lease at
/// once. Longer than the slowest executor call (10 s timeouts), so a driver
/// busy in one is never taken for dead.
pub const LEASE_MS: i64 = 60_000;

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
    #[error("state database {path}: rollout {id} does not exist")]
    NoSuchRollout { path: PathBuf, id: i64 },
    #[error("state database {path} has no rollout yet: start one with `bulkhead rollout start`")]
    NoRollouts { path: PathBuf },
    #[error(transparent)]
    Open(#[from] statedb::OpenError),
}

/// Microseconds since the Unix epoch: the stamp of every row.
pub use clock::now_us;

/// How the driver reaches the executor and the metrics; stored with the
/// rollout so `resume` needs no flags. Tokens are never stored: only the
/// name of the environment variable holding them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Target {
    Gateway {
        admin: String,
        token_env: Option<String>,
        /// The gateway's Prometheus endpoint (default: `{admin}/metrics`).
        metrics: String,
    },
    Gitops {
        repo: PathBuf,
        branch: String,
        /// Where the gateway metrics gate reads from, if any.
        metrics: Option<String>,
        metrics_token_env: Option<String>,
        /// The remote each commit is pushed to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remote: Option<String>,
        /// The Argo CD Application that syncs the branch, waited for after each commit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        argocd: Option<ArgoTarget>,
    },
    Kubernetes {
        /// A plain `http://` API URL (`kubectl proxy`), used without `kubeconfig`.
        api: String,
        /// Empty with a kubeconfig: the context's namespace.
        namespace: String,
        token_env: Option<String>,
        metrics: Option<String>,
        metrics_token_env: Option<String>,
        /// The kubeconfig to reach the cluster with, instead of `api`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kubeconfig: Option<PathBuf>,
        /// Its context (default: `current-context`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
        /// How long a Deployment's rollout is waited for (default: ten minutes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        wait_seconds: Option<u64>,
    },
}

/// An Argo CD Application, read through the Kubernetes API of a kubeconfig's context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgoTarget {
    pub application: String,
    /// Where the Application object lives (`argocd`).
    pub namespace: String,
    pub kubeconfig: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// How long a sync is waited for (default: ten minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<u64>,
}

/// A rollout's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutRow {
    pub id: i64,
    pub created_us: i64,
    pub updated_us: i64,
    /// `running`, `waiting` (for a human), `finished`.
    pub status: String,
    pub target: Target,
    /// The process driving it now, while its lease is fresh.
    pub driver: Option<u32>,
}

/// What one transition writes.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub event: &'a Event,
    /// The machine after the event.
    pub rollout: &'a Rollout,
    /// `running` or `finished`.
    pub status: &'a str,
    pub actions: &'a [Action],
    /// The operator's inbox entry this event came from.
    pub inbox: Option<i64>,
    /// Action rows this transition completes, with their outcome (empty: completed).
    pub settled: &'a [(i64, &'a str)],
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub seq: i64,
    pub at_us: i64,
    pub event: Event,
    pub actions: Vec<Action>,
}

/// One action of a transition and whether it was performed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionRow {
    pub id: i64,
    pub seq: i64,
    pub action: Action,
    pub created_us: i64,
    pub done_us: Option<i64>,
    /// Why it did not take effect (failed, or superseded by a later transition).
    pub outcome: Option<String>,
}

#[derive(Debug)]
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
}

impl StateDb {
    /// Opens (creating if needed) `DIR/rollouts.db`.
    ///
    /// # Errors
    /// When the folder or the database cannot be created, or the schema is newer than this program.
    pub fn open(dir: &Path) -> Result<StateDb, StateError> {
        let (conn, path) = statedb::open(dir, DB_FILE, SCHEMA_VERSION)?;
        let sql = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE IF NOT EXISTS rollouts (
                 id INTEGER PRIMARY KEY,
                 created_us INTEGER NOT NULL,
                 updated_us INTEGER NOT NULL,
                 plan TEXT NOT NULL,
                 state TEXT NOT NULL,
                 status TEXT NOT NULL,
                 target TEXT NOT NULL,
                 driver INTEGER,
                 heartbeat_us INTEGER
             );
             CREATE TABLE IF NOT EXISTS transitions (
                 rollout INTEGER NOT NULL REFERENCES rollouts(id),
                 seq INTEGER NOT NULL,
                 at_us INTEGER NOT NULL,
                 event TEXT NOT NULL,
                 actions TEXT NOT NULL,
                 PRIMARY KEY (rollout, seq)
             );
             CREATE TABLE IF NOT EXISTS actions (
                 id INTEGER PRIMARY KEY,
                 rollout INTEGER NOT NULL REFERENCES rollouts(id),
                 seq INTEGER NOT NULL,
                 action TEXT NOT NULL,
                 created_us INTEGER NOT NULL,
                 done_us INTEGER,
                 outcome TEXT
             );
             CREATE INDEX IF NOT EXISTS actions_open ON actions (rollout, done_us);
             CREATE TABLE IF NOT EXISTS inbox (
                 id INTEGER PRIMARY KEY,
                 rollout INTEGER NOT NULL REFERENCES rollouts(id),
                 at_us INTEGER NOT NULL,
                 event TEXT NOT NULL,
                 taken_us INTEGER,
                 seq INTEGER
             );
             CREATE TABLE IF NOT EXISTS snapshots (
                 rollout INTEGER NOT NULL REFERENCES rollouts(id),
                 name TEXT NOT NULL,
                 at_us INTEGER NOT NULL,
                 routing TEXT NOT NULL,
                 PRIMARY KEY (rollout, name)
             );
             PRAGMA user_version = 1;
             COMMIT;",
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

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: String,
        text: &str,
    ) -> Result<T, StateError> {
        serde_json::from_str(text).map_err(|source| StateError::Json {
            path: self.path.clone(),
            what,
            source,
        })
    }

    /// Stores a new rollout (not started); returns its id.
    ///
    /// # Errors
    /// On a database failure.
    pub fn create(&self, rollout: &Rollout, target: &Target) -> Result<i64, StateError> {
        let now = now_us();
        self.conn
            .execute(
                "INSERT INTO rollouts (created_us, updated_us, plan, state, status, target)
                 VALUES (?1, ?1, ?2, ?3, 'created', ?4)",
                params![
                    now,
                    serde_json::to_string(&rollout.plan).expect("plans serialize"),
                    serde_json::to_string(rollout).expect("rollouts serialize"),
                    serde_json::to_string(target).expect("targets serialize"),
                ],
            )
            .map_err(self.sql())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The newest rollout's id.
    ///
    /// # Errors
    /// When there is none, or on a database failure.
    pub fn latest(&self) -> Result<i64, StateError> {
        self.conn
            .query_row("SELECT MAX(id) FROM rollouts", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
            .map_err(self.sql())?
            .ok_or_else(|| StateError::NoRollouts {
                path: self.path.clone(),
            })
    }

    /// A rollout's row.
    ///
    /// # Errors
    /// When it does not exist, or on a database failure.
    pub fn row(&self, id: i64) -> Result<RolloutRow, StateError> {
        let row = self
            .conn
            .query_row(
                "SELECT created_us, updated_us, status, target, driver, heartbeat_us FROM rollouts WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<u32>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(self.sql())?
            .ok_or_else(|| StateError::NoSuchRollout {
                path: self.path.clone(),
                id,
            })?;
        let (created_us, updated_us, status, target, driver, heartbeat) = row;
        let alive = heartbeat.is_some_and(|h| now_us() - h < LEASE_MS * 1000)
            && driver.is_some_and(process_alive);
        Ok(RolloutRow {
            id,
            created_us,
            updated_us,
            status,
            target: self.json(format!("the target of rollout {id}"), &target)?,
            driver: driver.filter(|_| alive),
        })
    }

    /// The machine's state as last recorded.
    ///
    /// # Errors
    /// When the rollout does not exist or its state cannot be read.
    pub fn load(&self, id: i64) -> Result<Rollout, StateError> {
        let text: String = self
            .conn
            .query_row("SELECT state FROM rollouts WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sql())?
            .ok_or_else(|| StateError::NoSuchRollout {
                path: self.path.clone(),
                id,
            })?;
        self.json(format!("the state of rollout {id}"), &text)
    }

    /// Takes the driver lease for this process unless another live process holds it.
    /// Returns the pid of the holder when it is taken.
    ///
    /// # Errors
    /// On a database failure.
    pub fn acquire(&self, id: i64) -> Result<Result<(), u32>, StateError> {
        let me = std::process::id();
        if let Some(holder) = self.row(id)?.driver
            && holder != me
        {
            return Ok(Err(holder));
        }
        self.conn
            .execute(
                "UPDATE rollouts SET driver = ?2, heartbeat_us = ?3 WHERE id = ?1",
                params![id, me, now_us()],
            )
            .map_err(self.sql())?;
        Ok(Ok(()))
    }

    /// Renews this process's lease.
    ///
    /// # Errors
    /// On a database failure.
    pub fn heartbeat(&self, id: i64) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE rollouts SET heartbeat_us = ?2 WHERE id = ?1 AND driver = ?3",
                params![id, now_us(), std::process::id()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Sets the rollout's status (`running`, `waiting`, `finished`).
    ///
    /// # Errors
    /// On a database failure.
    pub fn set_status(&self, id: i64, status: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE rollouts SET status = ?2, updated_us = ?3 WHERE id = ?1",
                params![id, status, now_us()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Gives the lease up.
    ///
    /// # Errors
    /// On a database failure.
    pub fn release(&self, id: i64) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE rollouts SET driver = NULL, heartbeat_us = NULL WHERE id = ?1 AND driver = ?2",
                params![id, std::process::id()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Records one transition in one transaction: the event, the new state
    /// and status, the actions to perform (open), the inbox entry it consumed,
    /// and the actions it settles (a fired timer, a finished analysis, or
    /// ones the new state no longer needs). Returns the transition's number
    /// and the ids of its action rows.
    ///
    /// # Errors
    /// On a database failure; then nothing was recorded.
    pub fn record(&mut self, id: i64, step: &Step<'_>) -> Result<(i64, Vec<i64>), StateError> {
        let Step {
            event,
            rollout,
            status,
            actions,
            inbox,
            settled,
        } = *step;
        let path = self.path.clone();
        let sql = move |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let now = now_us();
        let tx = self.conn.transaction().map_err(&sql)?;
        let seq: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM transitions WHERE rollout = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(&sql)?;
        tx.execute(
            "INSERT INTO transitions (rollout, seq, at_us, event, actions) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                seq,
                now,
                serde_json::to_string(event).expect("events serialize"),
                serde_json::to_string(actions).expect("actions serialize"),
            ],
        )
        .map_err(&sql)?;
        tx.execute(
            "UPDATE rollouts SET state = ?2, status = ?3, updated_us = ?4 WHERE id = ?1",
            params![
                id,
                serde_json::to_string(rollout).expect("rollouts serialize"),
                status,
                now
            ],
        )
        .map_err(&sql)?;
        let mut ids = Vec::new();
        for action in actions {
            tx.execute(
                "INSERT INTO actions (rollout, seq, action, created_us) VALUES (?1, ?2, ?3, ?4)",
                params![
                    id,
                    seq,
                    serde_json::to_string(action).expect("actions serialize"),
                    now
                ],
            )
            .map_err(&sql)?;
            ids.push(tx.last_insert_rowid());
        }
        for (action, outcome) in settled {
            // An empty outcome is a plain completion (a timer fired, an analysis done).
            let outcome = Some(*outcome).filter(|o| !o.is_empty());
            tx.execute(
                "UPDATE actions SET done_us = ?2, outcome = ?3 WHERE id = ?1 AND done_us IS NULL",
                params![action, now, outcome],
            )
            .map_err(&sql)?;
        }
        if let Some(entry) = inbox {
            tx.execute(
                "UPDATE inbox SET taken_us = ?2, seq = ?3 WHERE id = ?1",
                params![entry, now, seq],
            )
            .map_err(&sql)?;
        }
        tx.commit().map_err(&sql)?;
        Ok((seq, ids))
    }

    /// Marks an action performed (`outcome` says why it did not take effect, if so).
    ///
    /// # Errors
    /// On a database failure.
    pub fn done(&self, action: i64, outcome: Option<&str>) -> Result<i64, StateError> {
        let now = now_us();
        self.conn
            .execute(
                "UPDATE actions SET done_us = ?2, outcome = ?3 WHERE id = ?1",
                params![action, now, outcome],
            )
            .map_err(self.sql())?;
        Ok(now)
    }

    /// The actions not yet performed, oldest first.
    ///
    /// # Errors
    /// On a database failure or an unreadable action.
    pub fn open_actions(&self, id: i64) -> Result<Vec<ActionRow>, StateError> {
        self.actions_where(id, "AND done_us IS NULL")
    }

    /// Every action, oldest first.
    ///
    /// # Errors
    /// On a database failure or an unreadable action.
    pub fn actions(&self, id: i64) -> Result<Vec<ActionRow>, StateError> {
        self.actions_where(id, "")
    }

    fn actions_where(&self, id: i64, filter: &str) -> Result<Vec<ActionRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, seq, action, created_us, done_us, outcome FROM actions
                 WHERE rollout = ?1 {filter} ORDER BY id"
            ))
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        rows.into_iter()
            .map(|(aid, seq, text, created_us, done_us, outcome)| {
                Ok(ActionRow {
                    id: aid,
                    seq,
                    action: self.json(format!("action {aid} of rollout {id}"), &text)?,
                    created_us,
                    done_us,
                    outcome,
                })
            })
            .collect()
    }

    /// Every transition, in order.
    ///
    /// # Errors
    /// On a database failure or an unreadable row.
    pub fn transitions(&self, id: i64) -> Result<Vec<Transition>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at_us, event, actions FROM transitions WHERE rollout = ?1 ORDER BY seq")
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        rows.into_iter()
            .map(|(seq, at_us, event, actions)| {
                Ok(Transition {
                    seq,
                    at_us,
                    event: self.json(format!("event {seq} of rollout {id}"), &event)?,
                    actions: self
                        .json(format!("actions of event {seq} of rollout {id}"), &actions)?,
                })
            })
            .collect()
    }

    /// Queues an operator event for the driver; returns the entry's id.
    ///
    /// # Errors
    /// On a database failure.
    pub fn send(&self, id: i64, event: &Event) -> Result<i64, StateError> {
        self.conn
            .execute(
                "INSERT INTO inbox (rollout, at_us, event) VALUES (?1, ?2, ?3)",
                params![
                    id,
                    now_us(),
                    serde_json::to_string(event).expect("events serialize")
                ],
            )
            .map_err(self.sql())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Operator events not yet applied, oldest first.
    ///
    /// # Errors
    /// On a database failure or an unreadable event.
    pub fn inbox(&self, id: i64) -> Result<Vec<(i64, Event)>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, event FROM inbox WHERE rollout = ?1 AND taken_us IS NULL ORDER BY id",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        rows.into_iter()
            .map(|(entry, text)| Ok((entry, self.json(format!("inbox entry {entry}"), &text)?)))
            .collect()
    }

    /// The transition that applied an inbox entry, once one has.
    ///
    /// # Errors
    /// On a database failure.
    pub fn taken(&self, entry: i64) -> Result<Option<i64>, StateError> {
        self.conn
            .query_row("SELECT seq FROM inbox WHERE id = ?1", [entry], |r| r.get(0))
            .map_err(self.sql())
    }

    /// Takes back an inbox entry no driver applied; false when one already has.
    ///
    /// # Errors
    /// On a database failure.
    pub fn withdraw(&self, entry: i64) -> Result<bool, StateError> {
        let deleted = self
            .conn
            .execute(
                "DELETE FROM inbox WHERE id = ?1 AND taken_us IS NULL",
                [entry],
            )
            .map_err(self.sql())?;
        Ok(deleted == 1)
    }

    /// Whether every routing action of transition `seq` was performed.
    ///
    /// # Errors
    /// On a database failure or an unreadable action.
    pub fn routed(&self, id: i64, seq: i64) -> Result<bool, StateError> {
        Ok(!self.open_actions(id)?.iter().any(|a| {
            a.seq == seq
                && matches!(
                    a.action,
                    Action::SetSelector { .. } | Action::SetWeights { .. }
                )
        }))
    }
}

impl StateDb {
    /// Stores the routing of the services outside the change set, as the
    /// executor reported it, under `name` (`before` or `after`); a later
    /// snapshot of the same name replaces it.
    ///
    /// # Errors
    /// On a database failure.
    pub fn save_snapshot(
        &self,
        id: i64,
        name: &str,
        routing: &BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO snapshots (rollout, name, at_us, routing) VALUES (?1, ?2, ?3, ?4)",
                params![
                    id,
                    name,
                    now_us(),
                    serde_json::to_string(routing).expect("maps serialize")
                ],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// A stored snapshot.
    ///
    /// # Errors
    /// On a database failure or an unreadable snapshot.
    pub fn snapshot(
        &self,
        id: i64,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, StateError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT routing FROM snapshots WHERE rollout = ?1 AND name = ?2",
                params![id, name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        text.map(|t| self.json(format!("snapshot {name} of rollout {id}"), &t))
            .transpose()
    }
}

/// Whether a process with this id runs on this machine (a zombie, killed
/// but not yet reaped, does not).
fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

#[cfg(test)]
mod tests;
