//! Deterministic extractive summaries in which every statement cites its source records, and a
//! PHI scan with role-dependent redaction of the output.
//!
//! # What a summary contains
//!
//! Sections, in order: active problems (diagnoses active on `as_of`), current medications
//! (active on `as_of`), recent labs (the latest value per kind in the time range, with a trend
//! against the previous value when there is one), recent vitals (blood pressure, heart rate,
//! respiratory rate, oxygen saturation), recent assessments (scored instruments), recent
//! encounters. Each section is capped at [`SummaryOptions::max_per_section`] items, most recent
//! first. Nothing is generated: every statement is a rendering of one or two records, and
//! [`verify`] checks a statement against the records it cites (the same check can be run on an
//! LLM's output later).
//!
//! # Trends
//!
//! Latest vs. previous value of the same kind: a change smaller than the kind's tolerance
//! ([`ObservationKind::trend_tolerance`]) is `stable`; otherwise `improving` or `worsening` by
//! the kind's direction (lower HbA1c is better, higher eGFR is better, sodium is judged by its
//! distance from 140 mmol/L).
//!
//! # PHI scan and redaction
//!
//! The output is scanned with the `phi` crate's detector (Safe Harbor identifiers, default
//! threshold). What happens to findings depends on the caller's role through a
//! [`RoleRedaction`] supplied by the caller: a role mapped to [`OutputRedaction::Keep`] (for
//! example a treating clinician) gets the text unchanged with the findings reported; other roles
//! get masked, tagged or pseudonymised text. **Unknown roles get [`phi::Mode::Tag`]** (secure
//! default). Dates in a summary are Safe Harbor identifiers, so a redacting role sees `[DATE]`.
//! The structured dates of CoCo's shapes (citation dates, care-gap due dates) are reduced to
//! their year for a redacting role instead ([`crate::coco::RoleDate`]).

use chrono::NaiveDate;
use serde::Serialize;

use crate::model::{
    BloodPressure, Diagnosis, DiagnosisStatus, Dose, Encounter, EncounterClass, Evaluation,
    ItemRef, Medication, Observation, ObservationKind, PatientRecord, SourceId,
};

/// A section of the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// Active problems.
    ActiveProblems,
    /// Current medications.
    Medications,
    /// Recent labs.
    Labs,
    /// Recent vitals.
    Vitals,
    /// Recent assessments.
    Assessments,
    /// Recent encounters.
    Encounters,
}

/// Direction of a lab trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// Toward the target.
    Improving,
    /// Within tolerance.
    Stable,
    /// Away from the target.
    Worsening,
}

/// The structured fact a statement renders (what [`verify`] checks).
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// An active diagnosis.
    Problem {
        /// ICD-10-CM code.
        code: String,
    },
    /// An active medication.
    Medication {
        /// Drug name.
        name: String,
        /// Dose, when recorded.
        dose: Option<Dose>,
    },
    /// A measurement (and the previous one for a trend).
    Lab {
        /// Kind.
        kind: ObservationKind,
        /// Latest value, canonical unit.
        value: f64,
        /// Its date.
        date: NaiveDate,
        /// Previous value and date, when a trend is stated.
        previous: Option<(f64, NaiveDate)>,
        /// The trend.
        trend: Option<Trend>,
    },
    /// A blood pressure.
    BloodPressure {
        /// Systolic.
        systolic: u16,
        /// Diastolic.
        diastolic: u16,
        /// Date.
        date: NaiveDate,
    },
    /// A scored assessment.
    Assessment {
        /// Instrument name.
        instrument: &'static str,
        /// Score.
        score: u16,
        /// Date.
        date: NaiveDate,
    },
    /// An encounter.
    Encounter {
        /// Class.
        class: EncounterClass,
        /// Start.
        start: NaiveDate,
        /// End.
        end: Option<NaiveDate>,
    },
}

