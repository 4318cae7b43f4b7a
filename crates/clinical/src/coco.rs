//! CoCo's response shapes (spec §1.4–1.6), field for field, and conversions from this crate's
//! results, so the gateway can serve CoCo's paths to CoCo's clients unchanged.
//!
//! # Where the values differ from CoCo's (by design)
//!
//! * Timestamps are naive UTC ISO-8601 without offset, as CoCo writes them; the caller supplies
//!   them (the crate has no clock).
//! * `confidence_interval` is `null`: neither LACE nor HOSPITAL has a published per-patient
//!   interval (see [`crate::readmission`]). `model_governance` describes the published scores:
//!   `validation_auc` is the published validation C-statistic (LACE 0.684; HOSPITAL 0.72; the
//!   lower one when both are used), `training_date` and `last_drift_check` are `null` (nothing is
//!   trained or drifts), `fairness_metrics` is empty (none published), `drift_status` is
//!   `not_applicable`.
//! * `risk_score` (readmission) is normalised points, not a probability.
//! * Summaries: `citations[].relevance_score` is 1.0 (every statement is a direct extraction of
//!   the cited record); `rag_metrics` counts records (`documents_retrieved` = records in the
//!   patient's record, `documents_used` = records cited) and reports 0 tokens because no model
//!   ran; `model_info` says `extractive`.
//!
//! # Dates by role
//!
//! The record's own dates are Safe Harbor identifiers. Structured date fields built here
//! (`care_gaps[].due_date`, `citations[].source_date`) follow the caller's [`OutputRedaction`]:
//! [`OutputRedaction::Keep`] serves the date as recorded, every redacting mode serves only its
//! year, as a four-digit string (`"2026"`), which is what Safe Harbor de-identification keeps
//! (the same reduction as `phi::deid::date_to_year`). Free text (the summary, findings,
//! snippets) is redacted by the `phi` crate's mode instead (`[DATE]`). See [`RoleDate`].

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, NaiveDateTime};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::PatientRecord;
use crate::gaps::{self, Gap, GapType, MEASURES, Priority};
use crate::readmission::{Assessment, INTERVENTIONS, RiskTier, Score};
use crate::summary::{
    Fact, OutputRedaction, PhiScan, Section, Statement, Summary, Trend, scan_and_redact,
};

/// One entry of a response's `audit_trail` (filled by the gateway from its audit log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditTrailEntry {
    /// Entry id.
    pub id: String,
    /// When.
    pub timestamp: NaiveDateTime,
    /// Operation name.
    pub operation: String,
    /// Details (never PHI values).
    pub details: serde_json::Value,
    /// Hash.
    pub hash: String,
}

/// `audit_trail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AuditTrail {
    /// Entries.
    pub entries: Vec<AuditTrailEntry>,
    /// Head hash.
    pub hash: String,
}

/// A year on its own, serialized as a four-digit string (`"2026"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Year(pub i32);

impl Serialize for Year {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:04}", self.0))
    }
}

impl<'de> Deserialize<'de> for Year {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().map(Year).map_err(serde::de::Error::custom)
        } else {
            Err(serde::de::Error::custom("a year must be four digits"))
        }
    }
}

/// A date of the record as the caller's role may see it: in full, or only its year (see the
/// module docs, *Dates by role*). Serialized untagged: the date as CoCo writes it, or `"2026"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RoleDate<T> {
    /// As recorded ([`OutputRedaction::Keep`]).
    Full(T),
    /// The year only (every redacting mode).
    Year(Year),
}

impl<T: Datelike> RoleDate<T> {
    /// `date` as a role with `redaction` may see it.
    pub fn for_role(date: T, redaction: OutputRedaction<'_>) -> Self {
        match redaction {
            OutputRedaction::Keep => Self::Full(date),
            OutputRedaction::Redact(_) => Self::Year(Year(date.year())),
        }
    }

    /// The year, whichever form the date has.
    pub fn year(&self) -> i32 {
        match self {
            Self::Full(d) => d.year(),
            Self::Year(y) => y.0,
        }
    }
}

/// `CareGap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CareGap {
    /// `gap-` + 8 hex.
    pub gap_id: String,
    /// `CareGapType`.
    #[serde(rename = "type")]
    pub gap_type: GapType,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Source and version.
    pub guideline_source: String,
    /// `YYYY-MM-DD`, or the year only for a redacting role ([`RoleDate`]).
    pub due_date: RoleDate<NaiveDate>,
    /// Priority.
    pub priority: Priority,
    /// ICD-10 codes.
    pub icd10_codes: Vec<String>,
    /// CPT codes.
    pub cpt_codes: Vec<String>,
    /// 0..1.
    pub estimated_impact: f64,
}

