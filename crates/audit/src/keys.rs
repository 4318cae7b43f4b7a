//! Key interfaces (signing checkpoints, keyed hashes of identifiers) and [`FileKeys`], their
//! implementation on the `sealed` key providers. Only [`NoteVerifier`] (the public key) is
//! needed to verify anything.
//!
//! # Key directory (`<data dir>/audit-keys/`, directory 0700, files 0600)
//!
//! * `audit-keyring`: the audit key ring's KEK version records (`sealed::KeyVersionRecord`):
//!   for the environment/file providers the version KEK sealed under the root KEK, for PKCS#11
//!   the label of the token object. No usable secret in clear.
//! * `audit-signing.sealed`: the Ed25519 checkpoint key's PKCS#8, sealed
//!   ([`sealed::SealedSigningKey`], kind `signing-key.ed25519`, id = the key name).
//! * `audit-hmac.sealed`: the HMAC keys for identifiers, one `<key id> <hex key>` per line
//!   (the last is current), sealed (kind `audit.hmac-keys`, id = the key name).
//! * `audit-public.vkey`: the C2SP verifier key, public, for `verify` and `verify-export`.
//!
//! The KEK itself comes from the same providers as every other secret in phigate
//! (`PHIGATE_KEK`, a key file, or a PKCS#11 token), so a copy of the key directory alone
//! signs nothing and hashes nothing. Keys written in clear by earlier versions
//! (`audit-signing.pk8`, `audit-hmac.keys`) are sealed on first open and the clear files
//! removed.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::signature;
use aws_lc_rs::{hmac, rand as lc_rand};
use base64::Engine as _;
use sealed::{KeyProvider, KeyState, KeyVersionRecord, Keyring, ObjectContext, SealedSigningKey};
use zeroize::Zeroizing;

use crate::event::KeyedHash;

/// Errors from key handling. Messages name files and problems, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file is readable or writable by group or others.
    #[error("key file {path} must not be accessible by group or others (chmod 600)")]
    InsecurePermissions {
        /// The offending file.
        path: PathBuf,
    },
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file exists but does not hold a valid key.
    #[error("key file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A public key (verifier) string is malformed.
    #[error("public key is malformed: {0}")]
    BadVerifierKey(&'static str),
    /// The signer failed.
    #[error("signing failed")]
    SigningFailed,
    /// The key directory was sealed under another key-encryption key than the configured one.
    #[error(
        "audit keys in {path} were sealed under key {found:?}, but the configured KEK is \
         {configured:?}; configure the KEK that created them"
    )]
    WrongKek {
        /// The key ring file.
        path: PathBuf,
        /// Key ring id in the file.
        found: String,
        /// Key ring id of the configured provider.
        configured: String,
    },
    /// Sealing or opening a key failed (wrong KEK, altered file, provider error).
    #[error("sealed audit key {path}: {source}")]
    Sealed {
        /// The file.
        path: PathBuf,
        /// The error (never key material).
        source: sealed::SealError,
    },
    /// A clear-text key file from an earlier version sits next to its sealed replacement.
    #[error(
        "clear-text key file {path} exists next to its sealed replacement; check the sealed \
         keys work, then delete it"
    )]
    ClearKeyLeftOver {
        /// The clear-text file.
        path: PathBuf,
    },
}

/// Signs checkpoint notes with Ed25519.
pub trait CheckpointSigner: Send + Sync + fmt::Debug {
    /// The public half, in C2SP note verifier form.
    fn note_verifier(&self) -> NoteVerifier;
    /// Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError>;
}

/// Produces keyed hashes (`hmac-sha256:<key id>:<hex>`) of identifiers.
pub trait PatientHasher: Send + Sync + fmt::Debug {
    /// Keyed hash under the current key.
    fn keyed_hash(&self, value: &[u8]) -> KeyedHash;
    /// Keyed hashes under every key still held (current and retired), for searching a log
    /// that spans rotations.
    fn keyed_hashes_all_keys(&self, value: &[u8]) -> Vec<KeyedHash>;
    /// Keyed hash of a patient identifier (or MRN) held in a PHI wrapper.
    fn patient_ref(&self, id: &phi::Sensitive<String>) -> KeyedHash {
        self.keyed_hash(id.expose().as_bytes())
    }
}

/// A C2SP signed-note verifier key for Ed25519: `<name>+<hex key id>+<base64(0x01 || key)>`.
#[derive(Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    public_key: [u8; 32],
}

/// The C2SP signature type byte for Ed25519.
const ALG_ED25519: u8 = 0x01;

