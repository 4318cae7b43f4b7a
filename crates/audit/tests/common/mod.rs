//! Shared fixtures for the audit integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use audit::*;
use phi::Sensitive;

/// The KEK the test keys are sealed under (a software provider with a fixed root key).
pub fn kek() -> Arc<dyn sealed::KeyProvider> {
    let root = sealed::DataKey::from_slice(&[0x5a; 32]).unwrap();
    Arc::new(sealed::SoftwareKeyProvider::from_root(root, "file").unwrap())
}

pub fn keys(dir: &Path) -> Arc<FileKeys> {
    Arc::new(FileKeys::open_or_create(&dir.join("keys"), "phigate-audit-test", kek()).unwrap())
}

pub fn sqlite_config(dir: &Path, checkpoint_every: Duration) -> LogConfig {
    let mut cfg = LogConfig::new(Storage::Sqlite {
        path: dir.join("audit.db"),
    });
    cfg.checkpoint_interval = checkpoint_every;
    cfg.origin = Some("phigate-audit/test".into());
    cfg
}

pub fn patient(hasher: &dyn PatientHasher, id: &str) -> KeyedHash {
    hasher.patient_ref(&Sensitive::new(id.to_string()))
}

pub fn phi_read(hasher: &dyn PatientHasher, principal: &str, patient_id: &str, n: u64) -> Event {
    Event::PhiAccess(PhiAccess {
        principal: principal.into(),
        roles: vec!["clinician".into()],
        patient: Some(patient(hasher, patient_id)),
        resource_kind: "evaluation".into(),
        resource_id: Some(hasher.keyed_hash(format!("eval-{n}").as_bytes())),
        action: AccessAction::Read,
        purpose: PurposeOfUse::Treat,
        reason: Some(hasher.keyed_hash(b"follow-up after discharge")),
        outcome: Outcome::Success,
        request_id: format!("req-{n}"),
    })
}

pub fn disclosure(hasher: &dyn PatientHasher, patient_id: &str, recipient: &str) -> Event {
    Event::Disclosure(Disclosure {
        principal: "user:records-clerk".into(),
        patient: patient(hasher, patient_id),
        recipient: recipient.into(),
        purpose: PurposeOfUse::Pubhlth,
        description: "immunization history, lab results".into(),
        request_id: "req-d".into(),
    })
}

/// One event of every kind.
pub fn every_kind(hasher: &dyn PatientHasher) -> Vec<Event> {
    vec![
        Event::Authentication(AuthenticationAttempt {
            method: AuthMethod::PasswordTotp,
            principal: Some("user:alice".into()),
            source_address: "192.0.2.10".into(),
            outcome: Outcome::Failure,
            failure_reason: Some(AuthFailureReason::MfaFailed),
            request_id: Some("req-a".into()),
        }),
        phi_read(hasher, "user:alice", "P-1001", 1),
        disclosure(hasher, "P-1001", "County Health Department"),
        Event::ModelInference(ModelInference {
            principal: "svc:summarizer".into(),
            patient: Some(patient(hasher, "P-1001")),
            model_id: "readmission-lace".into(),
            model_version: "1.2.0".into(),
            input_sha256: ContentHash::of_json(&serde_json::json!({"los": 4, "acuity": true}))
                .unwrap(),
            output_sha256: ContentHash::of_bytes(b"score=11"),
            latency_ms: 42,
            cost_micro_usd: 1250,
            request_id: "req-m".into(),
        }),
        Event::ConfigChange(ConfigChange::new(
            "admin:ops",
            "kipu.credentials",
            serde_json::json!({"base_url": "https://api.example", "secret_key": "old-secret", "timeout_s": 30}),
            serde_json::json!({"base_url": "https://api.example", "secret_key": "new-secret", "timeout_s": 60}),
            hasher,
        )),
        Event::KeyLifecycle(KeyLifecycle {
            principal: "admin:ops".into(),
            key_id: "kek-2".into(),
            key_purpose: "kek".into(),
            action: KeyAction::Rotated,
        }),
        Event::BreakGlass(BreakGlass {
            principal: "user:er-doc".into(),
            patient: patient(hasher, "P-2002"),
            reason: hasher.keyed_hash(b"unconscious patient in ED"),
            expires_at: "2026-11-23T16:00:00Z".into(),
            request_id: "req-b".into(),
        }),
        Event::PolicyDenied(PolicyDenied {
            principal: "user:bob".into(),
            roles: vec!["billing".into()],
            action: "read".into(),
            resource_kind: "clinical_summary".into(),
            patient: Some(patient(hasher, "P-1001")),
            rule: "default-deny".into(),
            request_id: "req-p".into(),
        }),
    ]
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
