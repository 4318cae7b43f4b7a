//! phigate's authentication and authorization core. One job: decide who is asking and whether
//! they may do what they ask, and leave an audit record of every such decision that matters.
//!
//! # What it provides
//!
//! * **API keys** ([`Access::create_api_key`], `rotate`, `revoke`, `list`,
//!   [`Access::authenticate_api_key`]): `phg_<id>_<secret>`, per service, role-scoped, shown
//!   once, stored as HMAC-SHA256 under a sealed server key (see [`apikey`] for why not argon2id),
//!   rotation with an overlap window, expiry, last-used time.
//! * **JWTs** ([`Access::issue_token`], [`Access::validate_token`], [`Access::verify_token`]
//!   (the caller audits), [`Access::jwks`],
//!   [`Access::rotate_signing_key`], [`Access::revoke_token`]): compact JWS with EdDSA/Ed25519,
//!   15-minute lifetime, algorithm pinned, `kid` rotation, revocation by `jti` (see [`jwt`]).
//! * **Admin users** ([`Access::create_bootstrap_secret`], [`Access::enroll_admin`],
//!   [`Access::login_admin`], [`Access::verify_admin_totp`]): argon2id passwords, TOTP per
//!   RFC 6238 ([`totp`]), single-use codes, lockout (5 failures → 15 minutes by default).
//! * **Authorization** ([`Access::authorize`]): Cedar policies (defaults in
//!   `policies/default.cedar`, schema in `policies/phigate.cedarschema`), roles, patient-level
//!   scope from the care team the caller supplies plus explicit grants, break-glass
//!   ([`Access::break_glass`], [`Access::list_break_glass`]), policy replacement with
//!   validation ([`Access::replace_policies`]). See [`policy`].
//!
//! # Security invariants
//!
//! * Secrets (API keys, tokens, passwords, TOTP secrets, bootstrap secrets) travel in
//!   `secrecy` types, are zeroized, and never appear in Debug output, errors or audit events.
//!   Stored verifiers are keyed hashes (API keys, bootstrap secret) or argon2id (passwords);
//!   TOTP secrets and JWT private keys are sealed under the key ring (`sealed`).
//! * Comparisons of secrets and codes are constant-time.
//! * Revocations, expiry, grants and the policy version are cached in memory for the hot path,
//!   but every cached read first checks a generation that each such change moves (a row on
//!   PostgreSQL, a file next to the SQLite database), so several instances agree at once:
//!   nothing is cached that could keep a revoked credential alive (staleness bound zero; see
//!   [`cache`](crate::cache) for the design). Lockouts are read from the database at use time.
//! * Every authentication attempt (with its reason code), credential lifecycle step, policy
//!   change (before/after text and hashes), grant and break-glass is written to the audit log
//!   before the operation takes effect; if the log cannot record it the operation fails with
//!   [`AccessError::AuditUnavailable`] (the server answers 503).
//! * Deny by default; forbid beats permit; a read of a patient outside the principal's scope
//!   is [`Decision::NotFound`], indistinguishable from a missing patient.
//! * Patient ids and free-text reasons are PHI: they arrive as [`phi::Sensitive`], are stored
//!   only as keyed hashes (lookup) and sealed ciphertext (reasons), and never reach an error.
//!
//! Decisions where a spec and security disagreed:
//! * API keys cannot carry the `admin` role: admin access needs a password and a TOTP code.
//! * A principal holding `analyst`, `auditor` or `admin` gets no PHI even if it also holds a
//!   clinical role (separation of duties, a `forbid` in the default policies).
//! * Every JWT validation is audited, not only token issuance: the spec's "all attempts".
//!
//! # How to use from the server
//!
//! ```text
//! let access = Access::open(AccessConfig::new(
//!     Backend::Sqlite { path: data_dir.join("access.db") },   // or Backend::Postgres {..}
//!     key_provider,                     // Arc<dyn sealed::KeyProvider>, as for the store
//!     audit_log.clone(), hasher,        // audit::AuditLog and Arc<dyn PatientHasher>
//!     "https://gateway.example", "phigate-api",               // iss, aud
//! )).await?;                            // Access is Clone (Arc inside): put it in app state
//!
//! // POST /auth/token
//! let p = access.authenticate_api_key(&key, &meta).await?;           // X-API-Key / Bearer phg_
//! let p = access.login_admin(user, &password, totp, &meta).await?;   // admin password + TOTP
//! let p = Principal::new("service:lab", roles, AuthMethod::Mtls)?;   // from the mTLS SAN map
//! let t = access.issue_token(&p, purpose).await?;                    // t.token, t.expires_in
//! // every request:
//! let p = access.validate_token(&bearer, &meta).await?;              // 401 on AccessError::Token
//! let d = access.authorize(&AuthzRequest { principal: &p, action: Action::ReadPhi,
//!             resource: Resource::Patient(&scope), purpose, reason: Some(&reason) }).await?;
//! match d { Decision::Allow {..} => .., Decision::Forbidden {..} => 403,
//!           Decision::NotFound {..} => 404 /* same body as a missing patient */ }
//! // GET /.well-known/jwks.json → access.jwks().await?
//! // POST /auth/break-glass   → access.break_glass(&p, &scope, &reason, &meta).await?
//! // GET /admin/break-glass   → access.list_break_glass(None).await?
//! // PUT /admin/policies      → access.replace_policies(&admin, text).await? (InvalidPolicy → 400)
//! ```
//!
//! Error mapping: `Token`/`Credential` → 401 (`Locked` may be 429), `MissingPurpose`,
//! `MissingReason`, `UnknownPurpose`, `InvalidArgument`, `InvalidPolicy` → 400, `NotFound` →
//! 404, `Conflict` → 409, `AuditUnavailable` → 503, others → 500.
//!
//! With PKCS#11 the key provider passed here must use a label prefix other than the store's
//! (for example `phigate-kek-access`): this crate keeps its own KEK versions (`access_kek`).

