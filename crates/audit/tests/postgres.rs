//! PostgreSQL: several writers (connections and processes) append to one log with no gaps and
//! no forks; triggers, schema versions and verification behave as on SQLite.
//!
//! Needs `PHIGATE_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); each
//! test works in a fresh schema and drops it afterwards.

mod common;

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use audit::*;
use common::*;
use secrecy::SecretString;

const CHILD_ENV: &str = "AUDIT_PG_CHILD_SCHEMA";

fn database_url() -> String {
    std::env::var("PHIGATE_TEST_DATABASE_URL").expect(
        "PHIGATE_TEST_DATABASE_URL must be set for the PostgreSQL tests \
         (e.g. postgres://postgres@127.0.0.1:5432/test)",
    )
}

fn fresh_schema(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("audit_{label}_{}_{nanos}", std::process::id())
}

fn pg_config(schema: &str, interval: Duration) -> LogConfig {
    let mut cfg = LogConfig::new(Storage::Postgres {
        url: SecretString::from(database_url()),
        schema: Some(schema.to_string()),
    });
    cfg.checkpoint_interval = interval;
    cfg.origin = Some("phigate-audit/pg-test".into());
    cfg
}

async fn raw_pool(schema: &str) -> sqlx::PgPool {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url())
        .await
        .unwrap();
    sqlx::query(&format!("SET search_path TO {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    pool
}

async fn drop_schema(schema: &str) {
    let pool = sqlx::PgPool::connect(&database_url()).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[test]
fn several_connections_appending_at_once_make_one_gapless_unforked_log() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let schema = fresh_schema("conn");
    runtime().block_on(async {
        let mut logs = Vec::new();
        for _ in 0..4 {
            logs.push(
                AuditLog::open(pg_config(&schema, Duration::from_millis(5)), keys.clone())
                    .await
                    .unwrap(),
            );
        }
        let mut handles = Vec::new();
        for (w, log) in logs.iter().enumerate() {
            for n in 0..60u64 {
                let log = log.clone();
                let ev = phi_read(keys.as_ref(), &format!("user:w{w}"), "P-1", n);
                handles.push(tokio::spawn(async move { log.append(ev).await.unwrap() }));
            }
        }
        let mut indexes = BTreeSet::new();
        for h in handles {
            assert!(
                indexes.insert(h.await.unwrap()),
                "an index was handed out twice"
            );
        }
        assert_eq!(indexes, (0..240).collect());
        let report = verify_log(&logs[0], &keys.note_verifier()).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries, 240);
        assert!(report.checkpoints_verified >= 1);
        for log in logs {
            log.close().await;
        }
    });
    runtime().block_on(drop_schema(&schema));
}

#[test]
fn postgres_verification_while_appending_is_intact_and_covers_every_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let schema = fresh_schema("vwa");
    runtime().block_on(async {
        let mut cfg = pg_config(&schema, Duration::from_millis(3));
        cfg.search_batch = 256;
        let log = AuditLog::open(cfg, keys.clone()).await.unwrap();
        let overlapped = verify_while_appending(&log, &keys, 1500, 6).await;
        assert!(overlapped > 0, "no verification ran while appends went on");
        log.close().await;
        drop_schema(&schema).await;
    });
}

