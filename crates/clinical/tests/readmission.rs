//! LACE and HOSPITAL: worked examples computed by hand, every point boundary, insufficient data,
//! and monotonicity.

mod common;

use clinical::model::{AdmissionType, EncounterClass as EC, ObservationKind as K, Sex};
use clinical::readmission::{self, RiskTier, ScoreOutcome};
use common::{P, sid};
use proptest::prelude::*;

fn points(o: &ScoreOutcome) -> u8 {
    o.score().expect("scored").points
}

fn component(o: &ScoreOutcome, name: &str) -> u8 {
    o.score()
        .unwrap()
        .components
        .iter()
        .find(|c| c.name == name)
        .unwrap()
        .points
}

/// Worked example 1 (by hand):
/// index stay 2025-01-10 → 2025-01-18, emergent; LOS 8 days.
/// LACE: L = 5 (7–13 d); A = 3 (emergent); C: I50.9 CHF 1 + E11.9 diabetes 1 + N18.4 renal 2 = 4 →
/// 5 points; E: ED visits 2024-08-01, 2024-10-01, 2024-12-01 (2024-07-01 is more than 6 months
/// before) = 3 → 3. Total 5 + 3 + 5 + 3 = 16 → high.
/// HOSPITAL: H hemoglobin 11.5 (last in stay) < 12 → 1; O no → 0; S sodium 133 < 135 → 1;
/// P central line 36556 during the stay → 1; I emergent → 1; T 3 admissions in 12 months → 2;
/// L 8 ≥ 5 → 2. Total 8 → high. Both high → critical.
fn example_one() -> P {
    P::new("1948-03-01", Sex::Male)
        .dx("I50.9", "2019-01-01")
        .dx("E11.9", "2015-01-01")
        .dx("N18.4", "2021-01-01")
        .dx("F32.9", "2020-01-01")
        .encounter(EC::Emergency, "2024-07-01", None, None, &[])
        .encounter(EC::Emergency, "2024-08-01", None, None, &[])
        .encounter(EC::Emergency, "2024-10-01", None, None, &[])
        .encounter(EC::Emergency, "2024-12-01", None, None, &[])
        .encounter(
            EC::Inpatient,
            "2024-03-01",
            Some("2024-03-04"),
            Some(AdmissionType::Urgent),
            &[],
        )
        .encounter(
            EC::Inpatient,
            "2024-06-01",
            Some("2024-06-03"),
            Some(AdmissionType::Urgent),
            &[],
        )
        .encounter(
            EC::Inpatient,
            "2024-09-01",
            Some("2024-09-02"),
            Some(AdmissionType::Emergent),
            &[],
        )
        .encounter(
            EC::Inpatient,
            "2025-01-10",
            Some("2025-01-18"),
            Some(AdmissionType::Emergent),
            &["I50.9"],
        )
        .lab(K::Hemoglobin, 12.5, "g/dL", "2025-01-11")
        .lab(K::Hemoglobin, 11.5, "g/dL", "2025-01-17")
        .lab(K::Sodium, 133.0, "mmol/L", "2025-01-17")
        .cpt("36556", "2025-01-12")
}

#[test]
fn worked_example_one_is_critical() {
    let p = example_one();
    let a = readmission::assess(&p.r, None).unwrap();
    assert_eq!(a.encounter, sid("enc-12"));
    assert_eq!(component(&a.lace, "length_of_stay"), 5);
    assert_eq!(component(&a.lace, "acuity"), 3);
    assert_eq!(component(&a.lace, "charlson_comorbidity_index"), 5);
    assert_eq!(component(&a.lace, "ed_visits_previous_6_months"), 3);
    assert_eq!(points(&a.lace), 16);
    assert_eq!(a.lace.score().unwrap().tier, RiskTier::High);
    assert_eq!(component(&a.hospital, "hemoglobin_at_discharge"), 1);
    assert_eq!(component(&a.hospital, "oncology_service"), 0);
    assert_eq!(component(&a.hospital, "sodium_at_discharge"), 1);
    assert_eq!(component(&a.hospital, "procedure_during_stay"), 1);
    assert_eq!(component(&a.hospital, "index_admission_type"), 1);
    assert_eq!(component(&a.hospital, "admissions_previous_12_months"), 2);
    assert_eq!(component(&a.hospital, "length_of_stay"), 2);
    assert_eq!(points(&a.hospital), 8);
    assert_eq!(a.tier, Some(RiskTier::Critical));
    let expected = (16.0 / 19.0 + 8.0 / 13.0) / 2.0;
    assert!((a.risk_score.unwrap() - expected).abs() < 1e-12);
    assert_eq!(
        a.confidence_interval, None,
        "no published per-patient interval"
    );
    assert_eq!(a.interventions.len(), 3);
}

