//! Full verification of a stored log.
//!
//! Every checkpoint signature is checked with the public key alone; then every entry's leaf
//! hash is recomputed from the stored bytes, the tree rebuilt and its root compared with every
//! signed checkpoint and with the tree head. The first damage found is reported with its index
//! and kind.
//!
//! Verification is pinned to the tree head read when it starts: it verifies exactly the
//! entries that head covers (and the signed checkpoints up to it), so it runs while appends
//! continue; entries appended meanwhile are left to the next run. Checkpoints beyond the pinned
//! head have their signatures checked, and must be covered by the tree head at the end of the
//! run (otherwise the log was truncated); rows beyond the final tree head are reported as
//! inserted.
//!
//! The leaves are split into aligned chunks of 2^k leaves (perfect subtrees, 65,536 by
//! default) verified by four tasks in parallel, each on its own connection (SQLite in WAL mode
//! serves concurrent readers), so reading, JSON checks and SHA-256 (aws-lc-rs) use every core.
//! A chunk is read in packed pages of 1,024 entries, one query and one driver row per page
//! (see `crate::pages`), not one driver row per entry. The chunk roots are then combined into
//! the full tree in order, and every checkpoint root inside a chunk is rebuilt from the
//! chunk's partial state at that size. Any irregularity sends the verifier back to one
//! sequential row-by-row pass from the start of the first irregular chunk, so the reported
//! damage is always exactly what a single ordered pass reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::TryStreamExt as _;

use crate::checkpoint::Checkpoint;
use crate::error::{AuditError, storage};
use crate::keys::NoteVerifier;
use crate::log::{AuditLog, read_head, to_i64};
use crate::merkle::{self, CompactRange, Hash};
use crate::pages::{PAGE_LEAVES, PageQuery, Record, Records};
use crate::search::{self, LeafFields};
use crate::store::{Db, Layout};

/// What kind of damage verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    /// An entry's bytes (or bytes and stored hash together) were changed.
    Modified,
    /// An entry is missing (a gap, or later entries renumbered to close it).
    Deleted,
    /// An entry was added that the writer did not append.
    Inserted,
    /// Entries were moved to other positions.
    Reordered,
    /// Entries at the end are missing: the log is shorter than a signed checkpoint or the head.
    Truncated,
    /// A checkpoint's signature does not verify, or its text was altered.
    ForgedCheckpoint,
    /// The search columns (time, kind, principal, patient) no longer match the entry, which
    /// would hide it from queries and accountings.
    SearchColumnsAltered,
}

/// The first damage found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// Kind of damage.
    pub kind: DamageKind,
    /// First bad index (for checkpoints: the tree size of the bad checkpoint).
    pub index: u64,
    /// Human-readable explanation (never entry contents).
    pub detail: String,
}

/// Outcome of [`verify_log`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Entries read.
    pub entries: u64,
    /// Checkpoints whose signature and root verified.
    pub checkpoints_verified: u64,
    /// Tree size of the largest signed checkpoint.
    pub largest_checkpoint: u64,
    /// Entries after the largest signed checkpoint (checked against the tree head only).
    pub unsigned_tail: u64,
    /// The first damage, if any.
    pub damage: Option<Damage>,
}

impl VerifyReport {
    /// True when no damage was found.
    pub fn is_intact(&self) -> bool {
        self.damage.is_none()
    }
}

/// Leaves per verification chunk (one perfect subtree) unless [`VerifyOptions`] says otherwise.
pub const DEFAULT_CHUNK_LEAVES: u64 = 1 << 16;

/// How [`verify_log_with`] splits the work. The result never depends on these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Leaves per chunk; a power of two (each chunk is a perfect, aligned subtree).
    pub chunk_leaves: u64,
    /// Chunks verified at once, each on its own database connection and task.
    pub parallelism: usize,
}

impl Default for VerifyOptions {
    /// 65,536-leaf chunks, four at once (more tasks than cores lets one task's page query
    /// overlap another's hashing).
    fn default() -> Self {
        Self {
            chunk_leaves: DEFAULT_CHUNK_LEAVES,
            parallelism: 4,
        }
    }
}

