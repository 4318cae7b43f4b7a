//! Soft deletion of census patients, for tests of clients that must honour Kipu's vault.
//!
//! Kipu's API has no delete endpoint: a patient deleted in the EHR disappears from the census
//! and from every list, and shows up in `/api/vaults/patients`. Tests reproduce that with
//! [`Simulator::soft_delete_patient`]. While no patient has been deleted this way, nothing here
//! runs and every read is served by the ordinary handlers. Once one has, the reads that list
//! patients or their records are computed from the full list minus the deleted patients
//! (linear in the number of patients per page: meant for test-sized data sets, and query
//! filters other than paging are not applied on that path).

use serde_json::{Map, Value};

use super::{ApiResult, Query, Writes, kind_of, not_found, page_of_vec};
use crate::Simulator;
use crate::data::Kind;
use kipu::endpoints::Endpoint;

fn patient_of(record: &Map<String, Value>) -> Option<&str> {
    record
        .get("patient_id")
        .or_else(|| record.get("casefile_id"))
        .and_then(Value::as_str)
}

impl Simulator {
    /// Soft-deletes the census patient with this casefile id, as a deletion in the EHR would:
    /// it leaves the census, admissions, care teams and every record list, its own endpoints
    /// answer 404, and `/api/vaults/patients` lists it with a `deleted_at`. Returns `false`
    /// when no census patient has that id (already deleted, in the vault, or unknown).
    pub fn soft_delete_patient(&self, casefile_id: &str) -> bool {
        let mut w = self.writes_mut();
        if w.soft_deleted.iter().any(|(c, _)| c == casefile_id)
            || self.patient_by_id(&w, casefile_id).is_none()
        {
            return false;
        }
        let stamp = w.stamp();
        w.soft_deleted.push((casefile_id.to_owned(), stamp));
        true
    }

    /// The response of a read that soft deletions change, or `None` when the ordinary handler
    /// answers (no deletions, or an endpoint they do not affect).
    pub(super) fn read_after_soft_deletes(
        &self,
        w: &Writes,
        e: &Endpoint,
        ids: &[String],
        q: &Query,
    ) -> Option<ApiResult> {
        if w.soft_deleted.is_empty() {
            return None;
        }
        let deleted = |casefile_id: &str| w.soft_deleted.iter().any(|(c, _)| c == casefile_id);
        let alive = |record: &Map<String, Value>| !patient_of(record).is_some_and(deleted);
        let key = e.shape.key();
        let d = &self.data;
        let id0 = ids.first().map_or("", String::as_str);
        let as_map = |v: Value| match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let result = match e.name {
            "get_patients_census" | "get_patients_latest" => {
                let items = (0..self.census_total(w))
                    .map(|i| as_map(self.census_patient(w, i)))
                    .filter(alive)
                    .collect();
                page_of_vec(key, q, items)
            }
            "get_patients_admissions" => {
                let items = (0..self.census_total(w))
                    .map(|i| {
                        if i < d.patients {
                            let mut p = d.admission_record(i);
                            self.apply_patient_writes(w, &mut p);
                            p
                        } else {
                            as_map(self.census_patient(w, i))
                        }
                    })
                    .filter(alive)
                    .collect();
                page_of_vec(key, q, items)
            }
            "get_patients_care_teams" => {
                let items = (0..d.patients)
                    .filter(|i| !deleted(&d.casefile_id(*i)))
                    .map(|i| {
                        let team: Vec<Value> = (0..d.count(Kind::CareTeam, i))
                            .map(|slot| {
                                Value::Object(self.generated_record(w, Kind::CareTeam, i, slot))
                            })
                            .collect();
                        let mut m = Map::new();
                        m.insert("patient_id".into(), d.casefile_id(i).into());
                        m.insert("care_team".into(), Value::Array(team));
                        m
                    })
                    .collect();
                page_of_vec(key, q, items)
            }
            "get_vaults_patients" => {
                let mut items: Vec<Map<String, Value>> = (0..d.deleted())
                    .map(|i| d.vault_record(d.patients + i))
                    .collect();
                for (casefile_id, at) in &w.soft_deleted {
                    let mut p = match d.index_of(casefile_id) {
                        Some(i) => d.patient(i),
                        None => w
                            .created_patients
                            .iter()
                            .find(|p| patient_of(p) == Some(casefile_id.as_str()))
                            .cloned()
                            .unwrap_or_default(),
                    };
                    self.apply_patient_writes(w, &mut p);
                    p.insert("deleted_at".into(), at.clone().into());
                    items.push(p);
                }
                page_of_vec(key, q, items)
            }
            _ if e.is_patient_scoped() || e.name == "get_patient" => {
                if deleted(id0) {
                    Err(not_found("patient"))
                } else {
                    return None;
                }
            }
            name => {
                let kind = match name {
                    "get_scheduler_appointments" => Kind::Appointment,
                    "get_patients_processes" => Kind::Process,
                    "get_insurances_latest" => Kind::Insurance,
                    other => kind_of(other)?,
                };
                let mut items = Vec::new();
                for i in (0..d.patients).filter(|i| !deleted(&d.casefile_id(*i))) {
                    items.extend(
                        (0..d.count(kind, i)).map(|s| self.generated_record(w, kind, i, s)),
                    );
                }
                if let Some(extra) = w.appended.get(&kind) {
                    items.extend(extra.iter().filter(|r| alive(r)).cloned());
                }
                page_of_vec(key, q, items)
            }
        };
        Some(result)
    }
}
