//! The audit review API for auditors: verification of the log, a verifiable export, and a
//! patient's accounting of disclosures.
//!
//! Every route here is classified [`super::authz::RouteClass::Audit`]: the authorize layer
//! asks the policy for `read_audit` (verify) or `export_audit` (export, disclosures) on the
//! audit log; the default policies permit these to the `auditor` role only (admins, clinicians
//! and services are refused with 403).
//!
//! * `GET /audit/verify`: recomputes every leaf, node and checkpoint signature with the public
//!   key (as `phigate audit verify` does) and answers the report; `intact` says whether it
//!   passed.
//! * `GET /audit/export?since=&until=&kind=`: JSONL (`application/x-ndjson`) with a covering
//!   checkpoint signed for this export and one inclusion proof per entry, the format `phigate
//!   audit verify-export` checks with the public key alone. At most [`MAX_EXPORT_ENTRIES`]
//!   entries per call, oldest first; when the limit is reached the answer carries
//!   `X-Audit-Export-Truncated: true` and the auditor asks again with `since` set to the time
//!   of the last entry received (entries at that exact time come again; the index tells them
//!   apart).
//! * `GET /audit/patients/{id}/disclosures[?format=csv]`: the accounting of disclosures (45
//!   CFR 164.528) of one patient, JSON or CSV.
//!
//! The export holds the whole log's events (keyed hashes of patients, never identifiers) and
//! the accounting names a patient, so both are themselves audited as a `phi_access` of the
//! auditor, action `export` or `read`, with the purpose of use from `X-Purpose-Of-Use` or
//! `HCOMPL` (compliance) by default, and the keyed hash of `X-Access-Reason` when one is given.

use std::collections::HashMap;
use std::sync::Arc;

use audit::{
    AccessAction, CheckpointSigner as _, Event, Outcome, PatientHasher as _, PhiAccess,
    PurposeOfUse, QueryFilter,
};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde::Serialize;

use super::admin::bad_request;
use super::problem::{Problem, internal};
use super::reqctx::{Principal, RequestAudit, role_names};
use super::state::AppState;

/// Most entries one export call returns.
pub const MAX_EXPORT_ENTRIES: u64 = 10_000;

/// The purpose of an audit review: `X-Purpose-Of-Use` if given, else `HCOMPL`; and the
/// reason's keyed hash if `X-Access-Reason` is given. The error is the detail of the 400.
fn review_purpose(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<(PurposeOfUse, Option<audit::KeyedHash>), &'static str> {
    let purpose = match headers.get("x-purpose-of-use") {
        None => PurposeOfUse::Hcompl,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|c| access::parse_purpose(c).ok())
            .ok_or("X-Purpose-Of-Use is not an HL7 PurposeOfUse code (for example HCOMPL).")?,
    };
    let reason = match headers.get("x-access-reason") {
        None => None,
        Some(v) => {
            let text = std::str::from_utf8(v.as_bytes())
                .map_err(|_| "X-Access-Reason must be UTF-8 text.")?
                .trim();
            if text.is_empty()
                || text.chars().count() > super::authz::MAX_REASON_CHARS
                || text.chars().any(char::is_control)
            {
                return Err(
                    "X-Access-Reason must be 1 to 500 characters of text without control characters.",
                );
            }
            Some(st.hasher.keyed_hash(text.as_bytes()))
        }
    };
    Ok((purpose, reason))
}

fn record_review(
    slot: &RequestAudit,
    principal: &Principal,
    patient: Option<audit::KeyedHash>,
    resource_kind: &str,
    action: AccessAction,
    purpose: PurposeOfUse,
    reason: Option<audit::KeyedHash>,
) {
    slot.record(Event::PhiAccess(PhiAccess {
        principal: principal.id.clone(),
        roles: role_names(principal),
        patient,
        resource_kind: resource_kind.to_string(),
        resource_id: None,
        action,
        purpose,
        reason,
        outcome: Outcome::Success,
        request_id: slot.request_id.clone(),
    }));
}