/// Where the search rows are and how far they have been copied.
#[derive(Debug, Clone, Copy)]
struct Columns {
    layout: Layout,
    watermark: u64,
}

/// Entry rows with their search row (if copied yet).
fn columns(layout: Layout) -> String {
    format!(
        "SELECT e.idx, s.time_us, s.kind, s.principal, s.patient, e.leaf, e.leaf_hash \
         FROM audit_entries e LEFT JOIN {} s ON s.idx = e.idx",
        layout.search_table()
    )
}

fn damage(kind: DamageKind, index: u64, detail: impl Into<String>) -> Option<Damage> {
    Some(Damage {
        kind,
        index,
        detail: detail.into(),
    })
}

/// Verifies the whole log against `verifier` (the checkpoint public key), with the default
/// [`VerifyOptions`].
pub async fn verify_log(
    log: &AuditLog,
    verifier: &NoteVerifier,
) -> Result<VerifyReport, AuditError> {
    verify_log_with(log, verifier, VerifyOptions::default()).await
}

/// Verifies the whole log against `verifier`, splitting the leaves into aligned chunks that
/// are read and hashed in parallel.
///
/// Each chunk task re-hashes every entry of its chunk from the stored bytes, checks the
/// stored hash, the entry's own index and the search columns, and computes the chunk's
/// subtree root plus the partial roots at every checkpoint size inside it. The chunk roots
/// are then combined in order into the tree (every interior node above the chunks) and every
/// signed checkpoint root and the tree head are compared. A chunk that sees anything out of
/// the ordinary (a missing, extra or misplaced row, a bad hash or column) stops, and the
/// log is re-scanned sequentially from the start of the first such chunk, so the first bad
/// index and the kind of damage are exactly those of a single sequential pass.
pub async fn verify_log_with(
    log: &AuditLog,
    verifier: &NoteVerifier,
    options: VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    if !options.chunk_leaves.is_power_of_two() || options.parallelism == 0 {
        return Err(AuditError::Config(
            "verification chunks must be a power of two leaves and parallelism positive",
        ));
    }
    let mut report = VerifyReport {
        entries: 0,
        checkpoints_verified: 0,
        largest_checkpoint: 0,
        unsigned_tail: 0,
        damage: None,
    };

    // The pin: the entries this run verifies.
    let head = read_head(log.db()).await?.compact;
    let pinned = head.size();
    let mut checkpoints: Vec<Checkpoint> = Vec::new();
    for (size, note) in log.checkpoint_notes().await? {
        match Checkpoint::parse_and_verify(&note, verifier) {
            Ok(cp) if cp.size == size && cp.origin == log.origin() => checkpoints.push(cp),
            Ok(_) => {
                report.damage = damage(
                    DamageKind::ForgedCheckpoint,
                    size,
                    "checkpoint row does not match its signed text (size or origin)",
                );
                return Ok(report);
            }
            Err(e) => {
                report.damage = damage(DamageKind::ForgedCheckpoint, size, e.to_string());
                return Ok(report);
            }
        }
    }
    // Checkpoints signed after the pin was read are checked against the final tree head.
    let later_checkpoint = checkpoints
        .iter()
        .map(|c| c.size)
        .filter(|&s| s > pinned)
        .max();
    checkpoints.retain(|c| c.size <= pinned);
    report.largest_checkpoint = checkpoints.last().map_or(0, |c| c.size);

    let mut scan = Scan {
        compact: CompactRange::new(),
        checkpoints: &checkpoints,
        next_cp: 0,
        prev_cp_size: 0,
    };
    if let Some(d) = scan.check_checkpoints() {
        report.damage = Some(d);
        return Ok(report);
    }

    // Parallel pass over aligned chunks.
    let chunk = options.chunk_leaves;
    let chunks = pinned.div_ceil(chunk).max(1);
    let sizes: Arc<Vec<u64>> = Arc::new(checkpoints.iter().map(|c| c.size).collect());
    let cols = Columns {
        layout: log.layout(),
        watermark: search::watermark(log.db(), log.layout()).await?,
    };
    let results = run_chunks(log.db(), cols, pinned, chunk, options.parallelism, &sizes).await?;

    // Combine the chunk roots in order, checking every checkpoint inside each chunk.
    let mut tops = CompactRange::new(); // over chunk roots: each "leaf" is a whole chunk
    let mut anomaly_at: Option<u64> = None;
    let mut last_local = CompactRange::new();
    for (k, result) in results.into_iter().enumerate() {
        let k = k as u64;
        let Some(done) = result else {
            anomaly_at = Some(k);
            break;
        };
        for (size, local) in &done.snapshots {
            scan.compact = combine(&tops, chunk, local);
            debug_assert_eq!(scan.compact.size(), *size);
            if let Some(d) = scan.check_checkpoints() {
                report.entries = *size;
                report.checkpoints_verified = scan.next_cp as u64;
                report.damage = Some(d);
                return Ok(report);
            }
        }
        if k + 1 < chunks {
            tops.push(done.local.root());
        } else {
            last_local = done.local;
        }
    }

    let mut missing: Option<u64> = None;
    let expected = match anomaly_at {
        None => {
            scan.compact = combine(&tops, chunk, &last_local);
            scan.compact.size()
        }
        Some(k) => {
            // Everything before chunk k is clean: continue exactly as a sequential scan would.
            scan.compact = combine(&tops, chunk, &CompactRange::new());
            let from = k * chunk;
            let (expected, found_missing, found) =
                scan_sequential(log.db(), cols, from, pinned, &mut scan).await?;
            missing = found_missing;
            if found.is_some() {
                report.entries = expected;
                report.checkpoints_verified = scan.next_cp as u64;
                report.damage = found;
                return Ok(report);
            }
            expected
        }
    };
    report.entries = expected;
    report.checkpoints_verified = scan.next_cp as u64;
    if let Some(m) = missing {
        report.damage = damage(
            DamageKind::Deleted,
            m,
            "entry is missing and later entries were renumbered",
        );
        return Ok(report);
    }
    if expected < report.largest_checkpoint || expected < pinned {
        report.damage = damage(
            DamageKind::Truncated,
            expected,
            format!(
                "log ends at {expected} entries but a signed checkpoint or the tree head says {}",
                report.largest_checkpoint.max(pinned)
            ),
        );
        return Ok(report);
    }
    // What was appended while this run went on must still be consistent with the head: one
    // statement, so both numbers come from the same snapshot.
    let (head_now, rows_end) = head_and_rows_end(log.db()).await?;
    if let Some(later) = later_checkpoint.filter(|&s| s > head_now) {
        report.damage = damage(
            DamageKind::Truncated,
            expected,
            format!("log ends at {head_now} entries but a signed checkpoint says {later}"),
        );
        return Ok(report);
    }
    if rows_end > head_now {
        report.damage = damage(
            DamageKind::Inserted,
            head_now,
            "entries exist beyond the tree head",
        );
        return Ok(report);
    }
    if scan.compact.root() != head.root() {
        report.damage = damage(
            DamageKind::Modified,
            report.largest_checkpoint,
            format!(
                "an entry in [{}, {expected}) was altered together with its stored hash (tree head root differs)",
                report.largest_checkpoint
            ),
        );
        return Ok(report);
    }
    report.unsigned_tail = expected - report.largest_checkpoint;
    Ok(report)
}

