//! How fast the simulator starts and serves at 100,000 patients (in process, through the
//! router, signature verification included).

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
    let last = sim.casefile_id(99_999);
    let vitals = RequestTarget::new(
        "/api/patients/{patient_id}/vital_signs",
        &[&last],
        &[],
        &config.app_id,
    )
    .unwrap();
    c.bench_function("patient_vital_signs", |b| {
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
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
