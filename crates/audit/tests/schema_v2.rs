//! Schema version 2: search columns copied behind the appends, migration of version-1 files.

mod common;

use std::path::Path;
use std::time::Duration;

use audit::*;
use common::*;

const NEVER: Duration = Duration::from_secs(3600 * 24 * 365);

/// A config whose background copy never runs on its own (huge batch, idle of a year), so the
/// test decides when search columns are copied.
fn manual_copy_config(dir: &Path) -> LogConfig {
    let mut cfg = sqlite_config(dir, NEVER);
    cfg.search_batch = 1_000_000;
    cfg.search_idle = NEVER;
    cfg
}

async fn raw(dir: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("audit.db").display()))
        .await
        .unwrap()
}

async fn count(pool: &sqlx::SqlitePool, table: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap();
    n
}

fn mixed_event(keys: &FileKeys, n: u64) -> Event {
    match n % 3 {
        0 => phi_read(keys, &format!("user:{}", n % 4), &format!("P-{}", n % 5), n),
        1 => disclosure(keys, &format!("P-{}", n % 5), "County Health Department"),
        _ => Event::KeyLifecycle(KeyLifecycle {
            principal: "admin:ops".into(),
            key_id: format!("kek-{n}"),
            key_purpose: "kek".into(),
            action: KeyAction::Rotated,
        }),
    }
}

/// Every kind of filter, with the indexes of the entries each one returns.
async fn all_queries(log: &AuditLog, keys: &FileKeys) -> Vec<Vec<u64>> {
    let all = log.query(&QueryFilter::default()).await.unwrap();
    let time_of = |i: usize| all.get(i).map(|(e, _)| e.time);
    let filters = vec![
        QueryFilter::default(),
        QueryFilter {
            kind: Some("disclosure".into()),
            ..QueryFilter::default()
        },
        QueryFilter {
            principal: Some("user:2".into()),
            ..QueryFilter::default()
        },
        QueryFilter {
            patient: vec![patient(keys, "P-3")],
            ..QueryFilter::default()
        },
        QueryFilter {
            patient: vec![patient(keys, "P-1")],
            kind: Some("phi_access".into()),
            limit: Some(3),
            ..QueryFilter::default()
        },
        QueryFilter {
            since: time_of(10),
            until: time_of(25),
            ..QueryFilter::default()
        },
        QueryFilter {
            limit: Some(40),
            ..QueryFilter::default()
        },
    ];
    let mut out = Vec::new();
    for f in &filters {
        let found = log.query(f).await.unwrap();
        out.push(found.iter().map(|(e, _)| e.index).collect());
    }
    out
}

#[test]
fn search_results_are_identical_before_during_and_after_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let log = AuditLog::open(manual_copy_config(dir.path()), keys.clone())
            .await
            .unwrap();
        let pool = raw(dir.path()).await;
        for n in 0..30 {
            log.append(mixed_event(&keys, n)).await.unwrap();
        }
        assert_eq!(count(&pool, "audit_search").await, 0, "nothing copied yet");
        let uncopied = all_queries(&log, &keys).await;
        assert_eq!(log.catch_up_search().await.unwrap(), 30);
        assert_eq!(count(&pool, "audit_search").await, 30);
        assert_eq!(all_queries(&log, &keys).await, uncopied);

        for n in 30..55 {
            log.append(mixed_event(&keys, n)).await.unwrap();
        }
        // 30 entries copied, 25 not: results span both.
        let partly = all_queries(&log, &keys).await;
        assert_eq!(log.catch_up_search().await.unwrap(), 55);
        let copied = all_queries(&log, &keys).await;
        assert_eq!(copied, partly);
        // The filters did select something in every shape (not vacuous).
        assert_eq!(copied[0], (0..55).collect::<Vec<_>>());
        assert_eq!(
            copied[1],
            (0..55).filter(|n| n % 3 == 1).collect::<Vec<_>>()
        );
        assert_eq!(copied[4].len(), 3);
        assert_eq!(copied[6], (0..40).collect::<Vec<_>>());
        assert!(!copied[2].is_empty() && !copied[3].is_empty() && !copied[5].is_empty());
        assert!(
            verify_log(&log, &keys.note_verifier())
                .await
                .unwrap()
                .is_intact()
        );
        pool.close().await;
        log.close().await;
    });
}

