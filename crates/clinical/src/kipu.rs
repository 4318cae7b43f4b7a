//! Mapping of Kipu record JSON (the shapes in `docs/kipu-shapes.md`, which the `kipu` client
//! models and `kipu-sim` serves) into a [`PatientRecord`].
//!
//! # Mapping
//!
//! | Kipu | model |
//! |---|---|
//! | patient `casefile_id`, `dob`, `gender` | patient id, birth date, sex |
//! | patient/admission `admission_date`, `discharge_date`, `admission_type`, `level_of_care` | one stay (`kipu:admission/current`): ASAM 3.7-WM / 4.x → inpatient, other ASAM 3.x → residential, else outpatient; admission type `elective`/`urgent`/`emergency`; **oncology service = no** (Kipu facilities are behavioral-health programs); the stay's diagnoses are the `diagnosis_history` records dated within it, primary first |
//! | `diagnosis_history` | diagnoses (`status` active/resolved; Kipu gives no resolution date) |
//! | `vital_signs` | blood pressure, heart rate, respiratory rate, oxygen saturation. Temperature, weight and height are **not imported**: the Kipu contract does not state their units, and guessing one could change a value by a factor |
//! | `patient_evaluations` (completed) | scored evaluations for PHQ-9, PHQ-2, GAD-7, AUDIT-C, CIWA-Ar, COWS; other templates skipped |
//! | `ciwa_ars`, `cows` | CIWA-Ar, COWS evaluations |
//! | `glucose_logs` | glucose (value + unit) |
//! | `patient_orders` | `medication` → medications (dose, unit, frequency); `lab`/`procedure`/`referral` → orders |
//! | `appointments` with status `Completed` | outpatient encounters (telehealth when the type says so), without diagnoses |
//!
//! Source ids are `kipu:<collection>/<id>` (`kipu:vital_signs/4711`); derived vital sign items
//! add `#hr`, `#rr`, `#spo2`. Malformed records are [`ImportError`]s naming the collection and
//! index; records of kinds this crate does not model are counted in [`KipuImport::skipped`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{ClinicalError, ImportError};
use crate::model::{
    AdmissionType, BloodPressure, Code, CodeSystem, Demographics, Diagnosis, DiagnosisStatus, Dose,
    Encounter, EncounterClass, Evaluation, Instrument, Medication, MedicationStatus, Observation,
    ObservationKind, Order, OrderKind, PatientRecord, Sex, SourceId, parse_date,
};

/// The Kipu records of one patient, as JSON values of the documented shapes.
#[derive(Debug, Default, Clone, Copy)]
pub struct KipuRecords<'a> {
    /// The patient (or admission view of the patient, which adds `admission_type`).
    pub patient: Option<&'a Value>,
    /// `diagnosis_history` entries.
    pub diagnoses: &'a [Value],
    /// `vital_signs` entries.
    pub vital_signs: &'a [Value],
    /// `patient_evaluations` entries.
    pub evaluations: &'a [Value],
    /// `ciwa_ars` entries.
    pub ciwa_ars: &'a [Value],
    /// `cows` entries.
    pub cows: &'a [Value],
    /// `glucose_logs` entries.
    pub glucose_logs: &'a [Value],
    /// `patient_orders` entries.
    pub orders: &'a [Value],
    /// `appointments` entries.
    pub appointments: &'a [Value],
}

/// The result of a mapping.
#[derive(Debug)]
pub struct KipuImport {
    /// The record.
    pub record: PatientRecord,
    /// Items not imported, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
}

fn num(v: &Value, key: &str) -> Option<f64> {
    match v.get(key)? {
        Value::Number(n) => n.as_f64(),
        Value::String(t) => t.trim().parse().ok(),
        _ => None,
    }
}

fn rid(collection: &'static str, v: &Value, suffix: &str) -> Result<SourceId, ClinicalError> {
    let id = match v.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(t)) => t.clone(),
        _ => return Err(ClinicalError::Missing("id")),
    };
    SourceId::new(format!("kipu:{collection}/{id}{suffix}"))
}

