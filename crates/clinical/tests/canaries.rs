//! Canary values planted in every PHI-bearing field never appear in Debug output, error messages
//! or the redacted summary a non-clinical role receives.

mod common;

use clinical::gaps;
use clinical::model::*;
use clinical::readmission;
use clinical::summary::{self, OutputRedaction, RoleRedaction, SummaryOptions};
use common::{d, sid};
use serde_json::json;

const PID: &str = "CANARY-PID-7f3a";
const NAME: &str = "Qxcanary";
const PHONE: &str = "415-555-0199";
const EMAIL: &str = "qx.canary@example.com";
const CANARIES: [&str; 5] = [PID, NAME, PHONE, EMAIL, "1957-04-09"];

fn assert_clean(what: &str, out: &str) {
    for c in CANARIES {
        assert!(!out.contains(c), "{what} leaked a canary");
    }
}

fn record() -> PatientRecord {
    let demo = Demographics::new(Some(d("1957-04-09")), Some(Sex::Female)).unwrap();
    let mut r = PatientRecord::new(PID.into(), demo).unwrap();
    let code = Code::new(CodeSystem::Icd10Cm, "E11.9").unwrap();
    r.push_diagnosis(
        Diagnosis::new(
            sid("dx-1"),
            code,
            d("2015-01-01"),
            None,
            DiagnosisStatus::Active,
            Some(format!("Seen by Dr. Zebulon {NAME}")),
        )
        .unwrap(),
    )
    .unwrap();
    r.push_medication(
        Medication::new(
            sid("med-1"),
            "Sertraline".into(),
            None,
            Some(Dose::new(50.0, DoseUnit::Mg).unwrap()),
            Some(format!("daily, questions to {PHONE} or {EMAIL}")),
            d("2025-01-02"),
            None,
            MedicationStatus::Active,
        )
        .unwrap(),
    )
    .unwrap();
    r.push_order(
        Order::new(
            sid("ord-1"),
            OrderKind::Referral,
            format!("Refer, contact {EMAIL}"),
            None,
            d("2025-01-03"),
        )
        .unwrap(),
    )
    .unwrap();
    r.push_encounter(
        Encounter::new(
            sid("enc-1"),
            EncounterClass::Inpatient,
            d("2025-01-01"),
            Some(d("2025-01-09")),
            Some(AdmissionType::Emergent),
            Some(false),
            vec![],
            vec![],
        )
        .unwrap(),
    )
    .unwrap();
    r
}

#[test]
fn debug_output_of_records_and_results_is_clean() {
    let r = record();
    assert_clean(
        "record",
        &format!("{r:?} {:?} {:?}", r.diagnoses, r.medications),
    );
    assert_clean(
        "gaps",
        &format!("{:?}", gaps::evaluate(&r, d("2025-06-30")).unwrap()),
    );
    assert_clean(
        "readmission",
        &format!("{:?}", readmission::assess(&r, None).unwrap()),
    );
}

#[test]
fn the_redacted_summary_for_an_unmapped_role_is_clean() {
    let r = record();
    let s = summary::summarize(
        &r,
        &SummaryOptions {
            as_of: d("2025-06-30"),
            since: None,
            max_per_section: 10,
        },
    );
    assert_clean(
        "summary debug",
        &format!(
            "{:?}",
            s.statements
                .iter()
                .map(|x| &x.citations)
                .collect::<Vec<_>>()
        ),
    );
    let roles = RoleRedaction::new([("clinician".to_string(), OutputRedaction::Keep)]);
    let (texts, scan) = summary::redact_summary(&s, &roles, "billing");
    assert!(scan.phi_detected && scan.redaction_applied);
    let joined = texts.join("\n");
    for c in [PHONE, EMAIL, PID, "1957-04-09"] {
        assert!(!joined.contains(c), "redacted summary leaked a canary");
    }
    let (kept, _) = summary::redact_summary(&s, &roles, "clinician");
    assert!(
        kept.join("\n").contains(PHONE),
        "the clinician mapping keeps the text"
    );
}

#[test]
fn error_messages_never_echo_the_input() {
    let e = Code::new(CodeSystem::Icd10Cm, NAME).unwrap_err();
    assert_clean("code error", &e.to_string());
    let e = SourceId::new(format!("id {PHONE}")).unwrap_err();
    assert_clean("id error", &e.to_string());
    let e = parse_date("dob", PHONE).unwrap_err();
    assert_clean("date error", &e.to_string());
    let bundle = json!({"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Patient", "id": PID, "birthDate": "1957-04-09", "gender": "female"}},
        {"resource": {"resourceType": "Condition", "id": "c1", "subject": {"reference": format!("Patient/{NAME}")},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}, "onsetDateTime": "2020-01-01"}}
    ]});
    let e = clinical::fhir::import_bundle(&bundle).unwrap_err();
    assert_clean("FHIR error", &format!("{e} {e:?}"));
    let patient = json!({"casefile_id": PID, "dob": "1957-04-09", "admission_date": "1957-04-08"});
    let e = clinical::kipu::import(&clinical::kipu::KipuRecords {
        patient: Some(&patient),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(
        e.cause,
        clinical::ClinicalError::ImpossibleDate { .. }
    ));
    assert_clean("Kipu error", &format!("{e} {e:?}"));
}
