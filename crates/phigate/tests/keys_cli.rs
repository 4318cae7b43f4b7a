//! `phigate keys` end to end: real binary, real SQLite store in a temporary data directory,
//! and the same lifecycle on PostgreSQL (`PHIGATE_DATABASE_URL` pointing at a fresh schema of
//! the server in `PHIGATE_TEST_DATABASE_URL`).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

const KEK: &str = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=";
const OTHER_KEK: &str = "zMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMzMw=";

fn phigate(data: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phigate"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PHIGATE_DATA_DIR", data);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_no_secret(o: &Output) {
    let (out, err) = text(o);
    for s in [KEK, OTHER_KEK, "q6urq6ur", "abababab"] {
        assert!(!out.contains(s) && !err.contains(s), "key material printed");
    }
}

/// A schema of its own on the test server, dropped when the test ends.
struct PgSchema {
    base_url: String,
    schema: String,
}

impl PgSchema {
    fn create() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let base_url = std::env::var("PHIGATE_TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!("PHIGATE_TEST_DATABASE_URL is not set: point it at a PostgreSQL database, e.g. postgres://postgres@127.0.0.1:5432/test")
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let schema = format!(
            "phigate_keys_cli_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        run_sql(&base_url, &format!("CREATE SCHEMA {schema}"));
        Self { base_url, schema }
    }

    /// The URL phigate gets: the test server with the schema as its search path.
    fn url(&self) -> String {
        let sep = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{sep}options[search_path]={}", self.base_url, self.schema)
    }

    fn table_count(&self) -> i64 {
        let rt = runtime();
        rt.block_on(async {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.base_url)
                .await
                .unwrap();
            sqlx::query_scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
            )
            .bind(&self.schema)
            .fetch_one(&mut conn)
            .await
            .unwrap()
        })
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        run_sql(
            &self.base_url,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run_sql(url: &str, sql: &str) {
    runtime().block_on(async {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .expect("connect to PHIGATE_TEST_DATABASE_URL");
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    });
}

#[test]
fn keys_lifecycle_init_rotate_rewrap_retire() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    lifecycle(&data, &[("PHIGATE_KEK", KEK)]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(data.join("store.db"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
}

#[test]
fn keys_lifecycle_init_rotate_rewrap_retire_on_postgres() {
    let pg = PgSchema::create();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    lifecycle(
        &data,
        &[("PHIGATE_KEK", KEK), ("PHIGATE_DATABASE_URL", url.as_str())],
    );
    assert!(pg.table_count() > 0, "the key ring lives in the schema");
    assert!(
        !data.join("store.db").exists(),
        "no SQLite store was created beside PostgreSQL"
    );
}

fn lifecycle(data: &Path, env: &[(&str, &str)]) {
    let init = phigate(data, env, &["keys", "init"]);
    assert!(init.status.success(), "{:?}", text(&init));
    assert!(text(&init).0.contains("initialised the key ring sw:"));
    assert_no_secret(&init);

    let again = phigate(data, env, &["keys", "init"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).1.contains("already has keys"));

    assert!(phigate(data, env, &["keys", "rotate"]).status.success());
    let refused = phigate(data, env, &["keys", "retire", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).1.contains("run `phigate keys rewrap` first"),
        "{:?}",
        text(&refused)
    );
    let active = phigate(data, env, &["keys", "retire", "2"]);
    assert!(text(&active).1.contains("is the active version"));

    let rewrap = phigate(data, env, &["keys", "rewrap"]);
    assert!(
        text(&rewrap)
            .0
            .contains("re-wrapped 1 data key(s) under KEK version 2"),
        "{:?}",
        text(&rewrap)
    );
    assert!(
        phigate(data, env, &["keys", "retire", "1"])
            .status
            .success()
    );

    let status = phigate(data, env, &["keys", "status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["versions"][0]["state"], "retired");
    assert_eq!(doc["versions"][1]["state"], "active");
    assert_eq!(doc["versions"][1]["wraps"], 1);
    assert_no_secret(&status);
}

#[test]
fn missing_or_malformed_key_is_a_usage_error_that_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let none = phigate(&data, &[], &["keys", "status"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none).1.contains("openssl rand -base64 32"));
    let bad = phigate(&data, &[("PHIGATE_KEK", "not-base64!")], &["keys", "init"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).1.contains("PHIGATE_KEK: invalid key material"));
    let short = phigate(&data, &[("PHIGATE_KEK", "AAECAw==")], &["keys", "init"]);
    assert!(text(&short).1.contains("exactly 32 bytes"));
    let both = phigate(
        &data,
        &[("PHIGATE_KEK", KEK), ("PHIGATE_KEK_FILE", "/nonexistent")],
        &["keys", "init"],
    );
    assert!(text(&both).1.contains("configure exactly one"));
    assert!(
        !data.join("store.db").exists()
            || phigate(&data, &[("PHIGATE_KEK", KEK)], &["keys", "init"])
                .status
                .success()
    );
}

#[test]
fn wrong_key_is_refused_and_names_both_key_ids() {
    wrong_key_is_refused(None);
}

#[test]
fn wrong_key_is_refused_and_names_both_key_ids_on_postgres() {
    let pg = PgSchema::create();
    wrong_key_is_refused(Some(&pg.url()));
}

fn wrong_key_is_refused(database_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let with_db = |kek: &'static str| {
        let mut env = vec![("PHIGATE_KEK", kek)];
        if let Some(url) = database_url {
            env.push(("PHIGATE_DATABASE_URL", url));
        }
        env
    };
    assert!(
        phigate(&data, &with_db(KEK), &["keys", "init"])
            .status
            .success()
    );
    let wrong = phigate(&data, &with_db(OTHER_KEK), &["keys", "status"]);
    assert_eq!(wrong.status.code(), Some(2));
    let err = text(&wrong).1;
    assert!(
        err.contains("initialised with key sw:") && err.contains("configure the original key"),
        "{err}"
    );
    assert_no_secret(&wrong);
    let rotate = phigate(&data, &with_db(OTHER_KEK), &["keys", "rotate"]);
    assert_eq!(
        rotate.status.code(),
        Some(2),
        "the wrong key rotates nothing"
    );
    let status = phigate(&data, &with_db(KEK), &["keys", "status", "--json"]);
    assert!(status.status.success(), "nothing was changed");
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["versions"].as_array().map(Vec::len), Some(1));
}

#[test]
fn unusable_database_url_is_a_clear_error_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let scheme = phigate(
        &data,
        &[
            ("PHIGATE_KEK", KEK),
            ("PHIGATE_DATABASE_URL", "mysql://db.example/phigate"),
        ],
        &["keys", "init"],
    );
    assert_eq!(scheme.status.code(), Some(2));
    assert!(
        text(&scheme)
            .1
            .contains("PHIGATE_DATABASE_URL must be a postgres:// or postgresql:// URL"),
        "{:?}",
        text(&scheme)
    );
    // Nothing listens on port 1: the error names the connection, not a panic, and leaks no
    // password from the URL.
    let refused = phigate(
        &data,
        &[
            ("PHIGATE_KEK", KEK),
            (
                "PHIGATE_DATABASE_URL",
                "postgres://phigate:CANARY-PASSWORD@127.0.0.1:1/phigate",
            ),
        ],
        &["keys", "status"],
    );
    assert_eq!(refused.status.code(), Some(1), "{:?}", text(&refused));
    let (out, err) = text(&refused);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !out.contains("CANARY-PASSWORD") && !err.contains("CANARY-PASSWORD"),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connect"), "{err}");
    assert!(!data.join("store.db").exists());
}

#[cfg(unix)]
#[test]
fn too_open_key_file_is_refused_with_chmod_advice() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = dir.path().join("kek");
    std::fs::write(&key, format!("{KEK}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let key_path = key.to_str().unwrap();
    let open = phigate(&data, &[("PHIGATE_KEK_FILE", key_path)], &["keys", "init"]);
    assert_eq!(open.status.code(), Some(2));
    assert!(
        text(&open).1.contains(&format!("chmod 600 {key_path}")),
        "{:?}",
        text(&open)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        phigate(&data, &[("PHIGATE_KEK_FILE", key_path)], &["keys", "init"])
            .status
            .success()
    );
    // Same key through the environment opens the same store.
    assert!(
        phigate(&data, &[("PHIGATE_KEK", KEK)], &["keys", "status"])
            .status
            .success()
    );
}

#[test]
fn pkcs11_module_that_will_not_load_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, b"this is not a shared library").unwrap();
    let out = phigate(
        &data,
        &[
            ("PHIGATE_PKCS11_MODULE", fake.to_str().unwrap()),
            ("PHIGATE_PKCS11_SLOT", "0"),
            ("PHIGATE_PKCS11_PIN", "1234"),
        ],
        &["keys", "init"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("cannot load module"),
        "{:?}",
        text(&out)
    );
    let no_pin = phigate(
        &data,
        &[
            ("PHIGATE_PKCS11_MODULE", fake.to_str().unwrap()),
            ("PHIGATE_PKCS11_SLOT", "0"),
        ],
        &["keys", "init"],
    );
    assert!(text(&no_pin).1.contains("PHIGATE_PKCS11_PIN"));
}

#[test]
fn pkcs11_keys_on_softhsm_through_the_cli() {
    let module = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("SoftHSM2 is not installed: install it with `apt-get install -y softhsm2`");
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            "cli-test",
            "--so-pin",
            "9999",
            "--pin",
            "1234",
        ])
        .output()
        .expect("softhsm2-util missing: install it with `apt-get install -y softhsm2`");
    let slot = String::from_utf8_lossy(&init.stdout)
        .split("reassigned to slot ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .expect("slot");
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, "1234\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let data = dir.path().join("data");
    let env = [
        ("SOFTHSM2_CONF", conf.to_str().unwrap()),
        ("PHIGATE_PKCS11_MODULE", module),
        ("PHIGATE_PKCS11_SLOT", slot.as_str()),
        ("PHIGATE_PKCS11_PIN_FILE", pin_file.to_str().unwrap()),
    ];
    let out = phigate(&data, &env, &["keys", "init"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("(pkcs11)"));
    assert!(phigate(&data, &env, &["keys", "rotate"]).status.success());
    assert!(phigate(&data, &env, &["keys", "rewrap"]).status.success());
    let retire = phigate(&data, &env, &["keys", "retire", "1"]);
    assert!(retire.status.success(), "{:?}", text(&retire));
    let status = phigate(&data, &env, &["keys", "status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["provider"], "pkcs11");
    assert_eq!(doc["versions"][0]["state"], "retired");
}
