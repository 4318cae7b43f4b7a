//! API keys: per service, role-scoped, shown once, stored as a keyed hash.
//!
//! Format: `phg_<id>_<secret>`: `phg_` so leaked keys are recognisable (secret scanners can
//! match `phg_[0-9a-f]{16}_[A-Za-z0-9_-]{43}`), a 64-bit random id (hex) used to find the row,
//! and 256 random bits (base64url). The database holds only
//! `HMAC-SHA256(server key, whole key)`; the server key is random, sealed under the key ring.
//!
//! Decision: a keyed HMAC rather than argon2id. The secret has 256 bits of entropy, so a slow
//! hash adds nothing against guessing, while it would cost tens of milliseconds of CPU on
//! every request; a keyed hash also means a stolen database alone does not even allow
//! offline checking of candidate keys. Comparison is constant-time.

use audit::{AuthMethod, KeyAction};
use aws_lc_rs::hmac;
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use crate::Access;
use crate::cache::ApiKeyRow;
use crate::db::with_pool;
use crate::error::{AccessError, CredentialError, Result, db};
use crate::principal::{Principal, RequestMeta, Role, validate_name};

/// Prefix of every API key.
pub const API_KEY_PREFIX: &str = "phg_";
const ID_HEX_LEN: usize = 16;
const SECRET_B64_LEN: usize = 43;
/// `last_used_at` is written at most this often per key (seconds).
const LAST_USED_GRANULARITY: i64 = 60;

/// A freshly created API key. The secret is shown once and never stored.
#[derive(Debug)]
pub struct NewApiKey {
    /// The key's public id (safe to log and show).
    pub id: String,
    /// The whole key, `phg_<id>_<secret>`: hand it to the service, then drop it.
    pub secret: SecretString,
    /// Service the key belongs to.
    pub service: String,
    /// Roles it carries.
    pub roles: Vec<Role>,
    /// Expiry (seconds since the epoch), if any.
    pub expires_at: Option<i64>,
}

/// What is known about a key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// Public id.
    pub id: String,
    /// Service.
    pub service: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// Creation time.
    pub created_at: i64,
    /// Expiry (also the end of a rotation overlap).
    pub expires_at: Option<i64>,
    /// Revocation time.
    pub revoked_at: Option<i64>,
    /// Last successful use (to the minute).
    pub last_used_at: Option<i64>,
    /// The key that replaced this one in a rotation.
    pub replaced_by: Option<String>,
}

impl ApiKeyInfo {
    /// Whether the key authenticates at `now`.
    pub fn is_usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

type KeyRow = (
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn roles_to_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn roles_from_text(text: &str) -> Result<Vec<Role>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(Role::parse)
        .collect::<Result<Vec<_>>>()
        .map_err(|_| AccessError::Corrupt("an API key has an unknown role"))
}

fn info_from_row(row: KeyRow) -> Result<ApiKeyInfo> {
    let (id, service, roles, created_at, expires_at, revoked_at, last_used_at, replaced_by) = row;
    Ok(ApiKeyInfo {
        id,
        service,
        roles: roles_from_text(&roles)?,
        created_at,
        expires_at,
        revoked_at,
        last_used_at,
        replaced_by,
    })
}

/// service, roles, mac, expires_at, revoked_at, last_used_at.
type AuthRow = (
    String,
    String,
    Vec<u8>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

const SELECT_INFO: &str = "SELECT id, service, roles, created_at, expires_at, revoked_at, last_used_at, replaced_by FROM access_api_keys";

/// Splits a presented key into id and the whole key; refuses anything not shaped like one.
fn parse_presented(presented: &str) -> Result<&str, CredentialError> {
    let rest = presented
        .strip_prefix(API_KEY_PREFIX)
        .ok_or(CredentialError::Malformed)?;
    let (id, secret) = rest.split_once('_').ok_or(CredentialError::Malformed)?;
    // The secret may itself contain '_' (base64url), so split only at the first one.
    let id_ok =
        id.len() == ID_HEX_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let secret_ok = secret.len() == SECRET_B64_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if id_ok && secret_ok {
        Ok(id)
    } else {
        Err(CredentialError::Malformed)
    }
}

pub(crate) fn mac(key: &hmac::Key, whole_key: &str) -> Vec<u8> {
    hmac::sign(key, whole_key.as_bytes()).as_ref().to_vec()
}

fn new_key_material() -> Result<(String, Zeroizing<String>)> {
    let mut id = [0u8; ID_HEX_LEN / 2];
    aws_lc_rs::rand::fill(&mut id).map_err(|_| AccessError::Crypto("random generator"))?;
    let mut secret = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(secret.as_mut()).map_err(|_| AccessError::Crypto("random generator"))?;
    let id = hex::encode(id);
    let encoded =
        Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_ref()));
    let whole = Zeroizing::new(format!("{API_KEY_PREFIX}{id}_{}", encoded.as_str()));
    Ok((id, whole))
}

