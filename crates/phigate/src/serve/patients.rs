//! PHI routes: patient data from the encrypted store (written there by `phigate sync`).
//!
//! A handler runs only after the authorize layer permitted the request, so it finds the
//! principal and the purpose of use in the request extensions. It records a `phi_access`
//! event (patient and reason as keyed hashes) that the audit layer writes before the
//! response leaves. A missing patient answers the same 404 problem as a patient the policy
//! hides.

use std::sync::Arc;

use audit::{AccessAction, Event, Outcome, PatientHasher as _, PhiAccess};
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use super::authz::AccessPurpose;
use super::problem::Problem;
use super::reqctx::{Principal, RequestAudit};
use super::state::AppState;

/// Store kind of patient demographics (one record per casefile id), as sync writes them.
pub const PATIENT_KIND: &str = "ehr.patient";

fn record_access(
    st: &AppState,
    slot: &RequestAudit,
    principal: &Principal,
    purpose: &AccessPurpose,
    patient: &phi::Sensitive<String>,
    resource_kind: &str,
    outcome: Outcome,
) {
    slot.record(Event::PhiAccess(PhiAccess {
        principal: principal.id.clone(),
        roles: principal.roles.clone(),
        patient: Some(st.hasher.patient_ref(patient)),
        resource_kind: resource_kind.to_string(),
        resource_id: None,
        action: AccessAction::Read,
        purpose: purpose.purpose,
        reason: Some(st.hasher.keyed_hash(purpose.reason.expose().as_bytes())),
        outcome,
        request_id: slot.request_id.clone(),
    }));
}

/// `GET /api/v1/patients/{id}`: one patient's demographics as the EHR returned them.
#[utoipa::path(get, path = "/api/v1/patients/{id}", tag = "patients",
    params(("id" = String, Path, description = "Casefile id"),
           ("X-Purpose-Of-Use" = String, Header, description = "HL7 PurposeOfUse code, e.g. TREAT"),
           ("X-Access-Reason" = String, Header, description = "Why the data is needed (1-500 characters)")),
    responses((status = 200, description = "The patient record (JSON)"),
              (status = 400, description = "Purpose of use or reason missing", body = Problem),
              (status = 401, description = "Not authenticated", body = Problem),
              (status = 404, description = "No such patient, or not in the caller's scope", body = Problem)))]
pub async fn get_patient(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Extension(principal): Extension<Principal>,
    Extension(purpose): Extension<AccessPurpose>,
    Extension(slot): Extension<Arc<RequestAudit>>,
) -> Response {
    let id = phi::Sensitive::new(id);
    match st.store.get(PATIENT_KIND, id.expose()).await {
        Ok(Some(record)) => {
            record_access(&st, &slot, &principal, &purpose, &id, "patient", Outcome::Success);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                record.value.into_inner(),
            )
                .into_response()
        }
        Ok(None) => {
            record_access(&st, &slot, &principal, &purpose, &id, "patient", Outcome::Failure);
            Problem::for_status(StatusCode::NOT_FOUND).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "store read failed");
            Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }
    }
}
