//! phigate's encrypted store and response cache, on SQLite (the embedded default) or PostgreSQL.
//!
//! One job: keep records about patients, and cached EHR responses, so that only sealed
//! ciphertext and non-identifying metadata ever reach the disk or the database server.
//!
//! # Data model
//!
//! A record is addressed by `(kind, id)` and may name a patient. In the database a row holds:
//! `kind` (plain: it names a category such as `kipu.response`, never a person), `key_hmac`
//! (HMAC-SHA256 of kind and id), `patient_hmac` (HMAC-SHA256 of the patient id, for
//! invalidation by patient), created/updated/expiry timestamps, the KEK version that wraps the
//! record's data key, and the sealed payload. The real id, patient id and value are inside the
//! sealed payload only.
//!
//! Decision: record ids are treated as PHI. A cached response's id is typically its request
//! path, which carries a patient id; storing it in clear would leak who was looked up. The
//! keyed HMAC lets the store find a row without knowing the id, and the sealed payload repeats
//! the id so that `get` verifies it.
//!
//! # Listing
//!
//! [`Store::list_kind_page`] (and [`Store::list_kind`], which collects every page) walks the
//! unexpired records of a kind in the order of their index HMAC, which says nothing about ids;
//! the continuation cursor is that HMAC, not an id. [`Store::list_patient`] returns a patient's
//! unexpired records of a kind through the patient index, and refuses (as corrupt) a row whose
//! sealed payload names another patient, so that a patient index altered in the database cannot
//! show one patient's record under another (the AEAD binds kind and record index, not the
//! patient index). Listings open every row they return and check its id against its index.
//!
//! The HMAC key is a random 256-bit key created by `init_keys`, sealed under the key ring like
//! any record (kind `phigate.store.hmac-key`), so it is never the KEK and it follows rotation.
//!
//! # Security invariants
//!
//! * Every payload is sealed by [`sealed::Keyring`] with AAD binding kind and `key_hmac`: a
//!   ciphertext moved to another row does not open.
//! * An expired record is never returned: expiry is checked on every read against the clock,
//!   not only by the sweeper ([`Store::spawn_sweeper`]) that deletes them.
//! * Deleting a record deletes its wrapped data key (crypto-shredding). SQLite runs with
//!   `secure_delete=ON` so freed pages are zeroed; on PostgreSQL dead tuples persist until
//!   VACUUM, which `phigate store purge` runs.
//! * SQLite: WAL mode with `synchronous=FULL`, so a commit that returned is durable across
//!   `kill -9` and power loss; the file is created with mode 0600 and an existing file that
//!   group or others can read is refused.
//! * A database written by a newer schema version is refused; migrations run in a transaction.
//! * Errors and logs never contain ids, patient ids, values or key bytes.
//! * Restore verifies the whole backup before changing anything and never overwrites a newer
//!   record unless forced.

#![forbid(unsafe_code)]

mod backup;
mod codec;
mod db;
mod error;
mod point_read;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use phi::Sensitive;
use sealed::{KeyProvider, KeyState, KeyVersionRecord, Keyring, ObjectContext};
use zeroize::Zeroizing;

pub use backup::{BackupSummary, RestoreReport};
pub use db::{BackendConfig, SCHEMA_VERSION};
use db::{Pool, with_pool};
pub use error::{Result, StoreError};

/// Kind of cached Kipu API responses.
pub const CACHED_RESPONSE_KIND: &str = "kipu.response";
/// Default time to live of cached API responses.
pub const CACHED_RESPONSE_TTL: Duration = Duration::from_secs(15 * 60);

const HMAC_KEY_KIND: &str = "phigate.store.hmac-key";
const HMAC_KEY_ID: &[u8] = b"record-and-patient-index";
const MAX_KIND_LEN: usize = 128;

/// Time source, in milliseconds since the Unix epoch. Injectable so tests can move time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Time-to-live policy per kind.
#[derive(Debug, Clone)]
pub struct TtlPolicy {
    per_kind: HashMap<String, Duration>,
    default: Option<Duration>,
}

impl Default for TtlPolicy {
    /// Cached API responses live 15 minutes; other kinds do not expire unless configured.
    fn default() -> Self {
        Self {
            per_kind: HashMap::from([(CACHED_RESPONSE_KIND.to_string(), CACHED_RESPONSE_TTL)]),
            default: None,
        }
    }
}

