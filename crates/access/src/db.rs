//! Storage: SQLite (embedded default) or PostgreSQL (shared by several gateway instances), the
//! versioned schema, the access key ring's KEK version records, and sealed server secrets.
//!
//! Tables (all prefixed `access_`, same shape on both backends):
//! * `access_schema(id = 1, version)`: a database written by a newer build is refused.
//! * `access_kek(version, key_id, state, material)`: this crate's KEK versions (see
//!   [`sealed::Keyring`]); only wrapped key material, never a key in clear.
//! * `access_secrets(name, sealed)`: server secrets (API-key HMAC key, patient index key),
//!   each sealed under the key ring and bound to its name.
//! * `access_api_keys`, `access_jwt_keys`, `access_revoked_jti`, `access_admins`,
//!   `access_bootstrap`, `access_grants`, `access_policies`: see the modules that own them.
//!
//! * `access_generation(id = 1, value)`: incremented by every change that the caches depend on
//!   (see [`crate::cache`]); on SQLite the file `<database>-gen` plays the same part.
//!
//! The hot path (tokens, API keys, grants, policy version) is cached in memory, but every
//! cached read first checks the generation, so a change made by one instance is in force on
//! every instance at once (see [`crate::cache`]). Lockouts and admin data are read at use time.

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sealed::{KeyProvider, KeyState, KeyVersionRecord, Keyring, ObjectContext};
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use zeroize::Zeroizing;

use crate::error::{AccessError, Result, db};

/// Schema version this build writes. A database with a higher version is refused.
pub const SCHEMA_VERSION: i64 = 2;

/// Where the access tables live.
#[derive(Clone)]
pub enum Backend {
    /// An SQLite file (created 0600, WAL, `synchronous=FULL`); by convention
    /// `<data dir>/access.db`.
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
    /// PostgreSQL, shared by several gateway instances.
    Postgres {
        /// `postgres://` URL (may contain a password).
        url: SecretString,
        /// Schema to use (created if missing); `None` uses the server's search path.
        schema: Option<String>,
    },
}

