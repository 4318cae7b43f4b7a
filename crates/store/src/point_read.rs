//! Point reads of one record on SQLite, run on the calling thread.
//!
//! [`crate::Store::get`] is the gateway's per-request read. Through sqlx's SQLite driver it
//! cost two thread hand-offs (to the connection's worker thread and back) for a lookup that
//! SQLite answers from its page cache in a few microseconds; on a 2-vCPU VM the hand-offs
//! were most of its cost (`docs/benchmarks.md`, "Where the remaining gap is"). Here the
//! statement runs inline on a small set of read-only connections.
//!
//! Decision: this blocks the calling (async) thread for the duration of one primary-key
//! lookup. In WAL mode a reader never waits for the writer, so the wait is bounded by the
//! lookup itself (a page-cache hit, or one disk read for a cold page). A `spawn_blocking`
//! hop would cost more than the read it moves. The busy timeout only matters in the rare
//! moments SQLite itself needs an exclusive lock (WAL recovery after a crash).
//!
//! The connections are opened read-only, so nothing on this path can write.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use crate::error::{Result, StoreError};

/// Idle connections kept for reuse; more can be open at once while readers overlap.
const IDLE_CONNECTIONS: usize = 8;

/// `(created_at, updated_at, expires_at, sealed)` of one record.
pub(crate) type PointRow = (i64, i64, Option<i64>, Vec<u8>);

pub(crate) struct SqlitePointReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqlitePointReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlitePointReads").finish_non_exhaustive()
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // SQLite's messages name tables and constraints, never row values.
        StoreError::Database(match &e {
            rusqlite::Error::SqliteFailure(code, Some(message)) => {
                format!("{message} ({})", code.extended_code)
            }
            rusqlite::Error::SqliteFailure(code, None) => {
                format!("SQLite error ({})", code.extended_code)
            }
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..) => {
                "stored value has an unexpected type".into()
            }
            _ => "database error".into(),
        })
    }
}

impl SqlitePointReads {
    /// For the file that the sqlx pool has already created and migrated.
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        Ok(conn)
    }

    /// The row of `(kind, key_hmac)`, expired or not (the caller decides).
    pub(crate) fn record(&self, kind: &str, key_hmac: &[u8]) -> Result<Option<PointRow>> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match reused {
            Some(conn) => conn,
            None => self.open()?,
        };
        let row = conn
            .prepare_cached(
                "SELECT created_at, updated_at, expires_at, sealed FROM records \
                 WHERE kind = ?1 AND key_hmac = ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row((kind, key_hmac), |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
            });
        // A connection that failed is dropped rather than reused.
        if row.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(conn);
            }
        }
        Ok(row?)
    }
}
