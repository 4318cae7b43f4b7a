//! Full verification of a stored log.
//!
//! Every checkpoint signature is checked with the public key alone; then every entry is
//! streamed in index order, its leaf hash recomputed from the stored bytes, the tree rebuilt
//! and its root compared with every signed checkpoint and with the tree head. The first
//! damage found is reported with its index and kind.

use std::borrow::Cow;

use futures::TryStreamExt as _;
use serde::Deserialize;

use crate::checkpoint::Checkpoint;
use crate::error::{AuditError, storage};
use crate::keys::NoteVerifier;
use crate::log::{AuditLog, read_head};
use crate::merkle::{self, CompactRange, Hash};
use crate::store::Db;

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

#[derive(Deserialize)]
struct LeafFields<'a> {
    index: u64,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    event: EventFields<'a>,
}

#[derive(Deserialize)]
struct EventFields<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    principal: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    patient: Option<Cow<'a, str>>,
}

type EntryRow = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Vec<u8>,
    Vec<u8>,
);

const ENTRY_SQL: &str = "SELECT idx, time_us, kind, principal, patient, leaf, leaf_hash FROM audit_entries ORDER BY idx";

fn damage(kind: DamageKind, index: u64, detail: impl Into<String>) -> Option<Damage> {
    Some(Damage {
        kind,
        index,
        detail: detail.into(),
    })
}

/// Verifies the whole log against `verifier` (the checkpoint public key).
pub async fn verify_log(
    log: &AuditLog,
    verifier: &NoteVerifier,
) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport {
        entries: 0,
        checkpoints_verified: 0,
        largest_checkpoint: 0,
        unsigned_tail: 0,
        damage: None,
    };

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
    report.largest_checkpoint = checkpoints.last().map_or(0, |c| c.size);
    let head = read_head(log.db()).await?.compact;

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

    // When an entry's content index is ahead of its position, the damage is a deletion (with
    // renumbering) or a move; which one is only known once the missing index turns up (move)
    // or never does (deletion).
    let mut missing: Option<u64> = None;
    let mut expected: u64 = 0;
    let mut time_cache: (i64, String) = (i64::MIN, String::new());
    macro_rules! scan_rows {
        ($pool:expr) => {{
            let mut rows = sqlx::query_as::<_, EntryRow>(ENTRY_SQL).fetch($pool);
            while let Some(row) = rows.try_next().await.map_err(storage("reading entries"))? {
                let (idx, time_us, kind, principal, patient, leaf, stored_hash) = row;
                let fields = serde_json::from_slice::<LeafFields<'_>>(&leaf).ok();
                if let Some(m) = missing {
                    if fields.as_ref().is_some_and(|f| f.index == m) {
                        report.damage =
                            damage(DamageKind::Reordered, m, "entry found at another position");
                        break;
                    }
                    continue;
                }
                let position = expected;
                if idx < 0 || idx as u64 != position {
                    report.damage = damage(DamageKind::Deleted, position, "entry row is missing");
                    break;
                }
                let Some(fields) = fields else {
                    report.damage = damage(
                        DamageKind::Modified,
                        position,
                        "entry bytes are not a valid entry",
                    );
                    break;
                };
                if fields.index < position {
                    report.damage = damage(
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
                let hash = merkle::leaf_hash(&leaf);
                if stored_hash.as_slice() != hash.as_slice() {
                    report.damage = damage(
                        DamageKind::Modified,
                        position,
                        "entry bytes do not match the stored leaf hash",
                    );
                    break;
                }
                // Entries of one batch share a commit time: format it once per batch.
                if time_cache.0 != time_us {
                    use chrono::TimeZone as _;
                    let formatted = chrono::Utc
                        .timestamp_micros(time_us)
                        .single()
                        .map(|t| crate::event::format_time(&t))
                        .unwrap_or_default();
                    time_cache = (time_us, formatted);
                }
                let time_ok = fields.time == time_cache.1.as_str();
                if !time_ok
                    || fields.event.kind != kind
                    || fields.event.principal.as_deref() != principal.as_deref()
                    || fields.event.patient.as_deref() != patient.as_deref()
                {
                    report.damage = damage(
                        DamageKind::SearchColumnsAltered,
                        position,
                        "search columns do not match the hashed entry",
                    );
                    break;
                }
                scan.compact.push(hash);
                expected += 1;
                if let Some(d) = scan.check_checkpoints() {
                    report.damage = Some(d);
                    break;
                }
            }
        }};
    }
    match log.db() {
        Db::Sqlite(p) => scan_rows!(p),
        Db::Postgres(p) => scan_rows!(p),
    }
    report.entries = expected;
    report.checkpoints_verified = scan.next_cp as u64;
    if report.damage.is_some() {
        return Ok(report);
    }
    if let Some(m) = missing {
        report.damage = damage(
            DamageKind::Deleted,
            m,
            "entry is missing and later entries were renumbered",
        );
        return Ok(report);
    }
    if expected < report.largest_checkpoint || expected < head.size() {
        report.damage = damage(
            DamageKind::Truncated,
            expected,
            format!(
                "log ends at {expected} entries but a signed checkpoint or the tree head says {}",
                report.largest_checkpoint.max(head.size())
            ),
        );
        return Ok(report);
    }
    if expected > head.size() {
        report.damage = damage(
            DamageKind::Inserted,
            head.size(),
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
