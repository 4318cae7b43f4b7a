//! The audit log handle: durable group-committed appends, checkpoints, proofs and queries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use futures::TryStreamExt as _;
use sqlx::QueryBuilder;
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};

use crate::checkpoint::Checkpoint;
use crate::error::{AuditError, storage};
use crate::event::{Entry, Event, KeyedHash, SealedDetail, leaf_bytes};
use crate::keys::CheckpointSigner;
use crate::merkle::{self, CompactRange, Hash, MemoryTree};
use crate::search;
use crate::sqlite_append::{NewEntry, SqliteAppender};
use crate::store::{self, Db, Layout, Storage, WriteBackend};

/// Entries are kept at least this long; nothing in this crate deletes entries at all, and
/// the storage triggers refuse deletes. Any future archival must respect this floor
/// (HIPAA 45 CFR 164.316(b)(2): six years; seven is the common state-law-driven practice).
pub const RETENTION_YEARS: u32 = 7;

/// Rows per multi-row `INSERT` (3 parameters each; SQLite's limit is 32766, PostgreSQL's 65535).
const INSERT_CHUNK: usize = 1024;

/// Leaf hashes per range when loading a large backlog into the proof tree in parallel.
const LOAD_RANGE: u64 = 1 << 16;

/// Tunables for [`AuditLog::open`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Where the log lives.
    pub storage: Storage,
    /// Origin line for a newly created log; `None` picks `phigate-audit/<random hex>`.
    /// An existing log keeps the origin it was created with.
    pub origin: Option<String>,
    /// A batch signs a new checkpoint when the last one is at least this old.
    pub checkpoint_interval: Duration,
    /// Most entries committed in one transaction.
    pub max_batch: usize,
    /// Appends waiting for the writer before `append` itself waits (backpressure).
    pub queue_capacity: usize,
    /// Longest a batch waits for callers that have started an append but not yet queued it
    /// (see [`AuditLog::append`]); a bound, not a delay: the batch is written as soon as every
    /// such caller has queued its entry.
    pub max_linger: Duration,
    /// The search columns of committed entries are copied into the search table once this
    /// many are waiting (see the `search` module docs)...
    pub search_batch: usize,
    /// ...or once no append has committed for this long.
    pub search_idle: Duration,
}

impl LogConfig {
    /// Defaults: a checkpoint at most every second, batches up to 1024, queue of 16384,
    /// linger at most 2 ms; search columns copied every 16,384 entries or after 50 ms idle.
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            origin: None,
            checkpoint_interval: Duration::from_secs(1),
            max_batch: 1024,
            queue_capacity: 16384,
            max_linger: Duration::from_millis(2),
            search_batch: 16384,
            search_idle: Duration::from_millis(50),
        }
    }
}

/// An inclusion proof of one entry in a tree of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Leaf index.
    pub index: u64,
    /// Tree size the proof is for.
    pub tree_size: u64,
    /// The leaf hash.
    pub leaf_hash: Hash,
    /// Audit path, bottom-up.
    pub path: Vec<Hash>,
    /// Root of the tree of `tree_size` leaves.
    pub root: Hash,
}

/// Filters for [`AuditLog::query`]; all given filters must match.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    /// Entries committed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries committed before this time.
    pub until: Option<DateTime<Utc>>,
    /// Event kind (see [`crate::EVENT_KINDS`]).
    pub kind: Option<String>,
    /// Acting principal.
    pub principal: Option<String>,
    /// The patient, as keyed hashes under every key held (any may match).
    pub patient: Vec<KeyedHash>,
    /// At most this many entries (oldest first).
    pub limit: Option<u64>,
}

struct Pending {
    /// RFC 8785 bytes of the event object.
    event: Vec<u8>,
    detail: Option<SealedDetail>,
    reply: oneshot::Sender<Result<u64, AuditError>>,
}

/// Callers inside [`AuditLog::append`] (from entry until they hold their answer). The writer
/// waits until every one of them has queued its entry before committing, so one fsync covers
/// all the writers that are waiting, however many there are (adaptive group commit).
#[derive(Debug, Default)]
struct Appenders {
    active: AtomicUsize,
    changed: Notify,
}

/// Counts one caller as active for as long as it lives (also when its future is dropped).
struct ActiveAppend<'a>(&'a Appenders);

impl<'a> ActiveAppend<'a> {
    fn new(appenders: &'a Appenders) -> Self {
        appenders.active.fetch_add(1, Ordering::SeqCst);
        Self(appenders)
    }
}

