//! Storage: schema, migrations and connections for SQLite and PostgreSQL.
//!
//! Tables (schema version 2, same shape on both backends):
//! * `audit_meta(key, value)`: `schema_version`, `origin`, `created_at`.
//! * `audit_entries(idx, leaf, leaf_hash)`: one row per leaf; `leaf` holds the exact canonical
//!   bytes that were hashed. This is the only table an append writes besides the tree head,
//!   and it has no secondary index, so a commit touches the right edge of one B-tree only.
//! * `audit_search(idx, time_us, kind, principal, patient)`: the search columns of every
//!   entry below a watermark (`MAX(idx) + 1`), indexed for queries. It is filled after the
//!   append was acknowledged, by a background task of the writing process, in large batches
//!   (see `crate::search`); entries at or above the watermark are found by reading their leaves,
//!   so query results never depend on how far the copy has got. Verification checks every
//!   search row against the entry it describes and that none below the watermark is missing.
//! * `audit_checkpoints(tree_size, time_us, note)`: signed checkpoint notes.
//! * `audit_tree_head(id = 1, size, compact, last_checkpoint_us)`: the single row that
//!   serializes writers (`FOR UPDATE` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite) and holds
//!   the right edge of the tree, so a batch never reads old leaves.
//!
//! On SQLite the appends themselves do not go through the sqlx pool opened here but through
//! the writer's own connection to the same file (see `crate::sqlite_append`).
//!
//! Triggers refuse `UPDATE` and `DELETE` (and `TRUNCATE` on PostgreSQL) on entries, search
//! rows and checkpoints. Someone with enough privilege can drop them; verification catches
//! that.
//!
//! Versions: version 1 kept the search columns (and their four indexes) in `audit_entries`,
//! which made every append insert into five B-trees before its fsync. A version-1 database is
//! migrated in place, in one transaction, when it is opened for writing (search columns copied
//! into `audit_search`, `audit_entries` rebuilt without them); opened read-only it is read as it
//! is (its `audit_entries` doubles as the search table). A database of a newer version is
//! refused and left untouched.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{AuditError, storage};
use crate::merkle::CompactRange;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = 2;

/// Where the log lives.
#[derive(Debug, Clone)]
pub enum Storage {
    /// A SQLite file (created 0600, WAL, `synchronous=FULL`).
    Sqlite {
        /// Path of the database file (by convention `<data dir>/audit.db`).
        path: PathBuf,
    },
    /// PostgreSQL, shared by several writers.
    Postgres {
        /// Connection URL.
        url: SecretString,
        /// Schema to use (created if missing); `None` uses the server's `search_path`.
        schema: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// What the write paths of a log opened for writing (appends, search copy) are built on: the
/// SQLite file, to which each opens its own connection, or the PostgreSQL pool.
pub(crate) enum WriteBackend<'a> {
    Sqlite(&'a Path),
    Postgres(&'a PgPool),
}

impl Db {
    /// The write backend of this connection, opened from `storage`.
    pub(crate) fn write_backend<'a>(
        &'a self,
        storage: &'a Storage,
    ) -> Result<WriteBackend<'a>, AuditError> {
        match (storage, self) {
            (Storage::Sqlite { path }, Db::Sqlite(_)) => Ok(WriteBackend::Sqlite(path)),
            (Storage::Postgres { .. }, Db::Postgres(pool)) => Ok(WriteBackend::Postgres(pool)),
            _ => Err(AuditError::Config(
                "the audit storage and its connection disagree",
            )),
        }
    }

    /// True once the pool was closed ([`crate::AuditLog::close`]).
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Db::Sqlite(p) => p.is_closed(),
            Db::Postgres(p) => p.is_closed(),
        }
    }
}

/// Where the search columns of an opened log are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Schema 2: `audit_search`, filled behind the appends.
    V2,
    /// A schema-1 database opened read-only: the columns are in `audit_entries` itself.
    V1,
}

impl Layout {
    /// The table holding `idx, time_us, kind, principal, patient`.
    pub(crate) fn search_table(self) -> &'static str {
        match self {
            Layout::V2 => "audit_search",
            Layout::V1 => "audit_entries",
        }
    }
}

