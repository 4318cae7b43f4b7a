//! Extractive summaries: every statement's citations resolve to records holding the stated
//! fact (property test over generated records), trends, PHI redaction by role.

mod common;

use clinical::model::{
    AdmissionType, DoseUnit, EncounterClass as EC, Instrument, ObservationKind as K, Sex,
};
use clinical::summary::{
    self, Fact, OutputRedaction, RoleRedaction, Section, SummaryOptions, Trend,
};
use common::{P, d};
use proptest::prelude::*;

fn opts(as_of: &str) -> SummaryOptions {
    SummaryOptions {
        as_of: d(as_of),
        since: None,
        max_per_section: 10,
    }
}

fn sample() -> P {
    P::new("1960-02-02", Sex::Female)
        .dx_described("E11.9", "2019-03-15", "Type 2 diabetes mellitus")
        .dx("I10", "2018-07-22")
        .resolved_dx("J45.909", "2015-01-01", "2016-01-01")
        .med(
            "Metformin",
            Some((1000.0, DoseUnit::Mg)),
            Some("twice daily"),
            "2024-01-10",
        )
        .lab(K::HbA1c, 7.8, "%", "2023-10-01")
        .lab(K::HbA1c, 7.2, "%", "2024-01-10")
        .lab(K::Sodium, 131.0, "mmol/L", "2024-01-05")
        .lab(K::Sodium, 136.0, "mmol/L", "2024-01-12")
        .bp(128.0, 82.0, "2024-01-10")
        .eval(Instrument::Phq9, 6.0, "2024-01-10")
        .encounter(
            EC::Inpatient,
            "2023-12-01",
            Some("2023-12-05"),
            Some(AdmissionType::Urgent),
            &["E11.65"],
        )
}

#[test]
fn sections_state_the_records_facts_with_trends() {
    let p = sample();
    let s = summary::summarize(&p.r, &opts("2024-02-01"));
    let problems: Vec<&str> = s
        .section(Section::ActiveProblems)
        .map(|x| x.text.as_str())
        .collect();
    assert_eq!(
        problems,
        [
            "Active problem: E11.9 Type 2 diabetes mellitus (since 2019-03-15)",
            "Active problem: I10 (since 2018-07-22)"
        ]
    );
    let labs: Vec<&str> = s.section(Section::Labs).map(|x| x.text.as_str()).collect();
    assert!(
        labs.contains(&"HbA1c 7.2% on 2024-01-10 (previous 7.8% on 2023-10-01: improving)"),
        "{labs:?}"
    );
    assert!(
        labs.contains(
            &"Sodium 136 mmol/L on 2024-01-12 (previous 131 mmol/L on 2024-01-05: improving)"
        ),
        "{labs:?}"
    );
    let meds: Vec<&str> = s
        .section(Section::Medications)
        .map(|x| x.text.as_str())
        .collect();
    assert_eq!(
        meds,
        ["Medication: Metformin 1000 mg twice daily (started 2024-01-10)"]
    );
    assert!(
        s.section(Section::Vitals)
            .any(|x| x.text == "Blood pressure 128/82 mmHg on 2024-01-10")
    );
    assert!(
        s.section(Section::Assessments)
            .any(|x| x.text == "PHQ-9 score 6 on 2024-01-10")
    );
    assert!(
        s.section(Section::Encounters)
            .any(|x| x.text == "Inpatient stay 2023-12-01 to 2023-12-05 (4 days)")
    );
    for st in &s.statements {
        assert!(summary::verify(&p.r, st), "{}", st.text);
    }
    assert!(s.text().contains("[obs-6, obs-5]") || s.text().contains("[obs-5, obs-4]"));
}

#[test]
fn the_time_range_limits_recent_items_but_not_active_problems() {
    let p = sample();
    let o = SummaryOptions {
        as_of: d("2024-02-01"),
        since: Some(d("2024-01-11")),
        max_per_section: 10,
    };
    let s = summary::summarize(&p.r, &o);
    assert_eq!(s.section(Section::ActiveProblems).count(), 2);
    assert_eq!(s.section(Section::Labs).count(), 1, "only sodium is recent");
    assert_eq!(s.section(Section::Encounters).count(), 0);
}

#[test]
fn a_tampered_statement_fails_verification() {
    let p = sample();
    let s = summary::summarize(&p.r, &opts("2024-02-01"));
    let mut st = s.section(Section::Labs).next().unwrap().clone();
    if let Fact::Lab { value, .. } = &mut st.fact {
        *value += 1.0;
    }
    assert!(!summary::verify(&p.r, &st));
    let mut st2 = s.statements[0].clone();
    st2.citations = vec![common::sid("not-a-record")];
    assert!(!summary::verify(&p.r, &st2));
}

#[test]
fn trends_follow_each_measurements_direction() {
    assert_eq!(summary::trend(K::HbA1c, 7.8, 7.2), Trend::Improving);
    assert_eq!(summary::trend(K::HbA1c, 7.2, 7.4), Trend::Stable);
    assert_eq!(summary::trend(K::Egfr, 60.0, 50.0), Trend::Worsening);
    assert_eq!(summary::trend(K::Sodium, 145.0, 139.0), Trend::Improving);
    assert_eq!(summary::trend(K::Sodium, 138.0, 130.0), Trend::Worsening);
}

