//! Safe Harbor de-identification of structured records (45 CFR 164.514(b)(2)).
//!
//! One function per column action over `&str` values (the export applies them column by column
//! to Arrow arrays) and [`deidentify_json`], which walks a JSON record and applies a [`Policy`]
//! field by field.
//!
//! # Rules
//!
//! * Dates keep only the year ([`date_to_year`]), or, when the policy has a key and
//!   [`DateMode::Shift`], move by a per-patient offset ([`date_shift_days`]): keyed and
//!   deterministic per patient, so every date of one patient moves by the same number of days
//!   and intervals (length of stay, days to readmission) are kept.
//! * ZIP codes keep their first three digits, except the 17 three-digit areas that held 20,000
//!   people or fewer in the 2000 Census, which become `000` ([`RESTRICTED_ZIP3`]; the list is
//!   the one HHS's de-identification guidance (2012, §2.4) gives from 2000 Census data).
//! * Ages over 89 become `90+`. A birth date of such a patient would reveal the age, so it is
//!   aggregated: every patient aged 90 or more at the policy's reference date gets the same
//!   birth year, `reference year - 90`.
//! * Direct identifiers are dropped.
//! * Fields the policy does not name are **scrubbed** if they are strings (free-text detection,
//!   type tags) and kept if they are numbers or booleans: a new field in an EHR response is
//!   treated as possibly-PHI text until someone classifies it.
//!
//! # Decisions
//!
//! * Keyed pseudonyms of identifiers (`Action::Pseudonymize`) keep tables joinable. Strictly,
//!   164.514(c) allows a re-identification code only if it is *not derived from* information
//!   about the individual, and an HMAC of an MRN is derived from it; so the default Kipu policy
//!   pseudonymizes the system-assigned record ids only when a key is configured and drops them
//!   otherwise, and drops MRNs, SSNs and insurance numbers outright. The key must stay with the
//!   covered entity.
//! * A value that a rule cannot parse (a date column holding `"unknown"`) is an error naming the
//!   field, never the value; nothing is half-written because the input is borrowed.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use serde_json::Value;

use crate::detect::PhiKind;
use crate::redact::{Mode, PseudonymKey, scrub};

/// ZIP3 areas with a population of 20,000 or fewer (2000 Census), which Safe Harbor replaces
/// with `000`.
pub const RESTRICTED_ZIP3: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
    "879", "884", "890", "893",
];

/// Largest date shift in days (backwards); shifts are in `1..=MAX_SHIFT_DAYS` days back.
pub const MAX_SHIFT_DAYS: u64 = 365;

/// What to do with one column or JSON field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Not an identifier: keep as is.
    Keep,
    /// A direct identifier: remove the field.
    Drop,
    /// A date: to the year, or shifted per patient ([`DateMode`]).
    Date,
    /// A ZIP code: first three digits, restricted areas to `000`.
    Zip3,
    /// An age: over 89 becomes `90+`.
    Age,
    /// Free text: detect and replace identifiers with type tags.
    Scrub,
    /// An identifier that must stay joinable: keyed pseudonym of the given kind (dropped when
    /// the policy has no key).
    Pseudonymize(PhiKind),
}

impl Action {
    /// Parses `keep`, `drop`, `date` (or `year`), `zip3`, `age`, `scrub`, `pseudonymize`.
    pub fn parse(name: &str) -> Result<Action, DeidError> {
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "date" | "year" => Action::Date,
            "zip3" => Action::Zip3,
            "age" => Action::Age,
            "scrub" => Action::Scrub,
            "pseudonymize" | "pseudonymise" => Action::Pseudonymize(PhiKind::OtherId),
            _ => return Err(DeidError::UnknownAction(name.chars().take(32).collect())),
        })
    }
}

/// How [`Action::Date`] treats dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateMode {
    /// Keep the year only.
    Year,
    /// Shift by a keyed per-patient offset, keeping the format (needs a key).
    Shift,
}

