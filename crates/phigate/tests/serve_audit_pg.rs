//! `phigate serve` on PostgreSQL: when the audit log cannot be written, the request is refused
//! with 503 instead of being answered unaudited.
//!
//! Needs `PHIGATE_TEST_DATABASE_URL` (a superuser URL such as
//! `postgres://postgres@127.0.0.1:5432/test`). The test creates its own role and schema and
//! drops both at the end.

mod gateway;

use gateway::{Gateway, PgSchema};

#[tokio::test]
async fn a_request_whose_audit_event_cannot_be_written_is_refused_with_503() {
    let schema = PgSchema::create().await;
    let gw = Gateway::start_in(
        tempfile::tempdir().unwrap(),
        "[server]\nlisten = \"127.0.0.1:0\"\nmtls_listen = \"127.0.0.1:0\"\n",
        &[("PHIGATE_DATABASE_URL", &schema.url)],
    );
    let client = gw.client();
    let public = &gw.public;
    let url = format!("{public}/api/v1/patients/P-1");

    // Audited normally first.
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);

    // Take the audit tables away from the gateway's role: every append now fails.
    for table in ["audit_entries", "audit_tree_head", "audit_checkpoints"] {
        schema
            .execute_as_admin(&format!(
                "ALTER TABLE {}.{table} OWNER TO CURRENT_USER",
                schema.name
            ))
            .await;
    }
    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 503, "no audit, no answer");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "urn:phigate:problem:audit-unavailable");
    // Public probes write no audit event and are still served.
    let health = client.get(format!("{public}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    drop(gw);
    schema.drop_all().await;
}
