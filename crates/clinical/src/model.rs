//! The clinical record model: one patient's demographics, diagnoses, encounters, procedures,
//! orders, observations (labs and vitals), blood pressures, immunizations, medications and
//! evaluations. Pure data with validating constructors; no I/O.
//!
//! # Invariants
//!
//! * Every item carries the [`SourceId`] of the EHR record it came from, unique within its list,
//!   so every computed statement can cite it.
//! * Constructors refuse impossible input with a [`ClinicalError`]: dates outside 1900..=2100,
//!   an end before its start, an event before birth, a negative or absurd measurement, a unit
//!   that is not accepted for the measurement. Nothing is replaced by a default that would change
//!   a score; optional facts are `Option` and the scores say "insufficient data" when they need
//!   one that is absent.
//! * Measurements are stored in one canonical unit per kind (converted on construction from the
//!   accepted alternatives listed in [`ObservationKind::units`]).
//! * The patient id, the birth date and free text are [`phi::Sensitive`]; the `Debug` output of
//!   every item prints its kind and source id only (dates and values are health information).

use std::collections::HashSet;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use phi::Sensitive;
use serde::{Deserialize, Serialize};

use crate::error::ClinicalError;

/// Earliest date accepted anywhere in the model.
pub const MIN_DATE: (i32, u32, u32) = (1900, 1, 1);
/// Latest date accepted anywhere in the model.
pub const MAX_DATE: (i32, u32, u32) = (2100, 12, 31);

/// Checks a date against [`MIN_DATE`]..=[`MAX_DATE`].
pub fn check_date(field: &'static str, date: NaiveDate) -> Result<NaiveDate, ClinicalError> {
    let min = NaiveDate::from_ymd_opt(MIN_DATE.0, MIN_DATE.1, MIN_DATE.2);
    let max = NaiveDate::from_ymd_opt(MAX_DATE.0, MAX_DATE.1, MAX_DATE.2);
    match (min, max) {
        (Some(min), Some(max)) if date >= min && date <= max => Ok(date),
        _ => Err(ClinicalError::ImpossibleDate {
            field,
            reason: "outside 1900-01-01..=2100-12-31",
        }),
    }
}

fn check_range(
    field: &'static str,
    start: NaiveDate,
    end: Option<NaiveDate>,
) -> Result<(), ClinicalError> {
    check_date(field, start)?;
    if let Some(end) = end {
        check_date(field, end)?;
        if end < start {
            return Err(ClinicalError::ImpossibleDate {
                field,
                reason: "ends before it starts",
            });
        }
    }
    Ok(())
}

/// Parses `YYYY-MM-DD` or an ISO 8601 date-time (the date part is kept, in the timestamp's own
/// offset: the wall-clock date at the facility).
pub fn parse_date(field: &'static str, text: &str) -> Result<NaiveDate, ClinicalError> {
    let text = text.trim();
    let head = text.get(..10).unwrap_or(text);
    let rest = text.get(10..).unwrap_or("");
    if !(rest.is_empty() || rest.starts_with('T') || rest.starts_with(' ')) {
        return Err(ClinicalError::UnparsableDate { field });
    }
    let date = NaiveDate::parse_from_str(head, "%Y-%m-%d")
        .map_err(|_| ClinicalError::UnparsableDate { field })?;
    check_date(field, date)
}

/// Whole years between `birth` and `on` (the age on that date).
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// The id of the EHR record an item came from (`kipu:vital_signs/1234`,
/// `fhir:Observation/9b2f…`). Printable ASCII, 1..=160 bytes. Record ids are not identifiers
/// of the patient; the patient id is kept separately and sensitive.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SourceId(String);

impl SourceId {
    /// Validates and wraps a record id.
    pub fn new(id: impl Into<String>) -> Result<Self, ClinicalError> {
        let id = id.into();
        if id.is_empty() {
            return Err(ClinicalError::InvalidSourceId("empty"));
        }
        if id.len() > 160 {
            return Err(ClinicalError::InvalidSourceId("longer than 160 bytes"));
        }
        if !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClinicalError::InvalidSourceId(
                "only printable ASCII without spaces is allowed",
            ));
        }
        Ok(Self(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SourceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SourceId::new(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceId({})", self.0)
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A terminology a [`Code`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeSystem {
    /// ICD-10-CM diagnoses.
    Icd10Cm,
    /// AMA CPT (procedures, visits; category II `nnnnF`).
    Cpt,
    /// HCPCS Level II (`A1234`).
    Hcpcs,
    /// LOINC (`4548-4`).
    Loinc,
    /// CDC CVX vaccine codes.
    Cvx,
    /// SNOMED CT concept ids.
    Snomed,
    /// RxNorm concept ids.
    RxNorm,
}

impl CodeSystem {
    /// The static name used in error messages.
    pub const fn name(self) -> &'static str {
        match self {
            CodeSystem::Icd10Cm => "ICD-10-CM",
            CodeSystem::Cpt => "CPT",
            CodeSystem::Hcpcs => "HCPCS",
            CodeSystem::Loinc => "LOINC",
            CodeSystem::Cvx => "CVX",
            CodeSystem::Snomed => "SNOMED CT",
            CodeSystem::RxNorm => "RxNorm",
        }
    }

    /// Maps a FHIR `system` URI to a code system.
    pub fn from_fhir_uri(uri: &str) -> Option<Self> {
        Some(match uri {
            "http://hl7.org/fhir/sid/icd-10-cm" | "http://hl7.org/fhir/sid/icd-10" => {
                CodeSystem::Icd10Cm
            }
            "http://www.ama-assn.org/go/cpt" => CodeSystem::Cpt,
            "urn:oid:2.16.840.1.113883.6.285"
            | "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets" => CodeSystem::Hcpcs,
            "http://loinc.org" => CodeSystem::Loinc,
            "http://hl7.org/fhir/sid/cvx" => CodeSystem::Cvx,
            "http://snomed.info/sct" => CodeSystem::Snomed,
            "http://www.nlm.nih.gov/research/umls/rxnorm" => CodeSystem::RxNorm,
            _ => return None,
        })
    }
}

/// A code with its system, syntax-checked (`E11.9` is ICD-10-CM, `4548-4` LOINC with a valid
/// check digit, `90686` CPT...).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Code {
    /// The terminology.
    pub system: CodeSystem,
    /// The code, upper-cased (ICD-10-CM keeps its dot: `F10.20`).
    pub code: String,
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.system.name(), self.code)
    }
}