impl NoteVerifier {
    /// Builds a verifier from a key name and a raw Ed25519 public key. The key id is the first
    /// four bytes of `SHA-256(name || "\n" || 0x01 || public key)`, as C2SP signed-note says.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, KeyError> {
        if !valid_key_name(name) {
            return Err(KeyError::BadVerifierKey(
                "key name must be non-empty printable text without spaces or '+'",
            ));
        }
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(name.as_bytes());
        ctx.update(b"\n");
        ctx.update(&[ALG_ED25519]);
        ctx.update(&public_key);
        let digest = ctx.finish();
        let mut key_id = [0u8; 4];
        key_id.copy_from_slice(&digest.as_ref()[..4]);
        Ok(Self {
            name: name.to_string(),
            key_id,
            public_key,
        })
    }

    /// Parses the `<name>+<hex key id>+<base64>` form, checking the key id.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::BadVerifierKey(
                "expected <name>+<key id>+<base64 key>",
            ));
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| KeyError::BadVerifierKey("key is not base64"))?;
        if key.len() != 33 || key[0] != ALG_ED25519 {
            return Err(KeyError::BadVerifierKey("not an Ed25519 note key"));
        }
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(&key[1..]);
        let verifier = Self::new(name, public_key)?;
        if id_hex.len() != 8 || !id_hex.eq_ignore_ascii_case(&hex::encode(verifier.key_id)) {
            return Err(KeyError::BadVerifierKey("key id does not match the key"));
        }
        Ok(verifier)
    }

    /// The key name (appears on signature lines).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// Verifies an Ed25519 signature.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.public_key)
            .verify(message, sig)
            .is_ok()
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut key = Vec::with_capacity(33);
        key.push(ALG_ED25519);
        key.extend_from_slice(&self.public_key);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoteVerifier({self})")
    }
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '+')
}

/// The audit key ring's KEK version records.
pub const KEYRING_FILE: &str = "audit-keyring";
/// The sealed Ed25519 checkpoint key.
pub const SIGNING_KEY_FILE: &str = "audit-signing.sealed";
/// The sealed HMAC keys, one `<key id> <hex key>` per line; the last line is the current key.
pub const HMAC_KEY_FILE: &str = "audit-hmac.sealed";
/// The public verifier key, safe to publish.
pub const PUBLIC_KEY_FILE: &str = "audit-public.vkey";
/// The clear-text signing key file of earlier versions (sealed and removed on first open).
pub const LEGACY_SIGNING_KEY_FILE: &str = "audit-signing.pk8";
/// The clear-text HMAC key file of earlier versions (sealed and removed on first open).
pub const LEGACY_HMAC_KEY_FILE: &str = "audit-hmac.keys";

/// Object kind the HMAC key list is sealed as.
const HMAC_KEYS_KIND: &str = "audit.hmac-keys";
const KEYRING_HEADER: &str = "phigate-audit-keyring v1";

/// The audit log's keys: the Ed25519 checkpoint signer and the HMAC keys for identifiers,
/// kept in files sealed under a KEK from a `sealed` key provider (see the module docs).
pub struct FileKeys {
    signing: SealedSigningKey,
    verifier: NoteVerifier,
    /// `(key id, key)`; the last one is current.
    hmac_keys: Vec<(String, hmac::Key)>,
}

