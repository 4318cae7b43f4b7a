//! Care gaps: one rule per quality measure, evaluated at an explicit "as of" date.
//!
//! # Sources and versions
//!
//! The CMS eCQMs are followed in their **2025 performance period** versions as published on the
//! eCQI Resource Center (<https://ecqi.healthit.gov/ecqm/ec/2025/…>): CMS130v13, CMS125v13,
//! CMS124v13, CMS122v13, CMS131v13, CMS165v13, CMS147v14, CMS127v13, CMS2v14, CMS138v13,
//! CMS137v13. FUA and FUM are NCQA HEDIS measures (Follow-Up After Emergency Department Visit
//! for Substance Use / for Mental Illness) as used in the CMS Medicaid Adult and Child Core Sets
//! (2024); HEDIS text is licensed, so only the public measure descriptions are paraphrased here.
//! The measure texts below are paraphrases, not quotations.
//!
//! # Decisions (read before relying on a result)
//!
//! * **Rolling period.** An eCQM is reported over a calendar year. Gap detection asks "what is
//!   missing today", so the measurement period is the 12 months ending on the caller's `as_of`
//!   date (`[as_of − 1 year + 1 day, as_of]`), and every lookback is anchored to it exactly as
//!   the measure anchors it to the calendar year. The crate never reads the clock.
//! * **No visit requirement.** The eCQM initial populations require a qualifying visit in the
//!   period. A gap list is asked for a patient already in care, so that requirement is dropped:
//!   a patient who was never seen and never screened *has* a gap (CoCo's defect was the
//!   opposite). Everything else in the denominators is kept.
//! * **Exclusions not evaluated** (the model does not carry the data): frailty with advanced
//!   illness for patients 66+, long-term nursing-home residence, vaccine allergy, death. The
//!   effect is a reminder that a complete implementation would suppress, never a gap that is
//!   silently closed.
//! * **Value sets** are documented subsets of VSAC ([`crate::valueset`]).
//! * **Insufficient data**: a rule that needs the birth date or sex and does not have it says
//!   so ([`Outcome::InsufficientData`]) instead of guessing.
//! * A gap's **due date** is the day the measure window lapsed (the last qualifying event plus
//!   its validity) when there was an earlier event, `as_of` when there never was one, and the
//!   end of the follow-up window for time-boxed measures (CMS2 follow-up, CMS137, FUA/FUM), which
//!   may lie after `as_of`.
//! * **Priority and estimated impact** are phigate's triage, not part of any measure:
//!   `critical` for time-boxed behavioral-health follow-up whose window is days long (FUA/FUM
//!   7-day, CMS137 initiation), `high` for USPSTF grade A screenings, poor diabetes and blood
//!   pressure control, positive-screen follow-up and the 30-day/engagement windows, `medium` for
//!   the rest. The impact (0..1) is a fixed weight per rule (table in [`MEASURES`]) used only to
//!   order gaps; it is not an outcome estimate.
//!
//! # The rules (paraphrased measure text; "period" = the 12 months ending `as_of`)
//!
//! | rule | denominator | exclusions | numerator (met when) |
//! |---|---|---|---|
//! | CMS130v13 colorectal | age 46–75 at period end | hospice, palliative care in period; colorectal cancer or total colectomy ever | colonoscopy in period or 9 years before; FOBT/FIT in period; sDNA-FIT in period or 2 years before; flexible sigmoidoscopy or CT colonography in period or 4 years before |
//! | CMS125v13 breast | women 52–74 at period end | hospice, palliative; bilateral mastectomy (or right and left) ever | mammogram in the 27 months ending at period end |
//! | CMS124v13 cervical | women 24–64 at period end | hospice, palliative; no residual cervix ever | cytology in period or 2 years before (age ≥ 21 at test); hrHPV test in period or 4 years before (age ≥ 30 at test) |
//! | CMS122v13 HbA1c > 9% (inverse) | age 18–75, diabetes during period | hospice, palliative | **gap** when the most recent HbA1c in the period is > 9.0% **or there is none** |
//! | CMS131v13 eye exam | age 18–75, diabetes during period | hospice, palliative | retinal exam in period, or a retinal exam without retinopathy in the year before |
//! | CMS165v13 BP control | age 18–85, essential hypertension starting before the first 6 months of the period ended | hospice, palliative; ESRD, dialysis or kidney transplant ever; pregnancy in period | most recent BP day in period: lowest systolic < 140 and lowest diastolic < 90 (no reading = not controlled) |
//! | CMS147v14 influenza | age ≥ 6 months; `as_of` in a season (Aug 1 – Mar 31) | hospice | influenza vaccine since Aug 1 of the season |
//! | CMS127v13 pneumococcal | age ≥ 65 at period end | hospice, palliative | any pneumococcal vaccine on or before period end |
//! | CMS2v14 depression | age ≥ 12 at period start | depression or bipolar disorder diagnosed before the screen | screen (PHQ-9/PHQ-A ≥ 10 or PHQ-2 ≥ 3 = positive) in period; if positive, follow-up (psychotherapy/psychiatric evaluation, referral, antidepressant) on the day or within 2 days |
//! | CMS138v13 tobacco | age ≥ 12 at period start | hospice | screened in period; if the latest screen is positive, cessation counseling or pharmacotherapy in the period or the 6 months before |
//! | CMS137v13 SUD IET | age ≥ 13; an SUD episode in the period (an SUD-coded encounter with no SUD diagnosis in the 60 days before) | hospice | initiation: an inpatient/residential episode, or a treatment event within 14 days after; engagement: 2 more treatment events (or 1 long-acting medication) within 34 days after initiation |
//! | FUA / FUM | ED visit in the period with a principal SUD (FUA, age ≥ 13) / mental illness or self-harm (FUM, age ≥ 6) diagnosis | admission within 30 days of the visit; hospice | follow-up visit (not ED) with such a diagnosis — for FUA also SUD pharmacotherapy — within 7 (30) days, day of the visit included |
//!
//! # Priority, impact and due date per rule component
//!
//! | component | type | priority | impact | due date |
//! |---|---|---|---|---|
//! | CMS130 | screening | high | 0.85 | last test + its validity (10/5/3/1 y), or `as_of` if never |
//! | CMS125 | screening | high | 0.80 | last mammogram + 27 months, or `as_of` |
//! | CMS124 | screening | medium | 0.70 | last test + 3 y (cytology) / 5 y (hrHPV), or `as_of` |
//! | CMS122 | lab_test | high | 0.80 | `as_of` |
//! | CMS131 | screening | medium | 0.60 | last exam + 12 months, or `as_of` |
//! | CMS165 | medication | high | 0.80 | `as_of` |
//! | CMS147 | vaccination | medium | 0.60 | `as_of` |
//! | CMS127 | vaccination | medium | 0.55 | `as_of` |
//! | CMS2 screening / follow-up | screening / follow_up | medium / high | 0.60 / 0.80 | `as_of` / positive screen + 2 days |
//! | CMS138 screening / cessation | screening / medication | medium / high | 0.60 / 0.80 | `as_of` |
//! | CMS137 initiation / engagement | follow_up | critical / high | 0.90 / 0.85 | episode + 14 days / initiation + 34 days |
//! | FUA, FUM 7-day / 30-day | follow_up | critical / high | 0.90 / 0.80 | ED visit + 7 / + 30 days |

