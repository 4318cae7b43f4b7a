//! Cedar policies, patient scope, grants, break-glass and policy replacement, against SQLite
//! and PostgreSQL.

mod common;

use access::policy::ALL_ACTIONS;
use access::{
    ALL_ROLES, Access, AccessError, Action, AuthMethod, AuthzRequest, Decision, PatientScope,
    Principal, PurposeOfUse, RequestMeta, Resource, Role,
};
use audit::Event;
use common::*;
use phi::Sensitive;

const CANARY_PATIENT: &str = "CANARY-PATIENT-7f3a9";
const CANARY_REASON: &str = "CANARY-REASON chest pain, unconscious on arrival";

fn meta() -> RequestMeta {
    RequestMeta::new("192.0.2.9", Some("req-authz".into()))
}

fn person(role: Role) -> Principal {
    Principal::new(
        format!("user:{}", role.as_str()),
        vec![role],
        AuthMethod::Jwt,
    )
    .unwrap()
}

fn admin() -> Principal {
    Principal::new("admin:alice", vec![Role::Admin], AuthMethod::PasswordTotp).unwrap()
}

fn patient(id: &str, team: &[&str]) -> PatientScope {
    PatientScope {
        patient_id: Sensitive::new(id.to_owned()),
        care_team: team.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn reason() -> Sensitive<String> {
    Sensitive::new(CANARY_REASON.to_owned())
}

async fn decide(
    access: &Access,
    p: &Principal,
    action: Action,
    scope: Option<&PatientScope>,
) -> Decision {
    let r = reason();
    let resource = match (action, scope) {
        (a, Some(s)) if a.is_patient_action() => Resource::Patient(s),
        (Action::ReadAudit | Action::ExportAudit, _) => Resource::AuditLog,
        (Action::ReadDeidentified, _) => Resource::Dataset,
        _ => Resource::Gateway,
    };
    access
        .authorize(&AuthzRequest {
            principal: p,
            action,
            resource,
            purpose: Some(PurposeOfUse::Treat),
            reason: Some(&r),
        })
        .await
        .unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    CareTeam,
    Granted,
    BreakGlass,
    Outside,
}

#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Allow,
    Forbidden,
    NotFound,
}

/// The oracle: what the default policies are meant to decide, written independently of them.
fn expected(role: Role, action: Action, scope: Scope) -> Expect {
    use Role::*;
    let clinical = matches!(role, Clinician | CareCoordinator | Service);
    let allowed = match action {
        Action::ReadPhi | Action::RunModel => {
            (clinical && matches!(scope, Scope::CareTeam | Scope::Granted))
                || (role == Clinician && scope == Scope::BreakGlass)
        }
        Action::BreakGlass => role == Clinician,
        Action::ListPatients => clinical,
        Action::ReadDeidentified => role == Analyst,
        Action::ReadAudit | Action::ExportAudit => role == Auditor,
        Action::ManageKeys
        | Action::ManageUsers
        | Action::ManagePolicies
        | Action::ReviewBreakGlass => role == Admin,
    };
    if allowed {
        Expect::Allow
    } else if action.is_patient_action() && scope == Scope::Outside {
        Expect::NotFound
    } else {
        Expect::Forbidden
    }
}

fn kind(d: &Decision) -> Expect {
    match d {
        Decision::Allow { .. } => Expect::Allow,
        Decision::Forbidden { .. } => Expect::Forbidden,
        Decision::NotFound { .. } => Expect::NotFound,
    }
}

on_both_backends!(
    every_action_by_every_role_in_every_scope_is_decided_as_the_policy_says,
    missing_purpose_or_reason_is_a_typed_error_before_any_policy,
    out_of_scope_reads_look_like_missing_patients_and_lists_hold_only_in_scope_patients,
    break_glass_grants_time_limited_access_recorded_and_listed_for_review,
    grants_and_their_revocation_take_effect_at_once_on_every_instance,
    invalid_policy_sets_are_refused_and_the_old_set_stays,
    policy_replacement_is_audited_with_before_and_after_and_reaches_other_instances,
    forbid_beats_permit_and_anything_unpermitted_is_denied,
    a_policy_set_that_removes_the_admins_own_policy_permission_is_refused,
);

async fn every_action_by_every_role_in_every_scope_is_decided_as_the_policy_says(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let admin = admin();
    let mut checked = 0;
    for &role in ALL_ROLES {
        let p = person(role);
        let team = patient(
            &format!("pat-team-{}", role.as_str()),
            &[p.id.as_str(), "user:someone-else"],
        );
        let granted = patient(
            &format!("pat-granted-{}", role.as_str()),
            &["user:someone-else"],
        );
        access
            .grant_patient(&admin, &p.id, &granted.patient_id, Some(3600))
            .await
            .unwrap();
        let outside = patient(
            &format!("pat-outside-{}", role.as_str()),
            &["user:someone-else"],
        );
        let mut scopes = vec![
            (Scope::CareTeam, team),
            (Scope::Granted, granted),
            (Scope::Outside, outside),
        ];
        if role == Role::Clinician {
            let bg = patient("pat-break-glass", &["user:someone-else"]);
            access
                .break_glass(&p, &bg, &reason(), &meta())
                .await
                .unwrap();
            scopes.push((Scope::BreakGlass, bg));
        }
        for (scope, pat) in &scopes {
            for &action in ALL_ACTIONS {
                if action == Action::BreakGlass && *scope == Scope::BreakGlass {
                    continue;
                }
                let d = decide(&access, &p, action, Some(pat)).await;
                assert_eq!(
                    kind(&d),
                    expected(role, action, *scope),
                    "{role:?} {action:?} {scope:?}: {d:?}"
                );
                if let Decision::Allow { break_glass, .. } = &d {
                    assert_eq!(
                        *break_glass,
                        *scope == Scope::BreakGlass
                            && action.is_patient_action()
                            && action != Action::BreakGlass
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 6 * 3 * 11 + 10);
    // Separation of duties: a clinician who is also an admin gets no PHI.
    let both = Principal::new(
        "user:dr-admin",
        vec![Role::Clinician, Role::Admin],
        AuthMethod::Jwt,
    )
    .unwrap();
    let pat = patient("pat-dual", &["user:dr-admin"]);
    let d = decide(&access, &both, Action::ReadPhi, Some(&pat)).await;
    assert_eq!(
        d,
        Decision::Forbidden {
            policies: vec!["no-phi-for-analyst-auditor-admin".into()]
        }
    );
    // A principal with no role gets nothing (default deny).
    let nobody = Principal::new("user:nobody", vec![], AuthMethod::Jwt).unwrap();
    let pat = patient("pat-nobody", &["user:nobody"]);
    for &action in ALL_ACTIONS {
        assert!(
            !decide(&access, &nobody, action, Some(&pat))
                .await
                .is_allowed(),
            "{action:?}"
        );
    }
}

async fn ask(
    access: &Access,
    p: &Principal,
    pat: &PatientScope,
    purpose: Option<PurposeOfUse>,
    reason: Option<&Sensitive<String>>,
) -> Result<Decision, AccessError> {
    access
        .authorize(&AuthzRequest {
            principal: p,
            action: Action::ReadPhi,
            resource: Resource::Patient(pat),
            purpose,
            reason,
        })
        .await
}

async fn missing_purpose_or_reason_is_a_typed_error_before_any_policy(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let p = person(Role::Clinician);
    let pat = patient("pat-1", &[p.id.as_str()]);
    let r = reason();
    let blank = Sensitive::new("   ".to_owned());
    assert!(matches!(
        ask(&access, &p, &pat, None, Some(&r)).await,
        Err(AccessError::MissingPurpose)
    ));
    assert!(matches!(
        ask(&access, &p, &pat, Some(PurposeOfUse::Treat), None).await,
        Err(AccessError::MissingReason)
    ));
    assert!(matches!(
        ask(&access, &p, &pat, Some(PurposeOfUse::Treat), Some(&blank)).await,
        Err(AccessError::MissingReason)
    ));
    assert!(
        ask(&access, &p, &pat, Some(PurposeOfUse::Treat), Some(&r))
            .await
            .unwrap()
            .is_allowed()
    );
    // The messages name the header and never the values.
    let msg = AccessError::MissingReason.to_string();
    assert!(msg.contains("X-Access-Reason"));
    // A patient action on a non-patient resource is a usage error.
    assert!(matches!(
        access
            .authorize(&AuthzRequest {
                principal: &p,
                action: Action::ReadPhi,
                resource: Resource::Gateway,
                purpose: Some(PurposeOfUse::Treat),
                reason: Some(&r)
            })
            .await,
        Err(AccessError::InvalidArgument(_))
    ));
    assert!(matches!(
        access::parse_purpose("TREAT"),
        Ok(PurposeOfUse::Treat)
    ));
    assert!(matches!(
        access::parse_purpose("etreat"),
        Ok(PurposeOfUse::Etreat)
    ));
    assert!(matches!(
        access::parse_purpose(""),
        Err(AccessError::MissingPurpose)
    ));
    assert!(matches!(
        access::parse_purpose("BECAUSE"),
        Err(AccessError::UnknownPurpose)
    ));
}

async fn out_of_scope_reads_look_like_missing_patients_and_lists_hold_only_in_scope_patients(
    pg: bool,
) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let dr = person(Role::Clinician);
    let mine = patient("pat-mine", &[dr.id.as_str()]);
    let theirs = patient(CANARY_PATIENT, &["user:dr-b"]);
    let d = decide(&access, &dr, Action::ReadPhi, Some(&theirs)).await;
    assert_eq!(d.http_status(), 404);
    assert!(matches!(d, Decision::NotFound { .. }));
    assert!(!format!("{d:?}").contains(CANARY_PATIENT));
    // A list is authorized per row: only the in-scope patient survives.
    let rows = [mine.clone(), theirs.clone()];
    let mut visible = Vec::new();
    for row in &rows {
        if decide(&access, &dr, Action::ReadPhi, Some(row))
            .await
            .is_allowed()
        {
            visible.push(row.patient_id.expose().clone());
        }
    }
    assert_eq!(visible, vec!["pat-mine".to_owned()]);
    assert!(
        decide(&access, &dr, Action::ListPatients, None)
            .await
            .is_allowed()
    );
}

async fn break_glass_grants_time_limited_access_recorded_and_listed_for_review(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let dr = person(Role::Clinician);
    let pat = patient(CANARY_PATIENT, &["user:dr-b"]);
    assert!(matches!(
        decide(&access, &dr, Action::ReadPhi, Some(&pat)).await,
        Decision::NotFound { .. }
    ));
    // No reason, no glass.
    assert!(matches!(
        access
            .break_glass(&dr, &pat, &Sensitive::new(String::new()), &meta())
            .await,
        Err(AccessError::MissingReason)
    ));
    // Only clinicians may break the glass.
    assert!(
        access
            .break_glass(&person(Role::CareCoordinator), &pat, &reason(), &meta())
            .await
            .is_err()
    );
    let grant = access
        .break_glass(&dr, &pat, &reason(), &meta())
        .await
        .unwrap();
    assert_eq!(grant.expires_at, T0 + 3600);
    let d = decide(&access, &dr, Action::ReadPhi, Some(&pat)).await;
    assert_eq!(
        d,
        Decision::Allow {
            policies: vec!["break-glass-read".into()],
            break_glass: true
        }
    );
    // Another clinician is unaffected; so is another patient.
    assert!(
        !decide(
            &access,
            &Principal::new("user:dr-c", vec![Role::Clinician], AuthMethod::Jwt).unwrap(),
            Action::ReadPhi,
            Some(&pat)
        )
        .await
        .is_allowed()
    );
    assert!(
        !decide(
            &access,
            &dr,
            Action::ReadPhi,
            Some(&patient("pat-other", &[]))
        )
        .await
        .is_allowed()
    );

    // Expires after 60 minutes.
    w.clock.advance(3599);
    assert!(
        decide(&access, &dr, Action::ReadPhi, Some(&pat))
            .await
            .is_allowed()
    );
    w.clock.advance(1);
    assert!(matches!(
        decide(&access, &dr, Action::ReadPhi, Some(&pat)).await,
        Decision::NotFound { .. }
    ));

    // Listed for review with its reason.
    let list = access.list_break_glass(None).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, grant.id);
    assert_eq!(list[0].principal, "user:clinician");
    assert_eq!(list[0].reason.expose(), CANARY_REASON);
    assert!(!list[0].active);
    assert!(!format!("{list:?}").contains("CANARY"));
    // Recorded as an emergency-access event: patient and reason as keyed hashes only.
    let entries = w.audit_entries().await;
    let bg: Vec<_> = entries
        .iter()
        .filter(|e| matches!(e.event, Event::BreakGlass(_)))
        .collect();
    assert_eq!(bg.len(), 1);
    assert!(bg[0].sealed_detail.is_some());
    let Event::BreakGlass(ev) = &bg[0].event else {
        unreachable!()
    };
    assert_eq!(ev.principal, "user:clinician");
    assert!(ev.patient.as_str().starts_with("hmac-sha256:"));
    assert_eq!(list[0].patient, ev.patient.as_str());
    assert!(
        !w.audit_text().await.contains("CANARY"),
        "PHI canary in the audit log"
    );
    if let Some(path) = w.sqlite_path() {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("CANARY"),
            "PHI canary in the access database"
        );
    }
}

async fn grants_and_their_revocation_take_effect_at_once_on_every_instance(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let svc = person(Role::Service);
    let pat = patient("pat-42", &[]);
    assert!(
        !decide(&b, &svc, Action::ReadPhi, Some(&pat))
            .await
            .is_allowed()
    );
    let id = a
        .grant_patient(&admin(), &svc.id, &pat.patient_id, None)
        .await
        .unwrap();
    assert!(
        decide(&b, &svc, Action::ReadPhi, Some(&pat))
            .await
            .is_allowed()
    );
    a.revoke_grant(&admin(), &id).await.unwrap();
    assert!(matches!(
        decide(&b, &svc, Action::ReadPhi, Some(&pat)).await,
        Decision::NotFound { .. }
    ));
    // Only admins grant.
    assert!(
        a.grant_patient(&svc, &svc.id, &pat.patient_id, None)
            .await
            .is_err()
    );
}

async fn invalid_policy_sets_are_refused_and_the_old_set_stays(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let before = access.policies().await.unwrap();
    assert_eq!(before.text, access::DEFAULT_POLICIES);
    let cases = [
        "permit (principal, action, resource", // syntax
        "@id(\"x\") permit (principal, action == Action::\"fly\", resource);", // unknown action
        "@id(\"x\") permit (principal, action == Action::\"read_phi\", resource is Patient) when { resource.ssn == \"1\" };", // unknown attribute
        "permit (principal, action == Action::\"read_phi\", resource is Patient);", // no @id
    ];
    for text in cases {
        match access.replace_policies(&admin(), text).await {
            Err(AccessError::InvalidPolicy(msg)) => assert!(!msg.is_empty()),
            other => panic!("{text}: expected InvalidPolicy, got {other:?}"),
        }
        assert!(access.validate_policies(text).is_err());
    }
    assert_eq!(access.policies().await.unwrap(), before);
    let dr = person(Role::Clinician);
    assert!(
        decide(
            &access,
            &dr,
            Action::ReadPhi,
            Some(&patient("p", &[dr.id.as_str()]))
        )
        .await
        .is_allowed()
    );
    // Non-admins cannot replace policies even with valid text.
    assert!(
        access
            .replace_policies(&dr, access::DEFAULT_POLICIES)
            .await
            .is_err()
    );
    assert!(
        !w.audit_entries()
            .await
            .iter()
            .any(|e| matches!(e.event, Event::ConfigChange(_)))
    );
}

async fn policy_replacement_is_audited_with_before_and_after_and_reaches_other_instances(pg: bool) {
    let w = World::new(pg).await;
    let a = w.open().await;
    let b = w.second_instance().await;
    let dr = person(Role::Clinician);
    let pat = patient("p", &[dr.id.as_str()]);
    assert!(
        decide(&b, &dr, Action::ReadPhi, Some(&pat))
            .await
            .is_allowed()
    );
    // Replace with a set that lets auditors do their job and nothing else.
    let text = "@id(\"auditor-only\")\npermit (principal in Role::\"auditor\", action == Action::\"read_audit\", resource is AuditLog);\n@id(\"admins-keep-policies\")\npermit (principal in Role::\"admin\", action == Action::\"manage_policies\", resource is Gateway);\n";
    let info = a.replace_policies(&admin(), text).await.unwrap();
    assert_eq!(info.updated_by, "admin:alice");
    assert!(
        !decide(&b, &dr, Action::ReadPhi, Some(&pat))
            .await
            .is_allowed()
    );
    assert!(
        decide(&b, &person(Role::Auditor), Action::ReadAudit, None)
            .await
            .is_allowed()
    );
    let entries = w.audit_entries().await;
    let changes: Vec<_> = entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::ConfigChange(c) if c.setting == "access.policies" => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].principal, "admin:alice");
    assert_eq!(changes[0].before["text"], access::DEFAULT_POLICIES);
    assert_eq!(changes[0].after["text"], text);
    assert_eq!(changes[0].after["sha256"], info.sha256.as_str());
    assert_ne!(changes[0].before["sha256"], changes[0].after["sha256"]);
}