impl TtlPolicy {
    /// Sets the TTL of `kind`.
    pub fn with_kind(mut self, kind: &str, ttl: Duration) -> Self {
        self.per_kind.insert(kind.to_string(), ttl);
        self
    }
    /// Sets the TTL of kinds without their own.
    pub fn with_default(mut self, ttl: Option<Duration>) -> Self {
        self.default = ttl;
        self
    }
    /// The TTL that applies to `kind`.
    pub fn ttl_for(&self, kind: &str) -> Option<Duration> {
        self.per_kind.get(kind).copied().or(self.default)
    }
}

/// A record read back from the store. Every field that may hold PHI is [`Sensitive`].
#[derive(Debug)]
pub struct Record {
    /// The record's kind.
    pub kind: String,
    /// The record's id.
    pub id: Sensitive<String>,
    /// The patient the record is about, if any.
    pub patient: Option<Sensitive<String>>,
    /// The value.
    pub value: Sensitive<Vec<u8>>,
    /// First write, ms since the epoch.
    pub created_at_ms: i64,
    /// Last write, ms since the epoch.
    pub updated_at_ms: i64,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: Option<i64>,
}

/// Insert or replace one record (created_at is kept on replace).
const UPSERT_RECORD: &str = "INSERT INTO records (kind, key_hmac, patient_hmac, created_at, updated_at, expires_at, kek_version, sealed)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (kind, key_hmac) DO UPDATE SET patient_hmac = excluded.patient_hmac,
        updated_at = excluded.updated_at, expires_at = excluded.expires_at,
        kek_version = excluded.kek_version, sealed = excluded.sealed";

/// A record to write with [`Store::put_many`]. Its `Debug` shows the kind and TTL only.
#[derive(Clone, Copy)]
pub struct NewRecord<'a> {
    /// The record's kind.
    pub kind: &'a str,
    /// The record's id.
    pub id: &'a str,
    /// The patient it is about, if any (sets the patient index).
    pub patient: Option<&'a str>,
    /// The value.
    pub value: &'a [u8],
    /// Time to live; `None` never expires.
    pub ttl: Option<Duration>,
}

impl fmt::Debug for NewRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRecord")
            .field("kind", &self.kind)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The most records one [`Store::list_kind_page`] call returns.
pub const MAX_LIST_PAGE: u32 = 1000;

/// Where a paged listing continues: the index HMAC of the last record returned (opaque, no
/// PHI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor(Vec<u8>);

/// One page of a listing.
#[derive(Debug)]
pub struct RecordPage {
    /// The records, in index order.
    pub records: Vec<Record>,
    /// Where the next page starts; `None` after the last page.
    pub next: Option<ListCursor>,
}

/// Counts for `phigate store stats`. Contains no ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Backend name.
    pub backend: &'static str,
    /// Live (unexpired) records per kind.
    pub live_by_kind: BTreeMap<String, u64>,
    /// Expired records awaiting the sweeper.
    pub expired: u64,
    /// Records per KEK version wrapping their data key.
    pub by_kek_version: BTreeMap<u32, u64>,
}

/// One KEK version as shown by `phigate keys status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersionStatus {
    /// Version number.
    pub version: u32,
    /// Lifecycle state.
    pub state: KeyState,
    /// Data keys (records plus store-internal keys) wrapped under it.
    pub wraps: u64,
}

/// What `phigate keys status` prints.
#[derive(Debug, Clone)]
pub struct KeyStatus {
    /// Key ring id.
    pub key_id: String,
    /// Provider kind.
    pub provider: &'static str,
    /// Versions, oldest first.
    pub versions: Vec<KeyVersionStatus>,
}

/// Live counts per kind, expired count, counts per KEK version.
type StatsRows = (Vec<(String, i64)>, i64, Vec<(i64, i64)>);
/// kind, key_hmac, created, updated, expires, sealed.
type RecordRow = (String, Vec<u8>, i64, i64, Option<i64>, Vec<u8>);

fn now_from(clock: &dyn Clock) -> i64 {
    clock.now_ms()
}

fn version_i64(v: u32) -> i64 {
    i64::from(v)
}

