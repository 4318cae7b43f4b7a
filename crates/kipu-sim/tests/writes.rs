//! Writes are validated, stored in memory and visible in later reads.

mod common;

use common::{Req, start};
use kipu_sim::SimConfig;
use serde_json::{Value, json};

fn doc(app: &str, data: Value) -> Value {
    json!({"document": {"recipient_id": app, "data": data}})
}

#[tokio::test]
async fn a_created_patient_appears_in_the_census_and_can_be_read_and_updated() {
    let (sim, s) = start(SimConfig {
        patients: 10,
        ..SimConfig::default()
    })
    .await;
    let (_, _, app) = sim.credentials();
    let r = s
        .send(Req::json(
            "POST",
            s.target("/api/patients", &[], &[]),
            &doc(
                &app,
                json!({"first_name": "Ada", "last_name": "Quill", "dob": "1980-02-03"}),
            ),
        ))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["patient"]["casefile_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, census) = s
        .get_json(&s.target("/api/patients/census", &[], &[("per", "100")]))
        .await;
    assert_eq!(census["pagination"]["total_records"], 11);
    assert_eq!(census["patients"][10]["casefile_id"], id.as_str());

    let patch = Req::json(
        "PATCH",
        s.target("/api/patients/{patient_id}", &[&id], &[]),
        &doc(&app, json!({"phone": "555-000-1111"})),
    );
    assert_eq!(s.send(patch).await.unwrap().status().as_u16(), 200);
    let (status, p) = s
        .get_json(&s.target("/api/patients/{patient_id}", &[&id], &[]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            p["patient"]["first_name"].as_str(),
            p["patient"]["phone"].as_str()
        ),
        (Some("Ada"), Some("555-000-1111"))
    );

    // A generated patient can be updated too.
    let g = sim.simulator().casefile_id(2);
    let patch = Req::json(
        "PATCH",
        s.target("/api/patients/{patient_id}", &[&g], &[]),
        &doc(&app, json!({"program": "Outpatient"})),
    );
    assert_eq!(s.send(patch).await.unwrap().status().as_u16(), 200);
    let (_, p) = s
        .get_json(&s.target("/api/patients/{patient_id}", &[&g], &[]))
        .await;
    assert_eq!(p["patient"]["program"], "Outpatient");
    sim.shutdown().await;
}

#[tokio::test]
async fn vitals_evaluations_contacts_insurance_and_ext_ids_show_in_later_reads() {
    let (sim, s) = start(SimConfig {
        patients: 10,
        ..SimConfig::default()
    })
    .await;
    let (_, _, app) = sim.credentials();
    let pid = sim.simulator().casefile_id(4);
    let vitals_target = s.target(
        "/api/patients/{patient_id}/vital_signs",
        &[&pid],
        &[("per", "100")],
    );
    let before = s.get_json(&vitals_target).await.1["vital_signs"]
        .as_array()
        .unwrap()
        .len();
    let post = Req::json(
        "POST",
        s.target("/api/patients/{patient_id}/vital_signs", &[&pid], &[]),
        &doc(
            &app,
            json!({"systolic_blood_pressure": 121, "diastolic_blood_pressure": 79}),
        ),
    );
    assert_eq!(s.send(post).await.unwrap().status().as_u16(), 201);
    let after = s.get_json(&vitals_target).await.1;
    let list = after["vital_signs"].as_array().unwrap();
    assert_eq!(list.len(), before + 1);
    assert_eq!(list.last().unwrap()["systolic_blood_pressure"], 121);

    let post = Req::json(
        "POST",
        s.target(
            "/api/patients/{patient_id}/patient_evaluations",
            &[&pid],
            &[],
        ),
        &doc(&app, json!({"name": "PHQ-9", "score": 7})),
    );
    let r: Value = s.send(post).await.unwrap().json().await.unwrap();
    let eval_id = r["patient_evaluation"]["id"].to_string();
    let (status, e) = s
        .get_json(&s.target(
            "/api/patient_evaluations/{patient_evaluation_id}",
            &[&eval_id],
            &[],
        ))
        .await;
    assert_eq!(
        (status, e["patient_evaluation"]["score"].as_u64()),
        (200, Some(7))
    );

    let post = Req::json(
        "POST",
        s.target("/api/contacts", &[], &[]),
        &doc(
            &app,
            json!({"patient_id": pid, "first_name": "Kim", "relationship": "Sister"}),
        ),
    );
    let r: Value = s.send(post).await.unwrap().json().await.unwrap();
    let contact_id = r["contact"]["id"].to_string();
    let patch = Req::json(
        "PATCH",
        s.target("/api/contacts/{contact_id}", &[&contact_id], &[]),
        &doc(&app, json!({"relationship": "Friend"})),
    );
    assert_eq!(s.send(patch).await.unwrap().status().as_u16(), 200);
    let (_, c) = s
        .get_json(&s.target("/api/contacts/{contact_id}", &[&contact_id], &[]))
        .await;
    assert_eq!(
        (
            c["contact"]["relationship"].as_str(),
            c["contact"]["patient_id"].as_str()
        ),
        (Some("Friend"), Some(pid.as_str()))
    );

    let (_, p) = s
        .get_json(&s.target("/api/patients/{patient_id}", &[&pid], &[]))
        .await;
    let ins_id = p["patient"]["insurances"][0]["id"].to_string();
    let patch = Req::json(
        "PATCH",
        s.target(
            "/api/patients/{patient_id}/insurances/{insurance_id}",
            &[&pid, &ins_id],
            &[],
        ),
        &doc(&app, json!({"policy_no": "NEW123"})),
    );
    assert_eq!(s.send(patch).await.unwrap().status().as_u16(), 200);
    let patch = Req::json(
        "PATCH",
        s.target(
            "/api/patients/{patient_id}/ext_id_mappings/{mapping_id}",
            &[&pid, "ehr-7"],
            &[],
        ),
        &doc(&app, json!({"external_id": "X-99", "system": "billing"})),
    );
    assert_eq!(s.send(patch).await.unwrap().status().as_u16(), 200);
    let (_, p) = s
        .get_json(&s.target("/api/patients/{patient_id}", &[&pid], &[]))
        .await;
    assert_eq!(p["patient"]["insurances"][0]["policy_no"], "NEW123");
    assert_eq!(p["patient"]["ext_id_mappings"][0]["external_id"], "X-99");
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_without_a_valid_envelope_are_422_and_change_nothing() {
    let (sim, s) = start(SimConfig {
        patients: 10,
        ..SimConfig::default()
    })
    .await;
    let (_, _, app) = sim.credentials();
    let target = s.target("/api/patients", &[], &[]);
    let bad_bodies = [
        json!({"data": {"first_name": "A", "last_name": "B"}}),
        json!({"document": {"data": {"first_name": "A", "last_name": "B"}}}),
        json!({"document": {"recipient_id": "someone-else", "data": {"first_name": "A", "last_name": "B"}}}),
        json!({"document": {"recipient_id": app, "data": "nope"}}),
        json!({"document": {"recipient_id": app, "data": {"first_name": "A"}}}),
        json!({"document": {"recipient_id": app, "data": {"first_name": "A", "last_name": "B", "casefile_id": "1:x"}}}),
    ];
    for body in bad_bodies {
        let r = s
            .send(Req::json("POST", target.clone(), &body))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 422, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["status_code"], 422);
    }
    let (_, census) = s
        .get_json(&s.target("/api/patients/census", &[], &[]))
        .await;
    assert_eq!(census["pagination"]["total_records"], 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_multipart_patient_with_an_attachment_is_stored_with_its_metadata() {
    let (sim, s) = start(SimConfig {
        patients: 5,
        ..SimConfig::default()
    })
    .await;
    let (_, _, app) = sim.credentials();
    let boundary = "----phigate-test-boundary-7MA4YWxk";
    let file = b"%PDF-1.4 synthetic consent form\n";
    let mut body = Vec::new();
    for (name, value) in [
        ("document[recipient_id]", app.as_str()),
        ("document[data][first_name]", "Lin"),
        ("document[data][last_name]", "Vale"),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"document[attachments_attributes][0][attachment]\"; filename=\"consent.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let req = Req {
        method: "POST",
        content_type: Some(format!("multipart/form-data; boundary={boundary}")),
        body,
        ..Req::get(s.target("/api/patients", &[], &[]))
    };
    let r = s.send(req).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["patient"]["casefile_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, p) = s
        .get_json(&s.target("/api/patients/{patient_id}", &[&id], &[]))
        .await;
    let a = &p["patient"]["attachments"][0];
    assert_eq!(p["patient"]["last_name"], "Vale");
    assert_eq!(
        (a["file_name"].as_str(), a["size"].as_u64()),
        (Some("consent.pdf"), Some(file.len() as u64))
    );
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, file);
    assert_eq!(
        a["sha256"].as_str(),
        Some(hex::encode(sha.as_ref()).as_str())
    );
    sim.shutdown().await;
}
