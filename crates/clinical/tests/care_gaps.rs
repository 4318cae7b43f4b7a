//! Care-gap rules at their edges: ages at the boundaries, each exclusion, the last test just
//! inside and just outside the window, never screened.

mod common;

use clinical::gaps::{self, MeasureId, Outcome};
use clinical::model::{
    AdmissionType, CodeSystem, DoseUnit, EncounterClass as EC, Instrument, ObservationKind as K,
    Sex,
};
use common::{P, d, sid};

/// Period for most tests: 2024-07-01 ..= 2025-06-30.
const AS_OF: &str = "2025-06-30";

fn outcome(p: &P, m: MeasureId, comp: &str, as_of: &str) -> Outcome {
    gaps::evaluate(&p.r, d(as_of))
        .unwrap()
        .into_iter()
        .find(|r| r.info.measure == m && r.info.component == comp)
        .unwrap()
        .outcome
}

fn is_gap(o: &Outcome) -> bool {
    matches!(o, Outcome::Gap(_))
}

fn gap_due(o: &Outcome) -> String {
    match o {
        Outcome::Gap(g) => g.due.to_string(),
        other => panic!("expected a gap, got {other:?}"),
    }
}

// ---------- CMS130 colorectal ----------

#[test]
fn cms130_age_band_is_46_to_75_at_period_end() {
    for (age, eligible) in [(45, false), (46, true), (75, true), (76, false)] {
        let p = P::aged(age, AS_OF, Sex::Male);
        let o = outcome(&p, MeasureId::Cms130, "", AS_OF);
        assert_eq!(is_gap(&o), eligible, "age {age}: {o:?}");
        if !eligible {
            assert!(matches!(o, Outcome::NotEligible(_)));
        }
    }
}

#[test]
fn cms130_never_screened_is_a_gap_due_today() {
    let p = P::aged(60, AS_OF, Sex::Female);
    let o = outcome(&p, MeasureId::Cms130, "", AS_OF);
    assert_eq!(gap_due(&o), AS_OF);
}

#[test]
fn cms130_colonoscopy_counts_for_the_period_and_nine_years_before() {
    let inside = P::aged(60, AS_OF, Sex::Female).cpt("45378", "2015-07-01");
    assert!(matches!(
        outcome(&inside, MeasureId::Cms130, "", AS_OF),
        Outcome::Met(_)
    ));
    let outside = P::aged(60, AS_OF, Sex::Female).cpt("45378", "2015-06-30");
    let o = outcome(&outside, MeasureId::Cms130, "", AS_OF);
    assert_eq!(gap_due(&o), "2025-06-30", "lapsed ten years after the test");
    if let Outcome::Gap(g) = o {
        assert_eq!(g.evidence, vec![sid("proc-1")]);
    }
}

#[test]
fn cms130_fobt_counts_only_in_the_period() {
    let inside = P::aged(60, AS_OF, Sex::Male).test(K::FecalOccultBlood, "2024-07-01");
    assert!(matches!(
        outcome(&inside, MeasureId::Cms130, "", AS_OF),
        Outcome::Met(_)
    ));
    let outside = P::aged(60, AS_OF, Sex::Male).test(K::FecalOccultBlood, "2024-06-30");
    assert!(is_gap(&outcome(&outside, MeasureId::Cms130, "", AS_OF)));
    let dna = P::aged(60, AS_OF, Sex::Male).test(K::FitDna, "2022-07-01");
    assert!(matches!(
        outcome(&dna, MeasureId::Cms130, "", AS_OF),
        Outcome::Met(_)
    ));
    let dna_old = P::aged(60, AS_OF, Sex::Male).test(K::FitDna, "2022-06-30");
    assert!(is_gap(&outcome(&dna_old, MeasureId::Cms130, "", AS_OF)));
    let sig = P::aged(60, AS_OF, Sex::Male).cpt("45330", "2020-07-01");
    assert!(matches!(
        outcome(&sig, MeasureId::Cms130, "", AS_OF),
        Outcome::Met(_)
    ));
}

#[test]
fn cms130_exclusions() {
    let cancer = P::aged(60, AS_OF, Sex::Male).dx("C18.9", "2010-01-01");
    assert!(matches!(
        outcome(&cancer, MeasureId::Cms130, "", AS_OF),
        Outcome::Excluded { .. }
    ));
    let colectomy = P::aged(60, AS_OF, Sex::Male).cpt("44150", "2012-01-01");
    assert!(matches!(
        outcome(&colectomy, MeasureId::Cms130, "", AS_OF),
        Outcome::Excluded { .. }
    ));
    let hospice = P::aged(60, AS_OF, Sex::Male).hospice("2025-01-01");
    assert!(matches!(
        outcome(&hospice, MeasureId::Cms130, "", AS_OF),
        Outcome::Excluded { .. }
    ));
    let old_hospice = P::aged(60, AS_OF, Sex::Male).hospice("2024-06-30");
    assert!(
        is_gap(&outcome(&old_hospice, MeasureId::Cms130, "", AS_OF)),
        "hospice before the period does not exclude"
    );
    let palliative = P::aged(60, AS_OF, Sex::Male).dx("Z51.5", "2025-02-01");
    assert!(matches!(
        outcome(&palliative, MeasureId::Cms130, "", AS_OF),
        Outcome::Excluded { .. }
    ));
}