fn version_u32(v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt("KEK version out of range"))
}

/// Opens the database (running migrations) without keys: for `keys init` and `keys status`.
#[derive(Debug, Clone)]
pub struct Database {
    pool: Pool,
    /// Set on SQLite: [`Store::get`] reads through it (see [`point_read`]).
    point_reads: Option<Arc<point_read::SqlitePointReads>>,
}

impl Database {
    /// Connects and migrates.
    pub async fn connect(config: &BackendConfig) -> Result<Self> {
        let pool = Pool::connect(config).await?;
        let point_reads = match config {
            BackendConfig::Sqlite { path } => {
                Some(Arc::new(point_read::SqlitePointReads::new(path)))
            }
            BackendConfig::Postgres { .. } => None,
        };
        Ok(Self { pool, point_reads })
    }

    /// Backend name.
    pub fn backend_name(&self) -> &'static str {
        self.pool.backend_name()
    }

    async fn keyring_rows(&self) -> Result<Vec<(String, i64, String, Vec<u8>)>> {
        Ok(with_pool!(&self.pool, p => {
            sqlx::query_as::<_, (String, i64, String, Vec<u8>)>(
                "SELECT key_id, version, state, material FROM keyring ORDER BY version",
            )
            .fetch_all(p)
            .await?
        }))
    }

    /// The key ring persisted for `provider`, checking that the store belongs to it.
    async fn load_keyring(&self, provider: Arc<dyn KeyProvider>) -> Result<Keyring> {
        let rows = self.keyring_rows().await?;
        if let Some((other, ..)) = rows.iter().find(|(id, ..)| id != provider.key_id()) {
            return Err(StoreError::KeyMismatch {
                store: other.clone(),
                configured: provider.key_id().to_string(),
            });
        }
        let records = rows
            .into_iter()
            .map(|(_, version, state, material)| {
                Ok(KeyVersionRecord {
                    version: version_u32(version)?,
                    state: KeyState::parse(&state)?,
                    material,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Keyring::new(provider, records)?)
    }

    /// Creates KEK version 1 and the store's HMAC key. Refused when keys exist.
    pub async fn init_keys(&self, provider: Arc<dyn KeyProvider>) -> Result<KeyStatus> {
        let keyring = self.load_keyring(provider).await?;
        let record = keyring.initialize()?;
        let mut hmac_key = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(hmac_key.as_mut())
            .map_err(|_| StoreError::Corrupt("random generator failed"))?;
        let sealed_hmac = keyring.seal(
            &ObjectContext::new(HMAC_KEY_KIND, HMAC_KEY_ID),
            hmac_key.as_ref(),
        )?;
        let now = SystemClock.now_ms();
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO keyring (key_id, version, state, material, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(keyring.key_id())
            .bind(version_i64(record.version))
            .bind(record.state.as_str())
            .bind(&record.material)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO store_meta (name, kek_version, sealed) VALUES ($1, $2, $3)")
                .bind(HMAC_KEY_KIND)
                .bind(version_i64(record.version))
                .bind(&sealed_hmac)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        self.key_status_of(&keyring).await
    }

    async fn key_status_of(&self, keyring: &Keyring) -> Result<KeyStatus> {
        let counts: Vec<(i64, i64)> = with_pool!(&self.pool, p => {
            sqlx::query_as::<_, (i64, i64)>(
                "SELECT kek_version, COUNT(*) FROM (SELECT kek_version FROM records UNION ALL SELECT kek_version FROM store_meta) AS wrapped GROUP BY kek_version",
            )
            .fetch_all(p)
            .await?
        });
        let counts: HashMap<i64, i64> = counts.into_iter().collect();
        Ok(KeyStatus {
            key_id: keyring.key_id().to_string(),
            provider: keyring.provider_kind(),
            versions: keyring
                .records()
                .into_iter()
                .map(|r| KeyVersionStatus {
                    version: r.version,
                    state: r.state,
                    wraps: counts
                        .get(&version_i64(r.version))
                        .copied()
                        .unwrap_or(0)
                        .unsigned_abs(),
                })
                .collect(),
        })
    }

    async fn persist_key_records(&self, key_id: &str, records: &[KeyVersionRecord]) -> Result<()> {
        let now = SystemClock.now_ms();
        with_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            for r in records {
                sqlx::query(
                    "INSERT INTO keyring (key_id, version, state, material, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
                     ON CONFLICT (key_id, version) DO UPDATE SET state = excluded.state, material = excluded.material, updated_at = excluded.updated_at",
                )
                .bind(key_id)
                .bind(version_i64(r.version))
                .bind(r.state.as_str())
                .bind(&r.material)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Opens the store with `provider`'s key ring.
    pub async fn open(&self, provider: Arc<dyn KeyProvider>, ttl: TtlPolicy) -> Result<Store> {
        let keyring = self.load_keyring(provider).await?;
        if keyring.active_version().is_err() {
            return Err(StoreError::NotInitialized);
        }
        let sealed_hmac: Option<Vec<u8>> = with_pool!(&self.pool, p => {
            sqlx::query_scalar("SELECT sealed FROM store_meta WHERE name = $1").bind(HMAC_KEY_KIND).fetch_optional(p).await?
        });
        let sealed_hmac =
            sealed_hmac.ok_or(StoreError::Corrupt("the store's index key is missing"))?;
        let hmac_bytes = keyring.open(
            &ObjectContext::new(HMAC_KEY_KIND, HMAC_KEY_ID),
            &sealed_hmac,
        )?;
        if hmac_bytes.len() != 32 {
            return Err(StoreError::Corrupt(
                "the store's index key has the wrong length",
            ));
        }
        let index_key = hmac::Key::new(hmac::HMAC_SHA256, &hmac_bytes);
        Ok(Store {
            inner: Arc::new(Inner {
                db: self.clone(),
                keyring,
                index_key,
                ttl,
                clock: Arc::new(SystemClock),
            }),
        })
    }
}

struct Inner {
    db: Database,
    keyring: Keyring,
    index_key: hmac::Key,
    ttl: TtlPolicy,
    clock: Arc<dyn Clock>,
}

/// The encrypted store. Cheap to clone; safe to share between tasks.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.db.backend_name())
            .field("key_id", &self.inner.keyring.key_id())
            .finish_non_exhaustive()
    }
}

fn check_kind(kind: &str) -> Result<()> {
    if kind.is_empty() || kind.len() > MAX_KIND_LEN || !kind.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::InvalidArgument(format!(
            "kind must be 1..={MAX_KIND_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

impl Store {
    /// Replaces the clock (tests move time without sleeping).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        let inner = Inner {
            db: self.inner.db.clone(),
            keyring: self.inner.keyring.clone(),
            index_key: self.inner.index_key.clone(),
            ttl: self.inner.ttl.clone(),
            clock,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    fn pool(&self) -> &Pool {
        &self.inner.db.pool
    }

    fn now(&self) -> i64 {
        now_from(self.inner.clock.as_ref())
    }

    fn key_hmac(&self, kind: &str, id: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.inner.index_key);
        ctx.update(b"phigate/store/record/v1");
        ctx.update(&(kind.len() as u64).to_be_bytes());
        ctx.update(kind.as_bytes());
        ctx.update(&(id.len() as u64).to_be_bytes());
        ctx.update(id.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    fn patient_hmac(&self, patient: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.inner.index_key);
        ctx.update(b"phigate/store/patient/v1");
        ctx.update(patient.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// Stores `value` under `(kind, id)` with the kind's TTL, replacing any previous value.
    pub async fn put(
        &self,
        kind: &str,
        id: &str,
        patient: Option<&str>,
        value: &[u8],
    ) -> Result<()> {
        let ttl = self.inner.ttl.ttl_for(kind);
        self.put_with_ttl(kind, id, patient, value, ttl).await
    }

    /// Like [`Store::put`] with an explicit TTL (`None`: never expires).
    pub async fn put_with_ttl(
        &self,
        kind: &str,
        id: &str,
        patient: Option<&str>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let now = self.now();
        let expires =
            ttl.map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)));
        self.write_record(kind, id, patient, value, now, now, expires)
            .await
    }

    /// Writes several records in one transaction: all of them or, on error, none. Each gets
    /// its own TTL (`None`: never expires) and replaces any previous value under its
    /// `(kind, id)`. One commit (one fsync on SQLite) for the batch instead of one per record.
    pub async fn put_many(&self, records: &[NewRecord<'_>]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let version = version_i64(self.inner.keyring.active_version()?);
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            check_kind(r.kind)?;
            let key_hmac = self.key_hmac(r.kind, r.id);
            let patient_hmac = r.patient.map(|p| self.patient_hmac(p));
            let payload = Zeroizing::new(codec::encode_payload(r.id, r.patient, r.value)?);
            let sealed = self
                .inner
                .keyring
                .seal(&ObjectContext::new(r.kind, &key_hmac), &payload)?;
            let expires = r
                .ttl
                .map(|t| now.saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX)));
            rows.push((r.kind, key_hmac, patient_hmac, expires, sealed));
        }
        with_pool!(self.pool(), p => {
            let mut tx = p.begin().await?;
            for (kind, key_hmac, patient_hmac, expires, sealed) in &rows {
                sqlx::query(UPSERT_RECORD)
                    .bind(*kind)
                    .bind(key_hmac)
                    .bind(patient_hmac)
                    .bind(now)
                    .bind(now)
                    .bind(*expires)
                    .bind(version)
                    .bind(sealed)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_record(
        &self,
        kind: &str,
        id: &str,
        patient: Option<&str>,
        value: &[u8],
        created: i64,
        updated: i64,
        expires: Option<i64>,
    ) -> Result<()> {
        check_kind(kind)?;
        let key_hmac = self.key_hmac(kind, id);
        let patient_hmac = patient.map(|p| self.patient_hmac(p));
        let payload = Zeroizing::new(codec::encode_payload(id, patient, value)?);
        let sealed = self
            .inner
            .keyring
            .seal(&ObjectContext::new(kind, &key_hmac), &payload)?;
        let version = version_i64(self.inner.keyring.active_version()?);
        with_pool!(self.pool(), p => {
            sqlx::query(UPSERT_RECORD)
            .bind(kind)
            .bind(&key_hmac)
            .bind(&patient_hmac)
            .bind(created)
            .bind(updated)
            .bind(expires)
            .bind(version)
            .bind(&sealed)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// The record under `(kind, id)`, or `None` if absent or expired.
    pub async fn get(&self, kind: &str, id: &str) -> Result<Option<Record>> {
        check_kind(kind)?;
        let key_hmac = self.key_hmac(kind, id);
        let now = self.now();
        let row = match &self.inner.db.point_reads {
            Some(reads) => reads.record(kind, &key_hmac)?,
            None => with_pool!(self.pool(), p => {
                sqlx::query_as::<_, point_read::PointRow>(
                    "SELECT created_at, updated_at, expires_at, sealed FROM records WHERE kind = $1 AND key_hmac = $2",
                )
                .bind(kind)
                .bind(&key_hmac)
                .fetch_optional(p)
                .await?
            }),
        };
        let Some((created, updated, expires, sealed)) = row else {
            return Ok(None);
        };
        if expires.is_some_and(|e| e <= now) {
            // Expired: never returned, whether or not the sweeper has run.
            return Ok(None);
        }
        let plain = self
            .inner
            .keyring
            .open(&ObjectContext::new(kind, &key_hmac), &sealed)?;
        let payload = codec::decode_payload(&plain)?;
        if payload.id != id {
            return Err(StoreError::Corrupt("record id does not match its index"));
        }
        Ok(Some(Record {
            kind: kind.to_string(),
            id: Sensitive::new(payload.id),
            patient: payload.patient.map(Sensitive::new),
            value: Sensitive::new(payload.value),
            created_at_ms: created,
            updated_at_ms: updated,
            expires_at_ms: expires,
        }))
    }

    /// Opens one row read by a listing: the payload must name the id whose HMAC indexes the
    /// row (a ciphertext moved to another row does not open anyway; this also catches a payload
    /// re-sealed under another id).
    fn open_listed(&self, row: RecordRow) -> Result<Record> {
        let (kind, key_hmac, created, updated, expires, sealed) = row;
        let plain = self
            .inner
            .keyring
            .open(&ObjectContext::new(&kind, &key_hmac), &sealed)?;
        let payload = codec::decode_payload(&plain)?;
        if self.key_hmac(&kind, &payload.id) != key_hmac {
            return Err(StoreError::Corrupt("record id does not match its index"));
        }
        Ok(Record {
            kind,
            id: Sensitive::new(payload.id),
            patient: payload.patient.map(Sensitive::new),
            value: Sensitive::new(payload.value),
            created_at_ms: created,
            updated_at_ms: updated,
            expires_at_ms: expires,
        })
    }

    /// One page of the unexpired records of `kind`, at most `limit` (1 to
    /// [`MAX_LIST_PAGE`]), in a stable order (by the record's index HMAC, so the order says
    /// nothing about ids). Pass the returned [`RecordPage::next`] to continue; `None` means
    /// the end. Records written or deleted while paging may or may not be seen; none is seen
    /// twice.
    pub async fn list_kind_page(
        &self,
        kind: &str,
        after: Option<&ListCursor>,
        limit: u32,
    ) -> Result<RecordPage> {
        check_kind(kind)?;
        if limit == 0 || limit > MAX_LIST_PAGE {
            return Err(StoreError::InvalidArgument(format!(
                "a listing page holds 1 to {MAX_LIST_PAGE} records"
            )));
        }
        let now = self.now();
        let rows: Vec<RecordRow> = with_pool!(self.pool(), p => {
            match after {
                None => sqlx::query_as::<_, RecordRow>(
                    "SELECT kind, key_hmac, created_at, updated_at, expires_at, sealed FROM records
                     WHERE kind = $1 AND (expires_at IS NULL OR expires_at > $2)
                     ORDER BY key_hmac LIMIT $3",
                )
                .bind(kind)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?,
                Some(cursor) => sqlx::query_as::<_, RecordRow>(
                    "SELECT kind, key_hmac, created_at, updated_at, expires_at, sealed FROM records
                     WHERE kind = $1 AND (expires_at IS NULL OR expires_at > $2) AND key_hmac > $3
                     ORDER BY key_hmac LIMIT $4",
                )
                .bind(kind)
                .bind(now)
                .bind(&cursor.0)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await?,
            }
        });
        let full = rows.len() == limit as usize;
        let next = if full {
            rows.last().map(|r| ListCursor(r.1.clone()))
        } else {
            None
        };
        let records = rows
            .into_iter()
            .map(|row| self.open_listed(row))
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordPage { records, next })
    }

    /// Every unexpired record of `kind` (all pages of [`Store::list_kind_page`]). Holds them
    /// all in memory; page through large kinds instead.
    pub async fn list_kind(&self, kind: &str) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut cursor: Option<ListCursor> = None;
        loop {
            let page = self
                .list_kind_page(kind, cursor.as_ref(), MAX_LIST_PAGE)
                .await?;
            out.extend(page.records);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// The unexpired records of `kind` about `patient`. Each row's sealed payload must name
    /// that patient: a row whose patient index was altered in the database is refused as
    /// corrupt rather than shown under another patient.
    pub async fn list_patient(&self, patient: &str, kind: &str) -> Result<Vec<Record>> {
        check_kind(kind)?;
        let h = self.patient_hmac(patient);
        let now = self.now();
        let rows: Vec<RecordRow> = with_pool!(self.pool(), p => {
            sqlx::query_as::<_, RecordRow>(
                "SELECT kind, key_hmac, created_at, updated_at, expires_at, sealed FROM records
                 WHERE patient_hmac = $1 AND kind = $2 AND (expires_at IS NULL OR expires_at > $3)
                 ORDER BY key_hmac",
            )
            .bind(&h)
            .bind(kind)
            .bind(now)
            .fetch_all(p)
            .await?
        });
        rows.into_iter()
            .map(|row| {
                let record = self.open_listed(row)?;
                let same_patient = record
                    .patient
                    .as_ref()
                    .is_some_and(|p| p.expose().as_str() == patient);
                if !same_patient {
                    return Err(StoreError::Corrupt(
                        "record patient does not match its patient index",
                    ));
                }
                Ok(record)
            })
            .collect()
    }

    /// Deletes `(kind, id)`; returns whether it existed.
    pub async fn invalidate_key(&self, kind: &str, id: &str) -> Result<bool> {
        check_kind(kind)?;
        let key_hmac = self.key_hmac(kind, id);
        let n = with_pool!(self.pool(), p => {
            sqlx::query("DELETE FROM records WHERE kind = $1 AND key_hmac = $2").bind(kind).bind(&key_hmac).execute(p).await?.rows_affected()
        });
        Ok(n > 0)
    }

    /// Deletes every record of `kind`.
    pub async fn invalidate_kind(&self, kind: &str) -> Result<u64> {
        check_kind(kind)?;
        Ok(with_pool!(self.pool(), p => {
            sqlx::query("DELETE FROM records WHERE kind = $1").bind(kind).execute(p).await?.rows_affected()
        }))
    }

    /// Deletes every record about `patient`.
    pub async fn invalidate_patient(&self, patient: &str) -> Result<u64> {
        let h = self.patient_hmac(patient);
        Ok(with_pool!(self.pool(), p => {
            sqlx::query("DELETE FROM records WHERE patient_hmac = $1").bind(&h).execute(p).await?.rows_affected()
        }))
    }

    /// Deletes every record.
    pub async fn invalidate_all(&self) -> Result<u64> {
        Ok(with_pool!(self.pool(), p => {
            sqlx::query("DELETE FROM records").execute(p).await?.rows_affected()
        }))
    }

    /// Deletes expired records; returns how many.
    pub async fn purge_expired(&self) -> Result<u64> {
        let now = self.now();
        Ok(with_pool!(self.pool(), p => {
            sqlx::query("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= $1").bind(now).execute(p).await?.rows_affected()
        }))
    }

    /// Reclaims space so deleted (crypto-shredded) rows leave the files: SQLite checkpoints the
    /// WAL and VACUUMs; PostgreSQL VACUUMs the records table.
    pub async fn compact(&self) -> Result<()> {
        match self.pool() {
            Pool::Sqlite(p) => {
                sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(p)
                    .await?;
                sqlx::raw_sql("VACUUM").execute(p).await?;
            }
            Pool::Postgres(p) => {
                sqlx::raw_sql("VACUUM records").execute(p).await?;
            }
        }
        Ok(())
    }

    /// Starts a task that purges expired records every `interval`. Failures are logged (no
    /// PHI in them) and retried at the next tick. Abort the handle to stop it.
    pub fn spawn_sweeper(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                match store.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(purged = n, "expired records purged"),
                    Err(e) => tracing::warn!(error = %e, "expired-record sweep failed"),
                }
            }
        })
    }

    /// Counts by kind, expiry and KEK version.
    pub async fn stats(&self) -> Result<Stats> {
        let now = self.now();
        let (live, expired, versions): StatsRows = with_pool!(self.pool(), p => {
            let live = sqlx::query_as::<_, (String, i64)>(
                "SELECT kind, COUNT(*) FROM records WHERE expires_at IS NULL OR expires_at > $1 GROUP BY kind ORDER BY kind",
            )
            .bind(now)
            .fetch_all(p)
            .await?;
            let expired: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE expires_at IS NOT NULL AND expires_at <= $1")
                .bind(now)
                .fetch_one(p)
                .await?;
            let versions = sqlx::query_as::<_, (i64, i64)>("SELECT kek_version, COUNT(*) FROM records GROUP BY kek_version")
                .fetch_all(p)
                .await?;
            (live, expired, versions)
        });
        Ok(Stats {
            backend: self.inner.db.backend_name(),
            live_by_kind: live
                .into_iter()
                .map(|(k, n)| (k, n.unsigned_abs()))
                .collect(),
            expired: expired.unsigned_abs(),
            by_kek_version: versions
                .into_iter()
                .map(|(v, n)| Ok((version_u32(v)?, n.unsigned_abs())))
                .collect::<Result<_>>()?,
        })
    }

    /// Opens every row; returns (rows that opened, rows that did not). Used by integrity checks
    /// and the crash test: a half-written row would show up as a failure.
    pub async fn verify_all(&self) -> Result<(u64, u64)> {
        let rows = self.all_rows().await?;
        let mut ok = 0;
        let mut bad = 0;
        for (kind, key_hmac, _, _, _, sealed) in rows {
            let opened = self
                .inner
                .keyring
                .open(&ObjectContext::new(&kind, &key_hmac), &sealed)
                .map_err(StoreError::from)
                .and_then(|plain| {
                    codec::decode_payload(&plain).map(|p| self.key_hmac(&kind, &p.id) == key_hmac)
                });
            match opened {
                Ok(true) => ok += 1,
                _ => bad += 1,
            }
        }
        Ok((ok, bad))
    }

    async fn all_rows(&self) -> Result<Vec<RecordRow>> {
        Ok(with_pool!(self.pool(), p => {
            sqlx::query_as::<_, RecordRow>(
                "SELECT kind, key_hmac, created_at, updated_at, expires_at, sealed FROM records ORDER BY kind, key_hmac",
            )
            .fetch_all(p)
            .await?
        }))
    }

    /// Key ring status with per-version usage.
    pub async fn key_status(&self) -> Result<KeyStatus> {
        self.inner.db.key_status_of(&self.inner.keyring).await
    }

    /// Creates a new KEK version and makes it active. Existing data stays readable; run
    /// [`Store::rewrap_all`] to move it to the new version.
    pub async fn rotate_kek(&self) -> Result<u32> {
        let changed = self.inner.keyring.rotate()?;
        self.inner
            .db
            .persist_key_records(self.inner.keyring.key_id(), &changed)
            .await?;
        Ok(self.inner.keyring.active_version()?)
    }

    /// Re-wraps every data key not under the active version (records and the index key),
    /// without touching payloads. Returns how many were re-wrapped.
    pub async fn rewrap_all(&self) -> Result<u64> {
        let active = version_i64(self.inner.keyring.active_version()?);
        let mut count = 0;
        loop {
            let batch: Vec<(String, Vec<u8>, Vec<u8>)> = with_pool!(self.pool(), p => {
                sqlx::query_as::<_, (String, Vec<u8>, Vec<u8>)>(
                    "SELECT kind, key_hmac, sealed FROM records WHERE kek_version <> $1 LIMIT 500",
                )
                .bind(active)
                .fetch_all(p)
                .await?
            });
            if batch.is_empty() {
                break;
            }
            for (kind, key_hmac, sealed) in batch {
                let Some(rewrapped) = self
                    .inner
                    .keyring
                    .rewrap(&ObjectContext::new(&kind, &key_hmac), &sealed)?
                else {
                    continue;
                };
                // Compare-and-swap on the old ciphertext so a concurrent write is never lost.
                with_pool!(self.pool(), p => {
                    sqlx::query("UPDATE records SET sealed = $1, kek_version = $2 WHERE kind = $3 AND key_hmac = $4 AND sealed = $5")
                        .bind(&rewrapped)
                        .bind(active)
                        .bind(&kind)
                        .bind(&key_hmac)
                        .bind(&sealed)
                        .execute(p)
                        .await?;
                });
                count += 1;
            }
        }
        let meta: Vec<(String, Vec<u8>)> = with_pool!(self.pool(), p => {
            sqlx::query_as::<_, (String, Vec<u8>)>("SELECT name, sealed FROM store_meta WHERE kek_version <> $1")
                .bind(active)
                .fetch_all(p)
                .await?
        });
        for (name, sealed) in meta {
            let ctx = if name == HMAC_KEY_KIND {
                ObjectContext::new(HMAC_KEY_KIND, HMAC_KEY_ID)
            } else {
                return Err(StoreError::Corrupt("unknown store_meta entry"));
            };
            if let Some(rewrapped) = self.inner.keyring.rewrap(&ctx, &sealed)? {
                with_pool!(self.pool(), p => {
                    sqlx::query("UPDATE store_meta SET sealed = $1, kek_version = $2 WHERE name = $3 AND sealed = $4")
                        .bind(&rewrapped)
                        .bind(active)
                        .bind(&name)
                        .bind(&sealed)
                        .execute(p)
                        .await?;
                });
                count += 1;
            }
        }
        Ok(count)
    }

    /// Destroys KEK `version`. Refused while any data key is still wrapped under it or when it
    /// is the active version.
    pub async fn retire_kek(&self, version: u32) -> Result<()> {
        let status = self.key_status().await?;
        let in_use = status
            .versions
            .iter()
            .find(|v| v.version == version)
            .map_or(0, |v| v.wraps);
        let record = self.inner.keyring.retire(version, in_use)?;
        self.inner
            .db
            .persist_key_records(self.inner.keyring.key_id(), &[record])
            .await
    }
}