impl fmt::Debug for FileKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeys")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl FileKeys {
    /// Opens the keys in `dir` with `provider`'s KEK, creating any that are missing (first
    /// run) and sealing clear-text keys left by earlier versions. Refuses key files that group
    /// or others can access, and a key directory sealed under another KEK. `key_name` names
    /// the checkpoint signer (and binds the sealed keys to it).
    ///
    /// With PKCS#11, give the audit keys a provider of their own label prefix: creating the
    /// audit key ring makes KEK version 1 on the token.
    pub fn open_or_create(
        dir: &Path,
        key_name: &str,
        provider: Arc<dyn KeyProvider>,
    ) -> Result<Self, KeyError> {
        create_private_dir(dir)?;
        let keyring = open_keyring(&dir.join(KEYRING_FILE), provider)?;

        let signing_path = dir.join(SIGNING_KEY_FILE);
        let legacy_signing = dir.join(LEGACY_SIGNING_KEY_FILE);
        let sealed_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Sealed { path, source }
        };
        let signing = if signing_path.exists() {
            refuse_leftover(&legacy_signing)?;
            let sealed = read_secret_file(&signing_path)?;
            SealedSigningKey::open(&keyring, key_name, &sealed)
                .map_err(sealed_err(&signing_path))?
        } else {
            let (key, sealed) = if legacy_signing.exists() {
                let pkcs8 = read_secret_file(&legacy_signing)?;
                SealedSigningKey::seal_pkcs8(&keyring, key_name, &pkcs8).map_err(|_| {
                    KeyError::Malformed {
                        path: legacy_signing.clone(),
                        reason: "not an Ed25519 PKCS#8 key",
                    }
                })?
            } else {
                SealedSigningKey::generate(&keyring, key_name).map_err(sealed_err(&signing_path))?
            };
            write_secret_file(&signing_path, &sealed)?;
            remove_clear_file(&legacy_signing, dir)?;
            key
        };
        let verifier = NoteVerifier::new(key_name, signing.public_key())?;

        let hmac_path = dir.join(HMAC_KEY_FILE);
        let legacy_hmac = dir.join(LEGACY_HMAC_KEY_FILE);
        let ctx = ObjectContext::new(HMAC_KEYS_KIND, key_name.as_bytes());
        let hmac_text = if hmac_path.exists() {
            refuse_leftover(&legacy_hmac)?;
            let sealed = read_secret_file(&hmac_path)?;
            // The opened plaintext wipes itself on drop; the copy is wiped by `Zeroizing`.
            let opened = keyring
                .open(&ctx, &sealed)
                .map_err(sealed_err(&hmac_path))?;
            Zeroizing::new(opened.to_vec())
        } else {
            let text = if legacy_hmac.exists() {
                let text = read_secret_file(&legacy_hmac)?;
                parse_hmac_keys(&legacy_hmac, &text)?;
                text
            } else {
                let mut key = Zeroizing::new([0u8; 32]);
                lc_rand::fill(key.as_mut()).map_err(|_| KeyError::SigningFailed)?;
                Zeroizing::new(format!("k1 {}\n", hex::encode(key.as_ref())).into_bytes())
            };
            let sealed = keyring.seal(&ctx, &text).map_err(sealed_err(&hmac_path))?;
            write_secret_file(&hmac_path, &sealed)?;
            remove_clear_file(&legacy_hmac, dir)?;
            text
        };
        let hmac_keys = parse_hmac_keys(&hmac_path, &hmac_text)?;

        let public_path = dir.join(PUBLIC_KEY_FILE);
        std::fs::write(&public_path, format!("{verifier}\n")).map_err(|source| KeyError::Io {
            path: public_path,
            source,
        })?;
        Ok(Self {
            signing,
            verifier,
            hmac_keys,
        })
    }
}