/// Worked example 2: elective, 2 days, no comorbidity, no ED visit, one prior admission,
/// hemoglobin 13.2, sodium 140, no procedure → LACE 2 + 0 + 0 + 0 = 2 (low); HOSPITAL 0 (low).
#[test]
fn worked_example_two_is_low_with_no_interventions() {
    let p = P::new("1980-05-05", Sex::Female)
        .encounter(
            EC::Inpatient,
            "2024-11-01",
            Some("2024-11-03"),
            Some(AdmissionType::Elective),
            &[],
        )
        .encounter(
            EC::Inpatient,
            "2025-02-01",
            Some("2025-02-03"),
            Some(AdmissionType::Elective),
            &["K35.80"],
        )
        .lab(K::Hemoglobin, 13.2, "g/dL", "2025-02-02")
        .lab(K::Sodium, 140.0, "mmol/L", "2025-02-02");
    let a = readmission::assess(&p.r, None).unwrap();
    assert_eq!(points(&a.lace), 2);
    assert_eq!(points(&a.hospital), 0);
    assert_eq!(
        component(&a.hospital, "admissions_previous_12_months"),
        0,
        "one prior admission scores 0"
    );
    assert_eq!(a.tier, Some(RiskTier::Low));
    assert!(a.interventions.is_empty());
}

/// Worked example 3: urgent (not emergent) same-day stay with metastatic cancer:
/// LACE L 0, A 0 (urgent is not emergent), C metastatic 6 (suppresses the localised tumour's 2)
/// → 5 points, E 0 → 5 (medium). HOSPITAL: H 10.9 → 1, O oncology → 2, S 136 → 0, P 0, I urgent → 1,
/// T 0, L 0 → 4 (low). Combined: medium.
#[test]
fn worked_example_three_urgent_oncology_day_case() {
    let mut p = P::new("1960-01-01", Sex::Female)
        .dx("C50.911", "2023-01-01")
        .dx("C78.00", "2024-06-01")
        .encounter(
            EC::Inpatient,
            "2025-03-03",
            Some("2025-03-03"),
            Some(AdmissionType::Urgent),
            &[],
        )
        .lab(K::Hemoglobin, 109.0, "g/L", "2025-03-03")
        .lab(K::Sodium, 136.0, "mmol/L", "2025-03-03");
    p.r.encounters[0].oncology_service = Some(true);
    let a = readmission::assess(&p.r, None).unwrap();
    assert_eq!(component(&a.lace, "length_of_stay"), 0);
    assert_eq!(component(&a.lace, "acuity"), 0);
    assert_eq!(component(&a.lace, "charlson_comorbidity_index"), 5);
    assert_eq!(points(&a.lace), 5);
    assert_eq!(component(&a.hospital, "oncology_service"), 2);
    assert_eq!(component(&a.hospital, "index_admission_type"), 1);
    assert_eq!(points(&a.hospital), 4);
    assert_eq!(a.tier, Some(RiskTier::Medium));
    assert_eq!(a.interventions.len(), 1);
}