/// The compact range of `tops.size()` whole chunks of `chunk` leaves followed by `local`.
fn combine(tops: &CompactRange, chunk: u64, local: &CompactRange) -> CompactRange {
    if local.size() == chunk {
        // A complete chunk is one more chunk root.
        let mut tops = tops.clone();
        tops.push(local.root());
        return combine(&tops, chunk, &CompactRange::new());
    }
    // Chunk roots are perfect subtrees of height log2(chunk); the peaks of a partial chunk are
    // all lower, so the peaks simply concatenate (largest first) and the heights follow from
    // the size.
    let size = tops.size() * chunk + local.size();
    let mut bytes = size.to_be_bytes().to_vec();
    bytes.extend_from_slice(&tops.to_bytes()[8..]);
    bytes.extend_from_slice(&local.to_bytes()[8..]);
    CompactRange::from_bytes(&bytes).unwrap_or_default()
}

/// The tree head's size and one past the largest entry index, from one snapshot.
async fn head_and_rows_end(db: &Db) -> Result<(u64, u64), AuditError> {
    let sql = "SELECT (SELECT size FROM audit_tree_head WHERE id = 1), \
               (SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries)";
    let (size, end): (i64, i64) = match db {
        Db::Sqlite(p) => sqlx::query_as(sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_one(p).await,
    }
    .map_err(storage("reading the tree head"))?;
    Ok((size.max(0) as u64, end.max(0) as u64))
}

/// A chunk whose every row was in place and intact.
struct CleanChunk {
    /// The chunk's own compact range (one peak when the chunk is full).
    local: CompactRange,
    /// `(tree size, chunk-local compact range)` at every checkpoint size inside the chunk.
    snapshots: Vec<(u64, CompactRange)>,
}

/// Verifies the chunks of `[0, pinned)` with `parallelism` tasks; `None` marks a chunk with
/// an anomaly.
async fn run_chunks(
    db: &Db,
    cols: Columns,
    pinned: u64,
    chunk: u64,
    parallelism: usize,
    sizes: &Arc<Vec<u64>>,
) -> Result<Vec<Option<CleanChunk>>, AuditError> {
    let chunks = pinned.div_ceil(chunk).max(1);
    let query = Arc::new(PageQuery::new(db, cols.layout));
    let next = Arc::new(AtomicU64::new(0));
    // Chunks after the first anomalous one need not be verified.
    let first_anomaly = Arc::new(AtomicU64::new(u64::MAX));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..parallelism.min(usize::try_from(chunks).unwrap_or(usize::MAX)) {
        let (db, next, first_anomaly, sizes, query) = (
            db.clone(),
            next.clone(),
            first_anomaly.clone(),
            sizes.clone(),
            query.clone(),
        );
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= chunks || k > first_anomaly.load(Ordering::Relaxed) {
                    return Ok::<_, AuditError>(done);
                }
                let start = k * chunk;
                let end = (start + chunk).min(pinned);
                let result = verify_chunk(&db, &query, cols, start, end, &sizes).await?;
                if result.is_none() {
                    first_anomaly.fetch_min(k, Ordering::Relaxed);
                }
                done.push((k, result));
            }
        });
    }
    let mut results: Vec<Option<Option<CleanChunk>>> =
        (0..chunks).map(|_| None).collect::<Vec<_>>();
    while let Some(joined) = tasks.join_next().await {
        let done =
            joined.map_err(|_| AuditError::Corrupt("a verification task failed".into()))??;
        for (k, result) in done {
            results[k as usize] = Some(result);
        }
    }
    // Chunks skipped after an anomaly are never reached by the caller (it stops at the first
    // `None`), so mark them as anomalous too.
    Ok(results.into_iter().map(Option::flatten).collect())
}