fn check_roles(roles: &[Role]) -> Result<()> {
    if roles.is_empty() {
        return Err(AccessError::InvalidArgument(
            "an API key needs at least one role".into(),
        ));
    }
    if roles.contains(&Role::Admin) {
        // Admin operations require a password and a TOTP code; a bearer key cannot carry them.
        return Err(AccessError::InvalidArgument(
            "API keys cannot carry the admin role (admin access requires a password and a TOTP code)"
                .into(),
        ));
    }
    Ok(())
}

fn lifetime(seconds: Option<u64>) -> Result<Option<i64>> {
    match seconds {
        None => Ok(None),
        Some(0) => Err(AccessError::InvalidArgument(
            "expiry must be in the future".into(),
        )),
        Some(s) => i64::try_from(s)
            .map(Some)
            .map_err(|_| AccessError::InvalidArgument("expiry is too far away".into())),
    }
}

impl Access {
    /// Creates an API key for `service` with `roles`, valid for `expires_in_secs` (or until
    /// revoked). `actor` is who asked (audited as a key lifecycle event). The secret is in the
    /// result only.
    pub async fn create_api_key(
        &self,
        actor: &str,
        service: &str,
        roles: &[Role],
        expires_in_secs: Option<u64>,
    ) -> Result<NewApiKey> {
        validate_name("service name", service)?;
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        check_roles(&roles)?;
        let now = self.now();
        let expires_at = lifetime(expires_in_secs)?.map(|l| now.saturating_add(l));
        let (id, whole) = new_key_material()?;
        let mac = mac(&self.inner.api_key_mac, &whole);
        let ctx = "creating an API key";
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            sqlx::query(
                "INSERT INTO access_api_keys (id, service, roles, mac, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(service)
            .bind(roles_to_text(&roles))
            .bind(&mac)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            self.inner
                .auditor
                .key_lifecycle(actor, &format!("apikey:{id}"), "api-key", KeyAction::Generated)
                .await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        Ok(NewApiKey {
            id,
            secret: SecretString::from(whole.as_str()),
            service: service.to_owned(),
            roles,
            expires_at,
        })
    }

    /// Lists keys (all services, or one), newest first. No secrets.
    pub async fn list_api_keys(&self, service: Option<&str>) -> Result<Vec<ApiKeyInfo>> {
        let ctx = "listing API keys";
        let rows: Vec<KeyRow> = with_pool!(&self.inner.pool, p => {
            match service {
                Some(s) => sqlx::query_as(&format!("{SELECT_INFO} WHERE service = $1 ORDER BY created_at DESC, id"))
                    .bind(s)
                    .fetch_all(p)
                    .await,
                None => sqlx::query_as(&format!("{SELECT_INFO} ORDER BY created_at DESC, id"))
                    .fetch_all(p)
                    .await,
            }
            .map_err(db(ctx))?
        });
        rows.into_iter().map(info_from_row).collect()
    }

    /// One key's information.
    pub async fn api_key(&self, id: &str) -> Result<ApiKeyInfo> {
        let row: Option<KeyRow> = with_pool!(&self.inner.pool, p => {
            sqlx::query_as(&format!("{SELECT_INFO} WHERE id = $1"))
                .bind(id)
                .fetch_optional(p)
                .await
                .map_err(db("reading an API key"))?
        });
        info_from_row(row.ok_or(AccessError::NotFound("no API key with this id"))?)
    }

    /// Revokes a key; effective at once on every instance (each use reads the revocation).
    /// Revoking a revoked key is refused with [`AccessError::Conflict`].
    pub async fn revoke_api_key(&self, actor: &str, id: &str) -> Result<()> {
        self.api_key(id).await?;
        let now = self.now();
        let ctx = "revoking an API key";
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            crate::cache::bump_in_tx!(tx);
            let done = sqlx::query("UPDATE access_api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            if done.rows_affected() != 1 {
                return Err(AccessError::Conflict("the API key is already revoked"));
            }
            self.inner
                .auditor
                .key_lifecycle(actor, &format!("apikey:{id}"), "api-key", KeyAction::Retired)
                .await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.touch_generation()?;
        Ok(())
    }

    /// Rotates a key: creates a successor with the same service and roles (valid for
    /// `expires_in_secs`, or as long as the old key's original lifetime), and lets the old key
    /// work for `overlap_secs` more (or until its own expiry, if sooner). A key can be rotated
    /// once; a revoked or expired key cannot be rotated.
    pub async fn rotate_api_key(
        &self,
        actor: &str,
        id: &str,
        overlap_secs: u64,
        expires_in_secs: Option<u64>,
    ) -> Result<NewApiKey> {
        let old = self.api_key(id).await?;
        let now = self.now();
        if !old.is_usable(now) {
            return Err(AccessError::Conflict(
                "only a valid (unrevoked, unexpired) key can be rotated",
            ));
        }
        if old.replaced_by.is_some() {
            return Err(AccessError::Conflict("the API key was already rotated"));
        }
        let overlap = i64::try_from(overlap_secs)
            .map_err(|_| AccessError::InvalidArgument("overlap is too long".into()))?;
        let new_lifetime = match lifetime(expires_in_secs)? {
            Some(l) => Some(l),
            None => old.expires_at.map(|e| (e - old.created_at).max(1)),
        };
        let new_expires = new_lifetime.map(|l| now.saturating_add(l));
        let old_end = now.saturating_add(overlap);
        let old_end = old.expires_at.map_or(old_end, |e| e.min(old_end));
        let (new_id, whole) = new_key_material()?;
        let mac = mac(&self.inner.api_key_mac, &whole);
        let ctx = "rotating an API key";
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            crate::cache::bump_in_tx!(tx);
            let done = sqlx::query(
                "UPDATE access_api_keys SET expires_at = $1, replaced_by = $2 WHERE id = $3 AND replaced_by IS NULL AND revoked_at IS NULL",
            )
            .bind(old_end)
            .bind(&new_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            if done.rows_affected() != 1 {
                return Err(AccessError::Conflict("the API key was rotated or revoked concurrently"));
            }
            sqlx::query(
                "INSERT INTO access_api_keys (id, service, roles, mac, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&new_id)
            .bind(&old.service)
            .bind(roles_to_text(&old.roles))
            .bind(&mac)
            .bind(now)
            .bind(new_expires)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            self.inner
                .auditor
                .key_lifecycle(actor, &format!("apikey:{id}->apikey:{new_id}"), "api-key", KeyAction::Rotated)
                .await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.touch_generation()?;
        Ok(NewApiKey {
            id: new_id,
            secret: SecretString::from(whole.as_str()),
            service: old.service,
            roles: old.roles,
            expires_at: new_expires,
        })
    }

    /// Authenticates a presented API key. Revocation and expiry are read from the database on
    /// every call. The attempt is audited (success or the reason code; never the key); if the
    /// audit log cannot record it, the result is [`AccessError::AuditUnavailable`].
    pub async fn authenticate_api_key(
        &self,
        presented: &SecretString,
        meta: &RequestMeta,
    ) -> Result<Principal> {
        let outcome = self.check_api_key(presented.expose_secret()).await;
        match outcome {
            Ok(principal) => {
                self.inner
                    .auditor
                    .authentication(AuthMethod::ApiKey, Some(&principal.id), meta, None)
                    .await?;
                Ok(principal)
            }
            Err(Attempt::Refused(principal, reason)) => {
                self.inner
                    .auditor
                    .authentication(
                        AuthMethod::ApiKey,
                        principal.as_deref(),
                        meta,
                        Some(reason.audit_reason()),
                    )
                    .await?;
                Err(reason.into())
            }
            Err(Attempt::Failed(e)) => Err(e),
        }
    }

    async fn check_api_key(&self, presented: &str) -> std::result::Result<Principal, Attempt> {
        let id = parse_presented(presented).map_err(|e| Attempt::Refused(None, e))?;
        // Key rows are cached per epoch (see `crate::cache`): a revocation or rotation on any
        // instance starts a new epoch, so the row below is never older than the last change.
        let epoch = self.epoch().await.map_err(Attempt::Failed)?;
        let row = match self.inner.caches.api_key(epoch, id) {
            Some(r) => Some(r),
            None => {
                let row: Option<AuthRow> = with_pool!(&self.inner.pool, p => {
                    sqlx::query_as(
                        "SELECT service, roles, mac, expires_at, revoked_at, last_used_at FROM access_api_keys WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(p)
                    .await
                    .map_err(|e| Attempt::Failed(db("checking an API key")(e)))?
                });
                row.map(
                    |(service, roles, mac, expires_at, revoked_at, last_used_at)| {
                        let row = ApiKeyRow {
                            service,
                            roles,
                            mac,
                            expires_at,
                            revoked_at,
                            last_used_at,
                        };
                        self.inner.caches.put_api_key(epoch, id, row.clone());
                        row
                    },
                )
            }
        };
        let row = row.map(|r| {
            (
                r.service,
                r.roles,
                r.mac,
                r.expires_at,
                r.revoked_at,
                r.last_used_at,
            )
        });
        let presented_mac = mac(&self.inner.api_key_mac, presented);
        let Some((service, roles, stored_mac, expires_at, revoked_at, last_used_at)) = row else {
            return Err(Attempt::Refused(None, CredentialError::Invalid));
        };
        let principal_id = format!("service:{service}");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            presented_mac.as_slice(),
            stored_mac.as_slice(),
        )) {
            return Err(Attempt::Refused(
                Some(principal_id),
                CredentialError::Invalid,
            ));
        }
        if revoked_at.is_some() {
            return Err(Attempt::Refused(
                Some(principal_id),
                CredentialError::Revoked,
            ));
        }
        let now = self.now();
        if expires_at.is_some_and(|e| now >= e) {
            return Err(Attempt::Refused(
                Some(principal_id),
                CredentialError::Expired,
            ));
        }
        let role_list = roles_from_text(&roles).map_err(Attempt::Failed)?;
        if last_used_at.is_none_or(|t| now - t >= LAST_USED_GRANULARITY) {
            with_pool!(&self.inner.pool, p => {
                sqlx::query("UPDATE access_api_keys SET last_used_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id)
                    .execute(p)
                    .await
                    .map_err(|e| Attempt::Failed(db("recording API key use")(e)))?;
            });
            // Not a change the caches depend on: only this instance's copy is updated.
            self.inner.caches.put_api_key(
                epoch,
                id,
                ApiKeyRow {
                    service: service.clone(),
                    roles: roles.clone(),
                    mac: stored_mac.clone(),
                    expires_at,
                    revoked_at,
                    last_used_at: Some(now),
                },
            );
        }
        Ok(Principal {
            id: principal_id,
            roles: role_list,
            method: AuthMethod::ApiKey,
            purpose: None,
            credential_id: Some(id.to_owned()),
            expires_at,
        })
    }
}

/// The outcome of a credential check before auditing.
pub(crate) enum Attempt {
    /// Refused, with the principal if it could be identified.
    Refused(Option<String>, CredentialError),
    /// The check itself failed (database), nothing to blame on the caller.
    Failed(AccessError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_generated_key_parses_and_has_the_documented_shape() {
        let (id, whole) = new_key_material().unwrap();
        assert!(whole.starts_with("phg_"));
        assert_eq!(whole.len(), 4 + 16 + 1 + 43);
        assert_eq!(parse_presented(&whole).unwrap(), id);
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_accepts_only_the_key_shape(s in ".{0,80}") {
            if let Ok(id) = parse_presented(&s) {
                prop_assert!(s.starts_with("phg_"));
                prop_assert_eq!(id.len(), 16);
                prop_assert_eq!(s.len(), 64);
            }
        }

        #[test]
        fn keys_with_any_character_changed_do_not_parse_to_the_same_mac(pos in 0usize..64, c in proptest::char::range('!', '~')) {
            let key = hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]);
            let (_, whole) = new_key_material().unwrap();
            let mut bytes: Vec<char> = whole.chars().collect();
            prop_assume!(bytes[pos] != c);
            bytes[pos] = c;
            let changed: String = bytes.into_iter().collect();
            prop_assert_ne!(mac(&key, &whole), mac(&key, &changed));
        }
    }
}
