//! The hot-path caches never outlive a change made by another instance (staleness zero), on
//! SQLite (generation file) and PostgreSQL (generation row). Each test warms the second
//! instance's caches first, then changes something through the first instance.

mod common;

use access::{
    Access, AccessError, Action, AuthMethod, AuthzRequest, Decision, PatientScope, Principal,
    PurposeOfUse, RequestMeta, Resource, Role, TokenError, TokenVerdict,
};
use audit::Event;
use common::*;
use phi::Sensitive;
use secrecy::SecretString;

fn meta() -> RequestMeta {
    RequestMeta::new("192.0.2.8", Some("req-cache".into()))
}

fn service() -> Principal {
    Principal::new("service:lab-feed", vec![Role::Service], AuthMethod::ApiKey).unwrap()
}

fn admin() -> Principal {
    Principal::new("admin:alice", vec![Role::Admin], AuthMethod::PasswordTotp).unwrap()
}

fn token_error(r: Result<Principal, AccessError>) -> TokenError {
    match r {
        Err(AccessError::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

fn auth_event_count(entries: &[audit::Entry]) -> usize {
    entries
        .iter()
        .filter(|e| matches!(e.event, Event::Authentication(_)))
        .count()
}

async fn read(access: &Access, p: &Principal, scope: &PatientScope) -> Decision {
    let reason = Sensitive::new("follow-up".to_owned());
    access
        .authorize(&AuthzRequest {
            principal: p,
            action: Action::ReadPhi,
            resource: Resource::Patient(scope),
            purpose: Some(PurposeOfUse::Treat),
            reason: Some(&reason),
        })
        .await
        .unwrap()
}

on_both_backends!(
    a_cached_token_is_refused_at_once_when_another_instance_revokes_it,
    a_cached_token_is_refused_at_once_when_another_instance_retires_its_signing_key,
    a_cached_token_still_expires_at_its_exp,
    a_cached_api_key_is_refused_at_once_when_another_instance_revokes_it,
    cached_grants_follow_grants_and_revocations_made_on_another_instance,
    an_external_change_starts_a_new_epoch_on_every_instance,
    verify_token_writes_no_audit_event_and_validate_token_writes_one,
    a_request_scope_checks_the_generation_once_and_sees_changes_from_the_next_request,
    a_change_made_inside_a_request_scope_is_seen_by_the_same_requests_later_checks,
);

async fn a_cached_token_is_refused_at_once_when_another_instance_revokes_it(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let t = a.issue_token(&service(), None).await.unwrap();
    for _ in 0..3 {
        b.validate_token(&t.token, &meta()).await.unwrap();
    }
    a.revoke_token("admin:ops", &t.jti).await.unwrap();
    assert_eq!(
        token_error(b.validate_token(&t.token, &meta()).await),
        TokenError::Revoked
    );
    assert_eq!(
        token_error(a.validate_token(&t.token, &meta()).await),
        TokenError::Revoked
    );
    // Another token of the same principal is unaffected.
    let other = a.issue_token(&service(), None).await.unwrap();
    b.validate_token(&other.token, &meta()).await.unwrap();
}

async fn a_cached_token_is_refused_at_once_when_another_instance_retires_its_signing_key(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let old_kid = a.signing_keys().await.unwrap()[0].kid.clone();
    let t = a.issue_token(&service(), None).await.unwrap();
    b.validate_token(&t.token, &meta()).await.unwrap();
    a.rotate_signing_key("admin:ops").await.unwrap();
    b.validate_token(&t.token, &meta())
        .await
        .expect("a rotated key still verifies");
    a.retire_signing_key("admin:ops", &old_kid).await.unwrap();
    assert_eq!(
        token_error(b.validate_token(&t.token, &meta()).await),
        TokenError::UnknownKey
    );
    // Tokens of the new key, issued by either instance, verify on both.
    let fresh = b.issue_token(&service(), None).await.unwrap();
    a.validate_token(&fresh.token, &meta()).await.unwrap();
    b.validate_token(&fresh.token, &meta()).await.unwrap();
}

async fn a_cached_token_still_expires_at_its_exp(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let t = a.issue_token(&service(), None).await.unwrap();
    a.validate_token(&t.token, &meta()).await.unwrap();
    // Within the leeway (30 s) after exp the token is still accepted; past it, refused.
    w.clock.set(t.expires_at + 29);
    a.validate_token(&t.token, &meta()).await.unwrap();
    w.clock.set(t.expires_at + 30);
    assert_eq!(
        token_error(a.validate_token(&t.token, &meta()).await),
        TokenError::Expired
    );
    // A clock moved back before nbf (beyond the leeway) makes it not yet valid, cached or not.
    w.clock.set(T0 - 31);
    assert_eq!(
        token_error(a.validate_token(&t.token, &meta()).await),
        TokenError::NotYetValid
    );
}

async fn a_cached_api_key_is_refused_at_once_when_another_instance_revokes_it(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let key = a
        .create_api_key("admin:ops", "billing", &[Role::Service], None)
        .await
        .unwrap();
    for _ in 0..3 {
        b.authenticate_api_key(&key.secret, &meta()).await.unwrap();
    }
    let rotated = a
        .rotate_api_key("admin:ops", &key.id, 0, None)
        .await
        .unwrap();
    assert!(
        matches!(
            b.authenticate_api_key(&key.secret, &meta()).await,
            Err(AccessError::Credential(
                access::CredentialError::Expired | access::CredentialError::Revoked
            ))
        ),
        "a key rotated without overlap is refused at once"
    );
    b.authenticate_api_key(&rotated.secret, &meta())
        .await
        .unwrap();
    a.revoke_api_key("admin:ops", &rotated.id).await.unwrap();
    assert!(matches!(
        b.authenticate_api_key(&rotated.secret, &meta()).await,
        Err(AccessError::Credential(access::CredentialError::Revoked))
    ));
}

async fn cached_grants_follow_grants_and_revocations_made_on_another_instance(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let svc = service();
    let scope = PatientScope {
        patient_id: Sensitive::new("pat-cache-1".to_owned()),
        care_team: Vec::new(),
    };
    for _ in 0..2 {
        assert!(matches!(
            read(&b, &svc, &scope).await,
            Decision::NotFound { .. }
        ));
    }
    let id = a
        .grant_patient(&admin(), &svc.id, &scope.patient_id, Some(60))
        .await
        .unwrap();
    assert!(read(&b, &svc, &scope).await.is_allowed(), "granted at once");
    assert!(read(&b, &svc, &scope).await.is_allowed());
    // The grant's expiry is checked against the clock even when the grant list is cached.
    w.clock.advance(61);
    assert!(matches!(
        read(&b, &svc, &scope).await,
        Decision::NotFound { .. }
    ));
    w.clock.advance(-61);
    assert!(read(&b, &svc, &scope).await.is_allowed());
    a.revoke_grant(&admin(), &id).await.unwrap();
    assert!(
        matches!(read(&b, &svc, &scope).await, Decision::NotFound { .. }),
        "revoked at once"
    );
}

async fn an_external_change_starts_a_new_epoch_on_every_instance(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let first = b.epoch().await.unwrap();
    assert_eq!(b.epoch().await.unwrap(), first, "no change, same epoch");
    a.note_external_change().await.unwrap();
    let second = b.epoch().await.unwrap();
    assert_ne!(
        second, first,
        "a care-team change reaches the other instance"
    );
    access::bump_generation(&w.backend).await.unwrap();
    assert_ne!(
        b.epoch().await.unwrap(),
        second,
        "so does one from a process without an Access"
    );
}

async fn verify_token_writes_no_audit_event_and_validate_token_writes_one(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let t = a.issue_token(&service(), None).await.unwrap();
    let before = auth_event_count(&w.audit_entries().await);
    match a.verify_token(&t.token).await.unwrap() {
        TokenVerdict::Valid(p) => assert_eq!(p.id, "service:lab-feed"),
        other => panic!("expected a valid token, got {other:?}"),
    }
    let garbage = SecretString::from("not.a.token");
    assert!(matches!(
        a.verify_token(&garbage).await.unwrap(),
        TokenVerdict::Refused {
            subject: None,
            error: TokenError::Malformed
        }
    ));
    assert_eq!(auth_event_count(&w.audit_entries().await), before);
    a.validate_token(&t.token, &meta()).await.unwrap();
    assert_eq!(auth_event_count(&w.audit_entries().await), before + 1);
}

/// The generation file is kept open between reads; a file deleted (and recreated by the next
/// change) must still be followed, or revocations would silently stop reaching this instance.
#[tokio::test]
async fn a_deleted_generation_file_is_reopened_and_changes_still_start_a_new_epoch() {
    let w = World::new(false).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let first = b.epoch().await.unwrap();
    let db = w.sqlite_path().expect("an SQLite world");
    let mut gen_file = db.into_os_string();
    gen_file.push("-gen");
    std::fs::remove_file(&gen_file).unwrap();
    a.note_external_change().await.unwrap();
    let second = b.epoch().await.unwrap();
    assert_ne!(second, first, "the recreated file's generation is seen");
    assert_eq!(
        b.epoch().await.unwrap(),
        second,
        "and read again without change"
    );
    a.note_external_change().await.unwrap();
    assert_ne!(
        b.epoch().await.unwrap(),
        second,
        "later changes to the recreated file are seen too"
    );
}

/// `request_scope` reuses the first epoch of a request; a change another instance makes while
/// the request runs applies from the next request on (the documented staleness bound).
async fn a_request_scope_checks_the_generation_once_and_sees_changes_from_the_next_request(
    pg: bool,
) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let t = a.issue_token(&service(), None).await.unwrap();
    access::request_scope(async {
        let first = b.epoch().await.unwrap();
        b.validate_token(&t.token, &meta()).await.unwrap();
        a.revoke_token("admin:ops", &t.jti).await.unwrap();
        assert_eq!(
            b.epoch().await.unwrap(),
            first,
            "one generation check per request"
        );
    })
    .await;
    access::request_scope(async {
        assert_eq!(
            token_error(b.validate_token(&t.token, &meta()).await),
            TokenError::Revoked,
            "the next request sees the revocation"
        );
    })
    .await;
    // Outside any request scope every call checks the generation, as before.
    let outside = b.epoch().await.unwrap();
    a.note_external_change().await.unwrap();
    assert_ne!(b.epoch().await.unwrap(), outside);
}

/// A request that changes something through its own instance (an admin revoking a token) must
/// not keep using the epoch from before its change.
async fn a_change_made_inside_a_request_scope_is_seen_by_the_same_requests_later_checks(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let t = a.issue_token(&service(), None).await.unwrap();
    access::request_scope(async {
        let before = a.epoch().await.unwrap();
        a.validate_token(&t.token, &meta()).await.unwrap();
        a.revoke_token("admin:ops", &t.jti).await.unwrap();
        assert_ne!(a.epoch().await.unwrap(), before);
        assert_eq!(
            token_error(a.validate_token(&t.token, &meta()).await),
            TokenError::Revoked
        );
    })
    .await;
}
