//! `Simulator::soft_delete_patient`: a deleted patient leaves every list, its endpoints answer
//! 404 and the vault lists it, as a deletion in Kipu does.

mod common;

use common::start;
use kipu_sim::SimConfig;
use serde_json::Value;

fn ids(v: &Value, key: &str, field: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_soft_deleted_patient_leaves_every_list_and_appears_in_the_vault() {
    let (sim, s) = start(SimConfig {
        patients: 12,
        ..SimConfig::default()
    })
    .await;
    let all = |path: &'static str| s.target(path, &[], &[("per", "1000")]);
    let (_, census) = s.get_json(&all("/api/patients/census")).await;
    let patients = ids(&census, "patients", "casefile_id");
    let victim = patients[4].clone();
    let (_, vitals_before) = s.get_json(&all("/api/vital_signs")).await;
    let (_, vault_before) = s.get_json(&all("/api/vaults/patients")).await;
    let victim_vitals = ids(&vitals_before, "vital_signs", "patient_id")
        .iter()
        .filter(|p| **p == victim)
        .count() as u64;
    assert!(victim_vitals >= 2);

    assert!(sim.simulator().soft_delete_patient(&victim));
    assert!(!sim.simulator().soft_delete_patient(&victim), "only once");
    assert!(!sim.simulator().soft_delete_patient("1000:not-a-patient"));

    let (_, census) = s.get_json(&all("/api/patients/census")).await;
    let after = ids(&census, "patients", "casefile_id");
    assert_eq!(after.len(), 11);
    assert!(!after.contains(&victim));
    assert_eq!(census["pagination"]["total_records"], 11);
    for (path, key, field) in [
        ("/api/patients/admissions", "patients", "casefile_id"),
        ("/api/patients/care_teams", "care_teams", "patient_id"),
        ("/api/vital_signs", "vital_signs", "patient_id"),
        ("/api/scheduler/appointments", "appointments", "patient_id"),
        ("/api/patient_evaluations", "patient_evaluations", "patient_id"),
    ] {
        let (status, v) = s.get_json(&all(path)).await;
        assert_eq!(status, 200, "{path}");
        let owners = ids(&v, key, field);
        assert!(!owners.is_empty(), "{path}");
        assert!(!owners.contains(&victim), "{path} still lists the deleted patient");
    }
    let (_, vitals) = s.get_json(&all("/api/vital_signs")).await;
    assert_eq!(
        vitals["pagination"]["total_records"].as_u64().unwrap(),
        vitals_before["pagination"]["total_records"].as_u64().unwrap() - victim_vitals
    );
    for path in [
        "/api/patients/{patient_id}",
        "/api/patients/{patient_id}/vital_signs",
        "/api/patients/{patient_id}/diagnosis_history",
    ] {
        let (status, _) = s.get_json(&s.target(path, &[&victim], &[])).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = s
        .get_json(&s.target("/api/patients/{patient_id}", &[&patients[5]], &[]))
        .await;
    assert_eq!(status, 200, "other patients are untouched");

    let (_, vault) = s.get_json(&all("/api/vaults/patients")).await;
    let vaulted = ids(&vault, "patients", "casefile_id");
    assert_eq!(
        vaulted.len(),
        ids(&vault_before, "patients", "casefile_id").len() + 1
    );
    let entry = vault["patients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["casefile_id"] == victim.as_str())
        .expect("the deleted patient is in the vault");
    assert!(entry["deleted_at"].is_string());
}
