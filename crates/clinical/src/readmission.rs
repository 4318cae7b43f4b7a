//! Readmission risk: the LACE index and the HOSPITAL score, exactly as published, over the index
//! inpatient stay of a [`PatientRecord`].
//!
//! # LACE (van Walraven C, et al. CMAJ 2010;182(6):551–557, PMC2845681)
//!
//! Predicts death or unplanned readmission within 30 days of discharge. Derived on 4,812
//! patients in 11 Ontario hospitals; validated on 1,000,000 Ontario discharges, C-statistic
//! 0.684.
//!
//! | component | points |
//! |---|---|
//! | **L** length of stay (days) | < 1: 0 · 1: 1 · 2: 2 · 3: 3 · 4–6: 4 · 7–13: 5 · ≥ 14: 7 |
//! | **A** acuity: emergent admission (through the emergency department) | 3 |
//! | **C** Charlson comorbidity index | 0: 0 · 1: 1 · 2: 2 · 3: 3 · ≥ 4: 5 |
//! | **E** ED visits in the 6 months before admission | 0–3: that number · ≥ 4: 4 |
//!
//! Range 0–19; ≥ 10 is the usual high-risk cut-off.
//!
//! # HOSPITAL (Donzé J, et al. JAMA Intern Med 2013;173(8):632–638; international validation
//! Donzé J, et al. JAMA Intern Med 2016;176(4):496–502, PMC5070968)
//!
//! Predicts potentially avoidable 30-day readmission. Derived on 10,731 discharges (C 0.71);
//! validated on 117,065 discharges in 9 hospitals in 4 countries, C-statistic 0.72.
//!
//! | component | points |
//! |---|---|
//! | **H** hemoglobin at discharge < 12 g/dL | 1 |
//! | **O** discharge from an oncology service | 2 |
//! | **S** sodium at discharge < 135 mmol/L | 1 |
//! | **P** procedure during the stay | 1 |
//! | **I** index admission type urgent or emergent | 1 |
//! | **T** number of hospital admissions in the previous 12 months | 0–1: 0 · 2–5: 2 · > 5: 5 |
//! | **L** length of stay ≥ 5 days | 2 |
//!
//! Range 0–13; risk bands low 0–4, intermediate 5–6, high ≥ 7.
//!
//! # How the inputs are read from the record
//!
//! * Index stay: the encounter the caller names, or the most recently *discharged* inpatient
//!   stay. Length of stay = discharge date − admission date in days (a same-day stay is 0).
//! * LACE "A": only [`AdmissionType::Emergent`] scores 3 (the paper defines acuity as admission
//!   through the emergency department); `Urgent` scores 0 for LACE but 1 for HOSPITAL "I",
//!   whose definition is "urgent or emergent".
//! * Charlson: the Charlson et al. (1987) weights over the Quan et al. (Med Care 2005;43:1130)
//!   ICD-10 coding algorithm, applied to the diagnoses present during the stay (problem-list
//!   diagnoses active at some time between admission and discharge, and the stay's coded
//!   diagnoses); hierarchies applied (complicated over uncomplicated diabetes, severe over mild
//!   liver disease, metastatic over localised tumour).
//! * ED visits / prior admissions / procedures are **counts of records**: the record is taken as
//!   complete for the lookback, so none found counts 0. Measurements are different: a missing
//!   hemoglobin, sodium, admission type or oncology flag makes HOSPITAL **insufficient data**
//!   (naming the missing component), never a default. Hemoglobin and sodium "at discharge" are
//!   the last values dated within the stay.
//! * These scores were derived on acute medical admissions. For residential or withdrawal-
//!   management stays (Kipu's setting) they are outside their validated population; the crate
//!   computes them only for [`EncounterClass::Inpatient`] index stays.
//!
//! # Tiers (CoCo's `low|medium|high|critical`)
//!
//! Each score maps to its published bands: LACE 0–4 low, 5–9 medium, ≥ 10 high; HOSPITAL 0–4
//! low, 5–6 medium (the paper's "intermediate"), ≥ 7 high. The reported tier is the higher of the
//! two, and **critical** when both scores are in their high band. With only one score available
//! the tier comes from that one (and cannot be critical). This rule is phigate's, not the papers'.
//!
//! # Risk score and confidence interval
//!
//! `risk_score` is the mean over the available scores of points ÷ maximum points (LACE /19,
//! HOSPITAL /13): a normalised position on the published scale, **not a probability**. No
//! per-patient confidence interval is published for either score (the validations report a
//! C-statistic for the model, not an interval per score), so the interval is absent (`None`)
//! rather than invented.
//!
//! # Interventions
//!
//! A fixed catalogue ([`INTERVENTIONS`]) of randomised-trial-tested transitional care
//! programmes, each with the source of its reported effect. Selection: none for `low`; else the
//! entries whose targets overlap the non-zero score components, ordered by overlap then reported
//! effect, 1 for `medium`, 2 for `high`, 3 for `critical`.

