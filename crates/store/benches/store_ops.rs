//! Store put/get operations per second on SQLite (WAL, synchronous=FULL) and PostgreSQL
//! (`PHIGATE_TEST_DATABASE_URL`, a fresh schema dropped afterwards; skipped with a notice when
//! the variable is unset). Values are 1 KiB, each sealed with its own data key.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sealed::{DataKey, SoftwareKeyProvider};
use secrecy::SecretString;
use store::{BackendConfig, Database, Store, TtlPolicy};

async fn open(config: &BackendConfig) -> Store {
    let provider: Arc<dyn sealed::KeyProvider> = Arc::new(
        SoftwareKeyProvider::from_root(DataKey::from_slice(&[7; 32]).unwrap(), "env").unwrap(),
    );
    let db = Database::connect(config).await.unwrap();
    db.init_keys(provider.clone()).await.unwrap();
    db.open(provider, TtlPolicy::default()).await.unwrap()
}

fn bench_backend(c: &mut Criterion, rt: &tokio::runtime::Runtime, name: &str, store: &Store) {
    let value = vec![0x42u8; 1024];
    rt.block_on(async {
        for i in 0..1000 {
            store
                .put("bench", &format!("id-{i}"), Some("patient"), &value)
                .await
                .unwrap();
        }
    });
    let mut group = c.benchmark_group(format!("store/{name}"));
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("put_1KiB", |b| {
        b.to_async(rt).iter(|| {
            n += 1;
            let id = format!("put-{}", n % 5000);
            let store = store.clone();
            let value = value.clone();
            async move {
                store
                    .put("bench", &id, Some("patient"), &value)
                    .await
                    .unwrap()
            }
        })
    });
    let mut m = 0u64;
    group.bench_function("get_1KiB", |b| {
        b.to_async(rt).iter(|| {
            m += 1;
            let id = format!("id-{}", m % 1000);
            let store = store.clone();
            async move { store.get("bench", &id).await.unwrap().unwrap() }
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt.block_on(open(&BackendConfig::Sqlite {
        path: dir.path().join("bench.db"),
    }));
    bench_backend(c, &rt, "sqlite", &sqlite);

    match std::env::var("PHIGATE_TEST_DATABASE_URL") {
        Ok(url) => {
            let schema = format!("phigate_bench_{}", std::process::id());
            rt.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                    .await
                    .unwrap();
                sqlx::raw_sql(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
                ))
                .execute(&mut conn)
                .await
                .unwrap();
            });
            let pg = rt.block_on(open(&BackendConfig::Postgres {
                url: SecretString::from(url.clone()),
                schema: Some(schema.clone()),
            }));
            bench_backend(c, &rt, "postgresql", &pg);
            rt.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                    .await
                    .unwrap();
                sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            });
        }
        Err(_) => eprintln!("PHIGATE_TEST_DATABASE_URL is unset: PostgreSQL benchmarks skipped"),
    }
}

criterion_group!(store_benches, benches);
criterion_main!(store_benches);