impl Code {
    /// Validates the syntax of `code` in `system`. ICD-10-CM codes without the dot
    /// (`F1020`) are normalised to the dotted form (`F10.20`).
    pub fn new(system: CodeSystem, code: &str) -> Result<Self, ClinicalError> {
        let code = code.trim().to_ascii_uppercase();
        let bad = || ClinicalError::InvalidCode {
            field: "code",
            system: system.name(),
        };
        let b = code.as_bytes();
        let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
        let code = match system {
            CodeSystem::Icd10Cm => {
                let plain: String = code.chars().filter(|c| *c != '.').collect();
                let p = plain.as_bytes();
                let ok = (3..=7).contains(&p.len())
                    && p[0].is_ascii_uppercase()
                    && p[1].is_ascii_digit()
                    && p[2].is_ascii_alphanumeric()
                    && p[3..].iter().all(u8::is_ascii_alphanumeric)
                    && code.matches('.').count() <= 1
                    && (!code.contains('.') || code.find('.') == Some(3));
                if !ok {
                    return Err(bad());
                }
                if plain.len() > 3 {
                    format!("{}.{}", &plain[..3], &plain[3..])
                } else {
                    plain
                }
            }
            CodeSystem::Cpt => {
                let ok = b.len() == 5
                    && (digits(b)
                        || (digits(&b[..4]) && (b[4] == b'F' || b[4] == b'T' || b[4] == b'U')));
                if !ok {
                    return Err(bad());
                }
                code
            }
            CodeSystem::Hcpcs => {
                if !(b.len() == 5 && b[0].is_ascii_uppercase() && digits(&b[1..])) {
                    return Err(bad());
                }
                code
            }
            CodeSystem::Loinc => {
                let Some((num, check)) = code.split_once('-') else {
                    return Err(bad());
                };
                if !(digits(num.as_bytes())
                    && num.len() <= 7
                    && check.len() == 1
                    && digits(check.as_bytes())
                    && loinc_check_digit(num) == check.as_bytes()[0] - b'0')
                {
                    return Err(bad());
                }
                code
            }
            CodeSystem::Cvx => {
                if !(digits(b) && b.len() <= 3) {
                    return Err(bad());
                }
                // CVX codes are written without leading zeros in FHIR and with them in
                // some exports; keep one form.
                code.trim_start_matches('0')
                    .to_string()
                    .max("0".to_string())
            }
            CodeSystem::Snomed => {
                if !(digits(b) && (6..=18).contains(&b.len())) {
                    return Err(bad());
                }
                code
            }
            CodeSystem::RxNorm => {
                if !(digits(b) && b.len() <= 9) {
                    return Err(bad());
                }
                code
            }
        };
        Ok(Self { system, code })
    }

    /// True if this code is in `set` (exact match) or, for ICD-10-CM, starts with one of the
    /// set's category prefixes written with a trailing `*` (`F10*`).
    pub fn in_set(&self, set: &crate::valueset::ValueSet) -> bool {
        set.contains(self)
    }
}

/// The LOINC mod-10 check digit of the numeric part.
fn loinc_check_digit(num: &str) -> u8 {
    // LOINC uses the Luhn-style "mod 10" algorithm on the digits of the code number.
    let digits: Vec<u32> = num.bytes().map(|b| u32::from(b - b'0')).collect();
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        if i % 2 == 0 {
            let x = d * 2;
            sum += x / 10 + x % 10;
        } else {
            sum += d;
        }
    }
    ((10 - sum % 10) % 10) as u8
}

macro_rules! redacted_debug {
    ($t:ident) => {
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("id", &self.id)
                    .finish_non_exhaustive()
            }
        }
    };
}

/// Administrative sex as recorded (FHIR `gender`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// Female.
    Female,
    /// Male.
    Male,
    /// Other.
    Other,
    /// Recorded as unknown.
    Unknown,
}

impl Sex {
    /// Parses FHIR / Kipu spellings (`female`, `Female`, `F`...).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "female" | "f" => Sex::Female,
            "male" | "m" => Sex::Male,
            "other" => Sex::Other,
            "unknown" | "u" => Sex::Unknown,
            _ => return None,
        })
    }
}

/// Birth date and sex. Either may be unknown; rules that need them report insufficient data.
#[derive(Clone, Default)]
pub struct Demographics {
    /// Date of birth (PHI).
    pub birth_date: Option<Sensitive<NaiveDate>>,
    /// Administrative sex.
    pub sex: Option<Sex>,
}

impl fmt::Debug for Demographics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Demographics")
            .field("birth_date", &self.birth_date)
            .field("sex", &self.sex)
            .finish()
    }
}

impl Demographics {
    /// Validates the birth date's range.
    pub fn new(birth_date: Option<NaiveDate>, sex: Option<Sex>) -> Result<Self, ClinicalError> {
        if let Some(d) = birth_date {
            check_date("birth_date", d)?;
        }
        Ok(Self {
            birth_date: birth_date.map(Sensitive::new),
            sex,
        })
    }

    /// Age in whole years on `on`; `None` without a birth date; an error if `on` is before
    /// birth.
    pub fn age_on(&self, on: NaiveDate) -> Result<Option<i32>, ClinicalError> {
        match &self.birth_date {
            None => Ok(None),
            Some(b) if *b.expose() > on => Err(ClinicalError::ImpossibleDate {
                field: "birth_date",
                reason: "after the evaluation date",
            }),
            Some(b) => Ok(Some(age_on(*b.expose(), on))),
        }
    }
}

/// Clinical status of a diagnosis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosisStatus {
    /// Active (or recurrence / relapse).
    Active,
    /// Resolved, remission or inactive.
    Resolved,
}

/// An ICD-10-CM diagnosis with its onset and (optional) resolution.
#[derive(Clone)]
pub struct Diagnosis {
    /// Source record.
    pub id: SourceId,
    /// ICD-10-CM code.
    pub code: Code,
    /// Human-readable description from the source (may be free text).
    pub description: Option<Sensitive<String>>,
    /// Onset (or recorded) date.
    pub onset: NaiveDate,
    /// Resolution date, when resolved.
    pub resolved: Option<NaiveDate>,
    /// Status as recorded.
    pub status: DiagnosisStatus,
}
redacted_debug!(Diagnosis);

impl Diagnosis {
    /// Validates the code system (ICD-10-CM only) and the dates.
    pub fn new(
        id: SourceId,
        code: Code,
        onset: NaiveDate,
        resolved: Option<NaiveDate>,
        status: DiagnosisStatus,
        description: Option<String>,
    ) -> Result<Self, ClinicalError> {
        if code.system != CodeSystem::Icd10Cm {
            return Err(ClinicalError::InvalidCode {
                field: "diagnosis.code",
                system: CodeSystem::Icd10Cm.name(),
            });
        }
        check_range("diagnosis.onset", onset, resolved)?;
        Ok(Self {
            id,
            code,
            description: description.map(Sensitive::new),
            onset,
            resolved,
            status,
        })
    }

    /// True if the diagnosis was present at some time in `[from, to]`. A diagnosis recorded as
    /// resolved without a resolution date (Kipu gives none) is only known to have been present
    /// on its recorded date, so it counts only when that date is in the range.
    pub fn overlaps(&self, from: NaiveDate, to: NaiveDate) -> bool {
        self.onset <= to
            && match self.resolved {
                Some(r) => r >= from,
                None => self.status == DiagnosisStatus::Active || self.onset >= from,
            }
    }

    /// True if active on `on` (onset on or before, not resolved before).
    pub fn active_on(&self, on: NaiveDate) -> bool {
        self.onset <= on
            && match self.resolved {
                Some(r) => r >= on,
                None => self.status == DiagnosisStatus::Active,
            }
    }
}

/// Encounter class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncounterClass {
    /// Acute inpatient stay (including medically managed withdrawal, ASAM 3.7-WM / 4).
    Inpatient,
    /// Residential treatment (ASAM 3.x other than withdrawal management).
    Residential,
    /// Emergency department visit.
    Emergency,
    /// Office / clinic / partial hospitalization / intensive outpatient visit.
    Outpatient,
    /// Telehealth visit.
    Telehealth,
}