use chrono::{Months, NaiveDate};
use serde::Serialize;

use crate::error::ClinicalError;
use crate::model::{
    AdmissionType, Encounter, EncounterClass, ObservationKind, PatientRecord, SourceId,
};

/// CoCo's `RiskTier`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// One score component as scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// `length_of_stay`, `acuity`, `charlson_comorbidity_index`, ...
    pub name: &'static str,
    /// The score's letter (`L`, `A`, ...).
    pub letter: char,
    /// Points awarded.
    pub points: u8,
    /// Maximum points of this component.
    pub max_points: u8,
    /// The input value as text (`8 days`, `emergent`, `12.1 g/dL`).
    pub value: String,
    /// The zero-point range as text.
    pub reference_range: &'static str,
    /// CoCo category: `clinical`, `utilization`, `social`.
    pub category: &'static str,
    /// Whether care can change it before discharge / after.
    pub modifiable: bool,
    /// Records the value came from.
    pub evidence: Vec<SourceId>,
}

/// A computed score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// `LACE` or `HOSPITAL`.
    pub name: &'static str,
    /// Total points.
    pub points: u8,
    /// Maximum possible.
    pub max_points: u8,
    /// The components.
    pub components: Vec<Component>,
    /// The score's own band mapped to a tier.
    pub tier: RiskTier,
}

/// A score, or why it cannot be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreOutcome {
    /// Computed.
    Scored(Score),
    /// Missing inputs, by component name.
    InsufficientData(Vec<&'static str>),
}

impl ScoreOutcome {
    /// The score, if computed.
    pub fn score(&self) -> Option<&Score> {
        match self {
            ScoreOutcome::Scored(s) => Some(s),
            ScoreOutcome::InsufficientData(_) => None,
        }
    }
}

/// Both scores over one index stay, the combined tier and the interventions.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// The index stay.
    pub encounter: SourceId,
    /// LACE.
    pub lace: ScoreOutcome,
    /// HOSPITAL.
    pub hospital: ScoreOutcome,
    /// Combined tier; `None` when neither score could be computed.
    pub tier: Option<RiskTier>,
    /// Normalised points (see the module docs); `None` when neither score could be computed.
    pub risk_score: Option<f64>,
    /// Always `None`: no published per-patient interval exists (see the module docs).
    pub confidence_interval: Option<(f64, f64)>,
    /// Selected interventions.
    pub interventions: Vec<&'static Intervention>,
}

/// A transitional-care intervention with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Intervention {
    /// Stable id.
    pub id: &'static str,
    /// Name.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Score components it addresses.
    pub target_factors: &'static [&'static str],
    /// Relative reduction reported by the cited trial (see `source`).
    pub estimated_risk_reduction: f64,
    /// A = randomised controlled trial evidence.
    pub evidence_level: &'static str,
    /// `easy|moderate|complex`.
    pub implementation_difficulty: &'static str,
    /// The trial and the figures the reduction is computed from.
    pub source: &'static str,
}

