use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use crate::error::{Result, SealError};
use crate::format::{self, Envelope, ObjectContext};
use crate::keys::{DataKey, sealed_len};
use crate::plaintext::Plaintext;
use crate::provider::KeyProvider;

/// Lifecycle of a KEK version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Wraps new data keys. Exactly one version is active in an initialised key ring.
    Active,
    /// Still unwraps existing data keys; no longer wraps new ones.
    DecryptOnly,
    /// Destroyed; nothing wrapped under it opens.
    Retired,
}

impl KeyState {
    /// The name stored in databases and printed by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::DecryptOnly => "decrypt-only",
            Self::Retired => "retired",
        }
    }

    /// Parses [`KeyState::as_str`] output.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "active" => Ok(Self::Active),
            "decrypt-only" => Ok(Self::DecryptOnly),
            "retired" => Ok(Self::Retired),
            _ => Err(SealError::InconsistentKeyring("unknown key state")),
        }
    }
}

/// Bookkeeping for one KEK version; the caller persists these.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyVersionRecord {
    /// Version number, starting at 1.
    pub version: u32,
    /// Lifecycle state.
    pub state: KeyState,
    /// Provider-specific material (see [`KeyProvider`]); empty once retired.
    pub material: Vec<u8>,
}

impl fmt::Debug for KeyVersionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyVersionRecord")
            .field("version", &self.version)
            .field("state", &self.state)
            .field("material_len", &self.material.len())
            .finish()
    }
}