impl std::fmt::Debug for Backend {
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

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool is configured: SQL is written once with `$n`
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

const MIGRATION_V1: &str = "
CREATE TABLE IF NOT EXISTS access_kek (
    version BIGINT PRIMARY KEY,
    key_id TEXT NOT NULL,
    state TEXT NOT NULL,
    material {blob} NOT NULL
);
CREATE TABLE IF NOT EXISTS access_secrets (
    name TEXT PRIMARY KEY,
    sealed {blob} NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS access_api_keys (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    roles TEXT NOT NULL,
    mac {blob} NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    last_used_at BIGINT,
    replaced_by TEXT
);
CREATE INDEX IF NOT EXISTS access_api_keys_service ON access_api_keys (service);
CREATE TABLE IF NOT EXISTS access_jwt_keys (
    kid TEXT PRIMARY KEY,
    public_key {blob} NOT NULL,
    sealed_private {blob},
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
CREATE UNIQUE INDEX IF NOT EXISTS access_jwt_keys_one_active ON access_jwt_keys (state) WHERE state = 'active';
CREATE TABLE IF NOT EXISTS access_revoked_jti (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS access_admins (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    totp_sealed {blob} NOT NULL,
    totp_algorithm TEXT NOT NULL,
    failed_count BIGINT NOT NULL,
    locked_until BIGINT,
    last_totp_step BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS access_bootstrap (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    mac {blob} NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE TABLE IF NOT EXISTS access_grants (
    id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    patient_mac {blob} NOT NULL,
    kind TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    reason_sealed {blob},
    audit_patient TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX IF NOT EXISTS access_grants_lookup ON access_grants (principal, patient_mac);
CREATE INDEX IF NOT EXISTS access_grants_kind ON access_grants (kind, created_at);
CREATE TABLE IF NOT EXISTS access_policies (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    text TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
";

/// Version 2: admins can be disabled (`disabled_at`); a disabled admin cannot sign in or pass
/// the TOTP step-up, so every admin token of theirs stops working on admin routes at once.
const MIGRATION_V2: &str = "
ALTER TABLE access_admins ADD COLUMN disabled_at BIGINT;
";

const MIGRATIONS: &[(i64, &str)] = &[(1, MIGRATION_V1), (2, MIGRATION_V2)];

/// Advisory lock key serializing schema creation among starting instances.
const MIGRATION_LOCK: i64 = 0x7068_6761_6363_6573;

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

impl Pool {
    pub(crate) async fn connect(backend: &Backend) -> Result<Self> {
        let pool = match backend {
            Backend::Sqlite { path } => {
                ensure_private_file(path)?;
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(false)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(30))
                    .pragma("secure_delete", "ON")
                    .foreign_keys(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    // A local file has no connection to lose: the pool's default ping before every
                    // acquire would only add a round trip to the connection's worker thread per query.
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .map_err(db("opening the SQLite access database"))?;
                Self::Sqlite(pool)
            }
            Backend::Postgres { url, schema } => {
                let mut opts = PgConnectOptions::from_str(url.expose_secret())
                    .map_err(|_| AccessError::Config("the PostgreSQL URL is not valid".into()))?;
                if let Some(schema) = schema {
                    if !valid_schema_name(schema) {
                        return Err(AccessError::Config(
                            "schema name must be lower-case letters, digits and '_'".into(),
                        ));
                    }
                    let admin = PgPoolOptions::new()
                        .max_connections(1)
                        .connect_with(opts.clone())
                        .await
                        .map_err(db("connecting to PostgreSQL"))?;
                    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                        .execute(&admin)
                        .await
                        .map_err(db("creating the access schema"))?;
                    admin.close().await;
                    opts = opts.options([("search_path", schema.as_str())]);
                }
                let pool = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .map_err(db("connecting to PostgreSQL"))?;
                Self::Postgres(pool)
            }
        };
        pool.migrate().await?;
        Ok(pool)
    }

    async fn migrate(&self) -> Result<()> {
        let ctx = "migrating the access schema";
        let blob = match self {
            Self::Sqlite(_) => "BLOB",
            Self::Postgres(_) => "BYTEA",
        };
        with_pool!(self, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            if matches!(self, Self::Postgres(_)) {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(db(ctx))?;
            }
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS access_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL)",
            )
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            let current: Option<i64> =
                sqlx::query_scalar("SELECT version FROM access_schema WHERE id = 1")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db(ctx))?;
            let current = current.unwrap_or(0);
            if current > SCHEMA_VERSION {
                return Err(AccessError::NewerSchema {
                    found: current,
                    supported: SCHEMA_VERSION,
                });
            }
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                sqlx::raw_sql(&sql.replace("{blob}", blob))
                    .execute(&mut *tx)
                    .await
                    .map_err(db(ctx))?;
                sqlx::query(
                    "INSERT INTO access_schema (id, version) VALUES (1, $1)
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                )
                .bind(*version)
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            }
            // The cache generation (see `crate::cache`): created outside the versioned
            // migrations because it holds no data a newer or older build could misread.
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS access_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
                 INSERT INTO access_generation (id, value) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
            )
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            tx.commit().await.map_err(db(ctx))?;
            Ok(())
        })
    }

    /// Loads this crate's key ring for `provider`, creating KEK version 1 on first use.
    pub(crate) async fn keyring(&self, provider: Arc<dyn KeyProvider>) -> Result<Keyring> {
        let rows = self.kek_rows().await?;
        if rows.is_empty() {
            let fresh = Keyring::new(provider.clone(), Vec::new())?;
            let record = fresh.initialize()?;
            let ctx = "creating the access key ring";
            with_pool!(self, p => {
                sqlx::query(
                    "INSERT INTO access_kek (version, key_id, state, material) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (version) DO NOTHING",
                )
                .bind(i64::from(record.version))
                .bind(provider.key_id())
                .bind(record.state.as_str())
                .bind(&record.material)
                .execute(p)
                .await
                .map_err(db(ctx))?;
            });
        }
        // Re-read: another instance may have won the race to create version 1.
        let rows = self.kek_rows().await?;
        let mut records = Vec::with_capacity(rows.len());
        for (version, key_id, state, material) in rows {
            if key_id != provider.key_id() {
                return Err(AccessError::Config(format!(
                    "the access database is sealed under key ring {key_id}, but {} is configured",
                    provider.key_id()
                )));
            }
            records.push(KeyVersionRecord {
                version: u32::try_from(version)
                    .map_err(|_| AccessError::Corrupt("KEK version out of range"))?,
                state: KeyState::parse(&state)?,
                material,
            });
        }
        Ok(Keyring::new(provider, records)?)
    }

    async fn kek_rows(&self) -> Result<Vec<(i64, String, String, Vec<u8>)>> {
        Ok(with_pool!(self, p => {
            sqlx::query_as::<_, (i64, String, String, Vec<u8>)>(
                "SELECT version, key_id, state, material FROM access_kek ORDER BY version",
            )
            .fetch_all(p)
            .await
            .map_err(db("reading the access key ring"))?
        }))
    }

    /// A 32-byte server secret named `name`, created (random) on first use and sealed under
    /// the key ring. Concurrent first uses on several instances agree on one value.
    pub(crate) async fn server_secret(
        &self,
        keyring: &Keyring,
        name: &str,
        now: i64,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let ctx_obj = ObjectContext::new("access.server-secret", name.as_bytes());
        let ctx = "reading a server secret";
        let existing: Option<Vec<u8>> = with_pool!(self, p => {
            sqlx::query_scalar("SELECT sealed FROM access_secrets WHERE name = $1")
                .bind(name)
                .fetch_optional(p)
                .await
                .map_err(db(ctx))?
        });
        if existing.is_none() {
            let mut secret = Zeroizing::new(vec![0u8; 32]);
            aws_lc_rs::rand::fill(secret.as_mut_slice())
                .map_err(|_| AccessError::Crypto("random generator"))?;
            let sealed = keyring.seal(&ctx_obj, &secret)?;
            with_pool!(self, p => {
                sqlx::query(
                    "INSERT INTO access_secrets (name, sealed, created_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(&sealed)
                .bind(now)
                .execute(p)
                .await
                .map_err(db("creating a server secret"))?;
            });
        }
        let sealed: Vec<u8> = with_pool!(self, p => {
            sqlx::query_scalar("SELECT sealed FROM access_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(p)
                .await
                .map_err(db(ctx))?
        });
        let secret = keyring.open(&ctx_obj, &sealed)?;
        if secret.len() != 32 {
            return Err(AccessError::Corrupt("a server secret has the wrong length"));
        }
        // `Plaintext` wipes itself on drop; the copy handed out is wiped by `Zeroizing`.
        Ok(Zeroizing::new(secret.to_vec()))
    }
}

/// Creates the file with mode 0600 if missing, and refuses an existing one that group or
/// others can access.
fn ensure_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io =
        |e: std::io::Error| AccessError::Config(format!("cannot open {}: {e}", path.display()));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AccessError::Config(format!(
            "{} has permissions {mode:03o}; it must not be accessible by group or others (chmod 600)",
            path.display()
        )));
    }
    Ok(())
}

/// Time source in seconds since the Unix epoch. Injectable so tests move time without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in whole seconds since the Unix epoch.
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: i64) -> Self {
        Self(std::sync::atomic::AtomicI64::new(now))
    }
    /// Moves the clock by `seconds` (may be negative).
    pub fn advance(&self, seconds: i64) {
        self.0
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
    /// Sets the clock.
    pub fn set(&self, now: i64) {
        self.0.store(now, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
