//! Serde models of the main Kipu resources (docs/kipu-shapes.md).
//!
//! # PHI decision
//!
//! Models are handed out as plain structs whose PHI fields are typed [`Sensitive`]: every
//! HIPAA Safe Harbor identifier (names, dates tied to a person: birth, admission, discharge,
//! record timestamps; addresses, phone, email, SSN, MRN, casefile and master ids, insurance
//! numbers) and every free-text field (comments, notes, evaluation content, descriptions that
//! can name people). What stays plain is non-identifying on its own: integer record ids,
//! categorical codes (gender, status, ICD-10 code, order type), and numeric measurements.
//! A derived `Debug` of any model therefore shows structure and codes but no identifier, and
//! because `Sensitive` has no `Serialize`, no model can be written to a JSON log by accident.
//!
//! Unknown fields are kept in `extra`, which is itself `Sensitive` (an unknown field may be
//! anything), so nothing the EHR sends is dropped.

use phi::Sensitive;
use serde::Deserialize;

/// An unknown-field map, kept whole and redacted.
pub type Extra = Sensitive<serde_json::Map<String, serde_json::Value>>;

/// A text field that may hold PHI.
pub type Phi = Option<Sensitive<String>>;

/// Deserializers that accept numbers or numeric strings (third-party clients show Kipu sending
/// both).
pub mod lenient {
    use serde::de::{self, Deserializer, Error as _, Visitor};

    /// A number or a text, read in one pass (no buffering of the value).
    enum NumOrText {
        U(u64),
        F(f64),
        T(String),
    }

    /// Accepts what Kipu sends for a number: a JSON number, a string, or null.
    struct Lenient;

    impl<'de> Visitor<'de> for Lenient {
        type Value = Option<NumOrText>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number, a numeric string or null")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(NumOrText::U(v)))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(match u64::try_from(v) {
                Ok(u) => NumOrText::U(u),
                #[allow(clippy::cast_precision_loss)]
                Err(_) => NumOrText::F(v as f64),
            }))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(NumOrText::F(v)))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(NumOrText::T(v.to_owned())))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(NumOrText::T(v)))
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    /// `Option<u64>` from a number, a numeric string, `null` or an empty string.
    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match d.deserialize_option(Lenient)? {
            None => Ok(None),
            Some(NumOrText::U(n)) => Ok(Some(n)),
            Some(NumOrText::F(f)) if f >= 0.0 && f.fract() == 0.0 && f < 1.8e19 =>
            {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Some(f as u64))
            }
            Some(NumOrText::F(_)) => Err(D::Error::custom("expected a non-negative integer")),
            Some(NumOrText::T(s)) if s.trim().is_empty() => Ok(None),
            Some(NumOrText::T(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| D::Error::custom("expected an integer or a numeric string")),
        }
    }

    /// `Option<f64>` from a number, a numeric string, `null` or an empty string.
    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match d.deserialize_option(Lenient)? {
            None => Ok(None),
            #[allow(clippy::cast_precision_loss)]
            Some(NumOrText::U(n)) => Ok(Some(n as f64)),
            Some(NumOrText::F(f)) => Ok(Some(f)),
            Some(NumOrText::T(s)) if s.trim().is_empty() => Ok(None),
            Some(NumOrText::T(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| D::Error::custom("expected a number or a numeric string")),
        }
    }
}

/// A record of an endpoint without a dedicated model: the whole JSON object, redacted.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Record(pub Sensitive<serde_json::Map<String, serde_json::Value>>);

