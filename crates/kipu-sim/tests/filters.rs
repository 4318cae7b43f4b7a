//! Date filters: `start_date`/`end_date`, `created_at_start_date`/`created_at_end_date` and
//! `days` select records like the documented Kipu parameters, and every record carries the
//! `updated_at` an "updated since" sync needs.

mod common;

use common::{Signer, start};
use kipu_sim::SimConfig;
use serde_json::Value;

async fn all(s: &Signer, template: &str, ids: &[&str], query: &[(&str, &str)]) -> Vec<Value> {
    let mut out = Vec::new();
    let mut page = 1u32;
    loop {
        let p = page.to_string();
        let mut q = query.to_vec();
        q.push(("page", &p));
        q.push(("per", "1000"));
        let (status, body) = s.get_json(&s.target(template, ids, &q)).await;
        assert_eq!(status, 200, "{template}: {body}");
        let key = body
            .as_object()
            .unwrap()
            .keys()
            .find(|k| *k != "pagination")
            .unwrap()
            .clone();
        let items = body[&key].as_array().unwrap().clone();
        let n = items.len();
        out.extend(items);
        if n < 1000 {
            return out;
        }
        page += 1;
    }
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing"))
}

/// `2025-03-04T10:05:00-05:00` -> `2025-03-04 10:05:00`, comparable as text.
fn local(ts: &str) -> String {
    ts[..19].replace('T', " ")
}

