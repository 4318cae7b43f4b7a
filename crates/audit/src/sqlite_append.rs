//! The SQLite write paths of the writing process: appends (one batch, one `BEGIN IMMEDIATE`
//! transaction) and the search copy, each on its own connection that runs statements on the
//! thread that calls it.
//!
//! Why not sqlx here: sqlx's SQLite driver gives every connection its own worker thread and
//! sends it each statement over a channel, so a batch of five statements costs ten thread
//! hand-offs, which on a small VM were most of the gateway's CPU (`docs/benchmarks.md`,
//! "Profile of the governed path"). The writer task hands the whole batch to one blocking
//! thread instead, which runs it here on a [`rusqlite`] connection opened on the same file.
//! The search copy ([`SqliteSearchCopier`]) works the same way for the same reason. Everything
//! else (schema, migrations, queries, verification, manual checkpoints) stays on sqlx; both
//! link the same SQLite library.
//!
//! Invariants, the same as the sqlx path it replaces for SQLite:
//! * the head row is read inside the write transaction, so a batch starts where the last
//!   committed one ended, also when another process appended meanwhile;
//! * `synchronous=FULL` on this connection: the commit returns after the WAL is on disk, and
//!   only then does the writer acknowledge the batch's callers;
//! * the caller holds the process's write gate for the whole transaction.
//!
//! The search copy's connection commits with `synchronous=NORMAL` (no fsync per commit) on
//! purpose: its rows are derived from entries that were fsync'd before it read them, and the
//! WAL keeps commits in order, so a power loss can only roll back a suffix of copied rows,
//! which leaves the copied range a prefix of the log and is copied again by the next writer
//! (see [`crate::search`]). Skipping the fsync shortens the time each chunk holds the write
//! gate, which appends wait behind.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use crate::error::AuditError;
use crate::event::leaf_bytes;
use crate::keys::CheckpointSigner;
use crate::log::{Head, batch_time, decode_head, sign_checkpoint, to_i64};
use crate::merkle;
use crate::search::{Leaves, SearchRow};

/// One entry to append: its canonical event bytes and sealed detail.
pub(crate) struct NewEntry<'a> {
    pub(crate) event: &'a [u8],
    pub(crate) detail: Option<&'a crate::event::SealedDetail>,
}

/// The writer's own connection to a SQLite audit database.
#[derive(Clone)]
pub(crate) struct SqliteAppender {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteAppender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAppender").finish_non_exhaustive()
    }
}

/// Sanitizes a rusqlite error the way [`crate::error::sanitize`] does sqlx's: SQLite's
/// messages name tables and constraints, never row values.
fn storage(context: &'static str) -> impl Fn(rusqlite::Error) -> AuditError {
    move |e| AuditError::Storage {
        context,
        detail: match &e {
            rusqlite::Error::SqliteFailure(code, Some(message)) => {
                format!("{message} (code {})", code.extended_code)
            }
            rusqlite::Error::SqliteFailure(code, None) => {
                format!("SQLite error (code {})", code.extended_code)
            }
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..) => {
                "stored value has an unexpected type".into()
            }
            rusqlite::Error::QueryReturnedNoRows => "row not found".into(),
            _ => "database error".into(),
        },
    }
}

