//! In-memory caches of the hot request path, invalidated across processes by a **generation**.
//!
//! # Why
//!
//! Every governed request used to read the access database four or five times (signing key,
//! `jti` revocation, API key, grants, policy version) and verify an Ed25519 signature. These
//! caches remove all of that but one cheap generation check, without ever letting a change made
//! by another instance go unnoticed.
//!
//! # The generation
//!
//! Every change that can narrow what a credential may do (revoking or rotating an API key,
//! revoking a token, rotating or retiring a signing key, granting or revoking a patient,
//! break-glass, replacing the policies) changes the generation **before it returns**:
//!
//! * PostgreSQL: the row `access_generation(id = 1, value)` is incremented inside the change's
//!   own transaction, so it becomes visible exactly when the change does. Every cached
//!   operation reads it first (one primary-key read).
//! * SQLite: the file `<database>-gen` next to the database holds 16 random bytes that the
//!   writer replaces before and after committing (the same host shares the file). Every cached
//!   operation reads it first (one small file read, no thread hop).
//!
//! Inside [`crate::request_scope`] (the gateway wraps every request in it) only the first
//! cached operation of a request reads the generation; the request's later ones reuse that
//! epoch, unless the request itself changed something through [`crate::Access`].
//!
//! An instance that sees a value other than the last one it saw starts a new **epoch**: every
//! epoch-bound cache entry from before is ignored. An entry loaded while the generation moved
//! on is tagged with the epoch it was loaded in and never used in a later one, so a load that
//! raced a change cannot survive it.
//!
//! **Staleness bound: zero.** A revocation (or any change above) that has returned on one
//! instance is in force for every request that any instance starts afterwards. The only gap is
//! on SQLite if a writer process dies between its commit and its second write of the generation
//! file; the first write (before the commit) has then already invalidated every cache, so only a
//! reader that reloaded in the microseconds between the two writes could keep the old state,
//! until the next change or restart.
//!
//! Changes outside this crate that affect decisions (care-team records synced from the EHR)
//! call [`crate::Access::note_external_change`] or [`crate::bump_generation`]; callers that keep
//! their own derived caches tag them with [`crate::Access::epoch`].
//!
//! # What is cached
//!
//! * Verified tokens, keyed by SHA-256 of the whole token (bounded; an entry is dropped once its
//!   `exp` plus leeway has passed). Signature, `iss`, `aud`, lifetime and claim types are
//!   checked once; `exp`/`nbf`/`iat` are checked against the clock at every use; the signing
//!   key's state and the `jti` revocation are checked separately, at every use, against the
//!   epoch's key and revocation sets. Tokens that fail verification are never cached.
//! * Per epoch: the signing keys that verify, the revoked `jti`s, API key rows (by key id),
//!   grants (by principal and patient; expiry checked against the clock at every use), whether
//!   the policy version was checked, and Cedar decisions keyed by a digest of every input the
//!   decision depends on (policy text hash, principal and roles, action, resource, care team,
//!   purpose, reason present, grants in force): a pure function, so a hit answers exactly what
//!   Cedar would.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use audit::{AuthMethod, PurposeOfUse};

use crate::db::{Pool, with_pool};
use crate::error::{AccessError, Result, db};
use crate::policy::Decision;
use crate::principal::Role;

/// Most verified tokens kept (a full cache drops the expired ones, then everything).
pub(crate) const TOKEN_CACHE_CAPACITY: usize = 10_000;
/// Most API key rows, grant lists and decisions kept per epoch.
pub(crate) const ENTRY_CACHE_CAPACITY: usize = 50_000;

/// Where the generation lives.
#[derive(Debug)]
pub(crate) enum GenerationSource {
    /// A file next to the SQLite database.
    File(PathBuf),
    /// The `access_generation` row (PostgreSQL).
    Row,
}

/// The path of the generation file of an SQLite database.
pub(crate) fn generation_file(db_path: &std::path::Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push("-gen");
    PathBuf::from(name)
}

/// Writes a new random generation into the file (creating it 0600).
pub(crate) fn write_generation_file(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
    let mut nonce = [0u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| AccessError::Crypto("random generator"))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            AccessError::Config(format!(
                "cannot write the access generation file {}: {}",
                path.display(),
                e.kind()
            ))
        })?;
    file.write_all_at(&nonce, 0).map_err(|e| {
        AccessError::Config(format!(
            "cannot write the access generation file {}: {}",
            path.display(),
            e.kind()
        ))
    })
}

