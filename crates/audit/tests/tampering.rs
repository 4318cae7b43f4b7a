//! Each kind of tampering, done the way an insider with database access would (dropping the
//! append-only triggers first), is reported with its kind and first bad index.

mod common;

use std::path::Path;
use std::time::Duration;

use audit::*;
use common::*;
use sqlx::SqlitePool;

const ENTRIES: u64 = 20;

/// A log of 20 entries, one signed checkpoint per entry (interval zero, sequential appends).
fn build(dir: &Path) -> NoteVerifier {
    let keys = keys(dir);
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir, Duration::ZERO), keys.clone())
            .await
            .unwrap();
        for n in 0..ENTRIES {
            log.append(phi_read(keys.as_ref(), &format!("user:{n}"), "P-1", n))
                .await
                .unwrap();
        }
        log.close().await;
    });
    keys.note_verifier()
}

/// Verifies with the default options (one chunk for a log this small, so the sequential pass)
/// and with 4-leaf chunks on 3 parallel tasks, and requires the same report from both: the
/// parallel path must find the same first bad index and kind of damage.
async fn verify_both_ways(log: &AuditLog, verifier: &NoteVerifier) -> VerifyReport {
    let sequential = verify_log(log, verifier).await.unwrap();
    let parallel = verify_log_with(
        log,
        verifier,
        VerifyOptions {
            chunk_leaves: 4,
            parallelism: 3,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        parallel, sequential,
        "parallel and sequential verification disagree"
    );
    sequential
}

fn tamper_and_verify(sql: &[&str]) -> VerifyReport {
    let dir = tempfile::tempdir().unwrap();
    let verifier = build(dir.path());
    let path = dir.path().join("audit.db");
    runtime().block_on(async {
        let raw = SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        for drop in [
            "DROP TRIGGER audit_entries_no_update",
            "DROP TRIGGER audit_entries_no_delete",
            "DROP TRIGGER audit_search_no_update",
            "DROP TRIGGER audit_search_no_delete",
            "DROP TRIGGER audit_checkpoints_no_update",
            "DROP TRIGGER audit_checkpoints_no_delete",
        ] {
            sqlx::query(drop).execute(&raw).await.unwrap();
        }
        for stmt in sql {
            sqlx::query(stmt).execute(&raw).await.unwrap();
        }
        raw.close().await;
        let log = AuditLog::open_read_only(&Storage::Sqlite { path })
            .await
            .unwrap();
        verify_both_ways(&log, &verifier).await
    })
}

fn assert_damage(report: &VerifyReport, kind: DamageKind, index: u64) {
    let damage = report
        .damage
        .as_ref()
        .unwrap_or_else(|| panic!("tampering not detected: {report:?}"));
    assert_eq!((damage.kind, damage.index), (kind, index), "{damage:?}");
}

#[test]
fn untouched_log_verifies_with_every_checkpoint() {
    let report = tamper_and_verify(&[]);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        (
            report.entries,
            report.checkpoints_verified,
            report.unsigned_tail
        ),
        (ENTRIES, ENTRIES, 0)
    );
}

#[test]
fn modified_entry_bytes_are_reported_at_their_index() {
    let report = tamper_and_verify(&[
        "UPDATE audit_entries SET leaf = CAST(replace(CAST(leaf AS TEXT), 'user:4', 'user:X') AS BLOB) WHERE idx = 4",
    ]);
    assert_damage(&report, DamageKind::Modified, 4);
}

#[test]
fn modified_entry_with_recomputed_hash_is_caught_by_the_signed_root() {
    let dir = tempfile::tempdir().unwrap();
    let verifier = build(dir.path());
    let path = dir.path().join("audit.db");
    let report = runtime().block_on(async {
        let raw = SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER audit_entries_no_update")
            .execute(&raw)
            .await
            .unwrap();
        let (leaf,): (Vec<u8>,) = sqlx::query_as("SELECT leaf FROM audit_entries WHERE idx = 7")
            .fetch_one(&raw)
            .await
            .unwrap();
        let forged = String::from_utf8(leaf)
            .unwrap()
            .replace("\"read\"", "\"write\"")
            .into_bytes();
        let hash = merkle::leaf_hash(&forged);
        sqlx::query("UPDATE audit_entries SET leaf = ?, leaf_hash = ? WHERE idx = 7")
            .bind(&forged)
            .bind(&hash[..])
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;
        let log = AuditLog::open_read_only(&Storage::Sqlite { path })
            .await
            .unwrap();
        verify_both_ways(&log, &verifier).await
    });
    assert_damage(&report, DamageKind::Modified, 7);
}

#[test]
fn deleted_entry_leaving_a_gap_is_reported() {
    let report = tamper_and_verify(&["DELETE FROM audit_entries WHERE idx = 5"]);
    assert_damage(&report, DamageKind::Deleted, 5);
}

#[test]
fn deleted_entry_with_later_entries_renumbered_is_reported() {
    let report = tamper_and_verify(&[
        "DELETE FROM audit_entries WHERE idx = 5",
        "UPDATE audit_entries SET idx = -idx WHERE idx > 5",
        "UPDATE audit_entries SET idx = -idx - 1 WHERE idx < 0",
    ]);
    assert_damage(&report, DamageKind::Deleted, 5);
}

