//! `phigate store` end to end: records are written through the `store` library with the same
//! key and database, then maintained through the binary. Every scenario runs against SQLite
//! (the data directory) and against PostgreSQL (`PHIGATE_DATABASE_URL` pointing at a fresh
//! schema of the server in `PHIGATE_TEST_DATABASE_URL`).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sealed::{KeyProvider, SoftwareKeyProvider};
use secrecy::SecretString;
use store::{BackendConfig, Database, TtlPolicy};

const KEK: &str = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";

/// Where the store under test lives.
enum Backend {
    Sqlite,
    /// A schema of its own on the test server; dropped when the test ends.
    Postgres(PgSchema),
}

struct PgSchema {
    base_url: String,
    schema: String,
}

impl PgSchema {
    fn create() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base_url = std::env::var("PHIGATE_TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!("PHIGATE_TEST_DATABASE_URL is not set: point it at a PostgreSQL database, e.g. postgres://postgres@127.0.0.1:5432/test")
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "phigate_store_cli_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run_sql(&base_url, &format!("CREATE SCHEMA {schema}"));
        Self { base_url, schema }
    }

    /// The URL phigate gets: the test server with the schema as its search path.
    fn url(&self) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}options[search_path]={}", self.base_url, self.schema)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        run_sql(
            &self.base_url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
        );
    }
}

fn run_sql(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .expect("connect to PHIGATE_TEST_DATABASE_URL");
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    });
}

/// A test's data directory plus its backend.
struct Place {
    data: PathBuf,
    backend: Backend,
}

impl Place {
    fn new(dir: &Path, postgres: bool) -> Self {
        Self {
            data: dir.join("data"),
            backend: if postgres {
                Backend::Postgres(PgSchema::create())
            } else {
                Backend::Sqlite
            },
        }
    }

    fn config(&self) -> BackendConfig {
        match &self.backend {
            Backend::Sqlite => BackendConfig::Sqlite {
                path: self.data.join("store.db"),
            },
            Backend::Postgres(pg) => BackendConfig::Postgres {
                url: SecretString::from(pg.base_url.clone()),
                schema: Some(pg.schema.clone()),
            },
        }
    }

    fn phigate(&self, args: &[&str], stdin: Option<&str>) -> Output {
        phigate_with(self, &[], args, stdin)
    }
}

fn phigate(place: &Place, args: &[&str], stdin: Option<&str>) -> Output {
    place.phigate(args, stdin)
}

fn phigate_with(
    place: &Place,
    envs: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phigate"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PHIGATE_DATA_DIR", &place.data)
        .env("PHIGATE_KEK", KEK);
    if let Backend::Postgres(pg) = &place.backend {
        cmd.env("PHIGATE_DATABASE_URL", pg.url());
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn provider() -> Arc<dyn KeyProvider> {
    Arc::new(SoftwareKeyProvider::from_base64(&SecretString::from(KEK)).unwrap())
}

fn seed(place: &Place) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = Database::connect(&place.config()).await.unwrap();
        let store = db.open(provider(), TtlPolicy::default()).await.unwrap();
        for i in 0..12 {
            let patient = format!("CANARY-PATIENT-{}", i % 3);
            store
                .put(
                    "patient",
                    &format!("CANARY-ID-{i}"),
                    Some(&patient),
                    b"CANARY-VALUE",
                )
                .await
                .unwrap();
        }
        store
            .put(
                "kipu.response",
                "/patients/CANARY-ID-1",
                Some("CANARY-PATIENT-1"),
                b"cached",
            )
            .await
            .unwrap();
    });
}

