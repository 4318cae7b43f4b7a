//! Shared harness for the end-to-end gateway tests: the built `phigate` binary in its own
//! process, real TLS (the development CA it generates), real HTTP, and real PostgreSQL for the
//! cluster tests. Use it with `mod gateway;` from a test file in `tests/`.

#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub const BIN: &str = env!("CARGO_BIN_EXE_phigate");

/// Loopback listeners on free ports and an `/auth/*` bucket large enough for one test's
/// exchanges.
pub const TEST_CONFIG: &str = "[server]\nlisten = \"127.0.0.1:0\"\nmtls_listen = \"127.0.0.1:0\"\n[rate_limit]\nauth_per_minute = 600\nauth_burst = 100\n";

pub const PURPOSE: (&str, &str) = ("x-purpose-of-use", "TREAT");
pub const REASON: (&str, &str) = ("x-access-reason", "follow-up visit");

/// `phigate <sub>` on the data directory `dir`, with no key, database, configuration or Kipu
/// settings inherited from the environment (add them with `env`).
pub fn phigate(dir: &Path, sub: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg(sub)
        .env("PHIGATE_DATA_DIR", dir)
        .env("PHIGATE_LOG", "info")
        .env_remove("PHIGATE_LOG_FORMAT")
        .env_remove("PHIGATE_KEK")
        .env_remove("PHIGATE_KEK_FILE")
        .env_remove("PHIGATE_PKCS11_MODULE")
        .env_remove("PHIGATE_DATABASE_URL")
        .env_remove("PHIGATE_CONFIG")
        .env_remove("KIPU_ACCESS_ID")
        .env_remove("KIPU_SECRET_KEY")
        .env_remove("KIPU_APP_ID")
        .env_remove("KIPU_BASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// A running `phigate serve`; killed on drop.
pub struct Gateway {
    child: Child,
    /// The data directory (owned by the gateway unless shared).
    pub dir: PathBuf,
    _owned: Option<tempfile::TempDir>,
    /// `https://127.0.0.1:<port>` of the bearer-token listener.
    pub public: String,
    /// `https://127.0.0.1:<port>` of the mTLS listener.
    pub mtls: String,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The one-time admin bootstrap secret printed at start, if one was.
    pub bootstrap: Option<String>,
    env: Vec<(String, String)>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// A gateway in a fresh data directory with `config` as its `phigate.toml`.
    pub fn start(config: &str) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), config, &[])
    }

    /// A gateway owning the data directory `dir` (which may already hold certificates the
    /// configuration points to), with `config` as its `phigate.toml` and extra environment.
    pub fn start_in(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Self {
        std::fs::write(dir.path().join("phigate.toml"), config).unwrap();
        let mut gw = Self::start_on(dir.path(), env);
        gw._owned = Some(dir);
        gw
    }

    /// A gateway on an existing data directory (its `phigate.toml`, keys and certificates
    /// shared with other instances) with extra environment (`PHIGATE_DATABASE_URL`, ...).
    pub fn start_on(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = phigate(dir, "serve", env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start phigate serve");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        {
            let sink = stderr.clone();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let (mut public, mut mtls, mut bootstrap) = (None, None, None);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("listening https://") {
                public = Some(rest.split_whitespace().next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("listening-mtls https://") {
                mtls = Some(rest.split_whitespace().next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("bootstrap-secret ") {
                bootstrap = Some(rest.trim().to_string());
            } else if line == "ready" {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        let (Some(public), Some(mtls)) = (public, mtls) else {
            let _ = child.kill();
            panic!(
                "gateway did not start: {}",
                stderr.lock().unwrap().join("\n")
            );
        };
        Self {
            child,
            dir: dir.to_path_buf(),
            _owned: None,
            public: format!("https://{public}"),
            mtls: format!("https://{mtls}"),
            stderr,
            bootstrap,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    /// The process id of `phigate serve` (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The PostgreSQL URL the gateway was given (`PHIGATE_DATABASE_URL`), if any.
    pub fn database_url(&self) -> Option<String> {
        self.env
            .iter()
            .find(|(k, _)| k == "PHIGATE_DATABASE_URL")
            .map(|(_, v)| v.clone())
    }

    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }

    pub fn ca(&self) -> Vec<u8> {
        std::fs::read(self.tls_dir().join("dev-ca.pem")).unwrap()
    }

    /// A client trusting the development CA, without a client certificate.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.ca()).unwrap()])
            .build()
            .unwrap()
    }

    /// A client presenting the development client certificate (the service `dev-client`, as
    /// generated by the development CA).
    pub fn mtls_client(&self) -> reqwest::Client {
        let mut identity = std::fs::read(self.tls_dir().join("client.pem")).unwrap();
        identity.extend(std::fs::read(self.tls_dir().join("client.key")).unwrap());
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&self.ca()).unwrap()])
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .build()
            .unwrap()
    }

    /// Everything the gateway wrote to standard error so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// `phigate keys create --service <service> --role <role>` on this gateway's data directory
    /// and database: (key id, key).
    pub fn create_api_key(&self, service: &str, role: &str) -> (String, String) {
        let kek = self.dir.join("dev-kek.key");
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let kek = kek.to_str().unwrap().to_string();
        env.push(("PHIGATE_KEK_FILE", &kek));
        let out = phigate(&self.dir, "keys", &env)
            .args(["create", "--service", service, "--role", role])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let key = text.lines().nth(1).unwrap().trim().to_string();
        let id = key
            .strip_prefix("phg_")
            .and_then(|k| k.split('_').next())
            .unwrap()
            .to_string();
        (id, key)
    }

    /// `phigate keys revoke <id>` on this gateway's data directory and database.
    pub fn revoke_api_key(&self, id: &str) {
        let kek = self.dir.join("dev-kek.key");
        let kek = kek.to_str().unwrap().to_string();
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.push(("PHIGATE_KEK_FILE", &kek));
        let out = phigate(&self.dir, "keys", &env)
            .args(["revoke", id])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "keys revoke failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `POST /auth/token` with an API key: the access token.
    pub async fn token_for(&self, key: &str) -> String {
        let resp = self
            .client()
            .post(format!("{}/auth/token", self.public))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "token exchange");
        let body: serde_json::Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    /// `GET <path>` on the public listener with a bearer value, a purpose and a reason: the
    /// status and the `X-Request-Id`.
    pub async fn get_phi(&self, path: &str, bearer: &str) -> (u16, String) {
        let resp = self
            .client()
            .get(format!("{}{path}", self.public))
            .bearer_auth(bearer)
            .header(PURPOSE.0, PURPOSE.1)
            .header(REASON.0, REASON.1)
            .send()
            .await
            .unwrap();
        let rid = resp
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (resp.status().as_u16(), rid)
    }

    /// Where the gateway writes its audit log: PostgreSQL if it was given
    /// `PHIGATE_DATABASE_URL`, else the SQLite file in the data directory.
    pub fn audit_storage(&self) -> audit::Storage {
        match self.database_url() {
            Some(url) => audit::Storage::Postgres {
                url: url.into(),
                schema: None,
            },
            None => audit::Storage::Sqlite {
                path: self.dir.join("audit.db"),
            },
        }
    }

    /// The audit entries of `kind` in the gateway's audit log.
    pub async fn audit_entries(&self, kind: &str) -> Vec<audit::Entry> {
        let log = audit::AuditLog::open_read_only(&self.audit_storage())
            .await
            .unwrap();
        log.query(&audit::QueryFilter {
            kind: Some(kind.to_string()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|(e, _)| e)
        .collect()
    }

    /// The `event` objects of the audit entries of `kind`.
    pub async fn audit_events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.audit_entries(kind)
            .await
            .iter()
            .map(|e| e.to_json().unwrap()["event"].clone())
            .collect()
    }

    /// The gateway's audit keys (development KEK), as the gateway opened them.
    pub fn audit_keys(&self) -> Arc<audit::FileKeys> {
        Arc::new(
            audit::FileKeys::open_or_create(
                &self.dir.join("audit-keys"),
                "phigate-audit",
                Arc::new(self.kek()),
            )
            .unwrap(),
        )
    }

    fn kek(&self) -> sealed::SoftwareKeyProvider {
        sealed::SoftwareKeyProvider::from_key_file(&self.dir.join("dev-kek.key")).unwrap()
    }

    /// The gateway's access service opened from the test process on the same database and
    /// audit log, issuing tokens for `audience`; `clock` pins its time (Unix seconds).
    pub async fn access_as(&self, audience: &str, clock: Option<i64>) -> access::Access {
        let keys = self.audit_keys();
        let log = audit::AuditLog::open(audit::LogConfig::new(self.audit_storage()), keys.clone())
            .await
            .unwrap();
        let backend = match self.database_url() {
            Some(url) => access::Backend::Postgres {
                url: url.into(),
                schema: None,
            },
            None => access::Backend::Sqlite {
                path: self.dir.join("access.db"),
            },
        };
        let mut config = access::AccessConfig::new(
            backend,
            Arc::new(self.kek()),
            log,
            keys,
            "phigate",
            audience,
        );
        if let Some(t) = clock {
            config.clock = Arc::new(access::ManualClock::new(t));
        }
        access::Access::open(config).await.unwrap()
    }

    /// The gateway's access service (audience `phigate-api`, real clock).
    pub async fn access(&self) -> access::Access {
        self.access_as("phigate-api", None).await
    }

    /// The gateway's store (PostgreSQL if it was given `PHIGATE_DATABASE_URL`, else the SQLite
    /// file in the data directory), opened from the test process.
    pub async fn store(&self) -> store::Store {
        let Some(url) = self.database_url() else {
            return open_store(&self.dir).await;
        };
        let db = store::Database::connect(&store::BackendConfig::Postgres {
            url: url.into(),
            schema: None,
        })
        .await
        .unwrap();
        db.open(Arc::new(self.kek()), store::TtlPolicy::default())
            .await
            .unwrap()
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The SQLite store of a data directory, opened with its development KEK.
pub async fn open_store(dir: &Path) -> store::Store {
    let provider = sealed::SoftwareKeyProvider::from_key_file(&dir.join("dev-kek.key")).unwrap();
    let db = store::Database::connect(&store::BackendConfig::Sqlite {
        path: dir.join("store.db"),
    })
    .await
    .unwrap();
    db.open(Arc::new(provider), store::TtlPolicy::default())
        .await
        .unwrap()
}

/// Every synced care team: the patient and the Kipu user ids of its current members.
pub async fn current_care_teams(store: &store::Store) -> Vec<(String, Vec<String>)> {
    let today = chrono::Utc::now().date_naive().to_string();
    let mut teams = Vec::new();
    for r in store.list_kind("ehr.care_team").await.unwrap() {
        let v: serde_json::Value = serde_json::from_slice(r.value.expose()).unwrap();
        let members = v["care_team"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["end_date"].as_str().is_none_or(|d| d >= today.as_str()))
            .map(|m| m["user_id"].to_string().trim_matches('"').to_string())
            .collect();
        let patient = r
            .patient
            .map(|p| p.expose().clone())
            .unwrap_or_else(|| v["patient_id"].as_str().unwrap().to_string());
        teams.push((patient, members));
    }
    teams
}

/// The first member of the first team (in `teams` order) with a patient outside their teams:
/// (member, their patient, the other patient).
pub fn member_and_patients(teams: &[(String, Vec<String>)]) -> (String, String, String) {
    for (patient, members) in teams {
        for user in members {
            if let Some((other, _)) = teams.iter().find(|(_, m)| !m.contains(user)) {
                return (user.clone(), patient.clone(), other.clone());
            }
        }
    }
    panic!("the synced store has no usable care team");
}

/// A care-team member (Kipu user id) of some patient, that patient, and another patient whose
/// team does not include the member, read from the SQLite store the gateway synced.
pub async fn care_team_fixture(dir: &Path) -> (String, String, String) {
    member_and_patients(&current_care_teams(&open_store(dir).await).await)
}

/// The superuser URL of the test PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("PHIGATE_TEST_DATABASE_URL").expect(
        "PHIGATE_TEST_DATABASE_URL must be set for the PostgreSQL tests (e.g. postgres://postgres@127.0.0.1:5432/test)",
    )
}

/// A PostgreSQL role with its own schema (its search path), dropped by [`PgSchema::drop_all`].
pub struct PgSchema {
    admin: sqlx::PgPool,
    pub name: String,
    /// URL logging in as the role.
    pub url: String,
}

impl PgSchema {
    pub async fn create() -> Self {
        use sqlx::Executor as _;
        let admin_url = pg_admin_url();
        let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
        let mut suffix = [0u8; 6];
        aws_lc_rs::rand::fill(&mut suffix).unwrap();
        let name = format!("phigate_gw_{}", hex::encode(suffix));
        let password = format!("pw-{}", hex::encode(suffix));
        admin
            .execute(format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'").as_str())
            .await
            .unwrap();
        admin
            .execute(format!("CREATE SCHEMA {name} AUTHORIZATION {name}").as_str())
            .await
            .unwrap();
        admin
            .execute(format!("ALTER ROLE {name} SET search_path = {name}").as_str())
            .await
            .unwrap();
        let (scheme, rest) = admin_url.split_once("://").unwrap();
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        let url = format!("{scheme}://{name}:{password}@{rest}");
        Self { admin, name, url }
    }

    /// Runs `sql` as the superuser (to change what the role may do mid-test).
    pub async fn execute_as_admin(&self, sql: &str) {
        use sqlx::Executor as _;
        self.admin.execute(sql).await.unwrap();
    }

    /// Drops the schema and the role (after every process using them has stopped).
    pub async fn drop_all(self) {
        use sqlx::Executor as _;
        self.admin
            .execute(format!("DROP SCHEMA {} CASCADE", self.name).as_str())
            .await
            .unwrap();
        self.admin
            .execute(format!("DROP ROLE {}", self.name).as_str())
            .await
            .unwrap();
    }
}