fn config() -> SimConfig {
    SimConfig {
        patients: 300,
        seed: 5,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn latest_patients_are_those_updated_within_the_window() {
    let (_sim, s) = start(config()).await;
    let everyone = all(&s, "/api/patients/census", &[], &[]).await;
    let (from, to) = ("2025-02-01", "2025-03-31");
    let expected: Vec<&str> = everyone
        .iter()
        .filter(|p| {
            let u = local(text(p, "updated_at"));
            u.as_str() >= "2025-02-01 00:00:00" && u.as_str() <= "2025-03-31 23:59:59"
        })
        .map(|p| text(p, "casefile_id"))
        .collect();
    assert!(!expected.is_empty() && expected.len() < everyone.len());
    let latest = all(
        &s,
        "/api/patients/latest",
        &[],
        &[("start_date", from), ("end_date", to)],
    )
    .await;
    let got: Vec<&str> = latest.iter().map(|p| text(p, "casefile_id")).collect();
    assert_eq!(got, expected);
    // An open end: everything updated since a moment (date-time bound).
    let since = all(
        &s,
        "/api/patients/latest",
        &[],
        &[("start_date", "2025-06-01 12:00:00")],
    )
    .await;
    assert!(!since.is_empty());
    for p in &since {
        assert!(local(text(p, "updated_at")).as_str() >= "2025-06-01 12:00:00");
    }
    let expected_since = everyone
        .iter()
        .filter(|p| local(text(p, "updated_at")).as_str() >= "2025-06-01 12:00:00")
        .count();
    assert_eq!(since.len(), expected_since);
}

#[tokio::test]
async fn the_census_window_keeps_patients_whose_stay_meets_it() {
    let (_sim, s) = start(config()).await;
    let everyone = all(&s, "/api/patients/census", &[], &[]).await;
    let (from, to) = ("2025-01-01", "2025-01-31");
    let expected: Vec<&str> = everyone
        .iter()
        .filter(|p| {
            let admitted = text(p, "admission_date");
            let discharged = p["discharge_date"].as_str();
            admitted <= to && discharged.is_none_or(|d| d >= from)
        })
        .map(|p| text(p, "casefile_id"))
        .collect();
    assert!(!expected.is_empty() && expected.len() < everyone.len());
    let census = all(
        &s,
        "/api/patients/census",
        &[],
        &[("start_date", from), ("end_date", to)],
    )
    .await;
    let got: Vec<&str> = census.iter().map(|p| text(p, "casefile_id")).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn admissions_filter_by_admission_date_and_location() {
    let (_sim, s) = start(config()).await;
    let everyone = all(&s, "/api/patients/admissions", &[], &[]).await;
    let expected: Vec<&str> = everyone
        .iter()
        .filter(|p| {
            let a = text(p, "admission_date");
            ("2024-10-01"..="2025-03-31").contains(&a) && p["location_id"] == 2
        })
        .map(|p| text(p, "casefile_id"))
        .collect();
    assert!(!expected.is_empty());
    let got = all(
        &s,
        "/api/patients/admissions",
        &[],
        &[
            ("start_date", "2024-10-01"),
            ("end_date", "2025-03-31"),
            ("location_id", "2"),
        ],
    )
    .await;
    let got: Vec<&str> = got.iter().map(|p| text(p, "casefile_id")).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn vital_signs_filter_by_created_at() {
    let (sim, s) = start(config()).await;
    let mut checked = 0;
    for index in 0..40 {
        let id = sim.simulator().casefile_id(index);
        let vitals = all(&s, "/api/patients/{patient_id}/vital_signs", &[&id], &[]).await;
        let Some(pivot) = vitals.get(1).map(|v| local(text(v, "created_at"))) else {
            continue;
        };
        let expected: Vec<u64> = vitals
            .iter()
            .filter(|v| local(text(v, "created_at")) >= pivot)
            .map(|v| v["id"].as_u64().unwrap())
            .collect();
        let got = all(
            &s,
            "/api/patients/{patient_id}/vital_signs",
            &[&id],
            &[("created_at_start_date", &pivot)],
        )
        .await;
        let got: Vec<u64> = got.iter().map(|v| v["id"].as_u64().unwrap()).collect();
        assert_eq!(got, expected);
        assert!(!got.is_empty());
        // Upper bound by date: inclusive of that whole day.
        let day = &pivot[..10];
        let upto = all(
            &s,
            "/api/patients/{patient_id}/vital_signs",
            &[&id],
            &[("created_at_end_date", day)],
        )
        .await;
        let expected_upto = vitals
            .iter()
            .filter(|v| &text(v, "created_at")[..10] <= day)
            .count();
        assert_eq!(upto.len(), expected_upto);
        checked += 1;
    }
    assert!(checked > 10);
}

#[tokio::test]
async fn every_generated_record_carries_updated_at() {
    let (sim, s) = start(config()).await;
    let id = sim.simulator().casefile_id(4);
    for path in [
        "care_team",
        "diagnosis_history",
        "program_history",
        "appointments",
        "vital_signs",
        "allergies",
        "cows",
        "ciwa_ars",
        "ciwa_bs",
        "glucose_logs",
        "orthostatic_vital_signs",
        "patient_evaluations",
        "group_sessions",
        "consent_form_records",
        "patient_diets",
        "patient_orders",
        "ur",
    ] {
        let template = format!("/api/patients/{{patient_id}}/{path}");
        for r in all(&s, &template, &[&id], &[]).await {
            let u = text(&r, "updated_at");
            assert!(
                u.len() == 25 && u.ends_with("-05:00"),
                "{path}: updated_at must be an ISO 8601 timestamp"
            );
        }
    }
}

#[tokio::test]
async fn global_lists_filter_by_updated_at_and_appointment_start() {
    let (_sim, s) = start(config()).await;
    let (from, to) = ("2025-03-01", "2025-04-15");
    for (template, field) in [
        ("/api/insurances/latest", "updated_at"),
        ("/api/utilization_reviews/latest", "updated_at"),
        ("/api/scheduler/appointments", "start_time"),
    ] {
        let everyone = all(&s, template, &[], &[]).await;
        let expected: Vec<u64> = everyone
            .iter()
            .filter(|r| (from..="2025-04-15T23:59:59").contains(&&text(r, field)[..19]))
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        assert!(!expected.is_empty(), "{template}");
        assert!(expected.len() < everyone.len(), "{template}");
        let got = all(&s, template, &[], &[("start_date", from), ("end_date", to)]).await;
        let got: Vec<u64> = got.iter().map(|r| r["id"].as_u64().unwrap()).collect();
        assert_eq!(got, expected, "{template}");
    }
}

#[tokio::test]
async fn days_keeps_appointments_near_today() {
    let (sim, s) = start(config()).await;
    // The simulator's today is 2025-06-30.
    let mut seen_filtered = false;
    for index in 0..60 {
        let id = sim.simulator().casefile_id(index);
        let template = "/api/patients/{patient_id}/appointments";
        let everyone = all(&s, template, &[&id], &[]).await;
        let expected = everyone
            .iter()
            .filter(|a| ("2025-05-31".."2025-07-31").contains(&&text(a, "start_time")[..10]))
            .count();
        let got = all(&s, template, &[&id], &[("days", "30")]).await;
        assert_eq!(got.len(), expected);
        seen_filtered |= expected < everyone.len();
    }
    assert!(seen_filtered);
}

#[tokio::test]
async fn malformed_filters_are_refused_naming_the_parameter_not_the_value() {
    let (sim, s) = start(config()).await;
    let id = sim.simulator().casefile_id(0);
    for (template, ids, key) in [
        ("/api/patients/census", vec![], "start_date"),
        ("/api/patients/latest", vec![], "end_date"),
        ("/api/scheduler/appointments", vec![], "start_date"),
        (
            "/api/patients/{patient_id}/vital_signs",
            vec![id.as_str()],
            "created_at_start_date",
        ),
        (
            "/api/patients/{patient_id}/appointments",
            vec![id.as_str()],
            "days",
        ),
    ] {
        let (status, body) = s
            .get_json(&s.target(template, &ids, &[(key, "QxCanaryDate")]))
            .await;
        assert_eq!(status, 422, "{template} {key}");
        let message = body["errors"].as_str().unwrap();
        assert!(message.contains(key), "{message}");
        assert!(!message.contains("QxCanaryDate"), "{message}");
    }
    let (status, body) = s
        .get_json(&s.target(
            "/api/patients/latest",
            &[],
            &[("start_date", "2025-02-01"), ("end_date", "2025-01-01")],
        ))
        .await;
    assert_eq!(status, 422);
    assert!(
        body["errors"]
            .as_str()
            .unwrap()
            .contains("must not be after")
    );
}
