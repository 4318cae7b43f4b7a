use thiserror::Error;

/// Errors of the encrypted store. Messages never contain record ids, patient ids, values or
/// key bytes; database errors are reduced to their code and message.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(String),
    /// Sealing or opening failed (wrong key, modified data, retired key version, ...).
    #[error(transparent)]
    Seal(#[from] sealed::SealError),
    /// The database was written by a newer phigate.
    #[error(
        "the store schema is version {found}, newer than this build supports ({supported}); upgrade phigate"
    )]
    NewerSchema { found: i64, supported: i64 },
    /// The key ring has not been initialised for this store.
    #[error("the store has no encryption keys yet; run `phigate keys init` first")]
    NotInitialized,
    /// The store was initialised under a different key ring.
    #[error(
        "the store was initialised with key {store}, but the configured key is {configured}; configure the original key"
    )]
    KeyMismatch { store: String, configured: String },
    /// Stored data failed an integrity or format check.
    #[error("stored data is corrupt: {0}")]
    Corrupt(&'static str),
    /// A database file has unsafe permissions.
    #[error(
        "{path} has permissions {mode:03o}, readable by group or others; run `chmod 600 {path}`"
    )]
    InsecureFile { path: String, mode: u32 },
    /// A file could not be created or read.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Invalid argument (empty kind, oversized value, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // Database errors can carry row values in their detail; keep only code and message.
        match e {
            sqlx::Error::Database(db) => StoreError::Database(format!(
                "{} ({})",
                db.message(),
                db.code().as_deref().unwrap_or("no code")
            )),
            sqlx::Error::PoolTimedOut => {
                StoreError::Database("timed out waiting for a connection".into())
            }
            sqlx::Error::Io(io) => StoreError::Database(format!("connection failed: {io}")),
            sqlx::Error::Tls(_) => {
                StoreError::Database("TLS failure talking to the database".into())
            }
            sqlx::Error::Configuration(_) => {
                StoreError::Database("invalid database URL or options".into())
            }
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, StoreError>;