impl From<&Gap> for CareGap {
    /// The gap as recorded (full due date): for a role that sees the record as is, and for
    /// hashing; a response to another role uses [`CareGap::for_role`].
    fn from(g: &Gap) -> Self {
        Self::for_role(g, OutputRedaction::Keep)
    }
}

impl CareGap {
    /// The gap as a role with `redaction` may see it (the due date is derived from the
    /// record's dates: the year only for a redacting role).
    pub fn for_role(g: &Gap, redaction: OutputRedaction<'_>) -> Self {
        Self {
            gap_id: g.gap_id(),
            gap_type: g.info.gap_type,
            name: g.info.name.to_string(),
            description: g.info.description.to_string(),
            guideline_source: g.info.source.to_string(),
            due_date: RoleDate::for_role(g.due, redaction),
            priority: g.info.priority,
            icd10_codes: g.info.icd10.iter().map(|s| s.to_string()).collect(),
            cpt_codes: g.info.cpt.iter().map(|s| s.to_string()).collect(),
            estimated_impact: g.info.impact,
        }
    }
}

/// `CareGapResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CareGapResponse {
    /// Patient id as requested.
    pub patient_id: String,
    /// When.
    pub analysis_timestamp: NaiveDateTime,
    /// Number of gaps.
    pub total_gaps: usize,
    /// CoCo's mean weighted score.
    pub risk_score: f64,
    /// Gaps.
    pub care_gaps: Vec<CareGap>,
    /// Recommendations.
    pub recommendations: Vec<String>,
    /// Audit trail.
    pub audit_trail: AuditTrail,
}

impl CareGapResponse {
    /// Builds the response from detected gaps, for a caller whose role gets `redaction`.
    pub fn build(
        patient_id: &str,
        analysis_timestamp: NaiveDateTime,
        gaps: &[Gap],
        redaction: OutputRedaction<'_>,
        audit_trail: AuditTrail,
    ) -> Self {
        Self {
            patient_id: patient_id.to_string(),
            analysis_timestamp,
            total_gaps: gaps.len(),
            risk_score: gaps::risk_score(gaps),
            care_gaps: gaps
                .iter()
                .map(|g| CareGap::for_role(g, redaction))
                .collect(),
            recommendations: gaps::recommendations(gaps),
            audit_trail,
        }
    }
}

/// `PatientCohort` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientCohort {
    /// 1..=1000 ids.
    pub patient_ids: Vec<String>,
    /// Filter.
    #[serde(default)]
    pub gap_types: Option<Vec<GapType>>,
    /// Filter.
    #[serde(default)]
    pub min_priority: Option<Priority>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub include_closed_gaps: bool,
}

/// `CareGapSummary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CareGapSummary {
    /// Ids analysed (duplicates count).
    pub total_patients_analyzed: usize,
    /// Patients with any gap (before filtering).
    pub patients_with_gaps: usize,
    /// Gaps after filtering.
    pub total_gaps_identified: usize,
    /// Only types that occur.
    pub gaps_by_type: BTreeMap<GapType, usize>,
    /// Only priorities that occur.
    pub gaps_by_priority: BTreeMap<Priority, usize>,
    /// Mean risk score over the ids (before filtering).
    pub average_risk_score: f64,
}

/// CoCo's cohort semantics (spec §2.1.7) over per-patient gap lists.
pub fn cohort_summary(
    per_patient: &[Vec<Gap>],
    gap_types: Option<&[GapType]>,
    min_priority: Option<Priority>,
) -> CareGapSummary {
    let n = per_patient.len();
    let with = per_patient.iter().filter(|g| !g.is_empty()).count();
    let avg = if n == 0 {
        0.0
    } else {
        per_patient.iter().map(|g| gaps::risk_score(g)).sum::<f64>() / n as f64
    };
    let mut by_type = BTreeMap::new();
    let mut by_prio = BTreeMap::new();
    let mut total = 0;
    for g in per_patient.iter().flatten() {
        if gap_types.is_some_and(|t| !t.contains(&g.info.gap_type))
            || min_priority.is_some_and(|p| g.info.priority < p)
        {
            continue;
        }
        total += 1;
        *by_type.entry(g.info.gap_type).or_insert(0) += 1;
        *by_prio.entry(g.info.priority).or_insert(0) += 1;
    }
    CareGapSummary {
        total_patients_analyzed: n,
        patients_with_gaps: with,
        total_gaps_identified: total,
        gaps_by_type: by_type,
        gaps_by_priority: by_prio,
        average_risk_score: avg,
    }
}