#[test]
fn the_background_copy_fills_the_search_table_and_verification_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    runtime().block_on(async {
        let mut cfg = sqlite_config(dir.path(), NEVER);
        cfg.search_batch = 8;
        cfg.search_idle = Duration::from_millis(5);
        let log = AuditLog::open(cfg, keys.clone()).await.unwrap();
        for n in 0..50 {
            log.append(mixed_event(&keys, n)).await.unwrap();
        }
        log.checkpoint_now().await.unwrap();
        let report = verify_log(&log, &keys.note_verifier()).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries, 50);
        log.close().await;
        // Closing copied whatever the background task had not.
        let pool = raw(dir.path()).await;
        assert_eq!(count(&pool, "audit_search").await, 50);
        pool.close().await;
    });
}

/// Rewrites a version-2 file into the exact version-1 layout (search columns and their four
/// indexes inside `audit_entries`), as the previous release created it.
async fn downgrade_to_v1(dir: &Path) {
    let pool = raw(dir).await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::raw_sql(
        r#"
DROP TRIGGER audit_entries_no_update;
DROP TRIGGER audit_entries_no_delete;
DROP TRIGGER audit_search_no_update;
DROP TRIGGER audit_search_no_delete;
CREATE TABLE v1_entries (
    idx INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT,
    patient TEXT,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
INSERT INTO v1_entries
    SELECT e.idx, s.time_us, s.kind, s.principal, s.patient, e.leaf, e.leaf_hash
    FROM audit_entries e JOIN audit_search s ON s.idx = e.idx;
DROP TABLE audit_entries;
DROP TABLE audit_search;
ALTER TABLE v1_entries RENAME TO audit_entries;
CREATE INDEX audit_entries_time ON audit_entries (time_us);
CREATE INDEX audit_entries_kind ON audit_entries (kind, idx);
CREATE INDEX audit_entries_principal ON audit_entries (principal, idx);
CREATE INDEX audit_entries_patient ON audit_entries (patient, idx);
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log entries are append-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log entries are append-only'); END;
UPDATE audit_meta SET value = '1' WHERE key = 'schema_version';
"#,
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    pool.close().await;
}

async fn schema_version(dir: &Path) -> String {
    let pool = raw(dir).await;
    let (v,): (String,) =
        sqlx::query_as("SELECT value FROM audit_meta WHERE key = 'schema_version'")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    v
}

#[test]
fn a_version_1_file_is_read_as_is_and_migrated_when_opened_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let verifier = keys.note_verifier();
    runtime().block_on(async {
        let log = AuditLog::open(sqlite_config(dir.path(), Duration::ZERO), keys.clone())
            .await
            .unwrap();
        for n in 0..40 {
            log.append(mixed_event(&keys, n)).await.unwrap();
        }
        let expected = all_queries(&log, &keys).await;
        log.close().await;
        downgrade_to_v1(dir.path()).await;
        let storage = Storage::Sqlite {
            path: dir.path().join("audit.db"),
        };

        // Read-only: read in the old layout, nothing changed.
        let old = AuditLog::open_read_only(&storage).await.unwrap();
        assert_eq!(all_queries(&old, &keys).await, expected);
        let report = verify_log(&old, &verifier).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries, 40);
        old.close().await;
        assert_eq!(schema_version(dir.path()).await, "1");

        // Opened for writing: migrated, same results, still verifies, appends continue.
        let log = AuditLog::open(sqlite_config(dir.path(), Duration::ZERO), keys.clone())
            .await
            .unwrap();
        assert_eq!(schema_version(dir.path()).await, SCHEMA_VERSION.to_string());
        let pool = raw(dir.path()).await;
        assert_eq!(count(&pool, "audit_search").await, 40);
        let columns: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info('audit_entries') ORDER BY cid")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(
            columns.into_iter().map(|c| c.0).collect::<Vec<_>>(),
            ["idx", "leaf", "leaf_hash"]
        );
        for sql in ["DELETE FROM audit_entries", "DELETE FROM audit_search"] {
            let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        pool.close().await;
        assert_eq!(all_queries(&log, &keys).await, expected);
        let report = verify_log(&log, &verifier).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        for n in 40..45 {
            assert_eq!(log.append(mixed_event(&keys, n)).await.unwrap(), n);
        }
        let report = verify_log(&log, &verifier).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!((report.entries, report.unsigned_tail), (45, 0));
        log.close().await;
    });
}