/// Reads positions `[start, end)` page by page (the first page of the log also takes any
/// negative index) and checks each entry in place. `None` at the first irregularity.
async fn verify_chunk(
    db: &Db,
    query: &PageQuery,
    cols: Columns,
    start: u64,
    end: u64,
    sizes: &[u64],
) -> Result<Option<CleanChunk>, AuditError> {
    let mut sizes = sizes
        .iter()
        .copied()
        .filter(|&s| s > start && s <= end)
        .peekable();
    let mut local = CompactRange::new();
    let mut snapshots = Vec::new();
    let mut position = start;
    let mut time_cache: (i64, String) = (i64::MIN, String::new());
    let mut page_start = start;
    loop {
        let page_end = (page_start + PAGE_LEAVES).min(end);
        let lower = if page_start == 0 {
            i64::MIN
        } else {
            to_i64(page_start)?
        };
        let page = query.read(db, lower, to_i64(page_end)?).await?;
        for record in Records::new(&page) {
            let Ok(record) = record else {
                return Ok(None);
            };
            let Some(hash) = record_in_place(&record, position, cols.watermark, &mut time_cache)
            else {
                return Ok(None);
            };
            local.push(hash);
            position += 1;
            if sizes.peek() == Some(&position) {
                sizes.next();
                snapshots.push((position, local.clone()));
            }
        }
        if position != page_end {
            return Ok(None); // rows missing in a range the pinned head covers
        }
        if page_end >= end {
            break;
        }
        page_start = page_end;
    }
    Ok(Some(CleanChunk { local, snapshots }))
}