/// Response of closing a gap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapClosure {
    /// `closed`.
    pub status: String,
    /// Gap id.
    pub gap_id: String,
    /// Patient id.
    pub patient_id: String,
    /// Date.
    pub closure_date: NaiveDate,
    /// Reason.
    pub closure_reason: String,
    /// Audit hash (from the gateway's audit log).
    pub audit_hash: String,
}

/// One guideline of `GET /guidelines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guideline {
    /// Id (`cms130v13`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Where the specification is published.
    pub url: String,
    /// Gap types it produces.
    pub gap_types: Vec<GapType>,
}

/// `GET /guidelines`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuidelinesResponse {
    /// The catalogue.
    pub guidelines: Vec<Guideline>,
    /// Start of the performance period whose measure versions are followed.
    pub last_updated: String,
    /// Start of the next performance period (when versions should be reviewed).
    pub next_update: String,
}

/// The guideline catalogue, generated from [`MEASURES`] (the rules actually evaluated: the
/// catalogue cannot disagree with the engine, as CoCo's did).
pub fn guidelines() -> GuidelinesResponse {
    let mut out: Vec<Guideline> = Vec::new();
    for m in MEASURES {
        if let Some(g) = out.iter_mut().find(|g| g.version == m.version) {
            if !g.gap_types.contains(&m.gap_type) {
                g.gap_types.push(m.gap_type);
            }
            continue;
        }
        let id = m
            .version
            .split_whitespace()
            .next()
            .unwrap_or(m.version)
            .to_ascii_lowercase();
        let url = match m.measure {
            gaps::MeasureId::Fua => "https://www.ncqa.org/hedis/measures/follow-up-after-emergency-department-visit-for-substance-use/".to_string(),
            gaps::MeasureId::Fum => "https://www.ncqa.org/hedis/measures/follow-up-after-emergency-department-visit-for-mental-illness/".to_string(),
            _ => {
                let (num, ver) = id.trim_start_matches("cms").split_once('v').unwrap_or(("0", "0"));
                format!("https://ecqi.healthit.gov/ecqm/ec/2025/cms{:0>4}v{ver}", num)
            }
        };
        let name = m.name.split(" (").next().unwrap_or(m.name).to_string();
        out.push(Guideline {
            id,
            name,
            version: m.version.to_string(),
            url,
            gap_types: vec![m.gap_type],
        });
    }
    GuidelinesResponse {
        guidelines: out,
        last_updated: "2025-01-01".into(),
        next_update: "2026-01-01".into(),
    }
}

/// `ContributingFactor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContributingFactor {
    /// `lace_length_of_stay`, `hospital_sodium_at_discharge`, ...
    pub factor_name: String,
    /// `clinical|social|utilization`.
    pub factor_category: String,
    /// Points ÷ the score's maximum.
    pub weight: f64,
    /// The input value.
    pub value: String,
    /// The zero-point range.
    pub reference_range: Option<String>,
    /// Modifiable.
    pub is_modifiable: bool,
}

/// `Intervention`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    /// Id.
    pub intervention_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Targets.
    pub target_factors: Vec<String>,
    /// Reported relative reduction.
    pub estimated_risk_reduction: f64,
    /// A–D.
    pub evidence_level: String,
    /// easy|moderate|complex.
    pub implementation_difficulty: String,
}

impl From<&crate::readmission::Intervention> for Intervention {
    fn from(i: &crate::readmission::Intervention) -> Self {
        Self {
            intervention_id: i.id.into(),
            name: i.name.into(),
            description: format!("{} (source: {})", i.description, i.source),
            target_factors: i.target_factors.iter().map(|s| s.to_string()).collect(),
            estimated_risk_reduction: i.estimated_risk_reduction,
            evidence_level: i.evidence_level.into(),
            implementation_difficulty: i.implementation_difficulty.into(),
        }
    }
}

/// The intervention catalogue (`GET /interventions`): the same list the predictions use.
pub fn interventions() -> Vec<Intervention> {
    INTERVENTIONS.iter().map(Intervention::from).collect()
}

