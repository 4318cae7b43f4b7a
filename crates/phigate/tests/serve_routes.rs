//! Every route × every kind of principal × patient scope, against a real `phigate serve`
//! process over TLS, plus the admin and auditor APIs end to end.
//!
//! The table in [`table`] is the specification: one row per (method, route template), one
//! expected status per principal (anonymous, each role, a clinician outside the patient's
//! care team) and, for routes naming a patient, per scope (the patient on the caller's care
//! team, and one that is not). The test fails when the table, the OpenAPI document and the
//! `.route("…")` literals of the router sources (every file under `src/`) disagree, so a
//! route cannot be added without a row here.

mod gateway;

use std::collections::BTreeSet;
use std::path::Path;

use gateway::{Gateway, now, phigate};

use secrecy::ExposeSecret as _;

/// Loopback listeners and rate limits far above what one test sends (the limits themselves
/// are tested in `serve_gateway.rs`).
const CONFIG: &str = "[server]\nlisten = \"127.0.0.1:0\"\nmtls_listen = \"127.0.0.1:0\"\n[rate_limit]\nper_principal_per_minute = 100000\nper_principal_burst = 10000\nper_address_per_minute = 100000\nper_address_burst = 10000\nauth_per_minute = 100000\nauth_burst = 10000\n";

const PASSWORD: &str = "correct horse battery staple";

fn start() -> Gateway {
    Gateway::start(CONFIG)
}

/// What the route tests need beyond the shared harness.
impl Gateway {
    /// A care-team member (Kipu user id), a patient on their team and one that is not; an
    /// admitted patient first, so the census row of the in-scope patient exists.
    async fn care_team_fixture(&self) -> (String, String, String) {
        let store = self.store().await;
        let today = chrono::Utc::now().date_naive().to_string();
        let mut admitted = BTreeSet::new();
        for r in store.list_kind("ehr.patient").await.unwrap() {
            let v: serde_json::Value = serde_json::from_slice(r.value.expose()).unwrap();
            let gone = v["discharge_date"]
                .as_str()
                .is_some_and(|d| &d[..10.min(d.len())] <= today.as_str());
            if !gone {
                admitted.insert(r.id.expose().clone());
            }
        }
        let mut teams = gateway::current_care_teams(&store).await;
        teams.sort_by_key(|(p, _)| !admitted.contains(p));
        gateway::member_and_patients(&teams)
    }
}

/// Admins for the test, made directly in the access database, and their TOTP codes. A code is
/// accepted once per 30-second step (and the steps must increase), so each admin offers the
/// current and the next step; more admins are made when those are spent, and no test waits.
struct Admins {
    access: access::Access,
    /// (username, token, TOTP secret, last step used).
    list: Vec<(String, String, Vec<u8>, i64)>,
}

impl Admins {
    fn new(access: access::Access) -> Self {
        Self {
            access,
            list: Vec::new(),
        }
    }

    async fn create(&self, username: &str) -> (String, Vec<u8>) {
        let actor = access::Principal::new(
            "admin:test-setup",
            vec![access::Role::Admin],
            access::AuthMethod::PasswordTotp,
        )
        .unwrap();
        let e = self
            .access
            .create_admin(
                &actor,
                username,
                &secrecy::SecretString::from(PASSWORD.to_owned()),
            )
            .await
            .unwrap();
        let secret = access::totp::base32_decode(e.totp_secret.expose_secret()).unwrap();
        let principal = access::Principal::new(
            e.principal_id.clone(),
            vec![access::Role::Admin],
            access::AuthMethod::PasswordTotp,
        )
        .unwrap();
        let token = self.access.issue_token(&principal, None).await.unwrap();
        (token.token.expose_secret().to_string(), secret)
    }

    /// An admin token and a code it may use now.
    async fn next(&mut self) -> (String, String) {
        let current = now().div_euclid(30);
        for (_, token, secret, last) in &mut self.list {
            let step = (*last + 1).max(current);
            if step <= current + 1 {
                *last = step;
                let code =
                    access::totp::hotp(secret, step as u64, 6, access::totp::TotpAlgorithm::Sha1);
                return (token.clone(), code);
            }
        }
        let name = format!("table-admin-{}", self.list.len());
        let (token, secret) = self.create(&name).await;
        self.list.push((name, token, secret, current - 1));
        Box::pin(self.next()).await
    }
}

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Clinician,
    WrongScopeClinician,
    CareCoordinator,
    Service,
    Analyst,
    Auditor,
    Admin,
}

const WHO: [Who; 8] = [
    Who::Anonymous,
    Who::Clinician,
    Who::WrongScopeClinician,
    Who::CareCoordinator,
    Who::Service,
    Who::Analyst,
    Who::Auditor,
    Who::Admin,
];