/// One statement with its citations.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Section.
    pub section: Section,
    /// Rendered text.
    pub text: String,
    /// Source records (the first is the primary one).
    pub citations: Vec<SourceId>,
    /// The fact rendered.
    pub fact: Fact,
}

/// Options.
#[derive(Debug, Clone, Copy)]
pub struct SummaryOptions {
    /// The date the summary describes (never the wall clock inside the crate).
    pub as_of: NaiveDate,
    /// Only events on or after this date count as recent (`None` = all time).
    pub since: Option<NaiveDate>,
    /// Items per section.
    pub max_per_section: usize,
}

/// A summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Statements in section order.
    pub statements: Vec<Statement>,
}

impl Summary {
    /// The statements joined, one per line, each followed by its citations in brackets.
    pub fn text(&self) -> String {
        self.statements
            .iter()
            .map(|s| {
                let ids: Vec<&str> = s.citations.iter().map(SourceId::as_str).collect();
                format!("{} [{}]", s.text, ids.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Statements of one section.
    pub fn section(&self, section: Section) -> impl Iterator<Item = &Statement> {
        self.statements.iter().filter(move |s| s.section == section)
    }
}

fn fmt_value(kind: ObservationKind, v: f64) -> String {
    let unit = kind.canonical_unit().unwrap_or("");
    let decimals = match kind {
        ObservationKind::HbA1c | ObservationKind::Hemoglobin | ObservationKind::Creatinine => 1,
        _ => 0,
    };
    let sep = if unit == "%" { "" } else { " " };
    format!("{v:.decimals$}{sep}{unit}")
}

/// The trend from `previous` to `latest` for `kind`.
pub fn trend(kind: ObservationKind, previous: f64, latest: f64) -> Trend {
    let tol = kind.trend_tolerance();
    let delta = latest - previous;
    if delta.abs() < tol {
        return Trend::Stable;
    }
    let better = match kind.lower_is_better() {
        Some(true) => delta < 0.0,
        Some(false) => delta > 0.0,
        None if kind == ObservationKind::Sodium => {
            (latest - 140.0).abs() < (previous - 140.0).abs()
        }
        None => return Trend::Stable,
    };
    if better {
        Trend::Improving
    } else {
        Trend::Worsening
    }
}

fn trend_word(t: Trend) -> &'static str {
    match t {
        Trend::Improving => "improving",
        Trend::Stable => "stable",
        Trend::Worsening => "worsening",
    }
}

fn problem(d: &Diagnosis) -> Statement {
    let desc = d
        .description
        .as_ref()
        .map(|s| format!(" {}", s.expose().trim()))
        .unwrap_or_default();
    Statement {
        section: Section::ActiveProblems,
        text: format!(
            "Active problem: {}{} (since {})",
            d.code.code, desc, d.onset
        ),
        citations: vec![d.id.clone()],
        fact: Fact::Problem {
            code: d.code.code.clone(),
        },
    }
}

fn medication(m: &Medication) -> Statement {
    let dose = m
        .dose
        .map(|d| format!(" {} {}", trim_num(d.amount), d.unit.as_str()))
        .unwrap_or_default();
    let freq = m
        .frequency
        .as_deref()
        .map(|f| format!(" {}", f.trim()))
        .unwrap_or_default();
    Statement {
        section: Section::Medications,
        text: format!(
            "Medication: {}{}{} (started {})",
            m.name, dose, freq, m.start
        ),
        citations: vec![m.id.clone()],
        fact: Fact::Medication {
            name: m.name.clone(),
            dose: m.dose,
        },
    }
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn lab(
    latest: &Observation,
    previous: Option<&Observation>,
    section: Section,
) -> Option<Statement> {
    let v = latest.value?;
    let mut text = format!(
        "{} {} on {}",
        latest.kind.name(),
        fmt_value(latest.kind, v),
        latest.date
    );
    let mut citations = vec![latest.id.clone()];
    let mut prev = None;
    let mut tr = None;
    if let Some(p) = previous
        && let Some(pv) = p.value
    {
        let t = trend(latest.kind, pv, v);
        text.push_str(&format!(
            " (previous {} on {}: {})",
            fmt_value(latest.kind, pv),
            p.date,
            trend_word(t)
        ));
        citations.push(p.id.clone());
        prev = Some((pv, p.date));
        tr = Some(t);
    }
    Some(Statement {
        section,
        text,
        citations,
        fact: Fact::Lab {
            kind: latest.kind,
            value: v,
            date: latest.date,
            previous: prev,
            trend: tr,
        },
    })
}

fn bp(b: &BloodPressure) -> Statement {
    Statement {
        section: Section::Vitals,
        text: format!(
            "Blood pressure {}/{} mmHg on {}",
            b.systolic, b.diastolic, b.date
        ),
        citations: vec![b.id.clone()],
        fact: Fact::BloodPressure {
            systolic: b.systolic,
            diastolic: b.diastolic,
            date: b.date,
        },
    }
}

fn assessment(e: &Evaluation) -> Option<Statement> {
    let score = e.score?;
    Some(Statement {
        section: Section::Assessments,
        text: format!("{} score {} on {}", e.instrument.name(), score, e.date),
        citations: vec![e.id.clone()],
        fact: Fact::Assessment {
            instrument: e.instrument.name(),
            score,
            date: e.date,
        },
    })
}

fn encounter(e: &Encounter) -> Statement {
    let class = match e.class {
        EncounterClass::Inpatient => "Inpatient stay",
        EncounterClass::Residential => "Residential stay",
        EncounterClass::Emergency => "Emergency department visit",
        EncounterClass::Outpatient => "Outpatient visit",
        EncounterClass::Telehealth => "Telehealth visit",
    };
    let text = match (e.end, e.is_stay()) {
        (Some(end), true) => format!(
            "{class} {} to {} ({} days)",
            e.start,
            end,
            (end - e.start).num_days()
        ),
        (None, true) => format!("{class} since {} (ongoing)", e.start),
        _ => format!("{class} on {}", e.start),
    };
    Statement {
        section: Section::Encounters,
        text,
        citations: vec![e.id.clone()],
        fact: Fact::Encounter {
            class: e.class,
            start: e.start,
            end: e.end,
        },
    }
}

/// Builds the summary.
pub fn summarize(record: &PatientRecord, opts: &SummaryOptions) -> Summary {
    let n = opts.max_per_section;
    let recent = |d: NaiveDate| d <= opts.as_of && opts.since.is_none_or(|s| d >= s);
    let mut out = Vec::new();

    let mut problems: Vec<&Diagnosis> = record
        .diagnoses
        .iter()
        .filter(|d| d.active_on(opts.as_of) && d.status == DiagnosisStatus::Active)
        .collect();
    problems.sort_by(|a, b| b.onset.cmp(&a.onset).then_with(|| a.id.cmp(&b.id)));
    let mut seen = std::collections::HashSet::new();
    out.extend(
        problems
            .into_iter()
            .filter(|d| seen.insert(d.code.code.clone()))
            .take(n)
            .map(problem),
    );

    let mut meds: Vec<&Medication> = record
        .medications
        .iter()
        .filter(|m| m.active_on(opts.as_of))
        .collect();
    meds.sort_by(|a, b| b.start.cmp(&a.start).then_with(|| a.id.cmp(&b.id)));
    out.extend(meds.into_iter().take(n).map(medication));

    let vitals = [
        ObservationKind::HeartRate,
        ObservationKind::RespiratoryRate,
        ObservationKind::OxygenSaturation,
    ];
    let mut kinds: Vec<ObservationKind> = record.observations.iter().map(|o| o.kind).collect();
    kinds.sort();
    kinds.dedup();
    let mut labs = Vec::new();
    let mut vital_stmts = Vec::new();
    for kind in kinds {
        let mut obs: Vec<&Observation> = record
            .observations
            .iter()
            .filter(|o| o.kind == kind && o.value.is_some() && o.date <= opts.as_of)
            .collect();
        obs.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| b.id.cmp(&a.id)));
        let Some(latest) = obs.first() else { continue };
        if !recent(latest.date) {
            continue;
        }
        let is_vital = vitals.contains(&kind);
        let section = if is_vital {
            Section::Vitals
        } else {
            Section::Labs
        };
        if let Some(s) = lab(latest, obs.get(1).copied(), section) {
            if is_vital {
                vital_stmts.push((latest.date, s))
            } else {
                labs.push((latest.date, s))
            }
        }
    }
    labs.sort_by_key(|x| std::cmp::Reverse(x.0));
    out.extend(labs.into_iter().take(n).map(|x| x.1));

    let mut bps: Vec<&BloodPressure> = record
        .blood_pressures
        .iter()
        .filter(|b| recent(b.date))
        .collect();
    bps.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| b.id.cmp(&a.id)));
    let mut vitals_all: Vec<(NaiveDate, Statement)> =
        bps.into_iter().take(1).map(|b| (b.date, bp(b))).collect();
    vitals_all.extend(vital_stmts);
    vitals_all.sort_by_key(|x| std::cmp::Reverse(x.0));
    out.extend(vitals_all.into_iter().take(n).map(|x| x.1));

