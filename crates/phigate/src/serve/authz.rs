//! The authorize layer: deny by default.
//!
//! * Public routes (`/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs`) carry no PHI
//!   and no identity and pass.
//! * Every other route, known or not, needs an authenticated principal: otherwise 401 with
//!   `WWW-Authenticate: Bearer`, and the failed attempt is audited. (An unknown route answers
//!   401 to an anonymous caller too, so route existence is not disclosed.)
//! * PHI routes (`/api/v1/patients...`) need a purpose of use (`X-Purpose-Of-Use`, an HL7
//!   PurposeOfUse code) and a reason (`X-Access-Reason`, 1 to 500 printable characters):
//!   otherwise 400 saying which header is missing or invalid (never echoing its value).
//! * Then the policy decides. This build has no policy engine wired in yet (the `access`
//!   crate's Cedar policies), so every authenticated request to a protected route is denied
//!   and audited as `policy_denied` with rule `default-deny`. A denied read of one patient
//!   answers 404 exactly like a missing patient; other denials answer 403.

use std::sync::Arc;

use audit::PatientHasher as _;
use audit::{
    AuthFailureReason, AuthMethod, AuthenticationAttempt, Event, Outcome, PolicyDenied,
    PurposeOfUse,
};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use std::collections::HashMap;

use super::problem::Problem;
use super::reqctx::{ConnInfo, Identity, RequestAudit};
use super::state::AppState;

/// Routes that need no identity.
pub const PUBLIC_ROUTES: &[&str] = &["/health", "/ready", "/metrics", "/openapi.json", "/docs"];

/// How a route is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// No identity needed.
    Public,
    /// PHI: identity, purpose and reason needed.
    Phi,
    /// Identity needed.
    Protected,
    /// No route matched: identity needed, then 404.
    Unmatched,
}

/// Classifies a route template (`None` when no route matched).
pub fn classify(route: Option<&str>) -> RouteClass {
    match route {
        None => RouteClass::Unmatched,
        Some(r) if PUBLIC_ROUTES.contains(&r) => RouteClass::Public,
        Some(r) if r.starts_with("/api/v1/patients") => RouteClass::Phi,
        Some(_) => RouteClass::Protected,
    }
}

/// The purpose of use and reason of a PHI request.
#[derive(Debug, Clone)]
pub struct AccessPurpose {
    /// HL7 code.
    pub purpose: PurposeOfUse,
    /// Free text; may hold PHI, so it travels wrapped.
    pub reason: phi::Sensitive<String>,
}

/// Largest accepted `X-Access-Reason`, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Reads `X-Purpose-Of-Use` and `X-Access-Reason`; the error says which is wrong.
pub fn purpose_from_headers(headers: &HeaderMap) -> Result<AccessPurpose, &'static str> {
    let code = headers
        .get("x-purpose-of-use")
        .ok_or("PHI requests need an X-Purpose-Of-Use header with an HL7 PurposeOfUse code such as TREAT.")?
        .to_str()
        .map_err(|_| "X-Purpose-Of-Use must be an HL7 PurposeOfUse code such as TREAT.")?;
    let purpose: PurposeOfUse =
        serde_json::from_value(serde_json::Value::String(code.trim().to_ascii_uppercase()))
            .map_err(|_| "X-Purpose-Of-Use is not an HL7 PurposeOfUse code (for example TREAT, ETREAT, HOPERAT).")?;
    let reason = headers
        .get("x-access-reason")
        .ok_or("PHI requests need an X-Access-Reason header saying why the data is needed.")?;
    let reason = std::str::from_utf8(reason.as_bytes())
        .map_err(|_| "X-Access-Reason must be UTF-8 text.")?
        .trim();
    let chars = reason.chars().count();
    if chars == 0 || chars > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return Err(
            "X-Access-Reason must be 1 to 500 characters of text without control characters.",
        );
    }
    Ok(AccessPurpose {
        purpose,
        reason: phi::Sensitive::new(reason.to_string()),
    })
}

fn unauthenticated() -> Response {
    let mut r = Problem::unauthenticated().into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"phigate\""),
    );
    r
}

/// Whether a route reads one patient (a denial must look like a missing patient).
fn is_single_patient(route: &str) -> bool {
    route.starts_with("/api/v1/patients/{id}")
}

