//! Benchmark workload (bench/kipu_fetch.sh): the whole census, then every page of every
//! patient's vital signs, with a fixed number of requests in flight. Prints one JSON line with
//! the record count and the wall time; prints no record.
//!
//! Configuration comes from the environment like the binary's: `KIPU_ACCESS_ID`,
//! `KIPU_SECRET_KEY`, `KIPU_APP_ID`, `KIPU_BASE_URL`, `KIPU_API_VERSION`, plus
//! `BENCH_CONCURRENCY` (default 8) and `BENCH_PER` (default 100).

use std::time::Instant;

use futures::{StreamExt as _, TryStreamExt as _};
use kipu::query::{CensusQuery, CreatedAtRange};
use kipu::{Client, ClientConfig, Credentials};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("{name} is not set");
        std::process::exit(2)
    })
}

fn number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One worker per CPU this process may use: on a single pinned CPU a current-thread runtime
    // (no work stealing, no cross-thread wake-ups), otherwise the multi-thread one.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let runtime = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let version = std::env::var("KIPU_API_VERSION")
        .unwrap_or_else(|_| "3".into())
        .parse()?;
    let concurrency = number("BENCH_CONCURRENCY", 8);
    let per = u32::try_from(number("BENCH_PER", 100))?;
    let credentials = Credentials::new(
        var("KIPU_ACCESS_ID"),
        var("KIPU_SECRET_KEY").into(),
        var("KIPU_APP_ID"),
        version,
    );
    let config = ClientConfig::builder(credentials)
        .base_url(var("KIPU_BASE_URL"))
        .concurrency(concurrency)
        .build()?;
    let client = Client::new(config)?;

    let started = Instant::now();
    let patients: Vec<String> = client
        .patients()
        .census(&CensusQuery::default())
        .per(per)
        .stream()
        .map_ok(|p| p.casefile_id.into_inner())
        .try_collect()
        .await?;
    let census_records = patients.len();
    let vital_records: usize = futures::stream::iter(patients)
        .map(|id| {
            let client = client.clone();
            async move {
                client
                    .medical_records()
                    .patient_vital_signs(&id, &CreatedAtRange::default())
                    .per(per)
                    .stream()
                    .try_fold(0usize, |n, _| async move { Ok(n + 1) })
                    .await
            }
        })
        .buffer_unordered(concurrency)
        .try_fold(0usize, |total, n| async move { Ok(total + n) })
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"client\": \"phigate\", \"patients\": {census_records}, \"records\": {}, \"seconds\": {seconds:.3}}}",
        census_records + vital_records
    );
    Ok(())
}
