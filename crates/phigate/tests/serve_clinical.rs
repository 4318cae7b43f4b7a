//! The clinical endpoints (CoCo's paths and shapes) end to end: the built binary in its own
//! process, real TLS, real HTTP, the store synced from the simulator plus hand-built patients
//! written into the same store, and an in-test stand-in for the LLM provider (a real provider
//! cannot be reached from here).

mod gateway;

use std::sync::{Arc, Mutex};

use gateway::Gateway;

use serde_json::{Value, json};

const BASE_CONFIG: &str = "[server]\nlisten = \"127.0.0.1:0\"\nmtls_listen = \"127.0.0.1:0\"\n[rate_limit]\nauth_per_minute = 600\nauth_burst = 100\nper_principal_burst = 1000\nper_address_burst = 1000\n";

fn start(extra_config: &str, env: &[(&str, &str)]) -> Gateway {
    Gateway::start_in(
        tempfile::tempdir().unwrap(),
        &format!("{BASE_CONFIG}{extra_config}"),
        env,
    )
}

/// What the clinical tests need beyond the shared harness.
impl Gateway {
    /// A bearer token for `service:<service>` with `role`.
    async fn token(&self, service: &str, role: access::Role) -> String {
        let access = self.access().await;
        let k = access
            .create_api_key("admin:test", service, &[role], None)
            .await
            .unwrap();
        use secrecy::ExposeSecret as _;
        let resp = self
            .client()
            .post(format!("{}/auth/token", self.public))
            .header("x-api-key", k.secret.expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }
}

/// The Kipu user of the hand-built patients' care team (`service:kipu-user-9001`).
const USER: &str = "9001";

fn day(offset: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(offset)).to_string()
}

/// Writes a hand-built patient into the store the way sync does: an emergency withdrawal-
/// management (ASAM 3.7-WM, inpatient) stay of 5 days that ended 5 days ago, heart failure and
/// type 2 diabetes coded during the stay, one set of vitals, on `USER`'s care team.
async fn seed_patient(gw: &Gateway, id: &str, dob: &str, systolic: u32) {
    let store = gw.store().await;
    let patient = json!({
        "casefile_id": id, "first_name": "Zebulon", "last_name": "Quarrington", "dob": dob,
        "gender": "Female", "admission_date": day(-10), "discharge_date": day(-5),
        "level_of_care": "ASAM 3.7-WM", "program": "Detox"
    });
    let mut admission = patient.clone();
    admission["admission_type"] = json!("emergency");
    let put = |kind: &'static str, rid: String, v: Value| {
        let store = store.clone();
        let id = id.to_string();
        async move {
            store
                .put_with_ttl(
                    kind,
                    &rid,
                    Some(&id),
                    &serde_json::to_vec(&v).unwrap(),
                    None,
                )
                .await
                .unwrap();
        }
    };
    put("ehr.patient", id.to_string(), patient).await;
    put("ehr.admission", id.to_string(), admission).await;
    put(
        "ehr.care_team",
        id.to_string(),
        json!({"patient_id": id, "care_team": [{"id": 1, "patient_id": id, "user_id": 9001, "end_date": null}]}),
    )
    .await;
    for (n, code, desc, primary) in [
        (1, "F10.239", "Alcohol dependence with withdrawal", true),
        (2, "I50.9", "Heart failure, unspecified", false),
        (
            3,
            "E11.9",
            "Type 2 diabetes mellitus without complications",
            false,
        ),
    ] {
        put(
            "ehr.diagnosis",
            format!("{id}-dx{n}"),
            json!({"id": format!("{id}-dx{n}"), "patient_id": id, "code": code, "description": desc,
                   "diagnosis_date": day(-9), "status": "active", "is_primary": primary}),
        )
        .await;
    }
    put(
        "ehr.vital_sign",
        format!("{id}-v1"),
        json!({"id": format!("{id}-v1"), "patient_id": id, "systolic_blood_pressure": systolic,
               "diastolic_blood_pressure": 80, "heart_rate": 72, "recorded_at": format!("{}T09:00:00-05:00", day(-6))}),
    )
    .await;
}

const PURPOSE: (&str, &str) = ("x-purpose-of-use", "TREAT");
const REASON: (&str, &str) = ("x-access-reason", "discharge planning");

struct Api<'a> {
    gw: &'a Gateway,
    client: reqwest::Client,
    token: String,
}

impl Api<'_> {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.gw.public))
            .bearer_auth(&self.token)
            .header(PURPOSE.0, PURPOSE.1)
            .header(REASON.0, REASON.1)
            .send()
            .await
            .unwrap()
    }
    async fn post(&self, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut r = self
            .client
            .post(format!("{}{path}", self.gw.public))
            .bearer_auth(&self.token)
            .header(PURPOSE.0, PURPOSE.1)
            .header(REASON.0, REASON.1);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }
    async fn ok(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }
}

async fn clinician(gw: &Gateway) -> Api<'_> {
    Api {
        gw,
        client: gw.client(),
        token: gw
            .token(&format!("kipu-user-{USER}"), access::Role::Clinician)
            .await,
    }
}

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_date(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
}

fn is_datetime(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok())
}

fn unit(v: &Value) -> bool {
    v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x))
}

fn check_trail(t: &Value, operation: &str) {
    let e = &t["entries"][0];
    assert!(e["id"].as_str().is_some_and(|s| s.len() == 36));
    assert!(is_datetime(&e["timestamp"]));
    assert_eq!(e["operation"], operation);
    assert!(e["details"].is_object());
    assert!(is_hex(e["hash"].as_str().unwrap(), 16));
    assert!(is_hex(t["hash"].as_str().unwrap(), 16));
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
    )
}

