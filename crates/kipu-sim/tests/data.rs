//! Data: paging, determinism, scale, canaries and the shape of every endpoint.

mod common;

use std::collections::HashSet;

use common::{Req, start};
use kipu::endpoints::{ENDPOINTS, Method, Shape};
use kipu_sim::SimConfig;
use serde_json::{Value, json};

const CENSUS: &str = "/api/patients/census";

#[tokio::test]
async fn paging_the_census_returns_every_patient_exactly_once() {
    let (sim, s) = start(SimConfig {
        patients: 237,
        ..SimConfig::default()
    })
    .await;
    let mut seen = HashSet::new();
    let mut page = 1;
    loop {
        let p = page.to_string();
        let (status, body) = s
            .get_json(&s.target(CENSUS, &[], &[("page", &p), ("per", "50")]))
            .await;
        assert_eq!(status, 200);
        let pg = &body["pagination"];
        assert_eq!(
            (pg["current_page"].as_u64(), pg["records_per_page"].as_u64()),
            (Some(page), Some(50))
        );
        assert_eq!(
            (pg["total_pages"].as_u64(), pg["total_records"].as_u64()),
            (Some(5), Some(237))
        );
        let patients = body["patients"].as_array().unwrap();
        for p in patients {
            assert!(
                seen.insert(p["casefile_id"].as_str().unwrap().to_owned()),
                "duplicate"
            );
        }
        if patients.len() < 50 {
            break;
        }
        page += 1;
    }
    assert_eq!(seen.len(), 237);
    // Past the end: an empty page with the same block.
    let (_, body) = s
        .get_json(&s.target(CENSUS, &[], &[("page", "9"), ("per", "50")]))
        .await;
    assert_eq!(body["patients"], json!([]));
    assert_eq!(body["pagination"]["total_records"], 237);
    // Soft-deleted patients are in the vault and never in the census.
    let (_, vault) = s
        .get_json(&s.target("/api/vaults/patients", &[], &[]))
        .await;
    let deleted = vault["patients"].as_array().unwrap();
    assert!(!deleted.is_empty());
    for d in deleted {
        assert!(!seen.contains(d["casefile_id"].as_str().unwrap()));
        assert!(d["deleted_at"].is_string());
        let t = s.target(
            "/api/patients/{patient_id}",
            &[d["casefile_id"].as_str().unwrap()],
            &[],
        );
        assert_eq!(s.get_json(&t).await.0, 404);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_page_or_per_is_a_422_with_errors() {
    let (sim, s) = start(SimConfig::default()).await;
    for (k, v) in [
        ("per", "0"),
        ("per", "1001"),
        ("per", "ten"),
        ("page", "0"),
        ("page", "-1"),
    ] {
        let (status, body) = s.get_json(&s.target(CENSUS, &[], &[(k, v)])).await;
        assert_eq!(status, 422, "{k}={v}");
        assert!(body["errors"].as_str().unwrap().contains(k));
        assert_eq!(body["status_code"], 422);
    }
    let (status, body) = s.get_json(&s.target(CENSUS, &[], &[("per", "1000")])).await;
    assert_eq!(
        (status, body["patients"].as_array().unwrap().len()),
        (200, 200)
    );
    let (status, body) = s.get_json(&s.target("/api/no_such_thing", &[], &[])).await;
    assert_eq!((status, body["status_code"].as_u64()), (404, Some(404)));
    assert!(body["errors"].is_string());
    sim.shutdown().await;
}

async fn census_bytes(seed: u64) -> Vec<u8> {
    let (sim, s) = start(SimConfig {
        seed,
        ..SimConfig::default()
    })
    .await;
    let mut all = Vec::new();
    let first = s.target(
        "/api/patients/{patient_id}",
        &[&sim.simulator().casefile_id(3)],
        &[],
    );
    for target in [
        s.target(CENSUS, &[], &[("per", "200")]),
        s.target("/api/vital_signs", &[], &[("per", "300")]),
        first,
    ] {
        let r = s.send(Req::get(target)).await.unwrap();
        all.extend_from_slice(&r.bytes().await.unwrap());
    }
    sim.shutdown().await;
    all
}

#[tokio::test]
async fn the_same_seed_gives_the_same_bytes_and_another_seed_other_data() {
    let a = census_bytes(42).await;
    assert_eq!(a, census_bytes(42).await);
    assert_ne!(a, census_bytes(43).await);
}

#[tokio::test]
async fn a_hundred_thousand_patients_serve_the_last_census_page() {
    let (sim, s) = start(SimConfig {
        patients: 100_000,
        ..SimConfig::default()
    })
    .await;
    let (status, body) = s
        .get_json(&s.target(CENSUS, &[], &[("page", "100"), ("per", "1000")]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["pagination"]["total_pages"], 100);
    let patients = body["patients"].as_array().unwrap();
    assert_eq!(patients.len(), 1000);
    let last = patients.last().unwrap()["casefile_id"].as_str().unwrap();
    assert_eq!(last, sim.simulator().casefile_id(99_999));
    // A patient-scoped read on the last patient works without generating the others.
    let t = s.target("/api/patients/{patient_id}/vital_signs", &[last], &[]);
    assert_eq!(s.get_json(&t).await.0, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn canaries_are_listed_and_present_in_names_mrns_phones_emails_and_free_text() {
    let (sim, s) = start(SimConfig {
        patients: 30,
        ..SimConfig::default()
    })
    .await;
    let canaries = sim.canaries();
    assert_eq!(canaries.len() as u64, 5 * (30 + 2));
    assert_eq!(
        canaries.iter().collect::<HashSet<_>>().len(),
        canaries.len()
    );
    let (_, body) = s.get_json(&s.target(CENSUS, &[], &[("per", "30")])).await;
    for (i, p) in body["patients"].as_array().unwrap().iter().enumerate() {
        let [name, mrn, phone, email, note] = sim.simulator().patient_canaries(i as u64);
        assert!(p["last_name"].as_str().unwrap().contains(&name));
        assert_eq!(p["mr_number"], mrn.as_str());
        assert_eq!(p["phone"], phone.as_str());
        assert_eq!(p["email"], email.as_str());
        let id = p["casefile_id"].as_str().unwrap();
        let (_, evals) = s
            .get_json(&s.target("/api/patients/{patient_id}/patient_evaluations", &[id], &[]))
            .await;
        let text = evals.to_string();
        assert!(text.contains(&note), "free text carries the note canary");
    }
    sim.shutdown().await;
}

fn sample_value(v: &Value) -> bool {
    !v.is_null()
}

#[tokio::test]
async fn every_one_of_the_85_endpoints_answers_2xx_with_its_documented_shape() {
    let (sim, s) = start(SimConfig {
        patients: 40,
        ..SimConfig::default()
    })
    .await;
    let (_, _, app) = sim.credentials();
    let patient = sim.simulator().casefile_id(0);
    // Real ids for the object endpoints, read from the lists that contain them.
    let first_id = |body: &Value, key: &str| body[key][0]["id"].clone();
    let (_, appts) = s
        .get_json(&s.target("/api/patients/{patient_id}/appointments", &[&patient], &[]))
        .await;
    let (_, evals) = s
        .get_json(&s.target(
            "/api/patients/{patient_id}/patient_evaluations",
            &[&patient],
            &[],
        ))
        .await;
    let (_, contacts) = s.get_json(&s.target("/api/contacts", &[], &[])).await;
    let (_, records) = s
        .get_json(&s.target(
            "/api/patients/{patient_id}/consent_form_records",
            &[&patient],
            &[],
        ))
        .await;
    let (_, orders) = s
        .get_json(&s.target(
            "/api/patients/{patient_id}/patient_orders",
            &[&patient],
            &[],
        ))
        .await;
    let (_, sessions) = s
        .get_json(&s.target(
            "/api/patients/{patient_id}/group_sessions",
            &[&patient],
            &[],
        ))
        .await;
    let (_, p) = s
        .get_json(&s.target("/api/patients/{patient_id}", &[&patient], &[]))
        .await;
    // Patient 0 may attend no group session; find one who does.
    let mut session_patient = (patient.clone(), first_id(&sessions, "group_sessions"));
    for i in 1..40 {
        if !session_patient.1.is_null() {
            break;
        }
        let id = sim.simulator().casefile_id(i);
        let (_, gs) = s
            .get_json(&s.target("/api/patients/{patient_id}/group_sessions", &[&id], &[]))
            .await;
        session_patient = (id, first_id(&gs, "group_sessions"));
    }
    let id_for = |placeholder: &str, template: &str| -> String {
        let v = match placeholder {
            "patient_id" if template.contains("group_session_id") => {
                Value::from(session_patient.0.clone())
            }
            "patient_id" => Value::from(patient.clone()),
            "appointment_id" => first_id(&appts, "appointments"),
            "patient_evaluation_id" => first_id(&evals, "patient_evaluations"),
            "contact_id" => first_id(&contacts, "contacts"),
            "record_id" => first_id(&records, "consent_form_records"),
            "patient_order_id" => first_id(&orders, "patient_orders"),
            "group_session_id" => session_patient.1.clone(),
            "insurance_id" => p["patient"]["insurances"][0]["id"].clone(),
            "mapping_id" => Value::from("ehr-42"),
            _ => Value::from(1),
        };
        assert!(sample_value(&v), "{placeholder}");
        match v {
            Value::String(s) => s,
            other => other.to_string(),
        }
    };
    let mut answered = 0;
    for e in &ENDPOINTS {
        let ids: Vec<String> = e.path_params().map(|ph| id_for(ph, e.path)).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let target = s.target(e.path, &id_refs, &[]);
        let req = match e.method {
            Method::Get => Req::get(target),
            m => {
                let data = match e.name {
                    "create_patient" => json!({"first_name": "Ada", "last_name": "Quill"}),
                    "create_contact" => json!({"first_name": "Bo", "patient_id_ref": "x"}),
                    _ => json!({"status": "updated"}),
                };
                Req::json(
                    m.as_str(),
                    target,
                    &json!({"document": {"recipient_id": app, "data": data}}),
                )
            }
        };
        let r = s.send(req).await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert!(
            (200..300).contains(&status),
            "{} -> {status} {body}",
            e.name
        );
        match e.shape {
            Shape::List { key } => {
                let pg = &body["pagination"];
                for f in [
                    "current_page",
                    "total_pages",
                    "records_per_page",
                    "total_records",
                ] {
                    assert!(pg[f].is_u64(), "{} pagination.{f}", e.name);
                }
                let items = body[key]
                    .as_array()
                    .unwrap_or_else(|| panic!("{} lacks {key}", e.name));
                assert!(!items.is_empty(), "{} returned no records", e.name);
                assert!(items.iter().all(Value::is_object));
            }
            Shape::Object { key } | Shape::Write { key } => {
                assert!(body[key].is_object(), "{} lacks {key}", e.name);
            }
        }
        answered += 1;
    }
    assert_eq!(answered, 85);
    sim.shutdown().await;
}