/// How an inpatient stay began.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionType {
    /// Planned.
    Elective,
    /// Urgent (unplanned, not through the emergency department).
    Urgent,
    /// Emergent (through the emergency department).
    Emergent,
}

impl AdmissionType {
    /// Parses `elective`, `urgent`, `emergency`/`emergent` (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "elective" => AdmissionType::Elective,
            "urgent" => AdmissionType::Urgent,
            "emergency" | "emergent" | "emer" => AdmissionType::Emergent,
            _ => return None,
        })
    }
}

/// An encounter: inpatient stay, residential stay, ED visit, outpatient or telehealth visit.
#[derive(Clone)]
pub struct Encounter {
    /// Source record.
    pub id: SourceId,
    /// Class.
    pub class: EncounterClass,
    /// Start (admission) date.
    pub start: NaiveDate,
    /// End (discharge) date; `None` while ongoing.
    pub end: Option<NaiveDate>,
    /// How an inpatient/residential stay began (unknown = `None`).
    pub admission_type: Option<AdmissionType>,
    /// Whether the patient was discharged from an oncology service (HOSPITAL "O"); unknown =
    /// `None`.
    pub oncology_service: Option<bool>,
    /// Diagnoses coded on the encounter (ICD-10-CM); the first is the principal diagnosis.
    pub diagnoses: Vec<Code>,
    /// Codes describing the visit itself (CPT/HCPCS/SNOMED visit types, hospice...).
    pub type_codes: Vec<Code>,
}
redacted_debug!(Encounter);

impl Encounter {
    /// Validates dates and code systems.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: SourceId,
        class: EncounterClass,
        start: NaiveDate,
        end: Option<NaiveDate>,
        admission_type: Option<AdmissionType>,
        oncology_service: Option<bool>,
        diagnoses: Vec<Code>,
        type_codes: Vec<Code>,
    ) -> Result<Self, ClinicalError> {
        check_range("encounter.period", start, end)?;
        if diagnoses.iter().any(|c| c.system != CodeSystem::Icd10Cm) {
            return Err(ClinicalError::InvalidCode {
                field: "encounter.diagnoses",
                system: CodeSystem::Icd10Cm.name(),
            });
        }
        Ok(Self {
            id,
            class,
            start,
            end,
            admission_type,
            oncology_service,
            diagnoses,
            type_codes,
        })
    }

    /// Length of stay in days (discharge date minus admission date); `None` while ongoing.
    pub fn length_of_stay(&self) -> Option<i64> {
        self.end.map(|e| (e - self.start).num_days())
    }

    /// The principal diagnosis (the first listed), if any.
    pub fn principal_diagnosis(&self) -> Option<&Code> {
        self.diagnoses.first()
    }

    /// True for an inpatient or residential stay.
    pub fn is_stay(&self) -> bool {
        matches!(
            self.class,
            EncounterClass::Inpatient | EncounterClass::Residential
        )
    }
}

/// A procedure performed.
#[derive(Clone)]
pub struct Procedure {
    /// Source record.
    pub id: SourceId,
    /// CPT, HCPCS or SNOMED CT code.
    pub code: Code,
    /// Date performed.
    pub date: NaiveDate,
}
redacted_debug!(Procedure);

impl Procedure {
    /// Validates the date and the code system.
    pub fn new(id: SourceId, code: Code, date: NaiveDate) -> Result<Self, ClinicalError> {
        check_date("procedure.date", date)?;
        if !matches!(
            code.system,
            CodeSystem::Cpt | CodeSystem::Hcpcs | CodeSystem::Snomed
        ) {
            return Err(ClinicalError::InvalidCode {
                field: "procedure.code",
                system: "CPT, HCPCS or SNOMED CT",
            });
        }
        Ok(Self { id, code, date })
    }
}

/// What an order asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    /// A laboratory test.
    Lab,
    /// A procedure.
    Procedure,
    /// A referral to another provider or service.
    Referral,
    /// A medication (kept as a [`Medication`] as well).
    Medication,
}

/// An order (lab, procedure, referral).
#[derive(Clone)]
pub struct Order {
    /// Source record.
    pub id: SourceId,
    /// Kind.
    pub kind: OrderKind,
    /// What was ordered, as written (may be free text).
    pub name: Sensitive<String>,
    /// Code, when the source has one.
    pub code: Option<Code>,
    /// Date ordered.
    pub date: NaiveDate,
}
redacted_debug!(Order);

impl Order {
    /// Validates the date.
    pub fn new(
        id: SourceId,
        kind: OrderKind,
        name: String,
        code: Option<Code>,
        date: NaiveDate,
    ) -> Result<Self, ClinicalError> {
        check_date("order.date", date)?;
        if name.trim().is_empty() {
            return Err(ClinicalError::Missing("order.name"));
        }
        Ok(Self {
            id,
            kind,
            name: Sensitive::new(name),
            code,
            date,
        })
    }
}

/// The measurements this crate understands, each with a canonical unit and a plausible range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservationKind {
    /// Hemoglobin A1c, % (NGSP).
    HbA1c,
    /// Glucose, mg/dL.
    Glucose,
    /// Hemoglobin, g/dL.
    Hemoglobin,
    /// Sodium, mmol/L.
    Sodium,
    /// Creatinine, mg/dL.
    Creatinine,
    /// eGFR, mL/min/1.73m2.
    Egfr,
    /// Total cholesterol, mg/dL.
    TotalCholesterol,
    /// LDL cholesterol, mg/dL.
    Ldl,
    /// HDL cholesterol, mg/dL.
    Hdl,
    /// Triglycerides, mg/dL.
    Triglycerides,
    /// Heart rate, /min.
    HeartRate,
    /// Respiratory rate, /min.
    RespiratoryRate,
    /// Oxygen saturation, %.
    OxygenSaturation,
    /// Fecal occult blood / FIT (result present = test done).
    FecalOccultBlood,
    /// Stool DNA with FIT (Cologuard).
    FitDna,
    /// Cervical cytology (Pap).
    CervicalCytology,
    /// High-risk HPV test.
    HpvTest,
}

/// A unit accepted for a kind: spelling(s) and the factor/offset to the canonical unit.
#[derive(Clone, Copy, Debug)]
pub struct UnitSpec {
    /// Accepted spellings (compared case-insensitively).
    pub spellings: &'static [&'static str],
    /// canonical = value × factor + offset.
    pub factor: f64,
    /// See `factor`.
    pub offset: f64,
}

const fn unit(spellings: &'static [&'static str], factor: f64, offset: f64) -> UnitSpec {
    UnitSpec {
        spellings,
        factor,
        offset,
    }
}

const MG_DL: &[&str] = &["mg/dl", "mg/100ml"];