/// The `{id}` path parameter of a route, decoded (it may be PHI: it stays wrapped).
async fn patient_param(req: Request) -> (Request, Option<phi::Sensitive<String>>) {
    use axum::RequestPartsExt as _;
    let (mut parts, body) = req.into_parts();
    let id = parts
        .extract::<Path<HashMap<String, String>>>()
        .await
        .ok()
        .and_then(|Path(mut m)| m.remove("id"))
        .map(phi::Sensitive::new);
    (Request::from_parts(parts, body), id)
}

/// The authorize layer.
pub async fn authorize(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let class = classify(route.as_deref());
    if class == RouteClass::Public {
        return next.run(req).await;
    }
    let slot = req.extensions().get::<Arc<RequestAudit>>().cloned();
    let identity = req
        .extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or(Identity::Anonymous);
    let principal = match identity {
        Identity::Authenticated(p) => p,
        Identity::Failed { .. } => return unauthenticated(),
        Identity::Anonymous => {
            if let Some(slot) = &slot {
                let source_address = req
                    .extensions()
                    .get::<ConnInfo>()
                    .map(|c| c.peer.ip().to_string())
                    .unwrap_or_default();
                slot.record(Event::Authentication(AuthenticationAttempt {
                    method: AuthMethod::Jwt,
                    principal: None,
                    source_address,
                    outcome: Outcome::Failure,
                    failure_reason: Some(AuthFailureReason::UnknownPrincipal),
                    request_id: Some(slot.request_id.clone()),
                }));
            }
            return unauthenticated();
        }
    };
    req.extensions_mut().insert(principal.clone());
    if class == RouteClass::Unmatched {
        return next.run(req).await;
    }
    let route = route.unwrap_or_default();
    if class == RouteClass::Phi {
        match purpose_from_headers(req.headers()) {
            Ok(p) => {
                req.extensions_mut().insert(p);
            }
            Err(detail) => {
                let mut problem =
                    Problem::new(StatusCode::BAD_REQUEST, "purpose-of-use-required", "");
                problem.detail = Some(detail.to_string());
                return problem.into_response();
            }
        }
    }
    // Default deny: no permit policy is loaded in this build.
    let (req, patient) = patient_param(req).await;
    let patient = patient.map(|p| st.hasher.patient_ref(&p));
    if let Some(slot) = &slot {
        slot.record(Event::PolicyDenied(PolicyDenied {
            principal: principal.id.clone(),
            roles: principal.roles.clone(),
            action: format!("{} {}", req.method(), route),
            resource_kind: resource_kind(&route).to_string(),
            patient,
            rule: "default-deny".to_string(),
            request_id: slot.request_id.clone(),
        }));
    }
    if is_single_patient(&route) {
        Problem::for_status(StatusCode::NOT_FOUND).into_response()
    } else {
        Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "No policy permits this request.",
        )
        .into_response()
    }
}

fn resource_kind(route: &str) -> &'static str {
    if route.starts_with("/api/v1/patients") {
        "patient"
    } else if route.starts_with("/admin") {
        "admin"
    } else if route.starts_with("/auth") {
        "auth"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn routes_are_public_only_by_name_and_everything_else_is_protected() {
        assert_eq!(classify(Some("/health")), RouteClass::Public);
        assert_eq!(classify(Some("/api/v1/patients/{id}")), RouteClass::Phi);
        assert_eq!(classify(Some("/admin/keys")), RouteClass::Protected);
        assert_eq!(classify(None), RouteClass::Unmatched);
    }

    #[test]
    fn a_phi_request_without_purpose_or_reason_is_refused_naming_the_header() {
        let e = purpose_from_headers(&headers(&[])).unwrap_err();
        assert!(e.contains("X-Purpose-Of-Use"));
        let e = purpose_from_headers(&headers(&[("x-purpose-of-use", "TREAT")])).unwrap_err();
        assert!(e.contains("X-Access-Reason"));
        let e = purpose_from_headers(&headers(&[
            ("x-purpose-of-use", "CURIOSITY-Smith"),
            ("x-access-reason", "x"),
        ]))
        .unwrap_err();
        assert!(!e.contains("Smith"));
        let ok = purpose_from_headers(&headers(&[
            ("x-purpose-of-use", "treat"),
            ("x-access-reason", "follow-up visit"),
        ]))
        .unwrap();
        assert_eq!(ok.purpose, PurposeOfUse::Treat);
        assert_eq!(ok.reason.expose(), "follow-up visit");
    }
}
