//! Import of FHIR R4 `Bundle`s of the shape CoCo's synthetic generator writes (spec §6.2):
//! `Patient`, `Condition`, `Observation`, `MedicationRequest`, `Immunization`, `Procedure`, and
//! also `Encounter` (which the generator does not write but real bundles carry).
//!
//! # Rules
//!
//! * A bundle may hold several patients; every other resource must reference one of them
//!   (`subject` or `patient` = `Patient/<id>` or the patient entry's `fullUrl`). A reference to a
//!   patient not in the bundle is an error.
//! * Source ids are `fhir:<ResourceType>/<id>`.
//! * Resources with `status` `entered-in-error` (or `not-done` for immunizations and procedures,
//!   `cancelled` for requests) are skipped and counted, as are codes this crate has no concept
//!   for (an Observation with an unknown LOINC code, a resource type it does not model). Skips
//!   are reported by reason in [`FhirImport::skipped`], never silent.
//! * Anything malformed (missing date, impossible date, bad code syntax, absurd value, unknown
//!   unit) is an [`ImportError`] naming the entry index and resource type, never the value.
//! * `MedicationRequest`: the drug name is the coding's display (or `text`); the dose only from
//!   `doseAndRate.doseQuantity` (the generator's strength inside the name is not a dose); the
//!   frequency from `timing.repeat` (`frequency` per `period` `periodUnit`), which wins over the
//!   free-text instruction when they disagree (the generator draws them independently).
//! * Smoking status (LOINC 72166-2) becomes a tobacco screening; PHQ-9 (44261-6), PHQ-2
//!   (55758-7), GAD-7 (70274-6) and AUDIT-C (75626-2) totals become scored evaluations.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::error::{ClinicalError, ImportError};
use crate::model::{
    AdmissionType, BloodPressure, Code, CodeSystem, Demographics, Diagnosis, DiagnosisStatus, Dose,
    DoseUnit, Encounter, EncounterClass, Evaluation, Immunization, Instrument, Medication,
    MedicationStatus, Observation, ObservationKind, PatientRecord, Procedure, Sex, SourceId,
    parse_date,
};

/// The result of an import.
#[derive(Debug)]
pub struct FhirImport {
    /// One record per Patient resource, in bundle order.
    pub patients: Vec<PatientRecord>,
    /// Resources skipped, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
}

