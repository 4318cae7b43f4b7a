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

/// Appends from 8 tasks without pause while `log` is verified `rounds` times (alternating
/// the default options and small chunks): every run must be intact and cover at least every
/// entry acknowledged before it started. Returns how many runs overlapped appends. At the
/// end, with the writers stopped, a last run must cover exactly every acknowledged entry.
pub async fn verify_while_appending(
    log: &AuditLog,
    keys: &Arc<FileKeys>,
    start_after: u64,
    rounds: usize,
) -> usize {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let verifier = keys.note_verifier();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..8u64 {
        let (log, keys, stop, acked) = (log.clone(), keys.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let ev = phi_read(keys.as_ref(), &format!("user:w{w}"), "P-7", n);
                log.append(ev).await.unwrap();
                acked.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        }));
    }
    while acked.load(Ordering::SeqCst) < start_after {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut overlapped = 0;
    let mut last = 0;
    for round in 0..rounds {
        let options = if round % 2 == 0 {
            VerifyOptions::default()
        } else {
            VerifyOptions {
                chunk_leaves: 64,
                parallelism: 4,
            }
        };
        let before = acked.load(Ordering::SeqCst);
        let report = verify_log_with(log, &verifier, options).await.unwrap();
        let after = acked.load(Ordering::SeqCst);
        assert!(report.is_intact(), "round {round}: {report:?}");
        assert!(
            report.entries >= before,
            "round {round}: {report:?} < {before}"
        );
        assert!(report.entries >= last);
        last = report.entries;
        if after > before {
            overlapped += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let report = verify_log(log, &verifier).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.entries, acked.load(Ordering::SeqCst));
    overlapped
}