#[test]
fn missing_measurements_make_hospital_insufficient_and_name_them() {
    let mut p = P::new("1950-01-01", Sex::Male).encounter(
        EC::Inpatient,
        "2025-01-01",
        Some("2025-01-12"),
        Some(AdmissionType::Emergent),
        &[],
    );
    p.r.encounters[0].oncology_service = None;
    let a = readmission::assess(&p.r, None).unwrap();
    match &a.hospital {
        ScoreOutcome::InsufficientData(m) => {
            assert!(m.contains(&"hemoglobin at discharge"));
            assert!(m.contains(&"sodium at discharge"));
            assert!(m.contains(&"discharge from an oncology service"));
        }
        other => panic!("{other:?}"),
    }
    // LACE still scores: L 5 + A 3 = 8 → medium, and the tier comes from LACE alone.
    assert_eq!(points(&a.lace), 8);
    assert_eq!(a.tier, Some(RiskTier::Medium));
    assert!((a.risk_score.unwrap() - 8.0 / 19.0).abs() < 1e-12);
}

#[test]
fn a_missing_admission_type_is_not_defaulted() {
    let p = P::new("1950-01-01", Sex::Male)
        .encounter(EC::Inpatient, "2025-01-01", Some("2025-01-12"), None, &[])
        .lab(K::Hemoglobin, 13.0, "g/dL", "2025-01-10")
        .lab(K::Sodium, 140.0, "mmol/L", "2025-01-10");
    let a = readmission::assess(&p.r, None).unwrap();
    assert_eq!(
        a.lace,
        ScoreOutcome::InsufficientData(vec!["acuity (admission type)"])
    );
    assert_eq!(
        a.hospital,
        ScoreOutcome::InsufficientData(vec!["index admission type"])
    );
    assert_eq!(a.tier, None);
    assert_eq!(a.risk_score, None);
}

#[test]
fn an_ongoing_stay_or_no_stay_is_reported() {
    let ongoing = P::new("1950-01-01", Sex::Male).encounter(
        EC::Inpatient,
        "2025-01-01",
        None,
        Some(AdmissionType::Emergent),
        &[],
    );
    let a = readmission::assess(&ongoing.r, Some(&sid("enc-1"))).unwrap();
    assert!(matches!(a.lace, ScoreOutcome::InsufficientData(_)));
    assert!(
        readmission::assess(&ongoing.r, None).is_err(),
        "no discharged stay"
    );
    let outpatient =
        P::new("1950-01-01", Sex::Male).encounter(EC::Outpatient, "2025-01-01", None, None, &[]);
    assert!(readmission::assess(&outpatient.r, Some(&sid("enc-1"))).is_err());
    assert!(readmission::assess(&outpatient.r, Some(&sid("nope"))).is_err());
}

#[test]
fn every_published_point_boundary() {
    for (los, pts) in [
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 4),
        (6, 4),
        (7, 5),
        (13, 5),
        (14, 7),
        (40, 7),
    ] {
        assert_eq!(readmission::lace_length_points(los), pts, "LOS {los}");
    }
    for (cci, pts) in [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (9, 5)] {
        assert_eq!(readmission::lace_charlson_points(cci), pts, "CCI {cci}");
    }
    for (ed, pts) in [(0, 0), (3, 3), (4, 4), (10, 4)] {
        assert_eq!(readmission::lace_ed_points(ed), pts, "ED {ed}");
    }
    for (adm, pts) in [(0, 0), (1, 0), (2, 2), (5, 2), (6, 5)] {
        assert_eq!(
            readmission::hospital_admission_points(adm),
            pts,
            "admissions {adm}"
        );
    }
    for (lace, tier) in [
        (4, RiskTier::Low),
        (5, RiskTier::Medium),
        (9, RiskTier::Medium),
        (10, RiskTier::High),
    ] {
        assert_eq!(readmission::lace_tier(lace), tier);
    }
    for (h, tier) in [
        (4, RiskTier::Low),
        (5, RiskTier::Medium),
        (6, RiskTier::Medium),
        (7, RiskTier::High),
    ] {
        assert_eq!(readmission::hospital_tier(h), tier);
    }
    // HOSPITAL L: 4 days 0, 5 days 2.
    for (end, pts) in [("2025-01-05", 0), ("2025-01-06", 2)] {
        let p = P::new("1950-01-01", Sex::Male)
            .encounter(
                EC::Inpatient,
                "2025-01-01",
                Some(end),
                Some(AdmissionType::Elective),
                &[],
            )
            .lab(K::Hemoglobin, 13.0, "g/dL", "2025-01-02")
            .lab(K::Sodium, 140.0, "mmol/L", "2025-01-02");
        let a = readmission::assess(&p.r, None).unwrap();
        assert_eq!(
            component(&a.hospital, "length_of_stay"),
            pts,
            "discharged {end}"
        );
    }
}