#[test]
fn cms130_without_birth_date_is_insufficient_data() {
    let p = P::unknown_birth(Some(Sex::Male));
    assert_eq!(
        outcome(&p, MeasureId::Cms130, "", AS_OF),
        Outcome::InsufficientData("birth date")
    );
}

// ---------- CMS125 breast ----------

#[test]
fn cms125_women_52_to_74() {
    for (age, eligible) in [(51, false), (52, true), (74, true), (75, false)] {
        let p = P::aged(age, AS_OF, Sex::Female);
        assert_eq!(
            is_gap(&outcome(&p, MeasureId::Cms125, "", AS_OF)),
            eligible,
            "age {age}"
        );
    }
    let man = P::aged(60, AS_OF, Sex::Male);
    assert!(matches!(
        outcome(&man, MeasureId::Cms125, "", AS_OF),
        Outcome::NotEligible(_)
    ));
    let unknown = P::unknown_birth(None);
    assert_eq!(
        outcome(&unknown, MeasureId::Cms125, "", AS_OF),
        Outcome::InsufficientData("sex")
    );
}

#[test]
fn cms125_mammogram_window_is_27_months() {
    let inside = P::aged(60, AS_OF, Sex::Female).cpt("77067", "2023-03-31");
    assert!(matches!(
        outcome(&inside, MeasureId::Cms125, "", AS_OF),
        Outcome::Met(_)
    ));
    let outside = P::aged(60, AS_OF, Sex::Female).cpt("77067", "2023-03-30");
    assert_eq!(
        gap_due(&outcome(&outside, MeasureId::Cms125, "", AS_OF)),
        "2025-06-30"
    );
}

#[test]
fn cms125_bilateral_mastectomy_excludes_but_one_side_does_not() {
    let both = P::aged(60, AS_OF, Sex::Female).dx("Z90.13", "2015-01-01");
    assert!(matches!(
        outcome(&both, MeasureId::Cms125, "", AS_OF),
        Outcome::Excluded { .. }
    ));
    let right = P::aged(60, AS_OF, Sex::Female).dx("Z90.11", "2015-01-01");
    assert!(is_gap(&outcome(&right, MeasureId::Cms125, "", AS_OF)));
    let two = P::aged(60, AS_OF, Sex::Female)
        .dx("Z90.11", "2015-01-01")
        .dx("Z90.12", "2018-01-01");
    assert!(matches!(
        outcome(&two, MeasureId::Cms125, "", AS_OF),
        Outcome::Excluded { .. }
    ));
}

// ---------- CMS124 cervical ----------

#[test]
fn cms124_ages_and_windows() {
    for (age, eligible) in [(23, false), (24, true), (64, true), (65, false)] {
        let p = P::aged(age, AS_OF, Sex::Female);
        assert_eq!(
            is_gap(&outcome(&p, MeasureId::Cms124, "", AS_OF)),
            eligible,
            "age {age}"
        );
    }
    let pap_in = P::aged(40, AS_OF, Sex::Female).test(K::CervicalCytology, "2022-07-01");
    assert!(matches!(
        outcome(&pap_in, MeasureId::Cms124, "", AS_OF),
        Outcome::Met(_)
    ));
    let pap_out = P::aged(40, AS_OF, Sex::Female).test(K::CervicalCytology, "2022-06-30");
    assert!(is_gap(&outcome(&pap_out, MeasureId::Cms124, "", AS_OF)));
    let hpv_in = P::aged(40, AS_OF, Sex::Female).test(K::HpvTest, "2020-07-01");
    assert!(matches!(
        outcome(&hpv_in, MeasureId::Cms124, "", AS_OF),
        Outcome::Met(_)
    ));
    // Born 1985-01-01: 29 at a 2014 test, so the HPV test does not count.
    let young_hpv = P::new("1985-01-01", Sex::Female).test(K::HpvTest, "2014-06-01");
    assert!(is_gap(&outcome(
        &young_hpv,
        MeasureId::Cms124,
        "",
        "2018-06-30"
    )));
    let hyst = P::aged(40, AS_OF, Sex::Female).dx("Z90.710", "2010-01-01");
    assert!(matches!(
        outcome(&hyst, MeasureId::Cms124, "", AS_OF),
        Outcome::Excluded { .. }
    ));
}

// ---------- CMS122 HbA1c > 9 % ----------