/// `ModelGovernance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelGovernance {
    /// Id.
    pub model_id: String,
    /// Version.
    pub model_version: String,
    /// `null`: published scores are not trained here.
    pub training_date: Option<NaiveDateTime>,
    /// Published validation C-statistic.
    pub validation_auc: f64,
    /// Empty: none published.
    pub fairness_metrics: serde_json::Map<String, serde_json::Value>,
    /// `null`.
    pub last_drift_check: Option<NaiveDateTime>,
    /// `not_applicable`.
    pub drift_status: String,
}

/// `ReadmissionPrediction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadmissionPrediction {
    /// Patient id.
    pub patient_id: String,
    /// The index stay's source id.
    pub encounter_id: Option<String>,
    /// When.
    pub prediction_timestamp: NaiveDateTime,
    /// Normalised points 0..1.
    pub risk_score: f64,
    /// Tier.
    pub risk_tier: RiskTier,
    /// Always `null` (see the module docs).
    pub confidence_interval: Option<[f64; 2]>,
    /// The scored components with points.
    pub contributing_factors: Vec<ContributingFactor>,
    /// Interventions.
    pub recommended_interventions: Vec<Intervention>,
    /// Governance block.
    pub model_governance: ModelGovernance,
    /// Audit trail.
    pub audit_trail: AuditTrail,
}

fn factors(score: &Score) -> Vec<ContributingFactor> {
    score
        .components
        .iter()
        .filter(|c| c.points > 0)
        .map(|c| ContributingFactor {
            factor_name: format!("{}_{}", score.name.to_ascii_lowercase(), c.name),
            factor_category: c.category.into(),
            weight: f64::from(c.points) / f64::from(score.max_points),
            value: c.value.clone(),
            reference_range: Some(c.reference_range.into()),
            is_modifiable: c.modifiable,
        })
        .collect()
}

impl ReadmissionPrediction {
    /// Builds a prediction; `Err` with the missing inputs when neither score could be computed.
    pub fn build(
        patient_id: &str,
        a: &Assessment,
        prediction_timestamp: NaiveDateTime,
        audit_trail: AuditTrail,
    ) -> Result<Self, Vec<&'static str>> {
        let (Some(tier), Some(risk)) = (a.tier, a.risk_score) else {
            let mut missing = Vec::new();
            for o in [&a.lace, &a.hospital] {
                if let crate::readmission::ScoreOutcome::InsufficientData(m) = o {
                    missing.extend(m.iter().copied());
                }
            }
            missing.sort();
            missing.dedup();
            return Err(missing);
        };
        let mut f: Vec<ContributingFactor> = [a.lace.score(), a.hospital.score()]
            .into_iter()
            .flatten()
            .flat_map(factors)
            .collect();
        f.sort_by(|x, y| {
            y.weight
                .total_cmp(&x.weight)
                .then_with(|| x.factor_name.cmp(&y.factor_name))
        });
        let (id, auc) = match (a.lace.score(), a.hospital.score()) {
            (Some(_), Some(_)) => ("lace+hospital", 0.684),
            (Some(_), None) => ("lace", 0.684),
            _ => ("hospital", 0.72),
        };
        Ok(Self {
            patient_id: patient_id.into(),
            encounter_id: Some(a.encounter.to_string()),
            prediction_timestamp,
            risk_score: risk,
            risk_tier: tier,
            confidence_interval: a.confidence_interval.map(|(l, u)| [l, u]),
            contributing_factors: f,
            recommended_interventions: a
                .interventions
                .iter()
                .copied()
                .map(Intervention::from)
                .collect(),
            model_governance: ModelGovernance {
                model_id: id.into(),
                model_version:
                    "LACE (van Walraven, CMAJ 2010); HOSPITAL (Donze, JAMA Intern Med 2013)".into(),
                training_date: None,
                validation_auc: auc,
                fairness_metrics: serde_json::Map::new(),
                last_drift_check: None,
                drift_status: "not_applicable".into(),
            },
            audit_trail,
        })
    }
}

/// `BatchPredictionRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPredictionRequest {
    /// 1..=500 ids.
    pub patient_ids: Vec<String>,
    /// Accepted for compatibility.
    #[serde(default)]
    pub encounter_type: Option<String>,
    /// Include interventions.
    #[serde(default = "yes")]
    pub include_interventions: bool,
}