use chrono::{Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::ClinicalError;
use crate::model::{
    Code, EncounterClass, EncounterClass as EC, Medication, ObservationKind, OrderKind,
    PatientRecord, Sex, SourceId,
};
use crate::valueset::{self as vs, ValueSet, drugs};

/// CoCo's `CareGapType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum GapType {
    /// Screening.
    Screening,
    /// Vaccination.
    Vaccination,
    /// Lab test.
    LabTest,
    /// Medication.
    Medication,
    /// Follow-up.
    FollowUp,
}

/// CoCo's `CareGapPriority`, ordered from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Priority {
    /// CoCo's weight for the risk score (spec §2.1.5).
    pub const fn weight(self) -> f64 {
        match self {
            Priority::Critical => 1.0,
            Priority::High => 0.8,
            Priority::Medium => 0.5,
            Priority::Low => 0.2,
        }
    }
}

/// The measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MeasureId {
    /// Colorectal cancer screening.
    Cms130,
    /// Breast cancer screening.
    Cms125,
    /// Cervical cancer screening.
    Cms124,
    /// Diabetes: HbA1c poor control (> 9%).
    Cms122,
    /// Diabetes: eye exam.
    Cms131,
    /// Controlling high blood pressure.
    Cms165,
    /// Influenza immunization.
    Cms147,
    /// Pneumococcal vaccination status for older adults.
    Cms127,
    /// Depression screening and follow-up plan.
    Cms2,
    /// Tobacco use screening and cessation intervention.
    Cms138,
    /// Initiation and engagement of SUD treatment.
    Cms137,
    /// Follow-up after ED visit for substance use.
    Fua,
    /// Follow-up after ED visit for mental illness.
    Fum,
}

/// One reportable component of a measure (a measure with two rates has two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasureInfo {
    /// The measure.
    pub measure: MeasureId,
    /// Component (`screening`, `follow_up`, `initiation`, `7_day`...); `""` for single-rate
    /// measures.
    pub component: &'static str,
    /// Measure id and version as published.
    pub version: &'static str,
    /// CoCo `name`.
    pub name: &'static str,
    /// CoCo `description`: what closes the gap.
    pub description: &'static str,
    /// CoCo `guideline_source`.
    pub source: &'static str,
    /// CoCo `type`.
    pub gap_type: GapType,
    /// Triage priority.
    pub priority: Priority,
    /// Triage weight 0..1.
    pub impact: f64,
    /// ICD-10-CM codes to report with the closing service.
    pub icd10: &'static [&'static str],
    /// CPT/HCPCS codes of services that close the gap.
    pub cpt: &'static [&'static str],
}

macro_rules! m {
    ($id:ident, $comp:literal, $ver:literal, $name:literal, $desc:literal, $src:literal, $ty:ident, $prio:ident, $impact:literal, [$($icd:literal),*], [$($cpt:literal),*]) => {
        MeasureInfo {
            measure: MeasureId::$id, component: $comp, version: $ver, name: $name,
            description: $desc, source: $src, gap_type: GapType::$ty, priority: Priority::$prio,
            impact: $impact, icd10: &[$($icd),*], cpt: &[$($cpt),*],
        }
    };
}