/// Errors. Messages name the field and the rule, never the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeidError {
    /// A date rule met a value that is not a date it understands.
    #[error("field `{field}`: not a date (expected YYYY-MM-DD, an ISO 8601 timestamp or M/D/YYYY)")]
    NotADate {
        /// JSON path or column name.
        field: String,
    },
    /// A ZIP rule met a value that does not start with five digits.
    #[error("field `{field}`: not a ZIP code (expected 5 or 9 digits)")]
    NotAZip {
        /// JSON path or column name.
        field: String,
    },
    /// An age rule met a value that is not a whole number of years.
    #[error("field `{field}`: not an age in whole years")]
    NotAnAge {
        /// JSON path or column name.
        field: String,
    },
    /// Date shifting was asked for without a key.
    #[error("date shifting needs a pseudonym key")]
    ShiftWithoutKey,
    /// A date shift needs the patient, and the record does not say which patient it is.
    #[error("field `{field}`: cannot shift a date without a patient id in the record")]
    NoPatientForShift {
        /// JSON path.
        field: String,
    },
    /// A policy named an action that does not exist.
    #[error(
        "unknown de-identification action `{0}` (expected keep, drop, date, zip3, age, scrub or pseudonymize)"
    )]
    UnknownAction(String),
}

/// Parses the date part of `value`: `YYYY-MM-DD`, an ISO 8601 timestamp, `YYYY/MM/DD` or
/// `M/D/YYYY`. Returns the date and the byte length of the date part.
fn parse_date_prefix(value: &str) -> Option<(NaiveDate, usize)> {
    let v = value.trim();
    let b = v.as_bytes();
    if b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && (b[4] == b'-' || b[4] == b'/') {
        let date = NaiveDate::parse_from_str(&v[..10].replace('/', "-"), "%Y-%m-%d").ok()?;
        let rest = &v[10..];
        if rest.is_empty() || rest.starts_with('T') || rest.starts_with(' ') {
            return Some((date, 10));
        }
        return None;
    }
    let date_part = v.split(['T', ' ']).next()?;
    let date = NaiveDate::parse_from_str(date_part, "%m/%d/%Y").ok()?;
    Some((date, date_part.len()))
}

/// `2024-03-01T14:05:00-05:00` → `2024`.
pub fn date_to_year(value: &str, field: &str) -> Result<String, DeidError> {
    parse_date_prefix(value)
        .map(|(d, _)| d.year().to_string())
        .ok_or_else(|| DeidError::NotADate {
            field: field.to_string(),
        })
}

/// The per-patient shift in days (negative: dates move back), deterministic under `key`.
pub fn date_shift_days(key: &PseudonymKey, patient_id: &str) -> i64 {
    let n = key.tag_u64("phi.date-shift.v1", patient_id) % MAX_SHIFT_DAYS + 1;
    -(n as i64)
}

/// Moves the date part of `value` by `days`, keeping its format and any time and offset.
pub fn shift_date(value: &str, days: i64, field: &str) -> Result<String, DeidError> {
    let v = value.trim();
    let (date, len) = parse_date_prefix(v).ok_or_else(|| DeidError::NotADate {
        field: field.to_string(),
    })?;
    let shifted = date + Duration::days(days);
    let formatted = if v.as_bytes().get(4) == Some(&b'-') {
        shifted.format("%Y-%m-%d").to_string()
    } else if v.as_bytes().get(4) == Some(&b'/') {
        shifted.format("%Y/%m/%d").to_string()
    } else {
        shifted.format("%m/%d/%Y").to_string()
    };
    Ok(format!("{formatted}{}", &v[len..]))
}

/// `62704-1234` → `627`; restricted areas → `000`.
pub fn zip3(value: &str, field: &str) -> Result<String, DeidError> {
    let v = value.trim();
    let b = v.as_bytes();
    let ok = b.len() >= 5
        && b[..5].iter().all(u8::is_ascii_digit)
        && (b.len() == 5
            || (b.len() == 10 && b[5] == b'-' && b[6..].iter().all(u8::is_ascii_digit))
            || (b.len() == 9 && b.iter().all(u8::is_ascii_digit)));
    if !ok {
        return Err(DeidError::NotAZip {
            field: field.to_string(),
        });
    }
    let prefix = &v[..3];
    Ok(if RESTRICTED_ZIP3.contains(&prefix) {
        "000".to_string()
    } else {
        prefix.to_string()
    })
}

/// `93` → `90+`; `45` → `45`.
pub fn age(value: &str, field: &str) -> Result<String, DeidError> {
    let years: u32 = value.trim().parse().map_err(|_| DeidError::NotAnAge {
        field: field.to_string(),
    })?;
    Ok(if years > 89 {
        "90+".to_string()
    } else {
        years.to_string()
    })
}

