//! The search table (`audit_search`), filled behind the appends.
//!
//! An append commits only the entry row (index, canonical bytes, leaf hash) and the tree
//! head; its search columns (commit time, kind, principal, patient HMAC) are copied into
//! `audit_search` afterwards by a background task of the writing process, the *indexer*,
//! which reads them back out of the committed leaves. It copies once 16,384 entries are
//! waiting or when no append has committed for 50 ms ([`crate::LogConfig`] has both), in
//! transactions of 256 rows, so the four search indexes are updated in sorted runs instead
//! of inside every fsync'd append, and an append never waits behind more than one run.
//! On SQLite the copy runs on its own connection on blocking threads and commits without an
//! fsync of its own (why that is safe: [`crate::sqlite_append`]); on PostgreSQL it goes
//! through the pool.
//!
//! The copied range is always a prefix of the log: the watermark is `MAX(idx) + 1` of the
//! search table. Queries read indexed rows below the watermark and the leaves at or above it
//! (see [`crate::AuditLog::query`]), so a query never misses an entry, whatever the indexer's
//! progress, and a crash between the append and the copy loses nothing (the next writer to
//! open the log copies what is missing). Several indexers (PostgreSQL, several gateway
//! instances) may copy the same range: inserts are `ON CONFLICT DO NOTHING`.
//!
//! An entry that does not decode, or whose position or index is wrong, stops the copy
//! before it (the rest stays readable through the leaves) and is left to verification to
//! report; the indexer logs that it stopped, never the entry.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use sqlx::QueryBuilder;
use tokio::sync::watch;

use crate::error::{AuditError, storage};
use crate::log::{WriteGate, to_i64};
use crate::sqlite_append::SqliteSearchCopier;
use crate::store::{Db, Layout, Storage, WriteBackend};

/// Rows per transaction of the search copy (and per multi-row `INSERT` on PostgreSQL, 5
/// parameters each). An append waits for at most one such transaction: with 256 rows the
/// gateway's p99 at full load was 11-15 ms against 17-19 ms with 1,000, at the same
/// throughput (`docs/benchmarks.md`); smaller chunks cost little since the SQLite copy's
/// commits do not fsync.
const INSERT_CHUNK: usize = 256;

/// The fields of a leaf that verification and the indexer need, borrowed from its bytes.
#[derive(Deserialize)]
pub(crate) struct LeafFields<'a> {
    pub(crate) index: u64,
    #[serde(borrow)]
    pub(crate) time: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) event: EventFields<'a>,
}

/// The search columns inside a leaf's event.
#[derive(Deserialize)]
pub(crate) struct EventFields<'a> {
    #[serde(borrow)]
    pub(crate) kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) principal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) patient: Option<Cow<'a, str>>,
}

/// First index not yet in the search table.
pub(crate) async fn watermark(db: &Db, layout: Layout) -> Result<u64, AuditError> {
    let sql = format!(
        "SELECT COALESCE(MAX(idx) + 1, 0) FROM {}",
        layout.search_table()
    );
    let (w,): (i64,) = match db {
        Db::Sqlite(p) => sqlx::query_as(&sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_as(&sql).fetch_one(p).await,
    }
    .map_err(storage("reading the search watermark"))?;
    Ok(w.max(0) as u64)
}

/// What one copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Copied {
    /// The watermark afterwards.
    pub(crate) watermark: u64,
    /// Entries copied.
    pub(crate) rows: u64,
    /// The copy stopped at an entry that does not decode or is out of place.
    pub(crate) stalled: bool,
}

/// Committed entries as `(idx, leaf)`, in index order.
pub(crate) type Leaves = Vec<(i64, Vec<u8>)>;

/// One row of `audit_search`.
pub(crate) struct SearchRow {
    pub(crate) idx: i64,
    pub(crate) time_us: i64,
    pub(crate) kind: String,
    pub(crate) principal: Option<String>,
    pub(crate) patient: Option<String>,
}

/// Where the writing process's search copy reads leaves and writes rows.
#[derive(Clone, Debug)]
pub(crate) enum Copier {
    /// On blocking threads through the copy's own connection (see [`crate::sqlite_append`]).
    Sqlite(SqliteSearchCopier),
    /// Through the sqlx pool.
    Postgres(sqlx::PgPool),
}

impl Copier {
    pub(crate) fn new(storage: &Storage, db: &Db) -> Result<Self, AuditError> {
        Ok(match db.write_backend(storage)? {
            WriteBackend::Sqlite(path) => Self::Sqlite(SqliteSearchCopier::open(path)?),
            WriteBackend::Postgres(pool) => Self::Postgres(pool.clone()),
        })
    }
}