#[test]
fn postgres_version_1_schema_is_read_as_is_and_migrated_when_opened_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let verifier = keys.note_verifier();
    let schema = fresh_schema("mig");
    runtime().block_on(async {
        let log = AuditLog::open(pg_config(&schema, Duration::ZERO), keys.clone())
            .await
            .unwrap();
        for n in 0..30 {
            log.append(phi_read(
                keys.as_ref(),
                &format!("user:{}", n % 3),
                "P-1",
                n,
            ))
            .await
            .unwrap();
        }
        let by_principal = QueryFilter {
            principal: Some("user:1".into()),
            ..QueryFilter::default()
        };
        let indexes = |found: Vec<(Entry, merkle::Hash)>| {
            found.into_iter().map(|(e, _)| e.index).collect::<Vec<_>>()
        };
        let expected = indexes(log.query(&by_principal).await.unwrap());
        assert_eq!(expected, (0..30).filter(|n| n % 3 == 1).collect::<Vec<_>>());
        log.close().await;

        // Back to the version-1 layout: search columns (and their indexes) in audit_entries.
        let raw = raw_pool(&schema).await;
        sqlx::raw_sql(
            r#"
DROP TRIGGER audit_entries_append_only ON audit_entries;
ALTER TABLE audit_entries ADD COLUMN time_us BIGINT, ADD COLUMN kind TEXT,
    ADD COLUMN principal TEXT, ADD COLUMN patient TEXT;
UPDATE audit_entries e SET time_us = s.time_us, kind = s.kind, principal = s.principal,
    patient = s.patient FROM audit_search s WHERE s.idx = e.idx;
ALTER TABLE audit_entries ALTER COLUMN time_us SET NOT NULL, ALTER COLUMN kind SET NOT NULL;
DROP TABLE audit_search;
CREATE INDEX audit_entries_time ON audit_entries (time_us);
CREATE INDEX audit_entries_kind ON audit_entries (kind, idx);
CREATE INDEX audit_entries_principal ON audit_entries (principal, idx);
CREATE INDEX audit_entries_patient ON audit_entries (patient, idx);
CREATE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
UPDATE audit_meta SET value = '1' WHERE key = 'schema_version';
"#,
        )
        .execute(&raw)
        .await
        .unwrap();
        let version = |raw: sqlx::PgPool| async move {
            let (v,): (String,) =
                sqlx::query_as("SELECT value FROM audit_meta WHERE key = 'schema_version'")
                    .fetch_one(&raw)
                    .await
                    .unwrap();
            v
        };

        let storage = pg_config(&schema, Duration::ZERO).storage;
        let old = AuditLog::open_read_only(&storage).await.unwrap();
        assert_eq!(indexes(old.query(&by_principal).await.unwrap()), expected);
        assert!(verify_log(&old, &verifier).await.unwrap().is_intact());
        old.close().await;
        assert_eq!(version(raw.clone()).await, "1");

        let log = AuditLog::open(pg_config(&schema, Duration::ZERO), keys.clone())
            .await
            .unwrap();
        assert_eq!(version(raw.clone()).await, SCHEMA_VERSION.to_string());
        let (copied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_search")
            .fetch_one(&raw)
            .await
            .unwrap();
        assert_eq!(copied, 30);
        assert_eq!(indexes(log.query(&by_principal).await.unwrap()), expected);
        assert_eq!(
            log.append(phi_read(keys.as_ref(), "user:1", "P-1", 30))
                .await
                .unwrap(),
            30
        );
        let report = verify_log(&log, &verifier).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries, 31);
        raw.close().await;
        log.close().await;
        drop_schema(&schema).await;
    });
}

/// Child mode for the multi-process test: appends 100 entries and prints each index.
#[test]
fn pg_child_writer() {
    let Ok(schema) = std::env::var(CHILD_ENV) else {
        return;
    };
    let key_dir = std::path::PathBuf::from(std::env::var("AUDIT_PG_CHILD_KEYS").unwrap());
    let keys = Arc::new(FileKeys::open_or_create(&key_dir, "phigate-audit-test", kek()).unwrap());
    runtime().block_on(async {
        let log = AuditLog::open(pg_config(&schema, Duration::from_millis(5)), keys.clone())
            .await
            .unwrap();
        let mut handles = Vec::new();
        for n in 0..100u64 {
            let log = log.clone();
            let ev = phi_read(
                keys.as_ref(),
                &format!("proc:{}", std::process::id()),
                "P-1",
                n,
            );
            handles.push(tokio::spawn(async move { log.append(ev).await.unwrap() }));
        }
        for h in handles {
            println!("\naudit-ack:{}", h.await.unwrap());
        }
    });
}