fn diabetic(age: i32) -> P {
    P::aged(age, AS_OF, Sex::Female).dx("E11.9", "2018-01-01")
}

#[test]
fn cms122_no_hba1c_in_the_period_counts_as_poor_control() {
    let p = diabetic(50);
    assert!(is_gap(&outcome(&p, MeasureId::Cms122, "", AS_OF)));
    let old = diabetic(50).lab(K::HbA1c, 6.5, "%", "2024-06-30");
    assert!(is_gap(&outcome(&old, MeasureId::Cms122, "", AS_OF)));
}

#[test]
fn cms122_threshold_is_strictly_above_nine() {
    let nine = diabetic(50).lab(K::HbA1c, 9.0, "%", "2025-01-01");
    assert!(matches!(
        outcome(&nine, MeasureId::Cms122, "", AS_OF),
        Outcome::Met(_)
    ));
    let above = diabetic(50).lab(K::HbA1c, 9.1, "%", "2025-01-01");
    assert!(is_gap(&outcome(&above, MeasureId::Cms122, "", AS_OF)));
    let improved =
        diabetic(50)
            .lab(K::HbA1c, 9.5, "%", "2024-09-01")
            .lab(K::HbA1c, 7.0, "%", "2025-03-01");
    assert!(
        matches!(
            outcome(&improved, MeasureId::Cms122, "", AS_OF),
            Outcome::Met(_)
        ),
        "the most recent result counts"
    );
}

#[test]
fn cms122_denominator() {
    for (age, eligible) in [(17, false), (18, true), (75, true), (76, false)] {
        let p = diabetic(age);
        assert_eq!(
            is_gap(&outcome(&p, MeasureId::Cms122, "", AS_OF)),
            eligible,
            "age {age}"
        );
    }
    let none = P::aged(50, AS_OF, Sex::Male);
    assert!(matches!(
        outcome(&none, MeasureId::Cms122, "", AS_OF),
        Outcome::NotEligible(_)
    ));
    let resolved = P::aged(50, AS_OF, Sex::Male).resolved_dx("E11.9", "2018-01-01", "2024-06-30");
    assert!(matches!(
        outcome(&resolved, MeasureId::Cms122, "", AS_OF),
        Outcome::NotEligible(_)
    ));
    let hospice = diabetic(50).hospice("2025-02-01");
    assert!(matches!(
        outcome(&hospice, MeasureId::Cms122, "", AS_OF),
        Outcome::Excluded { .. }
    ));
}

// ---------- CMS131 eye exam ----------

#[test]
fn cms131_eye_exam_in_period_or_negative_exam_the_year_before() {
    let none = diabetic(50);
    assert_eq!(
        gap_due(&outcome(&none, MeasureId::Cms131, "", AS_OF)),
        AS_OF
    );
    let inside = diabetic(50).cpt("92014", "2024-07-01");
    assert!(matches!(
        outcome(&inside, MeasureId::Cms131, "", AS_OF),
        Outcome::Met(_)
    ));
    let negative_prior = diabetic(50).cpt("2023F", "2023-07-01");
    assert!(matches!(
        outcome(&negative_prior, MeasureId::Cms131, "", AS_OF),
        Outcome::Met(_)
    ));
    let negative_too_old = diabetic(50).cpt("2023F", "2023-06-30");
    assert!(is_gap(&outcome(
        &negative_too_old,
        MeasureId::Cms131,
        "",
        AS_OF
    )));
    let plain_prior = diabetic(50).cpt("92014", "2024-06-30");
    assert_eq!(
        gap_due(&outcome(&plain_prior, MeasureId::Cms131, "", AS_OF)),
        "2025-06-30"
    );
}

// ---------- CMS165 blood pressure ----------

fn hypertensive(age: i32, onset: &str) -> P {
    P::aged(age, AS_OF, Sex::Male).dx("I10", onset)
}

#[test]
fn cms165_hypertension_must_start_in_the_first_six_months() {
    let early = hypertensive(60, "2024-12-31");
    assert!(
        is_gap(&outcome(&early, MeasureId::Cms165, "", AS_OF)),
        "no reading = not controlled"
    );
    let late = hypertensive(60, "2025-01-01");
    assert!(matches!(
        outcome(&late, MeasureId::Cms165, "", AS_OF),
        Outcome::NotEligible(_)
    ));
    for (age, eligible) in [(17, false), (18, true), (85, true), (86, false)] {
        let p = hypertensive(age, "2020-01-01");
        assert_eq!(
            is_gap(&outcome(&p, MeasureId::Cms165, "", AS_OF)),
            eligible,
            "age {age}"
        );
    }
}