/// One row: a route and the status each principal gets, `[in scope, out of scope]` (the same
/// twice for routes that name no patient).
struct Row {
    method: &'static str,
    route: &'static str,
    expect: [[u16; 2]; 8],
}

const fn same(s: [u16; 8]) -> [[u16; 2]; 8] {
    [
        [s[0], s[0]],
        [s[1], s[1]],
        [s[2], s[2]],
        [s[3], s[3]],
        [s[4], s[4]],
        [s[5], s[5]],
        [s[6], s[6]],
        [s[7], s[7]],
    ]
}

/// A patient read: the care team (clinician, coordinator, service) reads the in-scope patient;
/// everything else, including roles that get no PHI, looks exactly like a missing patient.
const PATIENT_READ: [[u16; 2]; 8] = [
    [401, 401],
    [200, 404],
    [404, 404],
    [200, 404],
    [200, 404],
    [404, 404],
    [404, 404],
    [404, 404],
];
/// [`PATIENT_READ`] for a model the in-scope fixture patient has too little data for: the
/// permitted principals get 422 `insufficient-data`, everyone else the same as before.
const INSUFFICIENT_DATA: [[u16; 2]; 8] = [
    [401, 401],
    [422, 404],
    [404, 404],
    [422, 404],
    [422, 404],
    [404, 404],
    [404, 404],
    [404, 404],
];
const PUBLIC: [[u16; 2]; 8] = same([200; 8]);
//                    anon clin wrong coord svc  anal  audit admin
const LIST: [[u16; 2]; 8] = same([401, 200, 200, 200, 200, 403, 403, 403]);
const ADMIN_OK: [[u16; 2]; 8] = same([401, 403, 403, 403, 403, 403, 403, 200]);
const ADMIN_CREATED: [[u16; 2]; 8] = same([401, 403, 403, 403, 403, 403, 403, 201]);
const AUDITOR_OK: [[u16; 2]; 8] = same([401, 403, 403, 403, 403, 403, 200, 403]);
const SIGNED_IN: [[u16; 2]; 8] = same([401, 200, 200, 200, 200, 200, 200, 200]);

/// The specification. Rows run in this order (state-changing admin rows after the reads,
/// break-glass last because it widens the clinicians' scope).
fn table() -> Vec<Row> {
    let r = |method, route, expect| Row {
        method,
        route,
        expect,
    };
    vec![
        r("GET", "/health", PUBLIC),
        r("GET", "/ready", PUBLIC),
        r("GET", "/metrics", PUBLIC),
        r("GET", "/openapi.json", PUBLIC),
        r("GET", "/docs", PUBLIC),
        r("GET", "/.well-known/jwks.json", PUBLIC),
        // No body: nothing to exchange; a bearer JWT is never exchanged for a fresh one.
        r("POST", "/auth/token", same([400; 8])),
        r("POST", "/auth/enroll", same([400; 8])),
        r("GET", "/api/v1/patients", LIST),
        r("GET", "/api/v1/census", LIST),
        r("GET", "/api/v1/patients/{id}", PATIENT_READ),
        r("GET", "/api/v1/patients/{id}/{resource}", PATIENT_READ),
        r("GET", "/audit/verify", AUDITOR_OK),
        r("GET", "/audit/export", AUDITOR_OK),
        r("GET", "/audit/patients/{id}/disclosures", AUDITOR_OK),
        r("GET", "/admin/break-glass", ADMIN_OK),
        r("GET", "/admin/keys", ADMIN_OK),
        r("POST", "/admin/keys", ADMIN_CREATED),
        r("POST", "/admin/keys/{key_id}/rotate", ADMIN_CREATED),
        r(
            "DELETE",
            "/admin/keys/{key_id}",
            same([401, 403, 403, 403, 403, 403, 403, 204]),
        ),
        r("GET", "/admin/users", ADMIN_OK),
        r("POST", "/admin/users", ADMIN_CREATED),
        r("POST", "/admin/users/{username}/disable", ADMIN_OK),
        r("POST", "/admin/users/{username}/enable", ADMIN_OK),
        r("POST", "/admin/users/{username}/unlock", ADMIN_OK),
        r("GET", "/admin/policies", ADMIN_OK),
        r("PUT", "/admin/policies", ADMIN_OK),
        // Clinical routes (src/serve/clinical.rs). One patient in the path is decided for
        // `run_model` like a PHI read: out of scope, and every role without PHI (analyst,
        // auditor, admin), answers exactly like a missing patient. The in-scope fixture
        // patient is an admitted simulator patient: every model but readmission has the data
        // it needs, so those in-scope answers are 200.
        r("GET", "/api/v1/care-gaps/patient/{id}", PATIENT_READ),
        // The in-scope cells close a real open gap of the patient (a different one per
        // principal, see `gap_for`); out of scope, the layer answers 404 before the gap id
        // is looked at.
        r(
            "POST",
            "/api/v1/care-gaps/patient/{id}/close/{gap_id}",
            PATIENT_READ,
        ),
        // The in-scope fixture patient is still admitted (chosen so for the census), and its
        // record has no discharged inpatient stay: the documented 422 `insufficient-data`
        // (its type is checked below), never a defaulted score. `serve_clinical.rs` checks a
        // 200 prediction on a patient with a complete stay.
        r("GET", "/api/v1/readmission/predict/{id}", INSUFFICIENT_DATA),
        r("GET", "/api/v1/summarize/patient/{id}", PATIENT_READ),
        r(
            "GET",
            "/api/v1/summarize/problem/{id}/{problem_code}",
            PATIENT_READ,
        ),
        r(
            "GET",
            "/api/v1/summarize/care-transition/{id}/{encounter_id}",
            PATIENT_READ,
        ),
        // Patients in the body (a valid body naming the in-scope or the out-of-scope
        // patient): the handler decides `run_model` per patient, with the same 404.
        r("POST", "/api/v1/care-gaps/cohort", PATIENT_READ),
        r("POST", "/api/v1/readmission/predict/batch", PATIENT_READ),
        r("POST", "/api/v1/summarize/custom", PATIENT_READ),
        // Catalogues and metrics: any principal, no PHI, no policy decision.
        r("GET", "/api/v1/care-gaps/guidelines", SIGNED_IN),
        r("GET", "/api/v1/care-gaps/metrics", SIGNED_IN),
        r("GET", "/api/v1/readmission/model/info", SIGNED_IN),
        r("GET", "/api/v1/readmission/model/features", SIGNED_IN),
        r("GET", "/api/v1/readmission/interventions", SIGNED_IN),
        r("GET", "/api/v1/readmission/metrics", SIGNED_IN),
        r("GET", "/api/v1/summarize/rag/info", SIGNED_IN),
        r("GET", "/api/v1/summarize/llm-controls", SIGNED_IN),
        r("GET", "/api/v1/summarize/metrics", SIGNED_IN),
        // Only clinicians may break the glass, for any patient; the others are refused.
        r(
            "POST",
            "/auth/break-glass",
            same([401, 201, 201, 403, 403, 403, 403, 403]),
        ),
    ]
}