/// Every rule component with its citation, priority and impact weight.
pub static MEASURES: &[MeasureInfo] = &[
    m!(
        Cms130,
        "",
        "CMS130v13",
        "Colorectal Cancer Screening",
        "Colonoscopy (10 y), FIT/FOBT (1 y), sDNA-FIT (3 y), flexible sigmoidoscopy or CT colonography (5 y)",
        "CMS130v13 (CMS eCQM, 2025 performance period); USPSTF 2021 grade A/B",
        Screening,
        High,
        0.85,
        ["Z12.11", "Z12.12"],
        ["45378", "82274", "81528", "45330", "74263"]
    ),
    m!(
        Cms125,
        "",
        "CMS125v13",
        "Breast Cancer Screening",
        "Mammogram within the last 27 months",
        "CMS125v13 (CMS eCQM, 2025 performance period); USPSTF 2024 grade B",
        Screening,
        High,
        0.8,
        ["Z12.31"],
        ["77067"]
    ),
    m!(
        Cms124,
        "",
        "CMS124v13",
        "Cervical Cancer Screening",
        "Cervical cytology (3 y) or, from age 30, hrHPV testing (5 y)",
        "CMS124v13 (CMS eCQM, 2025 performance period); USPSTF 2018 grade A",
        Screening,
        Medium,
        0.7,
        ["Z12.4"],
        ["88175", "87624"]
    ),
    m!(
        Cms122,
        "",
        "CMS122v13",
        "Diabetes: HbA1c Poor Control (>9%)",
        "Most recent HbA1c in the period is above 9.0% or missing: test and intensify treatment",
        "CMS122v13 (CMS eCQM, 2025 performance period); ADA Standards of Care",
        LabTest,
        High,
        0.8,
        ["E11.9"],
        ["83036"]
    ),
    m!(
        Cms131,
        "",
        "CMS131v13",
        "Diabetes: Eye Exam",
        "Retinal or dilated eye exam by an eye care professional",
        "CMS131v13 (CMS eCQM, 2025 performance period); ADA Standards of Care",
        Screening,
        Medium,
        0.6,
        ["E11.9"],
        ["92014", "92250"]
    ),
    m!(
        Cms165,
        "",
        "CMS165v13",
        "Controlling High Blood Pressure",
        "Most recent blood pressure below 140/90 mmHg",
        "CMS165v13 (CMS eCQM, 2025 performance period)",
        Medication,
        High,
        0.8,
        ["I10"],
        ["99214"]
    ),
    m!(
        Cms147,
        "",
        "CMS147v14",
        "Influenza Immunization",
        "Influenza vaccine for the current season (from August 1)",
        "CMS147v14 (CMS eCQM, 2025 performance period); ACIP",
        Vaccination,
        Medium,
        0.6,
        ["Z23"],
        ["90686", "90688"]
    ),
    m!(
        Cms127,
        "",
        "CMS127v13",
        "Pneumococcal Vaccination",
        "Pneumococcal vaccine (PCV20/PCV21, or PCV15 followed by PPSV23)",
        "CMS127v13 (CMS eCQM, 2025 performance period); ACIP",
        Vaccination,
        Medium,
        0.55,
        ["Z23"],
        ["90677", "90671"]
    ),
    m!(
        Cms2,
        "screening",
        "CMS2v14",
        "Depression Screening",
        "Standardized depression screen (PHQ-9, PHQ-2, PHQ-A) in the period",
        "CMS2v14 (CMS eCQM, 2025 performance period); USPSTF 2016/2023",
        Screening,
        Medium,
        0.6,
        ["Z13.31"],
        ["G0444", "96127"]
    ),
    m!(
        Cms2,
        "follow_up",
        "CMS2v14",
        "Depression Follow-up Plan",
        "Follow-up plan on the day of, or within 2 days after, a positive depression screen",
        "CMS2v14 (CMS eCQM, 2025 performance period)",
        FollowUp,
        High,
        0.8,
        ["F32.A"],
        ["90791", "90832"]
    ),
    m!(
        Cms138,
        "screening",
        "CMS138v13",
        "Tobacco Use Screening",
        "Tobacco use screening in the period",
        "CMS138v13 (CMS eCQM, 2025 performance period); USPSTF 2021 grade A",
        Screening,
        Medium,
        0.6,
        ["Z72.0"],
        ["99406"]
    ),
    m!(
        Cms138,
        "cessation",
        "CMS138v13",
        "Tobacco Cessation Intervention",
        "Cessation counseling or pharmacotherapy for a tobacco user",
        "CMS138v13 (CMS eCQM, 2025 performance period); USPSTF 2021 grade A",
        Medication,
        High,
        0.8,
        ["F17.210"],
        ["99406", "99407"]
    ),
    m!(
        Cms137,
        "initiation",
        "CMS137v13",
        "SUD Treatment Initiation (14 days)",
        "Treatment (visit, admission, or medication) within 14 days of a new SUD diagnosis",
        "CMS137v13 (CMS eCQM, 2025 performance period)",
        FollowUp,
        Critical,
        0.9,
        ["F10.20", "F11.20"],
        ["H0001", "H0004"]
    ),
    m!(
        Cms137,
        "engagement",
        "CMS137v13",
        "SUD Treatment Engagement (34 days)",
        "Two more treatment events, or one long-acting medication, within 34 days after initiation",
        "CMS137v13 (CMS eCQM, 2025 performance period)",
        FollowUp,
        High,
        0.85,
        ["F10.20", "F11.20"],
        ["H0004", "H0005"]
    ),
    m!(
        Fua,
        "7_day",
        "FUA (HEDIS MY2024)",
        "ED Follow-up for Substance Use (7 days)",
        "Follow-up visit or SUD pharmacotherapy within 7 days of an ED visit for substance use",
        "NCQA HEDIS FUA MY2024, CMS Medicaid Core Set 2024",
        FollowUp,
        Critical,
        0.9,
        ["F10.20", "F11.20"],
        ["99214", "H0004"]
    ),
    m!(
        Fua,
        "30_day",
        "FUA (HEDIS MY2024)",
        "ED Follow-up for Substance Use (30 days)",
        "Follow-up visit or SUD pharmacotherapy within 30 days of an ED visit for substance use",
        "NCQA HEDIS FUA MY2024, CMS Medicaid Core Set 2024",
        FollowUp,
        High,
        0.8,
        ["F10.20", "F11.20"],
        ["99214", "H0004"]
    ),
    m!(
        Fum,
        "7_day",
        "FUM (HEDIS MY2024)",
        "ED Follow-up for Mental Illness (7 days)",
        "Mental health follow-up visit within 7 days of an ED visit for mental illness or self-harm",
        "NCQA HEDIS FUM MY2024, CMS Medicaid Core Set 2024",
        FollowUp,
        Critical,
        0.9,
        ["F32.9"],
        ["90832", "99214"]
    ),
    m!(
        Fum,
        "30_day",
        "FUM (HEDIS MY2024)",
        "ED Follow-up for Mental Illness (30 days)",
        "Mental health follow-up visit within 30 days of an ED visit for mental illness or self-harm",
        "NCQA HEDIS FUM MY2024, CMS Medicaid Core Set 2024",
        FollowUp,
        High,
        0.8,
        ["F32.9"],
        ["90832", "99214"]
    ),
];

/// The catalogue entry of a measure component.
pub fn info(measure: MeasureId, component: &str) -> &'static MeasureInfo {
    MEASURES
        .iter()
        .find(|m| m.measure == measure && m.component == component)
        .unwrap_or(&MEASURES[0])
}

/// The 12 months ending on `as_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First day.
    pub start: NaiveDate,
    /// Last day (`as_of`).
    pub end: NaiveDate,
}

impl Period {
    /// `[as_of − 1 year + 1 day, as_of]`.
    pub fn ending(as_of: NaiveDate) -> Self {
        Self {
            start: years_before(as_of, 1) + Days::new(1),
            end: as_of,
        }
    }
}

fn years_before(d: NaiveDate, years: u32) -> NaiveDate {
    d.checked_sub_months(Months::new(12 * years)).unwrap_or(d)
}
fn months_before(d: NaiveDate, months: u32) -> NaiveDate {
    d.checked_sub_months(Months::new(months)).unwrap_or(d)
}
fn plus_days(d: NaiveDate, days: u64) -> NaiveDate {
    d.checked_add_days(Days::new(days)).unwrap_or(d)
}
fn plus_months(d: NaiveDate, months: u32) -> NaiveDate {
    d.checked_add_months(Months::new(months)).unwrap_or(d)
}

/// A detected gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// Catalogue entry (citation, type, priority, impact, codes).
    pub info: &'static MeasureInfo,
    /// Due (or overdue-since) date.
    pub due: NaiveDate,
    /// Records that put the patient in the denominator or started the window (ED visit,
    /// positive screen, last expired test).
    pub evidence: Vec<SourceId>,
}

impl Gap {
    /// A stable id, `gap-` + 8 hex digits: FNV-1a over measure, component, due date and the
    /// evidence ids (the same gap on the same data gets the same id, so a closure can refer to
    /// it). Not a security token.
    pub fn gap_id(&self) -> String {
        let mut h: u32 = 0x811c_9dc5;
        let mut feed = |s: &str| {
            for b in s.bytes().chain([0u8]) {
                h ^= u32::from(b);
                h = h.wrapping_mul(0x0100_0193);
            }
        };
        feed(self.info.version);
        feed(self.info.component);
        feed(&self.due.to_string());
        for e in &self.evidence {
            feed(e.as_str());
        }
        format!("gap-{h:08x}")
    }
}

/// What a rule concluded.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Outside the denominator.
    NotEligible(&'static str),
    /// In the denominator but excluded; the records that exclude.
    Excluded {
        /// Which exclusion.
        reason: &'static str,
        /// Evidence.
        evidence: Vec<SourceId>,
    },
    /// Numerator met; the records that meet it.
    Met(Vec<SourceId>),
    /// A gap.
    Gap(Gap),
    /// The rule cannot be decided: names the missing input.
    InsufficientData(&'static str),
}

/// One rule component's result.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleResult {
    /// Catalogue entry.
    pub info: &'static MeasureInfo,
    /// Conclusion.
    pub outcome: Outcome,
}

struct Ctx<'a> {
    r: &'a PatientRecord,
    p: Period,
    birth: Option<NaiveDate>,
}