impl ObservationKind {
    /// The LOINC codes (subset) that map to each kind.
    pub fn from_loinc(code: &str) -> Option<Self> {
        use ObservationKind::*;
        Some(match code {
            "4548-4" | "17856-6" | "4549-2" => HbA1c,
            "2345-7" | "2339-0" | "1558-6" => Glucose,
            "718-7" | "20509-6" => Hemoglobin,
            "2951-2" | "2947-0" => Sodium,
            "2160-0" | "38483-4" => Creatinine,
            "33914-3" | "62238-1" | "48642-3" | "48643-1" | "98979-8" => Egfr,
            "2093-3" => TotalCholesterol,
            "13457-7" | "18262-6" | "2089-1" => Ldl,
            "2085-9" => Hdl,
            "2571-8" => Triglycerides,
            "8867-4" => HeartRate,
            "9279-1" => RespiratoryRate,
            "59408-5" | "2708-6" => OxygenSaturation,
            "2335-8" | "27396-1" | "29771-3" | "57905-2" | "56490-6" | "56491-4" | "80372-6"
            | "12503-9" | "12504-7" | "14563-1" | "14564-9" | "14565-6" | "27401-9" | "27925-7"
            | "27926-5" | "58453-2" => FecalOccultBlood,
            "77353-1" | "77354-9" => FitDna,
            "10524-7" | "18500-9" | "19762-4" | "19764-0" | "19765-7" | "19766-5" | "19774-9"
            | "33717-0" | "47527-7" | "47528-5" => CervicalCytology,
            "21440-3" | "30167-1" | "38372-9" | "59263-4" | "59264-2" | "59420-0" | "69002-4"
            | "71431-1" | "75406-9" | "75694-0" | "77379-6" | "77399-4" | "77400-0" | "82354-2"
            | "82456-5" | "82675-0" => HpvTest,
            _ => return None,
        })
    }

    /// A static name for messages and summaries.
    pub const fn name(self) -> &'static str {
        use ObservationKind::*;
        match self {
            HbA1c => "HbA1c",
            Glucose => "Glucose",
            Hemoglobin => "Hemoglobin",
            Sodium => "Sodium",
            Creatinine => "Creatinine",
            Egfr => "eGFR",
            TotalCholesterol => "Total cholesterol",
            Ldl => "LDL cholesterol",
            Hdl => "HDL cholesterol",
            Triglycerides => "Triglycerides",
            HeartRate => "Heart rate",
            RespiratoryRate => "Respiratory rate",
            OxygenSaturation => "Oxygen saturation",
            FecalOccultBlood => "Fecal occult blood test",
            FitDna => "Stool DNA-FIT test",
            CervicalCytology => "Cervical cytology",
            HpvTest => "HPV test",
        }
    }

    /// The canonical unit, `None` for tests whose result is qualitative.
    pub const fn canonical_unit(self) -> Option<&'static str> {
        use ObservationKind::*;
        match self {
            HbA1c | OxygenSaturation => Some("%"),
            Glucose | Creatinine | TotalCholesterol | Ldl | Hdl | Triglycerides => Some("mg/dL"),
            Hemoglobin => Some("g/dL"),
            Sodium => Some("mmol/L"),
            Egfr => Some("mL/min/1.73m2"),
            HeartRate | RespiratoryRate => Some("/min"),
            FecalOccultBlood | FitDna | CervicalCytology | HpvTest => None,
        }
    }

    /// Accepted units and conversions to the canonical unit.
    pub fn units(self) -> &'static [UnitSpec] {
        use ObservationKind::*;
        // IFCC mmol/mol → NGSP %: % = 0.09148 × mmol/mol + 2.152 (NGSP master equation).
        const HBA1C: &[UnitSpec] = &[
            unit(&["%", "percent"], 1.0, 0.0),
            unit(&["mmol/mol"], 0.09148, 2.152),
        ];
        // 1 mmol/L glucose = 18.016 mg/dL.
        const GLUCOSE: &[UnitSpec] = &[unit(MG_DL, 1.0, 0.0), unit(&["mmol/l"], 18.016, 0.0)];
        const HGB: &[UnitSpec] = &[unit(&["g/dl"], 1.0, 0.0), unit(&["g/l"], 0.1, 0.0)];
        const NA: &[UnitSpec] = &[unit(&["mmol/l", "meq/l"], 1.0, 0.0)];
        // 1 mg/dL creatinine = 88.42 µmol/L.
        const CREAT: &[UnitSpec] = &[
            unit(MG_DL, 1.0, 0.0),
            unit(&["umol/l", "µmol/l"], 1.0 / 88.42, 0.0),
        ];
        const EGFR: &[UnitSpec] = &[unit(
            &[
                "ml/min/1.73m2",
                "ml/min/{1.73_m2}",
                "ml/min/1.73 m2",
                "ml/min",
            ],
            1.0,
            0.0,
        )];
        // Cholesterol: 1 mmol/L = 38.67 mg/dL; triglycerides: 1 mmol/L = 88.57 mg/dL.
        const CHOL: &[UnitSpec] = &[unit(MG_DL, 1.0, 0.0), unit(&["mmol/l"], 38.67, 0.0)];
        const TG: &[UnitSpec] = &[unit(MG_DL, 1.0, 0.0), unit(&["mmol/l"], 88.57, 0.0)];
        const RATE: &[UnitSpec] = &[unit(
            &["/min", "{beats}/min", "bpm", "{breaths}/min"],
            1.0,
            0.0,
        )];
        const PCT: &[UnitSpec] = &[unit(&["%"], 1.0, 0.0)];
        match self {
            HbA1c => HBA1C,
            Glucose => GLUCOSE,
            Hemoglobin => HGB,
            Sodium => NA,
            Creatinine => CREAT,
            Egfr => EGFR,
            TotalCholesterol | Ldl | Hdl => CHOL,
            Triglycerides => TG,
            HeartRate | RespiratoryRate => RATE,
            OxygenSaturation => PCT,
            FecalOccultBlood | FitDna | CervicalCytology | HpvTest => &[],
        }
    }

    /// The accepted units as text (for error messages).
    fn units_text(self) -> &'static str {
        use ObservationKind::*;
        match self {
            HbA1c => "%, mmol/mol",
            Glucose | TotalCholesterol | Ldl | Hdl | Triglycerides => "mg/dL, mmol/L",
            Hemoglobin => "g/dL, g/L",
            Sodium => "mmol/L, mEq/L",
            Creatinine => "mg/dL, umol/L",
            Egfr => "mL/min/1.73m2",
            HeartRate | RespiratoryRate => "/min",
            OxygenSaturation => "%",
            FecalOccultBlood | FitDna | CervicalCytology | HpvTest => "(qualitative result)",
        }
    }

    /// The plausible range in the canonical unit (beyond it the value is an entry error, not a
    /// patient), with its text for messages.
    pub const fn plausible(self) -> (f64, f64, &'static str) {
        use ObservationKind::*;
        match self {
            HbA1c => (3.0, 20.0, "3-20 %"),
            Glucose => (10.0, 2000.0, "10-2000 mg/dL"),
            Hemoglobin => (1.0, 25.0, "1-25 g/dL"),
            Sodium => (90.0, 200.0, "90-200 mmol/L"),
            Creatinine => (0.05, 30.0, "0.05-30 mg/dL"),
            Egfr => (0.0, 200.0, "0-200 mL/min/1.73m2"),
            TotalCholesterol => (20.0, 1000.0, "20-1000 mg/dL"),
            Ldl => (1.0, 1000.0, "1-1000 mg/dL"),
            Hdl => (1.0, 250.0, "1-250 mg/dL"),
            Triglycerides => (5.0, 10000.0, "5-10000 mg/dL"),
            HeartRate => (10.0, 350.0, "10-350 /min"),
            RespiratoryRate => (1.0, 80.0, "1-80 /min"),
            OxygenSaturation => (30.0, 100.0, "30-100 %"),
            FecalOccultBlood | FitDna | CervicalCytology | HpvTest => (0.0, 0.0, "qualitative"),
        }
    }

    /// Whether a lower value is better (`Some(true)`), higher is better (`Some(false)`), or the
    /// target is a range (`None`), for trends.
    pub const fn lower_is_better(self) -> Option<bool> {
        use ObservationKind::*;
        match self {
            HbA1c | Glucose | Creatinine | TotalCholesterol | Ldl | Triglycerides => Some(true),
            Hemoglobin | Egfr | Hdl | OxygenSaturation => Some(false),
            _ => None,
        }
    }

    /// The smallest change (canonical unit) that counts as a trend rather than noise.
    pub const fn trend_tolerance(self) -> f64 {
        use ObservationKind::*;
        match self {
            HbA1c => 0.3,
            Glucose => 15.0,
            Hemoglobin => 0.5,
            Sodium => 3.0,
            Creatinine => 0.2,
            Egfr => 5.0,
            TotalCholesterol | Ldl | Triglycerides => 10.0,
            Hdl => 5.0,
            HeartRate => 10.0,
            RespiratoryRate => 3.0,
            OxygenSaturation => 2.0,
            FecalOccultBlood | FitDna | CervicalCytology | HpvTest => f64::INFINITY,
        }
    }
}