#![forbid(unsafe_code)]

mod admin;
pub mod apikey;
mod auditing;
pub mod cache;
mod db;
mod error;
pub mod jwt;
pub mod policy;
mod principal;
pub mod totp;

use std::sync::{Arc, Mutex};

use audit::{AuditLog, PatientHasher};
use aws_lc_rs::hmac;
use db::with_pool;
use sealed::{KeyProvider, Keyring};

pub use admin::{AdminChange, AdminEnrollment, AdminInfo, LockoutPolicy, MIN_PASSWORD_LEN};
pub use apikey::{API_KEY_PREFIX, ApiKeyInfo, NewApiKey};
pub use audit::{AuthMethod, PurposeOfUse};
pub use db::{Backend, Clock, ManualClock, SCHEMA_VERSION, SystemClock};
pub use error::{AccessError, CredentialError, Result, TokenError};
pub use jwt::{IssuedToken, SigningKeyInfo, TokenVerdict};
pub use policy::{
    Action, AuthzRequest, BreakGlassGrant, BreakGlassRecord, DEFAULT_POLICIES, Decision,
    PatientScope, PolicyInfo, Resource, SCHEMA,
};
pub use principal::{ALL_ROLES, Principal, RequestMeta, Role, parse_purpose, purpose_code};

/// Longest token lifetime this crate issues or accepts (15 minutes).
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 15 * 60;
/// Default break-glass duration (60 minutes).
pub const DEFAULT_BREAK_GLASS_SECS: i64 = 60 * 60;

/// Everything [`Access::open`] needs.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// Where the access tables live.
    pub backend: Backend,
    /// KEK provider for the access key ring.
    pub key_provider: Arc<dyn KeyProvider>,
    /// The audit log every event goes to.
    pub audit: AuditLog,
    /// Keyed hashes of patient ids and reasons for audit events.
    pub hasher: Arc<dyn PatientHasher>,
    /// `iss` of issued tokens (and the only one accepted).
    pub issuer: String,
    /// `aud` of issued tokens (and the only one accepted).
    pub audience: String,
    /// Token lifetime in seconds: 1..=900 (default 900).
    pub token_lifetime_secs: i64,
    /// Clock skew tolerated on `exp`/`nbf`/`iat`, seconds: 0..=60 (default 30).
    pub leeway_secs: i64,
    /// Admin lockout.
    pub lockout: LockoutPolicy,
    /// Break-glass duration in seconds (default 3600).
    pub break_glass_secs: i64,
    /// Time source.
    pub clock: Arc<dyn Clock>,
}