/// The answer of `GET /audit/verify`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifyAnswer {
    /// True when no damage was found.
    pub intact: bool,
    /// Entries read.
    pub entries: u64,
    /// Checkpoints whose signature and root verified.
    pub checkpoints_verified: u64,
    /// Tree size of the largest signed checkpoint.
    pub largest_checkpoint: u64,
    /// Entries after the largest signed checkpoint (checked against the tree head only).
    pub unsigned_tail: u64,
    /// The first damage: kind, index and what is wrong.
    #[schema(value_type = Option<Object>)]
    pub damage: Option<serde_json::Value>,
}

/// `GET /audit/verify`.
#[utoipa::path(get, path = "/audit/verify", tag = "audit",
    responses((status = 200, description = "The verification report (see intact)", body = VerifyAnswer),
              (status = 401, description = "Not authenticated", body = Problem),
              (status = 403, description = "Not an auditor", body = Problem)))]
pub async fn verify(State(st): State<Arc<AppState>>) -> Response {
    let verifier = st.hasher.note_verifier();
    match audit::verify_log(&st.audit, &verifier).await {
        Ok(report) => axum::Json(VerifyAnswer {
            intact: report.is_intact(),
            entries: report.entries,
            checkpoints_verified: report.checkpoints_verified,
            largest_checkpoint: report.largest_checkpoint,
            unsigned_tail: report.unsigned_tail,
            damage: report
                .damage
                .as_ref()
                .and_then(|d| serde_json::to_value(d).ok()),
        })
        .into_response(),
        Err(e) => internal("verifying the audit log", &e),
    }
}

fn parse_time(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ()> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => chrono::DateTime::parse_from_rfc3339(v)
            .map(|t| Some(t.with_timezone(&chrono::Utc)))
            .map_err(|_| ()),
    }
}

/// The export filter from the query string; the error names the parameter.
pub fn export_filter(params: &HashMap<String, String>) -> Result<QueryFilter, &'static str> {
    if params
        .keys()
        .any(|k| !matches!(k.as_str(), "since" | "until" | "kind"))
    {
        return Err("The export takes only the query parameters since, until and kind.");
    }
    let since = parse_time(params, "since")
        .map_err(|()| "since must be an RFC 3339 time such as 2026-01-31T00:00:00Z.")?;
    let until = parse_time(params, "until")
        .map_err(|()| "until must be an RFC 3339 time such as 2026-02-01T00:00:00Z.")?;
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err("since must be before until.");
    }
    let kind = match params.get("kind") {
        None => None,
        Some(k) if audit::EVENT_KINDS.contains(&k.as_str()) => Some(k.clone()),
        Some(_) => {
            return Err(
                "kind must be one of authentication, phi_access, disclosure, model_inference, config_change, key_lifecycle, break_glass, policy_denied.",
            );
        }
    };
    Ok(QueryFilter {
        since,
        until,
        kind,
        limit: Some(MAX_EXPORT_ENTRIES),
        ..Default::default()
    })
}

/// `GET /audit/export`.
#[utoipa::path(get, path = "/audit/export", tag = "audit",
    params(("since" = Option<String>, Query, description = "RFC 3339; entries at or after"),
           ("until" = Option<String>, Query, description = "RFC 3339; entries before"),
           ("kind" = Option<String>, Query, description = "Event kind"),
           ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default HCOMPL"),
           ("X-Access-Reason" = Option<String>, Header, description = "Why the export is needed")),
    responses((status = 200, description = "JSONL: the covering checkpoint, then each entry with its inclusion proof (at most 10,000)", content_type = "application/x-ndjson"),
              (status = 400, description = "A bad parameter or header", body = Problem),
              (status = 401, description = "Not authenticated", body = Problem),
              (status = 403, description = "Not an auditor", body = Problem)))]