#[test]
fn cms165_controlled_means_below_140_over_90_on_the_latest_day() {
    let ok = hypertensive(60, "2020-01-01").bp(139.0, 89.0, "2025-05-01");
    assert!(matches!(
        outcome(&ok, MeasureId::Cms165, "", AS_OF),
        Outcome::Met(_)
    ));
    let sys = hypertensive(60, "2020-01-01").bp(140.0, 80.0, "2025-05-01");
    assert!(is_gap(&outcome(&sys, MeasureId::Cms165, "", AS_OF)));
    let dia = hypertensive(60, "2020-01-01").bp(130.0, 90.0, "2025-05-01");
    assert!(is_gap(&outcome(&dia, MeasureId::Cms165, "", AS_OF)));
    let lowest = hypertensive(60, "2020-01-01")
        .bp(150.0, 95.0, "2025-05-01")
        .bp(135.0, 85.0, "2025-05-01");
    assert!(
        matches!(
            outcome(&lowest, MeasureId::Cms165, "", AS_OF),
            Outcome::Met(_)
        ),
        "lowest of the day"
    );
    let latest = hypertensive(60, "2020-01-01")
        .bp(120.0, 70.0, "2025-01-01")
        .bp(150.0, 95.0, "2025-05-01");
    assert!(is_gap(&outcome(&latest, MeasureId::Cms165, "", AS_OF)));
}

#[test]
fn cms165_exclusions() {
    let esrd = hypertensive(60, "2020-01-01").dx("N18.6", "2022-01-01");
    assert!(matches!(
        outcome(&esrd, MeasureId::Cms165, "", AS_OF),
        Outcome::Excluded { .. }
    ));
    let pregnant = P::aged(30, AS_OF, Sex::Female)
        .dx("I10", "2020-01-01")
        .dx("O09.90", "2025-01-01");
    assert!(matches!(
        outcome(&pregnant, MeasureId::Cms165, "", AS_OF),
        Outcome::Excluded { .. }
    ));
    let dialysis = hypertensive(60, "2020-01-01").cpt("90935", "2023-01-01");
    assert!(matches!(
        outcome(&dialysis, MeasureId::Cms165, "", AS_OF),
        Outcome::Excluded { .. }
    ));
}

// ---------- CMS147 influenza ----------

#[test]
fn cms147_never_vaccinated_in_season_is_a_gap() {
    let p = P::aged(40, "2025-01-15", Sex::Male);
    assert_eq!(
        gap_due(&outcome(&p, MeasureId::Cms147, "", "2025-01-15")),
        "2025-01-15"
    );
    let out_of_season = P::aged(40, AS_OF, Sex::Male);
    assert!(matches!(
        outcome(&out_of_season, MeasureId::Cms147, "", AS_OF),
        Outcome::NotEligible(_)
    ));
}

#[test]
fn cms147_season_starts_august_first() {
    let inside = P::aged(40, "2025-01-15", Sex::Male).vaccine("141", "2024-08-01");
    assert!(matches!(
        outcome(&inside, MeasureId::Cms147, "", "2025-01-15"),
        Outcome::Met(_)
    ));
    let before = P::aged(40, "2025-01-15", Sex::Male).vaccine("141", "2024-07-31");
    assert!(is_gap(&outcome(
        &before,
        MeasureId::Cms147,
        "",
        "2025-01-15"
    )));
    let cpt = P::aged(40, "2024-10-15", Sex::Male).cpt("90686", "2024-10-01");
    assert!(matches!(
        outcome(&cpt, MeasureId::Cms147, "", "2024-10-15"),
        Outcome::Met(_)
    ));
}

#[test]
fn cms147_infants_under_six_months_are_not_eligible() {
    let baby = P::new("2024-08-01", Sex::Female);
    assert!(matches!(
        outcome(&baby, MeasureId::Cms147, "", "2025-01-31"),
        Outcome::NotEligible(_)
    ));
    let six = P::new("2024-07-31", Sex::Female);
    assert!(is_gap(&outcome(&six, MeasureId::Cms147, "", "2025-01-31")));
}

// ---------- CMS127 pneumococcal ----------

#[test]
fn cms127_65_and_older_ever_vaccinated() {
    let young = P::aged(64, AS_OF, Sex::Male);
    assert!(matches!(
        outcome(&young, MeasureId::Cms127, "", AS_OF),
        Outcome::NotEligible(_)
    ));
    let never = P::aged(65, AS_OF, Sex::Male);
    assert!(is_gap(&outcome(&never, MeasureId::Cms127, "", AS_OF)));
    let long_ago = P::aged(80, AS_OF, Sex::Male).vaccine("33", "2012-10-01");
    assert!(matches!(
        outcome(&long_ago, MeasureId::Cms127, "", AS_OF),
        Outcome::Met(_)
    ));
}

// ---------- CMS2 depression ----------