/// A lab or vital measurement.
#[derive(Clone)]
pub struct Observation {
    /// Source record.
    pub id: SourceId,
    /// What was measured.
    pub kind: ObservationKind,
    /// The source's code, when it has one.
    pub code: Option<Code>,
    /// The value in the kind's canonical unit; `None` for qualitative tests.
    pub value: Option<f64>,
    /// Date of the measurement (collection date).
    pub date: NaiveDate,
}
redacted_debug!(Observation);

impl Observation {
    /// A quantitative measurement in `unit`, converted to the canonical unit and range-checked.
    pub fn quantity(
        id: SourceId,
        kind: ObservationKind,
        code: Option<Code>,
        value: f64,
        unit: &str,
        date: NaiveDate,
    ) -> Result<Self, ClinicalError> {
        check_date("observation.date", date)?;
        let what = kind.name();
        if kind.canonical_unit().is_none() {
            return Err(ClinicalError::Invalid {
                what,
                reason: "a qualitative test has no quantity",
            });
        }
        let u = unit.trim().to_ascii_lowercase();
        let spec = kind
            .units()
            .iter()
            .find(|s| s.spellings.iter().any(|sp| *sp == u))
            .ok_or(ClinicalError::BadUnit {
                what,
                expected: kind.units_text(),
            })?;
        let (lo, hi, range) = kind.plausible();
        if !value.is_finite() || value < 0.0 {
            return Err(ClinicalError::ValueOutOfRange { what, range });
        }
        let canonical = value * spec.factor + spec.offset;
        if !(lo..=hi).contains(&canonical) {
            return Err(ClinicalError::ValueOutOfRange { what, range });
        }
        Ok(Self {
            id,
            kind,
            code,
            value: Some(canonical),
            date,
        })
    }

    /// A qualitative test that was performed and has a result (screening tests).
    pub fn performed(
        id: SourceId,
        kind: ObservationKind,
        code: Option<Code>,
        date: NaiveDate,
    ) -> Result<Self, ClinicalError> {
        check_date("observation.date", date)?;
        if kind.canonical_unit().is_some() {
            return Err(ClinicalError::Missing("observation.value"));
        }
        Ok(Self {
            id,
            kind,
            code,
            value: None,
            date,
        })
    }
}

/// A blood pressure reading (systolic and diastolic taken together), mmHg.
#[derive(Clone)]
pub struct BloodPressure {
    /// Source record.
    pub id: SourceId,
    /// Systolic, mmHg.
    pub systolic: u16,
    /// Diastolic, mmHg.
    pub diastolic: u16,
    /// Date taken.
    pub date: NaiveDate,
}
redacted_debug!(BloodPressure);

impl BloodPressure {
    /// Validates 40..=300 systolic, 20..=200 diastolic, systolic above diastolic.
    pub fn new(
        id: SourceId,
        systolic: f64,
        diastolic: f64,
        date: NaiveDate,
    ) -> Result<Self, ClinicalError> {
        check_date("blood_pressure.date", date)?;
        let ok = systolic.is_finite()
            && diastolic.is_finite()
            && (40.0..=300.0).contains(&systolic)
            && (20.0..=200.0).contains(&diastolic);
        if !ok {
            return Err(ClinicalError::ValueOutOfRange {
                what: "blood pressure",
                range: "systolic 40-300, diastolic 20-200 mmHg",
            });
        }
        if systolic <= diastolic {
            return Err(ClinicalError::Invalid {
                what: "blood pressure",
                reason: "systolic must be above diastolic",
            });
        }
        Ok(Self {
            id,
            systolic: systolic.round() as u16,
            diastolic: diastolic.round() as u16,
            date,
        })
    }
}

/// A vaccine given.
#[derive(Clone)]
pub struct Immunization {
    /// Source record.
    pub id: SourceId,
    /// CVX (or CPT vaccine product) code.
    pub vaccine: Code,
    /// Date given.
    pub date: NaiveDate,
}
redacted_debug!(Immunization);

impl Immunization {
    /// Validates the date and the code system.
    pub fn new(id: SourceId, vaccine: Code, date: NaiveDate) -> Result<Self, ClinicalError> {
        check_date("immunization.date", date)?;
        if !matches!(vaccine.system, CodeSystem::Cvx | CodeSystem::Cpt) {
            return Err(ClinicalError::InvalidCode {
                field: "immunization.vaccine",
                system: "CVX or CPT",
            });
        }
        Ok(Self { id, vaccine, date })
    }
}

/// A dose unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoseUnit {
    /// Milligrams.
    Mg,
    /// Micrograms.
    Mcg,
    /// Grams.
    G,
    /// Milligrams per 24 h (patches).
    MgPer24h,
    /// Millilitres.
    Ml,
    /// Units (insulin...).
    Unit,
}

impl DoseUnit {
    /// Parses `mg`, `mcg`/`µg`/`ug`, `g`, `mg/24h`, `ml`, `unit(s)`/`U`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "mg" | "milligram" | "milligrams" => DoseUnit::Mg,
            "mcg" | "ug" | "µg" | "microgram" | "micrograms" => DoseUnit::Mcg,
            "g" | "gram" | "grams" => DoseUnit::G,
            "mg/24h" | "mg/24 h" | "mg/24hr" | "mg/day" => DoseUnit::MgPer24h,
            "ml" | "milliliter" | "millilitre" => DoseUnit::Ml,
            "unit" | "units" | "u" | "iu" => DoseUnit::Unit,
            _ => return None,
        })
    }

    /// Factor to milligrams, for mass units.
    pub const fn to_mg(self) -> Option<f64> {
        match self {
            DoseUnit::Mg | DoseUnit::MgPer24h => Some(1.0),
            DoseUnit::Mcg => Some(0.001),
            DoseUnit::G => Some(1000.0),
            DoseUnit::Ml | DoseUnit::Unit => None,
        }
    }

    /// Display spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            DoseUnit::Mg => "mg",
            DoseUnit::Mcg => "mcg",
            DoseUnit::G => "g",
            DoseUnit::MgPer24h => "mg/24h",
            DoseUnit::Ml => "mL",
            DoseUnit::Unit => "units",
        }
    }
}

