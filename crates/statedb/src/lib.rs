//! Opening a state database: one SQLite file in a state directory that
//! records work before it is acted on (patch runs, rollouts).
//!
//! Every such database is opened the same way: the folder is created, the
//! journal is a write-ahead log so readers never block the writer, each
//! commit is synced (`synchronous=FULL`) so a recorded step survives a power
//! loss as well as `kill -9`, foreign keys are enforced, and a schema written
//! by a newer bulkhead is refused instead of being misread.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a state database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("creating state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {path} has schema version {found}; this bulkhead knows {known}")]
    Schema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
}

/// Opens (creating if needed) `dir/file` and returns the connection and the
/// file's path. The caller creates its tables and sets `user_version`.
///
/// # Errors
/// When the folder or the database cannot be created, or its `user_version`
/// is above `schema_version`.
pub fn open(
    dir: &Path,
    file: &str,
    schema_version: i64,
) -> Result<(Connection, PathBuf), OpenError> {
    std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(file);
    let sql = |source| OpenError::Sqlite {
        path: path.clone(),
        source,
    };
    let conn = Connection::open(&path).map_err(sql)?;
    // Another bulkhead process (an operator command beside a running driver)
    // may hold the write lock for a moment; wait rather than fail.
    conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql)?;
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    if found > schema_version {
        return Err(OpenError::Schema {
            path,
            found,
            known: schema_version,
        });
    }
    Ok((conn, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    use test_support::TempDir;

    #[test]
    fn opens_in_wal_mode_with_full_sync_and_foreign_keys() {
        let temp = TempDir::new("statedb-open");
        let dir = temp.join("nested");
        let (conn, path) = open(&dir, "x.db", 1).unwrap();
        assert_eq!(path, dir.join("x.db"));
        let text = |p: &str| -> String { conn.pragma_query_value(None, p, |r| r.get(0)).unwrap() };
        let number = |p: &str| -> i64 { conn.pragma_query_value(None, p, |r| r.get(0)).unwrap() };
        assert_eq!(text("journal_mode"), "wal");
        assert_eq!(number("synchronous"), 2, "FULL");
        assert_eq!(number("foreign_keys"), 1);
    }

    #[test]
    fn refuses_a_schema_from_a_newer_bulkhead() {
        let temp = TempDir::new("statedb-schema");
        let dir = temp.join("state");
        let (conn, _) = open(&dir, "x.db", 3).unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        drop(conn);
        assert!(open(&dir, "x.db", 3).is_ok());
        let err = open(&dir, "x.db", 2).unwrap_err();
        assert!(
            matches!(
                err,
                OpenError::Schema {
                    found: 3,
                    known: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("has schema version 3; this bulkhead knows 2"),
            "{err}"
        );
    }

    #[test]
    fn a_file_in_place_of_the_folder_is_a_clear_error() {
        let temp = TempDir::new("statedb-file");
        let dir = temp.join("file");
        std::fs::write(&dir, "not a folder").unwrap();
        let err = open(&dir, "x.db", 1).unwrap_err();
        assert!(matches!(err, OpenError::Dir { .. }), "{err}");
        assert!(
            err.to_string().starts_with("creating state directory"),
            "{err}"
        );
    }
}