#[test]
fn cms2_screening_and_follow_up() {
    let never = P::aged(30, AS_OF, Sex::Female);
    assert!(is_gap(&outcome(
        &never,
        MeasureId::Cms2,
        "screening",
        AS_OF
    )));
    let negative = P::aged(30, AS_OF, Sex::Female).eval(Instrument::Phq9, 9.0, "2025-03-01");
    assert!(matches!(
        outcome(&negative, MeasureId::Cms2, "screening", AS_OF),
        Outcome::Met(_)
    ));
    assert!(matches!(
        outcome(&negative, MeasureId::Cms2, "follow_up", AS_OF),
        Outcome::NotEligible(_)
    ));
    let positive = P::aged(30, AS_OF, Sex::Female).eval(Instrument::Phq9, 10.0, "2025-03-01");
    assert_eq!(
        gap_due(&outcome(&positive, MeasureId::Cms2, "follow_up", AS_OF)),
        "2025-03-03"
    );
    let followed = P::aged(30, AS_OF, Sex::Female)
        .eval(Instrument::Phq9, 15.0, "2025-03-01")
        .referral("2025-03-03");
    assert!(matches!(
        outcome(&followed, MeasureId::Cms2, "follow_up", AS_OF),
        Outcome::Met(_)
    ));
    let late = P::aged(30, AS_OF, Sex::Female)
        .eval(Instrument::Phq9, 15.0, "2025-03-01")
        .referral("2025-03-04");
    assert!(is_gap(&outcome(&late, MeasureId::Cms2, "follow_up", AS_OF)));
    let ssri = P::aged(30, AS_OF, Sex::Female)
        .eval(Instrument::Phq2, 4.0, "2025-03-01")
        .med(
            "Sertraline",
            Some((50.0, DoseUnit::Mg)),
            Some("daily"),
            "2025-03-02",
        );
    assert!(matches!(
        outcome(&ssri, MeasureId::Cms2, "follow_up", AS_OF),
        Outcome::Met(_)
    ));
}

#[test]
fn cms2_prior_depression_diagnosis_excludes_and_age_starts_at_12() {
    let prior = P::aged(30, AS_OF, Sex::Female).dx("F32.9", "2020-01-01");
    assert!(matches!(
        outcome(&prior, MeasureId::Cms2, "screening", AS_OF),
        Outcome::Excluded { .. }
    ));
    // 12 at period start (2024-07-01): born 2012-07-01.
    let twelve = P::new("2012-07-01", Sex::Male);
    assert!(is_gap(&outcome(
        &twelve,
        MeasureId::Cms2,
        "screening",
        AS_OF
    )));
    let eleven = P::new("2012-07-02", Sex::Male);
    assert!(matches!(
        outcome(&eleven, MeasureId::Cms2, "screening", AS_OF),
        Outcome::NotEligible(_)
    ));
}

// ---------- CMS138 tobacco ----------

#[test]
fn cms138_screening_and_cessation() {
    let never = P::aged(40, AS_OF, Sex::Male);
    assert!(is_gap(&outcome(
        &never,
        MeasureId::Cms138,
        "screening",
        AS_OF
    )));
    let nonuser = P::aged(40, AS_OF, Sex::Male).tobacco(false, "2025-01-01");
    assert!(matches!(
        outcome(&nonuser, MeasureId::Cms138, "screening", AS_OF),
        Outcome::Met(_)
    ));
    assert!(matches!(
        outcome(&nonuser, MeasureId::Cms138, "cessation", AS_OF),
        Outcome::NotEligible(_)
    ));
    let user = P::aged(40, AS_OF, Sex::Male).tobacco(true, "2025-01-01");
    assert!(is_gap(&outcome(
        &user,
        MeasureId::Cms138,
        "cessation",
        AS_OF
    )));
    let counseled = P::aged(40, AS_OF, Sex::Male)
        .tobacco(true, "2025-01-01")
        .cpt("99406", "2025-01-01");
    assert!(matches!(
        outcome(&counseled, MeasureId::Cms138, "cessation", AS_OF),
        Outcome::Met(_)
    ));
    let six_months_before = P::aged(40, AS_OF, Sex::Male)
        .tobacco(true, "2025-01-01")
        .cpt("99406", "2024-01-01");
    assert!(matches!(
        outcome(&six_months_before, MeasureId::Cms138, "cessation", AS_OF),
        Outcome::Met(_)
    ));
    let too_early = P::aged(40, AS_OF, Sex::Male)
        .tobacco(true, "2025-01-01")
        .cpt("99406", "2023-12-31");
    assert!(is_gap(&outcome(
        &too_early,
        MeasureId::Cms138,
        "cessation",
        AS_OF
    )));
    let patch = P::aged(40, AS_OF, Sex::Male)
        .tobacco(true, "2025-01-01")
        .med(
            "Nicotine patch",
            Some((21.0, DoseUnit::MgPer24h)),
            Some("daily"),
            "2025-01-02",
        );
    assert!(matches!(
        outcome(&patch, MeasureId::Cms138, "cessation", AS_OF),
        Outcome::Met(_)
    ));
    let stale = P::aged(40, AS_OF, Sex::Male).tobacco(false, "2024-06-30");
    assert!(
        is_gap(&outcome(&stale, MeasureId::Cms138, "screening", AS_OF)),
        "a screen before the period does not count"
    );
}

