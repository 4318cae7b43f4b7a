//! `phigate serve` end to end: the built binary in its own process, real TLS, real HTTP.

mod gateway;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gateway::{Gateway, phigate};

/// Loopback listeners on free ports and nothing else: the rate limits keep their defaults.
const LOOPBACK_PORTS: &str = "[server]\nlisten = \"127.0.0.1:0\"\nmtls_listen = \"127.0.0.1:0\"\n";

fn client_trusting(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem).unwrap()])
        .build()
        .unwrap()
}

async fn problem(resp: reqwest::Response) -> serde_json::Value {
    assert_eq!(
        resp.headers()["content-type"],
        "application/problem+json",
        "errors are problem details"
    );
    resp.json().await.unwrap()
}

#[tokio::test]
async fn tls_1_3_serves_http1_and_http2_and_a_tls_1_2_client_is_refused() {
    let gw = Gateway::start(LOOPBACK_PORTS);
    let url = format!("{}/health", gw.public);

    let resp = gw.client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let h = resp.headers();
    assert!(
        h["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
    assert!(
        h.get("access-control-allow-origin").is_none(),
        "CORS is closed by default"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(
        body["synthetic_data"], true,
        "the simulator upstream is labelled synthetic"
    );

    let http1 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&gw.ca()).unwrap()])
        .http1_only()
        .build()
        .unwrap();
    let resp = http1.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    let tls12 = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&gw.ca()).unwrap()])
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let err = tls12
        .get(&url)
        .send()
        .await
        .expect_err("TLS 1.2 must be refused");
    assert!(err.is_connect() || err.is_request(), "{err:?}");
    assert!(
        gw.logs().contains("SYNTHETIC DATA"),
        "logs say the data is synthetic"
    );
}

#[tokio::test]
async fn the_mtls_listener_refuses_clients_without_a_certificate_and_names_the_service_of_those_with_one()
 {
    let gw = Gateway::start(LOOPBACK_PORTS);
    let url = format!("{}/health", gw.mtls);
    let err = gw
        .client()
        .get(&url)
        .send()
        .await
        .expect_err("no client certificate must be refused");
    assert!(err.is_connect() || err.is_request(), "{err:?}");

    let client = gw.mtls_client();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    // An authenticated service with no permitting policy: a patient read looks missing.
    let resp = client
        .get(format!("{}/api/v1/patients/P-1", gw.mtls))
        .header("x-purpose-of-use", "TREAT")
        .header("x-access-reason", "follow-up")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = problem(resp).await;
    assert_eq!(body["type"], "urn:phigate:problem:not-found");

    let auth = gw.audit_entries("authentication").await;
    let json: Vec<serde_json::Value> = auth.iter().map(|e| e.to_json().unwrap()).collect();
    assert!(
        json.iter()
            .any(|e| e["event"]["principal"] == "service:dev-client"
                && e["event"]["method"] == "mtls"
                && e["event"]["outcome"] == "success"
                && e["event"]["request_id"] == request_id.as_str()),
        "{json:?}"
    );
    assert!(
        json.iter().any(|e| e["event"]["method"] == "mtls"
            && e["event"]["outcome"] == "failure"
            && e["event"]["failure_reason"] == "untrusted_certificate"),
        "the refused handshake is audited: {json:?}"
    );
    let denied = gw.audit_entries("policy_denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(
        denied[0].to_json().unwrap()["event"]["rule"],
        "default-deny"
    );
}

#[tokio::test]
async fn protected_requests_without_a_valid_credential_get_401_problem_details() {
    let gw = Gateway::start(LOOPBACK_PORTS);
    let client = gw.client();
    for (path, bearer) in [
        ("/api/v1/patients/P-1", None),
        ("/api/v1/patients/P-1", Some("Bearer not-a-token")),
        ("/no/such/route", None),
    ] {
        let mut req = client.get(format!("{}{path}", gw.public));
        if let Some(b) = bearer {
            req = req.header("authorization", b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer realm=\"phigate\""
        );
        let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let body = problem(resp).await;
        assert_eq!(body["type"], "urn:phigate:problem:unauthenticated");
        assert_eq!(body["title"], "Unauthorized");
        assert_eq!(body["status"], 401);
        assert!(body["detail"].as_str().unwrap().ends_with('.'));
        assert_eq!(body["request_id"], request_id.as_str());
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5, "no other members: {keys:?}");
    }
}