pub async fn export(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(principal): Extension<Principal>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let filter = match export_filter(&params) {
        Ok(f) => f,
        Err(detail) => return bad_request(detail),
    };
    let (purpose, reason) = match review_purpose(&st, &headers) {
        Ok(p) => p,
        Err(detail) => return bad_request(detail),
    };
    // `audit::export` writes to a `&mut dyn Write`, which is not `Send`, so it runs on a
    // blocking thread of its own rather than in this (Send) handler future.
    let log = st.audit.clone();
    let handle = tokio::runtime::Handle::current();
    let exported = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        handle
            .block_on(audit::export(&log, &filter, &mut out))
            .map(|summary| (summary, out))
    })
    .await;
    let (summary, out) = match exported {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return internal("exporting the audit log", &e),
        Err(e) => return internal("exporting the audit log", &e),
    };
    record_review(
        &slot,
        &principal,
        None,
        "audit_export",
        AccessAction::Export,
        purpose,
        reason,
    );
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        out,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert("x-audit-export-entries", HeaderValue::from(summary.entries));
    if summary.entries >= MAX_EXPORT_ENTRIES {
        h.insert("x-audit-export-truncated", HeaderValue::from_static("true"));
    }
    response
}

/// `GET /audit/patients/{id}/disclosures`.
#[utoipa::path(get, path = "/audit/patients/{id}/disclosures", tag = "audit",
    params(("id" = String, Path, description = "Casefile id"),
           ("format" = Option<String>, Query, description = "json (default) or csv"),
           ("X-Purpose-Of-Use" = Option<String>, Header, description = "HL7 PurposeOfUse code; default HCOMPL"),
           ("X-Access-Reason" = Option<String>, Header, description = "Why the accounting is needed")),
    responses((status = 200, description = "The accounting of disclosures, oldest first (JSON array or text/csv)"),
              (status = 400, description = "A bad parameter or header", body = Problem),
              (status = 401, description = "Not authenticated", body = Problem),
              (status = 403, description = "Not an auditor", body = Problem)))]
pub async fn disclosures(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let id = phi::Sensitive::new(id);
    if params.keys().any(|k| k != "format") {
        return bad_request("The accounting takes only the query parameter format.");
    }
    let csv = match params.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return bad_request("format must be json or csv."),
    };
    let (purpose, reason) = match review_purpose(&st, &headers) {
        Ok(p) => p,
        Err(detail) => return bad_request(detail),
    };
    let refs = st.hasher.keyed_hashes_all_keys(id.expose().as_bytes());
    let records = match audit::disclosures(&st.audit, refs).await {
        Ok(r) => r,
        Err(e) => return internal("reading the accounting of disclosures", &e),
    };
    record_review(
        &slot,
        &principal,
        Some(st.hasher.patient_ref(&id)),
        "disclosures",
        AccessAction::Read,
        purpose,
        reason,
    );
    if csv {
        let mut out = Vec::new();
        if let Err(e) = audit::disclosures_csv(&records, &mut out) {
            return internal("writing the accounting as CSV", &e);
        }
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            out,
        )
            .into_response()
    } else {
        axum::Json(records).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn the_export_filter_takes_times_and_kinds_and_names_a_bad_parameter() {
        let f = export_filter(&params(&[
            ("since", "2026-01-01T00:00:00Z"),
            ("until", "2026-02-01T00:00:00Z"),
            ("kind", "phi_access"),
        ]))
        .unwrap();
        assert_eq!(f.kind.as_deref(), Some("phi_access"));
        assert_eq!(f.limit, Some(MAX_EXPORT_ENTRIES));
        assert!(f.since.unwrap() < f.until.unwrap());
        assert!(
            export_filter(&params(&[("since", "yesterday")]))
                .unwrap_err()
                .starts_with("since")
        );
        assert!(
            export_filter(&params(&[("kind", "CANARY-Smith")]))
                .unwrap_err()
                .starts_with("kind")
        );
        assert!(
            export_filter(&params(&[
                ("since", "2026-02-01T00:00:00Z"),
                ("until", "2026-01-01T00:00:00Z")
            ]))
            .is_err()
        );
        assert!(export_filter(&params(&[("patient", "x")])).is_err());
        assert_eq!(export_filter(&params(&[])).unwrap().kind, None);
    }
}