fn yes() -> bool {
    true
}

/// `summary` of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchSummary {
    /// Count per tier (all four keys).
    pub risk_tier_distribution: BTreeMap<RiskTier, usize>,
    /// high + critical.
    pub high_risk_count: usize,
    /// Mean risk score.
    pub average_risk_score: f64,
    /// Model version.
    pub model_version: String,
}

/// `BatchPredictionResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPredictionResponse {
    /// Count.
    pub total_patients: usize,
    /// Predictions.
    pub predictions: Vec<ReadmissionPrediction>,
    /// Summary.
    pub summary: BatchSummary,
    /// Measured by the caller.
    pub processing_time_ms: f64,
}

impl BatchPredictionResponse {
    /// Builds the response and its summary.
    pub fn build(predictions: Vec<ReadmissionPrediction>, processing_time_ms: f64) -> Self {
        let mut dist: BTreeMap<RiskTier, usize> = [
            RiskTier::Low,
            RiskTier::Medium,
            RiskTier::High,
            RiskTier::Critical,
        ]
        .into_iter()
        .map(|t| (t, 0))
        .collect();
        for p in &predictions {
            *dist.entry(p.risk_tier).or_insert(0) += 1;
        }
        let n = predictions.len();
        let avg = if n == 0 {
            0.0
        } else {
            predictions.iter().map(|p| p.risk_score).sum::<f64>() / n as f64
        };
        Self {
            total_patients: n,
            summary: BatchSummary {
                high_risk_count: dist[&RiskTier::High] + dist[&RiskTier::Critical],
                risk_tier_distribution: dist,
                average_risk_score: avg,
                model_version: "LACE 2010 + HOSPITAL 2013".into(),
            },
            predictions,
            processing_time_ms,
        }
    }
}

/// `SummaryType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SummaryType {
    /// Everything.
    #[default]
    Comprehensive,
    /// Problems (optionally one code) with their labs.
    ProblemFocused,
    /// Medications.
    Medication,
    /// Labs and vitals.
    LabTrend,
    /// Problems, medications, encounters.
    CareTransition,
}

impl SummaryType {
    /// The sections each type shows.
    pub fn sections(self) -> &'static [Section] {
        use Section::*;
        match self {
            SummaryType::Comprehensive => &[
                ActiveProblems,
                Medications,
                Labs,
                Vitals,
                Assessments,
                Encounters,
            ],
            SummaryType::ProblemFocused => &[ActiveProblems, Labs, Assessments],
            SummaryType::Medication => &[Medications],
            SummaryType::LabTrend => &[Labs, Vitals],
            SummaryType::CareTransition => &[ActiveProblems, Medications, Encounters],
        }
    }
}

/// `TimeRange`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeRange {
    /// 1 day.
    LastVisit,
    /// 30 days.
    LastMonth,
    /// 90 days.
    Last3Months,
    /// 180 days.
    #[default]
    Last6Months,
    /// 365 days.
    LastYear,
    /// Everything.
    AllTime,
}

impl TimeRange {
    /// The first day of the range ending `as_of` (`None` = all time). Days as CoCo counts them.
    pub fn since(self, as_of: NaiveDate) -> Option<NaiveDate> {
        let days = match self {
            TimeRange::LastVisit => 1,
            TimeRange::LastMonth => 30,
            TimeRange::Last3Months => 90,
            TimeRange::Last6Months => 180,
            TimeRange::LastYear => 365,
            TimeRange::AllTime => return None,
        };
        as_of.checked_sub_days(chrono::Days::new(days))
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeRange::LastVisit => "last_visit",
            TimeRange::LastMonth => "last_month",
            TimeRange::Last3Months => "last_3_months",
            TimeRange::Last6Months => "last_6_months",
            TimeRange::LastYear => "last_year",
            TimeRange::AllTime => "all_time",
        }
    }
}

/// `SummarizationRequest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummarizationRequest {
    /// Patient.
    pub patient_id: String,
    /// Type.
    #[serde(default)]
    pub summary_type: SummaryType,
    /// Range.
    #[serde(default)]
    pub time_range: TimeRange,
    /// Explicit range (overrides `time_range`).
    #[serde(default)]
    pub custom_date_range: Option<[NaiveDate; 2]>,
    /// ICD-10 codes or words a problem-focused summary keeps.
    #[serde(default)]
    pub focus_areas: Option<Vec<String>>,
    /// Medications section.
    #[serde(default = "yes")]
    pub include_medications: bool,
    /// Labs section.
    #[serde(default = "yes")]
    pub include_labs: bool,
    /// Vitals section.
    #[serde(default = "yes")]
    pub include_vitals: bool,
    /// 100..=2000 (tokens; the text is capped at 4 characters per token).
    #[serde(default = "max_len")]
    pub max_length: u32,
}

