use std::fmt;

use crate::error::Result;
use crate::keys::DataKey;

/// Where key-encryption keys (KEKs) live and how data keys are wrapped under them.
///
/// A provider manages a *key ring*: a family of KEK versions identified by [`KeyProvider::key_id`].
/// The key ring's bookkeeping (which version is active, which are retired) is kept by the caller
/// in [`crate::KeyVersionRecord`]s; the provider only creates, uses and destroys the versions.
/// Each version has opaque `material` that the caller persists next to the bookkeeping:
///
/// * software providers (environment, key file): the version's KEK sealed under the root key,
///   so the database holds only ciphertext and retiring a version destroys it for good;
/// * PKCS#11: the label of a non-extractable AES key object on the token;
/// * a future Vault Transit or cloud-KMS provider: the transit key name or KMS key ARN, with
///   `create_version` calling the service's rotate, `wrap_data_key`/`unwrap_data_key` its
///   encrypt/decrypt with `aad` as associated data (Transit "context", KMS "encryption context"),
///   and `destroy_version` raising the minimum decryption version / scheduling deletion.
///
/// Rules every implementation must follow:
/// * the KEK never leaves the provider's boundary in clear (outside this process for HSMs and
///   services);
/// * `wrap_data_key` must authenticate `aad`, and `unwrap_data_key` must fail with
///   [`crate::SealError::AuthenticationFailed`] on any mismatch; it must never return a key it
///   could not authenticate;
/// * no method logs, prints or returns key bytes in an error.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// A stable, non-secret identifier of the key ring (for example a fingerprint of the root
    /// key, or the token serial and label prefix). Stored in every sealed object so that opening
    /// with the wrong key ring gives a clear error instead of an authentication failure.
    fn key_id(&self) -> &str;

    /// A short name for status output ("env", "file", "pkcs11", ...).
    fn kind(&self) -> &'static str;

    /// Creates KEK version `version` and returns the material to persist for it.
    fn create_version(&self, version: u32) -> Result<Vec<u8>>;

    /// Wraps (encrypts and authenticates) a data key under KEK `version`.
    fn wrap_data_key(
        &self,
        version: u32,
        material: &[u8],
        data_key: &DataKey,
        aad: &[u8],
    ) -> Result<Vec<u8>>;

    /// Unwraps a data key wrapped by [`KeyProvider::wrap_data_key`].
    fn unwrap_data_key(
        &self,
        version: u32,
        material: &[u8],
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<DataKey>;

    /// Destroys KEK `version` irrevocably (after this, nothing wrapped under it opens).
    fn destroy_version(&self, version: u32, material: &[u8]) -> Result<()>;
}
