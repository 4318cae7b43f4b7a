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
use super::problem::{Problem, internal};
use super::reqctx::{Principal, RequestAudit, role_names};
use super::state::AppState;

/// Store kind of patient demographics (one record per casefile id), as sync writes them.
pub const PATIENT_KIND: &str = "ehr.patient";

/// Records this request's `phi_access` event for one patient (patient and reason as keyed
/// hashes), written by the audit layer before the response leaves.
pub(super) fn record_access(
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
        roles: role_names(principal),
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
            record_access(
                &st,
                &slot,
                &principal,
                &purpose,
                &id,
                "patient",
                Outcome::Success,
            );
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                record.value.into_inner(),
            )
                .into_response()
        }
        Ok(None) => {
            record_access(
                &st,
                &slot,
                &principal,
                &purpose,
                &id,
                "patient",
                Outcome::Failure,
            );
            Problem::for_status(StatusCode::NOT_FOUND).into_response()
        }
        Err(e) => internal("reading the store", &e),
    }
}

/// The per-patient record kinds served under `/api/v1/patients/{id}/...`, as sync stores them.
pub const SUB_RESOURCES: &[(&str, &str)] = &[
    ("diagnoses", "ehr.diagnosis"),
    ("vitals", "ehr.vital_sign"),
    ("appointments", "ehr.appointment"),
    ("evaluations", "ehr.evaluation"),
    ("care-team", "ehr.care_team"),
    ("admissions", "ehr.admission"),
];

/// `GET /api/v1/patients/{id}/{resource}`: every record of one kind about one patient, as a
/// JSON array of the records the EHR returned. An unknown patient answers 404 like a patient
/// out of scope; an unknown resource answers 404 too.
#[utoipa::path(get, path = "/api/v1/patients/{id}/{resource}", tag = "patients",
    params(("id" = String, Path, description = "Casefile id"),
           ("resource" = String, Path, description = "diagnoses, vitals, appointments, evaluations, care-team or admissions"),
           ("X-Purpose-Of-Use" = String, Header, description = "HL7 PurposeOfUse code, e.g. TREAT"),
           ("X-Access-Reason" = String, Header, description = "Why the data is needed (1-500 characters)")),
    responses((status = 200, description = "JSON array of records"),
              (status = 400, description = "Purpose of use or reason missing", body = Problem),
              (status = 401, description = "Not authenticated", body = Problem),
              (status = 404, description = "No such patient or resource, or not in the caller's scope", body = Problem)))]
pub async fn get_patient_records(
    State(st): State<Arc<AppState>>,
    Path((id, resource)): Path<(String, String)>,
    Extension(principal): Extension<Principal>,
    Extension(purpose): Extension<AccessPurpose>,
    Extension(slot): Extension<Arc<RequestAudit>>,
) -> Response {
    let id = phi::Sensitive::new(id);
    let Some((name, kind)) = SUB_RESOURCES.iter().find(|(n, _)| *n == resource) else {
        return Problem::for_status(StatusCode::NOT_FOUND).into_response();
    };
    let exists = match st.store.get(PATIENT_KIND, id.expose()).await {
        Ok(r) => r.is_some(),
        Err(e) => return internal("reading the store", &e),
    };
    if !exists {
        record_access(
            &st,
            &slot,
            &principal,
            &purpose,
            &id,
            name,
            Outcome::Failure,
        );
        return Problem::for_status(StatusCode::NOT_FOUND).into_response();
    }
    match st.store.list_patient(id.expose(), kind).await {
        Ok(records) => {
            record_access(
                &st,
                &slot,
                &principal,
                &purpose,
                &id,
                name,
                Outcome::Success,
            );
            let mut body = Vec::with_capacity(
                2 + records
                    .iter()
                    .map(|r| r.value.expose().len() + 1)
                    .sum::<usize>(),
            );
            body.push(b'[');
            for (i, r) in records.into_iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&r.value.into_inner());
            }
            body.push(b']');
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Err(e) => internal("reading the store", &e),
    }
}

/// `GET /api/v1/patients`: the patients in the caller's scope (care team, explicit grant or
/// break-glass), as a JSON array of the EHR's patient records. Each row is decided by the
/// policy exactly as a read of that patient would be, and each row returned writes a
/// `phi_access` event; patients outside the scope are left out without a trace in the answer.
#[utoipa::path(get, path = "/api/v1/patients", tag = "patients",
    params(("X-Purpose-Of-Use" = String, Header, description = "HL7 PurposeOfUse code, e.g. TREAT"),
           ("X-Access-Reason" = String, Header, description = "Why the data is needed (1-500 characters)")),
    responses((status = 200, description = "JSON array of the in-scope patients' records"),
              (status = 400, description = "Purpose of use or reason missing", body = Problem),
              (status = 401, description = "Not authenticated", body = Problem),
              (status = 403, description = "The principal may not list patients", body = Problem)))]
pub async fn list_patients(
    State(st): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Extension(purpose): Extension<AccessPurpose>,
    Extension(slot): Extension<Arc<RequestAudit>>,
) -> Response {
    let records = match st.store.list_kind(PATIENT_KIND).await {
        Ok(r) => r,
        Err(e) => return internal("reading the store", &e),
    };
    let mut body = vec![b'['];
    let mut first = true;
    for record in records {
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
        record_access(
            &st,
            &slot,
            &principal,
            &purpose,
            &record.id,
            "patient",
            Outcome::Success,
        );
        if !first {
            body.push(b',');
        }
        first = false;
        body.extend_from_slice(&record.value.into_inner());
    }
    body.push(b']');
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