impl<'a> Ctx<'a> {
    fn age_at(&self, d: NaiveDate) -> Option<i32> {
        self.birth.map(|b| crate::model::age_on(b, d))
    }

    /// Procedures and encounter type codes in `set` dated in `[from, to]`, latest first.
    fn services(
        &self,
        set: &ValueSet,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<(NaiveDate, SourceId)> {
        let mut v: Vec<(NaiveDate, SourceId)> = self
            .r
            .procedures
            .iter()
            .filter(|p| set.contains(&p.code) && p.date >= from && p.date <= to)
            .map(|p| (p.date, p.id.clone()))
            .chain(
                self.r
                    .encounters
                    .iter()
                    .filter(|e| e.type_codes.iter().any(|c| set.contains(c)))
                    .filter(|e| e.start <= to && e.end.unwrap_or(e.start) >= from)
                    .map(|e| (e.start, e.id.clone())),
            )
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }

    /// Diagnoses (problem list or encounter) in `set` present at some time in `[from, to]`.
    fn diagnosed(&self, set: &ValueSet, from: NaiveDate, to: NaiveDate) -> Vec<SourceId> {
        let mut v: Vec<SourceId> = self
            .r
            .diagnoses
            .iter()
            .filter(|d| set.contains(&d.code) && d.overlaps(from, to))
            .map(|d| d.id.clone())
            .chain(
                self.r
                    .encounters
                    .iter()
                    .filter(|e| e.start <= to && e.end.unwrap_or(e.start) >= from)
                    .filter(|e| e.diagnoses.iter().any(|c| set.contains(c)))
                    .map(|e| e.id.clone()),
            )
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn observations(
        &self,
        kind: ObservationKind,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<(NaiveDate, SourceId, Option<f64>)> {
        let mut v: Vec<_> = self
            .r
            .observations
            .iter()
            .filter(|o| o.kind == kind && o.date >= from && o.date <= to)
            .map(|o| (o.date, o.id.clone(), o.value))
            .collect();
        v.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        v
    }

    fn vaccines(
        &self,
        set: &ValueSet,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<(NaiveDate, SourceId)> {
        let mut v: Vec<_> = self
            .r
            .immunizations
            .iter()
            .filter(|i| set.contains(&i.vaccine) && i.date >= from && i.date <= to)
            .map(|i| (i.date, i.id.clone()))
            .chain(self.services(set, from, to))
            .collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }

    fn hospice_or_palliative(&self, palliative: bool) -> Option<Outcome> {
        let (from, to) = (self.p.start, self.p.end);
        let h = self.services(&vs::HOSPICE, from, to);
        if let Some((_, id)) = h.first() {
            return Some(Outcome::Excluded {
                reason: "hospice care in the period",
                evidence: vec![id.clone()],
            });
        }
        if palliative {
            let mut ev: Vec<SourceId> = self
                .services(&vs::PALLIATIVE, from, to)
                .into_iter()
                .map(|x| x.1)
                .collect();
            ev.extend(self.diagnosed(&vs::PALLIATIVE, from, to));
            if !ev.is_empty() {
                return Some(Outcome::Excluded {
                    reason: "palliative care in the period",
                    evidence: ev,
                });
            }
        }
        None
    }

    fn meds_started(&self, list: &[&str], from: NaiveDate, to: NaiveDate) -> Vec<&'a Medication> {
        self.r
            .medications
            .iter()
            .filter(|m| drugs::matches(&m.name, list) && m.start >= from && m.start <= to)
            .collect()
    }
}

fn gap(measure: MeasureId, component: &str, due: NaiveDate, evidence: Vec<SourceId>) -> RuleResult {
    let info = info(measure, component);
    RuleResult {
        info,
        outcome: Outcome::Gap(Gap {
            info,
            due,
            evidence,
        }),
    }
}
fn res(measure: MeasureId, component: &str, outcome: Outcome) -> RuleResult {
    RuleResult {
        info: info(measure, component),
        outcome,
    }
}

/// Evaluates every rule at `as_of`. Errors only for an impossible record (birth after `as_of`).
pub fn evaluate(
    record: &PatientRecord,
    as_of: NaiveDate,
) -> Result<Vec<RuleResult>, ClinicalError> {
    crate::model::check_date("as_of", as_of)?;
    // Validates that the birth date is not after as_of.
    record.demographics.age_on(as_of)?;
    let ctx = Ctx {
        r: record,
        p: Period::ending(as_of),
        birth: record.demographics.birth_date.as_ref().map(|b| *b.expose()),
    };
    let mut out = vec![
        cms130(&ctx),
        cms125(&ctx),
        cms124(&ctx),
        cms122(&ctx),
        cms131(&ctx),
        cms165(&ctx),
        cms147(&ctx),
        cms127(&ctx),
    ];
    out.extend(cms2(&ctx));
    out.extend(cms138(&ctx));
    out.extend(cms137(&ctx));
    out.extend(ed_follow_up(&ctx, MeasureId::Fua));
    out.extend(ed_follow_up(&ctx, MeasureId::Fum));
    Ok(out)
}

/// Only the gaps of [`evaluate`], most severe first (priority, then impact, then due date).
pub fn gaps(record: &PatientRecord, as_of: NaiveDate) -> Result<Vec<Gap>, ClinicalError> {
    let mut g: Vec<Gap> = evaluate(record, as_of)?
        .into_iter()
        .filter_map(|r| match r.outcome {
            Outcome::Gap(g) => Some(g),
            _ => None,
        })
        .collect();
    g.sort_by(|a, b| {
        b.info
            .priority
            .cmp(&a.info.priority)
            .then(b.info.impact.total_cmp(&a.info.impact))
            .then(a.due.cmp(&b.due))
    });
    Ok(g)
}

macro_rules! need_age {
    ($ctx:expr, $m:expr, $c:expr, $at:expr) => {
        match $ctx.age_at($at) {
            Some(a) => a,
            None => return res($m, $c, Outcome::InsufficientData("birth date")),
        }
    };
}

macro_rules! need_female {
    ($ctx:expr, $m:expr) => {
        match $ctx.r.demographics.sex {
            None => return res($m, "", Outcome::InsufficientData("sex")),
            Some(Sex::Female) => {}
            Some(_) => return res($m, "", Outcome::NotEligible("measure applies to women")),
        }
    };
}

fn cms130(c: &Ctx) -> RuleResult {
    let m = MeasureId::Cms130;
    let age = need_age!(c, m, "", c.p.end);
    if !(46..=75).contains(&age) {
        return res(
            m,
            "",
            Outcome::NotEligible("age outside 46-75 at period end"),
        );
    }
    if let Some(o) = c.hospice_or_palliative(true) {
        return res(m, "", o);
    }
    let ever = NaiveDate::MIN;
    let mut ex = c.diagnosed(&vs::COLORECTAL_CANCER, ever, c.p.end);
    ex.extend(
        c.services(&vs::TOTAL_COLECTOMY, ever, c.p.end)
            .into_iter()
            .map(|x| x.1),
    );
    if !ex.is_empty() {
        return res(
            m,
            "",
            Outcome::Excluded {
                reason: "colorectal cancer or total colectomy",
                evidence: ex,
            },
        );
    }
    // (event date, validity in years counted as the period plus N prior years, id)
    let mut events: Vec<(NaiveDate, u32, SourceId)> = Vec::new();
    for (d, id) in c.services(&vs::COLONOSCOPY, ever, c.p.end) {
        events.push((d, 10, id));
    }
    for (d, id) in c.services(&vs::FLEXIBLE_SIGMOIDOSCOPY, ever, c.p.end) {
        events.push((d, 5, id));
    }
    for (d, id) in c.services(&vs::CT_COLONOGRAPHY, ever, c.p.end) {
        events.push((d, 5, id));
    }
    for (d, id) in c.services(&vs::SDNA_FIT_PROCEDURE, ever, c.p.end) {
        events.push((d, 3, id));
    }
    for (d, id, _) in c.observations(ObservationKind::FitDna, ever, c.p.end) {
        events.push((d, 3, id));
    }
    for (d, id, _) in c.observations(ObservationKind::FecalOccultBlood, ever, c.p.end) {
        events.push((d, 1, id));
    }
    window_rule(c, m, "", events)
}

/// Met if any event lies in `[period.start − (years − 1), end]`; otherwise a gap due when the
/// most recently valid event lapsed (or `as_of`).
fn window_rule(
    c: &Ctx,
    m: MeasureId,
    comp: &str,
    events: Vec<(NaiveDate, u32, SourceId)>,
) -> RuleResult {
    let met: Vec<SourceId> = events
        .iter()
        .filter(|(d, years, _)| *d >= years_before(c.p.start, years - 1) && *d <= c.p.end)
        .map(|(_, _, id)| id.clone())
        .collect();
    if !met.is_empty() {
        return res(m, comp, Outcome::Met(met));
    }
    // The lapse date of an event: the first day it no longer counts.
    let last = events
        .iter()
        .map(|(d, years, id)| (plus_months(*d, 12 * years), id))
        .max_by_key(|(lapse, _)| *lapse);
    match last {
        Some((lapse, id)) if lapse <= c.p.end => gap(m, comp, lapse, vec![id.clone()]),
        _ => gap(m, comp, c.p.end, vec![]),
    }
}

fn cms125(c: &Ctx) -> RuleResult {
    let m = MeasureId::Cms125;
    need_female!(c, m);
    let age = need_age!(c, m, "", c.p.end);
    if !(52..=74).contains(&age) {
        return res(
            m,
            "",
            Outcome::NotEligible("age outside 52-74 at period end"),
        );
    }
    if let Some(o) = c.hospice_or_palliative(true) {
        return res(m, "", o);
    }
    let ever = NaiveDate::MIN;
    let bilateral = c.diagnosed(&vs::BILATERAL_MASTECTOMY, ever, c.p.end);
    let right = c.diagnosed(&vs::RIGHT_MASTECTOMY, ever, c.p.end);
    let left = c.diagnosed(&vs::LEFT_MASTECTOMY, ever, c.p.end);
    if !bilateral.is_empty() || (!right.is_empty() && !left.is_empty()) {
        let mut ev = bilateral;
        if ev.is_empty() {
            ev = right.into_iter().chain(left).collect();
        }
        return res(
            m,
            "",
            Outcome::Excluded {
                reason: "bilateral mastectomy",
                evidence: ev,
            },
        );
    }
    let from = plus_days(months_before(c.p.end, 27), 1);
    let all = c.services(&vs::MAMMOGRAPHY, ever, c.p.end);
    let met: Vec<SourceId> = all
        .iter()
        .filter(|(d, _)| *d >= from)
        .map(|x| x.1.clone())
        .collect();
    if !met.is_empty() {
        return res(m, "", Outcome::Met(met));
    }
    match all.first() {
        Some((d, id)) => gap(m, "", plus_months(*d, 27), vec![id.clone()]),
        None => gap(m, "", c.p.end, vec![]),
    }
}

fn cms124(c: &Ctx) -> RuleResult {
    let m = MeasureId::Cms124;
    need_female!(c, m);
    let age = need_age!(c, m, "", c.p.end);
    if !(24..=64).contains(&age) {
        return res(
            m,
            "",
            Outcome::NotEligible("age outside 24-64 at period end"),
        );
    }
    if let Some(o) = c.hospice_or_palliative(true) {
        return res(m, "", o);
    }
    let ever = NaiveDate::MIN;
    let mut ex = c.diagnosed(&vs::NO_CERVIX, ever, c.p.end);
    ex.extend(
        c.services(&vs::NO_CERVIX, ever, c.p.end)
            .into_iter()
            .map(|x| x.1),
    );
    if !ex.is_empty() {
        return res(
            m,
            "",
            Outcome::Excluded {
                reason: "no residual cervix",
                evidence: ex,
            },
        );
    }
    let mut events = Vec::new();
    for (d, id, _) in c.observations(ObservationKind::CervicalCytology, ever, c.p.end) {
        if c.age_at(d).is_some_and(|a| a >= 21) {
            events.push((d, 3, id));
        }
    }
    for (d, id, _) in c.observations(ObservationKind::HpvTest, ever, c.p.end) {
        if c.age_at(d).is_some_and(|a| a >= 30) {
            events.push((d, 5, id));
        }
    }
    window_rule(c, m, "", events)
}

fn diabetic(c: &Ctx) -> Vec<SourceId> {
    c.diagnosed(&vs::DIABETES, c.p.start, c.p.end)
}

fn cms122(c: &Ctx) -> RuleResult {
    let m = MeasureId::Cms122;
    let age = need_age!(c, m, "", c.p.end);
    let dm = diabetic(c);
    if dm.is_empty() {
        return res(m, "", Outcome::NotEligible("no diabetes during the period"));
    }
    if !(18..=75).contains(&age) {
        return res(
            m,
            "",
            Outcome::NotEligible("age outside 18-75 at period end"),
        );
    }
    if let Some(o) = c.hospice_or_palliative(true) {
        return res(m, "", o);
    }
    match c
        .observations(ObservationKind::HbA1c, c.p.start, c.p.end)
        .first()
    {
        // Inverse measure: > 9.0 % is poor control, a gap.
        Some((_, id, Some(v))) if *v > 9.0 => gap(m, "", c.p.end, vec![id.clone()]),
        Some((_, id, _)) => res(m, "", Outcome::Met(vec![id.clone()])),
        // No HbA1c in the period counts as poor control (the measure says so).
        None => gap(m, "", c.p.end, dm),
    }
}

fn cms131(c: &Ctx) -> RuleResult {
    let m = MeasureId::Cms131;
    let age = need_age!(c, m, "", c.p.end);
    if diabetic(c).is_empty() {
        return res(m, "", Outcome::NotEligible("no diabetes during the period"));
    }
    if !(18..=75).contains(&age) {
        return res(
            m,
            "",
            Outcome::NotEligible("age outside 18-75 at period end"),
        );
    }
    if let Some(o) = c.hospice_or_palliative(true) {
        return res(m, "", o);
    }
    let in_period = c.services(&vs::RETINAL_EXAM, c.p.start, c.p.end);
    if !in_period.is_empty() {
        return res(
            m,
            "",
            Outcome::Met(in_period.into_iter().map(|x| x.1).collect()),
        );
    }
    let prior_start = years_before(c.p.start, 1);
    let prior = c.services(
        &vs::RETINAL_EXAM_NEGATIVE,
        prior_start,
        c.p.start - Days::new(1),
    );
    if !prior.is_empty() {
        return res(
            m,
            "",
            Outcome::Met(prior.into_iter().map(|x| x.1).collect()),
        );
    }
    let last = c.services(&vs::RETINAL_EXAM, NaiveDate::MIN, c.p.end);
    match last.first() {
        Some((d, id)) => gap(m, "", plus_months(*d, 12), vec![id.clone()]),
        None => gap(m, "", c.p.end, vec![]),
    }
}

fn cms165(c: &Ctx) -> RuleResult {
    let m = MeasureId::Cms165;
    let age = need_age!(c, m, "", c.p.end);
    let six = plus_months(c.p.start, 6) - Days::new(1);
    let htn: Vec<SourceId> =
        c.r.diagnoses
            .iter()
            .filter(|d| {
                vs::ESSENTIAL_HYPERTENSION.contains(&d.code)
                    && d.onset <= six
                    && d.overlaps(c.p.start, c.p.end)
            })
            .map(|d| d.id.clone())
            .collect();
    if htn.is_empty() {
        return res(
            m,
            "",
            Outcome::NotEligible(
                "no essential hypertension before the first six months of the period ended",
            ),
        );
    }
    if !(18..=85).contains(&age) {
        return res(
            m,
            "",
            Outcome::NotEligible("age outside 18-85 at period end"),
        );
    }
    if let Some(o) = c.hospice_or_palliative(true) {
        return res(m, "", o);
    }
    let ever = NaiveDate::MIN;
    let mut ex = c.diagnosed(&vs::ESRD_DIALYSIS_TRANSPLANT, ever, c.p.end);
    ex.extend(
        c.services(&vs::ESRD_DIALYSIS_TRANSPLANT, ever, c.p.end)
            .into_iter()
            .map(|x| x.1),
    );
    if !ex.is_empty() {
        return res(
            m,
            "",
            Outcome::Excluded {
                reason: "end-stage renal disease, dialysis or kidney transplant",
                evidence: ex,
            },
        );
    }
    let preg = c.diagnosed(&vs::PREGNANCY, c.p.start, c.p.end);
    if !preg.is_empty() {
        return res(
            m,
            "",
            Outcome::Excluded {
                reason: "pregnancy in the period",
                evidence: preg,
            },
        );
    }
    let readings: Vec<_> =
        c.r.blood_pressures
            .iter()
            .filter(|b| b.date >= c.p.start && b.date <= c.p.end)
            .collect();
    let Some(day) = readings.iter().map(|b| b.date).max() else {
        return gap(m, "", c.p.end, htn);
    };
    let that_day: Vec<_> = readings.iter().filter(|b| b.date == day).collect();
    let sys = that_day
        .iter()
        .map(|b| b.systolic)
        .min()
        .unwrap_or(u16::MAX);
    let dia = that_day
        .iter()
        .map(|b| b.diastolic)
        .min()
        .unwrap_or(u16::MAX);
    let ids: Vec<SourceId> = that_day.iter().map(|b| b.id.clone()).collect();
    if sys < 140 && dia < 90 {
        res(m, "", Outcome::Met(ids))
    } else {
        gap(m, "", c.p.end, ids)
    }
}

fn cms147(c: &Ctx) -> RuleResult {
    let m = MeasureId::Cms147;
    let as_of = c.p.end;
    let season_start = match as_of.month() {
        8..=12 => NaiveDate::from_ymd_opt(as_of.year(), 8, 1),
        1..=3 => NaiveDate::from_ymd_opt(as_of.year() - 1, 8, 1),
        _ => {
            return res(
                m,
                "",
                Outcome::NotEligible("outside the influenza season (August 1 - March 31)"),
            );
        }
    };
    let Some(season_start) = season_start else {
        return res(m, "", Outcome::NotEligible("date out of range"));
    };
    let Some(birth) = c.birth else {
        return res(m, "", Outcome::InsufficientData("birth date"));
    };
    if plus_months(birth, 6) > as_of {
        return res(m, "", Outcome::NotEligible("younger than 6 months"));
    }
    if let Some(o) = c.hospice_or_palliative(false) {
        return res(m, "", o);
    }
    let got = c.vaccines(&vs::INFLUENZA_VACCINE, season_start, as_of);
    if got.is_empty() {
        gap(m, "", as_of, vec![])
    } else {
        res(m, "", Outcome::Met(got.into_iter().map(|x| x.1).collect()))
    }
}

fn cms127(c: &Ctx) -> RuleResult {
    let m = MeasureId::Cms127;
    let age = need_age!(c, m, "", c.p.end);
    if age < 65 {
        return res(m, "", Outcome::NotEligible("younger than 65 at period end"));
    }
    if let Some(o) = c.hospice_or_palliative(true) {
        return res(m, "", o);
    }
    let got = c.vaccines(&vs::PNEUMOCOCCAL_VACCINE, NaiveDate::MIN, c.p.end);
    if got.is_empty() {
        gap(m, "", c.p.end, vec![])
    } else {
        res(m, "", Outcome::Met(got.into_iter().map(|x| x.1).collect()))
    }
}

fn cms2(c: &Ctx) -> Vec<RuleResult> {
    let m = MeasureId::Cms2;
    let Some(age) = c.age_at(c.p.start) else {
        return vec![
            res(m, "screening", Outcome::InsufficientData("birth date")),
            res(m, "follow_up", Outcome::InsufficientData("birth date")),
        ];
    };
    if age < 12 {
        let o = Outcome::NotEligible("younger than 12 at period start");
        return vec![res(m, "screening", o.clone()), res(m, "follow_up", o)];
    }
    let mut screens: Vec<_> = c
        .r
        .evaluations
        .iter()
        .filter(|e| e.date >= c.p.start && e.date <= c.p.end && e.depression_positive().is_some())
        .collect();
    screens.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| b.id.cmp(&a.id)));
    let latest = screens.first();
    let before = latest.map_or(c.p.end, |s| s.date);
    let ex: Vec<SourceId> =
        c.r.diagnoses
            .iter()
            .filter(|d| {
                vs::DEPRESSION_OR_BIPOLAR.contains(&d.code)
                    && d.onset < before
                    && d.resolved.is_none_or(|r| r >= c.p.start)
            })
            .map(|d| d.id.clone())
            .collect();
    if !ex.is_empty() {
        let o = Outcome::Excluded {
            reason: "depression or bipolar disorder diagnosed before the screen",
            evidence: ex,
        };
        return vec![res(m, "screening", o.clone()), res(m, "follow_up", o)];
    }
    let Some(s) = latest else {
        return vec![
            gap(m, "screening", c.p.end, vec![]),
            res(
                m,
                "follow_up",
                Outcome::NotEligible("no screen in the period"),
            ),
        ];
    };
    let screening = res(m, "screening", Outcome::Met(vec![s.id.clone()]));
    if s.depression_positive() != Some(true) {
        return vec![
            screening,
            res(
                m,
                "follow_up",
                Outcome::NotEligible("latest screen negative"),
            ),
        ];
    }
    let (from, to) = (s.date, plus_days(s.date, 2));
    let mut fu: Vec<SourceId> = c
        .services(&vs::DEPRESSION_FOLLOW_UP, from, to)
        .into_iter()
        .map(|x| x.1)
        .collect();
    fu.extend(
        c.r.orders
            .iter()
            .filter(|o| o.kind == OrderKind::Referral && o.date >= from && o.date <= to)
            .map(|o| o.id.clone()),
    );
    fu.extend(
        c.meds_started(drugs::ANTIDEPRESSANTS, from, to)
            .into_iter()
            .map(|m| m.id.clone()),
    );
    let follow = if fu.is_empty() {
        gap(m, "follow_up", to, vec![s.id.clone()])
    } else {
        res(m, "follow_up", Outcome::Met(fu))
    };
    vec![screening, follow]
}

fn cms138(c: &Ctx) -> Vec<RuleResult> {
    let m = MeasureId::Cms138;
    let Some(age) = c.age_at(c.p.start) else {
        return vec![
            res(m, "screening", Outcome::InsufficientData("birth date")),
            res(m, "cessation", Outcome::InsufficientData("birth date")),
        ];
    };
    if age < 12 {
        let o = Outcome::NotEligible("younger than 12 at period start");
        return vec![res(m, "screening", o.clone()), res(m, "cessation", o)];
    }
    if let Some(o) = c.hospice_or_palliative(false) {
        return vec![res(m, "screening", o.clone()), res(m, "cessation", o)];
    }
    let latest =
        c.r.evaluations
            .iter()
            .filter(|e| e.tobacco_user.is_some() && e.date >= c.p.start && e.date <= c.p.end)
            .max_by(|a, b| a.date.cmp(&b.date).then_with(|| a.id.cmp(&b.id)));
    let Some(s) = latest else {
        return vec![
            gap(m, "screening", c.p.end, vec![]),
            res(
                m,
                "cessation",
                Outcome::NotEligible("not screened in the period"),
            ),
        ];
    };
    let screening = res(m, "screening", Outcome::Met(vec![s.id.clone()]));
    if s.tobacco_user != Some(true) {
        return vec![
            screening,
            res(
                m,
                "cessation",
                Outcome::NotEligible("latest screen: non-user"),
            ),
        ];
    }
    let from = months_before(c.p.start, 6);
    let mut ev: Vec<SourceId> = c
        .services(&vs::TOBACCO_CESSATION_COUNSELING, from, c.p.end)
        .into_iter()
        .map(|x| x.1)
        .collect();
    ev.extend(
        c.r.medications
            .iter()
            .filter(|md| drugs::matches(&md.name, drugs::TOBACCO_CESSATION))
            .filter(|md| md.start <= c.p.end && md.end.is_none_or(|e| e >= from))
            .map(|md| md.id.clone()),
    );
    let cess = if ev.is_empty() {
        gap(m, "cessation", c.p.end, vec![s.id.clone()])
    } else {
        res(m, "cessation", Outcome::Met(ev))
    };
    vec![screening, cess]
}

/// Dates of SUD diagnoses (encounter or problem list) — for the 60-day negative history.
fn sud_dates(c: &Ctx) -> Vec<NaiveDate> {
    c.r.diagnoses
        .iter()
        .filter(|d| vs::SUBSTANCE_USE_DISORDER.contains(&d.code))
        .map(|d| d.onset)
        .chain(
            c.r.encounters
                .iter()
                .filter(|e| {
                    e.diagnoses
                        .iter()
                        .any(|x| vs::SUBSTANCE_USE_DISORDER.contains(x))
                })
                .map(|e| e.start),
        )
        .collect()
}

fn has_dx(codes: &[Code], set: &ValueSet) -> bool {
    codes.iter().any(|c| set.contains(c))
}

/// SUD treatment events after `after` up to `until` (inclusive): non-ED encounters with an SUD
/// diagnosis, and SUD medications started.
fn sud_treatment(c: &Ctx, after: NaiveDate, until: NaiveDate) -> Vec<(NaiveDate, SourceId, bool)> {
    let mut v: Vec<(NaiveDate, SourceId, bool)> =
        c.r.encounters
            .iter()
            .filter(|e| e.class != EC::Emergency && e.start > after && e.start <= until)
            .filter(|e| has_dx(&e.diagnoses, &vs::SUBSTANCE_USE_DISORDER))
            .map(|e| (e.start, e.id.clone(), false))
            .collect();
    v.extend(
        c.meds_started(drugs::SUD_PHARMACOTHERAPY, plus_days(after, 1), until)
            .into_iter()
            .map(|md| {
                (
                    md.start,
                    md.id.clone(),
                    drugs::matches(&md.name, drugs::SUD_LONG_ACTING),
                )
            }),
    );
    v.sort();
    v
}

fn cms137(c: &Ctx) -> Vec<RuleResult> {
    let m = MeasureId::Cms137;
    let Some(age) = c.age_at(c.p.end) else {
        return vec![
            res(m, "initiation", Outcome::InsufficientData("birth date")),
            res(m, "engagement", Outcome::InsufficientData("birth date")),
        ];
    };
    if age < 13 {
        let o = Outcome::NotEligible("younger than 13");
        return vec![res(m, "initiation", o.clone()), res(m, "engagement", o)];
    }
    let history = sud_dates(c);
    // The most recent SUD episode in the period: an SUD-coded encounter with no SUD diagnosis
    // in the 60 days before it.
    let episode =
        c.r.encounters
            .iter()
            .filter(|e| {
                e.start >= c.p.start
                    && e.start <= c.p.end
                    && has_dx(&e.diagnoses, &vs::SUBSTANCE_USE_DISORDER)
            })
            .filter(|e| {
                let from = e.start - Days::new(60);
                !history.iter().any(|d| *d >= from && *d < e.start)
            })
            .max_by(|a, b| a.start.cmp(&b.start).then_with(|| a.id.cmp(&b.id)));
    let Some(ep) = episode else {
        let o = Outcome::NotEligible("no new SUD episode in the period");
        return vec![res(m, "initiation", o.clone()), res(m, "engagement", o)];
    };
    if let Some(o) = c.hospice_or_palliative(false) {
        return vec![res(m, "initiation", o.clone()), res(m, "engagement", o)];
    }
    let init_due = plus_days(ep.start, 14);
    let initiation: Option<(NaiveDate, SourceId)> = if ep.is_stay() {
        Some((ep.start, ep.id.clone()))
    } else {
        sud_treatment(c, ep.start, init_due)
            .into_iter()
            .next()
            .map(|(d, id, _)| (d, id))
    };
    let Some((init_date, init_id)) = initiation else {
        return vec![
            gap(m, "initiation", init_due, vec![ep.id.clone()]),
            gap(
                m,
                "engagement",
                plus_days(init_due, 34),
                vec![ep.id.clone()],
            ),
        ];
    };
    let first = res(m, "initiation", Outcome::Met(vec![init_id.clone()]));
    let eng_due = plus_days(init_date, 34);
    let events = sud_treatment(c, init_date, eng_due);
    let long_acting: Vec<SourceId> = events.iter().filter(|e| e.2).map(|e| e.1.clone()).collect();
    let engagement = if !long_acting.is_empty() {
        res(m, "engagement", Outcome::Met(long_acting))
    } else if events.len() >= 2 {
        res(
            m,
            "engagement",
            Outcome::Met(events.into_iter().map(|e| e.1).collect()),
        )
    } else {
        gap(m, "engagement", eng_due, vec![ep.id.clone(), init_id])
    };
    vec![first, engagement]
}

fn ed_follow_up(c: &Ctx, m: MeasureId) -> Vec<RuleResult> {
    let (set, min_age): (&ValueSet, i32) = match m {
        MeasureId::Fua => (&vs::SUBSTANCE_USE_DISORDER, 13),
        _ => (&vs::MENTAL_ILLNESS, 6),
    };
    let Some(birth) = c.birth else {
        return vec![
            res(m, "7_day", Outcome::InsufficientData("birth date")),
            res(m, "30_day", Outcome::InsufficientData("birth date")),
        ];
    };
    let visits: Vec<_> =
        c.r.encounters
            .iter()
            .filter(|e| e.class == EC::Emergency && e.start >= c.p.start && e.start <= c.p.end)
            .filter(|e| e.principal_diagnosis().is_some_and(|d| set.contains(d)))
            .filter(|e| crate::model::age_on(birth, e.start) >= min_age)
            .collect();
    // Visits followed by an admission within 30 days are excluded (the stay is the follow-up
    // a different measure covers).
    let admitted = |d: NaiveDate| {
        c.r.encounters.iter().find(|e| {
            matches!(
                e.class,
                EncounterClass::Inpatient | EncounterClass::Residential
            ) && e.start >= d
                && e.start <= plus_days(d, 30)
        })
    };
    let Some(ed) = visits
        .iter()
        .filter(|e| admitted(e.start).is_none())
        .max_by(|a, b| a.start.cmp(&b.start).then_with(|| a.id.cmp(&b.id)))
    else {
        if let Some(e) = visits.iter().max_by_key(|e| e.start)
            && let Some(adm) = admitted(e.start)
        {
            let o = Outcome::Excluded {
                reason: "admitted within 30 days of the ED visit",
                evidence: vec![e.id.clone(), adm.id.clone()],
            };
            return vec![res(m, "7_day", o.clone()), res(m, "30_day", o)];
        }
        let o = Outcome::NotEligible("no qualifying ED visit in the period");
        return vec![res(m, "7_day", o.clone()), res(m, "30_day", o)];
    };
    if let Some(o) = c.hospice_or_palliative(false) {
        return vec![res(m, "7_day", o.clone()), res(m, "30_day", o)];
    }
    let follow = |days: u64| -> Vec<SourceId> {
        let until = plus_days(ed.start, days);
        let mut v: Vec<SourceId> = c
            .r
            .encounters
            .iter()
            .filter(|e| {
                e.id != ed.id && e.class != EC::Emergency && e.start >= ed.start && e.start <= until
            })
            .filter(|e| match m {
                MeasureId::Fua => has_dx(&e.diagnoses, set),
                _ => {
                    e.principal_diagnosis().is_some_and(|d| set.contains(d))
                        || has_dx(&e.diagnoses, &SELF_HARM)
                }
            })
            .map(|e| e.id.clone())
            .collect();
        if m == MeasureId::Fua {
            v.extend(
                c.meds_started(drugs::SUD_PHARMACOTHERAPY, ed.start, until)
                    .into_iter()
                    .map(|md| md.id.clone()),
            );
        }
        v
    };
    [("7_day", 7u64), ("30_day", 30u64)]
        .into_iter()
        .map(|(comp, days)| {
            let f = follow(days);
            if f.is_empty() {
                gap(m, comp, plus_days(ed.start, days), vec![ed.id.clone()])
            } else {
                res(m, comp, Outcome::Met(f))
            }
        })
        .collect()
}

static SELF_HARM: ValueSet = ValueSet {
    name: "Intentional Self-Harm",
    codes: &[
        (crate::model::CodeSystem::Icd10Cm, "T14.91*"),
        (crate::model::CodeSystem::Icd10Cm, "X7*"),
        (crate::model::CodeSystem::Icd10Cm, "X80*"),
        (crate::model::CodeSystem::Icd10Cm, "X81*"),
        (crate::model::CodeSystem::Icd10Cm, "X82*"),
        (crate::model::CodeSystem::Icd10Cm, "X83*"),
    ],
};

/// CoCo's risk score over a gap list (spec §2.1.5): the mean of priority weight × impact,
/// capped at 1, 0 without gaps. Kept for API compatibility; it is a summary of the list, not a
/// clinical risk.
pub fn risk_score(gaps: &[Gap]) -> f64 {
    if gaps.is_empty() {
        return 0.0;
    }
    let sum: f64 = gaps
        .iter()
        .map(|g| g.info.priority.weight() * g.info.impact)
        .sum();
    (sum / gaps.len() as f64).min(1.0)
}

/// CoCo's recommendation strings (spec §2.1.6) plus one for follow-up gaps, which CoCo never
/// produced.
pub fn recommendations(gaps: &[Gap]) -> Vec<String> {
    let mut out = Vec::new();
    let high = gaps
        .iter()
        .filter(|g| g.info.priority >= Priority::High)
        .count();
    if high > 0 {
        out.push(format!(
            "Schedule appointments for {high} high-priority care gaps within 30 days"
        ));
    }
    let names = |t: GapType| -> Vec<&str> {
        gaps.iter()
            .filter(|g| g.info.gap_type == t)
            .map(|g| g.info.name)
            .collect()
    };
    let s = names(GapType::Screening);
    if !s.is_empty() {
        out.push(format!("Preventive screenings needed: {}", s.join(", ")));
    }
    let v = names(GapType::Vaccination);
    if !v.is_empty() {
        out.push(format!("Vaccinations due: {}", v.join(", ")));
    }
    if !names(GapType::LabTest).is_empty() {
        out.push("Order pending laboratory tests for chronic disease monitoring".to_string());
    }
    let f = names(GapType::FollowUp);
    if !f.is_empty() {
        out.push(format!("Arrange follow-up: {}", f.join(", ")));
    }
    out
}