/// The generation in an open generation file, or `None` if it cannot be read or the file has
/// been unlinked since it was opened (the caller then reopens it by name).
fn read_open_generation(file: &std::fs::File) -> Option<Vec<u8>> {
    use std::os::unix::fs::{FileExt as _, MetadataExt as _};
    let mut buf = [0u8; 64];
    let n = file.read_at(&mut buf, 0).ok()?;
    (file.metadata().ok()?.nlink() > 0).then(|| buf[..n].to_vec())
}

fn generation_read_error(path: &std::path::Path, e: &std::io::Error) -> AccessError {
    AccessError::Config(format!(
        "cannot read the access generation file {}: {}",
        path.display(),
        e.kind()
    ))
}

/// A token whose signature and static claims were verified.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedToken {
    pub(crate) kid: String,
    pub(crate) sub: String,
    pub(crate) roles: Vec<Role>,
    pub(crate) jti: String,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) exp: i64,
    pub(crate) method: AuthMethod,
    pub(crate) pou: Option<PurposeOfUse>,
}

/// An API key row as the check needs it.
#[derive(Debug, Clone)]
pub(crate) struct ApiKeyRow {
    pub(crate) service: String,
    pub(crate) roles: String,
    pub(crate) mac: Vec<u8>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) last_used_at: Option<i64>,
}

/// Grants of one principal on one patient: (kind, expires_at), unrevoked.
pub(crate) type GrantList = Arc<Vec<(String, Option<i64>)>>;

/// What one epoch knows.
#[derive(Default)]
struct Epoch {
    number: u64,
    /// The generation value this epoch was started for.
    seen: Option<Vec<u8>>,
    /// Signing keys that verify (state active or verify): kid → public key.
    keys: HashMap<String, Arc<Vec<u8>>>,
    /// Revoked `jti`s, once loaded.
    revoked: Option<Arc<HashSet<String>>>,
    api_keys: HashMap<String, ApiKeyRow>,
    grants: HashMap<(String, Vec<u8>), GrantList>,
    decisions: HashMap<[u8; 32], Decision>,
    policy_checked: bool,
}

