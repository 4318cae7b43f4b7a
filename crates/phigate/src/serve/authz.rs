//! The authorize layer: deny by default, decided by the `access` crate's Cedar policies.
//!
//! * Public routes (`/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs`,
//!   `/.well-known/jwks.json`) carry no PHI and no identity and pass. `POST /auth/token` and
//!   `POST /auth/enroll` pass too: they check the credentials they are given themselves.
//! * Every other route, known or not, needs an authenticated principal: otherwise 401 with
//!   `WWW-Authenticate: Bearer`, and the failed attempt is audited. (An unknown route answers
//!   401 to an anonymous caller too, so route existence is not disclosed.)
//! * PHI routes (`/api/v1/patients...`) need a purpose of use (`X-Purpose-Of-Use`, an HL7
//!   PurposeOfUse code, or the token's `pou` claim) and a reason (`X-Access-Reason`, 1 to 500
//!   printable characters): otherwise 400 saying which is missing or invalid (never echoing
//!   its value).
//! * Then the policy decides ([`access::Access::authorize`]): for one patient the resource
//!   carries the patient's care team as synced from the EHR into the store (see
//!   [`care_team`], cached per access epoch), explicit grants and break-glass grants come from
//!   the access database (cached per epoch; every change moves the generation, so revocations
//!   are in force at once on every instance; see `docs/gateway-operations.md`).
//!   A refusal writes a `policy_denied` event with the determining policies (or
//!   `default-deny`). A patient outside the principal's scope answers 404 exactly like a
//!   missing patient; other refusals answer 403.
//!
//! Care-team principals: the EHR names care-team members by Kipu user id. User `N` is the
//! gateway principal `service:kipu-user-N` (an API key made with `phigate keys create
//! --service kipu-user-N --role clinician`, or a JWT issued for it). A member whose
//! `end_date` has passed is no longer on the team.

use std::sync::Arc;

use access::{AccessError, Action, AuthzRequest, Decision, PatientScope, Resource};
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

use super::patients::PATIENT_KIND;
use super::problem::Problem;
use super::reqctx::{ConnInfo, Identity, RequestAudit, role_names};
use super::state::AppState;

/// Routes that need no identity.
pub const PUBLIC_ROUTES: &[&str] = &[
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/.well-known/jwks.json",
];

/// Routes that authenticate what they are given themselves.
pub const EXCHANGE_ROUTES: &[&str] = &["/auth/token", "/auth/enroll"];

/// How a route is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// No identity needed.
    Public,
    /// The credential exchange: checks its own input.
    Exchange,
    /// One patient's PHI: identity, purpose and reason, then the policy with the patient's
    /// scope.
    Patient,
    /// The patient list: identity, purpose and reason, `list_patients`; rows are filtered by
    /// the handler.
    PatientList,
    /// Identity, then the policy for a gateway-level action.
    Gateway(Action),
    /// Identity needed; the handler asks the policy (break-glass).
    Handler,
    /// No route matched: identity needed, then 404.
    Unmatched,
}