impl Drop for ActiveAppend<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

struct Inner {
    db: Db,
    origin: String,
    layout: Layout,
    /// Batch size of the search copy (for [`AuditLog::catch_up_search`]).
    search_batch: usize,
    /// Taken around every SQLite write transaction of this process (see [`WriteGate`]).
    gate: WriteGate,
    /// The search copy; `None` when opened read-only.
    copier: Option<search::Copier>,
    sender: Option<mpsc::Sender<Pending>>,
    appenders: Arc<Appenders>,
    signer: Option<Arc<dyn CheckpointSigner>>,
    tree: Mutex<MemoryTree>,
}

/// A handle to the audit log. Cheap to clone; all clones share one writer task.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

fn random_origin() -> Result<String, AuditError> {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| AuditError::Config("no system randomness"))?;
    Ok(format!("phigate-audit/{}", hex::encode(bytes)))
}

fn valid_origin(origin: &str) -> bool {
    !origin.is_empty() && origin.len() <= 256 && !origin.chars().any(char::is_control)
}

impl AuditLog {
    /// Opens the log for writing, creating it if missing, and starts the writer task (must be
    /// called inside a Tokio runtime). `signer` signs checkpoints.
    pub async fn open(
        config: LogConfig,
        signer: Arc<dyn CheckpointSigner>,
    ) -> Result<Self, AuditError> {
        if config.max_batch == 0 || config.queue_capacity == 0 || config.search_batch == 0 {
            return Err(AuditError::Config(
                "max_batch, queue_capacity and search_batch must be positive",
            ));
        }
        let new_origin = match &config.origin {
            Some(o) if valid_origin(o) => o.clone(),
            Some(_) => {
                return Err(AuditError::Config(
                    "origin must be 1-256 printable characters",
                ));
            }
            None => random_origin()?,
        };
        let (db, origin, layout) = store::connect(&config.storage, true, &new_origin).await?;
        let (sender, receiver) = mpsc::channel(config.queue_capacity);
        let appenders = Arc::new(Appenders::default());
        let head_size = read_head(&db).await?.compact.size();
        let (committed, head_rx) = watch::channel(head_size);
        let gate = WriteGate::default();
        let copier = search::Copier::new(&config.storage, &db)?;
        tokio::spawn(search::run_indexer(
            db.clone(),
            copier.clone(),
            gate.clone(),
            head_rx,
            config.search_batch,
            config.search_idle,
        ));
        let writer = Writer {
            committed,
            gate: gate.clone(),
            appenders: appenders.clone(),
            max_linger: config.max_linger,
            sink: BatchSink::new(&config.storage, &db)?,
            origin: origin.clone(),
            signer: signer.clone(),
            checkpoint_interval_us: i64::try_from(config.checkpoint_interval.as_micros())
                .unwrap_or(i64::MAX),
            max_batch: config.max_batch,
        };
        tokio::spawn(writer.run(receiver));
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                origin,
                layout,
                search_batch: config.search_batch,
                gate,
                copier: Some(copier),
                sender: Some(sender),
                appenders,
                signer: Some(signer),
                tree: Mutex::new(MemoryTree::new()),
            }),
        })
    }

    /// Opens an existing log for reading, verifying and exporting only. Needs no keys.
    pub async fn open_read_only(storage_cfg: &Storage) -> Result<Self, AuditError> {
        let (db, origin, layout) = store::connect(storage_cfg, false, "").await?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                origin,
                layout,
                search_batch: LogConfig::new(storage_cfg.clone()).search_batch,
                gate: WriteGate::default(),
                copier: None,
                sender: None,
                appenders: Arc::default(),
                signer: None,
                tree: Mutex::new(MemoryTree::new()),
            }),
        })
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The search copy of a log opened for writing.
    #[cfg(test)]
    pub(crate) fn copier(&self) -> Option<&search::Copier> {
        self.inner.copier.as_ref()
    }

    pub(crate) fn layout(&self) -> Layout {
        self.inner.layout
    }

    /// Copies the search columns of every entry not yet in the search table now, instead of
    /// waiting for the background copy; returns how many entries the search table covers.
    /// Query results are the same before and after (see [`AuditLog::query`]); this only
    /// makes later queries cheaper. Needs a log opened for writing.
    pub async fn catch_up_search(&self) -> Result<u64, AuditError> {
        let Some(copier) = &self.inner.copier else {
            return Err(AuditError::ReadOnly);
        };
        search::catch_up(copier, &self.inner.gate, self.inner.search_batch).await
    }

    /// Appends an event and returns its index once the entry is durable (committed). On any
    /// error nothing is acknowledged and the caller must fail the audited action.
    pub async fn append(&self, event: Event) -> Result<u64, AuditError> {
        self.append_with_detail(event, None).await
    }

    /// Appends an event with a caller-encrypted detail blob (see [`SealedDetail`]).
    pub async fn append_with_detail(
        &self,
        event: Event,
        detail: Option<SealedDetail>,
    ) -> Result<u64, AuditError> {
        let sender = self.inner.sender.as_ref().ok_or(AuditError::ReadOnly)?;
        let _active = ActiveAppend::new(&self.inner.appenders);
        // Canonicalize here, in the caller's task: a bad event fails only its caller, and the
        // single writer task only splices bytes (see `crate::event::leaf_bytes`).
        let event_bytes = crate::encode::event_canonical_bytes(&event)
            .map_err(|_| AuditError::InvalidEntry("event has a non-integer number"))?;
        let (reply, wait) = oneshot::channel();
        sender
            .send(Pending {
                event: event_bytes,
                detail,
                reply,
            })
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        wait.await.map_err(|_| AuditError::WriterStopped)?
    }

    /// Current tree size and root, read from the tree head.
    pub async fn tree_head(&self) -> Result<(u64, Hash), AuditError> {
        let compact = read_head(self.db()).await?.compact;
        Ok((compact.size(), compact.root()))
    }

    /// Signs and stores a checkpoint of the current tree head; returns the note text.
    pub async fn checkpoint_now(&self) -> Result<String, AuditError> {
        let signer = self.inner.signer.as_ref().ok_or(AuditError::ReadOnly)?;
        let ctx = "signing a checkpoint";
        let now = now_us();
        macro_rules! sign_in_tx {
            ($tx:expr, $head_sql:expr, $insert_sql:expr, $update_sql:expr) => {{
                let mut tx = $tx;
                let head = decode_head(
                    sqlx::query_as::<_, (i64, Vec<u8>, i64)>($head_sql)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(storage(ctx))?,
                )?;
                let note =
                    sign_checkpoint(&self.inner.origin, &head.compact, now, signer.as_ref())?;
                sqlx::query($insert_sql)
                    .bind(to_i64(head.compact.size())?)
                    .bind(now)
                    .bind(&note)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage(ctx))?;
                sqlx::query($update_sql)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage(ctx))?;
                tx.commit().await.map_err(storage(ctx))?;
                note
            }};
        }
        let note = match self.db() {
            Db::Sqlite(pool) => sign_in_tx!(
                pool.begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(storage(ctx))?,
                "SELECT size, compact, last_checkpoint_us FROM audit_tree_head WHERE id = 1",
                "INSERT INTO audit_checkpoints (tree_size, time_us, note) VALUES (?, ?, ?) \
                 ON CONFLICT (tree_size) DO NOTHING",
                "UPDATE audit_tree_head SET last_checkpoint_us = ? WHERE id = 1"
            ),
            Db::Postgres(pool) => sign_in_tx!(
                pool.begin().await.map_err(storage(ctx))?,
                "SELECT size, compact, last_checkpoint_us FROM audit_tree_head WHERE id = 1 FOR UPDATE",
                "INSERT INTO audit_checkpoints (tree_size, time_us, note) VALUES ($1, $2, $3) \
                 ON CONFLICT (tree_size) DO NOTHING",
                "UPDATE audit_tree_head SET last_checkpoint_us = $1 WHERE id = 1"
            ),
        };
        Ok(note)
    }

    /// Stored checkpoint notes, `(tree size, note)`, smallest tree first.
    pub async fn checkpoint_notes(&self) -> Result<Vec<(u64, String)>, AuditError> {
        let ctx = "reading checkpoints";
        let sql = "SELECT tree_size, note FROM audit_checkpoints ORDER BY tree_size";
        let rows: Vec<(i64, String)> = match self.db() {
            Db::Sqlite(p) => sqlx::query_as(sql).fetch_all(p).await,
            Db::Postgres(p) => sqlx::query_as(sql).fetch_all(p).await,
        }
        .map_err(storage(ctx))?;
        Ok(rows
            .into_iter()
            .map(|(s, n)| (s.max(0) as u64, n))
            .collect())
    }

    /// Brings the in-memory tree up to the stored entries and runs `f` on it. A large backlog
    /// (the first proof after start) is read in parallel ranges, one connection each.
    async fn with_tree<T>(&self, f: impl FnOnce(&MemoryTree) -> T) -> Result<T, AuditError> {
        let mut tree = self.inner.tree.lock().await;
        let head = read_head(self.db()).await?.compact.size();
        let from = tree.size();
        if head > from + 2 * LOAD_RANGE {
            let ranges: Vec<(u64, u64)> = (from..head)
                .step_by(LOAD_RANGE as usize)
                .map(|start| (start, (start + LOAD_RANGE).min(head)))
                .collect();
            let mut loaded: Vec<Option<Vec<Hash>>> = vec![None; ranges.len()];
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let ranges = Arc::new(ranges);
            let mut tasks = tokio::task::JoinSet::new();
            let parallelism = std::thread::available_parallelism()
                .map_or(2, std::num::NonZeroUsize::get)
                .clamp(1, 4);
            for _ in 0..parallelism {
                let (db, next, ranges) = (self.db().clone(), next.clone(), ranges.clone());
                tasks.spawn(async move {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&(start, end)) = ranges.get(k) else {
                            return Ok::<_, AuditError>(done);
                        };
                        done.push((k, load_leaf_hashes(&db, start, Some(end)).await?));
                    }
                });
            }
            while let Some(joined) = tasks.join_next().await {
                let done =
                    joined.map_err(|_| AuditError::Corrupt("a loading task failed".into()))??;
                for (k, hashes) in done {
                    loaded[k] = Some(hashes);
                }
            }
            for (hashes, &(start, end)) in loaded.into_iter().zip(ranges.iter()) {
                let hashes = hashes.unwrap_or_default();
                if hashes.len() as u64 != end - start {
                    return Err(AuditError::Corrupt(format!(
                        "entries in [{start}, {end}) are missing"
                    )));
                }
                for hash in hashes {
                    tree.push(hash);
                }
            }
        }
        // The rest (or all of a small backlog), including entries appended meanwhile.
        let start = tree.size();
        for hash in load_leaf_hashes(self.db(), start, None).await? {
            tree.push(hash);
        }
        Ok(f(&tree))
    }

    /// Inclusion proof of entry `index` in the tree of `tree_size` leaves.
    pub async fn inclusion_proof(
        &self,
        index: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, AuditError> {
        self.with_tree(|tree| {
            let path = tree.inclusion_proof(index, tree_size).ok_or_else(|| {
                AuditError::OutOfRange(format!(
                    "no entry {index} in a tree of {tree_size} (the log has {} entries)",
                    tree.size()
                ))
            })?;
            let leaf_hash = tree
                .leaf(index)
                .ok_or_else(|| AuditError::OutOfRange("index".into()))?;
            let root = tree
                .root_at(tree_size)
                .ok_or_else(|| AuditError::OutOfRange("size".into()))?;
            Ok(InclusionProof {
                index,
                tree_size,
                leaf_hash,
                path,
                root,
            })
        })
        .await?
    }

    /// Consistency proof between tree sizes `old` and `new`, with both roots.
    pub async fn consistency_proof(
        &self,
        old: u64,
        new: u64,
    ) -> Result<(Vec<Hash>, Hash, Hash), AuditError> {
        self.with_tree(|tree| {
            let proof = tree.consistency_proof(old, new).ok_or_else(|| {
                AuditError::OutOfRange(format!(
                    "need OLD <= NEW <= {} (the log size), got {old} and {new}",
                    tree.size()
                ))
            })?;
            let old_root = tree
                .root_at(old)
                .ok_or_else(|| AuditError::OutOfRange("old".into()))?;
            let new_root = tree
                .root_at(new)
                .ok_or_else(|| AuditError::OutOfRange("new".into()))?;
            Ok((proof, old_root, new_root))
        })
        .await?
    }

    /// Inclusion paths of several entries in the tree of `tree_size` leaves, in one pass.
    pub(crate) async fn inclusion_paths(
        &self,
        indices: &[u64],
        tree_size: u64,
    ) -> Result<Vec<Vec<Hash>>, AuditError> {
        self.with_tree(|tree| {
            indices
                .iter()
                .map(|&i| {
                    tree.inclusion_proof(i, tree_size).ok_or_else(|| {
                        AuditError::OutOfRange(format!("no entry {i} in a tree of {tree_size}"))
                    })
                })
                .collect()
        })
        .await?
    }

    /// Root of the tree of the first `size` entries, from the stored leaves.
    pub async fn root_at(&self, size: u64) -> Result<Hash, AuditError> {
        self.with_tree(|tree| tree.root_at(size))
            .await?
            .ok_or_else(|| AuditError::OutOfRange(format!("the log has fewer than {size} entries")))
    }

    /// Entries matching `filter`, oldest first. Each entry is decoded from the hashed leaf
    /// bytes and re-checked against the filter: the search table only narrows the search.
    /// Entries whose search columns have not been copied yet (at or above the search
    /// watermark, see the `search` module) are read from the log itself, so the result is
    /// complete whatever the background copy's progress.
    pub async fn query(&self, filter: &QueryFilter) -> Result<Vec<(Entry, Hash)>, AuditError> {
        let limit = filter
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let watermark = search::watermark(self.db(), self.layout()).await?;
        let mut out = Vec::new();
        let indexed = self.query_indexed(filter, watermark).await?;
        self.decode_matching(indexed, filter, limit, &mut out)?;
        if out.len() < limit {
            let tail = self.entries_from(watermark).await?;
            self.decode_matching(tail, filter, limit, &mut out)?;
        }
        Ok(out)
    }

    fn decode_matching(
        &self,
        rows: Vec<(i64, Vec<u8>, Vec<u8>)>,
        filter: &QueryFilter,
        limit: usize,
        out: &mut Vec<(Entry, Hash)>,
    ) -> Result<(), AuditError> {
        for (idx, leaf, hash) in rows {
            if out.len() >= limit {
                break;
            }
            let entry = Entry::from_json_bytes(&leaf)
                .map_err(|_| AuditError::Corrupt(format!("entry {idx} does not decode")))?;
            let hash: Hash = hash
                .try_into()
                .map_err(|_| AuditError::Corrupt(format!("leaf hash {idx} is not 32 bytes")))?;
            if merkle::leaf_hash(&leaf) != hash || entry.index != idx as u64 {
                return Err(AuditError::Corrupt(format!(
                    "entry {idx} does not match its hash"
                )));
            }
            if matches_filter(&entry, filter) {
                out.push((entry, hash));
            }
        }
        Ok(())
    }

    /// Rows below `watermark` whose search columns match `filter`.
    async fn query_indexed(
        &self,
        filter: &QueryFilter,
        watermark: u64,
    ) -> Result<Vec<(i64, Vec<u8>, Vec<u8>)>, AuditError> {
        let ctx = "querying entries";
        let search = self.layout().search_table();
        let below = to_i64(watermark)?;
        macro_rules! build {
            ($db:ty, $pool:expr) => {{
                let mut qb: QueryBuilder<'_, $db> = QueryBuilder::new(format!(
                    "SELECT e.idx, e.leaf, e.leaf_hash FROM {search} s \
                     JOIN audit_entries e ON e.idx = s.idx WHERE s.idx < "
                ));
                qb.push_bind(below);
                if let Some(t) = filter.since {
                    qb.push(" AND s.time_us >= ")
                        .push_bind(t.timestamp_micros());
                }
                if let Some(t) = filter.until {
                    qb.push(" AND s.time_us < ").push_bind(t.timestamp_micros());
                }
                if let Some(k) = &filter.kind {
                    qb.push(" AND s.kind = ").push_bind(k.clone());
                }
                if let Some(p) = &filter.principal {
                    qb.push(" AND s.principal = ").push_bind(p.clone());
                }
                if !filter.patient.is_empty() {
                    qb.push(" AND s.patient IN (");
                    let mut sep = qb.separated(", ");
                    for p in &filter.patient {
                        sep.push_bind(p.as_str().to_owned());
                    }
                    qb.push(")");
                }
                qb.push(" ORDER BY s.idx");
                if let Some(limit) = filter.limit {
                    qb.push(" LIMIT ").push_bind(to_i64(limit)?);
                }
                qb.build_query_as::<(i64, Vec<u8>, Vec<u8>)>()
                    .fetch_all($pool)
                    .await
                    .map_err(storage(ctx))?
            }};
        }
        Ok(match self.db() {
            Db::Sqlite(p) => build!(sqlx::Sqlite, p),
            Db::Postgres(p) => build!(sqlx::Postgres, p),
        })
    }

    /// Every entry row from index `from` on.
    async fn entries_from(&self, from: u64) -> Result<Vec<(i64, Vec<u8>, Vec<u8>)>, AuditError> {
        let lower = to_i64(from)?;
        match self.db() {
            Db::Sqlite(p) => {
                sqlx::query_as(
                    "SELECT idx, leaf, leaf_hash FROM audit_entries WHERE idx >= ? ORDER BY idx",
                )
                .bind(lower)
                .fetch_all(p)
                .await
            }
            Db::Postgres(p) => {
                sqlx::query_as(
                    "SELECT idx, leaf, leaf_hash FROM audit_entries WHERE idx >= $1 ORDER BY idx",
                )
                .bind(lower)
                .fetch_all(p)
                .await
            }
        }
        .map_err(storage("querying entries"))
    }

    /// Copies the pending search columns (best effort), then closes the connection pool.
    pub async fn close(self) {
        if let Some(copier) = &self.inner.copier
            && self.inner.layout == Layout::V2
            && let Err(e) =
                search::catch_up(copier, &self.inner.gate, self.inner.search_batch).await
        {
            tracing::debug!(error = %e, "search columns left for the next writer to copy");
        }
        match &self.inner.db {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

fn matches_filter(entry: &Entry, filter: &QueryFilter) -> bool {
    let micros = entry.time.timestamp_micros();
    filter.since.is_none_or(|t| micros >= t.timestamp_micros())
        && filter.until.is_none_or(|t| micros < t.timestamp_micros())
        && filter
            .kind
            .as_deref()
            .is_none_or(|k| entry.event.kind() == k)
        && filter
            .principal
            .as_deref()
            .is_none_or(|p| entry.event.principal() == Some(p))
        && (filter.patient.is_empty()
            || entry
                .event
                .patient()
                .is_some_and(|p| filter.patient.contains(p)))
}

/// Leaf hashes of entries `[start, end)` (`None`: to the last), checking that none is missing.
async fn load_leaf_hashes(db: &Db, start: u64, end: Option<u64>) -> Result<Vec<Hash>, AuditError> {
    let ctx = "loading leaf hashes";
    let lower = to_i64(start)?;
    let upper = match end {
        Some(e) => to_i64(e)?,
        None => i64::MAX,
    };
    let mut out = Vec::with_capacity(end.map_or(0, |e| (e - start) as usize));
    macro_rules! load {
        ($pool:expr, $sql:expr) => {{
            let mut rows = sqlx::query($sql).bind(lower).bind(upper).fetch($pool);
            while let Some(row) = rows.try_next().await.map_err(storage(ctx))? {
                use sqlx::Row as _;
                let idx: i64 = row.try_get(0).map_err(storage(ctx))?;
                let hash: &[u8] = row.try_get(1).map_err(storage(ctx))?;
                let expected = start + out.len() as u64;
                if idx != to_i64(expected)? {
                    return Err(AuditError::Corrupt(format!("entry {expected} is missing")));
                }
                let hash: Hash = hash
                    .try_into()
                    .map_err(|_| AuditError::Corrupt(format!("leaf hash {idx} is not 32 bytes")))?;
                out.push(hash);
            }
        }};
    }
    match db {
        Db::Sqlite(p) => load!(
            p,
            "SELECT idx, leaf_hash FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx"
        ),
        Db::Postgres(p) => load!(
            p,
            "SELECT idx, leaf_hash FROM audit_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx"
        ),
    }
    Ok(out)
}

pub(crate) fn to_i64(v: u64) -> Result<i64, AuditError> {
    i64::try_from(v).map_err(|_| AuditError::OutOfRange("value exceeds 2^63 - 1".into()))
}

fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// The commit time of a batch: microseconds since the epoch, and the text that every leaf
/// of the batch carries.
pub(crate) fn batch_time() -> (i64, String) {
    let now = now_us().max(0);
    let time = Utc.timestamp_micros(now).single().unwrap_or_default();
    (now, crate::event::format_time(&time))
}

pub(crate) struct Head {
    pub(crate) compact: CompactRange,
    pub(crate) last_checkpoint_us: i64,
}

pub(crate) fn decode_head((size, compact, last): (i64, Vec<u8>, i64)) -> Result<Head, AuditError> {
    let compact = CompactRange::from_bytes(&compact)
        .ok_or_else(|| AuditError::Corrupt("tree head is malformed".into()))?;
    if to_i64(compact.size())? != size {
        return Err(AuditError::Corrupt(
            "tree head size disagrees with its hashes".into(),
        ));
    }
    Ok(Head {
        compact,
        last_checkpoint_us: last,
    })
}

pub(crate) async fn read_head(db: &Db) -> Result<Head, AuditError> {
    let sql = "SELECT size, compact, last_checkpoint_us FROM audit_tree_head WHERE id = 1";
    let row = match db {
        Db::Sqlite(p) => sqlx::query_as(sql).fetch_one(p).await,
        Db::Postgres(p) => sqlx::query_as(sql).fetch_one(p).await,
    }
    .map_err(storage("reading the tree head"))?;
    decode_head(row)
}

pub(crate) fn sign_checkpoint(
    origin: &str,
    compact: &CompactRange,
    now_us: i64,
    signer: &dyn CheckpointSigner,
) -> Result<String, AuditError> {
    let timestamp = Utc
        .timestamp_micros(now_us)
        .single()
        .ok_or(AuditError::Config("system clock out of range"))?;
    let checkpoint = Checkpoint {
        origin: origin.to_string(),
        size: compact.size(),
        root: compact.root(),
        timestamp,
    };
    Ok(checkpoint.sign(signer)?)
}

/// Serializes this process's SQLite write transactions (the writer's batches and the search
/// copy) in memory. Both would otherwise meet in SQLite's busy handler, which polls with
/// sleeps of up to 100 ms; a queue in the process hands the lock over at once. Other
/// processes writing the same file still meet the busy handler. Unused on PostgreSQL, where
/// the search copy takes no lock the writer needs.
pub(crate) type WriteGate = Arc<Mutex<()>>;

struct Writer {
    gate: WriteGate,
    /// Announces the tree size after each commit (to the search indexer).
    committed: watch::Sender<u64>,
    appenders: Arc<Appenders>,
    max_linger: Duration,
    sink: BatchSink,
    origin: String,
    signer: Arc<dyn CheckpointSigner>,
    checkpoint_interval_us: i64,
    max_batch: usize,
}

/// Where the writer commits its batches.
enum BatchSink {
    /// On a blocking thread through the writer's own connection (see
    /// [`crate::sqlite_append`]).
    Sqlite(SqliteAppender),
    /// Through the sqlx pool.
    Postgres(sqlx::PgPool),
}

impl BatchSink {
    fn new(storage: &Storage, db: &Db) -> Result<Self, AuditError> {
        Ok(match db.write_backend(storage)? {
            WriteBackend::Sqlite(path) => Self::Sqlite(SqliteAppender::open(path)?),
            WriteBackend::Postgres(pool) => Self::Postgres(pool.clone()),
        })
    }
}

struct Row {
    leaf: Vec<u8>,
    hash: Hash,
}

impl Writer {
    async fn run(self, mut receiver: mpsc::Receiver<Pending>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while let Some(first) = receiver.recv().await {
            batch.push(first);
            // Adaptive group commit: wait until every caller that is inside `append` (for
            // example one just woken by the previous commit and building its next event) has
            // queued its entry, so one transaction and one fsync cover them all. A lone caller
            // pays nothing; `max_linger` bounds the wait for a caller whose task is not
            // scheduled.
            let deadline = tokio::time::Instant::now() + self.max_linger;
            loop {
                while batch.len() < self.max_batch {
                    match receiver.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                if batch.len() >= self.max_batch
                    || batch.len() >= self.appenders.active.load(Ordering::SeqCst)
                {
                    break;
                }
                tokio::select! {
                    biased;
                    next = receiver.recv() => match next {
                        Some(p) => batch.push(p),
                        None => break,
                    },
                    () = self.appenders.changed.notified() => {}
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            let written = match &self.sink {
                BatchSink::Sqlite(appender) => self.write_batch_sqlite(appender, &mut batch).await,
                BatchSink::Postgres(pool) => self.write_batch_postgres(pool, &batch).await,
            };
            match written {
                Ok(start) => {
                    let end = start + batch.len() as u64;
                    for (i, p) in batch.drain(..).enumerate() {
                        let _ = p.reply.send(Ok(start + i as u64));
                    }
                    self.committed.send_replace(end);
                }
                Err(err) => {
                    let reason = err.to_string();
                    tracing::error!(entries = batch.len(), %reason, "audit batch was not committed");
                    for p in batch.drain(..) {
                        let _ = p.reply.send(Err(AuditError::WriteFailed(reason.clone())));
                    }
                }
            }
        }
    }

    /// Writes one batch in one transaction on the SQLite appender's blocking thread; returns
    /// the first index. The batch is lent to that thread and given back with the result.
    async fn write_batch_sqlite(
        &self,
        appender: &SqliteAppender,
        batch: &mut Vec<Pending>,
    ) -> Result<u64, AuditError> {
        let _gate = self.gate.lock().await;
        let lent = std::mem::take(batch);
        let appender = appender.clone();
        let origin = self.origin.clone();
        let signer = self.signer.clone();
        let interval = self.checkpoint_interval_us;
        let (lent, result) = tokio::task::spawn_blocking(move || {
            let entries: Vec<NewEntry<'_>> = lent
                .iter()
                .map(|p| NewEntry {
                    event: &p.event,
                    detail: p.detail.as_ref(),
                })
                .collect();
            let result = appender.append(&entries, &origin, signer.as_ref(), interval);
            drop(entries);
            (lent, result)
        })
        .await
        // A panicked or cancelled append dropped the batch, and with it the callers' reply
        // channels: each of them gets `WriterStopped`, and nothing was acknowledged.
        .map_err(|_| AuditError::WriteFailed("the append thread stopped".into()))?;
        *batch = lent;
        result
    }

    /// Writes one batch in one transaction through the PostgreSQL pool; returns the first
    /// index. `FOR UPDATE` on the head row serializes writers of every process.
    async fn write_batch_postgres(
        &self,
        pool: &sqlx::PgPool,
        batch: &[Pending],
    ) -> Result<u64, AuditError> {
        let ctx = "appending a batch";
        let mut tx = pool.begin().await.map_err(storage(ctx))?;
        let mut head = decode_head(
            sqlx::query_as::<_, (i64, Vec<u8>, i64)>(
                "SELECT size, compact, last_checkpoint_us FROM audit_tree_head WHERE id = 1 FOR UPDATE",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(storage(ctx))?,
        )?;
        let start = head.compact.size();
        let (now, time_text) = batch_time();
        let mut rows = Vec::with_capacity(batch.len());
        for (i, p) in batch.iter().enumerate() {
            let leaf = leaf_bytes(start + i as u64, &time_text, &p.event, p.detail.as_ref());
            let hash = merkle::leaf_hash(&leaf);
            head.compact.push(hash);
            rows.push(Row { leaf, hash });
        }
        for (chunk_no, chunk) in rows.chunks(INSERT_CHUNK).enumerate() {
            let mut qb: QueryBuilder<'_, sqlx::Postgres> =
                QueryBuilder::new("INSERT INTO audit_entries (idx, leaf, leaf_hash) ");
            let base = start + (chunk_no * INSERT_CHUNK) as u64;
            qb.push_values(chunk.iter().enumerate(), |mut b, (i, row)| {
                b.push_bind((base + i as u64) as i64)
                    .push_bind(row.leaf.as_slice())
                    .push_bind(&row.hash[..]);
            });
            qb.build().execute(&mut *tx).await.map_err(storage(ctx))?;
        }
        let mut last_checkpoint = head.last_checkpoint_us;
        if now.saturating_sub(last_checkpoint) >= self.checkpoint_interval_us {
            let note = sign_checkpoint(&self.origin, &head.compact, now, self.signer.as_ref())?;
            sqlx::query(
                "INSERT INTO audit_checkpoints (tree_size, time_us, note) VALUES ($1, $2, $3) \
                 ON CONFLICT (tree_size) DO NOTHING",
            )
            .bind(to_i64(head.compact.size())?)
            .bind(now)
            .bind(note)
            .execute(&mut *tx)
            .await
            .map_err(storage(ctx))?;
            last_checkpoint = now;
        }
        sqlx::query(
            "UPDATE audit_tree_head SET size = $1, compact = $2, last_checkpoint_us = $3 WHERE id = 1",
        )
        .bind(to_i64(head.compact.size())?)
        .bind(head.compact.to_bytes())
        .bind(last_checkpoint)
        .execute(&mut *tx)
        .await
        .map_err(storage(ctx))?;
        tx.commit().await.map_err(storage(ctx))?;
        Ok(start)
    }
}