impl FileKeys {
    /// Rotates the identifier HMAC key: appends a fresh random key `new_id` as the current
    /// key (the old keys stay, so entries hashed under them are still found), re-seals the
    /// list and replaces the sealed file atomically. Returns the keys as now stored.
    pub fn rotate_hmac_key(
        dir: &Path,
        key_name: &str,
        provider: Arc<dyn KeyProvider>,
        new_id: &str,
    ) -> Result<Self, KeyError> {
        let current = Self::open_or_create(dir, key_name, provider.clone())?;
        let hmac_path = dir.join(HMAC_KEY_FILE);
        if current.hmac_keys.iter().any(|(id, _)| id == new_id) {
            return Err(KeyError::Malformed {
                path: hmac_path,
                reason: "an HMAC key with this id already exists",
            });
        }
        let keyring = open_keyring(&dir.join(KEYRING_FILE), provider.clone())?;
        let ctx = ObjectContext::new(HMAC_KEYS_KIND, key_name.as_bytes());
        let sealed_err = |source| KeyError::Sealed {
            path: hmac_path.clone(),
            source,
        };
        let old = keyring
            .open(&ctx, &read_secret_file(&hmac_path)?)
            .map_err(sealed_err)?;
        let mut key = Zeroizing::new([0u8; 32]);
        lc_rand::fill(key.as_mut()).map_err(|_| KeyError::SigningFailed)?;
        let mut text = Zeroizing::new(old.to_vec());
        if !text.is_empty() && !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.extend_from_slice(
            Zeroizing::new(format!("{new_id} {}\n", hex::encode(key.as_ref()))).as_bytes(),
        );
        // Validate (key id syntax) before anything is written.
        parse_hmac_keys(&hmac_path, &text)?;
        let sealed = keyring.seal(&ctx, &text).map_err(sealed_err)?;
        let tmp = dir.join(format!("{HMAC_KEY_FILE}.new"));
        let _ = std::fs::remove_file(&tmp);
        write_secret_file(&tmp, &sealed)?;
        std::fs::rename(&tmp, &hmac_path).map_err(|source| KeyError::Io {
            path: hmac_path.clone(),
            source,
        })?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| KeyError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        Self::open_or_create(dir, key_name, provider)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

fn refuse_leftover(clear: &Path) -> Result<(), KeyError> {
    if clear.exists() {
        return Err(KeyError::ClearKeyLeftOver {
            path: clear.to_path_buf(),
        });
    }
    Ok(())
}

/// Removes a clear-text key file once its sealed replacement is durable.
fn remove_clear_file(path: &Path, dir: &Path) -> Result<(), KeyError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(KeyError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// Loads the audit key ring's records, or creates the ring (KEK version 1) on first use.
fn open_keyring(path: &Path, provider: Arc<dyn KeyProvider>) -> Result<Keyring, KeyError> {
    let sealed_err = |source| KeyError::Sealed {
        path: path.to_path_buf(),
        source,
    };
    if !path.exists() {
        let keyring = Keyring::new(provider, Vec::new()).map_err(sealed_err)?;
        keyring.initialize().map_err(sealed_err)?;
        let mut text = format!("{KEYRING_HEADER}\n");
        for r in keyring.records() {
            text.push_str(&format!(
                "{} {} {} {}\n",
                keyring.key_id(),
                r.version,
                r.state.as_str(),
                base64::engine::general_purpose::STANDARD.encode(&r.material)
            ));
        }
        write_secret_file(path, text.as_bytes())?;
        return Ok(keyring);
    }
    let malformed = |reason| KeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = read_secret_file(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed("not UTF-8"))?;
    let mut lines = text.lines();
    if lines.next() != Some(KEYRING_HEADER) {
        return Err(malformed("not an audit key ring file"));
    }
    let mut records = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        let [key_id, version, state, material] = fields[..] else {
            return Err(malformed("expected '<key id> <version> <state> <base64>'"));
        };
        if key_id != provider.key_id() {
            return Err(KeyError::WrongKek {
                path: path.to_path_buf(),
                found: key_id.to_string(),
                configured: provider.key_id().to_string(),
            });
        }
        records.push(KeyVersionRecord {
            version: version
                .parse()
                .map_err(|_| malformed("version is not a number"))?,
            state: KeyState::parse(state).map_err(|_| malformed("unknown key state"))?,
            material: base64::engine::general_purpose::STANDARD
                .decode(material)
                .map_err(|_| malformed("material is not base64"))?,
        });
    }
    if records.is_empty() {
        return Err(malformed("no KEK version"));
    }
    Keyring::new(provider, records).map_err(sealed_err)
}

fn parse_hmac_keys(path: &Path, text: &[u8]) -> Result<Vec<(String, hmac::Key)>, KeyError> {
    let malformed = |reason| KeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(text).map_err(|_| malformed("not UTF-8"))?;
    let mut keys = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (id, hex_key) = line
            .split_once(' ')
            .ok_or_else(|| malformed("expected '<id> <hex>'"))?;
        let valid_id = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_id {
            return Err(malformed("key id must be 1-32 letters, digits, '-' or '_'"));
        }
        let raw =
            Zeroizing::new(hex::decode(hex_key.trim()).map_err(|_| malformed("key is not hex"))?);
        if raw.len() < 32 {
            return Err(malformed("HMAC key must be at least 32 bytes"));
        }
        keys.push((id.to_string(), hmac::Key::new(hmac::HMAC_SHA256, &raw)));
    }
    if keys.is_empty() {
        return Err(malformed("no key"));
    }
    Ok(keys)
}

fn write_secret_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    use std::os::unix::fs::PermissionsExt as _;
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
        });
    }
    Ok(Zeroizing::new(std::fs::read(path).map_err(io)?))
}

impl CheckpointSigner for FileKeys {
    fn note_verifier(&self) -> NoteVerifier {
        self.verifier.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        Ok(self.signing.sign(message))
    }
}

impl PatientHasher for FileKeys {
    fn keyed_hash(&self, value: &[u8]) -> KeyedHash {
        let (id, key) = self
            .hmac_keys
            .last()
            .expect("parse_hmac_keys guarantees one key");
        KeyedHash::from_parts(id, hmac::sign(key, value).as_ref())
    }

    fn keyed_hashes_all_keys(&self, value: &[u8]) -> Vec<KeyedHash> {
        self.hmac_keys
            .iter()
            .map(|(id, key)| KeyedHash::from_parts(id, hmac::sign(key, value).as_ref()))
            .collect()
    }
}