#[tokio::test]
async fn oversized_bodies_get_413_problem_details_without_echo() {
    let gw = Gateway::start(&format!("{LOOPBACK_PORTS}body_limit_bytes = 1024\n"));
    let resp = gw
        .client()
        .post(format!("{}/auth/token", gw.public))
        .header("content-type", "application/json")
        .body(format!("{{\"x\":\"{}\"}}", "A".repeat(4096)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body = problem(resp).await;
    assert_eq!(body["type"], "urn:phigate:problem:body-too-large");
    assert!(!body.to_string().contains("AAAA"));
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_ratelimit_headers_then_recover() {
    let gw = Gateway::start(&format!(
        "{LOOPBACK_PORTS}[rate_limit]\nper_address_per_minute = 60\nper_address_burst = 2\nwrite_cost = 1\n"
    ));
    let client = gw.client();
    let url = format!("{}/health", gw.public);
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..3 {
        let resp = client.get(&url).send().await.unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            limited = Some(resp);
        } else {
            assert!(resp.headers().contains_key("ratelimit"));
        }
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    let resp = limited.unwrap();
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(resp.headers()["ratelimit-policy"], "\"address\";q=2;w=2");
    assert!(
        resp.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"address\";r=0;t=")
    );
    let body = problem(resp).await;
    assert_eq!(body["type"], "urn:phigate:problem:rate-limited");

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        200,
        "recovers after Retry-After"
    );
}

#[tokio::test]
async fn each_protected_request_writes_its_audit_event_and_public_probes_write_none() {
    let gw = Gateway::start(LOOPBACK_PORTS);
    let client = gw.client();
    for _ in 0..2 {
        client
            .get(format!("{}/health", gw.public))
            .send()
            .await
            .unwrap();
    }
    // What the start wrote (the access service's key events, the bootstrap secret).
    let before = audit::AuditLog::open_read_only(&audit::Storage::Sqlite {
        path: gw.dir.as_path().join("audit.db"),
    })
    .await
    .unwrap()
    .tree_head()
    .await
    .unwrap()
    .0;
    let at_start = gw.audit_entries("authentication").await.len();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let resp = client
            .get(format!("{}/api/v1/patients/P-7", gw.public))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        ids.push(resp.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    let events: Vec<serde_json::Value> = gw
        .audit_entries("authentication")
        .await
        .iter()
        .map(|e| e.to_json().unwrap()["event"].clone())
        .skip(at_start)
        .collect();
    assert_eq!(
        events.len(),
        3,
        "one per protected request, none for /health: {events:?}"
    );
    for (event, id) in events.iter().zip(&ids) {
        assert_eq!(event["request_id"], id.as_str());
        assert_eq!(event["outcome"], "failure");
        assert_eq!(event["source_address"], "127.0.0.1");
    }
    let all = audit::AuditLog::open_read_only(&audit::Storage::Sqlite {
        path: gw.dir.as_path().join("audit.db"),
    })
    .await
    .unwrap()
    .tree_head()
    .await
    .unwrap()
    .0;
    assert_eq!(all - before, 3, "nothing else was written");
}

fn sim_canaries() -> Vec<String> {
    let sim = kipu_sim::Simulator::new(&kipu_sim::SimConfig {
        patients: 5,
        seed: 1,
        ..kipu_sim::SimConfig::default()
    })
    .unwrap();
    sim.canaries()
}

#[tokio::test]
async fn canary_strings_sent_in_requests_never_come_back_in_responses_logs_or_metrics() {
    let gw = Gateway::start(&format!(
        "{LOOPBACK_PORTS}[simulator]\npatients = 5\nseed = 1\n"
    ));
    let canaries = sim_canaries();
    assert!(!canaries.is_empty());
    let client = gw.client();
    let mtls = gw.mtls_client();
    let mut seen = String::new();
    for (i, canary) in canaries.iter().enumerate() {
        let enc: String = canary
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let requests = vec![
            client.get(format!("{}/api/v1/patients/{enc}?q={enc}", gw.public)),
            client
                .get(format!("{}/api/v1/patients/{enc}", gw.public))
                .header("authorization", format!("Bearer {enc}")),
            client
                .post(format!("{}/auth/token", gw.public))
                .header("content-type", "application/json")
                .body(format!("{{\"patient\":\"{canary}\"")),
            mtls.get(format!("{}/api/v1/patients/{enc}", gw.mtls))
                .header("x-purpose-of-use", "TREAT")
                .header("x-access-reason", enc.clone()),
            mtls.get(format!("{}/api/v1/patients/{enc}", gw.mtls))
                .header("x-purpose-of-use", enc.clone())
                .header("x-access-reason", "x"),
            mtls.get(format!("{}/{enc}", gw.mtls)),
        ];
        for req in requests {
            let resp = req.send().await.unwrap();
            seen.push_str(&format!("{:?}\n", resp.headers()));
            seen.push_str(&resp.text().await.unwrap());
            seen.push('\n');
        }
        if i > 10 {
            break;
        }
    }
    let metrics = mtls
        .get(format!("{}/metrics", gw.mtls))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("route=\"/api/v1/patients/{id}\""),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"unmatched\""));
    let logs = gw.logs();
    for canary in &canaries {
        assert!(
            !seen.contains(canary.as_str()),
            "a canary came back in a response"
        );
        assert!(
            !metrics.contains(canary.as_str()),
            "a canary reached a metric"
        );
        assert!(!logs.contains(canary.as_str()), "a canary reached the log");
    }
}