/// One administration's amount.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dose {
    /// Amount (> 0, finite, ≤ 100 000).
    pub amount: f64,
    /// Unit.
    pub unit: DoseUnit,
}

impl Dose {
    /// Validates the amount.
    pub fn new(amount: f64, unit: DoseUnit) -> Result<Self, ClinicalError> {
        if !amount.is_finite() || amount <= 0.0 || amount > 100_000.0 {
            return Err(ClinicalError::ValueOutOfRange {
                what: "medication dose",
                range: "greater than 0 and at most 100000",
            });
        }
        Ok(Self { amount, unit })
    }

    /// Parses an amount such as `50`, `0.1` or a combination product's `8/2` (the first
    /// component, the one the product is dosed by: buprenorphine in buprenorphine/naloxone).
    pub fn parse(amount: &str, unit: &str) -> Result<Self, ClinicalError> {
        let first = amount.split('/').next().unwrap_or("").trim();
        let value: f64 = first.parse().map_err(|_| ClinicalError::Invalid {
            what: "medication dose",
            reason: "amount is not a number",
        })?;
        let unit = DoseUnit::parse(unit).ok_or(ClinicalError::BadUnit {
            what: "medication dose",
            expected: "mg, mcg, g, mg/24h, mL, units",
        })?;
        Self::new(value, unit)
    }
}

/// Medication status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MedicationStatus {
    /// Being taken / active order.
    Active,
    /// Course completed.
    Completed,
    /// Stopped or discontinued.
    Stopped,
}

/// A medication order or statement.
#[derive(Clone)]
pub struct Medication {
    /// Source record.
    pub id: SourceId,
    /// Drug name as written (`Sertraline`, `Buprenorphine/naloxone`).
    pub name: String,
    /// RxNorm code, when present.
    pub code: Option<Code>,
    /// Amount per administration, when known.
    pub dose: Option<Dose>,
    /// Administrations per day, when the frequency is known and regular.
    pub times_per_day: Option<f64>,
    /// The frequency as written (`twice daily`, `every 6 hours as needed`).
    pub frequency: Option<String>,
    /// Start (ordered / authored) date.
    pub start: NaiveDate,
    /// End date, when known.
    pub end: Option<NaiveDate>,
    /// Status.
    pub status: MedicationStatus,
}
redacted_debug!(Medication);

impl Medication {
    /// Validates the name, the dates and the frequency.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: SourceId,
        name: String,
        code: Option<Code>,
        dose: Option<Dose>,
        frequency: Option<String>,
        start: NaiveDate,
        end: Option<NaiveDate>,
        status: MedicationStatus,
    ) -> Result<Self, ClinicalError> {
        check_range("medication.period", start, end)?;
        let name = name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(ClinicalError::Invalid {
                what: "medication.name",
                reason: "empty or longer than 200 bytes",
            });
        }
        if let Some(c) = &code
            && c.system != CodeSystem::RxNorm
        {
            return Err(ClinicalError::InvalidCode {
                field: "medication.code",
                system: CodeSystem::RxNorm.name(),
            });
        }
        let times_per_day = frequency.as_deref().and_then(crate::dose::times_per_day);
        Ok(Self {
            id,
            name,
            code,
            dose,
            times_per_day,
            frequency,
            start,
            end,
            status,
        })
    }

    /// True if taken on `on`.
    pub fn active_on(&self, on: NaiveDate) -> bool {
        self.start <= on
            && match self.end {
                Some(e) => e >= on,
                None => self.status == MedicationStatus::Active,
            }
    }
}

/// A standardized instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Instrument {
    /// PHQ-9 (0-27).
    Phq9,
    /// PHQ-2 (0-6).
    Phq2,
    /// PHQ-A adolescent version (0-27).
    Phq9A,
    /// GAD-7 (0-21).
    Gad7,
    /// AUDIT-C (0-12).
    AuditC,
    /// CIWA-Ar (0-67).
    CiwaAr,
    /// COWS (0-48).
    Cows,
    /// Tobacco use screening (result user / non-user, no score).
    TobaccoUse,
}

impl Instrument {
    /// Parses the names used by Kipu (`PHQ-9`, `AUDIT-C`, `CIWA-Ar`, `COWS`...).
    pub fn parse(name: &str) -> Option<Self> {
        let n: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match n.as_str() {
            "phq9" => Instrument::Phq9,
            "phq2" => Instrument::Phq2,
            "phqa" | "phq9a" => Instrument::Phq9A,
            "gad7" => Instrument::Gad7,
            "auditc" => Instrument::AuditC,
            "ciwaar" | "ciwa" => Instrument::CiwaAr,
            "cows" => Instrument::Cows,
            "tobaccouse" | "tobaccoscreening" => Instrument::TobaccoUse,
            _ => return None,
        })
    }

    /// The maximum score, `None` for instruments without one.
    pub const fn max_score(self) -> Option<u16> {
        match self {
            Instrument::Phq9 | Instrument::Phq9A => Some(27),
            Instrument::Phq2 => Some(6),
            Instrument::Gad7 => Some(21),
            Instrument::AuditC => Some(12),
            Instrument::CiwaAr => Some(67),
            Instrument::Cows => Some(48),
            Instrument::TobaccoUse => None,
        }
    }

    /// Display name.
    pub const fn name(self) -> &'static str {
        match self {
            Instrument::Phq9 => "PHQ-9",
            Instrument::Phq2 => "PHQ-2",
            Instrument::Phq9A => "PHQ-A",
            Instrument::Gad7 => "GAD-7",
            Instrument::AuditC => "AUDIT-C",
            Instrument::CiwaAr => "CIWA-Ar",
            Instrument::Cows => "COWS",
            Instrument::TobaccoUse => "Tobacco use screening",
        }
    }
}

/// A completed evaluation: a scored instrument, or a tobacco screening with its result.
#[derive(Clone)]
pub struct Evaluation {
    /// Source record.
    pub id: SourceId,
    /// Instrument.
    pub instrument: Instrument,
    /// Total score (scored instruments).
    pub score: Option<u16>,
    /// Tobacco user (tobacco screenings only).
    pub tobacco_user: Option<bool>,
    /// Date completed.
    pub date: NaiveDate,
}
redacted_debug!(Evaluation);

impl Evaluation {
    /// A scored instrument; the score must be within the instrument's range.
    pub fn scored(
        id: SourceId,
        instrument: Instrument,
        score: f64,
        date: NaiveDate,
    ) -> Result<Self, ClinicalError> {
        check_date("evaluation.date", date)?;
        let Some(max) = instrument.max_score() else {
            return Err(ClinicalError::Invalid {
                what: instrument.name(),
                reason: "instrument has no score",
            });
        };
        if !score.is_finite() || score < 0.0 || score > f64::from(max) || score.fract() != 0.0 {
            return Err(ClinicalError::ValueOutOfRange {
                what: instrument.name(),
                range: "a whole number from 0 to the instrument's maximum",
            });
        }
        Ok(Self {
            id,
            instrument,
            score: Some(score as u16),
            tobacco_user: None,
            date,
        })
    }