/// Copies the search columns of up to `limit` entries from the watermark on, in
/// transactions of [`INSERT_CHUNK`] rows.
pub(crate) async fn copy_batch(
    copier: &Copier,
    gate: &WriteGate,
    limit: usize,
) -> Result<Copied, AuditError> {
    let ctx = "copying search columns";
    let (from, rows) = match copier {
        Copier::Sqlite(c) => {
            let c = c.clone();
            tokio::task::spawn_blocking(move || c.pending(limit))
                .await
                .map_err(|_| stopped(ctx))??
        }
        Copier::Postgres(p) => {
            let from = watermark(&Db::Postgres(p.clone()), Layout::V2).await?;
            let rows: Leaves = sqlx::query_as(
                "SELECT idx, leaf FROM audit_entries WHERE idx >= $1 ORDER BY idx LIMIT $2",
            )
            .bind(to_i64(from)?)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(p)
            .await
            .map_err(storage(ctx))?;
            (from, rows)
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    let mut stalled = false;
    for (i, (idx, leaf)) in rows.iter().enumerate() {
        let expected = from + i as u64;
        match search_row(expected, *idx, leaf) {
            Some(row) => out.push(row),
            None => {
                stalled = true;
                break;
            }
        }
    }
    drop(rows);
    let copied = out.len() as u64;
    // One transaction per chunk, taking the write gate for each: appends wait for at most
    // one chunk's insert, not for the whole batch, whose four index updates took around
    // 100 ms on a small VM and showed as the gateway's tail latency. The chunks commit in
    // order, so the copied range stays a prefix of the log.
    while !out.is_empty() {
        let rest = out.split_off(out.len().min(INSERT_CHUNK));
        let chunk = std::mem::replace(&mut out, rest);
        match copier {
            Copier::Sqlite(c) => {
                let _gate = gate.lock().await;
                let c = c.clone();
                tokio::task::spawn_blocking(move || c.insert(&chunk))
                    .await
                    .map_err(|_| stopped(ctx))??;
            }
            Copier::Postgres(p) => {
                let mut tx = p.begin().await.map_err(storage(ctx))?;
                let mut qb: QueryBuilder<'_, sqlx::Postgres> = QueryBuilder::new(
                    "INSERT INTO audit_search (idx, time_us, kind, principal, patient) ",
                );
                qb.push_values(&chunk, |mut b, r| {
                    b.push_bind(r.idx)
                        .push_bind(r.time_us)
                        .push_bind(r.kind.as_str())
                        .push_bind(r.principal.as_deref())
                        .push_bind(r.patient.as_deref());
                });
                qb.push(" ON CONFLICT (idx) DO NOTHING");
                qb.build().execute(&mut *tx).await.map_err(storage(ctx))?;
                tx.commit().await.map_err(storage(ctx))?;
            }
        }
    }
    Ok(Copied {
        watermark: from + copied,
        rows: copied,
        stalled,
    })
}

/// The error for a blocking copy thread that panicked or was cancelled.
fn stopped(context: &'static str) -> AuditError {
    AuditError::Storage {
        context,
        detail: "the copy thread stopped".into(),
    }
}

/// The search row of the entry at `position`, or `None` if it is not in place or not an
/// entry.
fn search_row(position: u64, idx: i64, leaf: &[u8]) -> Option<SearchRow> {
    if idx < 0 || idx as u64 != position {
        return None;
    }
    let fields: LeafFields<'_> = serde_json::from_slice(leaf).ok()?;
    if fields.index != position {
        return None;
    }
    let time = chrono::DateTime::parse_from_rfc3339(&fields.time).ok()?;
    Some(SearchRow {
        idx,
        time_us: time.timestamp_micros(),
        kind: fields.event.kind.into_owned(),
        principal: fields.event.principal.map(Cow::into_owned),
        patient: fields.event.patient.map(Cow::into_owned),
    })
}

/// Copies until the search table holds every entry (or an entry stops the copy). Returns
/// the watermark.
pub(crate) async fn catch_up(
    copier: &Copier,
    gate: &WriteGate,
    batch: usize,
) -> Result<u64, AuditError> {
    loop {
        let copied = copy_batch(copier, gate, batch).await?;
        if copied.rows == 0 || copied.stalled {
            return Ok(copied.watermark);
        }
    }
}

/// The indexer task: copies whenever `batch` entries are waiting or no commit has been
/// announced on `head` for `idle`; catches up and stops when the writer is gone.
pub(crate) async fn run_indexer(
    db: Db,
    copier: Copier,
    gate: WriteGate,
    mut head: watch::Receiver<u64>,
    batch: usize,
    idle: Duration,
) {
    let mut copied = match watermark(&db, Layout::V2).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "audit search indexer could not start");
            return;
        }
    };
    loop {
        let size = *head.borrow_and_update();
        let writer_gone;
        if size >= copied + batch as u64 {
            writer_gone = false;
        } else if size > copied {
            match tokio::time::timeout(idle, head.changed()).await {
                Ok(Ok(())) => continue, // still appending: not idle yet
                Ok(Err(_)) => writer_gone = true,
                Err(_) => writer_gone = false, // idle
            }
        } else {
            if head.changed().await.is_err() {
                return;
            }
            continue;
        }
        match copy_batch(&copier, &gate, batch).await {
            Ok(done) if done.stalled => {
                tracing::warn!(
                    at = done.watermark,
                    "audit search indexer stopped: an entry does not decode or is out of place \
                     (queries still read it from the log; run `phigate audit verify`)"
                );
                return;
            }
            Ok(done) => {
                copied = done.watermark;
                if done.rows == 0 {
                    // Nothing visible to copy yet: wait instead of asking again at once.
                    if writer_gone {
                        return;
                    }
                    tokio::time::sleep(idle).await;
                }
            }
            // The log was closed, or its last handle dropped: the next writer to open the log
            // copies the rest.
            Err(_) if writer_gone || db.is_closed() => return,
            Err(e) => {
                tracing::warn!(error = %e, "audit search columns not copied yet; will retry");
                tokio::time::sleep(idle).await;
            }
        }
        if writer_gone && copied >= *head.borrow() {
            return;
        }
    }
}
