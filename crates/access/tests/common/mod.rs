//! Test harness: a fresh SQLite file or PostgreSQL schema per test, a real audit log, a movable
//! clock, and helpers to read back what the audit log recorded.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use access::{Access, AccessConfig, Backend, Clock, ManualClock};
use audit::{AuditLog, Entry, FileKeys, LogConfig, QueryFilter, Storage};
use sealed::{DataKey, KeyProvider, SoftwareKeyProvider};
use secrecy::SecretString;

pub const T0: i64 = 1_800_000_000;
pub const ISSUER: &str = "https://phigate.test";
pub const AUDIENCE: &str = "phigate-api";

pub fn provider() -> Arc<dyn KeyProvider> {
    Arc::new(
        SoftwareKeyProvider::from_root(DataKey::from_slice(&[42u8; 32]).unwrap(), "env").unwrap(),
    )
}

pub fn pg_url() -> String {
    std::env::var("PHIGATE_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("PHIGATE_TEST_DATABASE_URL is not set: point it at a PostgreSQL database, e.g. postgres://postgres@127.0.0.1:5432/test")
    })
}

fn random_hex() -> String {
    let mut b = [0u8; 6];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    hex::encode(b)
}

/// One test's world: a backend, an audit log, keys, a clock.
pub struct World {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub clock: Arc<ManualClock>,
    pub keys: Arc<FileKeys>,
    pub log: AuditLog,
}

impl World {
    pub async fn new(postgres: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let backend = if postgres {
            Backend::Postgres {
                url: SecretString::from(pg_url()),
                schema: Some(format!("access_t_{}", random_hex())),
            }
        } else {
            Backend::Sqlite {
                path: dir.path().join("access.db"),
            }
        };
        let keys = Arc::new(
            FileKeys::open_or_create(&dir.path().join("audit-keys"), "access-test").unwrap(),
        );
        let log = AuditLog::open(
            LogConfig::new(Storage::Sqlite {
                path: dir.path().join("audit.db"),
            }),
            keys.clone(),
        )
        .await
        .unwrap();
        Self {
            dir,
            backend,
            clock: Arc::new(ManualClock::new(T0)),
            keys,
            log,
        }
    }

    pub fn config(&self) -> AccessConfig {
        let mut cfg = AccessConfig::new(
            self.backend.clone(),
            provider(),
            self.log.clone(),
            self.keys.clone(),
            ISSUER,
            AUDIENCE,
        );
        cfg.clock = self.clock.clone() as Arc<dyn Clock>;
        cfg
    }

    pub async fn open(&self) -> Access {
        Access::open(self.config()).await.unwrap()
    }

    /// A second instance on the same database (its own pool and caches).
    pub async fn second_instance(&self) -> Access {
        Access::open(self.config()).await.unwrap()
    }

    /// Every audit entry so far.
    pub async fn audit_entries(&self) -> Vec<Entry> {
        self.log
            .query(&QueryFilter::default())
            .await
            .unwrap()
            .into_iter()
            .map(|(e, _)| e)
            .collect()
    }

    /// The raw bytes of every audit leaf (to grep for secrets and canaries).
    pub async fn audit_text(&self) -> String {
        let mut out = String::new();
        for e in self.audit_entries().await {
            out.push_str(&String::from_utf8_lossy(&e.canonical_bytes().unwrap()));
            out.push('\n');
        }
        out
    }

    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::Sqlite { path } => Some(path.clone()),
            Backend::Postgres { .. } => None,
        }
    }
}

/// Generates `<name>::sqlite` and `<name>::postgres` tests from `async fn <name>(postgres: bool)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(false).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(true).await;
                }
            }
        )*
    };
}