/// The catalogue.
pub static INTERVENTIONS: &[Intervention] = &[
    Intervention {
        id: "int-apn",
        name: "Advanced practice nurse transitional care",
        description: "Discharge planning and home follow-up by an advanced practice nurse for 4 weeks after discharge",
        target_factors: &[
            "charlson_comorbidity_index",
            "admissions_previous_12_months",
            "length_of_stay",
            "oncology_service",
        ],
        estimated_risk_reduction: 0.45,
        evidence_level: "A",
        implementation_difficulty: "complex",
        source: "Naylor MD, et al. JAMA 1999;281(7):613-620: readmitted by 24 weeks 20.3% vs 37.1% (1 - 20.3/37.1 = 0.45)",
    },
    Intervention {
        id: "int-cti",
        name: "Care Transitions Intervention",
        description: "A transition coach, a personal health record, a home visit and follow-up calls over 28 days",
        target_factors: &[
            "acuity",
            "ed_visits_previous_6_months",
            "index_admission_type",
            "admissions_previous_12_months",
        ],
        estimated_risk_reduction: 0.30,
        evidence_level: "A",
        implementation_difficulty: "moderate",
        source: "Coleman EA, et al. Arch Intern Med 2006;166(17):1822-1828: 30-day rehospitalization 8.3% vs 11.9% (1 - 8.3/11.9 = 0.30)",
    },
    Intervention {
        id: "int-red",
        name: "Re-Engineered Discharge (Project RED)",
        description: "Nurse discharge advocate, medication reconciliation, scheduled follow-up and a pharmacist call 2-4 days after discharge",
        target_factors: &[
            "length_of_stay",
            "procedure_during_stay",
            "hemoglobin_at_discharge",
            "sodium_at_discharge",
            "charlson_comorbidity_index",
        ],
        estimated_risk_reduction: 0.30,
        evidence_level: "A",
        implementation_difficulty: "moderate",
        source: "Jack BW, et al. Ann Intern Med 2009;150(3):178-187: 30-day hospital utilization 0.314 vs 0.451 visits per person (IRR 0.695)",
    },
];

/// LACE "L" points for a length of stay in days.
pub const fn lace_length_points(days: i64) -> u8 {
    match days {
        i64::MIN..=0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4..=6 => 4,
        7..=13 => 5,
        _ => 7,
    }
}

/// LACE "C" points for a Charlson index.
pub const fn lace_charlson_points(cci: u32) -> u8 {
    match cci {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        _ => 5,
    }
}

/// LACE "E" points for ED visits in 6 months.
pub const fn lace_ed_points(visits: u32) -> u8 {
    if visits >= 4 { 4 } else { visits as u8 }
}

/// HOSPITAL "T" points for admissions in the previous 12 months.
pub const fn hospital_admission_points(admissions: u32) -> u8 {
    match admissions {
        0 | 1 => 0,
        2..=5 => 2,
        _ => 5,
    }
}

/// LACE band → tier.
pub const fn lace_tier(points: u8) -> RiskTier {
    match points {
        0..=4 => RiskTier::Low,
        5..=9 => RiskTier::Medium,
        _ => RiskTier::High,
    }
}

/// HOSPITAL band → tier.
pub const fn hospital_tier(points: u8) -> RiskTier {
    match points {
        0..=4 => RiskTier::Low,
        5..=6 => RiskTier::Medium,
        _ => RiskTier::High,
    }
}

/// Charlson weights over the Quan (2005) ICD-10 prefixes.
struct Charlson {
    name: &'static str,
    weight: u32,
    prefixes: &'static [&'static str],
}

