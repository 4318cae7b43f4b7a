//! The crate's error type. Messages name what is wrong, never a secret, a presented credential,
//! a patient id or a free-text reason.

use audit::AuthFailureReason;

/// Why a JWT was refused. Each case is distinct so that tests (and metrics) can tell them apart;
/// the server answers 401 for all of them with the same body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, bad JSON, or a required claim missing or mistyped.
    #[error("token is malformed")]
    Malformed,
    /// The header names an algorithm other than EdDSA (`none`, `HS256`, ...).
    #[error("token algorithm is not allowed (only EdDSA is accepted)")]
    AlgorithmNotAllowed,
    /// The header has no `kid`, or one this gateway never issued or has retired.
    #[error("token signing key is unknown")]
    UnknownKey,
    /// The signature does not verify (forged or tampered).
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` (or `iat`) is in the future (beyond the leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// `aud` does not name this gateway.
    #[error("token audience is wrong")]
    WrongAudience,
    /// `iss` is not this gateway.
    #[error("token issuer is wrong")]
    WrongIssuer,
    /// The token's lifetime exceeds what this gateway issues.
    #[error("token lifetime is too long")]
    LifetimeTooLong,
    /// The token's `jti` was revoked.
    #[error("token has been revoked")]
    Revoked,
}

impl TokenError {
    /// The audit reason code for this refusal.
    pub fn audit_reason(self) -> AuthFailureReason {
        match self {
            Self::Malformed | Self::AlgorithmNotAllowed | Self::LifetimeTooLong => {
                AuthFailureReason::Malformed
            }
            Self::UnknownKey | Self::BadSignature | Self::WrongAudience | Self::WrongIssuer => {
                AuthFailureReason::BadCredential
            }
            Self::Expired => AuthFailureReason::Expired,
            Self::NotYetValid => AuthFailureReason::NotYetValid,
            Self::Revoked => AuthFailureReason::Revoked,
        }
    }
}

/// Why an API key, a password or a TOTP code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The value does not have the shape of the credential (e.g. no `phg_` prefix).
    #[error("credential is malformed")]
    Malformed,
    /// No such key or user, or the secret does not match (one error, so no oracle).
    #[error("credential is not valid")]
    Invalid,
    /// The API key has expired (including the end of a rotation overlap).
    #[error("credential has expired")]
    Expired,
    /// The API key was revoked.
    #[error("credential has been revoked")]
    Revoked,
    /// The TOTP code is wrong or outside the ±1 step window.
    #[error("one-time code is not valid")]
    BadTotp,
    /// The TOTP code was already used.
    #[error("one-time code was already used")]
    TotpReplay,
    /// Too many failures: the account is locked until the lockout ends.
    #[error("account is temporarily locked after repeated failures")]
    Locked,
}

impl CredentialError {
    /// The audit reason code for this refusal.
    pub fn audit_reason(self) -> AuthFailureReason {
        match self {
            Self::Malformed => AuthFailureReason::Malformed,
            Self::Invalid => AuthFailureReason::BadCredential,
            Self::Expired => AuthFailureReason::Expired,
            Self::Revoked => AuthFailureReason::Revoked,
            Self::BadTotp => AuthFailureReason::MfaFailed,
            Self::TotpReplay => AuthFailureReason::Replay,
            Self::Locked => AuthFailureReason::RateLimited,
        }
    }
}

/// Errors from the access crate. The server maps them to HTTP statuses as documented on each
/// variant.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A JWT was refused (401).
    #[error(transparent)]
    Token(#[from] TokenError),
    /// An API key, password or TOTP code was refused (401; `Locked` may be 429).
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// A PHI request carries no purpose of use (400).
    #[error("a purpose of use is required for access to patient data (X-Purpose-Of-Use)")]
    MissingPurpose,
    /// A PHI request or break-glass carries no reason (400).
    #[error("a reason is required for access to patient data (X-Access-Reason)")]
    MissingReason,
    /// A purpose-of-use code is not an HL7 PurposeOfUse code (400).
    #[error("unknown purpose of use; use an HL7 PurposeOfUse code such as TREAT or ETREAT")]
    UnknownPurpose,
    /// Bad input that is not a credential (400): names what is wrong, never echoes values.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A policy set failed to parse or validate against the schema (400/422); the old policy
    /// set stays in force. The message is the Cedar parser's or validator's.
    #[error("policy set refused: {0}")]
    InvalidPolicy(String),
    /// The thing does not exist (404).
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The operation conflicts with the current state (409).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The audit log could not record the event; the operation was not performed (503).
    #[error("the audit log is unavailable; the operation was refused")]
    AuditUnavailable(#[source] audit::AuditError),
    /// The database failed (500/503). The detail is sanitized (no row values).
    #[error("access database error while {context}: {detail}")]
    Database {
        /// What was being done.
        context: &'static str,
        /// Sanitized detail.
        detail: String,
    },
    /// The database was written by a newer phigate (configuration error).
    #[error(
        "access database has schema version {found}, newer than the {supported} this build supports; upgrade phigate (the database was not modified)"
    )]
    NewerSchema {
        /// Version found.
        found: i64,
        /// Version supported.
        supported: i64,
    },
    /// Configuration is invalid (exit code 2 in the binary).
    #[error("invalid access configuration: {0}")]
    Config(String),
    /// Sealing or opening a stored secret failed.
    #[error("sealing error: {0}")]
    Seal(#[from] sealed::SealError),
    /// Stored data is inconsistent.
    #[error("access data is corrupt: {0}")]
    Corrupt(&'static str),
    /// A cryptographic primitive failed (random generator, key generation).
    #[error("cryptographic failure: {0}")]
    Crypto(&'static str),
}

/// Result alias.
pub type Result<T, E = AccessError> = std::result::Result<T, E>;

/// Sanitizes a sqlx error: database messages and error kinds only, never row values.
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

/// Maps a sqlx error to [`AccessError::Database`] with `context`.
pub(crate) fn db(context: &'static str) -> impl Fn(sqlx::Error) -> AccessError {
    move |e| AccessError::Database {
        context,
        detail: sanitize(&e),
    }
}
