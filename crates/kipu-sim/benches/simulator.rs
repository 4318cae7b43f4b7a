//! How fast the simulator starts and serves at 100,000 patients (in process, through the
//! router, signature verification included), with its cache of serialized records warm
//! (`*_cached`) and cold (`*_generated`).

use std::sync::Arc;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use kipu::signing::{self, CanonicalString, RequestTarget};
use kipu_sim::{SimConfig, Simulator};
use tower::ServiceExt as _;

fn signed_get(config: &SimConfig, target: &RequestTarget) -> http::Request<axum::body::Body> {
    let date = signing::http_date(SystemTime::now());
    let canonical = CanonicalString::for_get(target.as_str(), &date);
    let signature = signing::sign(config.api_version, &config.secret_key, &canonical);
    http::Request::get(target.as_str())
        .header("date", date)
        .header("accept", config.api_version.accept_header())
        .header(
            "authorization",
            format!(
                "{} {}:{signature}",
                config.api_version.scheme(),
                config.access_id
            ),
        )
        .body(axum::body::Body::empty())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let config = SimConfig {
        patients: 100_000,
        ..SimConfig::default()
    };
    c.bench_function("start_100k_patients", |b| {
        b.iter(|| Simulator::new(&config).unwrap())
    });

    let sim = Arc::new(Simulator::new(&config).unwrap());
    let router = kipu_sim::router(Arc::clone(&sim));
    let census = RequestTarget::new(
        "/api/patients/census",
        &[],
        &[("page", "100"), ("per", "1000")],
        &config.app_id,
    )
    .unwrap();
    c.bench_function("census_last_page_1000_of_100k", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let r = router
                    .clone()
                    .oneshot(signed_get(&config, &census))
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap()
            })
        })
    });
    // A 100-patient census page: the same page again and again (served from the cache of
    // serialized patients), and a sweep over all 1,000 pages, which is larger than the cache
    // and so always generates (FIFO eviction, cyclic access).
    let page_100 = RequestTarget::new(
        "/api/patients/census",
        &[],
        &[("page", "17"), ("per", "100")],
        &config.app_id,
    )
    .unwrap();
    c.bench_function("census_page_100_cached", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let r = router
                    .clone()
                    .oneshot(signed_get(&config, &page_100))
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap()
            })
        })
    });
    let sweep: Vec<RequestTarget> = (1..=1000)
        .map(|p| {
            RequestTarget::new(
                "/api/patients/census",
                &[],
                &[("page", &p.to_string()), ("per", "100")],
                &config.app_id,
            )
            .unwrap()
        })
        .collect();
    let mut next = 0usize;
    c.bench_function("census_page_100_generated", |b| {
        b.iter(|| {
            next = (next + 1) % sweep.len();
            runtime.block_on(async {
                let r = router
                    .clone()
                    .oneshot(signed_get(&config, &sweep[next]))
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap()
            })
        })
    });
    let last = sim.casefile_id(99_999);
    let vitals = RequestTarget::new(
        "/api/patients/{patient_id}/vital_signs",
        &[&last],
        &[],
        &config.app_id,
    )
    .unwrap();
    c.bench_function("patient_vital_signs_cached", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let r = router
                    .clone()
                    .oneshot(signed_get(&config, &vitals))
                    .await
                    .unwrap();
                axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap()
            })
        })
    });
    let ids: Vec<String> = (0..50_000).map(|i| sim.casefile_id(i * 2)).collect();
    let targets: Vec<RequestTarget> = ids
        .iter()
        .map(|id| {
            RequestTarget::new(
                "/api/patients/{patient_id}/vital_signs",
                &[id],
                &[],
                &config.app_id,
            )
            .unwrap()
        })
        .collect();
    let fresh = Arc::new(Simulator::new(&config).unwrap());
    let fresh_router = kipu_sim::router(fresh);
    let mut next = 0usize;
    // Each iteration a patient not asked for before (50,000 of them; criterion needs fewer).
    c.bench_function("patient_vital_signs_generated", |b| {
        b.iter(|| {
            next = (next + 1) % targets.len();
            runtime.block_on(async {
                let r = fresh_router
                    .clone()
                    .oneshot(signed_get(&config, &targets[next]))
                    .await
                    .unwrap();
                axum::body::to_bytes(r.into_body(), usize::MAX)
                    .await
                    .unwrap()
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