/// Routes that name their patient in the request body (so they have an out-of-scope cell).
const BODY_NAMES_PATIENT: [&str; 4] = [
    "/auth/break-glass",
    "/api/v1/care-gaps/cohort",
    "/api/v1/readmission/predict/batch",
    "/api/v1/summarize/custom",
];

/// A valid request body for the rows that need one, naming `patient` where the route takes
/// patients in the body (so the cell tests authorization, not validation).
fn body_for(row: &Row, patient: &str, policies: &str) -> Option<serde_json::Value> {
    use serde_json::json;
    match (row.method, row.route) {
        ("POST", "/admin/keys") => Some(json!({"service": "table-made", "roles": ["service"]})),
        ("POST", "/admin/users") => Some(json!({"username": "carol", "password": PASSWORD})),
        ("PUT", "/admin/policies") => Some(json!({"text": policies})),
        ("POST", "/auth/break-glass") => {
            Some(json!({"patient_id": patient, "reason": "route table check"}))
        }
        ("POST", "/api/v1/care-gaps/cohort") => {
            Some(json!({"patient_ids": [patient], "min_priority": "low"}))
        }
        ("POST", "/api/v1/readmission/predict/batch") => Some(json!({"patient_ids": [patient]})),
        ("POST", "/api/v1/summarize/custom") => {
            Some(json!({"patient_id": patient, "summary_type": "comprehensive"}))
        }
        _ => None,
    }
}

/// `.route("…")` literals of every router source: all `.rs` files under `src/`, so a router
/// added in another file (as `serve/clinical.rs` is, merged into the gateway's) is read too.
/// A nested router (`.nest`) would prefix its literals, which this reading cannot follow, so
/// it is refused.
fn router_routes() -> BTreeSet<String> {
    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut out = BTreeSet::new();
    let mut routers = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains(".nest("),
            "{}: nested routers are not read by this check",
            file.display()
        );
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = rest[at + ".route(".len()..].trim_start();
            let literal = rest
                .strip_prefix('"')
                .and_then(|r| r.split_once('"'))
                .map(|(path, _)| path.to_string())
                .expect(".route( is followed by a string literal");
            out.insert(literal);
            routers.insert(file.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for expected in ["mod.rs", "clinical.rs"] {
        assert!(
            routers.contains(expected),
            "no .route(\"…\") literal read from {expected}: {routers:?}"
        );
    }
    out
}

