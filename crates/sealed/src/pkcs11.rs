use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Result, SealError};
use crate::keys::{DataKey, KEY_LEN, TAG_LEN};
use crate::plaintext::Plaintext;
use crate::provider::KeyProvider;

const IV_LEN: usize = 12;

/// How to reach a PKCS#11 token.
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (for SoftHSM2: `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Slot id of the token.
    pub slot: u64,
    /// User PIN.
    pub pin: SecretString,
    /// Prefix of the KEK object labels; version `n` is `<prefix>-v<n>`.
    pub label_prefix: String,
}

impl fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("slot", &self.slot)
            .field("pin", &"[REDACTED]")
            .field("label_prefix", &self.label_prefix)
            .finish()
    }
}

/// KEKs held in a PKCS#11 token (an HSM, or SoftHSM2 for development and tests).
///
/// Each KEK version is an AES-256 secret key generated *on the token* with `CKA_SENSITIVE=true`
/// and `CKA_EXTRACTABLE=false`, so its value can never be read out. Data keys are wrapped with
/// `CKM_AES_GCM` inside the token (C_Encrypt/C_Decrypt with the wrap associated data as GCM AAD),
/// which authenticates the binding to key id, version, kind and object id exactly like the
/// software provider. A version's material is its object label.
pub struct Pkcs11KeyProvider {
    // Held so the module stays loaded while sessions exist.
    _context: Pkcs11,
    session: Mutex<Session>,
    handles: Mutex<HashMap<Vec<u8>, ObjectHandle>>,
    key_id: String,
    label_prefix: String,
}

impl fmt::Debug for Pkcs11KeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11KeyProvider")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn p11(context: &'static str) -> impl Fn(cryptoki::error::Error) -> SealError {
    // cryptoki errors carry return codes and function names, never key material.
    move |e| SealError::Pkcs11(format!("{context}: {e}"))
}

impl Pkcs11KeyProvider {
    /// Loads the module, opens a read-write session on the slot and logs in as user.
    pub fn open(config: &Pkcs11Config) -> Result<Self> {
        if config.label_prefix.is_empty() || config.label_prefix.len() > 200 {
            return Err(SealError::Pkcs11(
                "the key label prefix must be 1..=200 bytes".into(),
            ));
        }
        let context = load_module(&config.module)?;
        let slot = Slot::try_from(config.slot).map_err(p11("slot id"))?;
        let token = context.get_token_info(slot).map_err(|e| {
            SealError::Pkcs11(format!("slot {} has no usable token: {e}", config.slot))
        })?;
        let session = context
            .open_rw_session(slot)
            .map_err(p11("opening a session"))?;
        // cryptoki uses its own secrecy version; the PIN moves into its zeroizing wrapper.
        let pin = cryptoki::types::AuthPin::new(config.pin.expose_secret().to_string());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) => {}
            // Login state is per token and process: another provider in this process already
            // authenticated, so this session shares that login.
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::UserAlreadyLoggedIn,
                _,
            )) => {}
            Err(e) => return Err(p11("logging in (check the PIN)")(e)),
        }
        let key_id = format!(
            "p11:{}:{}",
            token.serial_number().trim(),
            config.label_prefix
        );
        if key_id.len() > 255 {
            return Err(SealError::Pkcs11(
                "token serial and label prefix are too long".into(),
            ));
        }
        Ok(Self {
            _context: context,
            session: Mutex::new(session),
            handles: Mutex::new(HashMap::new()),
            key_id,
            label_prefix: config.label_prefix.clone(),
        })
    }

    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn label(&self, version: u32) -> Vec<u8> {
        format!("{}-v{version}", self.label_prefix).into_bytes()
    }

    fn find(&self, session: &Session, label: &[u8]) -> Result<ObjectHandle> {
        let mut handles = self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(handle) = handles.get(label) {
            return Ok(*handle);
        }
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(label.to_vec()),
            ])
            .map_err(p11("finding the KEK"))?;
        match found.as_slice() {
            [handle] => {
                handles.insert(label.to_vec(), *handle);
                Ok(*handle)
            }
            [] => Err(SealError::Pkcs11(
                "the KEK object for this version is not on the token".into(),
            )),
            _ => Err(SealError::Pkcs11(
                "several KEK objects share this version's label".into(),
            )),
        }
    }

    /// Whether the KEK object of `version` is marked sensitive and non-extractable on the token.
    pub fn kek_is_non_extractable(&self, version: u32) -> Result<bool> {
        let session = self.session();
        let handle = self.find(&session, &self.label(version))?;
        let attrs = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Extractable,
                    AttributeType::Sensitive,
                    AttributeType::NeverExtractable,
                ],
            )
            .map_err(p11("reading KEK attributes"))?;
        let mut extractable = true;
        let mut sensitive = false;
        let mut never_extractable = false;
        for attr in attrs {
            match attr {
                Attribute::Extractable(v) => extractable = v,
                Attribute::Sensitive(v) => sensitive = v,
                Attribute::NeverExtractable(v) => never_extractable = v,
                _ => {}
            }
        }
        Ok(!extractable && sensitive && never_extractable)
    }

    /// Tries to read the KEK value from the token; returns `true` if the token refused.
    pub fn kek_value_is_unreadable(&self, version: u32) -> Result<bool> {
        let session = self.session();
        let handle = self.find(&session, &self.label(version))?;
        match session.get_attributes(handle, &[AttributeType::Value]) {
            Err(_) => Ok(true),
            // cryptoki drops attributes the token marks unavailable, so an empty answer is a refusal.
            Ok(attrs) => Ok(!attrs
                .iter()
                .any(|a| matches!(a, Attribute::Value(v) if !v.is_empty()))),
        }
    }
}

/// One initialised context per module, shared process-wide: PKCS#11 allows a single
/// C_Initialize per process, and dropping a second context would C_Finalize the first one's
/// library under it.
fn load_module(module: &Path) -> Result<Pkcs11> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    if !module.exists() {
        return Err(SealError::Pkcs11(format!(
            "module {} does not exist (for SoftHSM2 install the Debian package softhsm2)",
            module.display()
        )));
    }
    let key = module
        .canonicalize()
        .unwrap_or_else(|_| module.to_path_buf());
    let mut contexts = CONTEXTS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(context) = contexts.get(&key) {
        return Ok(context.clone());
    }
    let context = Pkcs11::new(module)
        .map_err(|e| SealError::Pkcs11(format!("cannot load module {}: {e}", module.display())))?;
    match context.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(cryptoki::error::Error::AlreadyInitialized) => {}
        Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::CryptokiAlreadyInitialized,
            _,
        )) => {}
        Err(e) => return Err(p11("initialising the module")(e)),
    }
    contexts.insert(key, context.clone());
    Ok(context)
}

impl KeyProvider for Pkcs11KeyProvider {
    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn create_version(&self, version: u32) -> Result<Vec<u8>> {
        let label = self.label(version);
        let session = self.session();
        let existing = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.clone()),
            ])
            .map_err(p11("checking for an existing KEK"))?;
        if !existing.is_empty() {
            return Err(SealError::Pkcs11(
                "a KEK object with this version's label already exists on the token".into(),
            ));
        }
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(KEY_LEN.try_into().map_err(p11("key length"))?),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Label(label.clone()),
            Attribute::Id(label.clone()),
        ];
        let handle = session
            .generate_key(&Mechanism::AesKeyGen, &template)
            .map_err(p11("generating the KEK on the token"))?;
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(label.clone(), handle);
        Ok(label)
    }

    fn wrap_data_key(
        &self,
        version: u32,
        material: &[u8],
        data_key: &DataKey,
        aad: &[u8],
    ) -> Result<Vec<u8>> {
        if material != self.label(version).as_slice() {
            return Err(SealError::InconsistentKeyring(
                "PKCS#11 material does not match the version label",
            ));
        }
        let session = self.session();
        let handle = self.find(&session, material)?;
        let mut iv = [0u8; IV_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| SealError::Crypto("random generator"))?;
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, aad, (TAG_LEN as u64 * 8).into())
            .map_err(p11("GCM parameters"))?;
        let sealed = session
            .encrypt(&Mechanism::AesGcm(params), handle, data_key.expose())
            .map_err(p11("wrapping a data key on the token"))?;
        let mut out = Vec::with_capacity(IV_LEN + sealed.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap_data_key(
        &self,
        version: u32,
        material: &[u8],
        wrapped: &[u8],
        aad: &[u8],
    ) -> Result<DataKey> {
        if material != self.label(version).as_slice() {
            return Err(SealError::InconsistentKeyring(
                "PKCS#11 material does not match the version label",
            ));
        }
        if wrapped.len() != IV_LEN + KEY_LEN + TAG_LEN {
            return Err(SealError::AuthenticationFailed);
        }
        let session = self.session();
        let handle = self.find(&session, material)?;
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&wrapped[..IV_LEN]);
        let params = GcmParams::new(&mut iv, aad, (TAG_LEN as u64 * 8).into())
            .map_err(p11("GCM parameters"))?;
        // Any failure here (bad tag, wrong AAD) is an authentication failure; the token's
        // detailed code adds nothing the caller can act on.
        let plain = session
            .decrypt(&Mechanism::AesGcm(params), handle, &wrapped[IV_LEN..])
            .map_err(|_| SealError::AuthenticationFailed)?;
        DataKey::from_plaintext(Plaintext::from_vec(plain))
    }

    fn destroy_version(&self, version: u32, material: &[u8]) -> Result<()> {
        if material != self.label(version).as_slice() {
            return Err(SealError::InconsistentKeyring(
                "PKCS#11 material does not match the version label",
            ));
        }
        let session = self.session();
        let handle = self.find(&session, material)?;
        session
            .destroy_object(handle)
            .map_err(p11("destroying the KEK object"))?;
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(material);
        Ok(())
    }
}