fn stay_class(level: Option<&str>) -> EncounterClass {
    let l = level.unwrap_or("").to_ascii_uppercase();
    if l.contains("3.7") || l.contains("ASAM 4") {
        EncounterClass::Inpatient
    } else if l.contains("ASAM 3") {
        EncounterClass::Residential
    } else {
        EncounterClass::Outpatient
    }
}

/// Maps one patient's Kipu records.
pub fn import(records: &KipuRecords<'_>) -> Result<KipuImport, ImportError> {
    let err = |location: String, cause: ClinicalError| ImportError {
        format: "Kipu",
        location,
        cause,
    };
    let p = records
        .patient
        .ok_or_else(|| err("patient".into(), ClinicalError::Missing("patient")))?;
    let ploc = || "patient".to_string();
    let casefile =
        s(p, "casefile_id").ok_or_else(|| err(ploc(), ClinicalError::Missing("casefile_id")))?;
    let dob = s(p, "dob")
        .map(|d| parse_date("dob", d))
        .transpose()
        .map_err(|c| err(ploc(), c))?;
    let sex = s(p, "gender").and_then(Sex::parse);
    let demo = Demographics::new(dob, sex).map_err(|c| err(ploc(), c))?;
    let mut rec = PatientRecord::new(casefile.to_string(), demo).map_err(|c| err(ploc(), c))?;
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();

    // Diagnoses.
    let mut dx: Vec<(chrono::NaiveDate, bool, Code)> = Vec::new();
    for (i, d) in records.diagnoses.iter().enumerate() {
        let loc = || format!("diagnosis_history[{i}]");
        let id = rid("diagnosis_history", d, "").map_err(|c| err(loc(), c))?;
        let code = Code::new(
            CodeSystem::Icd10Cm,
            s(d, "code").ok_or_else(|| err(loc(), ClinicalError::Missing("code")))?,
        )
        .map_err(|c| err(loc(), c))?;
        let date = parse_date(
            "diagnosis_date",
            s(d, "diagnosis_date")
                .ok_or_else(|| err(loc(), ClinicalError::Missing("diagnosis_date")))?,
        )
        .map_err(|c| err(loc(), c))?;
        let status = match s(d, "status") {
            Some("resolved") | Some("inactive") => DiagnosisStatus::Resolved,
            _ => DiagnosisStatus::Active,
        };
        dx.push((
            date,
            d.get("is_primary")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            code.clone(),
        ));
        let item = Diagnosis::new(
            id,
            code,
            date,
            None,
            status,
            s(d, "description").map(str::to_string),
        )
        .map_err(|c| err(loc(), c))?;
        rec.push_diagnosis(item).map_err(|c| err(loc(), c))?;
    }

    // The stay.
    if let Some(adm) = s(p, "admission_date") {
        let start = parse_date("admission_date", adm).map_err(|c| err(ploc(), c))?;
        let end = s(p, "discharge_date")
            .map(|d| parse_date("discharge_date", d))
            .transpose()
            .map_err(|c| err(ploc(), c))?;
        let admission_type = match s(p, "admission_type") {
            None => None,
            Some(t) => Some(AdmissionType::parse(t).ok_or_else(|| {
                err(
                    ploc(),
                    ClinicalError::Invalid {
                        what: "admission_type",
                        reason: "not elective, urgent or emergency",
                    },
                )
            })?),
        };
        let mut within: Vec<&(chrono::NaiveDate, bool, Code)> = dx
            .iter()
            .filter(|(d, _, _)| *d >= start && end.is_none_or(|e| *d <= e))
            .collect();
        within.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let codes: Vec<Code> = within.into_iter().map(|x| x.2.clone()).collect();
        let enc = Encounter::new(
            SourceId::new("kipu:admission/current").map_err(|c| err(ploc(), c))?,
            stay_class(s(p, "level_of_care")),
            start,
            end,
            admission_type,
            Some(false),
            codes,
            vec![],
        )
        .map_err(|c| err(ploc(), c))?;
        rec.push_encounter(enc).map_err(|c| err(ploc(), c))?;
    }

    // Vital signs.
    for (i, v) in records.vital_signs.iter().enumerate() {
        let loc = || format!("vital_signs[{i}]");
        let date = parse_date(
            "recorded_at",
            s(v, "recorded_at")
                .or_else(|| s(v, "created_at"))
                .ok_or_else(|| err(loc(), ClinicalError::Missing("recorded_at")))?,
        )
        .map_err(|c| err(loc(), c))?;
        match (
            num(v, "systolic_blood_pressure"),
            num(v, "diastolic_blood_pressure"),
        ) {
            (Some(sys), Some(dia)) => {
                let bp = BloodPressure::new(
                    rid("vital_signs", v, "").map_err(|c| err(loc(), c))?,
                    sys,
                    dia,
                    date,
                )
                .map_err(|c| err(loc(), c))?;
                rec.push_blood_pressure(bp).map_err(|c| err(loc(), c))?;
            }
            (None, None) => {}
            _ => {
                return Err(err(
                    loc(),
                    ClinicalError::Invalid {
                        what: "blood pressure",
                        reason: "systolic and diastolic must come together",
                    },
                ));
            }
        }
        for (key, kind, suffix, unit) in [
            ("heart_rate", ObservationKind::HeartRate, "#hr", "/min"),
            (
                "respiratory_rate",
                ObservationKind::RespiratoryRate,
                "#rr",
                "/min",
            ),
            (
                "oxygen_saturation",
                ObservationKind::OxygenSaturation,
                "#spo2",
                "%",
            ),
        ] {
            if let Some(x) = num(v, key) {
                let o = Observation::quantity(
                    rid("vital_signs", v, suffix).map_err(|c| err(loc(), c))?,
                    kind,
                    None,
                    x,
                    unit,
                    date,
                )
                .map_err(|c| err(loc(), c))?;
                rec.push_observation(o).map_err(|c| err(loc(), c))?;
            }
        }
        for key in ["temperature", "weight", "height"] {
            if v.get(key).is_some_and(|x| !x.is_null()) {
                *skipped
                    .entry("vital sign without a stated unit (temperature, weight, height)")
                    .or_default() += 1;
            }
        }
    }

    // Evaluations.
    for (i, e) in records.evaluations.iter().enumerate() {
        let loc = || format!("patient_evaluations[{i}]");
        if s(e, "status") != Some("completed") {
            *skipped.entry("evaluation not completed").or_default() += 1;
            continue;
        }
        let Some(inst) = s(e, "name").and_then(Instrument::parse) else {
            *skipped
                .entry("evaluation template not modelled")
                .or_default() += 1;
            continue;
        };
        let Some(score) = num(e, "score") else {
            *skipped.entry("evaluation without a score").or_default() += 1;
            continue;
        };
        let date = parse_date(
            "completed_at",
            s(e, "completed_at")
                .or_else(|| s(e, "updated_at"))
                .ok_or_else(|| err(loc(), ClinicalError::Missing("completed_at")))?,
        )
        .map_err(|c| err(loc(), c))?;
        let ev = Evaluation::scored(
            rid("patient_evaluations", e, "").map_err(|c| err(loc(), c))?,
            inst,
            score,
            date,
        )
        .map_err(|c| err(loc(), c))?;
        rec.push_evaluation(ev).map_err(|c| err(loc(), c))?;
    }
    for (collection, list, inst) in [
        ("ciwa_ars", records.ciwa_ars, Instrument::CiwaAr),
        ("cows", records.cows, Instrument::Cows),
    ] {
        for (i, e) in list.iter().enumerate() {
            let loc = || format!("{collection}[{i}]");
            let score =
                num(e, "score").ok_or_else(|| err(loc(), ClinicalError::Missing("score")))?;
            let date = parse_date(
                "recorded_at",
                s(e, "recorded_at")
                    .ok_or_else(|| err(loc(), ClinicalError::Missing("recorded_at")))?,
            )
            .map_err(|c| err(loc(), c))?;
            let ev = Evaluation::scored(
                rid(collection, e, "").map_err(|c| err(loc(), c))?,
                inst,
                score,
                date,
            )
            .map_err(|c| err(loc(), c))?;
            rec.push_evaluation(ev).map_err(|c| err(loc(), c))?;
        }
    }

    // Glucose.
    for (i, g) in records.glucose_logs.iter().enumerate() {
        let loc = || format!("glucose_logs[{i}]");
        let value = num(g, "value").ok_or_else(|| err(loc(), ClinicalError::Missing("value")))?;
        let unit = s(g, "unit").ok_or_else(|| err(loc(), ClinicalError::Missing("unit")))?;
        let date = parse_date(
            "recorded_at",
            s(g, "recorded_at").ok_or_else(|| err(loc(), ClinicalError::Missing("recorded_at")))?,
        )
        .map_err(|c| err(loc(), c))?;
        let o = Observation::quantity(
            rid("glucose_logs", g, "").map_err(|c| err(loc(), c))?,
            ObservationKind::Glucose,
            None,
            value,
            unit,
            date,
        )
        .map_err(|c| err(loc(), c))?;
        rec.push_observation(o).map_err(|c| err(loc(), c))?;
    }

    // Orders.
    for (i, o) in records.orders.iter().enumerate() {
        let loc = || format!("patient_orders[{i}]");
        let id = rid("patient_orders", o, "").map_err(|c| err(loc(), c))?;
        let date = parse_date(
            "ordered_at",
            s(o, "ordered_at").ok_or_else(|| err(loc(), ClinicalError::Missing("ordered_at")))?,
        )
        .map_err(|c| err(loc(), c))?;
        let name = s(o, "medication")
            .or_else(|| s(o, "name"))
            .ok_or_else(|| err(loc(), ClinicalError::Missing("name")))?
            .to_string();
        match s(o, "order_type") {
            Some("medication") => {
                let dose = match (o.get("dose"), s(o, "dose_unit")) {
                    (Some(Value::Null) | None, _) => None,
                    (Some(d), Some(u)) => {
                        let amount = match d {
                            Value::String(t) => t.clone(),
                            other => other.to_string(),
                        };
                        Some(Dose::parse(&amount, u).map_err(|c| err(loc(), c))?)
                    }
                    (Some(_), None) => return Err(err(loc(), ClinicalError::Missing("dose_unit"))),
                };
                let status = match s(o, "status") {
                    Some("completed") => MedicationStatus::Completed,
                    Some("discontinued") | Some("cancelled") => MedicationStatus::Stopped,
                    _ => MedicationStatus::Active,
                };
                let m = Medication::new(
                    id,
                    name,
                    None,
                    dose,
                    s(o, "frequency").map(str::to_string),
                    date,
                    None,
                    status,
                )
                .map_err(|c| err(loc(), c))?;
                rec.push_medication(m).map_err(|c| err(loc(), c))?;
            }
            Some(kind) => {
                let kind = match kind {
                    "lab" => OrderKind::Lab,
                    "procedure" => OrderKind::Procedure,
                    "referral" => OrderKind::Referral,
                    _ => {
                        return Err(err(
                            loc(),
                            ClinicalError::Invalid {
                                what: "order_type",
                                reason: "not medication, lab, procedure or referral",
                            },
                        ));
                    }
                };
                let ord = Order::new(id, kind, name, None, date).map_err(|c| err(loc(), c))?;
                rec.push_order(ord).map_err(|c| err(loc(), c))?;
            }
            None => return Err(err(loc(), ClinicalError::Missing("order_type"))),
        }
    }

    // Appointments.
    for (i, a) in records.appointments.iter().enumerate() {
        let loc = || format!("appointments[{i}]");
        if s(a, "status").map(str::to_ascii_lowercase).as_deref() != Some("completed") {
            *skipped.entry("appointment not completed").or_default() += 1;
            continue;
        }
        let date = parse_date(
            "start_time",
            s(a, "start_time").ok_or_else(|| err(loc(), ClinicalError::Missing("start_time")))?,
        )
        .map_err(|c| err(loc(), c))?;
        let tele =
            s(a, "appointment_type").is_some_and(|t| t.to_ascii_lowercase().contains("tele"));
        let class = if tele {
            EncounterClass::Telehealth
        } else {
            EncounterClass::Outpatient
        };
        let enc = Encounter::new(
            rid("appointments", a, "").map_err(|c| err(loc(), c))?,
            class,
            date,
            Some(date),
            None,
            None,
            vec![],
            vec![],
        )
        .map_err(|c| err(loc(), c))?;
        rec.push_encounter(enc).map_err(|c| err(loc(), c))?;
    }

    Ok(KipuImport {
        record: rec,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn simulator_shaped_records_map_into_the_model() {
        let patient = json!({"casefile_id": "1042:9b2f6a1e-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "dob": "1980-02-03",
            "gender": "Female", "first_name": "Ann", "last_name": "Roe-Qxcanary",
            "admission_date": "2024-03-01", "discharge_date": "2024-03-09", "admission_type": "emergency",
            "level_of_care": "ASAM 3.7-WM"});
        let dx = [
            json!({"id": 129, "code": "F10.239", "description": "Alcohol dependence with withdrawal", "diagnosis_date": "2024-03-01", "status": "active", "is_primary": true}),
            json!({"id": 130, "code": "I10", "diagnosis_date": "2020-01-01", "status": "active", "is_primary": false}),
        ];
        let vitals = [
            json!({"id": 200, "systolic_blood_pressure": 142, "diastolic_blood_pressure": 91, "heart_rate": 88,
            "temperature": 98.6, "oxygen_saturation": 97, "recorded_at": "2024-03-02T08:05:00-05:00"}),
        ];
        let evals = [
            json!({"id": 300, "name": "PHQ-9", "status": "completed", "score": 14, "completed_at": "2024-03-03T10:00:00-05:00"}),
            json!({"id": 301, "name": "Biopsychosocial Assessment", "status": "completed", "score": null, "completed_at": "2024-03-03T10:00:00-05:00"}),
        ];
        let orders = [
            json!({"id": 400, "order_type": "medication", "name": "Buprenorphine/naloxone", "medication": "Buprenorphine/naloxone",
            "dose": "8/2", "dose_unit": "mg", "frequency": "daily", "status": "active", "ordered_at": "2024-03-02T09:00:00-05:00"}),
        ];
        let k = KipuRecords {
            patient: Some(&patient),
            diagnoses: &dx,
            vital_signs: &vitals,
            evaluations: &evals,
            orders: &orders,
            ..Default::default()
        };
        let imp = import(&k).unwrap();
        let r = &imp.record;
        assert_eq!(r.encounters.len(), 1);
        let stay = &r.encounters[0];
        assert_eq!(stay.class, EncounterClass::Inpatient);
        assert_eq!(stay.admission_type, Some(AdmissionType::Emergent));
        assert_eq!(stay.length_of_stay(), Some(8));
        assert_eq!(stay.principal_diagnosis().unwrap().code, "F10.239");
        assert_eq!(
            stay.diagnoses.len(),
            1,
            "the 2020 diagnosis is not the stay's"
        );
        assert_eq!(r.blood_pressures[0].systolic, 142);
        assert_eq!(r.observations.len(), 2);
        assert_eq!(r.evaluations.len(), 1);
        assert_eq!(r.medications[0].dose.unwrap().amount, 8.0);
        assert_eq!(r.medications[0].times_per_day, Some(1.0));
        assert_eq!(imp.skipped.values().sum::<usize>(), 2);
        let out = format!("{imp:?}");
        assert!(!out.contains("Qxcanary") && !out.contains("1042:"));
    }

    #[test]
    fn malformed_kipu_records_name_the_collection_and_index() {
        let patient = json!({"casefile_id": "1:x", "dob": "1980-02-03"});
        let vitals = [
            json!({"id": 1, "systolic_blood_pressure": -5, "diastolic_blood_pressure": 80, "recorded_at": "2024-01-01"}),
        ];
        let e = import(&KipuRecords {
            patient: Some(&patient),
            vital_signs: &vitals,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.location, "vital_signs[0]");
        assert!(!e.to_string().contains("-5"));
        let evals = [
            json!({"id": 2, "name": "PHQ-9", "status": "completed", "score": 40, "completed_at": "2024-01-01"}),
        ];
        let e = import(&KipuRecords {
            patient: Some(&patient),
            evaluations: &evals,
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e.cause, ClinicalError::ValueOutOfRange { .. }));
    }
}
