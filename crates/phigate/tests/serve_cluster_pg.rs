//! Two `phigate serve` instances on one PostgreSQL database (separate processes sharing the
//! data directory's keys and certificates, as a cluster shares its configuration): a
//! revocation made anywhere is refused at once by both, even after both have cached the
//! credential, and both write one gapless, verifiable audit log.
//!
//! Needs `PHIGATE_TEST_DATABASE_URL` (a superuser URL such as
//! `postgres://postgres@127.0.0.1:5432/test`). The test creates its own role and schema and
//! drops both at the end.

mod gateway;

use std::sync::Arc;

use base64::Engine as _;
use gateway::{Gateway, PgSchema, TEST_CONFIG};

/// The access service opened by a third process (this test) on the cluster's database, as
/// another instance or an operator's tool would.
async fn third_instance(dir: &std::path::Path, url: &str) -> access::Access {
    let kek =
        || Arc::new(sealed::SoftwareKeyProvider::from_key_file(&dir.join("dev-kek.key")).unwrap());
    let keys = Arc::new(
        audit::FileKeys::open_or_create(&dir.join("audit-keys"), "phigate-audit", kek()).unwrap(),
    );
    let log = audit::AuditLog::open(
        audit::LogConfig::new(audit::Storage::Postgres {
            url: url.to_string().into(),
            schema: None,
        }),
        keys.clone(),
    )
    .await
    .unwrap();
    access::Access::open(access::AccessConfig::new(
        access::Backend::Postgres {
            url: url.to_string().into(),
            schema: None,
        },
        kek(),
        log,
        keys,
        "phigate",
        "phigate-api",
    ))
    .await
    .unwrap()
}

fn jti(token: &str) -> String {
    let part = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgresql_share_revocations_at_once_and_write_one_gapless_audit_log()
{
    let pg = PgSchema::create().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("phigate.toml"),
        format!("{TEST_CONFIG}[simulator]\npatients = 5\n"),
    )
    .unwrap();
    let env = [("PHIGATE_DATABASE_URL", pg.url.as_str())];
    let a = Gateway::start_on(dir.path(), &env);
    let b = Gateway::start_on(dir.path(), &env);
    assert_ne!(a.public, b.public);

    let (key_id, key) = a.create_api_key("billing", "service");
    let token = a.token_for(&key).await;
    let other_token = b.token_for(&key).await;
    let mut request_ids = Vec::new();
    // Warm both instances' caches: the key row, the verified tokens, the revocation sets.
    for gw in [&a, &b] {
        for _ in 0..3 {
            for bearer in [&key, &token, &other_token] {
                let (status, rid) = gw.get_phi("/api/v1/patients", bearer).await;
                assert_eq!(status, 200);
                request_ids.push(rid);
            }
        }
    }

    // An API key revoked by an operator's tool (a third process): refused at once by both.
    a.revoke_api_key(&key_id);
    for gw in [&a, &b] {
        let (status, rid) = gw.get_phi("/api/v1/patients", &key).await;
        assert_eq!(status, 401, "the revoked key is refused at once");
        request_ids.push(rid);
    }

    // A token revoked through a third instance of the access service: refused at once by both;
    // the other token of the same principal still works on both.
    let third = third_instance(dir.path(), &pg.url).await;
    third
        .revoke_token("admin:test", &jti(&token))
        .await
        .unwrap();
    for gw in [&a, &b] {
        let (status, rid) = gw.get_phi("/api/v1/patients", &token).await;
        assert_eq!(status, 401, "the revoked token is refused at once");
        request_ids.push(rid);
        let (status, rid) = gw.get_phi("/api/v1/patients", &other_token).await;
        assert_eq!(status, 200);
        request_ids.push(rid);
    }

    // One audit log: every request of both instances is in it, indices without gaps, and it
    // verifies with the one public key.
    let log = audit::AuditLog::open_read_only(&audit::Storage::Postgres {
        url: pg.url.clone().into(),
        schema: None,
    })
    .await
    .unwrap();
    let entries = log.query(&audit::QueryFilter::default()).await.unwrap();
    for (i, (e, _)) in entries.iter().enumerate() {
        assert_eq!(e.index, i as u64, "no gap, no fork");
    }
    let logged: std::collections::HashSet<String> = entries
        .iter()
        .filter_map(|(e, _)| {
            e.to_json().unwrap()["event"]["request_id"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    for rid in &request_ids {
        assert!(logged.contains(rid), "request {rid} is in the shared log");
    }
    let out = gateway::phigate(dir.path(), "audit", &env)
        .arg("verify")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("audit log intact"));

    drop(third);
    drop(a);
    drop(b);
    log.close().await;
    pg.drop_all().await;
}