    /// A tobacco use screening with its result.
    pub fn tobacco(id: SourceId, user: bool, date: NaiveDate) -> Result<Self, ClinicalError> {
        check_date("evaluation.date", date)?;
        Ok(Self {
            id,
            instrument: Instrument::TobaccoUse,
            score: None,
            tobacco_user: Some(user),
            date,
        })
    }

    /// True for a positive depression screen: PHQ-9/PHQ-A ≥ 10, PHQ-2 ≥ 3 (the instruments'
    /// published cut-offs: Kroenke 2001, 2003).
    pub fn depression_positive(&self) -> Option<bool> {
        let s = self.score?;
        match self.instrument {
            Instrument::Phq9 | Instrument::Phq9A => Some(s >= 10),
            Instrument::Phq2 => Some(s >= 3),
            _ => None,
        }
    }
}

/// One patient's clinical record. Build with [`PatientRecord::new`] and the `push_*` methods,
/// which check cross-item rules (unique source ids, nothing dated before birth).
#[derive(Clone, Default)]
pub struct PatientRecord {
    /// The patient id (casefile id, FHIR id). An identifier: sensitive.
    pub patient_id: Sensitive<String>,
    /// Birth date and sex.
    pub demographics: Demographics,
    /// Diagnoses (problem list and encounter diagnoses).
    pub diagnoses: Vec<Diagnosis>,
    /// Encounters.
    pub encounters: Vec<Encounter>,
    /// Procedures.
    pub procedures: Vec<Procedure>,
    /// Orders.
    pub orders: Vec<Order>,
    /// Labs and vitals other than blood pressure.
    pub observations: Vec<Observation>,
    /// Blood pressure readings.
    pub blood_pressures: Vec<BloodPressure>,
    /// Immunizations.
    pub immunizations: Vec<Immunization>,
    /// Medications.
    pub medications: Vec<Medication>,
    /// Evaluations and screenings.
    pub evaluations: Vec<Evaluation>,
    ids: HashSet<SourceId>,
}

impl fmt::Debug for PatientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientRecord")
            .field("patient_id", &self.patient_id)
            .field("diagnoses", &self.diagnoses.len())
            .field("encounters", &self.encounters.len())
            .field("procedures", &self.procedures.len())
            .field("orders", &self.orders.len())
            .field("observations", &self.observations.len())
            .field("blood_pressures", &self.blood_pressures.len())
            .field("immunizations", &self.immunizations.len())
            .field("medications", &self.medications.len())
            .field("evaluations", &self.evaluations.len())
            .finish()
    }
}