/// Full years between `dob` and `on`.
pub fn age_on(dob: NaiveDate, on: NaiveDate) -> i32 {
    let mut years = on.year() - dob.year();
    if (on.month(), on.day()) < (dob.month(), dob.day()) {
        years -= 1;
    }
    years
}

/// Free text with identifiers replaced by type tags.
pub fn scrub_text(value: &str) -> String {
    scrub(value, Mode::Tag)
}

/// A keyed pseudonym of `value` as a `kind`.
pub fn pseudonymize(value: &str, kind: PhiKind, key: &PseudonymKey) -> String {
    key.pseudonym(kind, value)
}

/// Column name → action, plus the options the actions need.
#[derive(Clone, Debug)]
pub struct Policy {
    columns: BTreeMap<String, Action>,
    date_mode: DateMode,
    key: Option<PseudonymKey>,
    reference_date: NaiveDate,
    patient_id_fields: Vec<String>,
    birth_date_fields: Vec<String>,
}

impl Policy {
    /// An empty policy (every string scrubbed, everything else kept). `reference_date` is the
    /// day ages are computed on (the export date).
    pub fn new(reference_date: NaiveDate) -> Self {
        Self {
            columns: BTreeMap::new(),
            date_mode: DateMode::Year,
            key: None,
            reference_date,
            patient_id_fields: vec!["patient_id".into(), "casefile_id".into()],
            birth_date_fields: vec!["dob".into(), "date_of_birth".into(), "birth_date".into()],
        }
    }

    /// Sets the action for a column (names are matched case-insensitively).
    pub fn set(mut self, column: &str, action: Action) -> Self {
        self.columns.insert(column.to_ascii_lowercase(), action);
        self
    }

    /// Adds the key used by pseudonyms and date shifts.
    pub fn with_key(mut self, key: PseudonymKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Shifts dates per patient instead of keeping the year (needs a key).
    pub fn with_date_shift(mut self) -> Result<Self, DeidError> {
        if self.key.is_none() {
            return Err(DeidError::ShiftWithoutKey);
        }
        self.date_mode = DateMode::Shift;
        Ok(self)
    }

    /// The action for `column`: the policy's, else `Scrub` for strings (see the module docs).
    pub fn action(&self, column: &str) -> Option<Action> {
        self.columns.get(&column.to_ascii_lowercase()).copied()
    }

    /// The date mode in force.
    pub fn date_mode(&self) -> DateMode {
        self.date_mode
    }

    /// Applies the column's action to one value, for column-wise (Arrow) use: `Ok(None)` means
    /// the value is removed (the column is dropped, or a pseudonym was asked for without a key).
    /// Columns the policy does not name are scrubbed as free text. A birth-date column of a
    /// patient aged 90 or more at the reference date gets the aggregate year (see module docs).
    /// `patient_id` is needed only for date shifting.
    pub fn apply_str(
        &self,
        column: &str,
        value: &str,
        patient_id: Option<&str>,
    ) -> Result<Option<String>, DeidError> {
        let lower = column.to_ascii_lowercase();
        if self.birth_date_fields.contains(&lower)
            && let Some((dob, _)) = parse_date_prefix(value)
            && age_on(dob, self.reference_date) > 89
        {
            return Ok(Some((self.reference_date.year() - 90).to_string()));
        }
        let action = self.action(&lower).unwrap_or(Action::Scrub);
        Ok(
            apply_scalar(value, action, self, column, patient_id)?.map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            }),
        )
    }

    /// The default policy for the Kipu records in `docs/kipu-shapes.md`.
    pub fn kipu_default(reference_date: NaiveDate) -> Self {
        let mut p = Policy::new(reference_date);
        for f in [
            "first_name",
            "middle_name",
            "last_name",
            "preferred_name",
            "ssn",
            "address_street",
            "address_city",
            "phone",
            "email",
            "mr_number",
            "policy_no",
            "group_no",
            "subscriber_name",
            "user_name",
        ] {
            p = p.set(f, Action::Drop);
        }
        for f in ["casefile_id", "patient_id", "patient_master_id"] {
            p = p.set(f, Action::Pseudonymize(PhiKind::OtherId));
        }
        for f in [
            "dob",
            "admission_date",
            "discharge_date",
            "start_date",
            "end_date",
            "created_at",
            "updated_at",
            "diagnosis_date",
            "start_time",
            "end_time",
            "recorded_at",
            "completed_at",
            "ordered_at",
            "review_date",
            "next_review_date",
        ] {
            p = p.set(f, Action::Date);
        }
        p = p.set("address_zip", Action::Zip3).set("age", Action::Age);
        for f in ["notes", "comments", "evaluation_content", "referral_source"] {
            p = p.set(f, Action::Scrub);
        }
        for f in [
            "id",
            "gender",
            "address_state",
            "discharge_type",
            "program",
            "level_of_care",
            "location_id",
            "location_name",
            "payor_name",
            "priority",
            "admission_type",
            "user_id",
            "provider_id",
            "role",
            "code",
            "description",
            "status",
            "is_primary",
            "systolic_blood_pressure",
            "diastolic_blood_pressure",
            "heart_rate",
            "temperature",
            "respiratory_rate",
            "oxygen_saturation",
            "weight",
            "height",
            "evaluation_type",
            "enabled",
            "evaluation_id",
            "name",
            "score",
            "value",
            "interval_label",
            "title",
            "npi",
            "role_ids",
            "specialty",
            "relationship",
            "contact_type",
            "order_type",
            "medication",
            "dose",
            "dose_unit",
            "route",
            "frequency",
            "authorized_days",
            "appointment_type",
            "location",
            "pagination",
            "current_page",
            "total_pages",
            "records_per_page",
            "total_records",
        ] {
            p = p.set(f, Action::Keep);
        }
        p
    }
}