fn rtype_name(t: &str) -> &'static str {
    match t {
        "Patient" => "Patient",
        "Condition" => "Condition",
        "Observation" => "Observation",
        "MedicationRequest" => "MedicationRequest",
        "Immunization" => "Immunization",
        "Procedure" => "Procedure",
        "Encounter" => "Encounter",
        _ => "other",
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The codings of a CodeableConcept as (system, code, display).
fn codings(cc: Option<&Value>) -> Vec<(Option<CodeSystem>, &str, Option<&str>)> {
    cc.and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| {
                    let code = s(c, "code")?;
                    Some((
                        s(c, "system").and_then(CodeSystem::from_fhir_uri),
                        code,
                        s(c, "display"),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn first_code(
    cc: Option<&Value>,
    systems: &[CodeSystem],
    field: &'static str,
) -> Result<Option<Code>, ClinicalError> {
    for (sys, code, _) in codings(cc) {
        if let Some(sys) = sys
            && systems.contains(&sys)
        {
            return Code::new(sys, code)
                .map(Some)
                .map_err(|_| ClinicalError::InvalidCode {
                    field,
                    system: sys.name(),
                });
        }
    }
    Ok(None)
}

fn date_of(
    v: &Value,
    keys: &[&str],
    field: &'static str,
) -> Result<chrono::NaiveDate, ClinicalError> {
    for k in keys {
        if let Some(t) = s(v, k) {
            return parse_date(field, t);
        }
        if let Some(p) = v
            .get(*k)
            .and_then(|p| p.get("start"))
            .and_then(Value::as_str)
        {
            return parse_date(field, p);
        }
    }
    Err(ClinicalError::Missing(field))
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(t) => t.trim().parse().ok(),
        _ => None,
    }
}

enum Item {
    Diagnosis(Diagnosis),
    Encounter(Encounter),
    Procedure(Procedure),
    Observation(Observation),
    BloodPressure(BloodPressure),
    Immunization(Immunization),
    Medication(Medication),
    Evaluation(Evaluation),
    Skip(&'static str),
}

/// Imports a bundle (already parsed as JSON).
pub fn import_bundle(bundle: &Value) -> Result<FhirImport, ImportError> {
    let err = |location: String, cause: ClinicalError| ImportError {
        format: "FHIR R4",
        location,
        cause,
    };
    if s(bundle, "resourceType") != Some("Bundle") {
        return Err(err(
            "root".into(),
            ClinicalError::Invalid {
                what: "bundle",
                reason: "resourceType is not Bundle",
            },
        ));
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| err("root".into(), ClinicalError::Missing("entry")))?;

    // Pass 1: patients.
    let mut patients: Vec<PatientRecord> = Vec::new();
    let mut refs: HashMap<String, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(r) = e.get("resource") else { continue };
        if s(r, "resourceType") != Some("Patient") {
            continue;
        }
        let loc = || format!("entry {i} (Patient)");
        let id = s(r, "id").ok_or_else(|| err(loc(), ClinicalError::Missing("Patient.id")))?;
        let birth = s(r, "birthDate")
            .map(|b| parse_date("Patient.birthDate", b))
            .transpose()
            .map_err(|c| err(loc(), c))?;
        let sex = match s(r, "gender") {
            None => None,
            Some(g) => Some(Sex::parse(g).ok_or_else(|| {
                err(
                    loc(),
                    ClinicalError::Invalid {
                        what: "Patient.gender",
                        reason: "not a FHIR administrative gender",
                    },
                )
            })?),
        };
        let demo = Demographics::new(birth, sex).map_err(|c| err(loc(), c))?;
        let idx = patients.len();
        if refs.insert(format!("Patient/{id}"), idx).is_some() {
            return Err(err(loc(), ClinicalError::DuplicateSourceId("patients")));
        }
        if let Some(full) = s(e, "fullUrl") {
            refs.insert(full.to_string(), idx);
        }
        patients.push(PatientRecord::new(id.to_string(), demo).map_err(|c| err(loc(), c))?);
    }

    // Pass 2: everything else.
    let mut skipped: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(r) = e.get("resource") else {
            *skipped.entry("entry without resource").or_default() += 1;
            continue;
        };
        let rt = s(r, "resourceType").unwrap_or("");
        if rt == "Patient" {
            continue;
        }
        let loc = || format!("entry {i} ({})", rtype_name(rt));
        if rtype_name(rt) == "other" {
            *skipped.entry("resource type not modelled").or_default() += 1;
            continue;
        }
        let reference = r
            .get("subject")
            .or_else(|| r.get("patient"))
            .and_then(|p| s(p, "reference"))
            .ok_or_else(|| err(loc(), ClinicalError::Missing("subject.reference")))?;
        let &idx = refs.get(reference).ok_or_else(|| {
            err(
                loc(),
                ClinicalError::Invalid {
                    what: "subject.reference",
                    reason: "no such Patient in the bundle",
                },
            )
        })?;
        let id = s(r, "id").ok_or_else(|| err(loc(), ClinicalError::Missing("id")))?;
        let sid = SourceId::new(format!("fhir:{rt}/{id}")).map_err(|c| err(loc(), c))?;
        let item = resource(rt, r, sid).map_err(|c| err(loc(), c))?;
        let rec = &mut patients[idx];
        let pushed = match item {
            Item::Diagnosis(x) => rec.push_diagnosis(x),
            Item::Encounter(x) => rec.push_encounter(x),
            Item::Procedure(x) => rec.push_procedure(x),
            Item::Observation(x) => rec.push_observation(x),
            Item::BloodPressure(x) => rec.push_blood_pressure(x),
            Item::Immunization(x) => rec.push_immunization(x),
            Item::Medication(x) => rec.push_medication(x),
            Item::Evaluation(x) => rec.push_evaluation(x),
            Item::Skip(reason) => {
                *skipped.entry(reason).or_default() += 1;
                Ok(())
            }
        };
        pushed.map_err(|c| err(loc(), c))?;
    }
    Ok(FhirImport { patients, skipped })
}

fn resource(rt: &str, r: &Value, id: SourceId) -> Result<Item, ClinicalError> {
    let status = s(r, "status").unwrap_or("");
    if status == "entered-in-error" {
        return Ok(Item::Skip("entered in error"));
    }
    match rt {
        "Condition" => {
            let vstatus = codings(r.get("verificationStatus"))
                .first()
                .map(|c| c.1)
                .unwrap_or("confirmed");
            if matches!(vstatus, "refuted" | "entered-in-error") {
                return Ok(Item::Skip("condition refuted"));
            }
            let Some(code) = first_code(r.get("code"), &[CodeSystem::Icd10Cm], "Condition.code")?
            else {
                return Ok(Item::Skip("condition without an ICD-10-CM code"));
            };
            let onset = date_of(
                r,
                &["onsetDateTime", "onsetPeriod", "recordedDate"],
                "Condition.onset",
            )?;
            let resolved = ["abatementDateTime"]
                .iter()
                .find_map(|k| s(r, k))
                .map(|t| parse_date("Condition.abatement", t))
                .transpose()?;
            let clinical = codings(r.get("clinicalStatus"))
                .first()
                .map(|c| c.1)
                .unwrap_or("active");
            let st = match clinical {
                "active" | "recurrence" | "relapse" => DiagnosisStatus::Active,
                _ => DiagnosisStatus::Resolved,
            };
            let desc = codings(r.get("code"))
                .first()
                .and_then(|c| c.2)
                .map(str::to_string);
            Ok(Item::Diagnosis(Diagnosis::new(
                id, code, onset, resolved, st, desc,
            )?))
        }
        "Procedure" => {
            if matches!(status, "not-done" | "stopped" | "preparation") {
                return Ok(Item::Skip("procedure not completed"));
            }
            let Some(code) = first_code(
                r.get("code"),
                &[CodeSystem::Cpt, CodeSystem::Hcpcs, CodeSystem::Snomed],
                "Procedure.code",
            )?
            else {
                return Ok(Item::Skip("procedure without a CPT/HCPCS/SNOMED code"));
            };
            let date = date_of(
                r,
                &["performedDateTime", "performedPeriod"],
                "Procedure.performed",
            )?;
            Ok(Item::Procedure(Procedure::new(id, code, date)?))
        }
        "Immunization" => {
            if status == "not-done" {
                return Ok(Item::Skip("immunization not done"));
            }
            let Some(code) = first_code(
                r.get("vaccineCode"),
                &[CodeSystem::Cvx, CodeSystem::Cpt],
                "Immunization.vaccineCode",
            )?
            else {
                return Ok(Item::Skip("immunization without a CVX code"));
            };
            let date = date_of(r, &["occurrenceDateTime"], "Immunization.occurrence")?;
            Ok(Item::Immunization(Immunization::new(id, code, date)?))
        }
        "MedicationRequest" => {
            if matches!(status, "cancelled" | "draft") {
                return Ok(Item::Skip("medication request cancelled or draft"));
            }
            let cc = r.get("medicationCodeableConcept");
            let code = first_code(cc, &[CodeSystem::RxNorm], "MedicationRequest.medication")?;
            let name = codings(cc)
                .iter()
                .find_map(|c| c.2)
                .or_else(|| cc.and_then(|c| s(c, "text")))
                .ok_or(ClinicalError::Missing(
                    "MedicationRequest.medication display",
                ))?
                .to_string();
            let dosage = r
                .get("dosageInstruction")
                .and_then(Value::as_array)
                .and_then(|a| a.first());
            let dose = match dosage
                .and_then(|d| d.get("doseAndRate"))
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|x| x.get("doseQuantity"))
            {
                Some(q) => {
                    let amount = number(q.get("value"))
                        .ok_or(ClinicalError::Missing("doseQuantity.value"))?;
                    let unit = s(q, "unit")
                        .or_else(|| s(q, "code"))
                        .and_then(DoseUnit::parse)
                        .ok_or(ClinicalError::BadUnit {
                            what: "doseQuantity",
                            expected: "mg, mcg, g, mg/24h, mL, units",
                        })?;
                    Some(Dose::new(amount, unit)?)
                }
                None => None,
            };
            let text = dosage.and_then(|d| s(d, "text")).map(str::to_string);
            let repeat = dosage
                .and_then(|d| d.get("timing"))
                .and_then(|t| t.get("repeat"));
            let structured = repeat.and_then(|rp| {
                let f = number(rp.get("frequency"))?;
                let p = number(rp.get("period")).unwrap_or(1.0);
                let per_day = match s(rp, "periodUnit")? {
                    "h" => 24.0 / p,
                    "d" => 1.0 / p,
                    "wk" => 1.0 / (7.0 * p),
                    "mo" => 1.0 / (30.0 * p),
                    _ => return None,
                };
                (f > 0.0 && p > 0.0).then_some(f * per_day)
            });
            let start = date_of(r, &["authoredOn"], "MedicationRequest.authoredOn")?;
            let st = match status {
                "completed" => MedicationStatus::Completed,
                "stopped" | "on-hold" => MedicationStatus::Stopped,
                _ => MedicationStatus::Active,
            };
            let mut m = Medication::new(id, name, code, dose, text, start, None, st)?;
            if structured.is_some() {
                m.times_per_day = structured;
            }
            Ok(Item::Medication(m))
        }
        "Encounter" => {
            if matches!(status, "cancelled" | "planned") {
                return Ok(Item::Skip("encounter cancelled or planned"));
            }
            let class = match r.get("class").and_then(|c| s(c, "code")) {
                Some("IMP" | "ACUTE" | "NONAC") => EncounterClass::Inpatient,
                Some("EMER") => EncounterClass::Emergency,
                Some("VR") => EncounterClass::Telehealth,
                Some("AMB" | "HH" | "OBSENC" | "PRENC" | "SS") => EncounterClass::Outpatient,
                _ => {
                    return Err(ClinicalError::Invalid {
                        what: "Encounter.class",
                        reason: "unknown v3 ActCode class",
                    });
                }
            };
            let period = r
                .get("period")
                .ok_or(ClinicalError::Missing("Encounter.period"))?;
            let start = parse_date(
                "Encounter.period.start",
                s(period, "start").ok_or(ClinicalError::Missing("Encounter.period.start"))?,
            )?;
            let end = s(period, "end")
                .map(|t| parse_date("Encounter.period.end", t))
                .transpose()?;
            let admission_type = codings(r.get("priority")).first().and_then(|c| match c.1 {
                "EM" | "emergency" => Some(AdmissionType::Emergent),
                "UR" | "urgent" => Some(AdmissionType::Urgent),
                "EL" | "elective" | "R" => Some(AdmissionType::Elective),
                _ => None,
            });
            let service = r.get("serviceType");
            let oncology = service.map(|st| {
                let t = st.to_string().to_ascii_lowercase();
                t.contains("oncolog")
            });
            let mut dx = Vec::new();
            for rc in r
                .get("reasonCode")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(c) =
                    first_code(Some(rc), &[CodeSystem::Icd10Cm], "Encounter.reasonCode")?
                {
                    dx.push(c);
                }
            }
            let mut types = Vec::new();
            for t in r
                .get("type")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(c) = first_code(
                    Some(t),
                    &[CodeSystem::Cpt, CodeSystem::Hcpcs, CodeSystem::Snomed],
                    "Encounter.type",
                )? {
                    types.push(c);
                }
            }
            Ok(Item::Encounter(Encounter::new(
                id,
                class,
                start,
                end,
                admission_type,
                oncology,
                dx,
                types,
            )?))
        }
        "Observation" => observation(r, id, status),
        _ => Ok(Item::Skip("resource type not modelled")),
    }
}

