//! Cost of the clinical computations on one realistic patient (a year and a half of
//! behavioral-health care: 8 diagnoses, 3 stays, 6 ED visits, 40 outpatient visits, 120 labs and
//! vitals, 60 blood pressures, 12 medications, 30 evaluations).

use chrono::{Days, NaiveDate};
use clinical::model::*;
use clinical::summary::{OutputRedaction, RoleRedaction, SummaryOptions};
use clinical::{dose, gaps, readmission, summary};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + Days::new(n)
}

fn patient() -> PatientRecord {
    let demo = Demographics::new(NaiveDate::from_ymd_opt(1968, 5, 17), Some(Sex::Female)).unwrap();
    let mut r = PatientRecord::new("BENCH-1".into(), demo).unwrap();
    let mut n = 0u64;
    let mut id = |k: &str| {
        n += 1;
        SourceId::new(format!("{k}/{n}")).unwrap()
    };
    for (i, c) in [
        "F10.20", "F11.20", "E11.9", "I10", "F32.1", "F41.1", "I50.9", "N18.3",
    ]
    .iter()
    .enumerate()
    {
        let code = Code::new(CodeSystem::Icd10Cm, c).unwrap();
        r.push_diagnosis(
            Diagnosis::new(
                id("dx"),
                code,
                day(i as u64 * 7),
                None,
                DiagnosisStatus::Active,
                None,
            )
            .unwrap(),
        )
        .unwrap();
    }
    let sud = Code::new(CodeSystem::Icd10Cm, "F10.20").unwrap();
    for s in 0..3u64 {
        let start = day(100 + s * 150);
        let e = Encounter::new(
            id("enc"),
            EncounterClass::Inpatient,
            start,
            Some(start + Days::new(6)),
            Some(AdmissionType::Emergent),
            Some(false),
            vec![sud.clone()],
            vec![],
        )
        .unwrap();
        r.push_encounter(e).unwrap();
    }
    for v in 0..6u64 {
        let e = Encounter::new(
            id("enc"),
            EncounterClass::Emergency,
            day(40 + v * 80),
            None,
            None,
            None,
            vec![sud.clone()],
            vec![],
        )
        .unwrap();
        r.push_encounter(e).unwrap();
    }
    for v in 0..40u64 {
        let e = Encounter::new(
            id("enc"),
            EncounterClass::Outpatient,
            day(10 + v * 13),
            None,
            None,
            None,
            vec![sud.clone()],
            vec![],
        )
        .unwrap();
        r.push_encounter(e).unwrap();
    }
    let kinds = [
        (ObservationKind::HbA1c, 7.4, "%"),
        (ObservationKind::Hemoglobin, 12.1, "g/dL"),
        (ObservationKind::Sodium, 137.0, "mmol/L"),
        (ObservationKind::HeartRate, 84.0, "/min"),
    ];
    for i in 0..120u64 {
        let (k, v, u) = kinds[(i % 4) as usize];
        r.push_observation(
            Observation::quantity(id("obs"), k, None, v + (i % 5) as f64 * 0.1, u, day(i * 4))
                .unwrap(),
        )
        .unwrap();
    }
    for i in 0..60u64 {
        r.push_blood_pressure(
            BloodPressure::new(id("bp"), 128.0 + (i % 15) as f64, 80.0, day(i * 9)).unwrap(),
        )
        .unwrap();
    }
    for (i, name) in [
        "Sertraline",
        "Naltrexone",
        "Gabapentin",
        "Metformin",
        "Lisinopril",
        "Thiamine",
        "Trazodone",
        "Buprenorphine/naloxone",
        "Clonidine",
        "Hydroxyzine",
        "Acamprosate",
        "Folic acid",
    ]
    .iter()
    .enumerate()
    {
        let m = Medication::new(
            id("med"),
            name.to_string(),
            None,
            Some(Dose::new(50.0, DoseUnit::Mg).unwrap()),
            Some("twice daily".into()),
            day(i as u64 * 30),
            None,
            MedicationStatus::Active,
        )
        .unwrap();
        r.push_medication(m).unwrap();
    }
    for i in 0..30u64 {
        r.push_evaluation(
            Evaluation::scored(id("eval"), Instrument::Phq9, (i % 20) as f64, day(i * 18)).unwrap(),
        )
        .unwrap();
    }
    r
}

fn benches(c: &mut Criterion) {
    let r = patient();
    let as_of = day(540);
    c.bench_function("care_gaps_all_rules", |b| {
        b.iter(|| gaps::gaps(black_box(&r), as_of).unwrap())
    });
    c.bench_function("lace_hospital_assess", |b| {
        b.iter(|| readmission::assess(black_box(&r), None).unwrap())
    });
    let opts = SummaryOptions {
        as_of,
        since: None,
        max_per_section: 10,
    };
    c.bench_function("extractive_summary", |b| {
        b.iter(|| summary::summarize(black_box(&r), &opts))
    });
    let s = summary::summarize(&r, &opts);
    let roles = RoleRedaction::new([("clinician".to_string(), OutputRedaction::Keep)]);
    c.bench_function("summary_phi_scan_and_tag_redaction", |b| {
        b.iter(|| summary::redact_summary(black_box(&s), &roles, "analyst"))
    });
    let text = s.text();
    c.bench_function("dose_check_summary_text", |b| {
        b.iter(|| dose::check_text(black_box(&text)))
    });
}

criterion_group!(group, benches);
criterion_main!(group);
