//! Credential flows of `phigate serve` end to end (the built binary in its own process, real
//! TLS, real HTTP): mTLS identity → JWT, no JWT → JWT exchange, break-glass that expires.

mod gateway;

use base64::Engine as _;
use gateway::{Gateway, PURPOSE, REASON, TEST_CONFIG, care_team_fixture, now};

fn claims(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn an_mtls_identity_is_exchanged_for_a_jwt_that_then_works_on_the_public_listener() {
    let gw = Gateway::start(TEST_CONFIG);
    let resp = gw
        .mtls_client()
        .post(format!("{}/auth/token", gw.mtls))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let exchange_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap().to_string();
    let c = claims(&token);
    assert_eq!(c["sub"], "service:dev-client");
    assert_eq!(c["roles"], serde_json::json!(["service"]));
    assert_eq!(c["amr"], serde_json::json!(["mtls"]));

    // The token, without the certificate, on the other listener.
    let (status, rid) = gw.get_phi("/api/v1/patients", &token).await;
    assert_eq!(status, 200, "the service may list (its in-scope) patients");

    let auth: Vec<serde_json::Value> = gw
        .audit_entries("authentication")
        .await
        .iter()
        .map(|e| e.to_json().unwrap()["event"].clone())
        .collect();
    let of = |id: &str| -> Vec<&serde_json::Value> {
        auth.iter().filter(|e| e["request_id"] == id).collect()
    };
    let exchange = of(&exchange_id);
    assert_eq!(exchange.len(), 1, "{auth:?}");
    assert_eq!(exchange[0]["method"], "mtls");
    assert_eq!(exchange[0]["principal"], "service:dev-client");
    assert_eq!(exchange[0]["outcome"], "success");
    let used = of(&rid);
    assert_eq!(
        used.len(),
        1,
        "one authentication event per request: {auth:?}"
    );
    assert_eq!(used[0]["method"], "jwt");
    assert_eq!(used[0]["principal"], "service:dev-client");
    assert_eq!(used[0]["outcome"], "success");
    assert!(!gw.logs().contains(&token), "the token never reaches a log");
}

#[tokio::test]
async fn a_bearer_jwt_is_not_exchangeable_for_a_fresh_token_whatever_credential_it_came_from() {
    let gw = Gateway::start(TEST_CONFIG);
    let (_, key) = gw.create_api_key("etl", "service");
    let from_key = gw.token_for(&key).await;
    assert_eq!(claims(&from_key)["amr"], serde_json::json!(["apikey"]));
    let from_cert: serde_json::Value = gw
        .mtls_client()
        .post(format!("{}/auth/token", gw.mtls))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let from_cert = from_cert["access_token"].as_str().unwrap().to_string();
    for token in [&from_key, &from_cert] {
        let resp = gw
            .client()
            .post(format!("{}/auth/token", gw.public))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "a JWT buys no fresh JWT");
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("cannot be exchanged"),
            "{body}"
        );
        assert!(!body.to_string().contains(token.as_str()), "no echo");
    }
    // The token itself still works, and the API key still buys tokens.
    assert_eq!(gw.get_phi("/api/v1/patients", &from_key).await.0, 200);
    gw.token_for(&key).await;
}

#[tokio::test]
async fn break_glass_grants_access_to_one_patient_that_ends_when_its_window_expires() {
    let config = format!("{TEST_CONFIG}[access]\nbreak_glass_secs = 2\n");
    let gw = Gateway::start(&config);
    let (user, own, other) = care_team_fixture(&gw.dir).await;
    let (_, key) = gw.create_api_key(&format!("kipu-user-{user}"), "clinician");
    let client = gw.client();
    let read = |patient: String| {
        client
            .get(format!("{}/api/v1/patients/{patient}", gw.public))
            .header("x-api-key", &key)
            .header(PURPOSE.0, "ETREAT")
            .header(REASON.0, REASON.1)
            .send()
    };
    assert_eq!(
        read(other.clone()).await.unwrap().status(),
        404,
        "not in scope"
    );
    let granted = client
        .post(format!("{}/auth/break-glass", gw.public))
        .header("x-api-key", &key)
        .json(&serde_json::json!({"patient_id": other, "reason": "unresponsive in the ED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 201);
    let grant: serde_json::Value = granted.json().await.unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(grant["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(expires - now() <= 2, "the configured 2-second window");
    assert_eq!(
        read(other.clone()).await.unwrap().status(),
        200,
        "emergency access"
    );
    assert_eq!(
        read(own.clone()).await.unwrap().status(),
        200,
        "own patient"
    );

    // Wait until the grant has ended (whole seconds: in force while expires_at > now).
    while now() <= expires {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        read(other.clone()).await.unwrap().status(),
        404,
        "the grant has expired: out of scope again"
    );
    assert_eq!(
        read(own).await.unwrap().status(),
        200,
        "the care team is unaffected"
    );
    let events = gw.audit_entries("break_glass").await;
    assert_eq!(events.len(), 1, "the emergency access was recorded");
}

#[test]
fn a_break_glass_window_outside_1_to_86400_seconds_refuses_to_start() {
    for bad in ["0", "86401", "-5"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("phigate.toml"),
            format!("{TEST_CONFIG}[access]\nbreak_glass_secs = {bad}\n"),
        )
        .unwrap();
        let out = gateway::phigate(dir.path(), "serve", &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("access.break_glass_secs"), "{err}");
    }
}