impl AccessConfig {
    /// A configuration with the defaults: 15-minute tokens, 30 s leeway, lockout after 5
    /// failures for 15 minutes, 60-minute break-glass, the system clock.
    pub fn new(
        backend: Backend,
        key_provider: Arc<dyn KeyProvider>,
        audit: AuditLog,
        hasher: Arc<dyn PatientHasher>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            backend,
            key_provider,
            audit,
            hasher,
            issuer: issuer.into(),
            audience: audience.into(),
            token_lifetime_secs: MAX_TOKEN_LIFETIME_SECS,
            leeway_secs: 30,
            lockout: LockoutPolicy::default(),
            break_glass_secs: DEFAULT_BREAK_GLASS_SECS,
            clock: Arc::new(SystemClock),
        }
    }

    fn check(&self) -> Result<()> {
        let text_ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
        if !text_ok(&self.issuer) || !text_ok(&self.audience) {
            return Err(AccessError::Config(
                "issuer and audience must be 1-256 printable characters".into(),
            ));
        }
        if !(1..=MAX_TOKEN_LIFETIME_SECS).contains(&self.token_lifetime_secs) {
            return Err(AccessError::Config(
                "token lifetime must be 1..=900 seconds (15 minutes at most)".into(),
            ));
        }
        if !(0..=60).contains(&self.leeway_secs) {
            return Err(AccessError::Config(
                "token leeway must be 0..=60 seconds".into(),
            ));
        }
        if self.lockout.max_failures == 0 || self.lockout.lock_secs <= 0 {
            return Err(AccessError::Config(
                "lockout needs at least 1 failure and a positive duration".into(),
            ));
        }
        if !(1..=24 * 3600).contains(&self.break_glass_secs) {
            return Err(AccessError::Config(
                "break-glass duration must be 1..=86400 seconds".into(),
            ));
        }
        Ok(())
    }
}

struct Inner {
    config: AccessConfig,
    pool: db::Pool,
    keyring: Keyring,
    api_key_mac: hmac::Key,
    patient_mac: hmac::Key,
    auditor: auditing::Auditor,
    signer: Mutex<Option<jwt::CachedSigner>>,
    policies: std::sync::RwLock<Arc<policy::LoadedPolicies>>,
    schema: cedar_policy::Schema,
    caches: cache::Caches,
}

/// The access service. Cheap to clone; all clones share one pool and one policy cache.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("backend", &self.inner.config.backend)
            .field("issuer", &self.inner.config.issuer)
            .field("audience", &self.inner.config.audience)
            .finish_non_exhaustive()
    }
}

tokio::task_local! {
    /// The epoch of the request being served, and the [`Access`] it belongs to.
    static REQUEST_EPOCH: std::cell::Cell<Option<(usize, u64)>>;
}

/// Runs one request with one generation check: the first [`Access::epoch`] inside `request`
/// reads the generation, later ones reuse its epoch (a governed request used to read it three
/// times: token, decision, care team).
///
/// The staleness bound of [`crate::cache`] is unchanged: a change that returned before the
/// request started is in force for the whole request. A change made by another instance while
/// the request runs applies from its next request, which is also what the three separate
/// checks gave for any check already passed. A change made through `Access` inside the request
/// ends the reuse, so the request's own later checks see it.
pub async fn request_scope<F: std::future::Future>(request: F) -> F::Output {
    REQUEST_EPOCH
        .scope(std::cell::Cell::new(None), request)
        .await
}

/// Records a change made outside this crate that access decisions depend on (care-team records
/// written by a sync), for a process that has no [`Access`] open: every gateway instance on
/// `backend` starts a new cache epoch at its next request. On SQLite this writes the generation
/// file next to the database (nothing else is created); on PostgreSQL it increments the
/// generation row (creating the access tables if missing).
pub async fn bump_generation(backend: &Backend) -> Result<()> {
    match backend {
        Backend::Sqlite { path } => cache::write_generation_file(&cache::generation_file(path)),
        Backend::Postgres { .. } => {
            let pool = db::Pool::connect(backend).await?;
            with_pool!(&pool, p => {
                sqlx::query("UPDATE access_generation SET value = value + 1 WHERE id = 1")
                    .execute(p)
                    .await
                    .map_err(error::db("recording an access change"))?;
            });
            Ok(())
        }
    }
}