fn max_len() -> u32 {
    500
}

/// `key_findings[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyFinding {
    /// Text.
    pub finding: String,
    /// `lab_result`, `vital_sign`, `assessment`.
    pub category: String,
    /// Not assessed: `null`.
    pub severity: Option<String>,
    /// Trend.
    pub trend: Option<Trend>,
    /// Cited source ids.
    pub citations: Vec<String>,
}

/// `citations[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// Record id.
    pub source_id: String,
    /// Record type.
    pub source_type: String,
    /// Record date (midnight); the year only for a redacting role ([`RoleDate`]).
    pub source_date: RoleDate<NaiveDateTime>,
    /// 1.0 (direct extraction).
    pub relevance_score: f64,
    /// The (redacted) statement that cites it.
    pub snippet: String,
    /// Not recorded: `null`.
    pub author: Option<String>,
}

/// `phi_audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhiAudit {
    /// Scan ran.
    pub scan_performed: bool,
    /// Found anything.
    pub phi_detected: bool,
    /// Kinds.
    pub phi_types_found: Vec<String>,
    /// Text changed by redaction.
    pub redaction_applied: bool,
    /// The gateway's audit event id.
    pub audit_id: String,
}

/// `rag_metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RagMetrics {
    /// Records in the patient's record.
    pub documents_retrieved: usize,
    /// Records cited.
    pub documents_used: usize,
    /// 1.0 when any record is used, else 0.
    pub average_relevance: f64,
    /// 0: no model.
    pub context_tokens: u64,
    /// 0: no model.
    pub generation_tokens: u64,
    /// Measured by the caller.
    pub latency_ms: f64,
}

/// `ClinicalSummaryResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClinicalSummaryResponse {
    /// Patient.
    pub patient_id: String,
    /// Type.
    pub summary_type: SummaryType,
    /// Range name.
    pub time_range: String,
    /// When.
    pub generated_at: NaiveDateTime,
    /// Text (redacted for the role).
    pub summary: String,
    /// Findings.
    pub key_findings: Vec<KeyFinding>,
    /// Problems.
    pub active_problems: Vec<String>,
    /// Medications.
    pub current_medications: Vec<String>,
    /// Labs as dicts `{name, value, date, status, source_id}`.
    pub recent_labs: Vec<serde_json::Value>,
    /// Citations.
    pub citations: Vec<Citation>,
    /// PHI audit.
    pub phi_audit: PhiAudit,
    /// Metrics.
    pub rag_metrics: RagMetrics,
    /// Model info.
    pub model_info: serde_json::Value,
    /// Audit trail.
    pub audit_trail: AuditTrail,
}

/// What the gateway passes to [`ClinicalSummaryResponse::build`] besides the record.
#[derive(Debug, Clone)]
pub struct SummaryContext<'a> {
    /// Patient id as requested.
    pub patient_id: &'a str,
    /// Type.
    pub summary_type: SummaryType,
    /// Range name.
    pub time_range: &'a str,
    /// Generation time.
    pub generated_at: NaiveDateTime,
    /// Sections to drop (include_medications=false ...).
    pub exclude: &'a [Section],
    /// Problem codes / words to keep in a problem-focused summary.
    pub focus: &'a [String],
    /// max_length (tokens).
    pub max_length: u32,
    /// Redaction for the caller's role.
    pub redaction: OutputRedaction<'a>,
    /// Audit id assigned by the gateway.
    pub audit_id: String,
    /// Measured latency.
    pub latency_ms: f64,
    /// Audit trail.
    pub audit_trail: AuditTrail,
}

