use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use aws_lc_rs::hmac;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::{Result, SealError};
use crate::keys::{DataKey, KEY_LEN};
use crate::provider::KeyProvider;

/// A version's sealed material and the key it unseals to.
type UnsealedVersion = (Vec<u8>, Arc<DataKey>);

/// A key provider whose root key is held in process memory: given as base64 in configuration
/// (`PHIGATE_KEK`) or read from a key file (`PHIGATE_KEK_FILE`).
///
/// The root key never wraps data keys itself. Each KEK version is a random 256-bit key sealed
/// under the root key (AES-256-GCM, associated data binding key id and version); its ciphertext
/// is the version's material. Retiring a version deletes that ciphertext, which destroys the
/// version even though the root key lives on.
pub struct SoftwareKeyProvider {
    root: DataKey,
    key_id: String,
    kind: &'static str,
    // Unsealed version keys, so each seal does not pay for unsealing the KEK again. Holding
    // them is no more exposure than holding the root key that unseals them.
    unsealed: Mutex<HashMap<u32, UnsealedVersion>>,
}

impl SoftwareKeyProvider {
    /// Builds a provider from a base64-encoded 32-byte root key (standard alphabet, padding
    /// optional, surrounding whitespace ignored).
    pub fn from_base64(encoded: &SecretString) -> Result<Self> {
        let root = decode_base64_key(encoded.expose_secret())?;
        Self::from_root(root, "env")
    }

    /// Reads the root key from `path`: either exactly 32 raw bytes or the base64 of 32 bytes.
    ///
    /// Refused when the file is not a regular file or when its mode lets group or others read
    /// or write it: a key file is a password to every record.
    pub fn from_key_file(path: &Path) -> Result<Self> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| SealError::KeyFile {
            path: shown.clone(),
            reason: format!("cannot read it: {}", io_reason(&e)),
        })?;
        if !meta.is_file() {
            return Err(SealError::KeyFile {
                path: shown,
                reason: "is not a regular file".into(),
            });
        }
        check_private_mode(&meta, &shown)?;
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| SealError::KeyFile {
            path: shown.clone(),
            reason: format!("cannot read it: {}", io_reason(&e)),
        })?);
        let root = if bytes.len() == KEY_LEN {
            DataKey::from_slice(&bytes)?
        } else {
            let text = std::str::from_utf8(&bytes).map_err(|_| SealError::KeyFile {
                path: shown.clone(),
                reason: format!("must hold {KEY_LEN} raw bytes or their base64"),
            })?;
            decode_base64_key(text).map_err(|e| SealError::KeyFile {
                path: shown.clone(),
                reason: e.to_string(),
            })?
        };
        Self::from_root(root, "file")
    }

    /// Builds a provider from root key bytes.
    pub fn from_root(root: DataKey, kind: &'static str) -> Result<Self> {
        if root.expose().iter().all(|b| *b == 0) {
            return Err(SealError::InvalidKey("the key is all zero bytes".into()));
        }
        // The id is a keyed fingerprint: it identifies the root key without revealing anything
        // usable about it, so it may appear in sealed headers and error messages.
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, root.expose());
        let tag = hmac::sign(&mac_key, b"phigate/sealed/key-id/v1");
        let key_id = format!("sw:{}", hex::encode(&tag.as_ref()[..8]));
        Ok(Self {
            root,
            key_id,
            kind,
            unsealed: Mutex::new(HashMap::new()),
        })
    }

    fn version_aad(&self, version: u32) -> Vec<u8> {
        let mut aad = b"phigate/sealed/kek-version/v1".to_vec();
        crate::format::push_field(&mut aad, self.key_id.as_bytes());
        aad.extend_from_slice(&version.to_be_bytes());
        aad
    }

    fn version_key(&self, version: u32, material: &[u8]) -> Result<Arc<DataKey>> {
        let mut cache = self
            .unsealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((cached_material, key)) = cache.get(&version)
            && cached_material.as_slice() == material
        {
            return Ok(key.clone());
        }
        let plain = self.root.decrypt(&self.version_aad(version), material)?;
        let key = Arc::new(DataKey::from_plaintext(plain)?);
        cache.insert(version, (material.to_vec(), key.clone()));
        Ok(key)
    }
}

impl fmt::Debug for SoftwareKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKeyProvider")
            .field("key_id", &self.key_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl KeyProvider for SoftwareKeyProvider {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn create_version(&self, version: u32) -> Result<Vec<u8>> {
        let kek = DataKey::generate()?;
        self.root.encrypt(&self.version_aad(version), kek.expose())
    }

    fn wrap_data_key(
        &self,
        version: u32,
        material: &[u8],
        data_key: &DataKey,
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        self.version_key(version, material)?
            .encrypt(aad, data_key.expose())
    }

    fn unwrap_data_key(
        &self,
        version: u32,
        material: &[u8],
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<DataKey> {
        let plain = self.version_key(version, material)?.decrypt(aad, wrapped)?;
        DataKey::from_plaintext(plain)
    }

    fn destroy_version(&self, version: u32, _material: &[u8]) -> Result<()> {
        // The material is the only persistent copy of the version key; the caller deletes it,
        // and the unsealed copy goes here.
        self.unsealed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&version);
        Ok(())
    }
}

fn decode_base64_key(text: &str) -> Result<DataKey> {
    let trimmed = text.trim();
    let engine = if trimmed.ends_with('=') {
        base64::engine::general_purpose::STANDARD
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD
    };
    let bytes = Zeroizing::new(engine.decode(trimmed).map_err(|_| {
        SealError::InvalidKey(format!(
            "not valid base64 (expected the base64 of {KEY_LEN} random bytes)"
        ))
    })?);
    if bytes.len() != KEY_LEN {
        return Err(SealError::InvalidKey(format!(
            "decodes to {} bytes; a KEK must be exactly {KEY_LEN} bytes (e.g. `openssl rand -base64 32`)",
            bytes.len()
        )));
    }
    DataKey::from_slice(&bytes)
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(unix)]
fn check_private_mode(meta: &std::fs::Metadata, shown: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SealError::KeyFile {
            path: shown.to_string(),
            reason: format!(
                "permissions {mode:03o} let group or others access the key; run `chmod 600 {shown}`"
            ),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_meta: &std::fs::Metadata, _shown: &str) -> Result<()> {
    Ok(())
}
