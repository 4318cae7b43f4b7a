//! Hand-built patients for the behaviour tests.
#![allow(dead_code)]

use chrono::NaiveDate;
use clinical::model::*;

pub fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub fn sid(s: &str) -> SourceId {
    SourceId::new(s).unwrap()
}

/// A patient under construction; every item gets the id `<kind>-<n>`.
pub struct P {
    pub r: PatientRecord,
    n: usize,
}

impl P {
    pub fn new(birth: &str, sex: Sex) -> Self {
        let demo = Demographics::new(Some(d(birth)), Some(sex)).unwrap();
        Self {
            r: PatientRecord::new("TEST-001".into(), demo).unwrap(),
            n: 0,
        }
    }

    pub fn unknown_birth(sex: Option<Sex>) -> Self {
        let demo = Demographics::new(None, sex).unwrap();
        Self {
            r: PatientRecord::new("TEST-002".into(), demo).unwrap(),
            n: 0,
        }
    }

    /// Born so that the age on `on` is exactly `age` (birthday on `on`'s month and day minus
    /// one day, i.e. the birthday has just passed).
    pub fn aged(age: i32, on: &str, sex: Sex) -> Self {
        let on = d(on);
        let birth = NaiveDate::from_ymd_opt(chrono::Datelike::year(&on) - age, 1, 1).unwrap();
        let p = Self::new(&birth.to_string(), sex);
        assert_eq!(p.r.demographics.age_on(on).unwrap(), Some(age));
        p
    }

    pub fn id(&mut self, kind: &str) -> SourceId {
        self.n += 1;
        sid(&format!("{kind}-{}", self.n))
    }

    pub fn last_id(&self, kind: &str) -> SourceId {
        sid(&format!("{kind}-{}", self.n))
    }

    pub fn dx(mut self, code: &str, onset: &str) -> Self {
        let id = self.id("dx");
        let c = Code::new(CodeSystem::Icd10Cm, code).unwrap();
        self.r
            .push_diagnosis(
                Diagnosis::new(id, c, d(onset), None, DiagnosisStatus::Active, None).unwrap(),
            )
            .unwrap();
        self
    }

    pub fn dx_described(mut self, code: &str, onset: &str, description: &str) -> Self {
        let id = self.id("dx");
        let c = Code::new(CodeSystem::Icd10Cm, code).unwrap();
        self.r
            .push_diagnosis(
                Diagnosis::new(
                    id,
                    c,
                    d(onset),
                    None,
                    DiagnosisStatus::Active,
                    Some(description.into()),
                )
                .unwrap(),
            )
            .unwrap();
        self
    }

    pub fn resolved_dx(mut self, code: &str, onset: &str, resolved: &str) -> Self {
        let id = self.id("dx");
        let c = Code::new(CodeSystem::Icd10Cm, code).unwrap();
        self.r
            .push_diagnosis(
                Diagnosis::new(
                    id,
                    c,
                    d(onset),
                    Some(d(resolved)),
                    DiagnosisStatus::Resolved,
                    None,
                )
                .unwrap(),
            )
            .unwrap();
        self
    }

    pub fn procedure(mut self, system: CodeSystem, code: &str, date: &str) -> Self {
        let id = self.id("proc");
        self.r
            .push_procedure(Procedure::new(id, Code::new(system, code).unwrap(), d(date)).unwrap())
            .unwrap();
        self
    }

    pub fn cpt(self, code: &str, date: &str) -> Self {
        self.procedure(CodeSystem::Cpt, code, date)
    }

    pub fn lab(mut self, kind: ObservationKind, value: f64, unit: &str, date: &str) -> Self {
        let id = self.id("obs");
        self.r
            .push_observation(Observation::quantity(id, kind, None, value, unit, d(date)).unwrap())
            .unwrap();
        self
    }

    pub fn test(mut self, kind: ObservationKind, date: &str) -> Self {
        let id = self.id("obs");
        self.r
            .push_observation(Observation::performed(id, kind, None, d(date)).unwrap())
            .unwrap();
        self
    }

    pub fn bp(mut self, sys: f64, dia: f64, date: &str) -> Self {
        let id = self.id("bp");
        self.r
            .push_blood_pressure(BloodPressure::new(id, sys, dia, d(date)).unwrap())
            .unwrap();
        self
    }

    pub fn vaccine(mut self, cvx: &str, date: &str) -> Self {
        let id = self.id("imm");
        self.r
            .push_immunization(
                Immunization::new(id, Code::new(CodeSystem::Cvx, cvx).unwrap(), d(date)).unwrap(),
            )
            .unwrap();
        self
    }

    pub fn med(
        mut self,
        name: &str,
        dose: Option<(f64, DoseUnit)>,
        freq: Option<&str>,
        start: &str,
    ) -> Self {
        let id = self.id("med");
        let dose = dose.map(|(a, u)| Dose::new(a, u).unwrap());
        let m = Medication::new(
            id,
            name.into(),
            None,
            dose,
            freq.map(str::to_string),
            d(start),
            None,
            MedicationStatus::Active,
        )
        .unwrap();
        self.r.push_medication(m).unwrap();
        self
    }

    pub fn eval(mut self, inst: Instrument, score: f64, date: &str) -> Self {
        let id = self.id("eval");
        self.r
            .push_evaluation(Evaluation::scored(id, inst, score, d(date)).unwrap())
            .unwrap();
        self
    }

    pub fn tobacco(mut self, user: bool, date: &str) -> Self {
        let id = self.id("eval");
        self.r
            .push_evaluation(Evaluation::tobacco(id, user, d(date)).unwrap())
            .unwrap();
        self
    }

    pub fn referral(mut self, date: &str) -> Self {
        let id = self.id("order");
        self.r
            .push_order(
                Order::new(
                    id,
                    OrderKind::Referral,
                    "Behavioral health referral".into(),
                    None,
                    d(date),
                )
                .unwrap(),
            )
            .unwrap();
        self
    }

    pub fn encounter(
        mut self,
        class: EncounterClass,
        start: &str,
        end: Option<&str>,
        admission: Option<AdmissionType>,
        dx: &[&str],
    ) -> Self {
        let id = self.id("enc");
        let codes = dx
            .iter()
            .map(|c| Code::new(CodeSystem::Icd10Cm, c).unwrap())
            .collect();
        let e = Encounter::new(
            id,
            class,
            d(start),
            end.map(d),
            admission,
            Some(false),
            codes,
            vec![],
        )
        .unwrap();
        self.r.push_encounter(e).unwrap();
        self
    }

    pub fn hospice(self, date: &str) -> Self {
        self.procedure(CodeSystem::Hcpcs, "G9473", date)
    }
}
