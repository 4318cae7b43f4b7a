//! Test harness shared by the store tests: a fresh SQLite file or a fresh PostgreSQL schema
//! per test, and a movable clock.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use sealed::{DataKey, KeyProvider, SoftwareKeyProvider};
use secrecy::SecretString;
use store::{BackendConfig, Clock, Database, Store, TtlPolicy};

#[derive(Debug)]
pub struct ManualClock(pub AtomicI64);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(1_800_000_000_000)))
    }
    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn provider(seed: u8) -> Arc<dyn KeyProvider> {
    Arc::new(
        SoftwareKeyProvider::from_root(DataKey::from_slice(&[seed; 32]).unwrap(), "env").unwrap(),
    )
}

#[derive(Debug)]
pub enum Place {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        url: String,
        schema: String,
    },
}

#[derive(Debug)]
pub struct Harness {
    pub place: Place,
}

pub fn pg_url() -> String {
    std::env::var("PHIGATE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("PHIGATE_TEST_DATABASE_URL is not set: point it at a PostgreSQL database, e.g. postgres://postgres@127.0.0.1:5432/test")
    })
}

impl Harness {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        Self {
            place: Place::Sqlite { _dir: dir, path },
        }
    }

    pub async fn postgres() -> Self {
        let url = pg_url();
        let schema = format!("phigate_t_{}", hex::encode(rand_bytes()));
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .expect("connect to PHIGATE_TEST_DATABASE_URL");
        sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .unwrap();
        Self {
            place: Place::Postgres { url, schema },
        }
    }

    pub fn config(&self) -> BackendConfig {
        match &self.place {
            Place::Sqlite { path, .. } => BackendConfig::Sqlite { path: path.clone() },
            Place::Postgres { url, schema } => BackendConfig::Postgres {
                url: SecretString::from(url.clone()),
                schema: Some(schema.clone()),
            },
        }
    }

    pub async fn database(&self) -> Database {
        Database::connect(&self.config()).await.unwrap()
    }

    /// A store with keys initialised, using `clock`.
    pub async fn store_with(&self, seed: u8, ttl: TtlPolicy, clock: Arc<dyn Clock>) -> Store {
        let db = self.database().await;
        db.init_keys(provider(seed)).await.unwrap();
        db.open(provider(seed), ttl)
            .await
            .unwrap()
            .with_clock(clock)
    }

    pub async fn store(&self) -> Store {
        self.store_with(7, TtlPolicy::default(), ManualClock::new())
            .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Place::Postgres { url, schema } = &self.place {
            let (url, schema) = (url.clone(), schema.clone());
            // Drop runs inside a runtime; clean up from a separate thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) =
                        <sqlx::PgConnection as sqlx::Connection>::connect(&url).await
                    {
                        let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&mut conn)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b
}
