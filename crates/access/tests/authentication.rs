//! API keys, JWTs and admin logins, against SQLite and PostgreSQL.

mod common;

use access::{
    AccessError, AuthMethod, CredentialError, PurposeOfUse, RequestMeta, Role, TokenError,
};
use audit::{AuthFailureReason, Event, Outcome};
use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine as _;
use common::*;
use secrecy::{ExposeSecret as _, SecretString};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn meta() -> RequestMeta {
    RequestMeta::new("192.0.2.7", Some("req-1".into()))
}

fn auth_events(entries: &[audit::Entry]) -> Vec<audit::AuthenticationAttempt> {
    entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Authentication(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

fn token_error(r: Result<access::Principal, AccessError>) -> TokenError {
    match r {
        Err(AccessError::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

fn credential_error<T: std::fmt::Debug>(r: Result<T, AccessError>) -> CredentialError {
    match r {
        Err(AccessError::Credential(e)) => e,
        other => panic!("expected a credential error, got {other:?}"),
    }
}

on_both_backends!(
    api_key_authenticates_once_created_and_is_stored_only_as_a_keyed_hash,
    revoked_api_key_fails_at_once_on_another_instance,
    expired_api_key_is_refused,
    rotation_keeps_the_old_key_valid_only_during_the_overlap,
    malformed_and_unknown_api_keys_are_refused_and_audited_with_reason_codes,
    api_keys_cannot_carry_the_admin_role,
    issued_token_validates_with_the_principal_roles_and_purpose,
    forged_expired_none_hs256_unknown_kid_wrong_aud_iss_revoked_tampered_tokens_are_refused,
    signing_key_rotation_keeps_old_tokens_valid_until_retired_and_jwks_lists_keys,
    admin_bootstrap_enrolls_once_and_login_needs_password_and_totp,
    admin_totp_codes_are_single_use,
    admin_lockout_after_repeated_failures_then_unlocks,
    disabled_admins_cannot_sign_in_or_step_up_until_enabled_and_unlock_ends_a_lockout,
    audit_failure_fails_the_operation_and_changes_nothing,
);

async fn api_key_authenticates_once_created_and_is_stored_only_as_a_keyed_hash(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let key = access
        .create_api_key(
            "admin:ops",
            "lab-feed",
            &[Role::Service, Role::Analyst],
            None,
        )
        .await
        .unwrap();
    let secret = key.secret.expose_secret().to_owned();
    assert!(secret.starts_with("phg_"));
    assert!(
        !format!("{key:?}").contains(&secret),
        "Debug shows the secret"
    );

    let p = access
        .authenticate_api_key(&key.secret, &meta())
        .await
        .unwrap();
    assert_eq!(p.id, "service:lab-feed");
    assert_eq!(p.roles, vec![Role::Analyst, Role::Service]);
    assert_eq!(p.method, AuthMethod::ApiKey);
    assert_eq!(p.credential_id.as_deref(), Some(key.id.as_str()));

    let info = access.api_key(&key.id).await.unwrap();
    assert_eq!(info.last_used_at, Some(T0));
    assert_eq!(
        access.list_api_keys(Some("lab-feed")).await.unwrap().len(),
        1
    );

    // The database and the audit log hold neither the key nor its secret part.
    // `phg_<hex id>_<secret>`: the secret part is base64url and may itself contain `_`.
    let secret_part = secret.splitn(3, '_').nth(2).unwrap().to_owned();
    assert_eq!(secret_part.len(), 43);
    if let Some(path) = w.sqlite_path() {
        let bytes = std::fs::read(&path).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(&secret_part), "the database holds the key");
    }
    let text = w.audit_text().await;
    assert!(!text.contains(&secret_part), "the audit log holds the key");
    let events = auth_events(&w.audit_entries().await);
    let last = events.last().unwrap();
    assert_eq!(last.outcome, Outcome::Success);
    assert_eq!(last.principal.as_deref(), Some("service:lab-feed"));
    assert_eq!(last.source_address, "192.0.2.7");
}

async fn revoked_api_key_fails_at_once_on_another_instance(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let key = a
        .create_api_key("admin:ops", "billing", &[Role::Service], None)
        .await
        .unwrap();
    b.authenticate_api_key(&key.secret, &meta()).await.unwrap();
    a.revoke_api_key("admin:ops", &key.id).await.unwrap();
    assert_eq!(
        credential_error(b.authenticate_api_key(&key.secret, &meta()).await),
        CredentialError::Revoked
    );
    assert!(matches!(
        a.revoke_api_key("admin:ops", &key.id).await,
        Err(AccessError::Conflict(_))
    ));
    let events = auth_events(&w.audit_entries().await);
    assert_eq!(
        events.last().unwrap().failure_reason,
        Some(AuthFailureReason::Revoked)
    );
}

async fn expired_api_key_is_refused(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let key = access
        .create_api_key("admin:ops", "etl", &[Role::Service], Some(3600))
        .await
        .unwrap();
    w.clock.advance(3599);
    access
        .authenticate_api_key(&key.secret, &meta())
        .await
        .unwrap();
    w.clock.advance(1);
    assert_eq!(
        credential_error(access.authenticate_api_key(&key.secret, &meta()).await),
        CredentialError::Expired
    );
}

async fn rotation_keeps_the_old_key_valid_only_during_the_overlap(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let old = access
        .create_api_key("admin:ops", "etl", &[Role::Service], None)
        .await
        .unwrap();
    let new = access
        .rotate_api_key("admin:ops", &old.id, 600, None)
        .await
        .unwrap();
    assert_ne!(old.id, new.id);
    assert_eq!(new.service, "etl");
    assert_eq!(
        access
            .api_key(&old.id)
            .await
            .unwrap()
            .replaced_by
            .as_deref(),
        Some(new.id.as_str())
    );
    w.clock.advance(599);
    access
        .authenticate_api_key(&old.secret, &meta())
        .await
        .unwrap();
    access
        .authenticate_api_key(&new.secret, &meta())
        .await
        .unwrap();
    w.clock.advance(1);
    assert_eq!(
        credential_error(access.authenticate_api_key(&old.secret, &meta()).await),
        CredentialError::Expired
    );
    access
        .authenticate_api_key(&new.secret, &meta())
        .await
        .unwrap();
    // A key is rotated once.
    assert!(matches!(
        access.rotate_api_key("admin:ops", &old.id, 600, None).await,
        Err(AccessError::Conflict(_))
    ));
}

async fn malformed_and_unknown_api_keys_are_refused_and_audited_with_reason_codes(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let real = access
        .create_api_key("admin:ops", "etl", &[Role::Service], None)
        .await
        .unwrap();
    let malformed = SecretString::from("not-a-key");
    assert_eq!(
        credential_error(access.authenticate_api_key(&malformed, &meta()).await),
        CredentialError::Malformed
    );
    let unknown = SecretString::from(format!("phg_0000000000000000_{}", "A".repeat(43)));
    assert_eq!(
        credential_error(access.authenticate_api_key(&unknown, &meta()).await),
        CredentialError::Invalid
    );
    // Right id, wrong secret.
    let wrong = SecretString::from(format!("phg_{}_{}", real.id, "B".repeat(43)));
    assert_eq!(
        credential_error(access.authenticate_api_key(&wrong, &meta()).await),
        CredentialError::Invalid
    );
    let events = auth_events(&w.audit_entries().await);
    let reasons: Vec<_> = events.iter().map(|e| e.failure_reason).collect();
    assert_eq!(
        reasons,
        vec![
            Some(AuthFailureReason::Malformed),
            Some(AuthFailureReason::BadCredential),
            Some(AuthFailureReason::BadCredential)
        ]
    );
    assert_eq!(events[2].principal.as_deref(), Some("service:etl"));
    let text = w.audit_text().await;
    assert!(!text.contains("BBBBBBBB") && !text.contains("not-a-key"));
}

async fn api_keys_cannot_carry_the_admin_role(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    for roles in [&[Role::Admin][..], &[][..]] {
        assert!(matches!(
            access.create_api_key("admin:ops", "x", roles, None).await,
            Err(AccessError::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        access
            .create_api_key("admin:ops", "Bad Name", &[Role::Service], None)
            .await,
        Err(AccessError::InvalidArgument(_))
    ));
}

async fn issued_token_validates_with_the_principal_roles_and_purpose(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let key = access
        .create_api_key("admin:ops", "etl", &[Role::Service], None)
        .await
        .unwrap();
    let p = access
        .authenticate_api_key(&key.secret, &meta())
        .await
        .unwrap();
    let t = access
        .issue_token(&p, Some(PurposeOfUse::Treat))
        .await
        .unwrap();
    assert_eq!(t.expires_in, 900);
    assert_eq!(t.expires_at, T0 + 900);
    let v = access.validate_token(&t.token, &meta()).await.unwrap();
    assert_eq!(v.id, "service:etl");
    assert_eq!(v.roles, vec![Role::Service]);
    assert_eq!(v.purpose, Some(PurposeOfUse::Treat));
    assert_eq!(v.method, AuthMethod::ApiKey);
    assert_eq!(v.credential_id.as_deref(), Some(t.jti.as_str()));
    // Header and claims are what the spec says.
    let token = t.token.expose_secret();
    let mut parts = token.split('.');
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    for claim in ["iss", "aud", "sub", "roles", "jti", "iat", "nbf", "exp"] {
        assert!(claims.get(claim).is_some(), "missing {claim}");
    }
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    assert_eq!(claims["pou"], "TREAT");
}

fn parts(token: &str) -> (serde_json::Value, serde_json::Value, String) {
    let mut it = token.split('.');
    let h = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    let c = serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    (h, c, it.next().unwrap().to_owned())
}

fn encode(v: &serde_json::Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

fn sign_with(
    pair: &Ed25519KeyPair,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> SecretString {
    let input = format!("{}.{}", encode(header), encode(claims));
    let sig = pair.sign(input.as_bytes());
    SecretString::from(format!("{input}.{}", B64.encode(sig.as_ref())))
}

fn hs256(secret: &[u8], header: &serde_json::Value, claims: &serde_json::Value) -> SecretString {
    let input = format!("{}.{}", encode(header), encode(claims));
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    SecretString::from(format!("{input}.{}", B64.encode(tag.as_ref())))
}

async fn forged_expired_none_hs256_unknown_kid_wrong_aud_iss_revoked_tampered_tokens_are_refused(
    pg: bool,
) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let p = access::Principal::new("user:dr-a", vec![Role::Clinician], AuthMethod::Mtls).unwrap();
    let t = access.issue_token(&p, None).await.unwrap();
    let good = t.token.expose_secret().to_owned();
    let (header, claims, sig) = parts(&good);
    let m = meta();
    let check = |tok: SecretString| {
        let access = access.clone();
        let m = m.clone();
        async move { token_error(access.validate_token(&tok, &m).await) }
    };

    // Forged: a valid-looking token signed by someone else's key under our kid.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let attacker =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let mut admin_claims = claims.clone();
    admin_claims["roles"] = serde_json::json!(["admin"]);
    assert_eq!(
        check(sign_with(&attacker, &header, &admin_claims)).await,
        TokenError::BadSignature
    );

    // Tampered payload, original signature.
    let tampered = format!("{}.{}.{}", encode(&header), encode(&admin_claims), sig);
    assert_eq!(
        check(SecretString::from(tampered)).await,
        TokenError::BadSignature
    );

    // alg: none, with and without a signature.
    let mut none = header.clone();
    none["alg"] = "none".into();
    assert_eq!(
        check(SecretString::from(format!(
            "{}.{}.",
            encode(&none),
            encode(&claims)
        )))
        .await,
        TokenError::AlgorithmNotAllowed
    );
    // alg: HS256 keyed with the public key from the JWKS.
    let jwks = access.jwks().await.unwrap();
    let x = B64.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    let mut hs = header.clone();
    hs["alg"] = "HS256".into();
    assert_eq!(
        check(hs256(&x, &hs, &claims)).await,
        TokenError::AlgorithmNotAllowed
    );

    // Unknown kid, and no kid.
    let mut unknown = header.clone();
    unknown["kid"] = "not-a-key-we-hold".into();
    assert_eq!(
        check(sign_with(&attacker, &unknown, &claims)).await,
        TokenError::UnknownKey
    );
    let mut nokid = header.clone();
    nokid.as_object_mut().unwrap().remove("kid");
    assert_eq!(
        check(sign_with(&attacker, &nokid, &claims)).await,
        TokenError::UnknownKey
    );

    // Malformed shapes.
    for bad in ["", "a.b", "a.b.c.d", "!!!.???.***"] {
        assert_eq!(
            check(SecretString::from(bad.to_owned())).await,
            TokenError::Malformed
        );
    }

    // Wrong audience / issuer: validated by an instance configured differently.
    let mut cfg = w.config();
    cfg.audience = "some-other-api".into();
    let other_aud = access::Access::open(cfg).await.unwrap();
    assert_eq!(
        token_error(other_aud.validate_token(&t.token, &m).await),
        TokenError::WrongAudience
    );
    let mut cfg = w.config();
    cfg.issuer = "https://elsewhere.test".into();
    let other_iss = access::Access::open(cfg).await.unwrap();
    assert_eq!(
        token_error(other_iss.validate_token(&t.token, &m).await),
        TokenError::WrongIssuer
    );

    // Not yet valid, then expired (clock moved; leeway 30 s).
    w.clock.set(T0 - 31);
    assert_eq!(check(t.token.clone()).await, TokenError::NotYetValid);
    w.clock.set(T0 + 900 + 29);
    access.validate_token(&t.token, &m).await.unwrap();
    w.clock.set(T0 + 900 + 30);
    assert_eq!(check(t.token.clone()).await, TokenError::Expired);
    w.clock.set(T0);

    // Revoked jti: revoked on one instance, refused by another at once.
    let second = w.second_instance().await;
    second.validate_token(&t.token, &m).await.unwrap();
    access.revoke_token("admin:ops", &t.jti).await.unwrap();
    assert_eq!(
        token_error(second.validate_token(&t.token, &m).await),
        TokenError::Revoked
    );

    // Every refusal was audited as a failed JWT attempt, never with the token.
    let events = auth_events(&w.audit_entries().await);
    assert!(
        events
            .iter()
            .filter(|e| e.outcome == Outcome::Failure && e.method == AuthMethod::Jwt)
            .count()
            >= 12
    );
    assert!(!w.audit_text().await.contains(&sig));
}

async fn signing_key_rotation_keeps_old_tokens_valid_until_retired_and_jwks_lists_keys(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let p = access::Principal::new("user:dr-a", vec![Role::Clinician], AuthMethod::Mtls).unwrap();
    let old = access.issue_token(&p, None).await.unwrap();
    let old_kid = access.signing_keys().await.unwrap()[0].kid.clone();
    let new_kid = access.rotate_signing_key("admin:ops").await.unwrap();
    assert_ne!(old_kid, new_kid);
    // Another instance signs with the new key right away.
    let other = w.second_instance().await;
    let fresh = other.issue_token(&p, None).await.unwrap();
    let (h, _, _) = parts(fresh.token.expose_secret());
    assert_eq!(h["kid"], new_kid.as_str());
    access.validate_token(&old.token, &meta()).await.unwrap();
    access.validate_token(&fresh.token, &meta()).await.unwrap();

    let jwks = access.jwks().await.unwrap();
    let kids: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&old_kid) && kids.contains(&new_kid));
    for k in jwks["keys"].as_array().unwrap() {
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert_eq!(k["alg"], "EdDSA");
        assert!(k.get("d").is_none(), "private key in JWKS");
    }
    assert!(matches!(
        access.retire_signing_key("admin:ops", &new_kid).await,
        Err(AccessError::Conflict(_))
    ));
    access
        .retire_signing_key("admin:ops", &old_kid)
        .await
        .unwrap();
    assert_eq!(
        token_error(access.validate_token(&old.token, &meta()).await),
        TokenError::UnknownKey
    );
    assert_eq!(
        access.jwks().await.unwrap()["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn code_at(enrollment: &access::AdminEnrollment, t: i64) -> String {
    let secret = access::totp::base32_decode(enrollment.totp_secret.expose_secret()).unwrap();
    access::totp::totp(&secret, t, 6, access::totp::TotpAlgorithm::Sha1)
}

async fn admin_bootstrap_enrolls_once_and_login_needs_password_and_totp(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    assert!(!access.bootstrap_pending().await.unwrap());
    let boot = access.create_bootstrap_secret(3600).await.unwrap().unwrap();
    assert!(boot.expose_secret().starts_with("phgboot_"));
    assert!(access.bootstrap_pending().await.unwrap());
    let password = SecretString::from("correct horse battery".to_owned());
    // Too short a password is refused before the secret is used.
    assert!(matches!(
        access
            .enroll_admin(
                &boot,
                "alice",
                &SecretString::from("short".to_owned()),
                &meta()
            )
            .await,
        Err(AccessError::InvalidArgument(_))
    ));
    let wrong = SecretString::from("phgboot_wrong".to_owned());
    assert_eq!(
        credential_error(
            access
                .enroll_admin(&wrong, "alice", &password, &meta())
                .await
        ),
        CredentialError::Invalid
    );
    let enrollment = access
        .enroll_admin(&boot, "alice", &password, &meta())
        .await
        .unwrap();
    assert_eq!(enrollment.principal_id, "admin:alice");
    assert!(
        enrollment
            .otpauth_uri
            .expose_secret()
            .starts_with("otpauth://totp/phigate:alice?secret=")
    );
    // Single use, and no new bootstrap once an admin exists.
    assert_eq!(
        credential_error(access.enroll_admin(&boot, "bob", &password, &meta()).await),
        CredentialError::Revoked
    );
    assert!(
        access
            .create_bootstrap_secret(3600)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!access.bootstrap_pending().await.unwrap());

    let code = code_at(&enrollment, T0);
    let p = access
        .login_admin("alice", &password, &code, &meta())
        .await
        .unwrap();
    assert_eq!(p.id, "admin:alice");
    assert_eq!(p.roles, vec![Role::Admin]);
    assert_eq!(p.method, AuthMethod::PasswordTotp);
    // The admin token says MFA.
    let t = access.issue_token(&p, None).await.unwrap();
    assert_eq!(
        access
            .validate_token(&t.token, &meta())
            .await
            .unwrap()
            .method,
        AuthMethod::PasswordTotp
    );

    w.clock.advance(30);
    let wrong_pw = SecretString::from("incorrect horse battery".to_owned());
    assert_eq!(
        credential_error(
            access
                .login_admin("alice", &wrong_pw, &code_at(&enrollment, T0 + 30), &meta())
                .await
        ),
        CredentialError::Invalid
    );
    assert_eq!(
        credential_error(
            access
                .login_admin("alice", &password, "000000", &meta())
                .await
        ),
        CredentialError::BadTotp
    );
    assert_eq!(
        credential_error(
            access
                .login_admin("nobody", &password, &code_at(&enrollment, T0 + 30), &meta())
                .await
        ),
        CredentialError::Invalid
    );
    let text = w.audit_text().await;
    assert!(!text.contains("correct horse") && !text.contains(boot.expose_secret()));
}

async fn admin_totp_codes_are_single_use(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let boot = access.create_bootstrap_secret(3600).await.unwrap().unwrap();
    let password = SecretString::from("correct horse battery".to_owned());
    let enrollment = access
        .enroll_admin(&boot, "alice", &password, &meta())
        .await
        .unwrap();
    let code = code_at(&enrollment, T0);
    access
        .login_admin("alice", &password, &code, &meta())
        .await
        .unwrap();
    // The same code, on this instance and on another, is a replay.
    assert_eq!(
        credential_error(access.login_admin("alice", &password, &code, &meta()).await),
        CredentialError::TotpReplay
    );
    let other = w.second_instance().await;
    assert_eq!(
        credential_error(other.login_admin("alice", &password, &code, &meta()).await),
        CredentialError::TotpReplay
    );
    // The previous step's code is also spent (it is not newer than the accepted one).
    assert_eq!(
        credential_error(
            access
                .login_admin("alice", &password, &code_at(&enrollment, T0 - 30), &meta())
                .await
        ),
        CredentialError::TotpReplay
    );
    // The next step works; step-up verification consumes codes the same way.
    w.clock.advance(30);
    let p = access
        .login_admin("alice", &password, &code_at(&enrollment, T0 + 30), &meta())
        .await
        .unwrap();
    w.clock.advance(30);
    let step_up = code_at(&enrollment, T0 + 60);
    access
        .verify_admin_totp(&p, &step_up, &meta())
        .await
        .unwrap();
    assert_eq!(
        credential_error(access.verify_admin_totp(&p, &step_up, &meta()).await),
        CredentialError::TotpReplay
    );
    let events = auth_events(&w.audit_entries().await);
    assert!(
        events
            .iter()
            .any(|e| e.failure_reason == Some(AuthFailureReason::Replay))
    );
}

async fn admin_lockout_after_repeated_failures_then_unlocks(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let boot = access.create_bootstrap_secret(3600).await.unwrap().unwrap();
    let password = SecretString::from("correct horse battery".to_owned());
    let enrollment = access
        .enroll_admin(&boot, "alice", &password, &meta())
        .await
        .unwrap();
    let wrong = SecretString::from("wrong wrong wrong".to_owned());
    for _ in 0..5 {
        assert_eq!(
            credential_error(access.login_admin("alice", &wrong, "123456", &meta()).await),
            CredentialError::Invalid
        );
    }
    // Locked: even the right password and code are refused.
    assert_eq!(
        credential_error(
            access
                .login_admin("alice", &password, &code_at(&enrollment, T0), &meta())
                .await
        ),
        CredentialError::Locked
    );
    w.clock.advance(15 * 60 - 1);
    assert_eq!(
        credential_error(
            access
                .login_admin("alice", &password, &code_at(&enrollment, T0 + 899), &meta())
                .await
        ),
        CredentialError::Locked
    );
    w.clock.advance(1);
    access
        .login_admin("alice", &password, &code_at(&enrollment, T0 + 900), &meta())
        .await
        .unwrap();
    let events = auth_events(&w.audit_entries().await);
    assert!(
        events
            .iter()
            .any(|e| e.failure_reason == Some(AuthFailureReason::RateLimited))
    );
}

async fn audit_failure_fails_the_operation_and_changes_nothing(pg: bool) {
    let w = World::new(pg).await;
    let good = w.open().await;
    let key = good
        .create_api_key("admin:ops", "etl", &[Role::Service], None)
        .await
        .unwrap();
    // A second instance whose audit log cannot be written.
    let mut cfg = w.config();
    cfg.audit = audit::AuditLog::open_read_only(&audit::Storage::Sqlite {
        path: w.dir.path().join("audit.db"),
    })
    .await
    .unwrap();
    let broken = access::Access::open(cfg).await.unwrap();
    assert!(matches!(
        broken.authenticate_api_key(&key.secret, &meta()).await,
        Err(AccessError::AuditUnavailable(_))
    ));
    assert!(matches!(
        broken
            .create_api_key("admin:ops", "new", &[Role::Service], None)
            .await,
        Err(AccessError::AuditUnavailable(_))
    ));
    assert!(matches!(
        broken.revoke_api_key("admin:ops", &key.id).await,
        Err(AccessError::AuditUnavailable(_))
    ));
    // Nothing changed: no new key, the old one is not revoked.
    assert_eq!(good.list_api_keys(None).await.unwrap().len(), 1);
    good.authenticate_api_key(&key.secret, &meta())
        .await
        .unwrap();
}

async fn disabled_admins_cannot_sign_in_or_step_up_until_enabled_and_unlock_ends_a_lockout(
    pg: bool,
) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let boot = access.create_bootstrap_secret(3600).await.unwrap().unwrap();
    let password = SecretString::from("correct horse battery".to_owned());
    let root = access
        .enroll_admin(&boot, "root", &password, &meta())
        .await
        .unwrap();
    let root_p = access
        .login_admin("root", &password, &code_at(&root, T0), &meta())
        .await
        .unwrap();
    let bob = access
        .create_admin(&root_p, "bob", &password)
        .await
        .unwrap();
    let bob_p = access
        .login_admin("bob", &password, &code_at(&bob, T0), &meta())
        .await
        .unwrap();
    let listed = access.list_admins().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|a| a.username.as_str())
            .collect::<Vec<_>>(),
        ["bob", "root"]
    );
    assert!(listed.iter().all(|a| a.disabled_at.is_none()));

    // Disabled: sign-in and step-up are refused at once, on every instance.
    let info = access
        .change_admin(&root_p, "bob", access::AdminChange::Disable)
        .await
        .unwrap();
    assert!(info.disabled_at.is_some());
    w.clock.advance(30);
    let other = w.second_instance().await;
    assert_eq!(
        credential_error(
            other
                .login_admin("bob", &password, &code_at(&bob, T0 + 30), &meta())
                .await
        ),
        CredentialError::Revoked
    );
    assert_eq!(
        credential_error(
            access
                .verify_admin_totp(&bob_p, &code_at(&bob, T0 + 30), &meta())
                .await
        ),
        CredentialError::Revoked
    );
    // Twice is a conflict; disabling oneself is refused; unknown users are not found.
    assert!(matches!(
        access
            .change_admin(&root_p, "bob", access::AdminChange::Disable)
            .await,
        Err(AccessError::Conflict(_))
    ));
    assert!(matches!(
        access
            .change_admin(&root_p, "root", access::AdminChange::Disable)
            .await,
        Err(AccessError::Conflict(_))
    ));
    assert!(matches!(
        access
            .change_admin(&root_p, "nobody", access::AdminChange::Enable)
            .await,
        Err(AccessError::NotFound(_))
    ));
    access
        .change_admin(&root_p, "bob", access::AdminChange::Enable)
        .await
        .unwrap();
    access
        .verify_admin_totp(&bob_p, &code_at(&bob, T0 + 30), &meta())
        .await
        .unwrap();

    // Five bad step-up codes lock the account; an unlock by another admin ends the lockout.
    for _ in 0..5 {
        let _ = access.verify_admin_totp(&bob_p, "000000", &meta()).await;
    }
    w.clock.advance(30);
    assert_eq!(
        credential_error(
            access
                .verify_admin_totp(&bob_p, &code_at(&bob, T0 + 60), &meta())
                .await
        ),
        CredentialError::Locked
    );
    let locked = access.admin("bob").await.unwrap();
    assert!(locked.locked_until.is_some());
    let unlocked = access
        .change_admin(&root_p, "bob", access::AdminChange::Unlock)
        .await
        .unwrap();
    assert_eq!(unlocked.locked_until, None);
    assert_eq!(unlocked.failed_count, 0);
    access
        .verify_admin_totp(&bob_p, &code_at(&bob, T0 + 60), &meta())
        .await
        .unwrap();

    // Each change is a configuration change with before and after.
    let changes: Vec<serde_json::Value> = w
        .audit_entries()
        .await
        .iter()
        .filter_map(|e| match &e.event {
            audit::Event::ConfigChange(c)
                if c.setting == "access.admins" && c.after.get("change").is_some() =>
            {
                Some(c.after.clone())
            }
            _ => None,
        })
        .collect();
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["disable", "enable", "unlock"]);
}

/// A version-1 database (no `disabled_at`) is migrated to version 2 on open, keeping its admins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_is_migrated_and_keeps_its_admins() {
    let w = World::new(false).await;
    let access = w.open().await;
    let boot = access.create_bootstrap_secret(3600).await.unwrap().unwrap();
    let password = SecretString::from("correct horse battery".to_owned());
    let enrollment = access
        .enroll_admin(&boot, "alice", &password, &meta())
        .await
        .unwrap();
    drop(access);
    // Turn it back into what version 1 wrote.
    let path = w.sqlite_path().unwrap();
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql(
        "ALTER TABLE access_admins DROP COLUMN disabled_at; UPDATE access_schema SET version = 1;",
    )
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;

    let access = w.open().await;
    let version: i64 = {
        let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let v = sqlx::query_scalar("SELECT version FROM access_schema WHERE id = 1")
            .fetch_one(&raw)
            .await
            .unwrap();
        raw.close().await;
        v
    };
    assert_eq!(version, access::SCHEMA_VERSION);
    assert_eq!(access::SCHEMA_VERSION, 2);
    let admins = access.list_admins().await.unwrap();
    assert_eq!(admins.len(), 1);
    assert_eq!(admins[0].disabled_at, None);
    access
        .login_admin("alice", &password, &code_at(&enrollment, T0), &meta())
        .await
        .unwrap();
}
