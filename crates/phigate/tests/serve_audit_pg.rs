//! `phigate serve` on PostgreSQL: when the audit log cannot be written, the request is refused
//! with 503 instead of being answered unaudited.
//!
//! Needs `PHIGATE_TEST_DATABASE_URL` (a superuser URL such as
//! `postgres://postgres@127.0.0.1:5432/test`). The test creates its own role and schema and
//! drops both at the end.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

fn admin_url() -> String {
    std::env::var("PHIGATE_TEST_DATABASE_URL").expect(
        "PHIGATE_TEST_DATABASE_URL must be set for the PostgreSQL tests (e.g. postgres://postgres@127.0.0.1:5432/test)",
    )
}

/// `postgres://user:password@` replacing whatever credentials `url` carries.
fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    format!("{scheme}://{user}:{password}@{rest}")
}

#[tokio::test]
async fn a_request_whose_audit_event_cannot_be_written_is_refused_with_503() {
    use sqlx::Executor as _;
    let admin = sqlx::PgPool::connect(&admin_url()).await.unwrap();
    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix).unwrap();
    let name = format!("phigate_serve_{}", hex::encode(suffix));
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

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("phigate.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\nmtls_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .arg("serve")
        .env("PHIGATE_DATA_DIR", dir.path())
        .env(
            "PHIGATE_DATABASE_URL",
            with_credentials(&admin_url(), &name, &password),
        )
        .env_remove("PHIGATE_KEK")
        .env_remove("PHIGATE_KEK_FILE")
        .env_remove("PHIGATE_CONFIG")
        .env_remove("KIPU_ACCESS_ID")
        .env_remove("KIPU_SECRET_KEY")
        .env_remove("KIPU_APP_ID")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut public = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("listening https://") {
            public = Some(rest.split_whitespace().next().unwrap().to_string());
        }
        if line == "ready" {
            break;
        }
    }
    let public = public.expect("gateway started");
    let ca = std::fs::read(dir.path().join("tls/dev-ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let url = format!("https://{public}/api/v1/patients/P-1");

    // Audited normally first.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);

    // Take the audit tables away from the gateway's role: every append now fails.
    for table in ["audit_entries", "audit_tree_head", "audit_checkpoints"] {
        admin
            .execute(format!("ALTER TABLE {name}.{table} OWNER TO CURRENT_USER").as_str())
            .await
            .unwrap();
    }
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 503, "no audit, no answer");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "urn:phigate:problem:audit-unavailable");
    // Public probes write no audit event and are still served.
    let health = client
        .get(format!("https://{public}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let _ = child.kill();
    let _ = child.wait();
    admin
        .execute(format!("DROP SCHEMA {name} CASCADE").as_str())
        .await
        .unwrap();
    admin
        .execute(format!("DROP ROLE {name}").as_str())
        .await
        .unwrap();
}