    let mut evals: Vec<&Evaluation> = record
        .evaluations
        .iter()
        .filter(|e| recent(e.date) && e.score.is_some())
        .collect();
    evals.sort_by(|a, b| b.date.cmp(&a.date).then_with(|| b.id.cmp(&a.id)));
    out.extend(evals.into_iter().filter_map(assessment).take(n));

    let mut encs: Vec<&Encounter> = record
        .encounters
        .iter()
        .filter(|e| e.start <= opts.as_of && (recent(e.start) || e.end.is_some_and(recent)))
        .collect();
    encs.sort_by(|a, b| b.start.cmp(&a.start).then_with(|| b.id.cmp(&a.id)));
    out.extend(encs.into_iter().take(n).map(encounter));

    Summary { statements: out }
}

/// True if every record `stmt` cites exists in `record` and holds the stated fact (the primary
/// citation the latest value, the second one the previous value of a trend).
pub fn verify(record: &PatientRecord, stmt: &Statement) -> bool {
    let items: Option<Vec<ItemRef<'_>>> = stmt.citations.iter().map(|id| record.find(id)).collect();
    let Some(items) = items else { return false };
    let Some(first) = items.first() else {
        return false;
    };
    match (&stmt.fact, first) {
        (Fact::Problem { code }, ItemRef::Diagnosis(d)) => {
            &d.code.code == code && stmt.text.contains(code.as_str())
        }
        (Fact::Medication { name, dose }, ItemRef::Medication(m)) => {
            &m.name == name && &m.dose == dose && stmt.text.contains(name.as_str())
        }
        (
            Fact::Lab {
                kind,
                value,
                date,
                previous,
                trend: t,
            },
            ItemRef::Observation(o),
        ) => {
            let latest_ok = o.kind == *kind && o.value == Some(*value) && o.date == *date;
            let prev_ok = match (previous, items.get(1)) {
                (None, None) => true,
                (Some((pv, pd)), Some(ItemRef::Observation(p))) => {
                    p.kind == *kind
                        && p.value == Some(*pv)
                        && p.date == *pd
                        && *t == Some(trend(*kind, *pv, *value))
                }
                _ => false,
            };
            latest_ok && prev_ok && stmt.text.contains(&fmt_value(*kind, *value))
        }
        (
            Fact::BloodPressure {
                systolic,
                diastolic,
                date,
            },
            ItemRef::BloodPressure(b),
        ) => {
            b.systolic == *systolic
                && b.diastolic == *diastolic
                && b.date == *date
                && stmt.text.contains(&format!("{systolic}/{diastolic}"))
        }
        (
            Fact::Assessment {
                instrument,
                score,
                date,
            },
            ItemRef::Evaluation(e),
        ) => e.instrument.name() == *instrument && e.score == Some(*score) && e.date == *date,
        (Fact::Encounter { class, start, end }, ItemRef::Encounter(e)) => {
            e.class == *class && e.start == *start && e.end == *end
        }
        _ => false,
    }
}

