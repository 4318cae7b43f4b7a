//! The crate's error type. Messages never contain entry contents, identifiers or key material.

use crate::keys::KeyError;

/// Errors from the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The event or entry cannot be logged as given (nothing was written).
    #[error("invalid audit entry: {0}")]
    InvalidEntry(&'static str),
    /// The log could not be written; the entry is NOT durable and the caller must treat the
    /// action it was auditing as failed.
    #[error("audit log write failed: {0}")]
    WriteFailed(String),
    /// A storage operation other than an append failed.
    #[error("audit storage error while {context}: {detail}")]
    Storage {
        /// What was being done.
        context: &'static str,
        /// Sanitized database error (no row values).
        detail: String,
    },
    /// The database was written by a newer phigate; it is left untouched.
    #[error(
        "audit database has schema version {found}, newer than the {supported} this build \
         supports; upgrade phigate (the database was not modified)"
    )]
    NewerSchema {
        /// Version found.
        found: i64,
        /// Version supported.
        supported: i64,
    },
    /// There is no audit log at the configured location.
    #[error("no audit log found: {0}")]
    NotFound(String),
    /// The writer task has stopped (the log was closed or its runtime shut down).
    #[error("audit log writer is not running")]
    WriterStopped,
    /// The log was opened for reading only.
    #[error("audit log is open read-only")]
    ReadOnly,
    /// An index or size outside the log.
    #[error("{0}")]
    OutOfRange(String),
    /// The stored log is internally inconsistent; run verification.
    #[error("audit log is damaged: {0}; run `phigate audit verify`")]
    Corrupt(String),
    /// Configuration is invalid.
    #[error("invalid audit log configuration: {0}")]
    Config(&'static str),
    /// Key handling failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Sanitizes a sqlx error: database messages (which carry no row values in SQLite or
/// PostgreSQL; PostgreSQL puts values in DETAIL, which is dropped) and error kinds only.
pub(crate) fn sanitize(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (code {code})", db.message()),
            None => db.message().to_string(),
        },
        sqlx::Error::Io(io) => format!("I/O error ({})", io.kind()),
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".into(),
        sqlx::Error::PoolClosed => "database pool closed".into(),
        sqlx::Error::RowNotFound => "row not found".into(),
        sqlx::Error::Tls(_) => "TLS error connecting to the database".into(),
        sqlx::Error::Configuration(_) => "invalid database configuration".into(),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            "stored value has an unexpected type".into()
        }
        _ => "database error".into(),
    }
}

pub(crate) fn storage(context: &'static str) -> impl Fn(sqlx::Error) -> AuditError {
    move |e| AuditError::Storage {
        context,
        detail: sanitize(&e),
    }
}
