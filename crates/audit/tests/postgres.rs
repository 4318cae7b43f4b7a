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
        let raw = raw_pool(&schema).await;
        for sql in [
            "UPDATE audit_entries SET principal = 'x'",
            "DELETE FROM audit_entries WHERE idx = 3",
            "TRUNCATE audit_entries",
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
        sqlx::query("UPDATE audit_meta SET value = '2' WHERE key = 'schema_version'")
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
                    found: 2,
                    supported: 1
                }
            ),
            "{err}"
        );
        let (v,): (String,) =
            sqlx::query_as("SELECT value FROM audit_meta WHERE key = 'schema_version'")
                .fetch_one(&raw)
                .await
                .unwrap();
        assert_eq!(v, "2");
        raw.close().await;
        drop_schema(&schema).await;
    });
}