/// The caches of one [`crate::Access`].
pub(crate) struct Caches {
    source: GenerationSource,
    /// The generation file, kept open: a read is then one `pread` and one `fstat` instead of
    /// open, stat, read and close at every cached operation (three per governed request).
    generation_handle: Mutex<Option<Arc<std::fs::File>>>,
    epoch: Mutex<Epoch>,
    tokens: Mutex<HashMap<[u8; 32], Arc<VerifiedToken>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Caches {
    pub(crate) fn new(source: GenerationSource) -> Self {
        Self {
            source,
            generation_handle: Mutex::new(None),
            epoch: Mutex::new(Epoch::default()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn source(&self) -> &GenerationSource {
        &self.source
    }

    async fn read_generation(&self, pool: &Pool) -> Result<Vec<u8>> {
        match &self.source {
            GenerationSource::File(path) => {
                let held = lock(&self.generation_handle).clone();
                if let Some(file) = held
                    && let Some(bytes) = read_open_generation(&file)
                {
                    return Ok(bytes);
                }
                // First use, or the file was deleted (and perhaps recreated) since it was
                // opened: a handle on an unlinked file would never see another change.
                let file = match std::fs::File::open(path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        write_generation_file(path)?;
                        std::fs::File::open(path).map_err(|e| generation_read_error(path, &e))?
                    }
                    Err(e) => return Err(generation_read_error(path, &e)),
                };
                let file = Arc::new(file);
                let bytes = read_open_generation(&file).ok_or_else(|| {
                    AccessError::Config(format!(
                        "cannot read the access generation file {}",
                        path.display()
                    ))
                })?;
                *lock(&self.generation_handle) = Some(file);
                Ok(bytes)
            }
            GenerationSource::Row => {
                let value: i64 = with_pool!(pool, p => {
                    sqlx::query_scalar("SELECT value FROM access_generation WHERE id = 1")
                        .fetch_one(p)
                        .await
                        .map_err(db("reading the access generation"))?
                });
                Ok(value.to_be_bytes().to_vec())
            }
        }
    }

    /// Reads the generation and returns the current epoch (a new one if it changed).
    pub(crate) async fn sync(&self, pool: &Pool) -> Result<u64> {
        let seen = self.read_generation(pool).await?;
        let mut epoch = lock(&self.epoch);
        if epoch.seen.as_deref() != Some(seen.as_slice()) {
            let number = epoch.number + 1;
            *epoch = Epoch {
                number,
                seen: Some(seen),
                ..Epoch::default()
            };
        }
        Ok(epoch.number)
    }

    /// Runs `f` on the epoch's state if it is still epoch `n`.
    fn with_epoch<R>(&self, n: u64, f: impl FnOnce(&mut Epoch) -> R) -> Option<R> {
        let mut epoch = lock(&self.epoch);
        (epoch.number == n).then(|| f(&mut epoch))
    }

    // --- tokens -------------------------------------------------------------------------

    pub(crate) fn token(&self, hash: &[u8; 32]) -> Option<Arc<VerifiedToken>> {
        lock(&self.tokens).get(hash).cloned()
    }

    pub(crate) fn put_token(&self, hash: [u8; 32], token: VerifiedToken, now: i64, leeway: i64) {
        let mut tokens = lock(&self.tokens);
        if tokens.len() >= TOKEN_CACHE_CAPACITY {
            tokens.retain(|_, t| now < t.exp.saturating_add(leeway));
            if tokens.len() >= TOKEN_CACHE_CAPACITY {
                tokens.clear();
            }
        }
        tokens.insert(hash, Arc::new(token));
    }

    // --- signing keys -------------------------------------------------------------------

    pub(crate) fn key(&self, n: u64, kid: &str) -> Option<Arc<Vec<u8>>> {
        self.with_epoch(n, |e| e.keys.get(kid).cloned()).flatten()
    }

    pub(crate) fn put_key(&self, n: u64, kid: String, public: Arc<Vec<u8>>) {
        self.with_epoch(n, |e| {
            if e.keys.len() < ENTRY_CACHE_CAPACITY {
                e.keys.insert(kid, public);
            }
        });
    }

    // --- revoked jtis -------------------------------------------------------------------

    pub(crate) fn revoked(&self, n: u64) -> Option<Arc<HashSet<String>>> {
        self.with_epoch(n, |e| e.revoked.clone()).flatten()
    }

    pub(crate) fn put_revoked(&self, n: u64, set: Arc<HashSet<String>>) {
        self.with_epoch(n, |e| e.revoked = Some(set));
    }

    // --- API keys -----------------------------------------------------------------------

    pub(crate) fn api_key(&self, n: u64, id: &str) -> Option<ApiKeyRow> {
        self.with_epoch(n, |e| e.api_keys.get(id).cloned())
            .flatten()
    }

    pub(crate) fn put_api_key(&self, n: u64, id: &str, row: ApiKeyRow) {
        self.with_epoch(n, |e| {
            if e.api_keys.len() >= ENTRY_CACHE_CAPACITY {
                e.api_keys.clear();
            }
            e.api_keys.insert(id.to_owned(), row);
        });
    }

    // --- grants -------------------------------------------------------------------------

    pub(crate) fn grants(&self, n: u64, principal: &str, patient_mac: &[u8]) -> Option<GrantList> {
        self.with_epoch(n, |e| {
            e.grants
                .get(&(principal.to_owned(), patient_mac.to_vec()))
                .cloned()
        })
        .flatten()
    }

    pub(crate) fn put_grants(&self, n: u64, principal: &str, patient_mac: &[u8], list: GrantList) {
        self.with_epoch(n, |e| {
            if e.grants.len() >= ENTRY_CACHE_CAPACITY {
                e.grants.clear();
            }
            e.grants
                .insert((principal.to_owned(), patient_mac.to_vec()), list);
        });
    }

    // --- decisions ----------------------------------------------------------------------

    pub(crate) fn decision(&self, n: u64, key: &[u8; 32]) -> Option<Decision> {
        self.with_epoch(n, |e| e.decisions.get(key).cloned())
            .flatten()
    }

    pub(crate) fn put_decision(&self, n: u64, key: [u8; 32], decision: Decision) {
        self.with_epoch(n, |e| {
            if e.decisions.len() >= ENTRY_CACHE_CAPACITY {
                e.decisions.clear();
            }
            e.decisions.insert(key, decision);
        });
    }

    // --- policies -----------------------------------------------------------------------

    pub(crate) fn policy_checked(&self, n: u64) -> bool {
        self.with_epoch(n, |e| e.policy_checked).unwrap_or(false)
    }

    pub(crate) fn set_policy_checked(&self, n: u64) {
        self.with_epoch(n, |e| e.policy_checked = true);
    }
}

/// Increments the generation row inside a change's transaction, so that on PostgreSQL the
/// change and the new generation become visible together. (SQLite instances read the generation
/// file instead, which [`crate::Access::touch_generation`] writes around the commit.)
macro_rules! bump_in_tx {
    ($tx:expr) => {
        sqlx::query("UPDATE access_generation SET value = value + 1 WHERE id = 1")
            .execute(&mut *$tx)
            .await
            .map_err($crate::error::db("recording an access change"))?;
    };
}
pub(crate) use bump_in_tx;