// ---------- CMS137 SUD initiation and engagement ----------

fn sud_episode() -> P {
    P::aged(35, AS_OF, Sex::Male).encounter(
        EC::Outpatient,
        "2025-03-01",
        Some("2025-03-01"),
        None,
        &["F11.20"],
    )
}

#[test]
fn cms137_initiation_within_14_days() {
    let none = sud_episode();
    assert_eq!(
        gap_due(&outcome(&none, MeasureId::Cms137, "initiation", AS_OF)),
        "2025-03-15"
    );
    assert!(is_gap(&outcome(
        &none,
        MeasureId::Cms137,
        "engagement",
        AS_OF
    )));
    let day14 = sud_episode().encounter(EC::Outpatient, "2025-03-15", None, None, &["F11.20"]);
    assert!(matches!(
        outcome(&day14, MeasureId::Cms137, "initiation", AS_OF),
        Outcome::Met(_)
    ));
    let day15 = sud_episode().encounter(EC::Outpatient, "2025-03-16", None, None, &["F11.20"]);
    assert!(is_gap(&outcome(
        &day15,
        MeasureId::Cms137,
        "initiation",
        AS_OF
    )));
    let mat = sud_episode().med(
        "Buprenorphine/naloxone",
        Some((8.0, DoseUnit::Mg)),
        Some("daily"),
        "2025-03-05",
    );
    assert!(matches!(
        outcome(&mat, MeasureId::Cms137, "initiation", AS_OF),
        Outcome::Met(_)
    ));
}

#[test]
fn cms137_engagement_needs_two_events_within_34_days_or_one_long_acting() {
    let base = || sud_episode().encounter(EC::Outpatient, "2025-03-05", None, None, &["F11.20"]);
    let two = base()
        .encounter(EC::Outpatient, "2025-03-20", None, None, &["F11.20"])
        .encounter(EC::Telehealth, "2025-04-08", None, None, &["F11.20"]);
    assert!(matches!(
        outcome(&two, MeasureId::Cms137, "engagement", AS_OF),
        Outcome::Met(_)
    ));
    let one_late = base()
        .encounter(EC::Outpatient, "2025-03-20", None, None, &["F11.20"])
        .encounter(EC::Outpatient, "2025-04-09", None, None, &["F11.20"]);
    assert_eq!(
        gap_due(&outcome(&one_late, MeasureId::Cms137, "engagement", AS_OF)),
        "2025-04-08"
    );
    let xr = base().med(
        "Naltrexone extended-release",
        Some((380.0, DoseUnit::Mg)),
        Some("every 4 weeks"),
        "2025-03-10",
    );
    assert!(matches!(
        outcome(&xr, MeasureId::Cms137, "engagement", AS_OF),
        Outcome::Met(_)
    ));
}

#[test]
fn cms137_episode_rules() {
    let history = P::aged(35, AS_OF, Sex::Male)
        .dx("F11.20", "2025-01-05")
        .encounter(EC::Outpatient, "2025-03-01", None, None, &["F11.20"]);
    assert!(
        matches!(
            outcome(&history, MeasureId::Cms137, "initiation", AS_OF),
            Outcome::NotEligible(_)
        ),
        "SUD diagnosis 55 days before: not a new episode"
    );
    let old_history = P::aged(35, AS_OF, Sex::Male)
        .dx("F11.20", "2024-12-30")
        .encounter(EC::Outpatient, "2025-03-01", None, None, &["F11.20"]);
    assert!(
        is_gap(&outcome(
            &old_history,
            MeasureId::Cms137,
            "initiation",
            AS_OF
        )),
        "61 days before: new episode"
    );
    let stay = P::aged(35, AS_OF, Sex::Male).encounter(
        EC::Residential,
        "2025-03-01",
        Some("2025-03-20"),
        Some(AdmissionType::Urgent),
        &["F10.20"],
    );
    assert!(
        matches!(
            outcome(&stay, MeasureId::Cms137, "initiation", AS_OF),
            Outcome::Met(_)
        ),
        "a residential stay is the initiation"
    );
    let young = P::aged(12, AS_OF, Sex::Male).encounter(
        EC::Outpatient,
        "2025-03-01",
        None,
        None,
        &["F11.20"],
    );
    assert!(matches!(
        outcome(&young, MeasureId::Cms137, "initiation", AS_OF),
        Outcome::NotEligible(_)
    ));
    let nicotine = P::aged(35, AS_OF, Sex::Male).encounter(
        EC::Outpatient,
        "2025-03-01",
        None,
        None,
        &["F17.210"],
    );
    assert!(matches!(
        outcome(&nicotine, MeasureId::Cms137, "initiation", AS_OF),
        Outcome::NotEligible(_)
    ));
}