/// The formatted commit time, computed once per batch (entries of a batch share it).
fn time_matches(time_us: i64, time: &str, cache: &mut (i64, String)) -> bool {
    if cache.0 != time_us {
        use chrono::TimeZone as _;
        let formatted = chrono::Utc
            .timestamp_micros(time_us)
            .single()
            .map(|t| crate::event::format_time(&t))
            .unwrap_or_default();
        *cache = (time_us, formatted);
    }
    time == cache.1
}

/// The leaf hash when the packed record sits at `position`, names `position` itself,
/// matches its stored hash and its search row (or has none and is not yet copied): the fast
/// path of [`verify_chunk`], with the same checks as the ordered pass.
fn record_in_place(
    record: &Record<'_>,
    position: u64,
    watermark: u64,
    cache: &mut (i64, String),
) -> Option<Hash> {
    if record.idx < 0 || record.idx as u64 != position {
        return None;
    }
    let fields = serde_json::from_slice::<LeafFields<'_>>(record.leaf).ok()?;
    if fields.index != position {
        return None;
    }
    let hash = merkle::leaf_hash(record.leaf);
    if record.stored_hash != hash.as_slice() {
        return None;
    }
    let search_ok = match &record.search {
        Some(s) => {
            time_matches(s.time_us, &fields.time, cache)
                && fields.event.kind.as_bytes() == s.kind
                && fields.event.principal.as_deref().map(str::as_bytes) == s.principal
                && fields.event.patient.as_deref().map(str::as_bytes) == s.patient
        }
        None => position >= watermark,
    };
    search_ok.then_some(hash)
}

/// One entry row, borrowed from the driver's row buffer.
struct RowRef<'r> {
    idx: i64,
    time_us: Option<i64>,
    kind: Option<&'r str>,
    principal: Option<&'r str>,
    patient: Option<&'r str>,
    leaf: &'r [u8],
    stored_hash: &'r [u8],
}

impl<'r> RowRef<'r> {
    fn from_row<R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        &'r [u8]: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(Self {
            idx: row.try_get(0)?,
            time_us: row.try_get(1)?,
            kind: row.try_get(2)?,
            principal: row.try_get(3)?,
            patient: row.try_get(4)?,
            leaf: row.try_get(5)?,
            stored_hash: row.try_get(6)?,
        })
    }

    /// The search row matches the entry, or there is none and the entry is at or above the
    /// search watermark (not copied yet). A missing row below it would hide the entry from
    /// queries.
    fn search_columns_match(
        &self,
        fields: &LeafFields<'_>,
        watermark: u64,
        cache: &mut (i64, String),
    ) -> bool {
        match (self.time_us, self.kind) {
            (Some(time_us), Some(kind)) => {
                time_matches(time_us, &fields.time, cache)
                    && fields.event.kind == kind
                    && fields.event.principal.as_deref() == self.principal
                    && fields.event.patient.as_deref() == self.patient
            }
            _ => self.idx >= 0 && self.idx as u64 >= watermark,
        }
    }
}

