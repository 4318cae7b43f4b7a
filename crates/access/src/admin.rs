//! Admin users: argon2id password hashes, TOTP (RFC 6238) required at every login, single-use
//! codes, lockout after repeated failures, and the one-time bootstrap secret that creates the
//! first admin.
//!
//! Bootstrap: on a fresh installation the server calls [`Access::create_bootstrap_secret`] and
//! prints the secret once. [`Access::enroll_admin`] consumes it (single use, expiring, stored
//! only as a keyed hash) to create the first admin with a password of their choosing and a new
//! TOTP secret, shown once for the authenticator app. Once an admin exists no bootstrap secret
//! can be created.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use audit::{AuthFailureReason, AuthMethod, ConfigChange, Event, KeyAction};
use aws_lc_rs::hmac;
use base64::Engine as _;
use sealed::ObjectContext;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::Access;
use crate::db::with_pool;
use crate::error::{AccessError, CredentialError, Result, db};
use crate::principal::{Principal, RequestMeta, Role, validate_name};
use crate::totp::{self, TotpAlgorithm};

const TOTP_KIND: &str = "access.admin-totp";
const BOOTSTRAP_PREFIX: &str = "phgboot_";
/// Shortest accepted admin password.
pub const MIN_PASSWORD_LEN: usize = 12;
const MAX_PASSWORD_LEN: usize = 1024;

/// What a new admin needs for their authenticator app. Shown once.
#[derive(Debug)]
pub struct AdminEnrollment {
    /// The admin's principal id, `admin:<username>`.
    pub principal_id: String,
    /// The TOTP secret in base32.
    pub totp_secret: SecretString,
    /// An `otpauth://totp/...` URI (for a QR code).
    pub otpauth_uri: SecretString,
}

/// Lockout policy for admin logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive failures that lock the account.
    pub max_failures: u32,
    /// How long the lock lasts, in seconds.
    pub lock_secs: i64,
}

impl Default for LockoutPolicy {
    /// 5 failures lock the account for 15 minutes.
    fn default() -> Self {
        Self {
            max_failures: 5,
            lock_secs: 15 * 60,
        }
    }
}

fn argon2() -> Argon2<'static> {
    // Argon2id v1.3, m = 19 MiB, t = 2, p = 1 (the crate's defaults; OWASP's recommendation).
    Argon2::default()
}

fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| AccessError::Crypto("random generator"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| AccessError::Crypto("salt encoding"))?;
    Ok(argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|_| AccessError::Crypto("argon2id hashing"))?
        .to_string())
}

/// A hash to verify against when the user does not exist, so that both paths cost one argon2.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password("phigate-no-such-user-placeholder").unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3xq0TcYvWJuDBKgmy2jrDDZgPUVmt0tZyb2BrbCSgaQ".into()
        })
    })
}

async fn verify_password(password: Zeroizing<String>, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                argon2()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

fn check_password_policy(password: &str) -> Result<()> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(AccessError::InvalidArgument(format!(
            "the password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AccessError::InvalidArgument(
            "the password is longer than 1024 bytes".into(),
        ));
    }
    Ok(())
}

/// password_hash, totp_sealed, totp_algorithm, failed_count, locked_until, last_totp_step,
/// disabled_at.
type AdminRow = (String, Vec<u8>, String, i64, Option<i64>, i64, Option<i64>);

/// An admin user as listed for other admins (no secrets, no hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminInfo {
    /// User name.
    pub username: String,
    /// Principal id, `admin:<username>`.
    pub principal: String,
    /// Creation time (seconds since the epoch).
    pub created_at: i64,
    /// When the account was disabled, if it is.
    pub disabled_at: Option<i64>,
    /// End of the current lockout, if the account is locked now.
    pub locked_until: Option<i64>,
    /// Consecutive failures counted towards the next lockout.
    pub failed_count: i64,
}

/// A change an admin makes to another admin's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminChange {
    /// Disable: no sign-in, no step-up, so no admin operation, until enabled.
    Disable,
    /// Enable a disabled account.
    Enable,
    /// End a lockout and reset the failure count.
    Unlock,
}

impl AdminChange {
    fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::Unlock => "unlock",
        }
    }
}

type AdminListRow = (String, i64, Option<i64>, Option<i64>, i64);

