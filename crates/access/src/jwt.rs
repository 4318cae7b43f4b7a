//! Short-lived access tokens: compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037),
//! implemented here on aws-lc-rs so that the only algorithm this code can verify is EdDSA.
//!
//! * Header `{"alg":"EdDSA","kid":"<RFC 7638 thumbprint>","typ":"JWT"}`.
//! * Claims: `iss`, `aud`, `sub` (principal id), `roles`, `jti` (128 random bits), `iat`,
//!   `nbf`, `exp` (15 minutes by default, never more), `amr` (how the subject authenticated)
//!   and the optional `pou` (HL7 purpose of use).
//! * Validation order: size and shape, `alg` pinned to EdDSA (so `none` and `HS256` with the
//!   public key as HMAC secret are refused before anything else), `kid` must name a key this
//!   gateway holds and has not retired, signature, claims types, `iss`, `aud`, `exp`/`nbf`/`iat`
//!   with a small leeway, lifetime, and finally `jti` revocation read from the database.
//! * Signing keys rotate by `kid`: the active key signs, previous keys keep verifying until
//!   retired. Private keys are PKCS#8 documents sealed under the key ring.

use std::sync::Arc;

use audit::{AuthMethod, KeyAction, PurposeOfUse};
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use sealed::ObjectContext;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::Access;
use crate::cache::VerifiedToken;
use crate::db::with_pool;
use crate::error::{AccessError, Result, TokenError, db};
use crate::principal::{Principal, RequestMeta, Role, validate_principal_id};

/// Longest accepted token text.
const MAX_TOKEN_LEN: usize = 8 * 1024;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const SIGNING_KEY_KIND: &str = "access.jwt-signing-key";