/// Classifies a route template (`None` when no route matched).
pub fn classify(route: Option<&str>) -> RouteClass {
    match route {
        None => RouteClass::Unmatched,
        Some(r) if PUBLIC_ROUTES.contains(&r) => RouteClass::Public,
        Some(r) if EXCHANGE_ROUTES.contains(&r) => RouteClass::Exchange,
        Some("/api/v1/patients") => RouteClass::PatientList,
        Some(r) if r.starts_with("/api/v1/patients/{id}") => RouteClass::Patient,
        Some("/admin/break-glass") => RouteClass::Gateway(Action::ReviewBreakGlass),
        Some("/auth/break-glass") => RouteClass::Handler,
        // Any other route is refused by default until a policy action is assigned to it.
        Some(_) => RouteClass::Gateway(Action::ManagePolicies),
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
pub fn purpose_from_headers(
    headers: &HeaderMap,
    from_token: Option<PurposeOfUse>,
) -> Result<AccessPurpose, &'static str> {
    let purpose = match (headers.get("x-purpose-of-use"), from_token) {
        (None, Some(p)) => p,
        (None, None) => {
            return Err(
                "PHI requests need an X-Purpose-Of-Use header with an HL7 PurposeOfUse code such as TREAT.",
            );
        }
        (Some(code), _) => {
            let code = code
                .to_str()
                .map_err(|_| "X-Purpose-Of-Use must be an HL7 PurposeOfUse code such as TREAT.")?;
            access::parse_purpose(code).map_err(|_| "X-Purpose-Of-Use is not an HL7 PurposeOfUse code (for example TREAT, ETREAT, HOPERAT).")?
        }
    };
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

/// Store kind of care teams, as sync writes them.
pub const CARE_TEAM_KIND: &str = "ehr.care_team";

/// The gateway principal of a Kipu user on a care team.
pub fn care_team_principal(user_id: &serde_json::Value) -> Option<String> {
    let id = match user_id {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return None,
    };
    let ok = !id.is_empty()
        && id.len() <= 40
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| format!("service:kipu-user-{}", id.to_ascii_lowercase()))
}

/// One care-team member: its gateway principal and its `end_date` (`YYYY-MM-DD`), if any.
type Member = (String, Option<String>);

/// The members named in the EHR's care-team records (each either `{"care_team": [..]}` or one
/// member), in order, with their end dates.
fn member_entries(records: &[serde_json::Value]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut add = |m: &serde_json::Value| {
        if let Some(p) = m.get("user_id").and_then(care_team_principal) {
            let end = m
                .get("end_date")
                .and_then(|d| d.as_str())
                .map(|d| d.get(..10).unwrap_or(d).to_string());
            out.push((p, end));
        }
    };
    for r in records {
        match r.get("care_team").and_then(|t| t.as_array()) {
            Some(team) => team.iter().for_each(&mut add),
            None => add(r),
        }
    }
    out
}

/// The members whose `end_date` is not before `today`, without duplicates.
fn current_members(entries: &[Member], today: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (p, end) in entries {
        if end.as_deref().is_some_and(|d| d < today) {
            continue;
        }
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// Care-team principals in the EHR's care-team records (each either `{"care_team": [..]}` or
/// one member), leaving out members whose `end_date` (`YYYY-MM-DD`) is before `today`. (The
/// request path keeps [`member_entries`] cached and filters with [`current_members`].)
#[cfg(test)]
pub fn care_team_members(records: &[serde_json::Value], today: &str) -> Vec<String> {
    current_members(&member_entries(records), today)
}

/// Care-team members per patient id.
type CareTeams = HashMap<String, Arc<Vec<Member>>>;

/// Most patients whose care team is kept in memory (a full cache starts over).
const CARE_TEAM_CACHE_CAPACITY: usize = 100_000;

/// Care teams read from the store, per patient, for the current access epoch (see the
/// `access` crate's `cache` module): `phigate sync` moves the generation after writing, and
/// every instance starts a new epoch at its next request, so a member taken off a team in the
/// store loses access at once. End dates are compared with today's date at every request.
/// Patient ids are held in memory only; `Debug` shows none.
#[derive(Default)]
pub struct CareTeamCache {
    inner: std::sync::Mutex<(u64, CareTeams)>,
}

impl std::fmt::Debug for CareTeamCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CareTeamCache").finish_non_exhaustive()
    }
}

impl CareTeamCache {
    fn get(&self, epoch: u64, patient: &str) -> Option<Arc<Vec<Member>>> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.0 != epoch {
            return None;
        }
        inner.1.get(patient).cloned()
    }

    fn put(&self, epoch: u64, patient: &str, members: Arc<Vec<Member>>) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.0 != epoch {
            if epoch < inner.0 {
                // Loaded in an epoch that has since ended: may predate the change.
                return;
            }
            *inner = (epoch, HashMap::new());
        }
        if inner.1.len() >= CARE_TEAM_CACHE_CAPACITY {
            inner.1.clear();
        }
        inner.1.insert(patient.to_string(), members);
    }
}