/// What to do with PHI found in an output.
#[derive(Debug, Clone, Copy)]
pub enum OutputRedaction<'k> {
    /// Report findings, leave the text as is.
    Keep,
    /// Replace findings with the `phi` crate's mode.
    Redact(phi::Mode<'k>),
}

/// The caller's role → redaction mapping. Roles not listed get `[TAG]` redaction.
#[derive(Debug, Clone)]
pub struct RoleRedaction<'k> {
    roles: Vec<(String, OutputRedaction<'k>)>,
}

impl<'k> RoleRedaction<'k> {
    /// From `(role, redaction)` pairs (role names compared case-insensitively).
    pub fn new(roles: impl IntoIterator<Item = (String, OutputRedaction<'k>)>) -> Self {
        Self {
            roles: roles
                .into_iter()
                .map(|(r, m)| (r.to_ascii_lowercase(), m))
                .collect(),
        }
    }

    /// The redaction for `role`; [`phi::Mode::Tag`] for roles not in the mapping.
    pub fn for_role(&self, role: &str) -> OutputRedaction<'k> {
        let role = role.to_ascii_lowercase();
        self.roles
            .iter()
            .find(|(r, _)| *r == role)
            .map_or(OutputRedaction::Redact(phi::Mode::Tag), |(_, m)| *m)
    }
}

