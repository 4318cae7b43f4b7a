//! `GET /api/v1/census`: the patients currently admitted that the caller may see, each as a
//! short census row (the minimum necessary for a census: who, where, since when, which
//! program), not the whole demographic record.
//!
//! Protected like the patient list ([`super::authz::RouteClass::PatientList`]): an identity,
//! a purpose of use and a reason, and the `list_patients` action; then each row is decided by
//! the policy exactly as a read of that patient would be, so the census holds only in-scope
//! patients, and each row returned writes a `phi_access` event (resource kind `census`).
//!
//! "Currently admitted": the EHR record has no `discharge_date`, or one after today (UTC).
//! The rows are the census patients `phigate sync` stored (Kipu's `/api/patients/census`).

use std::sync::Arc;

use audit::Outcome;
use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use serde::Serialize;

use super::authz::AccessPurpose;
use super::patients::PATIENT_KIND;
use super::problem::{Problem, internal};
use super::reqctx::{Principal, RequestAudit};
use super::state::AppState;

/// One census row.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CensusRow {
    /// Casefile id.
    pub casefile_id: String,
    /// First name.
    pub first_name: Option<String>,
    /// Last name.
    pub last_name: Option<String>,
    /// Admission date (`YYYY-MM-DD`).
    pub admission_date: Option<String>,
    /// Planned or actual discharge date, if any.
    pub discharge_date: Option<String>,
    /// Program.
    pub program: Option<String>,
    /// Level of care.
    pub level_of_care: Option<String>,
    /// Location.
    pub location_name: Option<String>,
}

/// The census row of an EHR patient record, if the patient is admitted on `today`
/// (`YYYY-MM-DD`).
pub fn census_row(id: &str, record: &serde_json::Value, today: &str) -> Option<CensusRow> {
    let text = |k: &str| {
        record.get(k).and_then(|v| match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let discharge = text("discharge_date");
    let discharged = discharge
        .as_deref()
        .is_some_and(|d| d.get(..10).unwrap_or(d) <= today);
    if discharged {
        return None;
    }
    Some(CensusRow {
        casefile_id: id.to_string(),
        first_name: text("first_name"),
        last_name: text("last_name"),
        admission_date: text("admission_date"),
        discharge_date: discharge,
        program: text("program"),
        level_of_care: text("level_of_care"),
        location_name: text("location_name"),
    })
}

/// `GET /api/v1/census`.
#[utoipa::path(get, path = "/api/v1/census", tag = "patients",
    params(("X-Purpose-Of-Use" = String, Header, description = "HL7 PurposeOfUse code, e.g. TREAT"),
           ("X-Access-Reason" = String, Header, description = "Why the data is needed (1-500 characters)")),
    responses((status = 200, description = "The in-scope patients currently admitted", body = [CensusRow]),
              (status = 400, description = "Purpose of use or reason missing", body = Problem),
              (status = 401, description = "Not authenticated", body = Problem),
              (status = 403, description = "The principal may not list patients", body = Problem)))]
pub async fn census(
    State(st): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Extension(purpose): Extension<AccessPurpose>,
    Extension(slot): Extension<Arc<RequestAudit>>,
) -> Response {
    let records = match st.store.list_kind(PATIENT_KIND).await {
        Ok(r) => r,
        Err(e) => return internal("reading the store", &e),
    };
    let today = chrono::Utc::now().date_naive().to_string();
    let mut rows = Vec::new();
    for record in records {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(record.value.expose()) else {
            continue;
        };
        let Some(row) = census_row(record.id.expose(), &value, &today) else {
            continue;
        };
        match super::authz::may_read_patient(
            &st,
            &principal,
            &purpose,
            &record.id,
            &slot.request_id,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(response) => return response,
        }
        super::patients::record_access(
            &st,
            &slot,
            &principal,
            &purpose,
            &record.id,
            "census",
            Outcome::Success,
        );
        rows.push(row);
    }
    axum::Json(rows).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_census_holds_admitted_patients_with_only_the_census_fields() {
        let admitted = serde_json::json!({
            "first_name": "Ada", "last_name": "Lovelace", "ssn": "123-45-6789",
            "admission_date": "2026-11-01", "discharge_date": null,
            "program": "Detox", "level_of_care": "3.7", "location_name": "North"
        });
        let row = census_row("CF-1", &admitted, "2026-12-06").unwrap();
        assert_eq!(row.casefile_id, "CF-1");
        assert_eq!(row.level_of_care.as_deref(), Some("3.7"));
        assert!(!serde_json::to_string(&row).unwrap().contains("123-45-6789"));
        let leaving = serde_json::json!({"discharge_date": "2026-12-07"});
        assert!(census_row("CF-2", &leaving, "2026-12-06").is_some());
        let gone = serde_json::json!({"discharge_date": "2026-12-06"});
        assert!(census_row("CF-3", &gone, "2026-12-06").is_none());
    }
}