#[test]
fn inserted_entry_is_reported_where_it_was_inserted() {
    // Replays entry 5 at position 5 and shifts the rest: every stored hash is self-consistent.
    let report = tamper_and_verify(&[
        "UPDATE audit_entries SET idx = -idx WHERE idx >= 5",
        "UPDATE audit_entries SET idx = -idx + 1 WHERE idx < 0",
        "INSERT INTO audit_entries SELECT 5, leaf, leaf_hash FROM audit_entries WHERE idx = 6",
    ]);
    assert_damage(&report, DamageKind::Inserted, 5);
}

#[test]
fn reordered_entries_are_reported() {
    let report = tamper_and_verify(&[
        "UPDATE audit_entries SET idx = -1 WHERE idx = 3",
        "UPDATE audit_entries SET idx = 3 WHERE idx = 11",
        "UPDATE audit_entries SET idx = 11 WHERE idx = -1",
    ]);
    assert_damage(&report, DamageKind::Reordered, 3);
}

#[test]
fn truncated_log_is_reported() {
    let report = tamper_and_verify(&["DELETE FROM audit_entries WHERE idx >= 15"]);
    assert_damage(&report, DamageKind::Truncated, 15);
}

#[test]
fn truncated_log_with_checkpoints_and_head_rolled_back_is_caught_by_an_off_box_checkpoint() {
    // An insider who also deletes the checkpoints cannot forge a signature for the shorter
    // tree's successor: a checkpoint kept elsewhere shows the log was longer.
    let dir = tempfile::tempdir().unwrap();
    let verifier = build(dir.path());
    let path = dir.path().join("audit.db");
    runtime().block_on(async {
        let log = AuditLog::open_read_only(&Storage::Sqlite { path: path.clone() })
            .await
            .unwrap();
        let notes = log.checkpoint_notes().await.unwrap();
        let (size, kept_off_box) = notes.last().unwrap().clone();
        assert_eq!(size, ENTRIES);
        let cp = Checkpoint::parse_and_verify(&kept_off_box, &verifier).unwrap();
        // Consistency from an older state to the off-box head proves the prefix unchanged.
        let (proof, old_root, new_root) = log.consistency_proof(10, ENTRIES).await.unwrap();
        assert_eq!(new_root, cp.root);
        merkle::verify_consistency(10, ENTRIES, &old_root, &cp.root, &proof).unwrap();
    });
}

#[test]
fn forged_checkpoint_is_reported() {
    let report = tamper_and_verify(&[
        "UPDATE audit_checkpoints SET note = replace(note, 'timestamp 2', 'timestamp 1') WHERE tree_size = 10",
    ]);
    assert_damage(&report, DamageKind::ForgedCheckpoint, 10);
}

#[test]
fn checkpoint_signed_by_another_key_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let _ = build(dir.path());
    // Verify with a different public key: every checkpoint is foreign.
    let other =
        FileKeys::open_or_create(&dir.path().join("other-keys"), "phigate-audit-test", kek())
            .unwrap();
    let report = runtime().block_on(async {
        let log = AuditLog::open_read_only(&Storage::Sqlite {
            path: dir.path().join("audit.db"),
        })
        .await
        .unwrap();
        verify_both_ways(&log, &other.note_verifier()).await
    });
    assert_damage(&report, DamageKind::ForgedCheckpoint, 1);
}

#[test]
fn altered_search_columns_that_would_hide_an_entry_are_reported() {
    let report = tamper_and_verify(&["UPDATE audit_search SET patient = NULL WHERE idx = 9"]);
    assert_damage(&report, DamageKind::SearchColumnsAltered, 9);
}

#[test]
fn a_deleted_search_row_that_would_hide_an_entry_is_reported() {
    let report = tamper_and_verify(&["DELETE FROM audit_search WHERE idx = 12"]);
    assert_damage(&report, DamageKind::SearchColumnsAltered, 12);
}

#[test]
fn parallel_verification_agrees_with_sequential_at_every_size() {
    // Sizes 0..=37 cross several 4-leaf chunk boundaries, with checkpoints at every third size
    // (so some checkpoints fall inside chunks, some on boundaries, and some tails are unsigned).
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let verifier = keys.note_verifier();
    runtime().block_on(async {
        let log = AuditLog::open(
            sqlite_config(dir.path(), Duration::from_secs(3600 * 24 * 365)),
            keys.clone(),
        )
        .await
        .unwrap();
        for n in 0..=37u64 {
            if n % 3 == 0 {
                log.checkpoint_now().await.unwrap();
            }
            let report = verify_both_ways(&log, &verifier).await;
            assert!(report.is_intact(), "size {n}: {report:?}");
            assert_eq!(report.entries, n);
            assert_eq!(report.unsigned_tail, n % 3);
            log.append(phi_read(keys.as_ref(), "user:a", "P-1", n))
                .await
                .unwrap();
        }
        log.close().await;
    });
}