static CHARLSON: &[Charlson] = &[
    Charlson {
        name: "mi",
        weight: 1,
        prefixes: &["I21", "I22", "I25.2"],
    },
    Charlson {
        name: "chf",
        weight: 1,
        prefixes: &[
            "I09.9", "I11.0", "I13.0", "I13.2", "I25.5", "I42.0", "I42.5", "I42.6", "I42.7",
            "I42.8", "I42.9", "I43", "I50", "P29.0",
        ],
    },
    Charlson {
        name: "pvd",
        weight: 1,
        prefixes: &[
            "I70", "I71", "I73.1", "I73.8", "I73.9", "I77.1", "I79.0", "I79.2", "K55.1", "K55.8",
            "K55.9", "Z95.8", "Z95.9",
        ],
    },
    Charlson {
        name: "cvd",
        weight: 1,
        prefixes: &["G45", "G46", "H34.0", "I6"],
    },
    Charlson {
        name: "dementia",
        weight: 1,
        prefixes: &["F00", "F01", "F02", "F03", "F05.1", "G30", "G31.1"],
    },
    Charlson {
        name: "copd",
        weight: 1,
        prefixes: &[
            "I27.8", "I27.9", "J40", "J41", "J42", "J43", "J44", "J45", "J46", "J47", "J60", "J61",
            "J62", "J63", "J64", "J65", "J66", "J67", "J68.4", "J70.1", "J70.3",
        ],
    },
    Charlson {
        name: "rheumatic",
        weight: 1,
        prefixes: &[
            "M05", "M06", "M31.5", "M32", "M33", "M34", "M35.1", "M35.3", "M36.0",
        ],
    },
    Charlson {
        name: "pud",
        weight: 1,
        prefixes: &["K25", "K26", "K27", "K28"],
    },
    Charlson {
        name: "mild_liver",
        weight: 1,
        prefixes: &[
            "B18", "K70.0", "K70.1", "K70.2", "K70.3", "K70.9", "K71.3", "K71.4", "K71.5", "K71.7",
            "K73", "K74", "K76.0", "K76.2", "K76.3", "K76.4", "K76.8", "K76.9", "Z94.4",
        ],
    },
    Charlson {
        name: "diabetes",
        weight: 1,
        prefixes: &[
            "E10.0", "E10.1", "E10.6", "E10.8", "E10.9", "E11.0", "E11.1", "E11.6", "E11.8",
            "E11.9", "E13.0", "E13.1", "E13.6", "E13.8", "E13.9",
        ],
    },
    Charlson {
        name: "diabetes_complicated",
        weight: 2,
        prefixes: &[
            "E10.2", "E10.3", "E10.4", "E10.5", "E10.7", "E11.2", "E11.3", "E11.4", "E11.5",
            "E11.7", "E13.2", "E13.3", "E13.4", "E13.5", "E13.7",
        ],
    },
    Charlson {
        name: "hemiplegia",
        weight: 2,
        prefixes: &[
            "G04.1", "G11.4", "G80.1", "G80.2", "G81", "G82", "G83.0", "G83.1", "G83.2", "G83.3",
            "G83.4", "G83.9",
        ],
    },
    Charlson {
        name: "renal",
        weight: 2,
        prefixes: &[
            "I12.0", "I13.1", "N03.2", "N03.3", "N03.4", "N03.5", "N03.6", "N03.7", "N05.2",
            "N05.3", "N05.4", "N05.5", "N05.6", "N05.7", "N18", "N19", "N25.0", "Z49.0", "Z49.1",
            "Z49.2", "Z94.0", "Z99.2",
        ],
    },
    Charlson {
        name: "malignancy",
        weight: 2,
        prefixes: &[
            "C0", "C1", "C20", "C21", "C22", "C23", "C24", "C25", "C26", "C30", "C31", "C32",
            "C33", "C34", "C37", "C38", "C39", "C40", "C41", "C43", "C45", "C46", "C47", "C48",
            "C49", "C50", "C51", "C52", "C53", "C54", "C55", "C56", "C57", "C58", "C60", "C61",
            "C62", "C63", "C64", "C65", "C66", "C67", "C68", "C69", "C70", "C71", "C72", "C73",
            "C74", "C75", "C76", "C81", "C82", "C83", "C84", "C85", "C88", "C90", "C91", "C92",
            "C93", "C94", "C95", "C96", "C97",
        ],
    },
    Charlson {
        name: "severe_liver",
        weight: 3,
        prefixes: &[
            "I85.0", "I85.9", "I86.4", "I98.2", "K70.4", "K71.1", "K72.1", "K72.9", "K76.5",
            "K76.6", "K76.7",
        ],
    },
    Charlson {
        name: "metastatic",
        weight: 6,
        prefixes: &["C77", "C78", "C79", "C80"],
    },
    Charlson {
        name: "hiv",
        weight: 6,
        prefixes: &["B20", "B21", "B22", "B24"],
    },
];