#[tokio::test]
async fn the_docs_and_openapi_document_are_served() {
    let gw = Gateway::start(LOOPBACK_PORTS);
    let client = gw.client();
    let doc: serde_json::Value = client
        .get(format!("{}/openapi.json", gw.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/health"]["get"].is_object());
    let page = client
        .get(format!("{}/docs", gw.public))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<code>/ready</code>"));
    let ready: serde_json::Value = client
        .get(format!("{}/ready", gw.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
}

#[test]
fn a_bad_config_file_names_the_key_and_refuses_to_start_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (config, key) in [
        ("[server]\nlisen = \"127.0.0.1:0\"\n", "server.lisen"),
        (
            "[rate_limit]\nauth_burst = \"many\"\n",
            "rate_limit.auth_burst",
        ),
        (
            "[cors]\nallowed_origins = [\"*\"]\n",
            "cors.allowed_origins[0]",
        ),
        (
            "[server]\nlisten = \"0.0.0.0:0\"\nmtls_listen = \"127.0.0.1:0\"\n",
            "tls.cert",
        ),
        (
            "[server]\nlisten = \"0.0.0.0:0\"\nmtls_listen = \"127.0.0.1:0\"\n[rate_limit]\nenabled = false\n",
            "rate_limit.enabled",
        ),
    ] {
        std::fs::write(dir.path().join("phigate.toml"), config).unwrap();
        let out = phigate(dir.path(), "serve", &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{config}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
}

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn write_0600(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test]
async fn a_new_certificate_is_served_after_sighup_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = pki("first");
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    write_0600(&certs.join("server.pem"), &first.cert_pem);
    write_0600(&certs.join("server.key"), &first.key_pem);
    write_0600(&certs.join("clients-ca.pem"), &first.ca_pem);
    let config = format!(
        "{LOOPBACK_PORTS}[tls]\ncert = \"{0}/server.pem\"\nkey = \"{0}/server.key\"\nclient_ca = \"{0}/clients-ca.pem\"\nreload_check_secs = 3600\n",
        certs.display()
    );
    let gw = Gateway::start_in(dir, &config, &[]);
    let url = format!("{}/health", gw.public);
    assert_eq!(
        client_trusting(first.ca_pem.as_bytes())
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let second = pki("second");
    write_0600(&certs.join("server.pem"), &second.cert_pem);
    write_0600(&certs.join("server.key"), &second.key_pem);
    let status = Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut reloaded = false;
    for _ in 0..300 {
        if gw.logs().contains("TLS certificates reloaded") {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "no reload logged: {}", gw.logs());
    let resp = client_trusting(second.ca_pem.as_bytes())
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the new certificate is served");
    assert!(
        client_trusting(first.ca_pem.as_bytes())
            .get(&url)
            .send()
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn doctor_fails_a_development_setup_item_by_item_and_passes_what_is_production_ready() {
    let port = free_port();
    let config =
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\nmtls_listen = \"127.0.0.1:0\"\n");
    let gw = Gateway::start(&config);
    // One audited request so the log has something to verify.
    gw.client()
        .get(format!("{}/api/v1/patients/P-1", gw.public))
        .send()
        .await
        .unwrap();
    let dir = gw.dir.as_path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || phigate(&dir, "doctor", &[]).output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for line in [
        "FAIL  tls certificates",
        "FAIL  backup/store encryption",
        "PASS  rate limiting",
        "PASS  database credentials",
        "PASS  audit log",
        "PASS  tls 1.3 only",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(stdout.contains("fix: set tls.cert, tls.key and tls.client_ca"));
}

#[tokio::test]
async fn cors_answers_only_the_configured_origin() {
    let gw = Gateway::start(&format!(
        "{LOOPBACK_PORTS}[cors]\nallowed_origins = [\"https://app.example\"]\n"
    ));
    let client = gw.client();
    let url = format!("{}/api/v1/patients/P-1", gw.public);
    for (origin, allowed) in [
        ("https://app.example", true),
        ("https://evil.example", false),
    ] {
        let resp = client
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header(
                "access-control-request-headers",
                "authorization, x-purpose-of-use",
            )
            .send()
            .await
            .unwrap();
        let header = resp
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string());
        if allowed {
            assert_eq!(header.as_deref(), Some(origin));
        } else {
            assert_eq!(header, None, "{origin} must not be allowed");
        }
    }
}

#[tokio::test]
async fn a_client_certificate_from_the_trusted_ca_without_a_service_san_is_refused_and_audited() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let dir = tempfile::tempdir().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "services test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |sans: Vec<SanType>, client: bool| {
        let mut p = CertificateParams::default();
        p.subject_alt_names = sans;
        if client {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(vec![SanType::IpAddress([127, 0, 0, 1].into())], false);
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    write_0600(&certs.join("server.pem"), &server_pem);
    write_0600(&certs.join("server.key"), &server_key);
    write_0600(&certs.join("ca.pem"), &ca_cert.pem());
    let config = format!(
        "{LOOPBACK_PORTS}[tls]\ncert = \"{0}/server.pem\"\nkey = \"{0}/server.key\"\nclient_ca = \"{0}/ca.pem\"\n",
        certs.display()
    );
    let gw = Gateway::start_in(dir, &config, &[]);
    let client_with = |(pem, key): (String, String)| {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(ca_cert.pem().as_bytes()).unwrap()])
            .identity(reqwest::Identity::from_pem(format!("{pem}{key}").as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    let url = format!("{}/health", gw.mtls);
    let named = client_with(leaf(
        vec![SanType::URI(
            "spiffe://phigate.local/service/lab".try_into().unwrap(),
        )],
        true,
    ));
    assert_eq!(named.get(&url).send().await.unwrap().status(), 200);
    let other_domain = client_with(leaf(
        vec![SanType::URI(
            "spiffe://elsewhere.example/service/lab".try_into().unwrap(),
        )],
        true,
    ));
    assert!(
        other_domain.get(&url).send().await.is_err(),
        "foreign trust domain refused"
    );
    let no_san = client_with(leaf(
        vec![SanType::DnsName("lab.internal".try_into().unwrap())],
        true,
    ));
    assert!(
        no_san.get(&url).send().await.is_err(),
        "no service SAN refused"
    );

    let failures = gw
        .audit_entries("authentication")
        .await
        .iter()
        .map(|e| e.to_json().unwrap()["event"].clone())
        .filter(|e| e["method"] == "mtls" && e["failure_reason"] == "untrusted_certificate")
        .count();
    assert_eq!(failures, 2, "both refusals are audited");
}

// ---------------------------------------------------------------------------------------------
// Authentication and authorization through the `access` crate.
// ---------------------------------------------------------------------------------------------

/// The gateway's own access service, opened from the test process on the same files (the
/// access tables and the audit log serialize writers across processes). `clock` issues tokens
/// at another time.
async fn api_key(access: &access::Access, service: &str, role: access::Role) -> (String, String) {
    let k = access
        .create_api_key("admin:test", service, &[role], None)
        .await
        .unwrap();
    use secrecy::ExposeSecret as _;
    (k.id, k.secret.expose_secret().to_string())
}

async fn token_for(gw: &Gateway, key: &str) -> String {
    let resp = gw
        .client()
        .post(format!("{}/auth/token", gw.public))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900, "15-minute tokens");
    body["access_token"].as_str().unwrap().to_string()
}

/// Loopback ports and an `/auth/*` bucket large enough for the exchanges of one test.
const ACCESS_CONFIG: &str = "[server]\nlisten = \"127.0.0.1:0\"\nmtls_listen = \"127.0.0.1:0\"\n[rate_limit]\nauth_per_minute = 600\nauth_burst = 100\n";

const PURPOSE: (&str, &str) = ("x-purpose-of-use", "TREAT");
const REASON: (&str, &str) = ("x-access-reason", "follow-up visit");

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// `GET /api/v1/patients` with a bearer value: the status.
async fn list_status(gw: &Gateway, bearer: &str) -> u16 {
    gw.client()
        .get(format!("{}/api/v1/patients", gw.public))
        .bearer_auth(bearer)
        .header(PURPOSE.0, PURPOSE.1)
        .header(REASON.0, REASON.1)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn forged_expired_alg_none_unknown_kid_and_wrong_aud_tokens_are_refused_and_a_real_one_is_accepted()
 {
    let gw = Gateway::start(ACCESS_CONFIG);
    let access = gw.access().await;
    let (_, key) = api_key(&access, "lab", access::Role::Service).await;
    let token = token_for(&gw, &key).await;
    assert_eq!(list_status(&gw, &token).await, 200, "a real token works");

    let parts: Vec<&str> = token.split('.').collect();
    let header: serde_json::Value = serde_json::from_slice(&unb64(parts[0])).unwrap();
    let mut claims: serde_json::Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let jwks: serde_json::Value = gw
        .client()
        .get(format!("{}/.well-known/jwks.json", gw.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "the token's kid is published: {jwks}"
    );

    // Forged: more roles, same signature.
    claims["roles"] = serde_json::json!(["clinician", "admin"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(&serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    // alg none, no signature.
    let none_header = serde_json::json!({"alg": "none", "kid": header["kid"], "typ": "JWT"});
    let alg_none = format!(
        "{}.{}.",
        b64(&serde_json::to_vec(&none_header).unwrap()),
        parts[1]
    );
    // Unknown kid.
    let mut other_kid = header.clone();
    other_kid["kid"] = serde_json::json!("not-a-key-of-this-gateway");
    let unknown_kid = format!(
        "{}.{}.{}",
        b64(&serde_json::to_vec(&other_kid).unwrap()),
        parts[1],
        parts[2]
    );
    // Properly signed by this gateway's key, but for another audience.
    let principal = access::Principal::new(
        "service:lab",
        vec![access::Role::Service],
        audit::AuthMethod::ApiKey,
    )
    .unwrap();
    let wrong_aud = gw
        .access_as("another-api", None)
        .await
        .issue_token(&principal, None)
        .await
        .unwrap();
    // Properly signed, issued an hour ago: expired.
    let expired = gw
        .access_as("phigate-api", Some(now() - 3600))
        .await
        .issue_token(&principal, None)
        .await
        .unwrap();
    use secrecy::ExposeSecret as _;
    for (name, bad) in [
        ("forged", forged.as_str()),
        ("alg none", alg_none.as_str()),
        ("unknown kid", unknown_kid.as_str()),
        ("wrong aud", wrong_aud.token.expose_secret()),
        ("expired", expired.token.expose_secret()),
    ] {
        let resp = gw
            .client()
            .get(format!("{}/api/v1/patients", gw.public))
            .bearer_auth(bad)
            .header(PURPOSE.0, PURPOSE.1)
            .header(REASON.0, REASON.1)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{name} token refused");
        assert!(resp.headers().contains_key("www-authenticate"));
        let body = problem(resp).await;
        assert!(!body.to_string().contains(bad), "{name}: token not echoed");
    }
    // Every attempt was audited, with its reason.
    let reasons: Vec<String> = gw
        .audit_entries("authentication")
        .await
        .iter()
        .map(|e| e.to_json().unwrap()["event"].clone())
        .filter(|e| e["method"] == "jwt" && e["outcome"] == "failure")
        .map(|e| e["failure_reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "expired"), "{reasons:?}");
    assert!(!gw.logs().contains(&key), "the API key never reaches a log");
    assert!(!gw.logs().contains(&token), "the token never reaches a log");
}

#[tokio::test]
async fn a_revoked_api_key_fails_at_once() {
    let gw = Gateway::start(ACCESS_CONFIG);
    let access = gw.access().await;
    let (id, key) = api_key(&access, "billing", access::Role::Service).await;
    assert_eq!(list_status(&gw, &key).await, 200);
    access.revoke_api_key("admin:test", &id).await.unwrap();
    assert_eq!(
        list_status(&gw, &key).await,
        401,
        "refused at the next request"
    );
    let resp = gw
        .client()
        .post(format!("{}/auth/token", gw.public))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "and cannot be exchanged for a token");
    let revoked = gw
        .audit_entries("authentication")
        .await
        .iter()
        .map(|e| e.to_json().unwrap()["event"].clone())
        .filter(|e| e["failure_reason"] == "revoked")
        .count();
    assert_eq!(revoked, 2);
}

/// A current care-team member (Kipu user id) of some patient, that patient, another patient
/// whose team does not include the member, and how many patients the member's teams cover;
/// from the store the gateway synced.
async fn care_team_fixture(gw: &Gateway) -> (String, String, String, usize) {
    let teams = gateway::current_care_teams(&gw.store().await).await;
    let (user, patient, other) = gateway::member_and_patients(&teams);
    let in_scope = teams.iter().filter(|(_, m)| m.contains(&user)).count();
    (user, patient, other, in_scope)
}

#[tokio::test]
async fn a_clinician_on_the_care_team_reads_the_patient_and_a_cross_patient_read_is_404_like_a_missing_one()
 {
    let gw = Gateway::start(ACCESS_CONFIG);
    let (user, patient, other, in_scope) = care_team_fixture(&gw).await;
    let access = gw.access().await;
    let (_, key) = api_key(
        &access,
        &format!("kipu-user-{user}"),
        access::Role::Clinician,
    )
    .await;
    let token = token_for(&gw, &key).await;
    let client = gw.client();
    let get = |id: &str, reason: bool| {
        let mut r = client
            .get(format!("{}/api/v1/patients/{id}", gw.public))
            .bearer_auth(&token)
            .header(PURPOSE.0, PURPOSE.1);
        if reason {
            r = r.header(REASON.0, REASON.1);
        }
        r.send()
    };

    let ok = get(&patient, true).await.unwrap();
    assert_eq!(ok.status(), 200, "on the care team");
    assert_eq!(ok.headers()["cache-control"], "no-store");
    let rid = ok.headers()["x-request-id"].to_str().unwrap().to_string();
    let record: serde_json::Value = ok.json().await.unwrap();
    assert!(record.is_object());
    let access_events: Vec<serde_json::Value> = gw
        .audit_entries("phi_access")
        .await
        .iter()
        .map(|e| e.to_json().unwrap()["event"].clone())
        .filter(|e| e["request_id"] == rid.as_str())
        .collect();
    assert_eq!(access_events.len(), 1, "{access_events:?}");
    let e = &access_events[0];
    assert_eq!(e["principal"], format!("service:kipu-user-{user}").as_str());
    assert_eq!(e["outcome"], "success");
    assert_eq!(e["purpose"], "TREAT");
    assert!(
        !e.to_string().contains(&patient),
        "the patient id is a keyed hash in the log"
    );

    let cross = get(&other, true).await.unwrap();
    assert_eq!(cross.status(), 404, "another patient: not found");
    let missing = get("NO-SUCH-PATIENT-1", true).await.unwrap();
    assert_eq!(missing.status(), 404);
    let strip = |mut v: serde_json::Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    assert_eq!(
        strip(problem(cross).await),
        strip(problem(missing).await),
        "out of scope looks exactly like missing"
    );
    let denied = gw.audit_entries("policy_denied").await;
    assert!(!denied.is_empty(), "the cross-patient read is audited");

    let no_reason = get(&patient, false).await.unwrap();
    assert_eq!(no_reason.status(), 400);
    let body = problem(no_reason).await;
    assert!(body["detail"].as_str().unwrap().contains("X-Access-Reason"));

    let list: serde_json::Value = client
        .get(format!("{}/api/v1/patients", gw.public))
        .bearer_auth(&token)
        .header(PURPOSE.0, PURPOSE.1)
        .header(REASON.0, REASON.1)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        in_scope,
        "the list holds exactly the in-scope patients"
    );
}

#[tokio::test]
async fn break_glass_grants_a_clinician_an_audited_time_limited_read_that_admins_review() {
    let gw = Gateway::start(ACCESS_CONFIG);
    let (user, _, other, _) = care_team_fixture(&gw).await;
    let access = gw.access().await;
    let (_, key) = api_key(
        &access,
        &format!("kipu-user-{user}"),
        access::Role::Clinician,
    )
    .await;
    let client = gw.client();
    let read = || {
        client
            .get(format!("{}/api/v1/patients/{other}", gw.public))
            .header("x-api-key", &key)
            .header(PURPOSE.0, "ETREAT")
            .header(REASON.0, REASON.1)
            .send()
    };
    assert_eq!(read().await.unwrap().status(), 404, "not in scope yet");
    let no_reason = client
        .post(format!("{}/auth/break-glass", gw.public))
        .header("x-api-key", &key)
        .json(&serde_json::json!({"patient_id": other, "reason": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_reason.status(), 400, "a reason is required");
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
    assert!(
        (expires - now() - 3600).abs() < 120,
        "60 minutes by default"
    );
    assert_eq!(read().await.unwrap().status(), 200, "emergency access");
    let events = gw.audit_entries("break_glass").await;
    assert_eq!(events.len(), 1);
    let text = events[0].to_json().unwrap().to_string();
    assert!(
        !text.contains("unresponsive"),
        "the reason is hashed in the event"
    );
    assert!(!text.contains(&other), "the patient is hashed in the event");

    // A service may not break the glass.
    let (_, service_key) = api_key(&access, "etl", access::Role::Service).await;
    let refused = client
        .post(format!("{}/auth/break-glass", gw.public))
        .header("x-api-key", &service_key)
        .json(&serde_json::json!({"patient_id": other, "reason": "batch job"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // The first admin enrolls with the bootstrap secret printed at start, signs in with a TOTP
    // code, and reviews the grant; the clinician may not.
    let bootstrap = gw
        .bootstrap
        .clone()
        .expect("a bootstrap secret was printed");
    let enrolled = client
        .post(format!("{}/auth/enroll", gw.public))
        .json(&serde_json::json!({"bootstrap_secret": bootstrap, "username": "root", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(enrolled.status(), 201);
    let enrolled: serde_json::Value = enrolled.json().await.unwrap();
    let secret = access::totp::base32_decode(enrolled["totp_secret"].as_str().unwrap()).unwrap();
    let code = access::totp::totp(&secret, now(), 6, access::totp::TotpAlgorithm::Sha1);
    let login = client
        .post(format!("{}/auth/token", gw.public))
        .json(&serde_json::json!({"username": "root", "password": "correct horse battery staple", "totp": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let admin_token: serde_json::Value = login.json().await.unwrap();
    // Every admin request needs a fresh TOTP code (step-up): without one, 401.
    let no_code = client
        .get(format!("{}/admin/break-glass", gw.public))
        .bearer_auth(admin_token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(no_code.status(), 401);
    assert_eq!(
        problem(no_code).await["type"],
        "urn:phigate:problem:insufficient_user_authentication"
    );
    let next_code = access::totp::totp(&secret, now() + 30, 6, access::totp::TotpAlgorithm::Sha1);
    let review = client
        .get(format!("{}/admin/break-glass", gw.public))
        .bearer_auth(admin_token["access_token"].as_str().unwrap())
        .header("x-totp-code", &next_code)
        .send()
        .await
        .unwrap();
    assert_eq!(review.status(), 200);
    let list: serde_json::Value = review.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        list[0]["principal"],
        format!("service:kipu-user-{user}").as_str()
    );
    assert_eq!(list[0]["active"], true);
    let as_clinician = client
        .get(format!("{}/admin/break-glass", gw.public))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(as_clinician.status(), 403);
    // An admin gets no PHI.
    let admin_read = client
        .get(format!("{}/api/v1/patients/{other}", gw.public))
        .bearer_auth(admin_token["access_token"].as_str().unwrap())
        .header(PURPOSE.0, PURPOSE.1)
        .header(REASON.0, REASON.1)
        .send()
        .await
        .unwrap();
    assert!(matches!(admin_read.status().as_u16(), 403 | 404));
}