/// A borrowed item of a record, found by its source id.
#[derive(Debug, Clone, Copy)]
pub enum ItemRef<'a> {
    /// A diagnosis.
    Diagnosis(&'a Diagnosis),
    /// An encounter.
    Encounter(&'a Encounter),
    /// A procedure.
    Procedure(&'a Procedure),
    /// An order.
    Order(&'a Order),
    /// A lab or vital.
    Observation(&'a Observation),
    /// A blood pressure.
    BloodPressure(&'a BloodPressure),
    /// An immunization.
    Immunization(&'a Immunization),
    /// A medication.
    Medication(&'a Medication),
    /// An evaluation.
    Evaluation(&'a Evaluation),
}

impl ItemRef<'_> {
    /// The item's date (start date for ranges).
    pub fn date(&self) -> NaiveDate {
        match self {
            ItemRef::Diagnosis(d) => d.onset,
            ItemRef::Encounter(e) => e.start,
            ItemRef::Procedure(p) => p.date,
            ItemRef::Order(o) => o.date,
            ItemRef::Observation(o) => o.date,
            ItemRef::BloodPressure(b) => b.date,
            ItemRef::Immunization(i) => i.date,
            ItemRef::Medication(m) => m.start,
            ItemRef::Evaluation(e) => e.date,
        }
    }

    /// The CoCo `source_type` of the item.
    pub fn source_type(&self) -> &'static str {
        match self {
            ItemRef::Diagnosis(_) => "diagnosis",
            ItemRef::Encounter(_) => "encounter",
            ItemRef::Procedure(_) => "procedure",
            ItemRef::Order(_) => "order",
            ItemRef::Observation(_) => "lab_result",
            ItemRef::BloodPressure(_) => "vital_sign",
            ItemRef::Immunization(_) => "immunization",
            ItemRef::Medication(_) => "medication_order",
            ItemRef::Evaluation(_) => "evaluation",
        }
    }
}

macro_rules! pusher {
    ($fn:ident, $field:ident, $t:ty, $list:literal, $date:expr) => {
        #[doc = concat!("Adds an item to `", stringify!($field), "` (unique source id, not dated before birth).")]
        pub fn $fn(&mut self, item: $t) -> Result<(), ClinicalError> {
            let date: fn(&$t) -> NaiveDate = $date;
            self.check_item(&item.id, date(&item), $list)?;
            self.$field.push(item);
            Ok(())
        }
    };
}

impl PatientRecord {
    /// An empty record.
    pub fn new(patient_id: String, demographics: Demographics) -> Result<Self, ClinicalError> {
        if patient_id.trim().is_empty() {
            return Err(ClinicalError::Missing("patient_id"));
        }
        Ok(Self {
            patient_id: Sensitive::new(patient_id),
            demographics,
            ..Self::default()
        })
    }

    fn check_item(
        &mut self,
        id: &SourceId,
        date: NaiveDate,
        list: &'static str,
    ) -> Result<(), ClinicalError> {
        if let Some(b) = &self.demographics.birth_date
            && date < *b.expose()
        {
            return Err(ClinicalError::ImpossibleDate {
                field: list,
                reason: "dated before the patient's birth",
            });
        }
        if !self.ids.insert(id.clone()) {
            return Err(ClinicalError::DuplicateSourceId(list));
        }
        Ok(())
    }

    pusher!(push_diagnosis, diagnoses, Diagnosis, "diagnoses", |d| d
        .onset);
    pusher!(push_encounter, encounters, Encounter, "encounters", |e| e
        .start);
    pusher!(push_procedure, procedures, Procedure, "procedures", |p| p
        .date);
    pusher!(push_order, orders, Order, "orders", |o| o.date);
    pusher!(
        push_observation,
        observations,
        Observation,
        "observations",
        |o| o.date
    );
    pusher!(
        push_blood_pressure,
        blood_pressures,
        BloodPressure,
        "blood_pressures",
        |b| b.date
    );
    pusher!(
        push_immunization,
        immunizations,
        Immunization,
        "immunizations",
        |i| i.date
    );
    pusher!(
        push_medication,
        medications,
        Medication,
        "medications",
        |m| m.start
    );
    pusher!(
        push_evaluation,
        evaluations,
        Evaluation,
        "evaluations",
        |e| e.date
    );

    /// The item with this source id, if any.
    pub fn find(&self, id: &SourceId) -> Option<ItemRef<'_>> {
        if !self.ids.contains(id) {
            return None;
        }
        macro_rules! look {
            ($field:ident, $variant:ident) => {
                if let Some(x) = self.$field.iter().find(|x| &x.id == id) {
                    return Some(ItemRef::$variant(x));
                }
            };
        }
        look!(diagnoses, Diagnosis);
        look!(encounters, Encounter);
        look!(procedures, Procedure);
        look!(orders, Order);
        look!(observations, Observation);
        look!(blood_pressures, BloodPressure);
        look!(immunizations, Immunization);
        look!(medications, Medication);
        look!(evaluations, Evaluation);
        None
    }

    /// Number of items of every kind.
    pub fn item_count(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn sid(s: &str) -> SourceId {
        SourceId::new(s).unwrap()
    }

    #[test]
    fn icd10_codes_are_checked_and_normalised() {
        assert_eq!(
            Code::new(CodeSystem::Icd10Cm, "f1020").unwrap().code,
            "F10.20"
        );
        assert_eq!(Code::new(CodeSystem::Icd10Cm, "I10").unwrap().code, "I10");
        assert!(Code::new(CodeSystem::Icd10Cm, "1234").is_err());
        assert!(Code::new(CodeSystem::Icd10Cm, "E1.19").is_err());
        assert!(Code::new(CodeSystem::Icd10Cm, "E11.9.1").is_err());
    }

    #[test]
    fn loinc_check_digits_are_verified() {
        for ok in ["4548-4", "2345-7", "718-7", "2951-2", "33914-3", "8867-4"] {
            assert!(Code::new(CodeSystem::Loinc, ok).is_ok(), "{ok}");
        }
        assert!(Code::new(CodeSystem::Loinc, "4548-5").is_err());
        assert!(Code::new(CodeSystem::Loinc, "4548").is_err());
    }

    #[test]
    fn cpt_cvx_and_hcpcs_syntax() {
        assert!(Code::new(CodeSystem::Cpt, "45378").is_ok());
        assert!(Code::new(CodeSystem::Cpt, "4004F").is_ok());
        assert!(Code::new(CodeSystem::Cpt, "4537").is_err());
        assert_eq!(Code::new(CodeSystem::Cvx, "033").unwrap().code, "33");
        assert!(Code::new(CodeSystem::Cvx, "1411").is_err());
        assert!(Code::new(CodeSystem::Hcpcs, "G0444").is_ok());
        assert!(Code::new(CodeSystem::Hcpcs, "00444").is_err());
    }

    #[test]
    fn negative_and_absurd_lab_values_are_refused() {
        let k = ObservationKind::HbA1c;
        let day = d("2024-01-01");
        assert!(matches!(
            Observation::quantity(sid("a"), k, None, -1.0, "%", day),
            Err(ClinicalError::ValueOutOfRange { .. })
        ));
        assert!(Observation::quantity(sid("a"), k, None, 72.0, "%", day).is_err());
        assert!(Observation::quantity(sid("a"), k, None, f64::NAN, "%", day).is_err());
        assert!(matches!(
            Observation::quantity(sid("a"), k, None, 7.0, "mg/dL", day),
            Err(ClinicalError::BadUnit { .. })
        ));
        let ok = Observation::quantity(sid("a"), k, None, 53.0, "mmol/mol", day).unwrap();
        assert!((ok.value.unwrap() - 7.0).abs() < 0.05);
        let hb = Observation::quantity(
            sid("b"),
            ObservationKind::Hemoglobin,
            None,
            115.0,
            "g/L",
            day,
        )
        .unwrap();
        assert!((hb.value.unwrap() - 11.5).abs() < 1e-9);
    }

    #[test]
    fn impossible_dates_are_refused() {
        assert!(parse_date("x", "2024-02-30").is_err());
        assert!(parse_date("x", "1850-01-01").is_err());
        assert!(parse_date("x", "2024-13-01").is_err());
        assert_eq!(
            parse_date("x", "2024-03-01T14:05:00-05:00").unwrap(),
            d("2024-03-01")
        );
        assert!(parse_date("x", "2024-03-01garbage").is_err());
        let e = Encounter::new(
            sid("e"),
            EncounterClass::Inpatient,
            d("2024-03-05"),
            Some(d("2024-03-01")),
            None,
            None,
            vec![],
            vec![],
        );
        assert!(matches!(e, Err(ClinicalError::ImpossibleDate { .. })));
    }

    #[test]
    fn events_before_birth_and_duplicate_ids_are_refused() {
        let demo = Demographics::new(Some(d("1990-05-01")), Some(Sex::Female)).unwrap();
        let mut r = PatientRecord::new("p".into(), demo).unwrap();
        let code = Code::new(CodeSystem::Cvx, "141").unwrap();
        let early = Immunization::new(sid("i1"), code.clone(), d("1980-01-01")).unwrap();
        assert!(matches!(
            r.push_immunization(early),
            Err(ClinicalError::ImpossibleDate { .. })
        ));
        r.push_immunization(Immunization::new(sid("i1"), code.clone(), d("2020-01-01")).unwrap())
            .unwrap();
        assert_eq!(
            r.push_immunization(Immunization::new(sid("i1"), code, d("2021-01-01")).unwrap()),
            Err(ClinicalError::DuplicateSourceId("immunizations"))
        );
        assert!(r.find(&sid("i1")).is_some());
        assert!(r.find(&sid("nope")).is_none());
    }

    #[test]
    fn a_resolved_diagnosis_without_a_date_counts_only_on_its_recorded_date() {
        let code = Code::new(CodeSystem::Icd10Cm, "E11.9").unwrap();
        let dx = Diagnosis::new(
            sid("d"),
            code,
            d("2020-05-01"),
            None,
            DiagnosisStatus::Resolved,
            None,
        )
        .unwrap();
        assert!(dx.overlaps(d("2020-01-01"), d("2020-12-31")));
        assert!(!dx.overlaps(d("2021-01-01"), d("2021-12-31")));
        assert!(!dx.active_on(d("2020-06-01")));
    }

    #[test]
    fn scores_outside_the_instrument_range_are_refused() {
        let day = d("2024-01-01");
        assert!(Evaluation::scored(sid("e"), Instrument::Phq9, 28.0, day).is_err());
        assert!(Evaluation::scored(sid("e"), Instrument::AuditC, 13.0, day).is_err());
        assert!(Evaluation::scored(sid("e"), Instrument::Cows, -1.0, day).is_err());
        assert!(Evaluation::scored(sid("e"), Instrument::Cows, 2.5, day).is_err());
        assert!(Evaluation::scored(sid("e"), Instrument::CiwaAr, 67.0, day).is_ok());
    }

    #[test]
    fn ages_count_whole_years_and_refuse_future_births() {
        assert_eq!(age_on(d("2000-03-01"), d("2024-02-29")), 23);
        assert_eq!(age_on(d("2000-03-01"), d("2024-03-01")), 24);
        let demo = Demographics::new(Some(d("2030-01-01")), None).unwrap();
        assert!(demo.age_on(d("2024-01-01")).is_err());
    }

    #[test]
    fn debug_output_hides_dates_values_and_the_patient_id() {
        let demo = Demographics::new(Some(d("1961-07-04")), Some(Sex::Male)).unwrap();
        let mut r = PatientRecord::new("CANARY-PATIENT-ID".into(), demo).unwrap();
        let o = Observation::quantity(
            sid("lab-1"),
            ObservationKind::Sodium,
            None,
            131.0,
            "mmol/L",
            d("2024-01-01"),
        )
        .unwrap();
        assert_eq!(format!("{o:?}"), "Observation { id: SourceId(lab-1), .. }");
        r.push_observation(o).unwrap();
        let out = format!("{r:?} {:?}", r.demographics);
        assert!(!out.contains("CANARY"));
        assert!(!out.contains("1961"));
        assert!(!out.contains("131"));
    }
}