const SQLITE_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS audit_entries (
    idx INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_search (
    idx INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT,
    patient TEXT
);
CREATE INDEX IF NOT EXISTS audit_search_time ON audit_search (time_us);
CREATE INDEX IF NOT EXISTS audit_search_kind ON audit_search (kind, idx);
CREATE INDEX IF NOT EXISTS audit_search_principal ON audit_search (principal, idx);
CREATE INDEX IF NOT EXISTS audit_search_patient ON audit_search (patient, idx);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_tree_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    compact BLOB NOT NULL,
    last_checkpoint_us INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'audit log entries are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_search_no_update BEFORE UPDATE ON audit_search
BEGIN SELECT RAISE(ABORT, 'audit search rows are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_search_no_delete BEFORE DELETE ON audit_search
BEGIN SELECT RAISE(ABORT, 'audit search rows are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_tree_head_no_delete BEFORE DELETE ON audit_tree_head
BEGIN SELECT RAISE(ABORT, 'audit tree head cannot be deleted'); END;
"#;

/// Version 1 to 2 on SQLite: the search columns move to `audit_search` (created by the DDL
/// that runs next) and `audit_entries` is rebuilt without them.
const SQLITE_V1_TO_V2: &str = r#"
DROP TRIGGER IF EXISTS audit_entries_no_update;
DROP TRIGGER IF EXISTS audit_entries_no_delete;
DROP INDEX IF EXISTS audit_entries_time;
DROP INDEX IF EXISTS audit_entries_kind;
DROP INDEX IF EXISTS audit_entries_principal;
DROP INDEX IF EXISTS audit_entries_patient;
CREATE TABLE audit_search (
    idx INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT,
    patient TEXT
);
INSERT INTO audit_search (idx, time_us, kind, principal, patient)
    SELECT idx, time_us, kind, principal, patient FROM audit_entries ORDER BY idx;
CREATE TABLE audit_entries_v2 (
    idx INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
INSERT INTO audit_entries_v2 (idx, leaf, leaf_hash)
    SELECT idx, leaf, leaf_hash FROM audit_entries ORDER BY idx;
DROP TABLE audit_entries;
ALTER TABLE audit_entries_v2 RENAME TO audit_entries;
"#;

const POSTGRES_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS audit_entries (
    idx BIGINT PRIMARY KEY,
    leaf BYTEA NOT NULL,
    leaf_hash BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_search (
    idx BIGINT PRIMARY KEY,
    time_us BIGINT NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT,
    patient TEXT
);
CREATE INDEX IF NOT EXISTS audit_search_time ON audit_search (time_us);
CREATE INDEX IF NOT EXISTS audit_search_kind ON audit_search (kind, idx);
CREATE INDEX IF NOT EXISTS audit_search_principal ON audit_search (principal, idx);
CREATE INDEX IF NOT EXISTS audit_search_patient ON audit_search (patient, idx);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size BIGINT PRIMARY KEY,
    time_us BIGINT NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_tree_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    compact BYTEA NOT NULL,
    last_checkpoint_us BIGINT NOT NULL
);
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log rows are append-only';
END
$$;
CREATE OR REPLACE TRIGGER audit_entries_append_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE OR REPLACE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE OR REPLACE TRIGGER audit_search_append_only BEFORE UPDATE OR DELETE ON audit_search
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE OR REPLACE TRIGGER audit_search_no_truncate BEFORE TRUNCATE ON audit_search
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE OR REPLACE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE OR REPLACE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE OR REPLACE TRIGGER audit_tree_head_no_delete BEFORE DELETE ON audit_tree_head
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
"#;

/// Version 1 to 2 on PostgreSQL (dropping columns fires no row trigger).
const POSTGRES_V1_TO_V2: &str = r#"
DROP INDEX IF EXISTS audit_entries_time;
DROP INDEX IF EXISTS audit_entries_kind;
DROP INDEX IF EXISTS audit_entries_principal;
DROP INDEX IF EXISTS audit_entries_patient;
CREATE TABLE audit_search (
    idx BIGINT PRIMARY KEY,
    time_us BIGINT NOT NULL,
    kind TEXT NOT NULL,
    principal TEXT,
    patient TEXT
);
INSERT INTO audit_search (idx, time_us, kind, principal, patient)
    SELECT idx, time_us, kind, principal, patient FROM audit_entries ORDER BY idx;
ALTER TABLE audit_entries
    DROP COLUMN time_us, DROP COLUMN kind, DROP COLUMN principal, DROP COLUMN patient;
"#;

/// Advisory lock key that serializes schema creation among several starting instances.
const MIGRATION_LOCK: i64 = 0x7068_6967_6175_6431;

fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Opens (and, if `create`, initializes or migrates) the database. Returns the pool, the log
/// origin and where the search columns are.
pub(crate) async fn connect(
    storage_cfg: &Storage,
    create: bool,
    new_origin: &str,
) -> Result<(Db, String, Layout), AuditError> {
    match storage_cfg {
        Storage::Sqlite { path } => {
            prepare_sqlite_file(path, create)?;
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(false)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(30));
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                // A local file has no connection to lose: the pool's default ping before every
                // acquire would only add a round trip to the connection's worker thread per query.
                .test_before_acquire(false)
                .connect_with(opts)
                .await
                .map_err(storage("opening the SQLite audit database"))?;
            let db = Db::Sqlite(pool);
            let (origin, layout) = migrate(&db, create, new_origin).await?;
            Ok((db, origin, layout))
        }
        Storage::Postgres { url, schema } => {
            let mut opts = PgConnectOptions::from_str(url.expose_secret())
                .map_err(|_| AuditError::Config("the PostgreSQL URL is not valid"))?;
            if let Some(schema) = schema {
                if !valid_schema_name(schema) {
                    return Err(AuditError::Config(
                        "schema name must be lower-case letters, digits and '_'",
                    ));
                }
                if create {
                    let admin = PgPoolOptions::new()
                        .max_connections(1)
                        .connect_with(opts.clone())
                        .await
                        .map_err(storage("connecting to PostgreSQL"))?;
                    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                        .execute(&admin)
                        .await
                        .map_err(storage("creating the audit schema"))?;
                    admin.close().await;
                }
                opts = opts.options([("search_path", schema.as_str())]);
            }
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(storage("connecting to PostgreSQL"))?;
            let db = Db::Postgres(pool);
            let (origin, layout) = migrate(&db, create, new_origin).await?;
            Ok((db, origin, layout))
        }
    }
}

fn prepare_sqlite_file(path: &Path, create: bool) -> Result<(), AuditError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |context: &str, source| AuditError::Io {
        context: format!("{context} {}", path.display()),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(AuditError::Config(
                    "the audit database file must not be accessible by group or others (chmod 600)",
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !create {
                return Err(AuditError::NotFound(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("creating the directory of", e))?;
            }
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| io("creating", e))?;
            Ok(())
        }
        Err(e) => Err(io("reading", e)),
    }
}

/// The statements that differ between the backends; everything else in [`migrate`] is shared
/// (sqlx binds `$N` placeholders on both).
struct Dialect {
    /// One boolean row: does `audit_meta` exist?
    meta_exists: &'static str,
    /// Tables, indexes and append-only triggers.
    ddl: &'static str,
    /// Moves a version-1 database to version 2 (the DDL runs after it).
    v1_to_v2: &'static str,
}

const SQLITE: Dialect = Dialect {
    meta_exists: "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_meta')",
    ddl: SQLITE_DDL,
    v1_to_v2: SQLITE_V1_TO_V2,
};

const POSTGRES: Dialect = Dialect {
    meta_exists: "SELECT to_regclass('audit_meta') IS NOT NULL",
    ddl: POSTGRES_DDL,
    v1_to_v2: POSTGRES_V1_TO_V2,
};

/// Creates the schema when missing, migrates version 1 when opening for writing, refuses
/// newer versions. Returns the origin and the layout.
async fn migrate(db: &Db, create: bool, new_origin: &str) -> Result<(String, Layout), AuditError> {
    let ctx = "initializing the audit schema";
    let now = chrono::Utc::now().to_rfc3339();
    let empty = CompactRange::new().to_bytes();
    // One body for both backends; only the way the transaction is opened (and serialized
    // against other starting instances) and the `Dialect` strings differ.
    macro_rules! migrate_in_tx {
        ($tx:expr, $dialect:expr) => {{
            let mut tx = $tx;
            let dialect: &Dialect = $dialect;
            let (has_meta,): (bool,) = sqlx::query_as(dialect.meta_exists)
                .fetch_one(&mut *tx)
                .await
                .map_err(storage(ctx))?;
            let version: Option<(String,)> = if has_meta {
                sqlx::query_as("SELECT value FROM audit_meta WHERE key = 'schema_version'")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(storage(ctx))?
            } else {
                None
            };
            let state = check_version(version.map(|v| v.0), create)?;
            let mut layout = Layout::V2;
            match state {
                VersionState::Current => {}
                VersionState::V1 if !create => layout = Layout::V1,
                VersionState::V1 => {
                    // One transaction: a crash leaves version 1 intact, never half of each.
                    sqlx::raw_sql(dialect.v1_to_v2)
                        .execute(&mut *tx)
                        .await
                        .map_err(storage("migrating the audit schema from version 1"))?;
                    sqlx::raw_sql(dialect.ddl)
                        .execute(&mut *tx)
                        .await
                        .map_err(storage("migrating the audit schema from version 1"))?;
                    sqlx::query("UPDATE audit_meta SET value = $1 WHERE key = 'schema_version'")
                        .bind(SCHEMA_VERSION.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(storage("migrating the audit schema from version 1"))?;
                    tracing::info!(from = 1, to = SCHEMA_VERSION, "audit schema migrated");
                }
                VersionState::Fresh => {
                    sqlx::raw_sql(
                        "CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                    )
                    .execute(&mut *tx)
                    .await
                    .map_err(storage(ctx))?;
                    sqlx::raw_sql(dialect.ddl)
                        .execute(&mut *tx)
                        .await
                        .map_err(storage(ctx))?;
                    for (k, v) in [
                        ("schema_version", SCHEMA_VERSION.to_string()),
                        ("origin", new_origin.to_string()),
                        ("created_at", now),
                    ] {
                        sqlx::query("INSERT INTO audit_meta (key, value) VALUES ($1, $2)")
                            .bind(k)
                            .bind(v)
                            .execute(&mut *tx)
                            .await
                            .map_err(storage(ctx))?;
                    }
                    sqlx::query(
                        "INSERT INTO audit_tree_head (id, size, compact, last_checkpoint_us) VALUES (1, 0, $1, 0)",
                    )
                    .bind(&empty)
                    .execute(&mut *tx)
                    .await
                    .map_err(storage(ctx))?;
                }
            }
            let (origin,): (String,) =
                sqlx::query_as("SELECT value FROM audit_meta WHERE key = 'origin'")
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(storage(ctx))?;
            tx.commit().await.map_err(storage(ctx))?;
            Ok((origin, layout))
        }};
    }
    match db {
        Db::Sqlite(pool) => {
            // Readers take no write lock and create nothing, so a read-only copy verifies.
            let tx = if create {
                pool.begin_with("BEGIN IMMEDIATE").await
            } else {
                pool.begin().await
            }
            .map_err(storage(ctx))?;
            migrate_in_tx!(tx, &SQLITE)
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await.map_err(storage(ctx))?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(storage(ctx))?;
            migrate_in_tx!(tx, &POSTGRES)
        }
    }
}

enum VersionState {
    Fresh,
    /// Schema version 1 (search columns inside `audit_entries`).
    V1,
    Current,
}

fn check_version(found: Option<String>, create: bool) -> Result<VersionState, AuditError> {
    match found {
        None if create => Ok(VersionState::Fresh),
        None => Err(AuditError::NotFound(
            "the database holds no audit log".into(),
        )),
        Some(text) => {
            let found: i64 = text
                .parse()
                .map_err(|_| AuditError::Corrupt("schema_version is not a number".into()))?;
            if found > SCHEMA_VERSION {
                Err(AuditError::NewerSchema {
                    found,
                    supported: SCHEMA_VERSION,
                })
            } else if found == 1 {
                Ok(VersionState::V1)
            } else if found < SCHEMA_VERSION {
                Err(AuditError::Corrupt(format!(
                    "unknown old schema version {found}"
                )))
            } else {
                Ok(VersionState::Current)
            }
        }
    }
}