/// De-identifies a JSON value (a record, an array of records, a whole API response) under
/// `policy`. The input is not modified.
pub fn deidentify_json(value: &Value, policy: &Policy) -> Result<Value, DeidError> {
    walk(value, policy, "$", None, None)
}

fn walk(
    value: &Value,
    policy: &Policy,
    path: &str,
    patient: Option<&str>,
    field: Option<&str>,
) -> Result<Value, DeidError> {
    match value {
        Value::Object(map) => {
            let own_patient = policy
                .patient_id_fields
                .iter()
                .find_map(|f| map.get(f).and_then(Value::as_str))
                .or(patient);
            let over_89 = policy.birth_date_fields.iter().any(|f| {
                map.get(f)
                    .and_then(Value::as_str)
                    .and_then(parse_date_prefix)
                    .is_some_and(|(dob, _)| age_on(dob, policy.reference_date) > 89)
            });
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let child_path = format!("{path}.{k}");
                if over_89 && policy.birth_date_fields.iter().any(|f| f == k) && !v.is_null() {
                    out.insert(
                        k.clone(),
                        Value::String((policy.reference_date.year() - 90).to_string()),
                    );
                    continue;
                }
                match apply(v, policy, &child_path, own_patient, k)? {
                    Some(nv) => {
                        out.insert(k.clone(), nv);
                    }
                    None => continue,
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| walk(item, policy, &format!("{path}[{i}]"), patient, field))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::String(s) => {
            // An array element or top-level string: apply the enclosing field's rule.
            match field.and_then(|f| policy.action(f)) {
                Some(action) => {
                    Ok(apply_scalar(s, action, policy, path, patient)?.unwrap_or(Value::Null))
                }
                None => Ok(Value::String(scrub_text(s))),
            }
        }
        other => Ok(other.clone()),
    }
}

/// Applies the rule for field `name`; `None` means the field is dropped.
fn apply(
    value: &Value,
    policy: &Policy,
    path: &str,
    patient: Option<&str>,
    name: &str,
) -> Result<Option<Value>, DeidError> {
    let action = policy.action(name);
    match value {
        Value::Null => Ok(match action {
            Some(Action::Drop) => None,
            _ => Some(Value::Null),
        }),
        Value::Object(_) | Value::Array(_) => match action {
            Some(Action::Drop) => Ok(None),
            _ => walk(value, policy, path, patient, Some(name)).map(Some),
        },
        Value::String(s) => match action {
            None => Ok(Some(Value::String(scrub_text(s)))),
            Some(action) => apply_scalar(s, action, policy, path, patient),
        },
        Value::Number(n) => match action {
            Some(Action::Drop) => Ok(None),
            Some(Action::Age) => {
                let years = n.as_u64().ok_or_else(|| DeidError::NotAnAge {
                    field: path.to_string(),
                })?;
                Ok(Some(if years > 89 {
                    Value::String("90+".into())
                } else {
                    value.clone()
                }))
            }
            Some(Action::Zip3) => apply_scalar(&n.to_string(), Action::Zip3, policy, path, patient),
            Some(Action::Pseudonymize(kind)) => apply_scalar(
                &n.to_string(),
                Action::Pseudonymize(kind),
                policy,
                path,
                patient,
            ),
            _ => Ok(Some(value.clone())),
        },
        Value::Bool(_) => match action {
            Some(Action::Drop) => Ok(None),
            _ => Ok(Some(value.clone())),
        },
    }
}

fn apply_scalar(
    s: &str,
    action: Action,
    policy: &Policy,
    path: &str,
    patient: Option<&str>,
) -> Result<Option<Value>, DeidError> {
    Ok(match action {
        Action::Keep => Some(Value::String(s.to_string())),
        Action::Drop => None,
        Action::Scrub => Some(Value::String(scrub_text(s))),
        Action::Zip3 => Some(Value::String(zip3(s, path)?)),
        Action::Age => Some(Value::String(age(s, path)?)),
        Action::Pseudonymize(kind) => policy
            .key
            .as_ref()
            .map(|key| Value::String(pseudonymize(s, kind, key))),
        Action::Date => match policy.date_mode {
            DateMode::Year => Some(Value::String(date_to_year(s, path)?)),
            DateMode::Shift => {
                let key = policy.key.as_ref().ok_or(DeidError::ShiftWithoutKey)?;
                let patient = patient.ok_or_else(|| DeidError::NoPatientForShift {
                    field: path.to_string(),
                })?;
                Some(Value::String(shift_date(
                    s,
                    date_shift_days(key, patient),
                    path,
                )?))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> PseudonymKey {
        PseudonymKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn reference() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 15).unwrap()
    }

    #[test]
    fn dates_keep_only_the_year_in_every_supported_format() {
        assert_eq!(date_to_year("2024-03-01", "f").unwrap(), "2024");
        assert_eq!(
            date_to_year("2024-03-01T14:05:00-05:00", "f").unwrap(),
            "2024"
        );
        assert_eq!(date_to_year("3/1/2024", "f").unwrap(), "2024");
        assert_eq!(
            date_to_year("yesterday", "dob").unwrap_err().to_string(),
            "field `dob`: not a date (expected YYYY-MM-DD, an ISO 8601 timestamp or M/D/YYYY)"
        );
    }

    #[test]
    fn restricted_zip3_areas_become_000_and_others_keep_three_digits() {
        assert_eq!(zip3("62704", "z").unwrap(), "627");
        assert_eq!(zip3("62704-1234", "z").unwrap(), "627");
        for restricted in RESTRICTED_ZIP3 {
            assert_eq!(zip3(&format!("{restricted}12"), "z").unwrap(), "000");
        }
        assert!(zip3("6270", "z").is_err());
        assert!(zip3("abcde", "z").is_err());
    }

    #[test]
    fn ages_over_89_are_aggregated() {
        assert_eq!(age("89", "a").unwrap(), "89");
        assert_eq!(age("90", "a").unwrap(), "90+");
        assert_eq!(age("104", "a").unwrap(), "90+");
        assert!(age("ninety", "a").is_err());
    }

    #[test]
    fn a_patients_dates_shift_together_and_keep_intervals() {
        let k = key();
        let shift = date_shift_days(&k, "1042:abc");
        assert!((-365..=-1).contains(&shift));
        assert_eq!(shift, date_shift_days(&k, "1042:abc"));
        let admit = shift_date("2024-03-01", shift, "a").unwrap();
        let discharge = shift_date("2024-03-11T09:00:00-05:00", shift, "d").unwrap();
        let a = NaiveDate::parse_from_str(&admit, "%Y-%m-%d").unwrap();
        let d = NaiveDate::parse_from_str(&discharge[..10], "%Y-%m-%d").unwrap();
        assert_eq!((d - a).num_days(), 10);
        assert!(discharge.ends_with("T09:00:00-05:00"));
        assert_ne!(admit, "2024-03-01");
    }

    #[test]
    fn kipu_patient_record_is_de_identified() {
        let record = json!({
            "casefile_id": "1042:9b2f6a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
            "first_name": "Zebulon", "last_name": "Quixote", "ssn": "123-45-6789",
            "dob": "1980-02-29", "gender": "male", "address_zip": "03601", "address_state": "NH",
            "phone": "415-555-0123", "email": "zq@example.com", "mr_number": "MRN0042",
            "admission_date": "2024-03-01T14:05:00-05:00", "program": "Detox",
            "insurances": [{"policy_no": "W123456", "payor_name": "Aetna", "start_date": "2024-01-01"}],
            "notes": "Called Mr. Quixote's wife at 415-555-0199.",
            "unclassified_field": "Pt: Zebulon Quixote"
        });
        let out = deidentify_json(&record, &Policy::kipu_default(reference())).unwrap();
        let text = out.to_string();
        for leaked in [
            "Zebulon",
            "Quixote",
            "123-45-6789",
            "415-555",
            "zq@",
            "MRN0042",
            "W123456",
            "1042:",
        ] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        assert_eq!(out["dob"], "1980");
        assert_eq!(out["address_zip"], "000");
        assert_eq!(out["address_state"], "NH");
        assert_eq!(out["admission_date"], "2024");
        assert_eq!(out["insurances"][0]["payor_name"], "Aetna");
        assert_eq!(out["insurances"][0]["start_date"], "2024");
        assert!(
            out.get("casefile_id").is_none(),
            "ids are dropped without a key"
        );
        assert!(out["notes"].as_str().unwrap().contains("[PHONE]"));
    }

    #[test]
    fn with_a_key_ids_are_pseudonymized_and_dates_shift_per_patient() {
        let policy = Policy::kipu_default(reference())
            .with_key(key())
            .with_date_shift()
            .unwrap();
        let a = json!({"patient_id": "1:x", "start_date": "2024-03-01", "end_date": "2024-03-04"});
        let out = deidentify_json(&a, &policy).unwrap();
        let pid = out["patient_id"].as_str().unwrap();
        assert!(pid.starts_with("ID-"));
        let s = NaiveDate::parse_from_str(out["start_date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        let e = NaiveDate::parse_from_str(out["end_date"].as_str().unwrap(), "%Y-%m-%d").unwrap();
        assert_eq!((e - s).num_days(), 3);
        let again = deidentify_json(&a, &policy).unwrap();
        assert_eq!(out, again);
    }

    #[test]
    fn birth_dates_of_patients_over_89_are_aggregated_to_one_year() {
        let policy = Policy::kipu_default(reference());
        let old = deidentify_json(&json!({"dob": "1930-06-01", "age": 95}), &policy).unwrap();
        let older = deidentify_json(&json!({"dob": "1921-01-01"}), &policy).unwrap();
        assert_eq!(old["dob"], "1936");
        assert_eq!(older["dob"], "1936");
        assert_eq!(old["age"], "90+");
    }

    #[test]
    fn shifting_without_a_key_is_refused_and_bad_values_name_the_field_only() {
        assert_eq!(
            Policy::new(reference()).with_date_shift().unwrap_err(),
            DeidError::ShiftWithoutKey
        );
        let err = deidentify_json(
            &json!({"dob": "Zebulon"}),
            &Policy::kipu_default(reference()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("$.dob"));
        assert!(!err.to_string().contains("Zebulon"));
    }

    #[test]
    fn column_wise_application_matches_the_record_rules() {
        let policy = Policy::kipu_default(reference());
        assert_eq!(
            policy
                .apply_str("address_zip", "83012", None)
                .unwrap()
                .as_deref(),
            Some("000")
        );
        assert_eq!(
            policy
                .apply_str("DOB", "1931-05-05", None)
                .unwrap()
                .as_deref(),
            Some("1936")
        );
        assert_eq!(
            policy
                .apply_str("dob", "1980-05-05", None)
                .unwrap()
                .as_deref(),
            Some("1980")
        );
        assert_eq!(
            policy.apply_str("last_name", "Quixote", None).unwrap(),
            None
        );
        assert_eq!(policy.apply_str("casefile_id", "1:x", None).unwrap(), None);
        assert_eq!(
            policy
                .apply_str("free_text", "call 415-555-0123", None)
                .unwrap()
                .as_deref(),
            Some("call [PHONE]")
        );
        let err = policy
            .apply_str("admission_date", "soon", None)
            .unwrap_err();
        assert_eq!(
            err,
            DeidError::NotADate {
                field: "admission_date".into()
            }
        );
    }

    #[test]
    fn actions_parse_from_policy_files() {
        assert_eq!(Action::parse("year").unwrap(), Action::Date);
        assert_eq!(Action::parse("ZIP3").unwrap(), Action::Zip3);
        assert!(Action::parse("encrypt").is_err());
    }
}