/// A patient (`patients`, `patient`), also the entry of the census, latest and vault lists.
#[derive(Debug, Clone, Deserialize)]
pub struct Patient {
    /// `"<number>:<uuid>"`, the id used in patient paths.
    pub casefile_id: Sensitive<String>,
    /// The patient master id (uuid).
    #[serde(default)]
    pub patient_master_id: Phi,
    /// First name.
    #[serde(default)]
    pub first_name: Phi,
    /// Middle name.
    #[serde(default)]
    pub middle_name: Phi,
    /// Last name.
    #[serde(default)]
    pub last_name: Phi,
    /// Preferred name.
    #[serde(default)]
    pub preferred_name: Phi,
    /// Date of birth.
    #[serde(default)]
    pub dob: Phi,
    /// Gender.
    #[serde(default)]
    pub gender: Option<String>,
    /// Medical record number.
    #[serde(default)]
    pub mr_number: Phi,
    /// Social security number.
    #[serde(default)]
    pub ssn: Phi,
    /// Street.
    #[serde(default)]
    pub address_street: Phi,
    /// City.
    #[serde(default)]
    pub address_city: Phi,
    /// State.
    #[serde(default)]
    pub address_state: Phi,
    /// ZIP code.
    #[serde(default)]
    pub address_zip: Phi,
    /// Phone.
    #[serde(default)]
    pub phone: Phi,
    /// Email.
    #[serde(default)]
    pub email: Phi,
    /// Admission date.
    #[serde(default)]
    pub admission_date: Phi,
    /// Discharge date.
    #[serde(default)]
    pub discharge_date: Phi,
    /// Discharge type.
    #[serde(default)]
    pub discharge_type: Option<String>,
    /// Program.
    #[serde(default)]
    pub program: Option<String>,
    /// Level of care.
    #[serde(default)]
    pub level_of_care: Option<String>,
    /// Location id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub location_id: Option<u64>,
    /// Location name.
    #[serde(default)]
    pub location_name: Option<String>,
    /// Insurances.
    #[serde(default)]
    pub insurances: Vec<Insurance>,
    /// Created.
    #[serde(default)]
    pub created_at: Phi,
    /// Updated.
    #[serde(default)]
    pub updated_at: Phi,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A census entry is a patient record.
pub type CensusEntry = Patient;

/// An insurance of a patient.
#[derive(Debug, Clone, Deserialize)]
pub struct Insurance {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// The patient's casefile id.
    #[serde(default)]
    pub patient_id: Phi,
    /// The payor.
    #[serde(default)]
    pub payor_name: Option<String>,
    /// Policy number.
    #[serde(default)]
    pub policy_no: Phi,
    /// Group number.
    #[serde(default)]
    pub group_no: Phi,
    /// Subscriber.
    #[serde(default)]
    pub subscriber_name: Phi,
    /// `primary` or `secondary`.
    #[serde(default)]
    pub priority: Option<String>,
    /// Start.
    #[serde(default)]
    pub start_date: Phi,
    /// End.
    #[serde(default)]
    pub end_date: Phi,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An admission: the patient plus how they were admitted.
#[derive(Debug, Clone, Deserialize)]
pub struct Admission {
    /// `elective`, `urgent`, `emergency`.
    #[serde(default)]
    pub admission_type: Option<String>,
    /// Who referred the patient (may name a person).
    #[serde(default)]
    pub referral_source: Phi,
    /// The patient fields.
    #[serde(flatten)]
    pub patient: Patient,
}

/// A member of a patient's care team.
#[derive(Debug, Clone, Deserialize)]
pub struct CareTeamMember {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// The patient's casefile id.
    #[serde(default)]
    pub patient_id: Phi,
    /// The staff user id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub user_id: Option<u64>,
    /// The staff member's name.
    #[serde(default)]
    pub user_name: Phi,
    /// Their role.
    #[serde(default)]
    pub role: Option<String>,
    /// Start.
    #[serde(default)]
    pub start_date: Phi,
    /// End.
    #[serde(default)]
    pub end_date: Phi,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An entry of `/api/patients/care_teams`: one patient's team.
#[derive(Debug, Clone, Deserialize)]
pub struct PatientCareTeam {
    /// The patient's casefile id.
    #[serde(default)]
    pub patient_id: Phi,
    /// The members.
    #[serde(default)]
    pub care_team: Vec<CareTeamMember>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A diagnosis in a patient's history.
#[derive(Debug, Clone, Deserialize)]
pub struct Diagnosis {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// The patient's casefile id.
    #[serde(default)]
    pub patient_id: Phi,
    /// ICD-10-CM code.
    #[serde(default)]
    pub code: Option<String>,
    /// Description (may be annotated with free text).
    #[serde(default)]
    pub description: Phi,
    /// When diagnosed.
    #[serde(default)]
    pub diagnosis_date: Phi,
    /// `active` or `resolved`.
    #[serde(default)]
    pub status: Option<String>,
    /// Primary diagnosis.
    #[serde(default)]
    pub is_primary: Option<bool>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An appointment.
#[derive(Debug, Clone, Deserialize)]
pub struct Appointment {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// The patient's casefile id.
    #[serde(default)]
    pub patient_id: Phi,
    /// Provider id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub provider_id: Option<u64>,
    /// User id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub user_id: Option<u64>,
    /// Type.
    #[serde(default)]
    pub appointment_type: Option<String>,
    /// Status.
    #[serde(default)]
    pub status: Option<String>,
    /// Start.
    #[serde(default)]
    pub start_time: Phi,
    /// End.
    #[serde(default)]
    pub end_time: Phi,
    /// Location id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub location_id: Option<u64>,
    /// Notes (free text).
    #[serde(default)]
    pub notes: Phi,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A vital-signs reading.
#[derive(Debug, Clone, Deserialize)]
pub struct VitalSign {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// The patient's casefile id.
    #[serde(default)]
    pub patient_id: Phi,
    /// mmHg.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub systolic_blood_pressure: Option<f64>,
    /// mmHg.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub diastolic_blood_pressure: Option<f64>,
    /// Beats per minute.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub heart_rate: Option<f64>,
    /// Temperature.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub temperature: Option<f64>,
    /// Breaths per minute.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub respiratory_rate: Option<f64>,
    /// Percent.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub oxygen_saturation: Option<f64>,
    /// Weight.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub weight: Option<f64>,
    /// Height.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub height: Option<f64>,
    /// Comments (free text).
    #[serde(default)]
    pub comments: Phi,
    /// When measured.
    #[serde(default)]
    pub recorded_at: Phi,
    /// Created.
    #[serde(default)]
    pub created_at: Phi,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An evaluation template.
#[derive(Debug, Clone, Deserialize)]
pub struct Evaluation {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// Template name.
    #[serde(default)]
    pub name: Option<String>,
    /// Type.
    #[serde(default)]
    pub evaluation_type: Option<String>,
    /// Enabled.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A completed or pending evaluation of a patient.
#[derive(Debug, Clone, Deserialize)]
pub struct PatientEvaluation {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// Template id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub evaluation_id: Option<u64>,
    /// The patient's casefile id.
    #[serde(default)]
    pub patient_id: Phi,
    /// `PHQ-9`, `AUDIT-C`, ...
    #[serde(default)]
    pub name: Option<String>,
    /// Status.
    #[serde(default)]
    pub status: Option<String>,
    /// Score.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub score: Option<f64>,
    /// The answers (free text).
    #[serde(default)]
    pub evaluation_content: Option<Sensitive<serde_json::Value>>,
    /// Created.
    #[serde(default)]
    pub created_at: Phi,
    /// Completed.
    #[serde(default)]
    pub completed_at: Phi,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A staff user. Workforce names and contacts are not patient PHI but are still personal
/// data; they are redacted the same way.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// First name.
    #[serde(default)]
    pub first_name: Phi,
    /// Last name.
    #[serde(default)]
    pub last_name: Phi,
    /// Email.
    #[serde(default)]
    pub email: Phi,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// National provider id.
    #[serde(default)]
    pub npi: Option<String>,
    /// Enabled.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Role ids.
    #[serde(default)]
    pub role_ids: Vec<u64>,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A provider.
#[derive(Debug, Clone, Deserialize)]
pub struct Provider {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// First name.
    #[serde(default)]
    pub first_name: Phi,
    /// Last name.
    #[serde(default)]
    pub last_name: Phi,
    /// National provider id.
    #[serde(default)]
    pub npi: Option<String>,
    /// Specialty.
    #[serde(default)]
    pub specialty: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Phi,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A contact of a patient (family, referrer, ...).
#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// The patient's casefile id.
    #[serde(default)]
    pub patient_id: Phi,
    /// First name.
    #[serde(default)]
    pub first_name: Phi,
    /// Last name.
    #[serde(default)]
    pub last_name: Phi,
    /// Relationship to the patient.
    #[serde(default)]
    pub relationship: Option<String>,
    /// Contact type.
    #[serde(default)]
    pub contact_type: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone: Phi,
    /// Email.
    #[serde(default)]
    pub email: Phi,
    /// Street.
    #[serde(default)]
    pub address_street: Phi,
    /// City.
    #[serde(default)]
    pub address_city: Phi,
    /// State.
    #[serde(default)]
    pub address_state: Phi,
    /// ZIP.
    #[serde(default)]
    pub address_zip: Phi,
    /// Notes.
    #[serde(default)]
    pub notes: Phi,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A patient order (medication, lab, procedure, referral).
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    /// Record id.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub id: Option<u64>,
    /// The patient's casefile id.
    #[serde(default)]
    pub patient_id: Phi,
    /// `medication`, `lab`, `procedure`, `referral`.
    #[serde(default)]
    pub order_type: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Medication.
    #[serde(default)]
    pub medication: Option<String>,
    /// Dose.
    #[serde(default)]
    pub dose: Option<serde_json::Value>,
    /// Dose unit.
    #[serde(default)]
    pub dose_unit: Option<String>,
    /// Route.
    #[serde(default)]
    pub route: Option<String>,
    /// Frequency.
    #[serde(default)]
    pub frequency: Option<String>,
    /// Status.
    #[serde(default)]
    pub status: Option<String>,
    /// When ordered.
    #[serde(default)]
    pub ordered_at: Phi,
    /// Ordering provider.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub provider_id: Option<u64>,
    /// Notes.
    #[serde(default)]
    pub notes: Phi,
    /// Fields not modelled.
    #[serde(flatten)]
    pub extra: Extra,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "CANARY-Zebulon";