/// The original single pass over `[from, pinned)`, row by row, with `scan` seeded for the
/// entries before `from`. Returns the entries read in order, an index still missing (a renumbered deletion) and
/// the first damage.
async fn scan_sequential(
    db: &Db,
    cols: Columns,
    from: u64,
    pinned: u64,
    scan: &mut Scan<'_>,
) -> Result<(u64, Option<u64>, Option<Damage>), AuditError> {
    // When an entry's content index is ahead of its position, the damage is a deletion (with
    // renumbering) or a move; which one is only known once the missing index turns up (move)
    // or never does (deletion).
    let mut missing: Option<u64> = None;
    let mut expected: u64 = from;
    let mut found: Option<Damage> = None;
    let mut time_cache: (i64, String) = (i64::MIN, String::new());
    let lower = if from == 0 { i64::MIN } else { to_i64(from)? };
    let columns = columns(cols.layout);
    let upper = to_i64(pinned)?;
    let sql_sqlite = format!("{columns} WHERE e.idx >= ? AND e.idx < ? ORDER BY e.idx");
    let sql_pg = format!("{columns} WHERE e.idx >= $1 AND e.idx < $2 ORDER BY e.idx");
    macro_rules! scan_rows {
        ($pool:expr, $sql:expr) => {{
            let mut rows = sqlx::query($sql).bind(lower).bind(upper).fetch($pool);
            while let Some(row) = rows.try_next().await.map_err(storage("reading entries"))? {
                let row = RowRef::from_row(&row).map_err(storage("reading entries"))?;
                let fields = serde_json::from_slice::<LeafFields<'_>>(row.leaf).ok();
                if let Some(m) = missing {
                    if fields.as_ref().is_some_and(|f| f.index == m) {
                        found = damage(DamageKind::Reordered, m, "entry found at another position");
                        break;
                    }
                    continue;
                }
                let position = expected;
                if row.idx < 0 || row.idx as u64 != position {
                    found = damage(DamageKind::Deleted, position, "entry row is missing");
                    break;
                }
                let Some(fields) = fields else {
                    found = damage(
                        DamageKind::Modified,
                        position,
                        "entry bytes are not a valid entry",
                    );
                    break;
                };
                if fields.index < position {
                    found = damage(
                        DamageKind::Inserted,
                        fields.index,
                        "an entry was inserted and later entries shifted",
                    );
                    break;
                }
                if fields.index > position {
                    missing = Some(position);
                    continue;
                }
                let hash = merkle::leaf_hash(row.leaf);
                if row.stored_hash != hash.as_slice() {
                    found = damage(
                        DamageKind::Modified,
                        position,
                        "entry bytes do not match the stored leaf hash",
                    );
                    break;
                }
                if !row.search_columns_match(&fields, cols.watermark, &mut time_cache) {
                    found = damage(
                        DamageKind::SearchColumnsAltered,
                        position,
                        "search columns do not match the hashed entry",
                    );
                    break;
                }
                scan.compact.push(hash);
                expected += 1;
                if let Some(d) = scan.check_checkpoints() {
                    found = Some(d);
                    break;
                }
            }
        }};
    }
    match db {
        Db::Sqlite(p) => scan_rows!(p, &sql_sqlite),
        Db::Postgres(p) => scan_rows!(p, &sql_pg),
    }
    Ok((expected, missing, found))
}

struct Scan<'a> {
    compact: CompactRange,
    checkpoints: &'a [Checkpoint],
    next_cp: usize,
    prev_cp_size: u64,
}