impl ClinicalSummaryResponse {
    /// Filters the summary to the type's sections, redacts it for the role and fills the shape.
    pub fn build(record: &PatientRecord, summary: &Summary, ctx: SummaryContext<'_>) -> Self {
        let sections = ctx.summary_type.sections();
        let keep = |s: &&Statement| {
            sections.contains(&s.section)
                && !ctx.exclude.contains(&s.section)
                && (ctx.focus.is_empty()
                    || s.section != Section::ActiveProblems
                    || ctx.focus.iter().any(|f| {
                        s.text
                            .to_ascii_lowercase()
                            .contains(&f.to_ascii_lowercase())
                    }))
        };
        let stmts: Vec<&Statement> = summary.statements.iter().filter(keep).collect();
        let mut scan = PhiScan {
            scan_performed: true,
            phi_detected: false,
            phi_types_found: vec![],
            redaction_applied: false,
        };
        let mut redact = |t: &str| {
            let (out, s) = scan_and_redact(t, ctx.redaction);
            scan.phi_detected |= s.phi_detected;
            scan.redaction_applied |= s.redaction_applied;
            scan.phi_types_found.extend(s.phi_types_found);
            out
        };
        let texts: Vec<String> = stmts.iter().map(|s| redact(&s.text)).collect();
        let cap = ctx.max_length.clamp(100, 2000) as usize * 4;
        let mut text = String::new();
        for (s, t) in stmts.iter().zip(&texts) {
            let ids: Vec<&str> = s.citations.iter().map(|c| c.as_str()).collect();
            let line = format!("{t} [{}]", ids.join(", "));
            if text.len() + line.len() + 1 > cap {
                break;
            }
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&line);
        }
        let mut key_findings = Vec::new();
        let mut problems = Vec::new();
        let mut meds = Vec::new();
        let mut labs = Vec::new();
        let mut citations: Vec<Citation> = Vec::new();
        for (s, t) in stmts.iter().zip(&texts) {
            match s.section {
                Section::ActiveProblems => problems.push(t.clone()),
                Section::Medications => meds.push(t.clone()),
                Section::Labs | Section::Vitals | Section::Assessments => {
                    let category = match s.section {
                        Section::Labs => "lab_result",
                        Section::Vitals => "vital_sign",
                        _ => "assessment",
                    };
                    let trend = match &s.fact {
                        Fact::Lab { trend, .. } => *trend,
                        _ => None,
                    };
                    key_findings.push(KeyFinding {
                        finding: t.clone(),
                        category: category.into(),
                        severity: None,
                        trend,
                        citations: s.citations.iter().map(|c| c.to_string()).collect(),
                    });
                    if let Fact::Lab {
                        kind,
                        value,
                        date,
                        trend,
                        ..
                    } = &s.fact
                        && s.section == Section::Labs
                    {
                        labs.push(serde_json::json!({
                            "name": kind.name(),
                            "value": value,
                            "unit": kind.canonical_unit(),
                            "date": redact(&date.to_string()),
                            "status": trend,
                            "source_id": s.citations[0].to_string(),
                        }));
                    }
                }
                Section::Encounters => {}
            }
            for c in &s.citations {
                if citations.iter().any(|x| x.source_id == c.as_str()) {
                    continue;
                }
                if let Some(item) = record.find(c) {
                    citations.push(Citation {
                        source_id: c.to_string(),
                        source_type: item.source_type().into(),
                        source_date: RoleDate::for_role(
                            item.date().and_hms_opt(0, 0, 0).unwrap_or_default(),
                            ctx.redaction,
                        ),
                        relevance_score: 1.0,
                        snippet: t.clone(),
                        author: None,
                    });
                }
            }
        }
        scan.phi_types_found.sort();
        scan.phi_types_found.dedup();
        let used = citations.len();
        Self {
            patient_id: ctx.patient_id.into(),
            summary_type: ctx.summary_type,
            time_range: ctx.time_range.into(),
            generated_at: ctx.generated_at,
            summary: text,
            key_findings,
            active_problems: problems,
            current_medications: meds,
            recent_labs: labs,
            citations,
            phi_audit: PhiAudit {
                scan_performed: true,
                phi_detected: scan.phi_detected,
                phi_types_found: scan.phi_types_found,
                redaction_applied: scan.redaction_applied,
                audit_id: ctx.audit_id,
            },
            rag_metrics: RagMetrics {
                documents_retrieved: record.item_count(),
                documents_used: used,
                average_relevance: if used > 0 { 1.0 } else { 0.0 },
                context_tokens: 0,
                generation_tokens: 0,
                latency_ms: ctx.latency_ms,
            },
            model_info: serde_json::json!({"method": "extractive", "model": null, "version": env!("CARGO_PKG_VERSION")}),
            audit_trail: ctx.audit_trail,
        }
    }
}