fn without_trail(v: &Value) -> Vec<u8> {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove("audit_trail");
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn a_coco_client_calls_every_clinical_endpoint_and_gets_cocos_shapes() {
    let gw = start("", &[]);
    seed_patient(&gw, "T-CLIN-1", "1950-03-02", 128).await;
    let api = clinician(&gw).await;

    // Care gaps for one patient.
    let cg = api.ok("/api/v1/care-gaps/patient/T-CLIN-1").await;
    assert_eq!(cg["patient_id"], "T-CLIN-1");
    assert!(is_datetime(&cg["analysis_timestamp"]));
    let gaps = cg["care_gaps"].as_array().unwrap();
    assert_eq!(cg["total_gaps"].as_u64().unwrap() as usize, gaps.len());
    assert!(!gaps.is_empty(), "a 76-year-old never screened has gaps");
    assert!(unit(&cg["risk_score"]));
    for g in gaps {
        assert!(g["gap_id"].as_str().unwrap().starts_with("gap-"));
        assert!(is_hex(&g["gap_id"].as_str().unwrap()[4..], 8));
        assert!(
            [
                "screening",
                "vaccination",
                "lab_test",
                "medication",
                "follow_up"
            ]
            .contains(&g["type"].as_str().unwrap())
        );
        assert!(["critical", "high", "medium", "low"].contains(&g["priority"].as_str().unwrap()));
        for k in ["name", "description", "guideline_source"] {
            assert!(!g[k].as_str().unwrap().is_empty(), "{k}");
        }
        assert!(is_date(&g["due_date"]));
        assert!(g["icd10_codes"].is_array() && g["cpt_codes"].is_array());
        assert!(unit(&g["estimated_impact"]));
        assert_eq!(g["status"], "open");
    }
    assert!(
        gaps.iter()
            .any(|g| g["guideline_source"].as_str().unwrap().contains("CMS127")),
        "pneumococcal vaccination at 76, never vaccinated: {gaps:?}"
    );
    assert!(cg["recommendations"].is_array());
    check_trail(&cg["audit_trail"], "detect_care_gaps");

    // The inference event's output hash is the SHA-256 of the body without the trail.
    let inf: Vec<Value> = gw
        .audit_events("model_inference")
        .await
        .into_iter()
        .filter(|e| e["model_id"] == "care-gaps-ecqm")
        .collect();
    assert_eq!(inf.len(), 1);
    assert_eq!(
        inf[0]["output_sha256"],
        sha256(&without_trail(&cg)).as_str()
    );
    assert!(
        inf[0]["input_sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(inf[0]["cost_micro_usd"], 1800);
    assert!(!inf[0].to_string().contains("T-CLIN-1"));
    let again = api.ok("/api/v1/care-gaps/patient/T-CLIN-1").await;
    assert_eq!(again["care_gaps"], cg["care_gaps"], "deterministic");
    let inf2: Vec<Value> = gw
        .audit_events("model_inference")
        .await
        .into_iter()
        .filter(|e| e["model_id"] == "care-gaps-ecqm")
        .collect();
    assert_eq!(
        inf2[1]["input_sha256"], inf2[0]["input_sha256"],
        "the same record and parameters give the same input hash"
    );

    // Cohort (duplicates count, CoCo's semantics).
    let r = api
        .post(
            "/api/v1/care-gaps/cohort",
            Some(json!({"patient_ids": ["T-CLIN-1", "T-CLIN-1"], "min_priority": "low"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let co: Value = r.json().await.unwrap();
    assert_eq!(co["total_patients_analyzed"], 2);
    assert_eq!(co["patients_with_gaps"], 2);
    assert_eq!(
        co["total_gaps_identified"].as_u64().unwrap() as usize,
        2 * gaps.len()
    );
    assert!(co["gaps_by_type"].is_object() && co["gaps_by_priority"].is_object());
    assert!(unit(&co["average_risk_score"]));

    let gl = api.ok("/api/v1/care-gaps/guidelines").await;
    for g in gl["guidelines"].as_array().unwrap() {
        for k in ["id", "name", "version", "url"] {
            assert!(g[k].is_string(), "{k}");
        }
        assert!(g["gap_types"].is_array());
    }
    let m = api.ok("/api/v1/care-gaps/metrics").await;
    assert_eq!(
        m["metrics"]["computations"], 3,
        "measured, not constants: two calls and the cohort's one distinct patient"
    );
    assert_eq!(m["model_info"]["model_id"], "care-gaps-ecqm");

    // Readmission: LACE by hand. L: 5 days → 4; A: emergency → 3; C: heart failure (1) +
    // diabetes without complications (1) = Charlson 2 → 2; E: no ED visit → 0. LACE 9,
    // medium (5–9). HOSPITAL: no hemoglobin or sodium in a Kipu record → not computed.
    let p = api.ok("/api/v1/readmission/predict/T-CLIN-1").await;
    assert_eq!(p["patient_id"], "T-CLIN-1");
    assert_eq!(p["encounter_id"], "kipu:admission/current");
    assert!(is_datetime(&p["prediction_timestamp"]));
    assert!((p["risk_score"].as_f64().unwrap() - 9.0 / 19.0).abs() < 1e-9);
    assert_eq!(p["risk_tier"], "medium");
    assert!(p["confidence_interval"].is_null(), "no published interval");
    let factors: Vec<(&str, f64)> = p["contributing_factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["factor_name"].as_str().unwrap(),
                f["weight"].as_f64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("lace_length_of_stay", 4.0 / 19.0),
        ("lace_acuity", 3.0 / 19.0),
        ("lace_charlson_comorbidity_index", 2.0 / 19.0),
    ];
    assert_eq!(factors.len(), expected.len(), "{factors:?}");
    for ((name, w), (en, ew)) in factors.iter().zip(expected) {
        assert_eq!(*name, en);
        assert!((w - ew).abs() < 1e-9, "{name}: {w}");
    }
    for f in p["contributing_factors"].as_array().unwrap() {
        assert!(
            ["clinical", "social", "utilization"].contains(&f["factor_category"].as_str().unwrap())
        );
        assert!(unit(&f["weight"]) && f["value"].is_string() && f["is_modifiable"].is_boolean());
    }
    for i in p["recommended_interventions"].as_array().unwrap() {
        for k in [
            "intervention_id",
            "name",
            "description",
            "evidence_level",
            "implementation_difficulty",
        ] {
            assert!(i[k].is_string(), "{k}");
        }
        assert!(unit(&i["estimated_risk_reduction"]) && i["target_factors"].is_array());
    }
    assert_eq!(p["model_governance"]["model_id"], "lace");
    check_trail(&p["audit_trail"], "predict_readmission");

    let r = api
        .post(
            "/api/v1/readmission/predict/batch",
            Some(json!({"patient_ids": ["T-CLIN-1"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["total_patients"], 1);
    assert_eq!(b["predictions"][0]["risk_tier"], "medium");
    let dist = b["summary"]["risk_tier_distribution"].as_object().unwrap();
    assert_eq!(dist.len(), 4);
    assert_eq!(dist["medium"], 1);
    assert_eq!(b["summary"]["high_risk_count"], 0);
    assert!(b["processing_time_ms"].as_f64().unwrap() >= 0.0);

    let info = api.ok("/api/v1/readmission/model/info").await;
    assert_eq!(info["model"]["id"], "readmission-lace-hospital");
    assert_eq!(
        api.ok("/api/v1/readmission/model/features").await["total_features"],
        11
    );
    assert!(
        !api.ok("/api/v1/readmission/interventions").await["interventions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let rm = api.ok("/api/v1/readmission/metrics").await;
    assert_eq!(rm["metrics"]["computations"], 2);

    // Summaries: every citation resolves to a record of this patient that holds the fact.
    let s = api
        .ok("/api/v1/summarize/patient/T-CLIN-1?time_range=last_month")
        .await;
    assert_eq!(s["patient_id"], "T-CLIN-1");
    assert_eq!(s["summary_type"], "comprehensive");
    assert_eq!(s["time_range"], "last_month");
    assert!(is_datetime(&s["generated_at"]));
    let ids: Vec<&str> = s["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source_id"].as_str().unwrap())
        .collect();
    let problems = s["active_problems"].as_array().unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    for (code, rid) in [
        ("F10.239", "T-CLIN-1-dx1"),
        ("I50.9", "T-CLIN-1-dx2"),
        ("E11.9", "T-CLIN-1-dx3"),
    ] {
        let line = s["summary"]
            .as_str()
            .unwrap()
            .lines()
            .find(|l| l.contains(code))
            .unwrap_or_else(|| panic!("{code} in the summary"));
        let cited = format!("kipu:diagnosis_history/{rid}");
        assert!(line.contains(&cited), "{line} cites {cited}");
        assert!(ids.contains(&cited.as_str()));
    }
    let bp = s["summary"]
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.contains("128/80"))
        .expect("the blood pressure is stated");
    assert!(bp.contains("kipu:vital_signs/T-CLIN-1-v1"), "{bp}");
    for line in s["summary"].as_str().unwrap().lines() {
        assert!(line.ends_with(']'), "every statement cites: {line}");
    }
    for f in s["key_findings"].as_array().unwrap() {
        for c in f["citations"].as_array().unwrap() {
            assert!(
                ids.contains(&c.as_str().unwrap()),
                "finding cites a listed source"
            );
        }
    }
    for c in s["citations"].as_array().unwrap() {
        assert!(is_datetime(&c["source_date"]) && unit(&c["relevance_score"]));
        assert!(c["source_type"].is_string() && c["snippet"].is_string());
    }
    assert_eq!(s["phi_audit"]["scan_performed"], true);
    assert!(s["phi_audit"]["audit_id"].as_str().unwrap().len() == 36);
    assert!(s["rag_metrics"]["documents_retrieved"].as_u64().unwrap() >= 5);
    check_trail(&s["audit_trail"], "generate_clinical_summary");

    let r = api
        .post(
            "/api/v1/summarize/custom",
            Some(json!({"patient_id": "T-CLIN-1", "summary_type": "medication", "time_range": "all_time"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let cu: Value = r.json().await.unwrap();
    assert_eq!(cu["summary_type"], "medication");
    check_trail(&cu["audit_trail"], "generate_custom_summary");
    let pr = api.ok("/api/v1/summarize/problem/T-CLIN-1/I50.9").await;
    assert_eq!(pr["summary_type"], "problem_focused");
    assert_eq!(pr["active_problems"].as_array().unwrap().len(), 1, "{pr}");
    let ct = api
        .ok("/api/v1/summarize/care-transition/T-CLIN-1/kipu:admission%2Fcurrent?recipient_type=snf")
        .await;
    assert_eq!(ct["summary_type"], "care_transition");
    assert_eq!(ct["time_range"], "last_month");
    assert_eq!(
        api.ok("/api/v1/summarize/rag/info").await["governance"]["citation_verification"],
        true
    );
    assert_eq!(
        api.ok("/api/v1/summarize/llm-controls").await["llm_status"],
        "disabled"
    );
    assert_eq!(
        api.ok("/api/v1/summarize/metrics").await["metrics"]["computations"],
        4
    );

    // Every call was a PHI access with purpose and reason; no patient id anywhere in the log.
    let phi: Vec<Value> = gw
        .audit_events("phi_access")
        .await
        .into_iter()
        .filter(|e| e["principal"] == format!("service:kipu-user-{USER}").as_str())
        .collect();
    let kinds: std::collections::BTreeSet<&str> = phi
        .iter()
        .map(|e| e["resource_kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        vec!["care_gaps", "readmission", "summary"]
    );
    for e in &phi {
        assert_eq!(e["purpose"], "TREAT");
        assert!(e["reason"].is_string());
        assert!(!e.to_string().contains("T-CLIN-1"));
    }
    let models: std::collections::BTreeSet<String> = gw
        .audit_events("model_inference")
        .await
        .iter()
        .map(|e| e["model_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        models.into_iter().collect::<Vec<_>>(),
        vec![
            "care-gaps-ecqm",
            "readmission-lace-hospital",
            "summary-extractive"
        ]
    );

    // Prometheus: measured, labelled by model id, no patient id.
    let text = gw
        .client()
        .get(format!("{}/metrics", gw.public))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "phigate_clinical_inferences_total{model_id=\"care-gaps-ecqm\",outcome=\"ok\"} 3"
        ),
        "two calls and one cohort patient: {text}"
    );
    assert!(!text.contains("T-CLIN-1"));

    // Nothing about the patient reached the gateway's logs.
    let logs = gw.logs();
    assert!(!logs.is_empty(), "the gateway logs at info level");
    for canary in ["T-CLIN-1", "Zebulon", "Quarrington", "F10.239", "128/80"] {
        assert!(!logs.contains(canary), "{canary} in the logs");
    }

    // CoCo's `X-Cost-USD` on every clinical response (errors too): what the request charged
    // to the cost guard, CoCo's per-operation figures with four decimals.
    let cost = |r: &reqwest::Response| {
        r.headers()
            .get("x-cost-usd")
            .map(|v| v.to_str().unwrap().to_string())
    };
    for (path, status, expected) in [
        ("/api/v1/care-gaps/patient/T-CLIN-1", 200, "0.0018"),
        ("/api/v1/readmission/predict/T-CLIN-1", 200, "0.0031"),
        ("/api/v1/summarize/patient/T-CLIN-1", 200, "0.0340"),
        ("/api/v1/care-gaps/guidelines", 200, "0.0000"),
        ("/api/v1/readmission/metrics", 200, "0.0000"),
        ("/api/v1/care-gaps/patient/NO-SUCH-1", 404, "0.0000"),
        (
            "/api/v1/summarize/patient/T-CLIN-1?time_range=forever",
            422,
            "0.0000",
        ),
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status(), status, "GET {path}");
        assert_eq!(cost(&r).as_deref(), Some(expected), "GET {path}");
    }
    let r = api
        .post(
            "/api/v1/care-gaps/cohort",
            Some(json!({"patient_ids": ["T-CLIN-1", "T-CLIN-1", "T-CLIN-1"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(cost(&r).as_deref(), Some("0.0054"), "three ids at $0.0018");
    let r = api
        .post(
            "/api/v1/readmission/predict/batch",
            Some(json!({"patient_ids": ["T-CLIN-1", "T-CLIN-1"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(cost(&r).as_deref(), Some("0.0050"), "two ids at $0.0025");
    let anonymous = gw
        .client()
        .get(format!("{}/api/v1/care-gaps/patient/T-CLIN-1", gw.public))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(cost(&anonymous).as_deref(), Some("0.0000"));
    let patients = api.get("/api/v1/patients").await;
    assert_eq!(cost(&patients), None, "only clinical paths carry it");
}

#[tokio::test]
async fn out_of_scope_is_404_like_missing_and_roles_purpose_and_ids_are_enforced() {
    let gw = start("", &[]);
    seed_patient(&gw, "T-CLIN-1", "1950-03-02", 128).await;
    let api = clinician(&gw).await;
    // A synced simulator patient is not on user 9001's care team.
    let other = {
        let store = gw.store().await;
        let r = store.list_kind("ehr.patient").await.unwrap();
        r.into_iter()
            .map(|r| r.id.expose().clone())
            .find(|id| id != "T-CLIN-1")
            .unwrap()
    };
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("request_id");
        v
    };
    for path in [
        "/api/v1/care-gaps/patient/{}",
        "/api/v1/readmission/predict/{}",
        "/api/v1/summarize/patient/{}",
    ] {
        let cross = api.get(&path.replace("{}", &other)).await;
        assert_eq!(cross.status(), 404, "{path}");
        let missing = api.get(&path.replace("{}", "NO-SUCH-PATIENT")).await;
        assert_eq!(missing.status(), 404);
        assert_eq!(
            strip(cross.json().await.unwrap()),
            strip(missing.json().await.unwrap()),
            "out of scope looks exactly like missing"
        );
    }
    let r = api
        .post(
            "/api/v1/care-gaps/cohort",
            Some(json!({"patient_ids": ["T-CLIN-1", other]})),
        )
        .await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("patient_ids[1]"));
    assert!(!body.to_string().contains(&other));
    let denied = gw.audit_events("policy_denied").await;
    assert!(denied.len() >= 4, "each refusal is audited: {denied:?}");

    // Malformed ids: 400 without echo.
    let r = api.get("/api/v1/care-gaps/patient/a%20b%3Cscript%3E").await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "urn:phigate:problem:invalid-patient-id");
    assert!(!body.to_string().contains("script"));
    let r = api
        .post(
            "/api/v1/readmission/predict/batch",
            Some(json!({"patient_ids": ["ok", "bad id"]})),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("patient_ids[1]"));

    // Purpose and reason are required; no token is 401.
    let r = api
        .client
        .get(format!("{}/api/v1/care-gaps/patient/T-CLIN-1", gw.public))
        .bearer_auth(&api.token)
        .header(PURPOSE.0, PURPOSE.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("X-Access-Reason"));
    let r = api
        .client
        .get(format!("{}/api/v1/care-gaps/guidelines", gw.public))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // An analyst gets no model output on PHI, even for a patient that exists.
    let analyst = Api {
        gw: &gw,
        client: gw.client(),
        token: gw.token("reports", access::Role::Analyst).await,
    };
    let r = analyst.get("/api/v1/care-gaps/patient/T-CLIN-1").await;
    assert!(matches!(r.status().as_u16(), 403 | 404), "{}", r.status());
    let r = analyst
        .post(
            "/api/v1/summarize/custom",
            Some(json!({"patient_id": "T-CLIN-1"})),
        )
        .await;
    assert!(matches!(r.status().as_u16(), 403 | 404), "{}", r.status());
    assert_eq!(
        analyst.get("/api/v1/care-gaps/guidelines").await.status(),
        200,
        "catalogues hold no PHI"
    );
}

#[tokio::test]
async fn a_gap_closure_is_stored_audited_and_shows_as_closed() {
    let gw = start("", &[]);
    seed_patient(&gw, "T-CLIN-1", "1950-03-02", 128).await;
    let api = clinician(&gw).await;
    let before = api.ok("/api/v1/care-gaps/patient/T-CLIN-1").await;
    let gap = before["care_gaps"][0]["gap_id"]
        .as_str()
        .unwrap()
        .to_string();
    let n = before["total_gaps"].as_u64().unwrap();

    let r = api
        .post(
            &format!("/api/v1/care-gaps/patient/T-CLIN-1/close/{gap}?closure_reason=done%20at%20visit&closure_date={}", day(-1)),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(c["status"], "closed");
    assert_eq!(c["gap_id"], gap.as_str());
    assert_eq!(c["patient_id"], "T-CLIN-1");
    assert_eq!(c["closure_date"], day(-1).as_str());
    assert_eq!(c["closure_reason"], "done at visit");
    assert!(is_hex(c["audit_hash"].as_str().unwrap(), 16));

    let after = api.ok("/api/v1/care-gaps/patient/T-CLIN-1").await;
    assert_eq!(after["total_gaps"].as_u64().unwrap(), n - 1);
    assert!(
        after["care_gaps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["gap_id"] != gap.as_str())
    );
    let all = api
        .ok("/api/v1/care-gaps/patient/T-CLIN-1?include_closed=true")
        .await;
    let closed = all["care_gaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gap_id"] == gap.as_str())
        .expect("listed with include_closed");
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["closure_date"], day(-1).as_str());

    // Stored sealed: the closure is a record of the patient in the store, and its text is not
    // in the database file in the clear.
    let store = gw.store().await;
    assert_eq!(
        store
            .list_patient("T-CLIN-1", "clinical.gap_closure")
            .await
            .unwrap()
            .len(),
        1
    );
    let raw = std::fs::read(gw.dir.as_path().join("store.db")).unwrap();
    assert!(!raw.windows(13).any(|w| w == b"done at visit"));

    let writes: Vec<Value> = gw
        .audit_events("phi_access")
        .await
        .into_iter()
        .filter(|e| e["resource_kind"] == "care_gap_closure")
        .collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0]["action"], "write");
    assert_eq!(writes[0]["outcome"], "success");
    assert!(writes[0]["resource_id"].is_string());

    let again = api
        .post(
            &format!("/api/v1/care-gaps/patient/T-CLIN-1/close/{gap}?closure_reason=x"),
            None,
        )
        .await;
    assert_eq!(again.status(), 409);
    let unknown = api
        .post(
            "/api/v1/care-gaps/patient/T-CLIN-1/close/gap-00000000?closure_reason=x",
            None,
        )
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["type"],
        "urn:phigate:problem:no-such-gap"
    );
    let no_reason = api
        .post(
            &format!(
                "/api/v1/care-gaps/patient/T-CLIN-1/close/{}",
                after["care_gaps"][0]["gap_id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(no_reason.status(), 422);
    assert!(no_reason.text().await.unwrap().contains("closure_reason"));
    let future = api
        .post(
            &format!(
                "/api/v1/care-gaps/patient/T-CLIN-1/close/{}?closure_reason=x&closure_date={}",
                after["care_gaps"][0]["gap_id"].as_str().unwrap(),
                day(3)
            ),
            None,
        )
        .await;
    assert_eq!(future.status(), 422);
    assert!(future.text().await.unwrap().contains("future"));
    let bad = api
        .post(
            "/api/v1/care-gaps/patient/T-CLIN-1/close/GAP-1?closure_reason=x",
            None,
        )
        .await;
    assert_eq!(bad.status(), 400);
    assert_eq!(
        api.ok("/api/v1/care-gaps/patient/T-CLIN-1").await["total_gaps"]
            .as_u64()
            .unwrap(),
        n - 1,
        "refused closures changed nothing"
    );
}

#[tokio::test]
async fn the_cost_guard_answers_429_with_cocos_sentences_and_exports_the_refusals() {
    let gw = start(
        "[clinical]\nmax_cost_per_request_usd = 0.01\ndaily_budget_usd = 0.01\n",
        &[],
    );
    seed_patient(&gw, "T-CLIN-1", "1950-03-02", 128).await;
    let api = clinician(&gw).await;
    // A summary is estimated at $0.034: above the ceiling.
    let r = api.get("/api/v1/summarize/patient/T-CLIN-1").await;
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "Estimated cost $0.0340 exceeds per-request limit $0.0100"
    );
    // Care gaps cost $0.0018: five fit in $0.01, the sixth does not.
    for _ in 0..5 {
        assert_eq!(
            api.get("/api/v1/care-gaps/patient/T-CLIN-1").await.status(),
            200
        );
    }
    let r = api.get("/api/v1/care-gaps/patient/T-CLIN-1").await;
    assert_eq!(r.status(), 429);
    assert!(
        r.headers().get("retry-after").is_some(),
        "retry at the next UTC day"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["detail"],
        "Daily budget $0.01 would be exceeded"
    );
    let served = gw
        .audit_events("phi_access")
        .await
        .into_iter()
        .filter(|e| e["outcome"] == "success")
        .count();
    assert_eq!(
        served, 5,
        "a refused computation is not recorded as a served access"
    );
    let text = gw
        .client()
        .get(format!("{}/metrics", gw.public))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "phigate_clinical_cost_refused_total{model_id=\"summary-extractive\",limit=\"per_request\"} 1",
        "phigate_clinical_cost_refused_total{model_id=\"care-gaps-ecqm\",limit=\"daily_budget\"} 1",
        "phigate_clinical_daily_spend_usd 0.009",
        "phigate_clinical_daily_budget_usd 0.01",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_naming_what_is_wrong_and_never_a_default() {
    let gw = start("", &[]);
    seed_patient(&gw, "T-CLIN-1", "1950-03-02", 128).await;
    // Impossible values in the synced record: a birth date in the future, a systolic
    // pressure of 900.
    seed_patient(&gw, "T-CLIN-FUTURE", "2999-01-01", 128).await;
    seed_patient(&gw, "T-CLIN-BP", "1950-03-02", 900).await;
    let api = clinician(&gw).await;
    for (path, needle) in [
        (
            "/api/v1/care-gaps/patient/T-CLIN-1?lookback_months=3",
            "lookback_months",
        ),
        (
            "/api/v1/care-gaps/patient/T-CLIN-1?include_closed=maybe",
            "include_closed",
        ),
        (
            "/api/v1/summarize/patient/T-CLIN-1?summary_type=everything",
            "summary_type",
        ),
        (
            "/api/v1/summarize/patient/T-CLIN-1?time_range=forever",
            "time_range",
        ),
        (
            "/api/v1/summarize/patient/T-CLIN-1?max_length=50",
            "max_length",
        ),
        (
            "/api/v1/summarize/care-transition/T-CLIN-1/kipu:admission%2Fcurrent?recipient_type=mars",
            "recipient_type",
        ),
        (
            "/api/v1/summarize/care-transition/T-CLIN-1/no-such-stay",
            "encounter_id",
        ),
        (
            "/api/v1/readmission/predict/T-CLIN-1?encounter_id=no-such-stay",
            "encounter",
        ),
        ("/api/v1/care-gaps/patient/T-CLIN-FUTURE", "dob"),
        ("/api/v1/readmission/predict/T-CLIN-BP", "vital_signs[0]"),
    ] {
        let r = api.get(path).await;
        assert_eq!(r.status(), 422, "{path}");
        let body: Value = r.json().await.unwrap();
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{path}: {detail}");
        assert!(
            !detail.contains("2999") && !detail.contains("900"),
            "no value echoed: {detail}"
        );
    }
    let r = api
        .get("/api/v1/summarize/problem/T-CLIN-1/not-a-code")
        .await;
    assert_eq!(r.status(), 400);
    for body in [
        json!({"patient_ids": []}),
        json!({"patient_ids": "T-CLIN-1"}),
        json!({"nothing": true}),
    ] {
        let r = api
            .post("/api/v1/care-gaps/cohort", Some(body.clone()))
            .await;
        assert_eq!(r.status(), 422, "{body}");
    }
    let r = api
        .post(
            "/api/v1/summarize/custom",
            Some(json!({"patient_id": "T-CLIN-1", "custom_date_range": ["2025-02-01", "2025-01-01"]})),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("custom_date_range"));
    // A record without any inpatient stay has no readmission score: insufficient data.
    let store = gw.store().await;
    store
        .put_with_ttl(
            "ehr.patient",
            "T-CLIN-OUT",
            Some("T-CLIN-OUT"),
            &serde_json::to_vec(
                &json!({"casefile_id": "T-CLIN-OUT", "dob": "1980-01-01", "gender": "Male"}),
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    store
        .put_with_ttl(
            "ehr.care_team",
            "T-CLIN-OUT",
            Some("T-CLIN-OUT"),
            &serde_json::to_vec(
                &json!({"patient_id": "T-CLIN-OUT", "care_team": [{"user_id": 9001}]}),
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    let r = api.get("/api/v1/readmission/predict/T-CLIN-OUT").await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "urn:phigate:problem:insufficient-data");
    assert!(body["detail"].as_str().unwrap().contains("inpatient stay"));
    let r = api
        .post(
            "/api/v1/readmission/predict/batch",
            Some(json!({"patient_ids": ["T-CLIN-1", "T-CLIN-OUT"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["total_patients"], 2);
    assert_eq!(b["predictions"].as_array().unwrap().len(), 1);
    assert_eq!(b["insufficient_data"][0]["patient_id"], "T-CLIN-OUT");
}

// ---------------------------------------------------------------- the LLM stand-in

#[derive(Default)]
struct StandIn {
    reply: Mutex<String>,
    requests: Mutex<Vec<(Option<String>, Vec<u8>)>>,
}

async fn stand_in() -> (Arc<StandIn>, String) {
    use axum::routing::post;
    let state = Arc::new(StandIn::default());
    let s = state.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let s = s.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                s.requests.lock().unwrap().push((auth, body.to_vec()));
                let content = s.reply.lock().unwrap().clone();
                axum::Json(json!({
                    "id": "chatcmpl-test", "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 300, "completion_tokens": 50, "total_tokens": 350}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, format!("http://{addr}/v1"))
}

#[tokio::test]
async fn the_llm_provider_output_is_used_only_when_every_sentence_is_cited_and_doses_pass() {
    let (llm, url) = stand_in().await;
    let gw = start(
        &format!(
            "[clinical.llm]\nenabled = true\nbase_url = \"{url}\"\nmodel = \"stand-in-1\"\napi_key_env = \"PHIGATE_TEST_LLM_KEY\"\nusd_per_1k_tokens = 0.01\n"
        ),
        &[("PHIGATE_TEST_LLM_KEY", "sk-test-stand-in")],
    );
    seed_patient(&gw, "T-CLIN-1", "1950-03-02", 128).await;
    let api = clinician(&gw).await;
    let path = "/api/v1/summarize/patient/T-CLIN-1?time_range=last_month";

    *llm.reply.lock().unwrap() =
        "Alcohol dependence with withdrawal is active [SRC-1]. Heart failure is active. [SRC-2]"
            .into();
    let r = api.get(path).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-cost-usd"],
        "0.0375",
        "the extractive summary ($0.0340) plus the LLM call settled to its usage ($0.0035)"
    );
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["model_info"]["method"], "llm", "{}", s["model_info"]);
    assert_eq!(s["model_info"]["model"], "stand-in-1");
    let text = s["summary"].as_str().unwrap();
    assert!(
        text.contains("[kipu:diagnosis_history/"),
        "references resolve to record ids: {text}"
    );
    assert!(!text.contains("SRC-"));
    assert_eq!(s["rag_metrics"]["context_tokens"], 300);
    assert_eq!(s["rag_metrics"]["generation_tokens"], 50);

    let (auth, body) = llm.requests.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some("Bearer sk-test-stand-in"));
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["model"], "stand-in-1");
    let prompt = sent["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("SRC-1: ") && prompt.contains("SRC-2: "),
        "{prompt}"
    );
    for canary in ["Zebulon", "Quarrington", "T-CLIN-1", &day(-6)] {
        assert!(
            !prompt.contains(canary),
            "{canary} not sent to the provider: {prompt}"
        );
    }
    let events: Vec<Value> = gw
        .audit_events("model_inference")
        .await
        .into_iter()
        .filter(|e| e["model_id"] == "summary-llm")
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["model_version"], "stand-in-1");
    assert_eq!(events[0]["input_sha256"], sha256(&body).as_str());
    assert_eq!(
        events[0]["output_sha256"],
        sha256(llm.reply.lock().unwrap().as_bytes()).as_str()
    );
    assert_eq!(
        events[0]["cost_micro_usd"], 3500,
        "350 tokens at $0.01 per 1000"
    );

    for (reply, reason) in [
        (
            "Alcohol dependence is active [SRC-1]. The patient is doing well.",
            "uncited_sentence",
        ),
        (
            "Metformin 1000 mg three times daily is prescribed [SRC-1].",
            "dose_above_maximum",
        ),
        ("Heart failure is active [SRC-99].", "unknown_source"),
    ] {
        *llm.reply.lock().unwrap() = reply.into();
        let s = api.ok(path).await;
        assert_eq!(s["model_info"]["method"], "extractive", "{reply}");
        assert_eq!(s["model_info"]["llm"]["status"], "rejected");
        assert_eq!(s["model_info"]["llm"]["reason"], reason);
        assert!(!s["summary"].as_str().unwrap().contains(reply));
        assert!(
            s["summary"]
                .as_str()
                .unwrap()
                .contains("kipu:diagnosis_history/")
        );
    }
    let audited = gw
        .audit_events("model_inference")
        .await
        .into_iter()
        .filter(|e| e["model_id"] == "summary-llm")
        .count();
    assert_eq!(audited, 4, "rejected calls are audited too");
    let text = gw
        .client()
        .get(format!("{}/metrics", gw.public))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(
        "phigate_clinical_llm_rejections_total{model_id=\"summary-llm\",reason=\"dose_above_maximum\"} 1"
    ));
    assert!(!text.contains("sk-test-stand-in"));
}

// ---------------------------------------------------------------- PostgreSQL

/// `postgres://user:password@` replacing whatever credentials `url` carries.
fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    format!("{scheme}://{user}:{password}@{rest}")
}

#[tokio::test]
async fn on_postgresql_gaps_closures_and_their_audit_events_work_as_on_sqlite() {
    use sqlx::Executor as _;
    let admin_url = std::env::var("PHIGATE_TEST_DATABASE_URL").expect(
        "PHIGATE_TEST_DATABASE_URL must be set for the PostgreSQL tests (e.g. postgres://postgres@127.0.0.1:5432/test)",
    );
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let mut suffix = [0u8; 6];
    aws_lc_rs::rand::fill(&mut suffix).unwrap();
    let name = format!("phigate_clin_{}", hex::encode(suffix));
    let password = format!("pw-{}", hex::encode(suffix));
    for sql in [
        format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"),
        format!("CREATE SCHEMA {name} AUTHORIZATION {name}"),
        format!("ALTER ROLE {name} SET search_path = {name}"),
    ] {
        admin.execute(sql.as_str()).await.unwrap();
    }
    let url = with_credentials(&admin_url, &name, &password);
    {
        let gw = start("", &[("PHIGATE_DATABASE_URL", url.as_str())]);
        seed_patient(&gw, "T-CLIN-PG", "1950-03-02", 128).await;
        let api = clinician(&gw).await;
        let before = api.ok("/api/v1/care-gaps/patient/T-CLIN-PG").await;
        let gap = before["care_gaps"][0]["gap_id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = api
            .post(
                &format!("/api/v1/care-gaps/patient/T-CLIN-PG/close/{gap}?closure_reason=done"),
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
        let after = api.ok("/api/v1/care-gaps/patient/T-CLIN-PG").await;
        assert_eq!(
            after["total_gaps"].as_u64().unwrap() + 1,
            before["total_gaps"].as_u64().unwrap()
        );
        let p = api.ok("/api/v1/readmission/predict/T-CLIN-PG").await;
        assert_eq!(p["risk_tier"], "medium");
        assert_eq!(
            gw.store()
                .await
                .list_patient("T-CLIN-PG", "clinical.gap_closure")
                .await
                .unwrap()
                .len(),
            1
        );
        let inf = gw.audit_events("model_inference").await;
        assert_eq!(
            inf.len(),
            4,
            "three gap computations and one prediction: {inf:?}"
        );
        assert_eq!(
            inf[0]["output_sha256"],
            sha256(&without_trail(&before)).as_str()
        );
        let writes = gw
            .audit_events("phi_access")
            .await
            .into_iter()
            .filter(|e| e["resource_kind"] == "care_gap_closure" && e["outcome"] == "success")
            .count();
        assert_eq!(writes, 1);
    }
    // The gateway is stopped; take the objects back before dropping them.
    for sql in [
        format!("DROP SCHEMA {name} CASCADE"),
        format!("DROP ROLE {name}"),
    ] {
        admin.execute(sql.as_str()).await.unwrap();
    }
}

#[tokio::test]
async fn a_service_on_the_care_team_gets_summary_and_care_gap_dates_reduced_to_the_year_and_a_clinician_does_not()
 {
    let gw = start("", &[]);
    seed_patient(&gw, "T-CLIN-1", "1950-03-02", 128).await;
    let clinician = clinician(&gw).await;
    let service = Api {
        gw: &gw,
        client: gw.client(),
        token: gw
            .token(&format!("kipu-user-{USER}"), access::Role::Service)
            .await,
    };
    let path = "/api/v1/summarize/patient/T-CLIN-1?time_range=last_month";
    let seen = clinician.ok(path).await;
    let redacted = service.ok(path).await;
    let vitals_day = day(-6);
    assert!(
        seen["summary"].as_str().unwrap().contains(&vitals_day),
        "a clinician sees the record's dates: {}",
        seen["summary"]
    );
    assert_eq!(seen["phi_audit"]["redaction_applied"], false);
    assert!(!redacted.to_string().contains(&vitals_day), "{redacted}");
    assert_eq!(redacted["phi_audit"]["phi_detected"], true);
    assert_eq!(redacted["phi_audit"]["redaction_applied"], true);
    assert!(
        redacted["phi_audit"]["phi_types_found"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "DATE"),
        "{}",
        redacted["phi_audit"]
    );
    assert_eq!(
        redacted["citations"].as_array().unwrap().len(),
        seen["citations"].as_array().unwrap().len(),
        "redaction keeps every citation"
    );
    let year = &vitals_day[..4];
    for (s, r) in seen["citations"]
        .as_array()
        .unwrap()
        .iter()
        .zip(redacted["citations"].as_array().unwrap())
    {
        assert!(is_datetime(&s["source_date"]), "{s}");
        assert_eq!(
            r["source_date"].as_str(),
            Some(&s["source_date"].as_str().unwrap()[..4]),
            "the year only: {r}"
        );
    }
    assert!(
        redacted["citations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["source_date"] == year)
    );

    // Care gaps: the due dates (derived from the record's dates) follow the same rule, and a
    // closed gap's closure date too.
    let path = "/api/v1/care-gaps/patient/T-CLIN-1?include_closed=true";
    let seen = clinician.ok(path).await;
    let gap_id = seen["care_gaps"][0]["gap_id"].as_str().unwrap().to_string();
    let closed = clinician
        .post(
            &format!(
                "/api/v1/care-gaps/patient/T-CLIN-1/close/{gap_id}?closure_reason=done&closure_date={}",
                day(-1)
            ),
            None,
        )
        .await;
    assert_eq!(closed.status(), 200);
    let seen = clinician.ok(path).await;
    let redacted = service.ok(path).await;
    let gaps = seen["care_gaps"].as_array().unwrap();
    let rgaps = redacted["care_gaps"].as_array().unwrap();
    assert!(!gaps.is_empty());
    assert_eq!(gaps.len(), rgaps.len(), "the same gaps for both roles");
    for (s, r) in gaps.iter().zip(rgaps) {
        assert_eq!(s["gap_id"], r["gap_id"]);
        assert!(is_date(&s["due_date"]), "{s}");
        assert_eq!(
            r["due_date"].as_str(),
            Some(&s["due_date"].as_str().unwrap()[..4]),
            "the year only: {r}"
        );
    }
    let closed_seen = gaps
        .iter()
        .find(|g| g["gap_id"] == gap_id.as_str())
        .unwrap();
    let closed_redacted = rgaps
        .iter()
        .find(|g| g["gap_id"] == gap_id.as_str())
        .unwrap();
    assert_eq!(closed_seen["closure_date"], day(-1).as_str());
    assert_eq!(closed_redacted["closure_date"], &day(-1)[..4]);
    for g in rgaps {
        for field in ["due_date", "closure_date"] {
            if let Some(d) = g[field].as_str() {
                assert!(d.len() == 4 && d.bytes().all(|b| b.is_ascii_digit()), "{g}");
            }
        }
    }
}