#[test]
fn several_processes_appending_at_once_make_one_gapless_unforked_log() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let schema = fresh_schema("proc");
    // Create the schema first so the children race only on appends, not on DDL.
    runtime().block_on(async {
        AuditLog::open(pg_config(&schema, Duration::from_millis(5)), keys.clone())
            .await
            .unwrap()
            .close()
            .await;
    });
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "pg_child_writer",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &schema)
                .env("AUDIT_PG_CHILD_KEYS", dir.path().join("keys"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut indexes = BTreeSet::new();
    for mut child in children {
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in stdout.lines() {
            // libtest may print its own text on the same line, so search for the marker.
            if let Some((_, i)) = line.unwrap().split_once("audit-ack:") {
                assert!(
                    indexes.insert(i.trim().parse::<u64>().unwrap()),
                    "index handed out twice"
                );
            }
        }
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(indexes, (0..300).collect());
    runtime().block_on(async {
        let log = AuditLog::open_read_only(&pg_config(&schema, Duration::ZERO).storage)
            .await
            .unwrap();
        let report = verify_log(&log, &keys.note_verifier()).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries, 300);
        log.close().await;
        drop_schema(&schema).await;
    });
}

#[test]
fn postgres_refuses_update_delete_and_truncate_and_verification_catches_a_dropped_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let schema = fresh_schema("trig");
    runtime().block_on(async {
        let log = AuditLog::open(pg_config(&schema, Duration::ZERO), keys.clone())
            .await
            .unwrap();
        for n in 0..10 {
            log.append(phi_read(keys.as_ref(), "user:a", "P-1", n))
                .await
                .unwrap();
        }
        // Row triggers fire only on rows: copy the search columns now.
        assert_eq!(log.catch_up_search().await.unwrap(), 10);
        let raw = raw_pool(&schema).await;
        for sql in [
            "UPDATE audit_entries SET leaf = '\\x00'",
            "DELETE FROM audit_entries WHERE idx = 3",
            "TRUNCATE audit_entries",
            "UPDATE audit_search SET principal = 'x'",
            "DELETE FROM audit_search",
            "TRUNCATE audit_search",
            "UPDATE audit_checkpoints SET note = 'x'",
            "TRUNCATE audit_checkpoints",
        ] {
            let err = sqlx::query(sql).execute(&raw).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        sqlx::query("DROP TRIGGER audit_entries_append_only ON audit_entries")
            .execute(&raw)
            .await
            .unwrap();
        sqlx::query("DELETE FROM audit_entries WHERE idx = 3")
            .execute(&raw)
            .await
            .unwrap();
        let report = verify_log(&log, &keys.note_verifier()).await.unwrap();
        let damage = report.damage.unwrap();
        assert_eq!((damage.kind, damage.index), (DamageKind::Deleted, 3));
        raw.close().await;
        log.close().await;
        drop_schema(&schema).await;
    });
}

#[test]
fn postgres_database_from_a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(dir.path());
    let schema = fresh_schema("ver");
    runtime().block_on(async {
        AuditLog::open(pg_config(&schema, Duration::ZERO), keys.clone())
            .await
            .unwrap()
            .close()
            .await;
        let raw = raw_pool(&schema).await;
        sqlx::query("UPDATE audit_meta SET value = '3' WHERE key = 'schema_version'")
            .execute(&raw)
            .await
            .unwrap();
        let err = AuditLog::open(pg_config(&schema, Duration::ZERO), keys.clone())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::NewerSchema {
                    found: 3,
                    supported: 2
                }
            ),
            "{err}"
        );
        let (v,): (String,) =
            sqlx::query_as("SELECT value FROM audit_meta WHERE key = 'schema_version'")
                .fetch_one(&raw)
                .await
                .unwrap();
        assert_eq!(v, "3");
        raw.close().await;
        drop_schema(&schema).await;
    });
}
