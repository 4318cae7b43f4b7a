//! Per-request costs of the access core on SQLite (the embedded default): API key check,
//! token validation (both with their durable audit record), token verification without the
//! audit append (as the server does it, recording the event with the request's others), token
//! issue, and one Cedar decision for a patient read. Everything after the first call runs
//! from the caches (one generation check each; see the `cache` module). Figures in
//! `docs/benchmarks.md` ("Access core").

use std::sync::Arc;

use access::*;
use criterion::{Criterion, criterion_group, criterion_main};
use phi::Sensitive;
use sealed::{DataKey, SoftwareKeyProvider};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let access = rt.block_on(async {
        let keys = Arc::new(
            audit::FileKeys::open_or_create(&dir.path().join("k"), "bench", bench_kek()).unwrap(),
        );
        let log = audit::AuditLog::open(
            audit::LogConfig::new(audit::Storage::Sqlite {
                path: dir.path().join("audit.db"),
            }),
            keys.clone(),
        )
        .await
        .unwrap();
        let provider = Arc::new(
            SoftwareKeyProvider::from_root(DataKey::from_slice(&[9u8; 32]).unwrap(), "env")
                .unwrap(),
        );
        Access::open(AccessConfig::new(
            Backend::Sqlite {
                path: dir.path().join("access.db"),
            },
            provider,
            log,
            keys,
            "https://bench",
            "bench",
        ))
        .await
        .unwrap()
    });
    let meta = RequestMeta::new("127.0.0.1", Some("bench".into()));
    let key = rt
        .block_on(access.create_api_key("bench", "svc", &[Role::Service], None))
        .unwrap();
    let principal =
        Principal::new("user:dr-bench", vec![Role::Clinician], AuthMethod::Jwt).unwrap();
    let token = rt.block_on(access.issue_token(&principal, None)).unwrap();
    let scope = PatientScope {
        patient_id: Sensitive::new("P-000123".to_owned()),
        care_team: vec!["user:dr-bench".to_owned(), "user:dr-other".to_owned()],
    };
    let reason = Sensitive::new("follow-up".to_owned());

    let mut g = c.benchmark_group("access");
    g.bench_function("authenticate_api_key (+ audit append)", |b| {
        b.iter(|| {
            rt.block_on(access.authenticate_api_key(&key.secret, &meta))
                .unwrap()
        })
    });
    g.bench_function("validate_token (+ audit append)", |b| {
        b.iter(|| {
            rt.block_on(access.validate_token(&token.token, &meta))
                .unwrap()
        })
    });
    g.bench_function("verify_token (cached; caller audits)", |b| {
        b.iter(|| {
            let v = rt.block_on(access.verify_token(&token.token)).unwrap();
            assert!(matches!(v, TokenVerdict::Valid(_)));
        })
    });
    g.bench_function("issue_token", |b| {
        b.iter(|| rt.block_on(access.issue_token(&principal, None)).unwrap())
    });
    g.bench_function("authorize read_phi (care team, grants lookup)", |b| {
        b.iter(|| {
            let d = rt
                .block_on(access.authorize(&AuthzRequest {
                    principal: &principal,
                    action: Action::ReadPhi,
                    resource: Resource::Patient(&scope),
                    purpose: Some(PurposeOfUse::Treat),
                    reason: Some(&reason),
                }))
                .unwrap();
            assert!(d.is_allowed());
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// The KEK the audit log's keys are sealed under in this benchmark (a fixed software root key).
fn bench_kek() -> Arc<dyn sealed::KeyProvider> {
    let root = sealed::DataKey::from_slice(&[0x5a; 32]).unwrap();
    Arc::new(sealed::SoftwareKeyProvider::from_root(root, "file").unwrap())
}