    #[test]
    fn unknown_fields_are_kept_and_phi_is_redacted_in_debug() {
        let json = format!(
            r#"{{"casefile_id": "12:ab", "first_name": "{CANARY}", "gender": "F", "location_id": "7",
                "insurances": [{{"id": 1, "policy_no": "{CANARY}-P"}}],
                "favourite_colour": "{CANARY}-extra"}}"#
        );
        let p: Patient = serde_json::from_str(&json).unwrap();
        assert_eq!(p.first_name.as_ref().unwrap().expose(), CANARY);
        assert_eq!(p.location_id, Some(7));
        assert_eq!(
            p.extra.expose()["favourite_colour"],
            format!("{CANARY}-extra")
        );
        let shown = format!("{p:?}");
        assert!(
            !shown.contains(CANARY) && !shown.contains("12:ab"),
            "{shown}"
        );
        assert!(shown.contains("\"F\""));
    }

    #[test]
    fn admission_flattens_the_patient_and_vitals_accept_numeric_strings() {
        let a: Admission = serde_json::from_str(
            r#"{"casefile_id": "1:x", "admission_type": "urgent", "referral_source": "Dr X", "program": "detox", "z": 1}"#,
        )
        .unwrap();
        assert_eq!(a.admission_type.as_deref(), Some("urgent"));
        assert_eq!(a.patient.program.as_deref(), Some("detox"));
        assert_eq!(a.patient.extra.expose()["z"], 1);
        let v: VitalSign = serde_json::from_str(
            r#"{"id": "3", "heart_rate": "72", "temperature": 98.6, "weight": ""}"#,
        )
        .unwrap();
        assert_eq!(
            (v.id, v.heart_rate, v.temperature, v.weight),
            (Some(3), Some(72.0), Some(98.6), None)
        );
    }

