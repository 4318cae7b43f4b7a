//! The two backends behind one type, and the embedded, versioned migrations.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{Result, StoreError};

/// Where the store lives.
pub enum BackendConfig {
    /// An SQLite file (created with mode 0600 if missing).
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
    /// A PostgreSQL database.
    Postgres {
        /// `postgres://` URL (may contain a password).
        url: SecretString,
        /// Schema to use instead of the default search path (tests use one schema each).
        schema: Option<String>,
    },
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Self::Postgres { schema, .. } => f
                .debug_struct("Postgres")
                .field("schema", schema)
                .finish_non_exhaustive(),
        }
    }
}

/// A connection pool to one of the backends.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool is configured: the SQL is written once with `$n`
/// placeholders, which both SQLite and PostgreSQL accept.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::db::Pool::Sqlite($p) => $body,
            $crate::db::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Schema version this build writes. A database with a higher version is refused.
pub const SCHEMA_VERSION: i64 = 1;

const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE IF NOT EXISTS keyring (
        key_id TEXT NOT NULL,
        version BIGINT NOT NULL,
        state TEXT NOT NULL,
        material {blob} NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (key_id, version)
    );
    CREATE TABLE IF NOT EXISTS store_meta (
        name TEXT PRIMARY KEY,
        kek_version BIGINT NOT NULL,
        sealed {blob} NOT NULL
    );
    CREATE TABLE IF NOT EXISTS records (
        kind TEXT NOT NULL,
        key_hmac {blob} NOT NULL,
        patient_hmac {blob},
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        expires_at BIGINT,
        kek_version BIGINT NOT NULL,
        sealed {blob} NOT NULL,
        PRIMARY KEY (kind, key_hmac)
    );
    CREATE INDEX IF NOT EXISTS records_patient ON records (patient_hmac);
    CREATE INDEX IF NOT EXISTS records_expires ON records (expires_at);
    CREATE INDEX IF NOT EXISTS records_kek ON records (kek_version);",
)];

impl Pool {
    pub(crate) async fn connect(config: &BackendConfig) -> Result<Self> {
        let pool = match config {
            BackendConfig::Sqlite { path } => Self::Sqlite(connect_sqlite(path).await?),
            BackendConfig::Postgres { url, schema } => {
                let mut options = PgConnectOptions::from_str(url.expose_secret())
                    .map_err(|_| StoreError::Database("invalid PostgreSQL URL".into()))?;
                if let Some(schema) = schema {
                    if !schema
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                        || schema.is_empty()
                    {
                        return Err(StoreError::InvalidArgument(
                            "schema names are limited to [A-Za-z0-9_]".into(),
                        ));
                    }
                    options = options.options([("search_path", schema.as_str())]);
                }
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?;
                Self::Postgres(pool)
            }
        };
        pool.migrate().await?;
        Ok(pool)
    }

    pub(crate) fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgresql",
        }
    }

    async fn migrate(&self) -> Result<()> {
        let blob = match self {
            Self::Sqlite(_) => "BLOB",
            Self::Postgres(_) => "BYTEA",
        };
        with_pool!(self, p => {
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS phigate_store_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL)",
            )
            .execute(p)
            .await?;
            let mut tx = p.begin().await?;
            if matches!(self, Self::Postgres(_)) {
                // Serialise concurrent first starts of several instances.
                sqlx::raw_sql("LOCK TABLE phigate_store_schema IN EXCLUSIVE MODE").execute(&mut *tx).await?;
            }
            let current: Option<i64> = sqlx::query_scalar("SELECT version FROM phigate_store_schema WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await?;
            let current = current.unwrap_or(0);
            if current > SCHEMA_VERSION {
                return Err(StoreError::NewerSchema { found: current, supported: SCHEMA_VERSION });
            }
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                sqlx::raw_sql(&sql.replace("{blob}", blob)).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO phigate_store_schema (id, version) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                )
                .bind(*version)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

async fn connect_sqlite(path: &Path) -> Result<SqlitePool> {
    ensure_private_file(path)?;
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        // Committed means durable: fsync the WAL on every commit.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30))
        // Deleted rows (and so destroyed wrapped data keys) are overwritten with zeros.
        .pragma("secure_delete", "ON")
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        // A local file has no connection to lose: the pool's default ping before every
        // acquire would only add a round trip to the connection's worker thread per query.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(db) => {
                StoreError::Database(format!("cannot open {}: {}", path.display(), db.message()))
            }
            other => other.into(),
        })?;
    Ok(pool)
}

/// Creates the file with mode 0600 if missing, and refuses an existing one that group or
/// others can access (the WAL and shared-memory files inherit the database file's mode).
fn ensure_private_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StoreError::InsecureFile {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
    }
    Ok(())
}