impl Scan<'_> {
    /// Compares the root with every checkpoint of the current size.
    fn check_checkpoints(&mut self) -> Option<Damage> {
        while let Some(cp) = self.checkpoints.get(self.next_cp) {
            if cp.size != self.compact.size() {
                break;
            }
            let root: Hash = self.compact.root();
            if root != cp.root {
                return damage(
                    DamageKind::Modified,
                    self.prev_cp_size,
                    format!(
                        "an entry in [{}, {}) was altered together with its stored hash \
                         (signed checkpoint root differs)",
                        self.prev_cp_size, cp.size
                    ),
                );
            }
            self.prev_cp_size = cp.size;
            self.next_cp += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range_of(leaves: &[Hash]) -> CompactRange {
        let mut r = CompactRange::new();
        for leaf in leaves {
            r.push(*leaf);
        }
        r
    }

    #[test]
    fn combining_chunk_roots_with_the_last_chunk_gives_the_full_tree() {
        let leaves: Vec<Hash> = (0..43u8).map(|i| merkle::leaf_hash(&[i])).collect();
        for chunk in [1u64, 2, 4, 8, 16, 64] {
            for n in 0..=leaves.len() {
                let full = range_of(&leaves[..n]);
                // The last chunk partial (or empty), and, when it is complete, also held as
                // a chunk of its own: both must give the same tree.
                let mut splits = vec![(n as u64 / chunk) * chunk];
                if n > 0 {
                    splits.push(((n as u64 - 1) / chunk) * chunk);
                }
                for split in splits {
                    let tops = range_of(
                        &leaves[..split as usize]
                            .chunks(chunk as usize)
                            .map(|c| range_of(c).root())
                            .collect::<Vec<_>>(),
                    );
                    let local = range_of(&leaves[split as usize..n]);
                    let combined = combine(&tops, chunk, &local);
                    assert_eq!(combined, full, "chunk {chunk}, {n} leaves, split {split}");
                    assert_eq!(combined.root(), full.root());
                }
            }
        }
    }

    /// A clean log is verified on the packed-page path itself (not by falling back to the
    /// ordered pass), with chunks of several pages and a partial last page, and with search
    /// rows both copied and not yet copied.
    async fn clean_chunks_pass_the_packed_page_path_on(storage: crate::Storage) {
        use crate::event::{Event, KeyAction, KeyLifecycle};
        let dir = tempfile::tempdir().unwrap();
        let root = sealed::DataKey::from_slice(&[0x5a; 32]).unwrap();
        let kek: Arc<dyn sealed::KeyProvider> =
            Arc::new(sealed::SoftwareKeyProvider::from_root(root, "file").unwrap());
        let keys =
            Arc::new(crate::FileKeys::open_or_create(&dir.path().join("keys"), "t", kek).unwrap());
        let mut cfg = crate::LogConfig::new(storage);
        cfg.search_batch = 1_000_000;
        cfg.search_idle = std::time::Duration::from_secs(3600);
        let log = AuditLog::open(cfg, keys).await.unwrap();
        let n = 2 * PAGE_LEAVES + 100;
        let appends = (0..n).map(|i| {
            log.append(Event::KeyLifecycle(KeyLifecycle {
                principal: format!("admin:{}", i % 7),
                key_id: format!("k{i}"),
                key_purpose: "kek".into(),
                action: KeyAction::Generated,
            }))
        });
        futures::future::try_join_all(appends).await.unwrap();
        // Half copied, half not.
        crate::search::copy_batch(
            log.copier().unwrap(),
            &crate::log::WriteGate::default(),
            (n / 2) as usize,
        )
        .await
        .unwrap();
        let cols = Columns {
            layout: log.layout(),
            watermark: crate::search::watermark(log.db(), log.layout())
                .await
                .unwrap(),
        };
        assert_eq!(cols.watermark, n / 2);
        let query = PageQuery::new(log.db(), cols.layout);
        let sizes = [PAGE_LEAVES + 1, n];
        let done = verify_chunk(log.db(), &query, cols, 0, n, &sizes)
            .await
            .unwrap()
            .expect("a clean chunk must not fall back to the ordered pass");
        assert_eq!(done.local.size(), n);
        assert_eq!(done.local.root(), log.tree_head().await.unwrap().1);
        assert_eq!(
            done.snapshots.iter().map(|s| s.0).collect::<Vec<_>>(),
            sizes
        );
        log.close().await;
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn clean_chunks_pass_the_packed_page_path_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        runtime().block_on(clean_chunks_pass_the_packed_page_path_on(
            crate::Storage::Sqlite {
                path: dir.path().join("audit.db"),
            },
        ));
    }

    #[test]
    fn clean_chunks_pass_the_packed_page_path_on_postgres() {
        let url = std::env::var("PHIGATE_TEST_DATABASE_URL")
            .expect("PHIGATE_TEST_DATABASE_URL must be set for the PostgreSQL tests");
        let schema = format!("audit_pages_{}", std::process::id());
        runtime().block_on(async {
            clean_chunks_pass_the_packed_page_path_on(crate::Storage::Postgres {
                url: secrecy::SecretString::from(url.clone()),
                schema: Some(schema.clone()),
            })
            .await;
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        });
    }
}