impl SqliteAppender {
    /// Opens the file that [`crate::store::connect`] has created and migrated (it is never
    /// created here).
    pub(crate) fn open(path: &Path) -> Result<Self, AuditError> {
        let conn = open_connection(
            path,
            Synchronous::Full,
            "opening the SQLite audit database for appends",
        )?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Appends `entries` in one transaction, signing a checkpoint when the last one is older
    /// than `checkpoint_interval_us`; returns the index of the first. Blocks: call it from a
    /// blocking thread.
    pub(crate) fn append(
        &self,
        entries: &[NewEntry<'_>],
        origin: &str,
        signer: &dyn CheckpointSigner,
        checkpoint_interval_us: i64,
    ) -> Result<u64, AuditError> {
        let ctx = "appending a batch";
        // A panic while holding the lock cannot leave a transaction open: rusqlite rolls back
        // an unfinished transaction when it is dropped during the unwind.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage(ctx))?;
        let mut head: Head = decode_head(
            tx.prepare_cached(
                "SELECT size, compact, last_checkpoint_us FROM audit_tree_head WHERE id = 1",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get(1)?, r.get(2)?))))
            .map_err(storage(ctx))?,
        )?;
        let start = head.compact.size();
        let (now, time_text) = batch_time();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO audit_entries (idx, leaf, leaf_hash) VALUES (?1, ?2, ?3)",
                )
                .map_err(storage(ctx))?;
            for (i, entry) in entries.iter().enumerate() {
                let index = start + i as u64;
                let leaf = leaf_bytes(index, &time_text, entry.event, entry.detail);
                let hash = merkle::leaf_hash(&leaf);
                head.compact.push(hash);
                insert
                    .execute(params![to_i64(index)?, leaf, &hash[..]])
                    .map_err(storage(ctx))?;
            }
        }
        let mut last_checkpoint = head.last_checkpoint_us;
        if now.saturating_sub(last_checkpoint) >= checkpoint_interval_us {
            let note = sign_checkpoint(origin, &head.compact, now, signer)?;
            let size = to_i64(head.compact.size())?;
            tx.prepare_cached(
                "INSERT INTO audit_checkpoints (tree_size, time_us, note) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (tree_size) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![size, now, note]))
            .map_err(storage(ctx))?;
            last_checkpoint = now;
        }
        let size = to_i64(head.compact.size())?;
        tx.prepare_cached(
            "UPDATE audit_tree_head SET size = ?1, compact = ?2, last_checkpoint_us = ?3 \
             WHERE id = 1",
        )
        .and_then(|mut s| s.execute(params![size, head.compact.to_bytes(), last_checkpoint]))
        .map_err(storage(ctx))?;
        tx.commit().map_err(storage(ctx))?;
        Ok(start)
    }
}

/// How a connection's commits reach the disk (`PRAGMA synchronous`).
#[derive(Clone, Copy)]
enum Synchronous {
    /// Every commit fsyncs the WAL: for entries, which are acknowledged after the commit.
    Full,
    /// Only checkpoints fsync: for the search copy (see the module docs).
    Normal,
}

/// Opens a read-write connection to the existing WAL-mode audit database `path`.
fn open_connection(
    path: &Path,
    synchronous: Synchronous,
    ctx: &'static str,
) -> Result<Connection, AuditError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(storage(ctx))?;
    // WAL is a property of the file (set when it was created); the others are per
    // connection and must match the sqlx pool's.
    let synchronous = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = 30000;"
    ))
    .map_err(storage(ctx))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .map_err(storage(ctx))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(AuditError::Storage {
            context: ctx,
            detail: "the audit database is not in WAL mode".into(),
        });
    }
    Ok(conn)
}

/// The search copy's own connection to a SQLite audit database (see [`crate::search`]).
#[derive(Clone)]
pub(crate) struct SqliteSearchCopier {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteSearchCopier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteSearchCopier").finish_non_exhaustive()
    }
}

impl SqliteSearchCopier {
    /// Opens the file that [`crate::store::connect`] has created and migrated.
    pub(crate) fn open(path: &Path) -> Result<Self, AuditError> {
        let conn = open_connection(
            path,
            Synchronous::Normal,
            "opening the SQLite audit database for the search copy",
        )?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// The search watermark and up to `limit` committed leaves from it on, read in one
    /// snapshot. Blocks: call it from a blocking thread.
    pub(crate) fn pending(&self, limit: usize) -> Result<(u64, Leaves), AuditError> {
        let ctx = "copying search columns";
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction().map_err(storage(ctx))?;
        let from: i64 = tx
            .prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_search")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(storage(ctx))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let leaves = tx
            .prepare_cached(
                "SELECT idx, leaf FROM audit_entries WHERE idx >= ?1 ORDER BY idx LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![from, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Leaves, _>>()
            })
            .map_err(storage(ctx))?;
        tx.commit().map_err(storage(ctx))?;
        Ok((from.max(0) as u64, leaves))
    }

    /// Inserts `rows` in one `BEGIN IMMEDIATE` transaction. The caller holds the process's
    /// write gate. Blocks: call it from a blocking thread.
    pub(crate) fn insert(&self, rows: &[SearchRow]) -> Result<(), AuditError> {
        let ctx = "copying search columns";
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage(ctx))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO audit_search (idx, time_us, kind, principal, patient) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (idx) DO NOTHING",
                )
                .map_err(storage(ctx))?;
            for r in rows {
                insert
                    .execute(params![r.idx, r.time_us, r.kind, r.principal, r.patient])
                    .map_err(storage(ctx))?;
            }
        }
        tx.commit().map_err(storage(ctx))
    }
}