impl Access {
    fn bootstrap_mac(&self, secret: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.inner.api_key_mac);
        ctx.update(b"phigate/access/bootstrap/v1\0");
        ctx.update(secret.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// Number of admin users.
    pub async fn admin_count(&self) -> Result<u64> {
        let n: i64 = with_pool!(&self.inner.pool, p => {
            sqlx::query_scalar("SELECT COUNT(*) FROM access_admins")
                .fetch_one(p)
                .await
                .map_err(db("counting admins"))?
        });
        Ok(n.unsigned_abs())
    }

    /// Whether an unused, unexpired bootstrap secret exists (for `phigate doctor`: it should
    /// not, in production).
    pub async fn bootstrap_pending(&self) -> Result<bool> {
        let now = self.now();
        let row: Option<(i64, Option<i64>)> = with_pool!(&self.inner.pool, p => {
            sqlx::query_as("SELECT expires_at, used_at FROM access_bootstrap WHERE id = 1")
                .fetch_optional(p)
                .await
                .map_err(db("reading the bootstrap state"))?
        });
        Ok(row.is_some_and(|(exp, used)| used.is_none() && exp > now))
    }

    /// Creates the one-time admin bootstrap secret (replacing an unused one) when no admin
    /// exists yet; returns `None` once an admin exists. Print it once, never log it.
    pub async fn create_bootstrap_secret(&self, ttl_secs: u64) -> Result<Option<SecretString>> {
        if self.admin_count().await? > 0 {
            return Ok(None);
        }
        let ttl = i64::try_from(ttl_secs.clamp(60, 7 * 24 * 3600)).unwrap_or(3600);
        let mut raw = Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(raw.as_mut()).map_err(|_| AccessError::Crypto("random generator"))?;
        let secret = Zeroizing::new(format!(
            "{BOOTSTRAP_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref())
        ));
        let mac = self.bootstrap_mac(&secret);
        let now = self.now();
        let ctx = "creating the bootstrap secret";
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            sqlx::query(
                "INSERT INTO access_bootstrap (id, mac, created_at, expires_at, used_at) VALUES (1, $1, $2, $3, NULL)
                 ON CONFLICT (id) DO UPDATE SET mac = excluded.mac, created_at = excluded.created_at, expires_at = excluded.expires_at, used_at = NULL",
            )
            .bind(&mac)
            .bind(now)
            .bind(now + ttl)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            self.inner
                .auditor
                .key_lifecycle("system", "admin-bootstrap", "bootstrap-secret", KeyAction::Generated)
                .await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        Ok(Some(SecretString::from(secret.as_str())))
    }

    /// Creates the first admin with the one-time bootstrap secret. The attempt is audited as an
    /// authentication (method `password_totp`); the new admin as a configuration change.
    pub async fn enroll_admin(
        &self,
        bootstrap_secret: &SecretString,
        username: &str,
        password: &SecretString,
        meta: &RequestMeta,
    ) -> Result<AdminEnrollment> {
        validate_name("username", username)?;
        check_password_policy(password.expose_secret())?;
        let now = self.now();
        let row: Option<(Vec<u8>, i64, Option<i64>)> = with_pool!(&self.inner.pool, p => {
            sqlx::query_as("SELECT mac, expires_at, used_at FROM access_bootstrap WHERE id = 1")
                .fetch_optional(p)
                .await
                .map_err(db("reading the bootstrap secret"))?
        });
        let presented = self.bootstrap_mac(bootstrap_secret.expose_secret());
        let refusal = match &row {
            None => Some(CredentialError::Invalid),
            Some((mac, _, _)) if !bool::from(mac.as_slice().ct_eq(presented.as_slice())) => {
                Some(CredentialError::Invalid)
            }
            Some((_, _, Some(_))) => Some(CredentialError::Revoked),
            Some((_, exp, None)) if *exp <= now => Some(CredentialError::Expired),
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            self.inner
                .auditor
                .authentication(
                    AuthMethod::PasswordTotp,
                    None,
                    meta,
                    Some(reason.audit_reason()),
                )
                .await?;
            return Err(reason.into());
        }
        let principal_id = format!("admin:{username}");
        let enrollment = self
            .insert_admin(username, password, "system:bootstrap", Some(&presented))
            .await?;
        self.inner
            .auditor
            .authentication(AuthMethod::PasswordTotp, Some(&principal_id), meta, None)
            .await?;
        Ok(enrollment)
    }

    /// Creates another admin; only an admin who authenticated with password and TOTP may.
    pub async fn create_admin(
        &self,
        actor: &Principal,
        username: &str,
        password: &SecretString,
    ) -> Result<AdminEnrollment> {
        if !actor.has_role(Role::Admin) || actor.method != AuthMethod::PasswordTotp {
            return Err(AccessError::InvalidArgument(
                "only an admin signed in with password and TOTP can create admins".into(),
            ));
        }
        validate_name("username", username)?;
        check_password_policy(password.expose_secret())?;
        self.insert_admin(username, password, &actor.id, None).await
    }

    async fn insert_admin(
        &self,
        username: &str,
        password: &SecretString,
        actor: &str,
        consume_bootstrap: Option<&[u8]>,
    ) -> Result<AdminEnrollment> {
        let pw = Zeroizing::new(password.expose_secret().to_owned());
        let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
            .await
            .map_err(|_| AccessError::Crypto("argon2id hashing"))??;
        let mut secret = Zeroizing::new([0u8; 20]);
        aws_lc_rs::rand::fill(secret.as_mut())
            .map_err(|_| AccessError::Crypto("random generator"))?;
        let sealed = self.inner.keyring.seal(
            &ObjectContext::new(TOTP_KIND, username.as_bytes()),
            secret.as_ref(),
        )?;
        let now = self.now();
        let principal_id = format!("admin:{username}");
        let ctx = "creating an admin";
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            if let Some(mac) = consume_bootstrap {
                let done = sqlx::query("UPDATE access_bootstrap SET used_at = $1 WHERE id = 1 AND used_at IS NULL AND mac = $2")
                    .bind(now)
                    .bind(mac)
                    .execute(&mut *tx)
                    .await
                    .map_err(db(ctx))?;
                if done.rows_affected() != 1 {
                    return Err(CredentialError::Revoked.into());
                }
            }
            let done = sqlx::query(
                "INSERT INTO access_admins (username, password_hash, totp_sealed, totp_algorithm, failed_count, locked_until, last_totp_step, created_at)
                 VALUES ($1, $2, $3, $4, 0, NULL, 0, $5) ON CONFLICT (username) DO NOTHING",
            )
            .bind(username)
            .bind(&hash)
            .bind(&sealed)
            .bind(TotpAlgorithm::Sha1.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            if done.rows_affected() != 1 {
                return Err(AccessError::Conflict("an admin with this username exists"));
            }
            let change = ConfigChange::new(
                actor,
                "access.admins",
                json!({ "added": null }),
                json!({ "added": principal_id }),
                self.inner.auditor.hasher.as_ref(),
            );
            self.inner.auditor.append(Event::ConfigChange(change), None).await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        let b32 = Zeroizing::new(totp::base32_encode(secret.as_ref()));
        let uri = format!(
            "otpauth://totp/phigate:{username}?secret={}&issuer=phigate&algorithm=SHA1&digits={}&period={}",
            b32.as_str(),
            totp::DIGITS,
            totp::STEP_SECS
        );
        Ok(AdminEnrollment {
            principal_id,
            totp_secret: SecretString::from(b32.as_str()),
            otpauth_uri: SecretString::from(uri),
        })
    }

    /// Every admin user, by user name.
    pub async fn list_admins(&self) -> Result<Vec<AdminInfo>> {
        let now = self.now();
        let rows: Vec<AdminListRow> = with_pool!(&self.inner.pool, p => {
            sqlx::query_as(
                "SELECT username, created_at, disabled_at, locked_until, failed_count FROM access_admins ORDER BY username",
            )
            .fetch_all(p)
            .await
            .map_err(db("listing admins"))?
        });
        Ok(rows
            .into_iter()
            .map(
                |(username, created_at, disabled_at, locked_until, failed_count)| AdminInfo {
                    principal: format!("admin:{username}"),
                    username,
                    created_at,
                    disabled_at,
                    locked_until: locked_until.filter(|t| *t > now),
                    failed_count,
                },
            )
            .collect())
    }

    /// One admin user.
    pub async fn admin(&self, username: &str) -> Result<AdminInfo> {
        validate_name("username", username)?;
        self.list_admins()
            .await?
            .into_iter()
            .find(|a| a.username == username)
            .ok_or(AccessError::NotFound("no admin with this username"))
    }

    /// Disables, enables or unlocks another admin's account; audited as a configuration
    /// change (before and after) before it takes effect, on every instance at once. An admin
    /// cannot disable their own account (so the last admin cannot lock everyone out); disabling
    /// a disabled account or enabling an enabled one is a [`AccessError::Conflict`].
    pub async fn change_admin(
        &self,
        actor: &Principal,
        username: &str,
        change: AdminChange,
    ) -> Result<AdminInfo> {
        if !actor.has_role(Role::Admin) {
            return Err(AccessError::InvalidArgument(
                "only an admin can change admin accounts".into(),
            ));
        }
        let before = self.admin(username).await?;
        if change == AdminChange::Disable && actor.id == before.principal {
            return Err(AccessError::Conflict(
                "an admin cannot disable their own account",
            ));
        }
        let now = self.now();
        let sql = match change {
            AdminChange::Disable => {
                if before.disabled_at.is_some() {
                    return Err(AccessError::Conflict("the account is already disabled"));
                }
                "UPDATE access_admins SET disabled_at = $2 WHERE username = $1 AND disabled_at IS NULL"
            }
            AdminChange::Enable => {
                if before.disabled_at.is_none() {
                    return Err(AccessError::Conflict("the account is not disabled"));
                }
                "UPDATE access_admins SET disabled_at = NULL WHERE username = $1 AND disabled_at IS NOT NULL"
            }
            AdminChange::Unlock => {
                "UPDATE access_admins SET locked_until = NULL, failed_count = 0 WHERE username = $1"
            }
        };
        let state = |a: &AdminInfo| {
            json!({
                "admin": a.principal,
                "disabled": a.disabled_at.is_some(),
                "locked": a.locked_until.is_some(),
                "failed_count": a.failed_count,
            })
        };
        let ctx = "changing an admin";
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            let mut query = sqlx::query(sql).bind(username);
            if change == AdminChange::Disable {
                query = query.bind(now);
            }
            let done = query
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            if done.rows_affected() != 1 {
                return Err(AccessError::Conflict("the account changed concurrently"));
            }
            let mut after = state(&before);
            match change {
                AdminChange::Disable => after["disabled"] = json!(true),
                AdminChange::Enable => after["disabled"] = json!(false),
                AdminChange::Unlock => {
                    after["locked"] = json!(false);
                    after["failed_count"] = json!(0);
                }
            }
            after["change"] = json!(change.as_str());
            let event = ConfigChange::new(
                actor.id.clone(),
                "access.admins",
                state(&before),
                after,
                self.inner.auditor.hasher.as_ref(),
            );
            self.inner.auditor.append(Event::ConfigChange(event), None).await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.admin(username).await
    }

    /// Admin login: password and TOTP code. Failures count towards the lockout; a code is
    /// accepted once. Every attempt is audited with its reason code.
    pub async fn login_admin(
        &self,
        username: &str,
        password: &SecretString,
        totp_code: &str,
        meta: &RequestMeta,
    ) -> Result<Principal> {
        let result = self.check_admin(username, Some(password), totp_code).await;
        self.finish_admin_attempt(username, result, meta).await
    }

    /// Step-up check for an admin operation: a fresh TOTP code from an admin already signed in
    /// (single use and lockout as for login).
    pub async fn verify_admin_totp(
        &self,
        admin: &Principal,
        totp_code: &str,
        meta: &RequestMeta,
    ) -> Result<Principal> {
        let username = admin
            .id
            .strip_prefix("admin:")
            .filter(|_| admin.has_role(Role::Admin))
            .ok_or_else(|| AccessError::InvalidArgument("not an admin principal".into()))?
            .to_owned();
        let result = self.check_admin(&username, None, totp_code).await;
        self.finish_admin_attempt(&username, result, meta).await
    }

    async fn finish_admin_attempt(
        &self,
        username: &str,
        result: std::result::Result<Principal, AdminCheck>,
        meta: &RequestMeta,
    ) -> Result<Principal> {
        let claimed = validate_name("username", username)
            .ok()
            .map(|()| format!("admin:{username}"));
        match result {
            Ok(principal) => {
                self.inner
                    .auditor
                    .authentication(AuthMethod::PasswordTotp, Some(&principal.id), meta, None)
                    .await?;
                Ok(principal)
            }
            Err(AdminCheck::Refused(reason)) => {
                let code: AuthFailureReason = reason.audit_reason();
                self.inner
                    .auditor
                    .authentication(
                        AuthMethod::PasswordTotp,
                        claimed.as_deref(),
                        meta,
                        Some(code),
                    )
                    .await?;
                Err(reason.into())
            }
            Err(AdminCheck::Failed(e)) => Err(e),
        }
    }

    async fn record_admin_failure(&self, username: &str) -> std::result::Result<(), AdminCheck> {
        let now = self.now();
        let policy = self.inner.config.lockout;
        with_pool!(&self.inner.pool, p => {
            sqlx::query(
                "UPDATE access_admins SET
                    locked_until = CASE WHEN failed_count + 1 >= $1 THEN $2 ELSE locked_until END,
                    failed_count = CASE WHEN failed_count + 1 >= $1 THEN 0 ELSE failed_count + 1 END
                 WHERE username = $3",
            )
            .bind(i64::from(policy.max_failures.max(1)))
            .bind(now + policy.lock_secs)
            .bind(username)
            .execute(p)
            .await
            .map_err(|e| AdminCheck::Failed(db("recording a failed login")(e)))?;
        });
        Ok(())
    }

    async fn check_admin(
        &self,
        username: &str,
        password: Option<&SecretString>,
        code: &str,
    ) -> std::result::Result<Principal, AdminCheck> {
        use AdminCheck::Refused;
        if validate_name("username", username).is_err() {
            return Err(Refused(CredentialError::Malformed));
        }
        let row: Option<AdminRow> = with_pool!(&self.inner.pool, p => {
            sqlx::query_as(
                "SELECT password_hash, totp_sealed, totp_algorithm, failed_count, locked_until, last_totp_step, disabled_at FROM access_admins WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(p)
            .await
            .map_err(|e| AdminCheck::Failed(db("reading an admin")(e)))?
        });
        let now = self.now();
        if let Some((_, _, _, _, Some(until), _, _)) = &row
            && *until > now
        {
            return Err(Refused(CredentialError::Locked));
        }
        if let Some((_, _, _, _, _, _, Some(_))) = &row {
            // Disabled: refused like a revoked credential, without counting a failure.
            return Err(Refused(CredentialError::Revoked));
        }
        if let Some(password) = password {
            let hash = row
                .as_ref()
                .map_or_else(|| dummy_hash().to_owned(), |r| r.0.clone());
            let ok =
                verify_password(Zeroizing::new(password.expose_secret().to_owned()), hash).await;
            if row.is_none() {
                return Err(Refused(CredentialError::Invalid));
            }
            if !ok {
                self.record_admin_failure(username).await?;
                return Err(Refused(CredentialError::Invalid));
            }
        }
        let Some((_, totp_sealed, alg, _, _, last_step, _)) = row else {
            return Err(Refused(CredentialError::Invalid));
        };
        let alg = TotpAlgorithm::parse(&alg).ok_or(AdminCheck::Failed(AccessError::Corrupt(
            "unknown TOTP algorithm",
        )))?;
        let secret = self
            .inner
            .keyring
            .open(
                &ObjectContext::new(TOTP_KIND, username.as_bytes()),
                &totp_sealed,
            )
            .map_err(|e| AdminCheck::Failed(e.into()))?;
        let Some(step) = totp::verify(&secret, code, now, alg) else {
            self.record_admin_failure(username).await?;
            return Err(Refused(CredentialError::BadTotp));
        };
        if step <= last_step {
            self.record_admin_failure(username).await?;
            return Err(Refused(CredentialError::TotpReplay));
        }
        // Conditional on the step, so two instances cannot both accept the same code.
        let done = with_pool!(&self.inner.pool, p => {
            sqlx::query(
                "UPDATE access_admins SET last_totp_step = $1, failed_count = 0, locked_until = NULL WHERE username = $2 AND last_totp_step < $1",
            )
            .bind(step)
            .bind(username)
            .execute(p)
            .await
            .map_err(|e| AdminCheck::Failed(db("recording a login")(e)))?
            .rows_affected()
        });
        if done != 1 {
            return Err(Refused(CredentialError::TotpReplay));
        }
        Ok(Principal {
            id: format!("admin:{username}"),
            roles: vec![Role::Admin],
            method: AuthMethod::PasswordTotp,
            purpose: None,
            credential_id: None,
            expires_at: None,
        })
    }
}

enum AdminCheck {
    Refused(CredentialError),
    Failed(AccessError),
}

impl From<AccessError> for AdminCheck {
    fn from(e: AccessError) -> Self {
        Self::Failed(e)
    }
}