impl Access {
    /// Connects, migrates (refusing a newer schema), loads or creates the key ring, the server
    /// secrets, the first signing key and the default policies.
    pub async fn open(config: AccessConfig) -> Result<Self> {
        config.check()?;
        let pool = db::Pool::connect(&config.backend).await?;
        let keyring = pool.keyring(config.key_provider.clone()).await?;
        let now = config.clock.now();
        let api_key_secret = pool.server_secret(&keyring, "api-key-mac", now).await?;
        let patient_secret = pool
            .server_secret(&keyring, "patient-index-mac", now)
            .await?;
        let schema = policy::schema()?;
        let policies = policy::load_initial(&pool, &schema, now).await?;
        let source = match &config.backend {
            Backend::Sqlite { path } => cache::GenerationSource::File(cache::generation_file(path)),
            Backend::Postgres { .. } => cache::GenerationSource::Row,
        };
        let access = Self {
            inner: Arc::new(Inner {
                auditor: auditing::Auditor {
                    log: config.audit.clone(),
                    hasher: config.hasher.clone(),
                },
                config,
                pool,
                keyring,
                api_key_mac: hmac::Key::new(hmac::HMAC_SHA256, &api_key_secret),
                patient_mac: hmac::Key::new(hmac::HMAC_SHA256, &patient_secret),
                signer: Mutex::new(None),
                policies: std::sync::RwLock::new(Arc::new(policies)),
                schema,
                caches: cache::Caches::new(source),
            }),
        };
        access.ensure_signing_key().await?;
        Ok(access)
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.config.clock.now()
    }

    /// The configured issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    /// The configured audience (`aud`).
    pub fn audience(&self) -> &str {
        &self.inner.config.audience
    }

    /// The current cache epoch: checks the generation (one primary-key read on PostgreSQL, one
    /// small file read on SQLite) and returns a number that changes whenever anything the
    /// caches depend on changed on any instance since the last call. Servers tag their own
    /// derived caches (care teams) with it; see [`crate::cache`].
    ///
    /// Inside [`request_scope`] the generation is checked once, by the first call, and later
    /// calls of the same request reuse that epoch until the request itself changes something.
    pub async fn epoch(&self) -> Result<u64> {
        let me = Arc::as_ptr(&self.inner) as usize;
        if let Ok(Some((owner, epoch))) = REQUEST_EPOCH.try_with(std::cell::Cell::get)
            && owner == me
        {
            return Ok(epoch);
        }
        let epoch = self.inner.caches.sync(&self.inner.pool).await?;
        let _outside_a_request = REQUEST_EPOCH.try_with(|memo| memo.set(Some((me, epoch))));
        Ok(epoch)
    }

    /// Records a change made outside this crate that decisions depend on (care-team records
    /// synced from the EHR): every instance starts a new epoch at its next request.
    pub async fn note_external_change(&self) -> Result<()> {
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(error::db("recording an access change"))?;
            cache::bump_in_tx!(tx);
            tx.commit().await.map_err(error::db("recording an access change"))?;
        });
        self.touch_generation()
    }

    /// On SQLite, writes a new generation into the generation file (called before and after
    /// committing a change; see [`crate::cache`]). Nothing to do on PostgreSQL, where the
    /// change's transaction increments the generation row.
    pub(crate) fn touch_generation(&self) -> Result<()> {
        // This request changed something: its next check reads the generation again.
        let me = Arc::as_ptr(&self.inner) as usize;
        let _outside_a_request = REQUEST_EPOCH.try_with(|memo| {
            if memo.get().is_some_and(|(owner, _)| owner == me) {
                memo.set(None);
            }
        });
        match self.inner.caches.source() {
            cache::GenerationSource::File(path) => cache::write_generation_file(path),
            cache::GenerationSource::Row => Ok(()),
        }
    }

    /// Whether the database answers (for `/ready`).
    pub async fn ping(&self) -> Result<()> {
        with_pool!(&self.inner.pool, p => {
            sqlx::query("SELECT 1").execute(p).await.map_err(error::db("checking the access database"))?;
        });
        Ok(())
    }
}