/// The Charlson index of a list of ICD-10-CM codes (dotted form), with hierarchies.
pub fn charlson_index<'a>(codes: impl IntoIterator<Item = &'a str>) -> u32 {
    let codes: Vec<&str> = codes.into_iter().collect();
    let has = |name: &str| {
        CHARLSON.iter().find(|c| c.name == name).is_some_and(|c| {
            codes
                .iter()
                .any(|code| c.prefixes.iter().any(|p| code.starts_with(p)))
        })
    };
    let mut total = 0;
    for c in CHARLSON {
        let suppressed = match c.name {
            "diabetes" => has("diabetes_complicated"),
            "mild_liver" => has("severe_liver"),
            "malignancy" => has("metastatic"),
            _ => false,
        };
        if !suppressed && has(c.name) {
            total += c.weight;
        }
    }
    total
}

#[allow(clippy::too_many_arguments)]
fn component(
    name: &'static str,
    letter: char,
    points: u8,
    max_points: u8,
    value: String,
    reference_range: &'static str,
    category: &'static str,
    modifiable: bool,
    evidence: Vec<SourceId>,
) -> Component {
    Component {
        name,
        letter,
        points,
        max_points,
        value,
        reference_range,
        category,
        modifiable,
        evidence,
    }
}

struct Stay<'a> {
    enc: &'a Encounter,
    end: NaiveDate,
    los: i64,
}

fn ed_visits_6m(r: &PatientRecord, s: &Stay) -> (u32, Vec<SourceId>) {
    let from = s
        .enc
        .start
        .checked_sub_months(Months::new(6))
        .unwrap_or(s.enc.start);
    let ids: Vec<SourceId> = r
        .encounters
        .iter()
        .filter(|e| {
            e.class == EncounterClass::Emergency && e.start >= from && e.start < s.enc.start
        })
        .map(|e| e.id.clone())
        .collect();
    (ids.len() as u32, ids)
}

fn stay_charlson(r: &PatientRecord, s: &Stay) -> (u32, Vec<SourceId>) {
    let mut codes: Vec<&str> = s.enc.diagnoses.iter().map(|c| c.code.as_str()).collect();
    let mut ids = Vec::new();
    for d in &r.diagnoses {
        if d.overlaps(s.enc.start, s.end) && d.onset <= s.end {
            codes.push(d.code.code.as_str());
            if charlson_index([d.code.code.as_str()]) > 0 {
                ids.push(d.id.clone());
            }
        }
    }
    if charlson_index(s.enc.diagnoses.iter().map(|c| c.code.as_str())) > 0 {
        ids.push(s.enc.id.clone());
    }
    (charlson_index(codes), ids)
}

fn lace(r: &PatientRecord, s: &Stay) -> ScoreOutcome {
    let mut comps = vec![component(
        "length_of_stay",
        'L',
        lace_length_points(s.los),
        7,
        format!("{} days", s.los),
        "< 1 day",
        "utilization",
        false,
        vec![s.enc.id.clone()],
    )];
    match s.enc.admission_type {
        None => return ScoreOutcome::InsufficientData(vec!["acuity (admission type)"]),
        Some(t) => {
            let emergent = t == AdmissionType::Emergent;
            comps.push(component(
                "acuity",
                'A',
                if emergent { 3 } else { 0 },
                3,
                format!("{t:?}").to_ascii_lowercase(),
                "not emergent",
                "utilization",
                false,
                vec![s.enc.id.clone()],
            ));
        }
    }
    let (cci, cci_ids) = stay_charlson(r, s);
    comps.push(component(
        "charlson_comorbidity_index",
        'C',
        lace_charlson_points(cci),
        5,
        cci.to_string(),
        "0",
        "clinical",
        false,
        cci_ids,
    ));
    let (ed, ed_ids) = ed_visits_6m(r, s);
    comps.push(component(
        "ed_visits_previous_6_months",
        'E',
        lace_ed_points(ed),
        4,
        ed.to_string(),
        "0",
        "utilization",
        true,
        ed_ids,
    ));
    let points = comps.iter().map(|c| c.points).sum();
    ScoreOutcome::Scored(Score {
        name: "LACE",
        points,
        max_points: 19,
        components: comps,
        tier: lace_tier(points),
    })
}