fn observation(r: &Value, id: SourceId, status: &str) -> Result<Item, ClinicalError> {
    if matches!(status, "cancelled" | "registered" | "preliminary") {
        return Ok(Item::Skip("observation not final"));
    }
    let Some(loinc) = first_code(r.get("code"), &[CodeSystem::Loinc], "Observation.code")? else {
        return Ok(Item::Skip("observation without a LOINC code"));
    };
    let date = date_of(
        r,
        &["effectiveDateTime", "effectivePeriod", "issued"],
        "Observation.effective",
    )?;
    let qty = r.get("valueQuantity");
    let value = number(qty.and_then(|q| q.get("value"))).or_else(|| number(r.get("valueInteger")));
    let unit = qty
        .and_then(|q| s(q, "unit").or_else(|| s(q, "code")))
        .unwrap_or("");
    let instrument = match loinc.code.as_str() {
        "44261-6" => Some(Instrument::Phq9),
        "55758-7" => Some(Instrument::Phq2),
        "70274-6" => Some(Instrument::Gad7),
        "75626-2" => Some(Instrument::AuditC),
        _ => None,
    };
    if let Some(inst) = instrument {
        let v = value.ok_or(ClinicalError::Missing("Observation.value"))?;
        return Ok(Item::Evaluation(Evaluation::scored(id, inst, v, date)?));
    }
    match loinc.code.as_str() {
        "85354-9" | "55284-4" => {
            let comps = r
                .get("component")
                .and_then(Value::as_array)
                .ok_or(ClinicalError::Missing("Observation.component"))?;
            let find = |code: &str| {
                comps.iter().find_map(|c| {
                    codings(c.get("code"))
                        .iter()
                        .any(|x| x.1 == code)
                        .then(|| number(c.get("valueQuantity").and_then(|q| q.get("value"))))
                        .flatten()
                })
            };
            let sys = find("8480-6").ok_or(ClinicalError::Missing("systolic component"))?;
            let dia = find("8462-4").ok_or(ClinicalError::Missing("diastolic component"))?;
            Ok(Item::BloodPressure(BloodPressure::new(id, sys, dia, date)?))
        }
        "72166-2" => {
            let answers = codings(r.get("valueCodeableConcept"));
            let Some(ans) = answers.first() else {
                return Err(ClinicalError::Missing("Observation.valueCodeableConcept"));
            };
            let user = match ans.1 {
                "449868002" | "428041000124106" | "77176002" | "428071000124103"
                | "428061000124105" => true,
                "266919005" | "8517006" => false,
                _ => return Ok(Item::Skip("smoking status unknown")),
            };
            Ok(Item::Evaluation(Evaluation::tobacco(id, user, date)?))
        }
        code => {
            let Some(kind) = ObservationKind::from_loinc(code) else {
                return Ok(Item::Skip("LOINC code not modelled"));
            };
            if kind.canonical_unit().is_none() {
                return Ok(Item::Observation(Observation::performed(
                    id,
                    kind,
                    Some(loinc),
                    date,
                )?));
            }
            let v = value.ok_or(ClinicalError::Missing("Observation.valueQuantity.value"))?;
            Ok(Item::Observation(Observation::quantity(
                id,
                kind,
                Some(loinc),
                v,
                unit,
                date,
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle() -> Value {
        json!({
            "resourceType": "Bundle", "type": "collection", "timestamp": "2026-01-01T00:00:00Z",
            "entry": [
                {"fullUrl": "urn:uuid:P1A2B3C4D", "resource": {"resourceType": "Patient", "id": "P1A2B3C4D",
                    "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.3.25", "value": "CANARY-SSN"}],
                    "active": true, "name": [{"use": "official", "family": "Qxcanary", "given": ["Ann"]}],
                    "gender": "female", "birthDate": "1962-04-12",
                    "address": [{"use": "home", "city": "Chicago", "state": "IL", "postalCode": "60601", "country": "US"}]}},
                {"resource": {"resourceType": "Condition", "id": "c1",
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                    "verificationStatus": {"coding": [{"code": "confirmed"}]},
                    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9", "display": "Type 2 diabetes mellitus"}]},
                    "subject": {"reference": "Patient/P1A2B3C4D"}, "onsetDateTime": "2019-03-15"}},
                {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}]},
                    "subject": {"reference": "Patient/P1A2B3C4D"}, "effectiveDateTime": "2024-02-01T00:00:00Z",
                    "valueQuantity": {"value": 9.4, "unit": "%", "system": "http://unitsofmeasure.org"}}},
                {"resource": {"resourceType": "Observation", "id": "o2", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}]},
                    "subject": {"reference": "Patient/P1A2B3C4D"}, "effectiveDateTime": "2024-02-01T00:00:00Z",
                    "valueQuantity": {"value": 185.0, "unit": "mg/dL"}}},
                {"resource": {"resourceType": "Observation", "id": "o3", "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]},
                    "subject": {"reference": "Patient/P1A2B3C4D"}, "effectiveDateTime": "2024-02-01T00:00:00Z",
                    "valueQuantity": {"value": 1.0, "unit": "x"}}},
                {"resource": {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
                    "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975", "display": "Metformin 1000 MG"}]},
                    "subject": {"reference": "Patient/P1A2B3C4D"}, "authoredOn": "2024-01-10",
                    "dosageInstruction": [{"text": "Take once daily", "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}}]}},
                {"resource": {"resourceType": "Immunization", "id": "i1", "status": "completed",
                    "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "141", "display": "Influenza"}]},
                    "patient": {"reference": "Patient/P1A2B3C4D"}, "occurrenceDateTime": "2023-10-01T00:00:00Z", "primarySource": true}},
                {"resource": {"resourceType": "Procedure", "id": "p1", "status": "completed",
                    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "77067"}]},
                    "subject": {"reference": "Patient/P1A2B3C4D"}, "performedDateTime": "2023-08-20T00:00:00Z"}}
            ]
        })
    }

    #[test]
    fn a_generator_shaped_bundle_imports_every_modelled_resource() {
        let imp = import_bundle(&bundle()).unwrap();
        assert_eq!(imp.patients.len(), 1);
        let p = &imp.patients[0];
        assert_eq!(p.patient_id.expose(), "P1A2B3C4D");
        assert_eq!(p.demographics.sex, Some(Sex::Female));
        assert_eq!(p.diagnoses.len(), 1);
        assert_eq!(p.diagnoses[0].code.code, "E11.9");
        assert_eq!(p.observations.len(), 2);
        assert_eq!(p.observations[0].value, Some(9.4));
        assert_eq!(
            p.medications[0].times_per_day,
            Some(2.0),
            "structured timing wins over the text"
        );
        assert_eq!(p.immunizations[0].vaccine.code, "141");
        assert_eq!(p.procedures[0].code.code, "77067");
        assert_eq!(imp.skipped.get("LOINC code not modelled"), Some(&1));
        assert!(
            p.find(&SourceId::new("fhir:Observation/o1").unwrap())
                .is_some()
        );
    }

    #[test]
    fn a_reference_to_an_unknown_patient_is_an_error_naming_the_entry() {
        let mut b = bundle();
        b["entry"][1]["resource"]["subject"]["reference"] = json!("Patient/nobody");
        let e = import_bundle(&b).unwrap_err();
        assert_eq!(e.location, "entry 1 (Condition)");
        assert!(!e.to_string().contains("nobody"));
    }

    #[test]
    fn absurd_values_and_impossible_dates_are_errors_without_the_value() {
        let mut b = bundle();
        b["entry"][2]["resource"]["valueQuantity"]["value"] = json!(-4.0);
        let e = import_bundle(&b).unwrap_err();
        assert!(matches!(e.cause, ClinicalError::ValueOutOfRange { .. }));
        assert!(!e.to_string().contains("-4"));
        let mut b = bundle();
        b["entry"][0]["resource"]["birthDate"] = json!("1962-02-30");
        assert!(matches!(
            import_bundle(&b).unwrap_err().cause,
            ClinicalError::UnparsableDate { .. }
        ));
        let mut b = bundle();
        b["entry"][2]["resource"]["valueQuantity"]["unit"] = json!("furlongs");
        assert!(matches!(
            import_bundle(&b).unwrap_err().cause,
            ClinicalError::BadUnit { .. }
        ));
    }

    #[test]
    fn patient_identifiers_never_reach_debug_output() {
        let imp = import_bundle(&bundle()).unwrap();
        let out = format!("{imp:?}");
        assert!(!out.contains("P1A2B3C4D"));
        assert!(!out.contains("1962"));
        assert!(!out.contains("Qxcanary"));
    }
}