// ---------- FUA / FUM ----------

fn ed(dx: &[&str]) -> P {
    P::aged(30, AS_OF, Sex::Female).encounter(
        EC::Emergency,
        "2025-05-01",
        Some("2025-05-01"),
        None,
        dx,
    )
}

#[test]
fn fua_7_and_30_day_windows_include_the_visit_day() {
    let none = ed(&["F10.20"]);
    assert_eq!(
        gap_due(&outcome(&none, MeasureId::Fua, "7_day", AS_OF)),
        "2025-05-08"
    );
    assert_eq!(
        gap_due(&outcome(&none, MeasureId::Fua, "30_day", AS_OF)),
        "2025-05-31"
    );
    let day7 = ed(&["F10.20"]).encounter(EC::Outpatient, "2025-05-08", None, None, &["F10.20"]);
    assert!(matches!(
        outcome(&day7, MeasureId::Fua, "7_day", AS_OF),
        Outcome::Met(_)
    ));
    let day8 = ed(&["F10.20"]).encounter(EC::Outpatient, "2025-05-09", None, None, &["F10.20"]);
    assert!(is_gap(&outcome(&day8, MeasureId::Fua, "7_day", AS_OF)));
    assert!(matches!(
        outcome(&day8, MeasureId::Fua, "30_day", AS_OF),
        Outcome::Met(_)
    ));
    let day31 = ed(&["F10.20"]).encounter(EC::Outpatient, "2025-06-01", None, None, &["F10.20"]);
    assert!(is_gap(&outcome(&day31, MeasureId::Fua, "30_day", AS_OF)));
    let same_day = ed(&["F10.20"]).encounter(EC::Telehealth, "2025-05-01", None, None, &["F10.20"]);
    assert!(matches!(
        outcome(&same_day, MeasureId::Fua, "7_day", AS_OF),
        Outcome::Met(_)
    ));
    let mat = ed(&["F11.20"]).med(
        "Buprenorphine",
        Some((8.0, DoseUnit::Mg)),
        Some("daily"),
        "2025-05-03",
    );
    assert!(matches!(
        outcome(&mat, MeasureId::Fua, "7_day", AS_OF),
        Outcome::Met(_)
    ));
}

#[test]
fn fua_requires_a_principal_sud_diagnosis_and_excludes_admissions() {
    let secondary = ed(&["J45.909", "F10.20"]);
    assert!(matches!(
        outcome(&secondary, MeasureId::Fua, "7_day", AS_OF),
        Outcome::NotEligible(_)
    ));
    let admitted = ed(&["F10.20"]).encounter(
        EC::Inpatient,
        "2025-05-20",
        Some("2025-05-25"),
        Some(AdmissionType::Urgent),
        &["F10.20"],
    );
    assert!(matches!(
        outcome(&admitted, MeasureId::Fua, "7_day", AS_OF),
        Outcome::Excluded { .. }
    ));
    let young = P::aged(12, AS_OF, Sex::Female).encounter(
        EC::Emergency,
        "2025-05-01",
        None,
        None,
        &["F10.20"],
    );
    assert!(matches!(
        outcome(&young, MeasureId::Fua, "7_day", AS_OF),
        Outcome::NotEligible(_)
    ));
}

#[test]
fn fum_follow_up_needs_a_mental_health_principal_diagnosis() {
    let none = ed(&["F32.9"]);
    assert!(is_gap(&outcome(&none, MeasureId::Fum, "7_day", AS_OF)));
    let followed = ed(&["F32.9"]).encounter(EC::Outpatient, "2025-05-05", None, None, &["F33.1"]);
    assert!(matches!(
        outcome(&followed, MeasureId::Fum, "7_day", AS_OF),
        Outcome::Met(_)
    ));
    let other = ed(&["F32.9"]).encounter(EC::Outpatient, "2025-05-05", None, None, &["I10"]);
    assert!(is_gap(&outcome(&other, MeasureId::Fum, "7_day", AS_OF)));
    let self_harm = ed(&["T14.91XA"]);
    assert!(is_gap(&outcome(&self_harm, MeasureId::Fum, "7_day", AS_OF)));
}

// ---------- Whole-list behaviour ----------

#[test]
fn gaps_are_ordered_most_severe_first_and_ids_are_stable() {
    let p = ed(&["F10.20"]).dx("E11.9", "2015-01-01");
    let a = gaps::gaps(&p.r, d(AS_OF)).unwrap();
    let b = gaps::gaps(&p.r, d(AS_OF)).unwrap();
    assert_eq!(a, b);
    assert!(
        a.windows(2)
            .all(|w| w[0].info.priority >= w[1].info.priority)
    );
    assert_eq!(a[0].info.priority, gaps::Priority::Critical);
    let ids: Vec<String> = a.iter().map(|g| g.gap_id()).collect();
    assert!(ids.iter().all(|i| i.len() == 12 && i.starts_with("gap-")));
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
}