#[test]
fn charlson_applies_the_hierarchies() {
    assert_eq!(readmission::charlson_index(["E11.9"]), 1);
    assert_eq!(
        readmission::charlson_index(["E11.9", "E11.21"]),
        2,
        "complicated diabetes replaces uncomplicated"
    );
    assert_eq!(
        readmission::charlson_index(["C50.911", "C78.00"]),
        6,
        "metastatic replaces localised"
    );
    assert_eq!(
        readmission::charlson_index(["K70.30", "K72.90"]),
        3,
        "severe liver replaces mild"
    );
    assert_eq!(readmission::charlson_index(["F10.20", "I10"]), 0);
    assert_eq!(
        readmission::charlson_index(["I21.4", "I50.9", "J44.9", "B20"]),
        9
    );
}

#[test]
fn a_combined_tier_is_critical_only_when_both_scores_are_high() {
    use readmission::combined_tier;
    let s = |tier| readmission::Score {
        name: "x",
        points: 0,
        max_points: 1,
        components: vec![],
        tier,
    };
    assert_eq!(
        combined_tier(Some(&s(RiskTier::High)), Some(&s(RiskTier::High))),
        Some(RiskTier::Critical)
    );
    assert_eq!(
        combined_tier(Some(&s(RiskTier::High)), Some(&s(RiskTier::Low))),
        Some(RiskTier::High)
    );
    assert_eq!(
        combined_tier(Some(&s(RiskTier::High)), None),
        Some(RiskTier::High)
    );
    assert_eq!(combined_tier(None, None), None);
}

proptest! {
    #[test]
    fn points_never_decrease_when_an_input_worsens(a in 0i64..60, b in 0i64..60, c in 0u32..20, e in 0u32..20) {
        let (lo, hi) = (a.min(b), a.max(b));
        prop_assert!(readmission::lace_length_points(lo) <= readmission::lace_length_points(hi));
        prop_assert!(readmission::lace_charlson_points(c) <= readmission::lace_charlson_points(c + 1));
        prop_assert!(readmission::lace_ed_points(e) <= readmission::lace_ed_points(e + 1));
        prop_assert!(readmission::hospital_admission_points(e) <= readmission::hospital_admission_points(e + 1));
        prop_assert!(readmission::lace_tier(c as u8) <= readmission::lace_tier(c as u8 + 1));
        prop_assert!(readmission::hospital_tier(c as u8) <= readmission::hospital_tier(c as u8 + 1));
    }

    #[test]
    fn lower_hemoglobin_or_sodium_never_lowers_hospital(hb in 30u32..200, na in 100u32..170) {
        let score = |hb: f64, na: f64| {
            let p = P::new("1950-01-01", Sex::Male)
                .encounter(EC::Inpatient, "2025-01-01", Some("2025-01-03"), Some(AdmissionType::Elective), &[])
                .lab(K::Hemoglobin, hb, "g/dL", "2025-01-02")
                .lab(K::Sodium, na, "mmol/L", "2025-01-02");
            points(&readmission::assess(&p.r, None).unwrap().hospital)
        };
        let (hb, na) = (f64::from(hb) / 10.0, f64::from(na));
        prop_assert!(score(hb, na) <= score(hb - 1.0, na));
        prop_assert!(score(hb, na) <= score(hb, na - 1.0));
    }
}