fn key_of(method: &str, route: &str) -> (String, String) {
    (method.to_string(), route.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_by_every_principal_in_and_out_of_scope_answers_as_the_table_says() {
    let gw = start();
    let client = gw.client();

    // 1. The table, the router and the OpenAPI document list the same routes.
    let table = table();
    let table_routes: BTreeSet<(String, String)> =
        table.iter().map(|r| key_of(r.method, r.route)).collect();
    assert_eq!(table_routes.len(), table.len(), "a row is listed twice");
    let table_paths: BTreeSet<String> = table.iter().map(|r| r.route.to_string()).collect();
    assert_eq!(
        router_routes(),
        table_paths,
        "the .route(\"…\") literals of the router sources and this table differ"
    );
    let doc: serde_json::Value = client
        .get(format!("{}/openapi.json", gw.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.insert(key_of(&method.to_ascii_uppercase(), path));
            }
        }
    }
    assert_eq!(
        documented, table_routes,
        "the OpenAPI document and this table differ"
    );
    // Every route the table sends a body to describes its request body.
    for row in &table {
        if body_for(row, "P0A1B2C3D", "").is_some() {
            let op = &doc["paths"][row.route][row.method.to_ascii_lowercase()];
            assert!(
                op["requestBody"]["content"]["application/json"].is_object(),
                "{} {} has no JSON requestBody in the OpenAPI document",
                row.method,
                row.route
            );
        }
    }

    // 2. The principals.
    let (user, in_scope, out_of_scope) = gw.care_team_fixture().await;
    let access = gw.access().await;
    let member = format!("kipu-user-{user}");
    let mut tokens: Vec<Option<String>> = Vec::new();
    for who in WHO {
        let (service, role) = match who {
            Who::Anonymous | Who::Admin => {
                tokens.push(None);
                continue;
            }
            Who::Clinician => (member.clone(), access::Role::Clinician),
            Who::WrongScopeClinician => {
                ("kipu-user-no-team-0".to_string(), access::Role::Clinician)
            }
            Who::CareCoordinator => (member.clone(), access::Role::CareCoordinator),
            Who::Service => (member.clone(), access::Role::Service),
            Who::Analyst => ("analytics".to_string(), access::Role::Analyst),
            Who::Auditor => ("audit-office".to_string(), access::Role::Auditor),
        };
        let key = access
            .create_api_key("admin:test-setup", &service, &[role], None)
            .await
            .unwrap();
        let resp = client
            .post(format!("{}/auth/token", gw.public))
            .header("x-api-key", key.secret.expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{who:?} gets a token");
        let body: serde_json::Value = resp.json().await.unwrap();
        tokens.push(Some(body["access_token"].as_str().unwrap().to_string()));
    }
    let mut admins = Admins::new(access.clone());
    // What the admin rows act on.
    let to_revoke = access
        .create_api_key(
            "admin:test-setup",
            "to-revoke",
            &[access::Role::Service],
            None,
        )
        .await
        .unwrap()
        .id;
    let to_rotate = access
        .create_api_key(
            "admin:test-setup",
            "to-rotate",
            &[access::Role::Service],
            None,
        )
        .await
        .unwrap()
        .id;
    admins.create("bob").await;
    // The admin's token where no step-up is involved (non-admin routes spend no code).
    let (admin_token, _) = admins.create("table-admin-reader").await;
    tokens[7] = Some(admin_token);
    let policies = access.policies().await.unwrap().text;

    // The census holds in-scope patients only (before break-glass widens the scope below).
    let census = |w: usize| {
        client
            .get(format!("{}/api/v1/census", gw.public))
            .bearer_auth(tokens[w].clone().unwrap())
            .header("x-purpose-of-use", "TREAT")
            .header("x-access-reason", "bed board")
            .send()
    };
    let rows: serde_json::Value = census(1).await.unwrap().json().await.unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["casefile_id"] != out_of_scope.as_str() && r.get("ssn").is_none()),
        "{rows}"
    );
    let rows: serde_json::Value = census(2).await.unwrap().json().await.unwrap();
    assert_eq!(
        rows,
        serde_json::json!([]),
        "nobody in scope, nobody listed"
    );

    // Open care gaps of the in-scope patient, one per principal allowed to close one (a
    // closed gap cannot be closed twice: 409).
    let gaps: serde_json::Value = client
        .get(format!("{}/api/v1/care-gaps/patient/{in_scope}", gw.public))
        .bearer_auth(tokens[1].clone().unwrap())
        .header("x-purpose-of-use", "TREAT")
        .header("x-access-reason", "route table set-up")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gaps: Vec<String> = gaps["care_gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["gap_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        gaps.len() >= 3,
        "the in-scope fixture patient has {} open gaps, the table closes 3",
        gaps.len()
    );
    let gap_for = |who: Who| -> &str {
        match who {
            Who::CareCoordinator => &gaps[1],
            Who::Service => &gaps[2],
            // The clinician closes the first; the others are refused before the gap is read.
            _ => &gaps[0],
        }
    };

    // 3. Every cell.
    let mut failures = Vec::new();
    let mut cells = 0;
    for row in &table {
        let names_patient = row.route.contains("{id}") || BODY_NAMES_PATIENT.contains(&row.route);
        let scopes: &[usize] = if names_patient { &[0, 1] } else { &[0] };
        for (w, who) in WHO.iter().enumerate() {
            for &scope in scopes {
                let patient = if scope == 0 { &in_scope } else { &out_of_scope };
                let path = row
                    .route
                    .replace("{id}", patient)
                    .replace("{resource}", "diagnoses")
                    .replace(
                        "{key_id}",
                        if row.route.ends_with("/rotate") {
                            &to_rotate
                        } else {
                            &to_revoke
                        },
                    )
                    .replace("{username}", "bob")
                    .replace("{gap_id}", gap_for(*who))
                    // A valid ICD-10-CM code: a problem summary names the code asked for.
                    .replace("{problem_code}", "I10")
                    // Axum decodes the path parameter: the encounter id holds a '/'.
                    .replace("{encounter_id}", "kipu:admission%2Fcurrent");
                let path = if row.route.contains("/close/") {
                    format!("{path}?closure_reason=route%20table%20check")
                } else {
                    path
                };
                let method = reqwest::Method::from_bytes(row.method.as_bytes()).unwrap();
                let mut req = client
                    .request(method, format!("{}{path}", gw.public))
                    .header("x-purpose-of-use", "TREAT")
                    .header("x-access-reason", "route table check");
                let body = body_for(row, patient, &policies);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                match who {
                    Who::Anonymous => {}
                    Who::Admin if row.route.starts_with("/admin/") => {
                        let (token, code) = admins.next().await;
                        req = req.bearer_auth(token).header("x-totp-code", code);
                    }
                    _ => req = req.bearer_auth(tokens[w].as_ref().unwrap()),
                }
                let resp = req.send().await.unwrap();
                let got = resp.status().as_u16();
                let expected = row.expect[w][scope];
                cells += 1;
                // A refusal is a problem document; its type (a fixed slug) tells which refusal.
                let kind = if got >= 400 {
                    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
                    assert_eq!(
                        ct, "application/problem+json",
                        "{} {}",
                        row.method, row.route
                    );
                    let p: serde_json::Value = resp.json().await.unwrap();
                    p["type"].as_str().unwrap_or_default().to_string()
                } else {
                    String::new()
                };
                let scope_name = if scope == 0 {
                    "in scope"
                } else {
                    "out of scope"
                };
                if got != expected {
                    failures.push(format!(
                        "{} {} as {who:?} ({scope_name}): expected {expected}, got {got} {kind}",
                        row.method, row.route,
                    ));
                } else if got == 422 && kind != "urn:phigate:problem:insufficient-data" {
                    failures.push(format!(
                        "{} {} as {who:?} ({scope_name}): 422 {kind}, not insufficient-data",
                        row.method, row.route,
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // 4. Unknown routes: 401 without a credential (existence is not disclosed), 404 with one.
    for (w, who) in WHO.iter().enumerate() {
        let mut req = client.get(format!("{}/api/v1/no-such-route", gw.public));
        if let Some(t) = &tokens[w] {
            req = req.bearer_auth(t);
        }
        let expected = if *who == Who::Anonymous { 401 } else { 404 };
        assert_eq!(req.send().await.unwrap().status(), expected, "{who:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_on_an_admin_route_answers_405_without_spending_the_totp_code() {
    let gw = start();
    let client = gw.client();
    let access = gw.access().await;
    let admins = Admins::new(access);
    let (token, secret) = admins.create("root").await;
    let code = access::totp::totp(&secret, now(), 6, access::totp::TotpAlgorithm::Sha1);
    let wrong = client
        .put(format!("{}/admin/keys", gw.public))
        .bearer_auth(&token)
        .header("x-totp-code", &code)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    let right = client
        .get(format!("{}/admin/keys", gw.public))
        .bearer_auth(&token)
        .header("x-totp-code", &code)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200, "the code was not spent by the 405");
    // Now it is: the same code again is a replay, refused and audited.
    let replay = client
        .get(format!("{}/admin/keys", gw.public))
        .bearer_auth(&token)
        .header("x-totp-code", &code)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    let body: serde_json::Value = replay.json().await.unwrap();
    assert_eq!(
        body["type"],
        "urn:phigate:problem:insufficient_user_authentication"
    );
    let auth = gw.audit_events("authentication").await;
    assert!(auth.iter().any(|e| e["principal"] == "admin:root"
        && e["method"] == "password_totp"
        && e["failure_reason"] == "replay"));
}

/// An admin request with a fresh code, as `admin`.
async fn admin_call(
    gw: &Gateway,
    admins: &mut Admins,
    method: reqwest::Method,
    path: &str,
    body: Option<&[u8]>,
) -> reqwest::Response {
    let (token, code) = admins.next().await;
    let mut req = gw
        .client()
        .request(method, format!("{}{path}", gw.public))
        .bearer_auth(token)
        .header("x-totp-code", code);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_vec());
    }
    req.send().await.unwrap()
}

async fn problem(resp: reqwest::Response) -> serde_json::Value {
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_keys_users_and_policies_work_end_to_end_and_bad_input_changes_nothing() {
    use reqwest::Method;
    let gw = start();
    let access = gw.access().await;
    let mut admins = Admins::new(access.clone());
    let client = gw.client();

    // A key made through the API authenticates; revoked, it fails at once.
    let made = admin_call(
        &gw,
        &mut admins,
        Method::POST,
        "/admin/keys",
        Some(br#"{"service":"lab","roles":["service"]}"#),
    )
    .await;
    assert_eq!(made.status(), 201);
    let made: serde_json::Value = made.json().await.unwrap();
    let key = made["key"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    let exchange = |k: String| {
        client
            .post(format!("{}/auth/token", gw.public))
            .header("x-api-key", k)
            .send()
    };
    assert_eq!(exchange(key.clone()).await.unwrap().status(), 200);
    // Rotation: old and new work during the overlap.
    let rotated = admin_call(
        &gw,
        &mut admins,
        Method::POST,
        &format!("/admin/keys/{id}/rotate"),
        Some(br#"{"overlap_secs":3600}"#),
    )
    .await;
    assert_eq!(rotated.status(), 201);
    let rotated: serde_json::Value = rotated.json().await.unwrap();
    assert_eq!(rotated["replaces"], id.as_str());
    let new_key = rotated["key"].as_str().unwrap().to_string();
    assert_eq!(exchange(key.clone()).await.unwrap().status(), 200);
    assert_eq!(exchange(new_key.clone()).await.unwrap().status(), 200);
    let revoked = admin_call(
        &gw,
        &mut admins,
        Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(revoked.status(), 204);
    assert_eq!(
        exchange(key).await.unwrap().status(),
        401,
        "revocation is immediate"
    );
    assert_eq!(exchange(new_key).await.unwrap().status(), 200);
    let again = admin_call(
        &gw,
        &mut admins,
        Method::DELETE,
        &format!("/admin/keys/{id}"),
        None,
    )
    .await;
    assert_eq!(again.status(), 409);
    let listed: serde_json::Value = admin_call(&gw, &mut admins, Method::GET, "/admin/keys", None)
        .await
        .json()
        .await
        .unwrap();
    let keys_before = listed.as_array().unwrap().len();
    assert!(
        !listed.to_string().contains("phg_"),
        "no secret is ever listed"
    );

    // Bad input: a problem naming what is wrong, without echo, and no new key.
    let bad_bodies: [&[u8]; 5] = [
        br#"{"service":"lab","roles":["#,
        br#"{"service":"lab","roles":["CANARY-ROLE-Smith"]}"#,
        br#"{"service":"lab","roles":["admin"]}"#,
        br#"{"service":"Bad Name!","roles":["service"]}"#,
        br#"{"service":"lab","roles":["service"],"extra":1}"#,
    ];
    for body in bad_bodies {
        let resp = admin_call(&gw, &mut admins, Method::POST, "/admin/keys", Some(body)).await;
        assert_eq!(resp.status(), 400, "{}", String::from_utf8_lossy(body));
        let p = problem(resp).await;
        assert!(!p.to_string().contains("CANARY"), "{p}");
        assert!(!p.to_string().contains("Bad Name"), "{p}");
    }
    let listed: serde_json::Value = admin_call(&gw, &mut admins, Method::GET, "/admin/keys", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), keys_before);
    let unknown = admin_call(
        &gw,
        &mut admins,
        Method::DELETE,
        "/admin/keys/0123456789abcdef",
        None,
    )
    .await;
    assert_eq!(unknown.status(), 404);

    // Users: create, list, disable (the user's own step-up then fails), enable, unlock.
    let created = admin_call(
        &gw,
        &mut admins,
        Method::POST,
        "/admin/users",
        Some(format!(r#"{{"username":"dora","password":"{PASSWORD}"}}"#).as_bytes()),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    assert_eq!(created["principal"], "admin:dora");
    let dora_secret =
        access::totp::base32_decode(created["totp_secret"].as_str().unwrap()).unwrap();
    let dup = admin_call(
        &gw,
        &mut admins,
        Method::POST,
        "/admin/users",
        Some(format!(r#"{{"username":"dora","password":"{PASSWORD}"}}"#).as_bytes()),
    )
    .await;
    assert_eq!(dup.status(), 409);
    let short = admin_call(
        &gw,
        &mut admins,
        Method::POST,
        "/admin/users",
        Some(br#"{"username":"eve","password":"short"}"#),
    )
    .await;
    assert_eq!(short.status(), 400);
    let disabled = admin_call(
        &gw,
        &mut admins,
        Method::POST,
        "/admin/users/dora/disable",
        None,
    )
    .await;
    assert_eq!(disabled.status(), 200);
    let disabled: serde_json::Value = disabled.json().await.unwrap();
    assert_eq!(disabled["disabled"], true);
    let login = client
        .post(format!("{}/auth/token", gw.public))
        .json(
            &serde_json::json!({"username": "dora", "password": PASSWORD,
            "totp": access::totp::totp(&dora_secret, now(), 6, access::totp::TotpAlgorithm::Sha1)}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401, "a disabled admin cannot sign in");
    assert_eq!(
        admin_call(
            &gw,
            &mut admins,
            Method::POST,
            "/admin/users/dora/disable",
            None
        )
        .await
        .status(),
        409
    );
    assert_eq!(
        admin_call(
            &gw,
            &mut admins,
            Method::POST,
            "/admin/users/nobody/enable",
            None
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        admin_call(
            &gw,
            &mut admins,
            Method::POST,
            "/admin/users/dora/enable",
            None
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        admin_call(
            &gw,
            &mut admins,
            Method::POST,
            "/admin/users/dora/unlock",
            None
        )
        .await
        .status(),
        200
    );
    let users: serde_json::Value = admin_call(&gw, &mut admins, Method::GET, "/admin/users", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "dora" && u["disabled"] == false)
    );
    assert!(!users.to_string().contains("argon2"), "no password hashes");

    // Policies: GET gives the text and its SHA-256; an invalid set is 422 with the
    // validator's message and the old set stays; so is a set that drops the admin's own
    // permission to manage policies; a valid set is a config_change with before and after.
    let before: serde_json::Value =
        admin_call(&gw, &mut admins, Method::GET, "/admin/policies", None)
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(before["text"], access::DEFAULT_POLICIES);
    assert_eq!(before["sha256"].as_str().unwrap().len(), 64);
    let invalid = serde_json::to_vec(&serde_json::json!({
        "text": "@id(\"x\") permit (principal, action == Action::\"fly\", resource);"
    }))
    .unwrap();
    let refused = admin_call(
        &gw,
        &mut admins,
        Method::PUT,
        "/admin/policies",
        Some(&invalid),
    )
    .await;
    assert_eq!(refused.status(), 422);
    let p = problem(refused).await;
    assert!(
        p["detail"].as_str().unwrap().contains("fly"),
        "the validator's message: {p}"
    );
    let lockout = serde_json::to_vec(&serde_json::json!({
        "text": "@id(\"auditors\")\npermit (principal in Role::\"auditor\", action == Action::\"read_audit\", resource is AuditLog);\n"
    }))
    .unwrap();
    let refused = admin_call(
        &gw,
        &mut admins,
        Method::PUT,
        "/admin/policies",
        Some(&lockout),
    )
    .await;
    assert_eq!(refused.status(), 422);
    assert!(
        problem(refused).await["detail"]
            .as_str()
            .unwrap()
            .contains("manage_policies")
    );
    let malformed = admin_call(
        &gw,
        &mut admins,
        Method::PUT,
        "/admin/policies",
        Some(b"{not json"),
    )
    .await;
    assert_eq!(malformed.status(), 400);
    let unchanged: serde_json::Value =
        admin_call(&gw, &mut admins, Method::GET, "/admin/policies", None)
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(unchanged["sha256"], before["sha256"]);
    assert!(
        gw.audit_events("config_change")
            .await
            .iter()
            .all(|e| e["setting"] != "access.policies")
    );
    let text = format!(
        "{}\n@id(\"coordinators-break-glass\")\npermit (principal in Role::\"care_coordinator\", action == Action::\"break_glass\", resource is Patient);\n",
        access::DEFAULT_POLICIES
    );
    let body = serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap();
    let put = admin_call(
        &gw,
        &mut admins,
        Method::PUT,
        "/admin/policies",
        Some(&body),
    )
    .await;
    assert_eq!(put.status(), 200);
    let after: serde_json::Value = put.json().await.unwrap();
    assert_ne!(after["sha256"], before["sha256"]);
    let changes: Vec<serde_json::Value> = gw
        .audit_events("config_change")
        .await
        .into_iter()
        .filter(|e| e["setting"] == "access.policies")
        .collect();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["before"]["sha256"], before["sha256"]);
    assert_eq!(changes[0]["after"]["sha256"], after["sha256"]);

    // Every admin call was audited: each request id has its step-up authentication event.
    let step_ups = gw
        .audit_events("authentication")
        .await
        .into_iter()
        .filter(|e| e["method"] == "password_totp" && e["outcome"] == "success")
        .count();
    assert!(step_ups >= 25, "{step_ups} step-ups recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_export_verifies_offline_and_is_itself_audited_as_a_compliance_phi_access() {
    let gw = start();
    let (_, patient, _) = gw.care_team_fixture().await;
    let access = gw.access().await;
    let key = access
        .create_api_key(
            "admin:test-setup",
            "audit-office",
            &[access::Role::Auditor],
            None,
        )
        .await
        .unwrap();
    let client = gw.client();
    let auditor = |path: String| {
        client
            .get(format!("{}{path}", gw.public))
            .header("x-api-key", key.secret.expose_secret())
            .send()
    };
    let verify = auditor("/audit/verify".into()).await.unwrap();
    assert_eq!(verify.status(), 200);
    let report: serde_json::Value = verify.json().await.unwrap();
    assert_eq!(report["intact"], true);

    let export = auditor("/audit/export?kind=authentication".into())
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    assert_eq!(export.headers()["content-type"], "application/x-ndjson");
    let rid = export.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = export.bytes().await.unwrap();
    let lines: Vec<&str> = std::str::from_utf8(&body).unwrap().lines().collect();
    assert!(lines[0].contains("\"checkpoint\""));
    assert!(
        lines.len() > 1,
        "the auditor's own authentications are in it"
    );
    let file = gw.dir.as_path().join("export.jsonl");
    std::fs::write(&file, &body).unwrap();
    let out = phigate(gw.dir.as_path(), "audit", &[])
        .arg("verify-export")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("export verified"));

    let events = gw.audit_events("phi_access").await;
    let mine: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["request_id"] == rid.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{events:?}");
    assert_eq!(mine[0]["purpose"], "HCOMPL");
    assert_eq!(mine[0]["action"], "export");
    assert_eq!(mine[0]["principal"], "service:audit-office");

    for bad in [
        "/audit/export?since=yesterday",
        "/audit/export?kind=CANARY-Smith",
        "/audit/export?patient=1",
    ] {
        let resp = auditor(bad.into()).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        assert!(!problem(resp).await.to_string().contains("CANARY"));
    }

    let csv = auditor(format!("/audit/patients/{patient}/disclosures?format=csv"))
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.text()
            .await
            .unwrap()
            .starts_with("date,recipient,purpose,description,audit_index")
    );
    let json = auditor(format!("/audit/patients/{patient}/disclosures"))
        .await
        .unwrap();
    assert_eq!(json.status(), 200);
    assert!(json.json::<serde_json::Value>().await.unwrap().is_array());
    let xml = auditor(format!("/audit/patients/{patient}/disclosures?format=xml"))
        .await
        .unwrap();
    assert_eq!(xml.status(), 400);
    let reads = gw.audit_events("phi_access").await;
    assert!(
        reads
            .iter()
            .any(|e| e["resource_kind"] == "disclosures" && e["purpose"] == "HCOMPL"),
        "the accounting read is audited"
    );
    assert!(
        !reads.iter().any(|e| e.to_string().contains(&patient)),
        "patients only as keyed hashes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_step_up_codes_count_toward_the_lockout_and_another_admin_can_unlock() {
    use reqwest::Method;
    let gw = start();
    let access = gw.access().await;
    let mut admins = Admins::new(access.clone());
    let (token, secret) = admins.create("mallory").await;
    let client = gw.client();
    let keys = |code: String| {
        client
            .get(format!("{}/admin/keys", gw.public))
            .bearer_auth(&token)
            .header("x-totp-code", code)
            .send()
    };
    for _ in 0..5 {
        let resp = keys("000000".into()).await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(
            problem(resp).await["type"],
            "urn:phigate:problem:insufficient_user_authentication"
        );
    }
    let good = access::totp::totp(&secret, now(), 6, access::totp::TotpAlgorithm::Sha1);
    let locked = keys(good.clone()).await.unwrap();
    assert_eq!(locked.status(), 429, "locked after five bad codes");
    let unlock = admin_call(
        &gw,
        &mut admins,
        Method::POST,
        "/admin/users/mallory/unlock",
        None,
    )
    .await;
    assert_eq!(unlock.status(), 200);
    assert_eq!(keys(good).await.unwrap().status(), 200, "unlocked");
    let failures = gw
        .audit_events("authentication")
        .await
        .into_iter()
        .filter(|e| e["principal"] == "admin:mallory" && e["outcome"] == "failure")
        .count();
    assert!(
        failures >= 6,
        "every refused step-up is audited ({failures})"
    );
}