/// The scope of one patient: its id and its current care team from the store (cached per
/// access epoch; see [`CareTeamCache`]).
pub async fn care_team(
    st: &AppState,
    patient: &phi::Sensitive<String>,
) -> Result<PatientScope, store::StoreError> {
    // Without a readable generation nothing is cached (the decision then fails on its own).
    let epoch = st.access.epoch().await.ok();
    let cached = epoch.and_then(|e| st.care_teams.get(e, patient.expose()));
    let entries = match cached {
        Some(entries) => entries,
        None => {
            let records = st
                .store
                .list_patient(patient.expose(), CARE_TEAM_KIND)
                .await?;
            let values: Vec<serde_json::Value> = records
                .iter()
                .filter_map(|r| serde_json::from_slice(r.value.expose()).ok())
                .collect();
            let entries = Arc::new(member_entries(&values));
            if let Some(e) = epoch {
                st.care_teams.put(e, patient.expose(), entries.clone());
            }
            entries
        }
    };
    let today = chrono::Utc::now().date_naive().to_string();
    Ok(PatientScope {
        patient_id: patient.clone(),
        care_team: current_members(&entries, &today),
    })
}

/// Whether the store holds the patient.
pub async fn patient_exists(
    st: &AppState,
    patient: &phi::Sensitive<String>,
) -> Result<bool, store::StoreError> {
    Ok(st
        .store
        .get(PATIENT_KIND, patient.expose())
        .await?
        .is_some())
}

/// The answer for an error of the access service during a decision.
pub fn decision_error(e: &AccessError, request_id: &str) -> Response {
    match e {
        AccessError::MissingPurpose
        | AccessError::MissingReason
        | AccessError::UnknownPurpose
        | AccessError::InvalidArgument(_) => {
            let mut problem = Problem::new(StatusCode::BAD_REQUEST, "purpose-of-use-required", "");
            problem.detail = Some(e.to_string());
            problem.into_response()
        }
        other => super::auth::access_failure(other, request_id),
    }
}

fn internal(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what} failed");
    Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