#[test]
fn redaction_depends_on_the_role_and_unknown_roles_are_redacted() {
    let p = sample().med(
        "Sertraline",
        Some((50.0, DoseUnit::Mg)),
        Some("daily; questions: call 415-555-0123"),
        "2024-01-11",
    );
    let s = summary::summarize(&p.r, &opts("2024-02-01"));
    let roles = RoleRedaction::new([
        ("clinician".to_string(), OutputRedaction::Keep),
        (
            "analyst".to_string(),
            OutputRedaction::Redact(phi::Mode::Mask),
        ),
    ]);
    let (kept, scan) = summary::redact_summary(&s, &roles, "Clinician");
    assert!(kept.iter().any(|t| t.contains("415-555-0123")));
    assert!(scan.phi_detected && !scan.redaction_applied);
    assert!(scan.phi_types_found.contains(&"PHONE".to_string()));
    let (masked, scan) = summary::redact_summary(&s, &roles, "analyst");
    assert!(masked.iter().all(|t| !t.contains("415-555-0123")));
    assert!(scan.redaction_applied);
    let (tagged, _) = summary::redact_summary(&s, &roles, "somebody-else");
    assert!(tagged.iter().any(|t| t.contains("[PHONE]")));
    assert!(
        tagged.iter().all(|t| !t.contains("2024-01-10")),
        "dates are Safe Harbor identifiers"
    );
}

#[derive(Debug, Clone)]
enum Gen {
    Lab(usize, f64, u32),
    Bp(u32, u32, u32),
    Med(usize, f64, u32),
    Dx(usize, u32),
    Eval(u32, u32),
    Enc(bool, u32, u32),
}

const LABS: [(K, &str, f64, f64); 6] = [
    (K::HbA1c, "%", 4.0, 14.0),
    (K::Glucose, "mg/dL", 60.0, 400.0),
    (K::Hemoglobin, "g/dL", 6.0, 18.0),
    (K::Sodium, "mmol/L", 120.0, 155.0),
    (K::Egfr, "mL/min/1.73m2", 10.0, 120.0),
    (K::HeartRate, "/min", 40.0, 150.0),
];
const MEDS: [&str; 4] = ["Sertraline", "Naltrexone", "Gabapentin", "Metformin"];
const DX: [&str; 5] = ["F10.20", "F11.20", "E11.9", "I10", "F32.1"];

fn gen_item() -> impl Strategy<Value = Gen> {
    prop_oneof![
        (0..LABS.len(), 0.0f64..1.0, 0u32..700).prop_map(|(k, f, day)| Gen::Lab(k, f, day)),
        (100u32..200, 50u32..99, 0u32..700).prop_map(|(s, d, day)| Gen::Bp(s, d, day)),
        (0..MEDS.len(), 1.0f64..500.0, 0u32..700).prop_map(|(m, a, day)| Gen::Med(m, a, day)),
        (0..DX.len(), 0u32..700).prop_map(|(c, day)| Gen::Dx(c, day)),
        (0u32..28, 0u32..700).prop_map(|(s, day)| Gen::Eval(s, day)),
        (any::<bool>(), 0u32..700, 0u32..20).prop_map(|(i, day, len)| Gen::Enc(i, day, len)),
    ]
}

fn day(n: u32) -> String {
    (d("2023-01-01") + chrono::Days::new(u64::from(n))).to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_citation_resolves_to_a_record_holding_the_stated_fact(items in proptest::collection::vec(gen_item(), 0..40), since in proptest::option::of(0u32..700)) {
        let mut p = P::new("1970-01-01", Sex::Male);
        for it in items {
            p = match it {
                Gen::Lab(k, f, n) => {
                    let (kind, unit, lo, hi) = LABS[k];
                    p.lab(kind, lo + f * (hi - lo), unit, &day(n))
                }
                Gen::Bp(s, dia, n) => p.bp(f64::from(s), f64::from(dia), &day(n)),
                Gen::Med(m, a, n) => p.med(MEDS[m], Some((a.round(), DoseUnit::Mg)), Some("daily"), &day(n)),
                Gen::Dx(c, n) => p.dx(DX[c], &day(n)),
                Gen::Eval(s, n) => p.eval(Instrument::Phq9, f64::from(s), &day(n)),
                Gen::Enc(inpatient, n, len) => {
                    if inpatient {
                        p.encounter(EC::Inpatient, &day(n), Some(&day(n + len)), Some(AdmissionType::Urgent), &[])
                    } else {
                        p.encounter(EC::Outpatient, &day(n), None, None, &[])
                    }
                }
            };
        }
        let o = SummaryOptions { as_of: d("2024-12-31"), since: since.map(|n| d(&day(n))), max_per_section: 5 };
        let s = summary::summarize(&p.r, &o);
        for st in &s.statements {
            prop_assert!(!st.citations.is_empty());
            for c in &st.citations {
                prop_assert!(p.r.find(c).is_some(), "citation {} does not resolve", c);
            }
            prop_assert!(summary::verify(&p.r, st), "statement not grounded: {}", st.text);
        }
        // Deterministic.
        prop_assert_eq!(summary::summarize(&p.r, &o), s);
    }
}