/// A token issued by [`Access::issue_token`].
#[derive(Debug)]
pub struct IssuedToken {
    /// The compact JWS. A bearer credential: never log it.
    pub token: SecretString,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp` (seconds since the epoch).
    pub expires_at: i64,
    /// Lifetime in seconds (`expires_in` of an OAuth token response).
    pub expires_in: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: Value,
    sub: String,
    roles: Vec<String>,
    jti: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pou: Option<PurposeOfUse>,
}

/// RFC 7638 thumbprint of an Ed25519 OKP key: base64url(SHA-256 of the canonical JWK).
pub(crate) fn thumbprint(public_key: &[u8]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        B64.encode(public_key)
    );
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()).as_ref())
}

fn amr_for(method: AuthMethod) -> Vec<String> {
    match method {
        AuthMethod::ApiKey => vec!["apikey".into()],
        AuthMethod::Mtls => vec!["mtls".into()],
        AuthMethod::PasswordTotp => vec!["pwd".into(), "otp".into(), "mfa".into()],
        AuthMethod::Jwt => vec!["jwt".into()],
    }
}

fn method_from_amr(amr: &[String]) -> AuthMethod {
    if amr.iter().any(|a| a == "otp") && amr.iter().any(|a| a == "pwd") {
        AuthMethod::PasswordTotp
    } else if amr.iter().any(|a| a == "mtls") {
        AuthMethod::Mtls
    } else if amr.iter().any(|a| a == "apikey") {
        AuthMethod::ApiKey
    } else {
        AuthMethod::Jwt
    }
}

pub(crate) struct CachedSigner {
    kid: String,
    pair: Arc<Ed25519KeyPair>,
}

/// One signing key as listed for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyInfo {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// `active` (signs), `verify` (verifies only) or `retired`.
    pub state: String,
    /// Creation time.
    pub created_at: i64,
}

impl Access {
    async fn active_kid(&self) -> Result<Option<String>> {
        Ok(with_pool!(&self.inner.pool, p => {
            sqlx::query_scalar("SELECT kid FROM access_jwt_keys WHERE state = 'active'")
                .fetch_optional(p)
                .await
                .map_err(db("reading the active signing key"))?
        }))
    }

    /// Generates a signing key; returns its kid and the sealed PKCS#8 and public key.
    fn generate_signing_key(&self) -> Result<(String, Vec<u8>, Vec<u8>)> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| AccessError::Crypto("Ed25519 key generation"))?;
        let pkcs8 = Zeroizing::new(doc.as_ref().to_vec());
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| AccessError::Crypto("Ed25519 key generation"))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = thumbprint(&public);
        let sealed = self.inner.keyring.seal(
            &ObjectContext::new(SIGNING_KEY_KIND, kid.as_bytes()),
            &pkcs8,
        )?;
        Ok((kid, sealed, public))
    }

    /// Makes sure one signing key is active (first start of the first instance).
    pub(crate) async fn ensure_signing_key(&self) -> Result<()> {
        if self.active_kid().await?.is_some() {
            return Ok(());
        }
        let (kid, sealed, public) = self.generate_signing_key()?;
        let now = self.now();
        let ctx = "creating the first signing key";
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            // The partial unique index allows one active key: a concurrent first start loses
            // quietly here and uses the winner's key.
            let done = sqlx::query(
                "INSERT INTO access_jwt_keys (kid, public_key, sealed_private, state, created_at) VALUES ($1, $2, $3, 'active', $4) ON CONFLICT DO NOTHING",
            )
            .bind(&kid)
            .bind(&public)
            .bind(&sealed)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            if done.rows_affected() == 1 {
                self.inner
                    .auditor
                    .key_lifecycle("system", &kid, "jwt-signing", KeyAction::Generated)
                    .await?;
            }
            tx.commit().await.map_err(db(ctx))?;
        });
        Ok(())
    }

    async fn signer(&self) -> Result<(String, Arc<Ed25519KeyPair>)> {
        let kid = self
            .active_kid()
            .await?
            .ok_or(AccessError::Corrupt("no active signing key"))?;
        {
            let cached = self
                .inner
                .signer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(c) = cached.as_ref().filter(|c| c.kid == kid) {
                return Ok((c.kid.clone(), c.pair.clone()));
            }
        }
        let sealed: Option<Vec<u8>> = with_pool!(&self.inner.pool, p => {
            sqlx::query_scalar("SELECT sealed_private FROM access_jwt_keys WHERE kid = $1")
                .bind(&kid)
                .fetch_one(p)
                .await
                .map_err(db("reading the signing key"))?
        });
        let sealed = sealed.ok_or(AccessError::Corrupt(
            "the active signing key has no private key",
        ))?;
        let pkcs8 = self.inner.keyring.open(
            &ObjectContext::new(SIGNING_KEY_KIND, kid.as_bytes()),
            &sealed,
        )?;
        let pair = Arc::new(
            Ed25519KeyPair::from_pkcs8(&pkcs8)
                .map_err(|_| AccessError::Corrupt("a signing key is not Ed25519 PKCS#8"))?,
        );
        if thumbprint(pair.public_key().as_ref()) != kid {
            return Err(AccessError::Corrupt("a signing key does not match its kid"));
        }
        *self
            .inner
            .signer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(CachedSigner {
            kid: kid.clone(),
            pair: pair.clone(),
        });
        Ok((kid, pair))
    }

    /// Issues a token for an authenticated principal: 15 minutes (the configured lifetime),
    /// `aud` and `iss` of this gateway, the principal's roles and, if given, a purpose of use.
    pub async fn issue_token(
        &self,
        principal: &Principal,
        purpose: Option<PurposeOfUse>,
    ) -> Result<IssuedToken> {
        validate_principal_id(&principal.id)?;
        let (kid, pair) = self.signer().await?;
        let now = self.now();
        let lifetime = self.inner.config.token_lifetime_secs;
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| AccessError::Crypto("random generator"))?;
        let jti = B64.encode(jti);
        let claims = Claims {
            iss: self.inner.config.issuer.clone(),
            aud: Value::String(self.inner.config.audience.clone()),
            sub: principal.id.clone(),
            roles: principal
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
            jti: jti.clone(),
            iat: now,
            nbf: now,
            exp: now + lifetime,
            amr: amr_for(principal.method),
            pou: purpose.or(principal.purpose),
        };
        let header = Header {
            alg: "EdDSA".into(),
            kid: Some(kid),
            typ: Some("JWT".into()),
        };
        let encode = |v: &dyn erased::Json| -> Result<String> {
            Ok(B64.encode(
                v.to_json()
                    .map_err(|_| AccessError::Corrupt("token encoding"))?,
            ))
        };
        let signing_input = format!("{}.{}", encode(&header)?, encode(&claims)?);
        let sig = pair.sign(signing_input.as_bytes());
        let token = format!("{signing_input}.{}", B64.encode(sig.as_ref()));
        Ok(IssuedToken {
            token: SecretString::from(token),
            jti,
            expires_at: now + lifetime,
            expires_in: lifetime,
        })
    }

    /// Checks a bearer token like [`Access::validate_token`] but writes **no** audit event: the
    /// caller must record the authentication attempt (the principal on success, the refusal's
    /// [`TokenError::audit_reason`] otherwise) in the audit log before it acts on or answers the
    /// request. For servers that write all of one request's events in a single group commit.
    /// `Err` only when the check itself failed (database).
    pub async fn verify_token(&self, token: &SecretString) -> Result<TokenVerdict> {
        match self.check_token(token.expose_secret()).await {
            Ok(principal) => Ok(TokenVerdict::Valid(principal)),
            Err(TokenCheck::Refused(subject, error)) => {
                Ok(TokenVerdict::Refused { subject, error })
            }
            Err(TokenCheck::Failed(e)) => Err(e),
        }
    }

    /// Validates a bearer token and returns its principal. The attempt is audited (method
    /// `jwt`, the reason code on failure); if the audit log cannot record it the result is
    /// [`AccessError::AuditUnavailable`].
    pub async fn validate_token(
        &self,
        token: &SecretString,
        meta: &RequestMeta,
    ) -> Result<Principal> {
        match self.check_token(token.expose_secret()).await {
            Ok(principal) => {
                self.inner
                    .auditor
                    .authentication(AuthMethod::Jwt, Some(&principal.id), meta, None)
                    .await?;
                Ok(principal)
            }
            Err(TokenCheck::Refused(sub, reason)) => {
                self.inner
                    .auditor
                    .authentication(
                        AuthMethod::Jwt,
                        sub.as_deref(),
                        meta,
                        Some(reason.audit_reason()),
                    )
                    .await?;
                Err(reason.into())
            }
            Err(TokenCheck::Failed(e)) => Err(e),
        }
    }

    /// Checks a token without auditing. Verified tokens are cached (see [`crate::cache`]):
    /// the signature and static claims are checked once, the clock, the signing key's state
    /// and the `jti` revocation at every call.
    async fn check_token(&self, token: &str) -> std::result::Result<Principal, TokenCheck> {
        use TokenCheck::Refused;
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refused(None, TokenError::Malformed));
        }
        let epoch = self.epoch().await.map_err(TokenCheck::Failed)?;
        let hash: [u8; 32] =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
                .as_ref()
                .try_into()
                .map_err(|_| TokenCheck::Failed(AccessError::Crypto("SHA-256")))?;
        let now = self.now();
        let leeway = self.inner.config.leeway_secs;
        let verified = match self.inner.caches.token(&hash) {
            Some(v) => {
                // The key may have been retired since (a new epoch then reloads the key set).
                if self.verifying_key(epoch, &v.kid).await?.is_none() {
                    return Err(Refused(None, TokenError::UnknownKey));
                }
                check_times(&v, now, leeway).map_err(|e| Refused(Some(v.sub.clone()), e))?;
                v
            }
            None => {
                let v = self.verify_token_text(token, epoch, now).await?;
                self.inner.caches.put_token(hash, (*v).clone(), now, leeway);
                v
            }
        };
        let revoked = self.revoked_jtis(epoch).await.map_err(TokenCheck::Failed)?;
        if revoked.contains(&verified.jti) {
            return Err(Refused(Some(verified.sub.clone()), TokenError::Revoked));
        }
        Ok(Principal {
            id: verified.sub.clone(),
            roles: verified.roles.clone(),
            method: verified.method,
            purpose: verified.pou,
            credential_id: Some(verified.jti.clone()),
            expires_at: Some(verified.exp),
        })
    }

    /// The public key of a signing key that verifies (state `active` or `verify`), from the
    /// epoch's cache or the database.
    async fn verifying_key(
        &self,
        epoch: u64,
        kid: &str,
    ) -> std::result::Result<Option<Arc<Vec<u8>>>, TokenCheck> {
        if let Some(k) = self.inner.caches.key(epoch, kid) {
            return Ok(Some(k));
        }
        let row: Option<(Vec<u8>, String)> = with_pool!(&self.inner.pool, p => {
            sqlx::query_as("SELECT public_key, state FROM access_jwt_keys WHERE kid = $1")
                .bind(kid)
                .fetch_optional(p)
                .await
                .map_err(|e| TokenCheck::Failed(db("reading a signing key")(e)))?
        });
        match row {
            Some((public, state)) if state == "active" || state == "verify" => {
                let public = Arc::new(public);
                self.inner
                    .caches
                    .put_key(epoch, kid.to_owned(), public.clone());
                Ok(Some(public))
            }
            _ => Ok(None),
        }
    }

    /// Every revoked `jti`, from the epoch's cache or the database.
    async fn revoked_jtis(&self, epoch: u64) -> Result<Arc<std::collections::HashSet<String>>> {
        if let Some(set) = self.inner.caches.revoked(epoch) {
            return Ok(set);
        }
        let rows: Vec<String> = with_pool!(&self.inner.pool, p => {
            sqlx::query_scalar("SELECT jti FROM access_revoked_jti")
                .fetch_all(p)
                .await
                .map_err(db("checking token revocation"))?
        });
        let set = Arc::new(rows.into_iter().collect::<std::collections::HashSet<_>>());
        self.inner.caches.put_revoked(epoch, set.clone());
        Ok(set)
    }

    /// The full check of a token not seen before: shape, algorithm, key, signature, claims,
    /// `iss`, `aud`, times, lifetime. Revocation is checked by the caller.
    async fn verify_token_text(
        &self,
        token: &str,
        epoch: u64,
        now: i64,
    ) -> std::result::Result<Arc<VerifiedToken>, TokenCheck> {
        use TokenCheck::Refused;
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused(None, TokenError::Malformed));
        };
        let header_bytes = B64
            .decode(h)
            .map_err(|_| Refused(None, TokenError::Malformed))?;
        let header: Value = serde_json::from_slice(&header_bytes)
            .map_err(|_| Refused(None, TokenError::Malformed))?;
        // The algorithm is pinned before anything else is looked at.
        match header.get("alg") {
            Some(Value::String(alg)) if alg == "EdDSA" => {}
            Some(Value::String(_)) => return Err(Refused(None, TokenError::AlgorithmNotAllowed)),
            _ => return Err(Refused(None, TokenError::Malformed)),
        }
        let header: Header =
            serde_json::from_value(header).map_err(|_| Refused(None, TokenError::Malformed))?;
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(Refused(None, TokenError::Malformed));
        }
        let kid = header.kid.ok_or(Refused(None, TokenError::UnknownKey))?;
        if kid.len() > 64 {
            return Err(Refused(None, TokenError::UnknownKey));
        }
        let signature = B64
            .decode(s)
            .map_err(|_| Refused(None, TokenError::Malformed))?;
        let public = self
            .verifying_key(epoch, &kid)
            .await?
            .ok_or(Refused(None, TokenError::UnknownKey))?;
        let signing_input = &token[..h.len() + 1 + c.len()];
        signature::UnparsedPublicKey::new(&signature::ED25519, public.as_slice())
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| Refused(None, TokenError::BadSignature))?;
        let claims_bytes = B64
            .decode(c)
            .map_err(|_| Refused(None, TokenError::Malformed))?;
        let claims: Claims = serde_json::from_slice(&claims_bytes)
            .map_err(|_| Refused(None, TokenError::Malformed))?;
        let sub = Some(claims.sub.clone()).filter(|s| validate_principal_id(s).is_ok());
        let refuse = |e| Refused(sub.clone(), e);
        if claims.iss != self.inner.config.issuer {
            return Err(refuse(TokenError::WrongIssuer));
        }
        let audience = &self.inner.config.audience;
        let aud_ok = match &claims.aud {
            Value::String(a) => a == audience,
            Value::Array(items) => items.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(refuse(TokenError::WrongAudience));
        }
        let leeway = self.inner.config.leeway_secs;
        let times = VerifiedToken {
            kid,
            sub: String::new(),
            roles: Vec::new(),
            jti: claims.jti,
            iat: claims.iat,
            nbf: claims.nbf,
            exp: claims.exp,
            method: method_from_amr(&claims.amr),
            pou: claims.pou,
        };
        check_times(&times, now, leeway).map_err(refuse)?;
        if claims.exp.saturating_sub(claims.iat.min(claims.nbf))
            > self.inner.config.token_lifetime_secs
        {
            return Err(refuse(TokenError::LifetimeTooLong));
        }
        let sub = sub.ok_or(Refused(None, TokenError::Malformed))?;
        let roles = claims
            .roles
            .iter()
            .map(|r| Role::parse(r))
            .collect::<Result<Vec<_>>>()
            .map_err(|_| Refused(Some(sub.clone()), TokenError::Malformed))?;
        Ok(Arc::new(VerifiedToken {
            sub,
            roles,
            ..times
        }))
    }

    /// Revokes a token by `jti`; every instance refuses it from now on. `actor` is audited.
    pub async fn revoke_token(&self, actor: &str, jti: &str) -> Result<()> {
        if jti.is_empty()
            || jti.len() > 64
            || !jti
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AccessError::InvalidArgument(
                "jti must be 1-64 base64url characters".into(),
            ));
        }
        let now = self.now();
        // Kept until no token with this jti could still be valid.
        let until = now + self.inner.config.token_lifetime_secs + self.inner.config.leeway_secs;
        let ctx = "revoking a token";
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            crate::cache::bump_in_tx!(tx);
            sqlx::query("INSERT INTO access_revoked_jti (jti, expires_at, revoked_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING")
                .bind(jti)
                .bind(until)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            sqlx::query("DELETE FROM access_revoked_jti WHERE expires_at < $1")
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            self.inner
                .auditor
                .key_lifecycle(actor, &format!("jti:{jti}"), "access-token", KeyAction::Retired)
                .await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.touch_generation()?;
        Ok(())
    }

    /// The JWKS document (RFC 7517, OKP keys per RFC 8037) for `/.well-known/jwks.json`:
    /// every key that tokens may still be verified with.
    pub async fn jwks(&self) -> Result<Value> {
        let rows: Vec<(String, Vec<u8>)> = with_pool!(&self.inner.pool, p => {
            sqlx::query_as("SELECT kid, public_key FROM access_jwt_keys WHERE state IN ('active', 'verify') ORDER BY created_at DESC, kid")
                .fetch_all(p)
                .await
                .map_err(db("reading signing keys"))?
        });
        let keys: Vec<Value> = rows
            .into_iter()
            .map(|(kid, public)| {
                json!({"kty": "OKP", "crv": "Ed25519", "x": B64.encode(public), "kid": kid, "use": "sig", "alg": "EdDSA"})
            })
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Signing keys, newest first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyInfo>> {
        let rows: Vec<(String, String, i64)> = with_pool!(&self.inner.pool, p => {
            sqlx::query_as("SELECT kid, state, created_at FROM access_jwt_keys ORDER BY created_at DESC, kid")
                .fetch_all(p)
                .await
                .map_err(db("reading signing keys"))?
        });
        Ok(rows
            .into_iter()
            .map(|(kid, state, created_at)| SigningKeyInfo {
                kid,
                state,
                created_at,
            })
            .collect())
    }

    /// Rotates the signing key: a new key signs from now on, the previous one keeps verifying
    /// (its tokens live at most 15 minutes) until [`Access::retire_signing_key`]. Returns the
    /// new kid.
    pub async fn rotate_signing_key(&self, actor: &str) -> Result<String> {
        let (kid, sealed, public) = self.generate_signing_key()?;
        let now = self.now();
        let ctx = "rotating the signing key";
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            crate::cache::bump_in_tx!(tx);
            sqlx::query("UPDATE access_jwt_keys SET state = 'verify' WHERE state = 'active'")
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            sqlx::query("INSERT INTO access_jwt_keys (kid, public_key, sealed_private, state, created_at) VALUES ($1, $2, $3, 'active', $4)")
                .bind(&kid)
                .bind(&public)
                .bind(&sealed)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            self.inner
                .auditor
                .key_lifecycle(actor, &kid, "jwt-signing", KeyAction::Rotated)
                .await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.touch_generation()?;
        Ok(kid)
    }

    /// Retires a verify-only signing key: its private key is deleted and tokens signed by it
    /// are refused as [`TokenError::UnknownKey`]. The active key cannot be retired.
    pub async fn retire_signing_key(&self, actor: &str, kid: &str) -> Result<()> {
        let now = self.now();
        let ctx = "retiring a signing key";
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            crate::cache::bump_in_tx!(tx);
            let done = sqlx::query("UPDATE access_jwt_keys SET state = 'retired', sealed_private = NULL, retired_at = $1 WHERE kid = $2 AND state = 'verify'")
                .bind(now)
                .bind(kid)
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            if done.rows_affected() != 1 {
                return Err(AccessError::Conflict("only a verify-only signing key can be retired (rotate first)"));
            }
            self.inner
                .auditor
                .key_lifecycle(actor, kid, "jwt-signing", KeyAction::Retired)
                .await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.touch_generation()?;
        Ok(())
    }
}

/// `exp`, `nbf` and `iat` against the clock, with the leeway.
fn check_times(t: &VerifiedToken, now: i64, leeway: i64) -> std::result::Result<(), TokenError> {
    if now >= t.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if t.nbf > now.saturating_add(leeway) || t.iat > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// The outcome of [`Access::verify_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenVerdict {
    /// The token is valid: its principal.
    Valid(Principal),
    /// The token was refused.
    Refused {
        /// The token's subject, if it could be read and is a valid principal id.
        subject: Option<String>,
        /// Why.
        error: TokenError,
    },
}

pub(crate) enum TokenCheck {
    Refused(Option<String>, TokenError),
    Failed(AccessError),
}

/// Serialization behind a trait object, so one closure encodes header and claims.
mod erased {
    pub(super) trait Json {
        fn to_json(&self) -> serde_json::Result<Vec<u8>>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<Vec<u8>> {
            serde_json::to_vec(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc8037_appendix_a3() {
        // RFC 8037 A.3: the thumbprint of the A.2 public key.
        let x = B64
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        assert_eq!(
            thumbprint(&x),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