/// The result of a PHI scan (CoCo's `phi_audit` minus the audit id, which the server assigns).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhiScan {
    /// Always true.
    pub scan_performed: bool,
    /// Any identifier found.
    pub phi_detected: bool,
    /// Kinds found (tags such as `DATE`, `NAME`), sorted, unique.
    pub phi_types_found: Vec<String>,
    /// True when the text returned differs from the input because of redaction.
    pub redaction_applied: bool,
}

/// Scans `text` and applies `redaction`. Returns the (possibly redacted) text and the scan.
pub fn scan_and_redact(text: &str, redaction: OutputRedaction<'_>) -> (String, PhiScan) {
    let spans = phi::Detector::global().detect(text);
    let mut kinds: Vec<String> = spans.iter().map(|s| s.kind.tag().to_string()).collect();
    kinds.sort();
    kinds.dedup();
    let out = match redaction {
        OutputRedaction::Keep => text.to_string(),
        OutputRedaction::Redact(mode) => phi::redact(text, &spans, mode),
    };
    let scan = PhiScan {
        scan_performed: true,
        phi_detected: !spans.is_empty(),
        phi_types_found: kinds,
        redaction_applied: out != text,
    };
    (out, scan)
}

/// Redacts every statement of a summary for `role` (statement by statement, so citations stay
/// attached), returning the statements' texts and one combined scan.
pub fn redact_summary(
    summary: &Summary,
    roles: &RoleRedaction<'_>,
    role: &str,
) -> (Vec<String>, PhiScan) {
    let mode = roles.for_role(role);
    let mut texts = Vec::new();
    let mut all = PhiScan {
        scan_performed: true,
        phi_detected: false,
        phi_types_found: vec![],
        redaction_applied: false,
    };
    for s in &summary.statements {
        let (t, scan) = scan_and_redact(&s.text, mode);
        all.phi_detected |= scan.phi_detected;
        all.redaction_applied |= scan.redaction_applied;
        all.phi_types_found.extend(scan.phi_types_found);
        texts.push(t);
    }
    all.phi_types_found.sort();
    all.phi_types_found.dedup();
    (texts, all)
}