/// A key ring: a provider plus its KEK versions. Seals and opens objects.
#[derive(Clone)]
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    versions: Arc<RwLock<BTreeMap<u32, KeyVersionRecord>>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// A key ring over `provider` with previously persisted `records` (empty for a new ring).
    pub fn new(provider: Arc<dyn KeyProvider>, records: Vec<KeyVersionRecord>) -> Result<Self> {
        let mut versions = BTreeMap::new();
        let mut active = 0;
        for record in records {
            if record.version == 0 {
                return Err(SealError::InconsistentKeyring("version 0 is not valid"));
            }
            if record.state == KeyState::Active {
                active += 1;
            }
            if versions.insert(record.version, record).is_some() {
                return Err(SealError::InconsistentKeyring("duplicate version"));
            }
        }
        if !versions.is_empty() && active != 1 {
            return Err(SealError::InconsistentKeyring(
                "exactly one version must be active",
            ));
        }
        Ok(Self {
            provider,
            versions: Arc::new(RwLock::new(versions)),
        })
    }

    /// The key ring id of the provider.
    pub fn key_id(&self) -> &str {
        self.provider.key_id()
    }

    /// The provider's kind ("env", "file", "pkcs11").
    pub fn provider_kind(&self) -> &'static str {
        self.provider.kind()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, KeyVersionRecord>> {
        self.versions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u32, KeyVersionRecord>> {
        self.versions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// All version records, oldest first.
    pub fn records(&self) -> Vec<KeyVersionRecord> {
        self.read().values().cloned().collect()
    }

    /// The active version.
    pub fn active_version(&self) -> Result<u32> {
        self.read()
            .values()
            .find(|r| r.state == KeyState::Active)
            .map(|r| r.version)
            .ok_or(SealError::NotInitialized)
    }

    /// Creates version 1. Refused if any version exists.
    pub fn initialize(&self) -> Result<KeyVersionRecord> {
        let mut versions = self.write();
        if let Some(active) = versions.values().find(|r| r.state == KeyState::Active) {
            return Err(SealError::AlreadyInitialized(active.version));
        }
        if !versions.is_empty() {
            return Err(SealError::InconsistentKeyring(
                "versions exist but none is active",
            ));
        }
        let material = self.provider.create_version(1)?;
        let record = KeyVersionRecord {
            version: 1,
            state: KeyState::Active,
            material,
        };
        versions.insert(1, record.clone());
        Ok(record)
    }

    /// Creates the next version and makes it active; the previous active version becomes
    /// decrypt-only. Returns the records that changed (the old active one, then the new one).
    pub fn rotate(&self) -> Result<Vec<KeyVersionRecord>> {
        let mut versions = self.write();
        let old = versions
            .values()
            .find(|r| r.state == KeyState::Active)
            .map(|r| r.version)
            .ok_or(SealError::NotInitialized)?;
        let next = versions
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or(SealError::Crypto("version overflow"))?;
        let material = self.provider.create_version(next)?;
        let new_record = KeyVersionRecord {
            version: next,
            state: KeyState::Active,
            material,
        };
        let mut changed = Vec::with_capacity(2);
        if let Some(old_record) = versions.get_mut(&old) {
            old_record.state = KeyState::DecryptOnly;
            changed.push(old_record.clone());
        }
        versions.insert(next, new_record.clone());
        changed.push(new_record);
        Ok(changed)
    }

    /// Destroys `version`. Refused for the active version and for a version that still wraps
    /// `wrapped_in_use` data keys (the caller counts them in its storage).
    pub fn retire(&self, version: u32, wrapped_in_use: u64) -> Result<KeyVersionRecord> {
        let mut versions = self.write();
        let record = versions
            .get_mut(&version)
            .ok_or(SealError::UnknownVersion(version))?;
        match record.state {
            KeyState::Active => return Err(SealError::RetireActive(version)),
            KeyState::Retired => return Err(SealError::RetiredVersion(version)),
            KeyState::DecryptOnly => {}
        }
        if wrapped_in_use > 0 {
            return Err(SealError::VersionInUse {
                version,
                count: wrapped_in_use,
            });
        }
        self.provider.destroy_version(version, &record.material)?;
        record.state = KeyState::Retired;
        record.material = Vec::new();
        Ok(record.clone())
    }

    fn usable_material(&self, version: u32) -> Result<Vec<u8>> {
        let versions = self.read();
        let record = versions
            .get(&version)
            .ok_or(SealError::UnknownVersion(version))?;
        if record.state == KeyState::Retired {
            return Err(SealError::RetiredVersion(version));
        }
        Ok(record.material.clone())
    }

    /// Seals `plaintext` for `ctx` with a fresh data key wrapped under the active KEK.
    pub fn seal(&self, ctx: &ObjectContext<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        let version = self.active_version()?;
        let material = self.usable_material(version)?;
        let key_id = self.provider.key_id();
        let data_key = DataKey::generate()?;
        let wrapped = self.provider.wrap_data_key(
            version,
            &material,
            &data_key,
            &ctx.wrap_aad(key_id, version),
        )?;
        let mut out =
            format::encode_header(key_id, version, &wrapped, sealed_len(plaintext.len()))?;
        data_key.encrypt_append(&ctx.payload_aad(key_id), plaintext, &mut out)?;
        Ok(out)
    }

    fn unwrap_for(&self, ctx: &ObjectContext<'_>, envelope: &Envelope<'_>) -> Result<DataKey> {
        let key_id = self.provider.key_id();
        if envelope.key_id != key_id {
            return Err(SealError::WrongKey {
                configured: key_id.to_string(),
                found: envelope.key_id.to_string(),
            });
        }
        let material = self.usable_material(envelope.kek_version)?;
        self.provider.unwrap_data_key(
            envelope.kek_version,
            &material,
            envelope.wrapped_key,
            &ctx.wrap_aad(key_id, envelope.kek_version),
        )
    }

    /// Opens an object sealed by [`Keyring::seal`] for the same `ctx`.
    pub fn open(&self, ctx: &ObjectContext<'_>, sealed: &[u8]) -> Result<Plaintext> {
        let envelope = Envelope::parse(sealed)?;
        let data_key = self.unwrap_for(ctx, &envelope)?;
        data_key.decrypt(&ctx.payload_aad(self.provider.key_id()), envelope.payload)
    }

    /// Re-wraps the object's data key under the active KEK without touching the payload.
    /// Returns `None` when it is already wrapped under the active version.
    pub fn rewrap(&self, ctx: &ObjectContext<'_>, sealed: &[u8]) -> Result<Option<Vec<u8>>> {
        let envelope = Envelope::parse(sealed)?;
        let active = self.active_version()?;
        if envelope.kek_version == active && envelope.key_id == self.provider.key_id() {
            return Ok(None);
        }
        let data_key = self.unwrap_for(ctx, &envelope)?;
        let material = self.usable_material(active)?;
        let key_id = self.provider.key_id();
        let wrapped = self.provider.wrap_data_key(
            active,
            &material,
            &data_key,
            &ctx.wrap_aad(key_id, active),
        )?;
        Ok(Some(format::encode(
            key_id,
            active,
            &wrapped,
            envelope.payload,
        )?))
    }

    /// Seals a fresh data key (for a stream) and returns it with its envelope header bytes.
    pub(crate) fn new_stream_key(
        &self,
        ctx: &ObjectContext<'_>,
    ) -> Result<(DataKey, u32, Vec<u8>)> {
        let version = self.active_version()?;
        let material = self.usable_material(version)?;
        let data_key = DataKey::generate()?;
        let wrapped = self.provider.wrap_data_key(
            version,
            &material,
            &data_key,
            &ctx.wrap_aad(self.provider.key_id(), version),
        )?;
        Ok((data_key, version, wrapped))
    }

    pub(crate) fn open_stream_key(
        &self,
        ctx: &ObjectContext<'_>,
        key_id: &str,
        version: u32,
        wrapped: &[u8],
    ) -> Result<DataKey> {
        let envelope = Envelope {
            key_id,
            kek_version: version,
            wrapped_key: wrapped,
            payload: &[],
        };
        self.unwrap_for(ctx, &envelope)
    }
}