async fn forbid_beats_permit_and_anything_unpermitted_is_denied(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let text = format!(
        "{}\n@id(\"permit-everything\")\npermit (principal, action, resource);\n",
        access::DEFAULT_POLICIES
    );
    access.replace_policies(&admin(), &text).await.unwrap();
    // The catch-all permit does not override the forbids.
    let analyst = person(Role::Analyst);
    let pat = patient("p", &[analyst.id.as_str()]);
    let d = decide(&access, &analyst, Action::ReadPhi, Some(&pat)).await;
    assert_eq!(
        d,
        Decision::Forbidden {
            policies: vec!["no-phi-for-analyst-auditor-admin".into()]
        }
    );
    let r = Sensitive::new(String::new());
    let dr = person(Role::Clinician);
    let out = access
        .authorize(&AuthzRequest {
            principal: &dr,
            action: Action::ReadPhi,
            resource: Resource::Patient(&pat),
            purpose: Some(PurposeOfUse::Treat),
            reason: Some(&r),
        })
        .await;
    assert!(matches!(out, Err(AccessError::MissingReason)));
    // With only a narrow permit, everything else is denied by default.
    let narrow = "@id(\"one\")\npermit (principal in Role::\"auditor\", action == Action::\"read_audit\", resource is AuditLog);\n@id(\"admins-keep-policies\")\npermit (principal in Role::\"admin\", action == Action::\"manage_policies\", resource is Gateway);\n";
    access.replace_policies(&admin(), narrow).await.unwrap();
    let d = decide(&access, &person(Role::Auditor), Action::ExportAudit, None).await;
    assert_eq!(d, Decision::Forbidden { policies: vec![] });
    assert_eq!(d.rule(), "default-deny");
}

async fn a_policy_set_that_removes_the_admins_own_policy_permission_is_refused(pg: bool) {
    let w = World::new(pg).await;
    let access = w.open().await;
    let before = access.policies().await.unwrap();
    // Valid Cedar, but no admin could manage policies afterwards.
    let text = "@id(\"auditor-only\")\npermit (principal in Role::\"auditor\", action == Action::\"read_audit\", resource is AuditLog);\n";
    match access.replace_policies(&admin(), text).await {
        Err(AccessError::InvalidPolicy(msg)) => assert!(msg.contains("manage_policies"), "{msg}"),
        other => panic!("expected InvalidPolicy, got {other:?}"),
    }
    // A forbid aimed at the admin counts too.
    let forbid = format!(
        "{}\n@id(\"no-policy-admin\")\nforbid (principal, action == Action::\"manage_policies\", resource);\n",
        access::DEFAULT_POLICIES
    );
    assert!(matches!(
        access.replace_policies(&admin(), &forbid).await,
        Err(AccessError::InvalidPolicy(_))
    ));
    assert_eq!(access.policies().await.unwrap(), before);
    assert!(
        !w.audit_entries()
            .await
            .iter()
            .any(|e| matches!(e.event, Event::ConfigChange(_)))
    );
}