    #[derive(Debug, Deserialize)]
    struct Nums {
        #[serde(default, deserialize_with = "lenient::opt_u64")]
        u: Option<u64>,
        #[serde(default, deserialize_with = "lenient::opt_f64")]
        f: Option<f64>,
    }

    #[test]
    fn lenient_numbers_accept_numbers_strings_and_null_and_refuse_the_rest() {
        let ok = |json: &str| serde_json::from_str::<Nums>(json).map(|n| (n.u, n.f));
        assert_eq!(ok(r#"{"u": 7, "f": -2}"#).unwrap(), (Some(7), Some(-2.0)));
        assert_eq!(ok(r#"{"u": 7.0, "f": 1.5}"#).unwrap(), (Some(7), Some(1.5)));
        assert_eq!(
            ok(r#"{"u": " 8 ", "f": "2.25"}"#).unwrap(),
            (Some(8), Some(2.25))
        );
        assert_eq!(ok(r#"{"u": null, "f": ""}"#).unwrap(), (None, None));
        assert_eq!(ok(r#"{}"#).unwrap(), (None, None));
        for bad in [
            r#"{"u": -1}"#,
            r#"{"u": 1.5}"#,
            r#"{"u": "x"}"#,
            r#"{"u": true}"#,
            r#"{"f": [1]}"#,
            r#"{"f": {"a": 1}}"#,
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn lenient_u64_reads_any_u64_as_number_or_string(n: u64) {
            let as_number: Nums = serde_json::from_str(&format!(r#"{{"u": {n}}}"#)).unwrap();
            let as_text: Nums = serde_json::from_str(&format!(r#"{{"u": "{n}"}}"#)).unwrap();
            proptest::prop_assert_eq!(as_number.u, Some(n));
            proptest::prop_assert_eq!(as_text.u, Some(n));
        }

        #[test]
        fn lenient_numbers_also_work_inside_flattened_models(n in 0u32..100_000, extra in "[a-z]{1,8}") {
            let json = format!(r#"{{"id": "{n}", "heart_rate": {n}, "zz_{extra}": 1}}"#);
            let v: VitalSign = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(v.id, Some(u64::from(n)));
            proptest::prop_assert_eq!(v.heart_rate, Some(f64::from(n)));
            let key = format!("zz_{extra}");
            proptest::prop_assert!(v.extra.expose().contains_key(&key));
        }
    }
}
