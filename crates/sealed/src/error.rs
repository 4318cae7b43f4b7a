use thiserror::Error;

/// Everything that can go wrong while sealing, opening or managing keys.
///
/// Messages name the cause and never contain key bytes, plaintext or object ids (object ids may
/// be derived from PHI, so they stay out of errors too).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The sealed bytes do not follow the documented format (too short, bad magic, lengths out of range).
    #[error("sealed object is malformed: {0}")]
    Malformed(&'static str),
    /// The format version byte is not one this build understands.
    #[error("sealed object has unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Authentication failed: wrong key, or the ciphertext, nonce, tag, wrapped key or the bound
    /// context (key id, version, kind, object id) was changed.
    #[error(
        "authentication failed: the data was modified, belongs to another record, or the key is wrong"
    )]
    AuthenticationFailed,
    /// The object was sealed under a key ring other than the configured one.
    #[error("object was sealed with key {found:?} but the configured key is {configured:?}")]
    WrongKey { configured: String, found: String },
    /// The object's KEK version is unknown to the key ring.
    #[error("KEK version {0} is unknown to this key ring")]
    UnknownVersion(u32),
    /// The object's KEK version was retired and its key destroyed.
    #[error("KEK version {0} is retired; data wrapped under it cannot be opened")]
    RetiredVersion(u32),
    /// No KEK version exists yet (run `phigate keys init`).
    #[error("no KEK version exists yet; initialise the key ring first (phigate keys init)")]
    NotInitialized,
    /// The key ring already has versions.
    #[error("the key ring is already initialised (active KEK version {0})")]
    AlreadyInitialized(u32),
    /// Refused: the version is the active one.
    #[error("KEK version {0} is the active version; rotate to a new version before retiring it")]
    RetireActive(u32),
    /// Refused: the version still wraps data keys.
    #[error(
        "KEK version {version} still wraps {count} data key(s); run `phigate keys rewrap` first"
    )]
    VersionInUse { version: u32, count: u64 },
    /// The stored key ring state is inconsistent (for example two active versions).
    #[error("key ring state is inconsistent: {0}")]
    InconsistentKeyring(&'static str),
    /// A key given as configuration is unusable (bad base64, wrong length, all zero).
    #[error("invalid key material: {0}")]
    InvalidKey(String),
    /// A key file could not be used.
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    /// The PKCS#11 module or token failed.
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    /// The operating system's random generator or the AEAD primitive failed unexpectedly.
    #[error("cryptographic primitive failed: {0}")]
    Crypto(&'static str),
    /// Reading or writing a sealed stream failed.
    #[error("I/O error in sealed stream: {0}")]
    Io(#[from] std::io::Error),
    /// A sealed stream ended before its final chunk.
    #[error("sealed stream is truncated: the final chunk is missing")]
    Truncated,
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, SealError>;