fn last_in_stay(r: &PatientRecord, s: &Stay, kind: ObservationKind) -> Option<(f64, SourceId)> {
    r.observations
        .iter()
        .filter(|o| o.kind == kind && o.date >= s.enc.start && o.date <= s.end)
        .max_by(|a, b| a.date.cmp(&b.date).then_with(|| a.id.cmp(&b.id)))
        .and_then(|o| o.value.map(|v| (v, o.id.clone())))
}

fn hospital(r: &PatientRecord, s: &Stay) -> ScoreOutcome {
    let mut missing = Vec::new();
    let hb = last_in_stay(r, s, ObservationKind::Hemoglobin);
    if hb.is_none() {
        missing.push("hemoglobin at discharge");
    }
    if s.enc.oncology_service.is_none() {
        missing.push("discharge from an oncology service");
    }
    let na = last_in_stay(r, s, ObservationKind::Sodium);
    if na.is_none() {
        missing.push("sodium at discharge");
    }
    if s.enc.admission_type.is_none() {
        missing.push("index admission type");
    }
    let (Some((hb, hb_id)), Some(onc), Some((na, na_id)), Some(adm)) =
        (hb, s.enc.oncology_service, na, s.enc.admission_type)
    else {
        return ScoreOutcome::InsufficientData(missing);
    };
    let procs: Vec<SourceId> = r
        .procedures
        .iter()
        .filter(|p| p.date >= s.enc.start && p.date <= s.end)
        .map(|p| p.id.clone())
        .collect();
    let from = s
        .enc
        .start
        .checked_sub_months(Months::new(12))
        .unwrap_or(s.enc.start);
    let prior: Vec<SourceId> = r
        .encounters
        .iter()
        .filter(|e| {
            e.class == EncounterClass::Inpatient
                && e.id != s.enc.id
                && e.start >= from
                && e.start < s.enc.start
        })
        .map(|e| e.id.clone())
        .collect();
    let urgent = matches!(adm, AdmissionType::Urgent | AdmissionType::Emergent);
    let comps = vec![
        component(
            "hemoglobin_at_discharge",
            'H',
            u8::from(hb < 12.0),
            1,
            format!("{hb:.1} g/dL"),
            ">= 12 g/dL",
            "clinical",
            true,
            vec![hb_id],
        ),
        component(
            "oncology_service",
            'O',
            if onc { 2 } else { 0 },
            2,
            if onc { "yes" } else { "no" }.into(),
            "no",
            "clinical",
            false,
            vec![s.enc.id.clone()],
        ),
        component(
            "sodium_at_discharge",
            'S',
            u8::from(na < 135.0),
            1,
            format!("{na:.0} mmol/L"),
            ">= 135 mmol/L",
            "clinical",
            true,
            vec![na_id],
        ),
        component(
            "procedure_during_stay",
            'P',
            u8::from(!procs.is_empty()),
            1,
            procs.len().to_string(),
            "0",
            "clinical",
            false,
            procs.clone(),
        ),
        component(
            "index_admission_type",
            'I',
            u8::from(urgent),
            1,
            format!("{adm:?}").to_ascii_lowercase(),
            "elective",
            "utilization",
            false,
            vec![s.enc.id.clone()],
        ),
        component(
            "admissions_previous_12_months",
            'T',
            hospital_admission_points(prior.len() as u32),
            5,
            prior.len().to_string(),
            "0-1",
            "utilization",
            false,
            prior,
        ),
        component(
            "length_of_stay",
            'L',
            if s.los >= 5 { 2 } else { 0 },
            2,
            format!("{} days", s.los),
            "< 5 days",
            "utilization",
            false,
            vec![s.enc.id.clone()],
        ),
    ];
    let points = comps.iter().map(|c| c.points).sum();
    ScoreOutcome::Scored(Score {
        name: "HOSPITAL",
        points,
        max_points: 13,
        components: comps,
        tier: hospital_tier(points),
    })
}

