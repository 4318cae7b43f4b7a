//! Audit log benchmarks: durable appends/s with 1, 8 and 64 concurrent writers (SQLite, and
//! PostgreSQL when `PHIGATE_BENCH_DATABASE_URL` or `PHIGATE_TEST_DATABASE_URL` is set), full
//! verification of a 1,000,000-entry log (`AUDIT_BENCH_VERIFY_ENTRIES` to change), and proof
//! latency on that log. Run through `bench/audit.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;

fn kek() -> Arc<dyn sealed::KeyProvider> {
    let root = sealed::DataKey::from_slice(&[0x5a; 32]).unwrap();
    Arc::new(sealed::SoftwareKeyProvider::from_root(root, "file").unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn event(keys: &FileKeys, n: u64) -> Event {
    Event::PhiAccess(PhiAccess {
        principal: format!("user:{}", n % 50),
        roles: vec!["clinician".into()],
        patient: Some(keys.keyed_hash(format!("P-{}", n % 1000).as_bytes())),
        resource_kind: "evaluation".into(),
        resource_id: Some(keys.keyed_hash(format!("eval-{n}").as_bytes())),
        action: AccessAction::Read,
        purpose: PurposeOfUse::Treat,
        reason: None,
        outcome: Outcome::Success,
        request_id: format!("req-{n}"),
    })
}

/// Appends `total` entries from `writers` concurrent tasks, each waiting for its
/// acknowledgement (durable commit) before the next append.
async fn append_concurrently(log: &AuditLog, keys: &Arc<FileKeys>, writers: u64, total: u64) {
    let per = total.div_ceil(writers);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per {
                log.append(event(&keys, w * per + n)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn pg_url() -> Option<String> {
    std::env::var("PHIGATE_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("PHIGATE_TEST_DATABASE_URL"))
        .ok()
}

fn bench_appends(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("durable_append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(
        FileKeys::open_or_create(&dir.path().join("keys"), "phigate-audit", kek()).unwrap(),
    );

    let mut backends: Vec<(&str, Storage)> = vec![(
        "sqlite",
        Storage::Sqlite {
            path: dir.path().join("bench.db"),
        },
    )];
    if let Some(url) = pg_url() {
        let schema = format!("audit_bench_{}", std::process::id());
        backends.push((
            "postgres",
            Storage::Postgres {
                url: SecretString::from(url),
                schema: Some(schema),
            },
        ));
    }
    for (name, storage) in backends {
        let log = rt
            .block_on(AuditLog::open(
                LogConfig::new(storage.clone()),
                keys.clone(),
            ))
            .unwrap();
        for writers in [1u64, 8, 64] {
            group.bench_with_input(
                BenchmarkId::new(name, format!("{writers}_writers")),
                &writers,
                |b, &writers| {
                    b.iter_custom(|iters| {
                        let total = iters.max(writers);
                        let start = Instant::now();
                        rt.block_on(append_concurrently(&log, &keys, writers, total));
                        start.elapsed().mul_f64(iters as f64 / total as f64)
                    });
                },
            );
        }
        rt.block_on(log.close());
        if let Storage::Postgres {
            url,
            schema: Some(schema),
        } = storage
        {
            rt.block_on(async {
                use secrecy::ExposeSecret as _;
                let pool = sqlx::PgPool::connect(url.expose_secret()).await.unwrap();
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&pool)
                    .await
                    .unwrap();
            });
        }
    }
    group.finish();
}

fn bench_verify_and_proofs(c: &mut Criterion) {
    let entries: u64 = std::env::var("AUDIT_BENCH_VERIFY_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(
        FileKeys::open_or_create(&dir.path().join("keys"), "phigate-audit", kek()).unwrap(),
    );
    let storage = Storage::Sqlite {
        path: dir.path().join("verify.db"),
    };
    let build_start = Instant::now();
    let log = rt.block_on(async {
        let log = AuditLog::open(LogConfig::new(storage.clone()), keys.clone())
            .await
            .unwrap();
        append_concurrently(&log, &keys, 256, entries).await;
        log.checkpoint_now().await.unwrap();
        log
    });
    let (size, _) = rt.block_on(log.tree_head()).unwrap();
    eprintln!(
        "built a {size}-entry log with 256 concurrent writers in {:.1} s ({:.0} appends/s)",
        build_start.elapsed().as_secs_f64(),
        size as f64 / build_start.elapsed().as_secs_f64()
    );
    let verifier = keys.note_verifier();

    let mut group = c.benchmark_group("verify");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(size));
    group.bench_function(BenchmarkId::new("full_sqlite", size), |b| {
        b.iter(|| {
            let report = rt.block_on(verify_log(&log, &verifier)).unwrap();
            assert!(report.is_intact());
        });
    });
    group.finish();

    let mut group = c.benchmark_group("proof");
    // Warm the in-memory tree once (what a long-running gateway holds).
    let warm = Instant::now();
    rt.block_on(log.inclusion_proof(0, size)).unwrap();
    eprintln!(
        "loading {size} leaf hashes into the proof tree took {:.2} s",
        warm.elapsed().as_secs_f64()
    );
    let mut i = 0u64;
    group.bench_function(BenchmarkId::new("inclusion", size), |b| {
        b.iter(|| {
            i = (i + 7919) % size;
            let p = rt.block_on(log.inclusion_proof(i, size)).unwrap();
            merkle::verify_inclusion(&p.leaf_hash, i, size, &p.path, &p.root).unwrap();
        });
    });
    group.bench_function(BenchmarkId::new("consistency", size), |b| {
        b.iter(|| {
            i = (i + 7919) % size;
            rt.block_on(log.consistency_proof(i, size)).unwrap();
        });
    });
    group.finish();
}

/// Where a batch's time goes: the caller's canonical encoding, the writer's leaf hashing, and
/// the SQLite transaction (one multi-row INSERT + commit with fsync) with and without the
/// four search indexes, and an empty durable commit (the fsync floor).
fn bench_append_profile(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let keys = Arc::new(
        FileKeys::open_or_create(&dir.path().join("keys"), "phigate-audit", kek()).unwrap(),
    );
    let mut group = c.benchmark_group("append_profile");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let ev = event(&keys, 7);
    group.bench_function("canonical_encode_event_via_value", |b| {
        b.iter(|| {
            let json = serde_json::to_value(&ev).unwrap();
            audit::canonical::to_canonical_bytes(&json).unwrap()
        });
    });
    group.bench_function("canonical_encode_event_direct", |b| {
        b.iter(|| ev.canonical_bytes().unwrap());
    });
    let leaf = audit::canonical::to_canonical_bytes(&serde_json::to_value(&ev).unwrap()).unwrap();
    group.bench_function("leaf_hash", |b| b.iter(|| merkle::leaf_hash(&leaf)));

    for indexes in [true, false] {
        let path = dir.path().join(format!("profile-{indexes}.db"));
        let pool = rt.block_on(async {
            let opts = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            sqlx::raw_sql(
                "CREATE TABLE audit_entries (idx INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, \
                 kind TEXT NOT NULL, principal TEXT, patient TEXT, leaf BLOB NOT NULL, leaf_hash BLOB NOT NULL)",
            )
            .execute(&pool)
            .await
            .unwrap();
            if indexes {
                sqlx::raw_sql(
                    "CREATE INDEX t ON audit_entries (time_us); \
                     CREATE INDEX k ON audit_entries (kind, idx); \
                     CREATE INDEX p ON audit_entries (principal, idx); \
                     CREATE INDEX q ON audit_entries (patient, idx);",
                )
                .execute(&pool)
                .await
                .unwrap();
            }
            pool
        });
        let mut next = 0i64;
        let name = if indexes {
            "with_4_indexes"
        } else {
            "without_indexes"
        };
        group.throughput(Throughput::Elements(64));
        group.bench_function(BenchmarkId::new("sqlite_tx_64_rows", name), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
                    let mut qb: sqlx::QueryBuilder<'_, sqlx::Sqlite> = sqlx::QueryBuilder::new(
                        "INSERT INTO audit_entries (idx, time_us, kind, principal, patient, leaf, leaf_hash) ",
                    );
                    let rows: Vec<i64> = (next..next + 64).collect();
                    next += 64;
                    qb.push_values(rows, |mut b, n| {
                        b.push_bind(n)
                            .push_bind(n)
                            .push_bind("phi_access")
                            .push_bind(format!("user:{}", n % 50))
                            .push_bind(keys.keyed_hash(format!("P-{}", n % 1000).as_bytes()).as_str().to_owned())
                            .push_bind(leaf.clone())
                            .push_bind(merkle::leaf_hash(&leaf).to_vec());
                    });
                    qb.build().execute(&mut *tx).await.unwrap();
                    tx.commit().await.unwrap();
                });
            });
        });
        if !indexes {
            group.throughput(Throughput::Elements(1));
            group.bench_function("sqlite_commit_one_tiny_row", |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
                        sqlx::query("INSERT INTO audit_entries (idx, time_us, kind, leaf, leaf_hash) VALUES ($1, 0, 'x', x'00', x'00')")
                            .bind(next)
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                        next += 1;
                        tx.commit().await.unwrap();
                    });
                });
            });
        }
        rt.block_on(pool.close());
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_appends,
    bench_append_profile,
    bench_verify_and_proofs
);
criterion_main!(benches);