fn stats(place: &Place) -> serde_json::Value {
    let o = phigate(place, &["store", "stats", "--json"], None);
    assert!(o.status.success(), "{}", out(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn stats_invalidate_backup_restore_through_the_cli_on_sqlite() {
    stats_invalidate_backup_restore(false);
}

#[test]
fn stats_invalidate_backup_restore_through_the_cli_on_postgres() {
    stats_invalidate_backup_restore(true);
}

fn stats_invalidate_backup_restore(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = Place::new(dir.path(), postgres);
    assert!(phigate(&data, &["keys", "init"], None).status.success());
    seed(&data);
    let s = stats(&data);
    assert_eq!(s["backend"], if postgres { "postgresql" } else { "sqlite" });
    assert_eq!(
        data.data.join("store.db").exists(),
        !postgres,
        "PostgreSQL runs leave no SQLite file behind"
    );
    assert_eq!(s["live_by_kind"]["patient"], 12);
    assert_eq!(s["live_by_kind"]["kipu.response"], 1);

    let backup = dir.path().join("store.bk");
    let b = phigate(&data, &["store", "backup", backup.to_str().unwrap()], None);
    assert!(b.status.success(), "{}", out(&b));
    assert!(out(&b).contains("13 record(s)"));
    let bytes = std::fs::read(&backup).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"CANARY"),
        "backup is encrypted"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let exists = phigate(&data, &["store", "backup", backup.to_str().unwrap()], None);
    assert_eq!(exists.status.code(), Some(2), "never overwrites silently");

    let p = phigate(
        &data,
        &["store", "invalidate", "patient"],
        Some("CANARY-PATIENT-1\n"),
    );
    assert!(out(&p).contains("invalidated 5 record(s)"), "{}", out(&p));
    let k = phigate(
        &data,
        &["store", "invalidate", "key", "patient"],
        Some("CANARY-ID-0\n"),
    );
    assert!(out(&k).contains("invalidated 1 record(s)"), "{}", out(&k));
    let kind = phigate(&data, &["store", "invalidate", "kind", "patient"], None);
    assert!(
        out(&kind).contains("invalidated 7 record(s)"),
        "{}",
        out(&kind)
    );
    let unconfirmed = phigate(&data, &["store", "invalidate", "all"], None);
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(
        phigate(&data, &["store", "invalidate", "all", "--yes"], None)
            .status
            .success()
    );
    assert_eq!(stats(&data)["live_by_kind"], serde_json::json!({}));

    let r = phigate(&data, &["store", "restore", backup.to_str().unwrap()], None);
    assert!(out(&r).contains("restored 13 record(s)"), "{}", out(&r));
    assert_eq!(stats(&data)["live_by_kind"]["patient"], 12);
    let again = phigate(&data, &["store", "restore", backup.to_str().unwrap()], None);
    assert!(
        out(&again).contains("restored 0 record(s); 13 unchanged"),
        "{}",
        out(&again)
    );

    let purge = phigate(&data, &["store", "purge"], None);
    assert!(purge.status.success(), "{}", out(&purge));

    for o in [&b, &p, &k, &r] {
        assert!(
            !out(o).contains("CANARY"),
            "PHI reached the output: {}",
            out(o)
        );
    }
}

#[test]
fn tampered_or_truncated_backup_is_refused_and_the_store_is_unchanged_on_sqlite() {
    tampered_or_truncated_backup_is_refused(false);
}

#[test]
fn tampered_or_truncated_backup_is_refused_and_the_store_is_unchanged_on_postgres() {
    tampered_or_truncated_backup_is_refused(true);
}

fn tampered_or_truncated_backup_is_refused(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = Place::new(dir.path(), postgres);
    assert!(phigate(&data, &["keys", "init"], None).status.success());
    seed(&data);
    let backup = dir.path().join("store.bk");
    assert!(
        phigate(&data, &["store", "backup", backup.to_str().unwrap()], None)
            .status
            .success()
    );
    assert!(
        phigate(&data, &["store", "invalidate", "all", "--yes"], None)
            .status
            .success()
    );
    let bytes = std::fs::read(&backup).unwrap();

    let tampered = dir.path().join("tampered.bk");
    let mut t = bytes.clone();
    let mid = t.len() / 2;
    t[mid] ^= 1;
    std::fs::write(&tampered, &t).unwrap();
    let o = phigate(
        &data,
        &["store", "restore", tampered.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("was refused; the store was not changed"),
        "{}",
        out(&o)
    );

    let truncated = dir.path().join("truncated.bk");
    std::fs::write(&truncated, &bytes[..bytes.len() - 30]).unwrap();
    let o = phigate(
        &data,
        &["store", "restore", truncated.to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stats(&data)["live_by_kind"],
        serde_json::json!({}),
        "nothing restored from a bad backup"
    );
    let missing = phigate(&data, &["store", "restore", "/nonexistent/backup"], None);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn corrupt_database_file_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = Place::new(dir.path(), false);
    std::fs::create_dir(&data.data).unwrap();
    let db = data.data.join("store.db");
    std::fs::write(&db, vec![0x42u8; 4096]).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let o = phigate(&data, &["store", "stats"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("not a database"), "{}", out(&o));
    assert!(!out(&o).contains("panicked"));
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x42u8; 4096]);
}

#[test]
fn ttl_per_kind_is_configured_by_flag_or_environment_and_reported_by_stats() {
    let dir = tempfile::tempdir().unwrap();
    let data = Place::new(dir.path(), false);
    assert!(phigate(&data, &["keys", "init"], None).status.success());
    seed(&data);
    let default = stats(&data);
    assert_eq!(default["ttl_seconds"]["kipu.response"], 900);
    assert_eq!(default["ttl_seconds"]["patient"], serde_json::Value::Null);

    let o = phigate(
        &data,
        &[
            "--ttl",
            "kipu.response=5m",
            "--ttl",
            "*=1h",
            "store",
            "stats",
            "--json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", out(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["ttl_seconds"]["kipu.response"], 300);
    assert_eq!(doc["ttl_seconds"]["patient"], 3600);

    let o = phigate_with(
        &data,
        &[("PHIGATE_TTL", "patient=2d,kipu.response=30s")],
        &["store", "stats", "--json"],
        None,
    );
    assert!(o.status.success(), "{}", out(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["ttl_seconds"]["kipu.response"], 30);
    assert_eq!(doc["ttl_seconds"]["patient"], 172_800);

    let text = phigate(&data, &["--ttl", "patient=2d", "store", "stats"], None);
    assert!(
        out(&text).contains("time to live of patient: 172800 s"),
        "{}",
        out(&text)
    );
}

#[test]
fn a_bad_ttl_is_a_usage_error_naming_the_item_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = Place::new(dir.path(), false);
    assert!(phigate(&data, &["keys", "init"], None).status.success());
    seed(&data);
    for (flag, reason) in [
        ("kipu.response=15", "needs a unit"),
        ("kipu.response=0m", "greater than zero"),
        ("kipu.response", "expected KIND=DURATION"),
        ("kipu.response=400d", "maximum of 365d"),
    ] {
        let o = phigate(
            &data,
            &["--ttl", flag, "store", "invalidate", "all", "--yes"],
            None,
        );
        assert_eq!(o.status.code(), Some(2), "{}", out(&o));
        assert!(
            out(&o).contains(reason) && out(&o).contains(flag),
            "{}",
            out(&o)
        );
    }
    let bad_env = phigate_with(
        &data,
        &[("PHIGATE_TTL", "patient=soon")],
        &["store", "stats"],
        None,
    );
    assert_eq!(bad_env.status.code(), Some(2), "{}", out(&bad_env));
    assert_eq!(
        stats(&data)["live_by_kind"]["patient"],
        12,
        "nothing deleted"
    );
}