/// The authorize layer.
pub async fn authorize(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let class = classify(route.as_deref());
    if matches!(class, RouteClass::Public | RouteClass::Exchange) {
        return next.run(req).await;
    }
    let slot = req.extensions().get::<Arc<RequestAudit>>().cloned();
    let request_id = slot
        .as_ref()
        .map(|s| s.request_id.clone())
        .unwrap_or_default();
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
    let route = match (class, route) {
        (RouteClass::Unmatched | RouteClass::Handler, _) | (_, None) => {
            return next.run(req).await;
        }
        (_, Some(r)) => r,
    };
    let mut purpose = None;
    if matches!(class, RouteClass::Patient | RouteClass::PatientList) {
        match purpose_from_headers(req.headers(), principal.purpose) {
            Ok(p) => {
                purpose = Some(p.clone());
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
    let (req, patient) = patient_param(req).await;
    let decision = match class {
        RouteClass::Patient => {
            let Some(patient) = &patient else {
                return Problem::for_status(StatusCode::NOT_FOUND).into_response();
            };
            let scope = match care_team(&st, patient).await {
                Ok(s) => s,
                Err(e) => return internal("reading the care team", &e),
            };
            let purpose = purpose.as_ref();
            st.access
                .authorize(&AuthzRequest {
                    principal: &principal,
                    action: Action::ReadPhi,
                    resource: Resource::Patient(&scope),
                    purpose: purpose.map(|p| p.purpose),
                    reason: purpose.map(|p| &p.reason),
                })
                .await
        }
        RouteClass::PatientList => {
            st.access
                .authorize(&AuthzRequest {
                    principal: &principal,
                    action: Action::ListPatients,
                    resource: Resource::Gateway,
                    purpose: None,
                    reason: None,
                })
                .await
        }
        RouteClass::Gateway(action) => {
            st.access
                .authorize(&AuthzRequest {
                    principal: &principal,
                    action,
                    resource: Resource::Gateway,
                    purpose: None,
                    reason: None,
                })
                .await
        }
        _ => return next.run(req).await,
    };
    let decision = match decision {
        Ok(d) => d,
        Err(e) => return decision_error(&e, &request_id),
    };
    if decision.is_allowed() {
        return next.run(req).await;
    }
    let patient_ref = patient.map(|p| st.hasher.patient_ref(&p));
    if let Some(slot) = &slot {
        slot.record(Event::PolicyDenied(PolicyDenied {
            principal: principal.id.clone(),
            roles: role_names(&principal),
            action: format!("{} {}", req.method(), route),
            resource_kind: resource_kind(&route).to_string(),
            patient: patient_ref,
            rule: decision.rule(),
            request_id: slot.request_id.clone(),
        }));
    }
    match decision {
        Decision::NotFound { .. } => Problem::for_status(StatusCode::NOT_FOUND).into_response(),
        _ => Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "No policy permits this request.",
        )
        .into_response(),
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
        assert_eq!(classify(Some("/api/v1/patients/{id}")), RouteClass::Patient);
        assert_eq!(classify(Some("/.well-known/jwks.json")), RouteClass::Public);
        assert_eq!(classify(Some("/auth/token")), RouteClass::Exchange);
        assert_eq!(classify(Some("/api/v1/patients")), RouteClass::PatientList);
        assert_eq!(
            classify(Some("/api/v1/patients/{id}/{resource}")),
            RouteClass::Patient
        );
        assert_eq!(
            classify(Some("/admin/break-glass")),
            RouteClass::Gateway(Action::ReviewBreakGlass)
        );
        assert_eq!(classify(None), RouteClass::Unmatched);
    }

    #[test]
    fn a_phi_request_without_purpose_or_reason_is_refused_naming_the_header() {
        let e = purpose_from_headers(&headers(&[]), None).unwrap_err();
        assert!(e.contains("X-Purpose-Of-Use"));
        let e = purpose_from_headers(&headers(&[("x-purpose-of-use", "TREAT")]), None).unwrap_err();
        assert!(e.contains("X-Access-Reason"));
        let e = purpose_from_headers(
            &headers(&[
                ("x-purpose-of-use", "CURIOSITY-Smith"),
                ("x-access-reason", "x"),
            ]),
            None,
        )
        .unwrap_err();
        assert!(!e.contains("Smith"));
        let ok = purpose_from_headers(
            &headers(&[
                ("x-purpose-of-use", "treat"),
                ("x-access-reason", "follow-up visit"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(ok.purpose, PurposeOfUse::Treat);
        assert_eq!(ok.reason.expose(), "follow-up visit");
    }

    #[test]
    fn a_token_purpose_stands_in_for_a_missing_header_but_never_for_the_reason() {
        let ok = purpose_from_headers(
            &headers(&[("x-access-reason", "discharge planning")]),
            Some(PurposeOfUse::Treat),
        )
        .unwrap();
        assert_eq!(ok.purpose, PurposeOfUse::Treat);
        let e = purpose_from_headers(&headers(&[]), Some(PurposeOfUse::Treat)).unwrap_err();
        assert!(e.contains("X-Access-Reason"));
    }

    #[test]
    fn care_team_members_map_kipu_users_to_principals_and_drop_ended_memberships() {
        let records = vec![serde_json::json!({"patient_id": "X", "care_team": [
            {"user_id": 17, "end_date": null},
            {"user_id": 18, "end_date": "2020-01-01"},
            {"user_id": "19", "end_date": "2999-01-01"},
            {"user_id": "bad id\"", "end_date": null},
            {"user_id": 17}
        ]})];
        assert_eq!(
            care_team_members(&records, "2026-11-23"),
            vec![
                "service:kipu-user-17".to_string(),
                "service:kipu-user-19".to_string()
            ]
        );
        let single = vec![serde_json::json!({"user_id": 5})];
        assert_eq!(
            care_team_members(&single, "2026-11-23"),
            vec!["service:kipu-user-5".to_string()]
        );
    }
}