#[test]
fn a_birth_date_after_as_of_is_an_error_not_a_result() {
    let p = P::new("2030-01-01", Sex::Male);
    assert!(gaps::evaluate(&p.r, d(AS_OF)).is_err());
}

#[test]
fn every_measure_cites_its_version() {
    for m in gaps::MEASURES {
        assert!(
            m.source
                .contains(m.version.split_whitespace().next().unwrap()),
            "{}",
            m.name
        );
        assert!((0.0..=1.0).contains(&m.impact));
    }
    let _ = CodeSystem::Cpt;
}

#[test]
fn documented_priorities_and_impacts_match_the_catalogue() {
    use gaps::Priority::*;
    let documented = [
        (MeasureId::Cms130, "", High, 0.85),
        (MeasureId::Cms125, "", High, 0.80),
        (MeasureId::Cms124, "", Medium, 0.70),
        (MeasureId::Cms122, "", High, 0.80),
        (MeasureId::Cms131, "", Medium, 0.60),
        (MeasureId::Cms165, "", High, 0.80),
        (MeasureId::Cms147, "", Medium, 0.60),
        (MeasureId::Cms127, "", Medium, 0.55),
        (MeasureId::Cms2, "screening", Medium, 0.60),
        (MeasureId::Cms2, "follow_up", High, 0.80),
        (MeasureId::Cms138, "screening", Medium, 0.60),
        (MeasureId::Cms138, "cessation", High, 0.80),
        (MeasureId::Cms137, "initiation", Critical, 0.90),
        (MeasureId::Cms137, "engagement", High, 0.85),
        (MeasureId::Fua, "7_day", Critical, 0.90),
        (MeasureId::Fua, "30_day", High, 0.80),
        (MeasureId::Fum, "7_day", Critical, 0.90),
        (MeasureId::Fum, "30_day", High, 0.80),
    ];
    assert_eq!(documented.len(), gaps::MEASURES.len());
    for (m, c, p, i) in documented {
        let info = gaps::info(m, c);
        assert_eq!(
            (info.measure, info.component, info.priority, info.impact),
            (m, c, p, i)
        );
    }
}

// ---------- hospice and palliative care, measure by measure ----------

type Make = fn() -> P;

fn make_cases() -> Vec<(&'static str, Make, MeasureId, &'static str, &'static str)> {
    vec![
        (
            "CMS125",
            || P::aged(60, AS_OF, Sex::Female),
            MeasureId::Cms125,
            "",
            AS_OF,
        ),
        (
            "CMS124",
            || P::aged(40, AS_OF, Sex::Female),
            MeasureId::Cms124,
            "",
            AS_OF,
        ),
        ("CMS131", || diabetic(50), MeasureId::Cms131, "", AS_OF),
        (
            "CMS165",
            || hypertensive(60, "2020-01-01"),
            MeasureId::Cms165,
            "",
            AS_OF,
        ),
        (
            "CMS127",
            || P::aged(70, AS_OF, Sex::Male),
            MeasureId::Cms127,
            "",
            AS_OF,
        ),
    ]
}

#[test]
fn hospice_in_the_period_excludes_every_measure_that_lists_it_and_before_the_period_does_not() {
    let mut cases = make_cases();
    cases.push((
        "CMS147",
        || P::aged(40, "2025-01-15", Sex::Male),
        MeasureId::Cms147,
        "",
        "2025-01-15",
    ));
    cases.push((
        "CMS138",
        || P::aged(30, AS_OF, Sex::Male),
        MeasureId::Cms138,
        "screening",
        AS_OF,
    ));
    for (name, make, m, comp, as_of) in cases {
        assert!(
            is_gap(&outcome(&make(), m, comp, as_of)),
            "{name}: eligible and never done is a gap"
        );
        let in_period = make().hospice("2024-12-01");
        assert!(
            matches!(
                outcome(&in_period, m, comp, as_of),
                Outcome::Excluded { .. }
            ),
            "{name}: hospice in the period excludes"
        );
        let before = make().hospice("2023-06-01");
        assert!(
            is_gap(&outcome(&before, m, comp, as_of)),
            "{name}: hospice before the period does not exclude"
        );
    }
}

#[test]
fn palliative_care_in_the_period_excludes_every_measure_that_lists_it() {
    for (name, make, m, comp, as_of) in make_cases() {
        let palliative = make().dx("Z51.5", "2025-02-01");
        assert!(
            matches!(
                outcome(&palliative, m, comp, as_of),
                Outcome::Excluded { .. }
            ),
            "{name}: palliative care in the period excludes"
        );
    }
}