/// Combined tier (see the module docs).
pub fn combined_tier(lace: Option<&Score>, hospital: Option<&Score>) -> Option<RiskTier> {
    match (lace.map(|s| s.tier), hospital.map(|s| s.tier)) {
        (Some(RiskTier::High), Some(RiskTier::High)) => Some(RiskTier::Critical),
        (Some(a), Some(b)) => Some(a.max(b)),
        (Some(a), None) | (None, Some(a)) => Some(a),
        (None, None) => None,
    }
}

/// Picks the interventions for a tier and the non-zero components.
pub fn select_interventions(
    tier: RiskTier,
    components: &[&Component],
) -> Vec<&'static Intervention> {
    let n = match tier {
        RiskTier::Low => return vec![],
        RiskTier::Medium => 1,
        RiskTier::High => 2,
        RiskTier::Critical => 3,
    };
    let active: Vec<&str> = components
        .iter()
        .filter(|c| c.points > 0)
        .map(|c| c.name)
        .collect();
    let mut scored: Vec<(usize, &'static Intervention)> = INTERVENTIONS
        .iter()
        .map(|i| {
            (
                i.target_factors
                    .iter()
                    .filter(|t| active.contains(t))
                    .count(),
                i,
            )
        })
        .filter(|(overlap, _)| *overlap > 0)
        .collect();
    scored.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(
                b.1.estimated_risk_reduction
                    .total_cmp(&a.1.estimated_risk_reduction),
            )
            .then(a.1.id.cmp(b.1.id))
    });
    scored.into_iter().take(n).map(|x| x.1).collect()
}

/// Scores the index stay: `encounter` if given (must be an inpatient stay of this record), else
/// the most recently discharged inpatient stay.
pub fn assess(
    record: &PatientRecord,
    encounter: Option<&SourceId>,
) -> Result<Assessment, ClinicalError> {
    let enc = match encounter {
        Some(id) => {
            record
                .encounters
                .iter()
                .find(|e| &e.id == id)
                .ok_or(ClinicalError::Invalid {
                    what: "encounter",
                    reason: "not found in this patient's record",
                })?
        }
        None => record
            .encounters
            .iter()
            .filter(|e| e.class == EncounterClass::Inpatient && e.end.is_some())
            .max_by(|a, b| a.end.cmp(&b.end).then_with(|| a.id.cmp(&b.id)))
            .ok_or(ClinicalError::Invalid {
                what: "readmission",
                reason: "no discharged inpatient stay in the record",
            })?,
    };
    if enc.class != EncounterClass::Inpatient {
        return Err(ClinicalError::Invalid {
            what: "encounter",
            reason: "LACE and HOSPITAL apply to inpatient stays only",
        });
    }
    let (lace_o, hosp_o) = match (enc.end, enc.length_of_stay()) {
        (Some(end), Some(los)) => {
            let stay = Stay { enc, end, los };
            (lace(record, &stay), hospital(record, &stay))
        }
        _ => (
            ScoreOutcome::InsufficientData(vec!["length of stay (no discharge date)"]),
            ScoreOutcome::InsufficientData(vec!["length of stay (no discharge date)"]),
        ),
    };
    let tier = combined_tier(lace_o.score(), hosp_o.score());
    let scores: Vec<&Score> = [lace_o.score(), hosp_o.score()]
        .into_iter()
        .flatten()
        .collect();
    let risk_score = (!scores.is_empty()).then(|| {
        scores
            .iter()
            .map(|s| f64::from(s.points) / f64::from(s.max_points))
            .sum::<f64>()
            / scores.len() as f64
    });
    let comps: Vec<&Component> = scores.iter().flat_map(|s| s.components.iter()).collect();
    let interventions = tier
        .map(|t| select_interventions(t, &comps))
        .unwrap_or_default();
    Ok(Assessment {
        encounter: enc.id.clone(),
        lace: lace_o,
        hospital: hosp_o,
        tier,
        risk_score,
        confidence_interval: None,
        interventions,
    })
}
