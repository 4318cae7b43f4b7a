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
//! * Routes are classified by method and route template from one table, [`ROUTES`]. A path
//!   served with another method answers 405 after authentication and before any policy or
//!   TOTP check; a served route missing from the table is `Unclassified` and refused (403)
//!   for everyone, so a new route is closed until someone classifies it.
//! * Admin routes (`/admin/...`) need, after the policy permitted the action, a TOTP step-up:
//!   a fresh code of the admin's authenticator in `X-TOTP-Code`, accepted once per 30-second
//!   step, a bad one counting toward the lockout, every attempt audited. Missing or refused:
//!   401 with problem type `insufficient_user_authentication`; locked: 429.
//! * Audit routes (`/audit/...`) are decided on the audit log resource (`read_audit`,
//!   `export_audit`: auditors only by default).
//! * Then the policy decides ([`access::Access::authorize`]): for one patient the resource
//!   carries the patient's care team as synced from the EHR into the store (see
//!   [`care_team`], cached per access epoch), explicit grants and break-glass grants come from
//!   the access database (cached per epoch; every change moves the generation, so revocations
//!   are in force at once on every instance; see `docs/gateway-operations.md`).
//!   A refusal writes a `policy_denied` event with the determining policies (or
//!   `default-deny`). A patient outside the principal's scope answers 404 exactly like a
//!   missing patient; other refusals answer 403.
//!
//! * Clinical routes (`/api/v1/care-gaps`, `/api/v1/readmission`, `/api/v1/summarize`; see
//!   [`super::clinical`]): one patient in the path is decided like a PHI route but for
//!   `run_model` (a malformed id answers 400); patients in the body need purpose and reason here
//!   and are decided by the handler, one by one; catalogues and metrics need only a principal.
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
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use std::collections::HashMap;

use super::patients::PATIENT_KIND;
use super::problem::{Problem, internal};
use super::reqctx::{ConnInfo, Identity, Principal, RequestAudit, role_names};
use super::state::AppState;

/// The header carrying the admin step-up code.
pub const TOTP_HEADER: &str = "x-totp-code";

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
    /// A patient list (the list, the census): identity, purpose and reason, `list_patients`;
    /// rows are filtered by the handler.
    PatientList,
    /// One patient's data through a clinical model (care gaps, readmission, summaries, gap
    /// closures): like [`RouteClass::Patient`], decided for `run_model`; a malformed patient id
    /// answers 400.
    PatientModel,
    /// Clinical requests naming their patients in the body (cohorts, batches, custom
    /// summaries): identity, purpose and reason here; the handler decides `run_model` for each
    /// patient named.
    PatientBody,
    /// Identity needed, no PHI and no policy decision (clinical catalogues and metrics).
    Authenticated,
    /// Administration: identity, the policy for the action (resource `Gateway`), then the
    /// TOTP step-up (`X-TOTP-Code`, single use, failures count toward the lockout).
    Admin(Action),
    /// Audit review: identity, then the policy for the action on the audit log.
    Audit(Action),
    /// Identity needed; the handler asks the policy (break-glass).
    Handler,
    /// No route matched: identity needed, then 404.
    Unmatched,
    /// The path is served but not with this method: identity needed, then 405 (before any
    /// policy or TOTP check, so a wrong method never consumes a one-time code).
    MethodNotAllowed,
    /// A served route missing from [`ROUTES`]: refused (403) for everyone, whatever the
    /// policies say, so a route added without a classification is never open.
    Unclassified,
}

/// Every served (method, route template) and how it is protected. `tests/serve_routes.rs`
/// checks this list's routes against the router and the OpenAPI document.
pub const ROUTES: &[(&str, &str, RouteClass)] = &[
    ("GET", "/health", RouteClass::Public),
    ("GET", "/ready", RouteClass::Public),
    ("GET", "/metrics", RouteClass::Public),
    ("GET", "/openapi.json", RouteClass::Public),
    ("GET", "/docs", RouteClass::Public),
    ("GET", "/.well-known/jwks.json", RouteClass::Public),
    ("POST", "/auth/token", RouteClass::Exchange),
    ("POST", "/auth/enroll", RouteClass::Exchange),
    ("POST", "/auth/break-glass", RouteClass::Handler),
    ("GET", "/api/v1/patients", RouteClass::PatientList),
    ("GET", "/api/v1/census", RouteClass::PatientList),
    ("GET", "/api/v1/patients/{id}", RouteClass::Patient),
    (
        "GET",
        "/api/v1/patients/{id}/{resource}",
        RouteClass::Patient,
    ),
    (
        "GET",
        "/admin/break-glass",
        RouteClass::Admin(Action::ReviewBreakGlass),
    ),
    ("GET", "/admin/keys", RouteClass::Admin(Action::ManageKeys)),
    ("POST", "/admin/keys", RouteClass::Admin(Action::ManageKeys)),
    (
        "DELETE",
        "/admin/keys/{key_id}",
        RouteClass::Admin(Action::ManageKeys),
    ),
    (
        "POST",
        "/admin/keys/{key_id}/rotate",
        RouteClass::Admin(Action::ManageKeys),
    ),
    (
        "GET",
        "/admin/users",
        RouteClass::Admin(Action::ManageUsers),
    ),
    (
        "POST",
        "/admin/users",
        RouteClass::Admin(Action::ManageUsers),
    ),
    (
        "POST",
        "/admin/users/{username}/disable",
        RouteClass::Admin(Action::ManageUsers),
    ),
    (
        "POST",
        "/admin/users/{username}/enable",
        RouteClass::Admin(Action::ManageUsers),
    ),
    (
        "POST",
        "/admin/users/{username}/unlock",
        RouteClass::Admin(Action::ManageUsers),
    ),
    (
        "GET",
        "/admin/policies",
        RouteClass::Admin(Action::ManagePolicies),
    ),
    (
        "PUT",
        "/admin/policies",
        RouteClass::Admin(Action::ManagePolicies),
    ),
    ("GET", "/audit/verify", RouteClass::Audit(Action::ReadAudit)),
    (
        "GET",
        "/audit/export",
        RouteClass::Audit(Action::ExportAudit),
    ),
    (
        "GET",
        "/audit/patients/{id}/disclosures",
        RouteClass::Audit(Action::ExportAudit),
    ),
    // Clinical (serve/clinical.rs): one patient in the path ...
    (
        "GET",
        "/api/v1/care-gaps/patient/{id}",
        RouteClass::PatientModel,
    ),
    (
        "POST",
        "/api/v1/care-gaps/patient/{id}/close/{gap_id}",
        RouteClass::PatientModel,
    ),
    (
        "GET",
        "/api/v1/readmission/predict/{id}",
        RouteClass::PatientModel,
    ),
    (
        "GET",
        "/api/v1/summarize/patient/{id}",
        RouteClass::PatientModel,
    ),
    (
        "GET",
        "/api/v1/summarize/problem/{id}/{problem_code}",
        RouteClass::PatientModel,
    ),
    (
        "GET",
        "/api/v1/summarize/care-transition/{id}/{encounter_id}",
        RouteClass::PatientModel,
    ),
    // ... patients named in the body, decided one by one by the handler ...
    ("POST", "/api/v1/care-gaps/cohort", RouteClass::PatientBody),
    (
        "POST",
        "/api/v1/readmission/predict/batch",
        RouteClass::PatientBody,
    ),
    ("POST", "/api/v1/summarize/custom", RouteClass::PatientBody),
    // ... and catalogues and metrics without PHI.
    (
        "GET",
        "/api/v1/care-gaps/guidelines",
        RouteClass::Authenticated,
    ),
    (
        "GET",
        "/api/v1/care-gaps/metrics",
        RouteClass::Authenticated,
    ),
    (
        "GET",
        "/api/v1/readmission/model/info",
        RouteClass::Authenticated,
    ),
    (
        "GET",
        "/api/v1/readmission/model/features",
        RouteClass::Authenticated,
    ),
    (
        "GET",
        "/api/v1/readmission/interventions",
        RouteClass::Authenticated,
    ),
    (
        "GET",
        "/api/v1/readmission/metrics",
        RouteClass::Authenticated,
    ),
    (
        "GET",
        "/api/v1/summarize/rag/info",
        RouteClass::Authenticated,
    ),
    (
        "GET",
        "/api/v1/summarize/llm-controls",
        RouteClass::Authenticated,
    ),
    (
        "GET",
        "/api/v1/summarize/metrics",
        RouteClass::Authenticated,
    ),
];

/// Classifies a request by method and matched route template (`None` when no route matched).
/// `HEAD` is classified as `GET` (axum answers it with the `GET` handler).
pub fn classify(method: &Method, route: Option<&str>) -> RouteClass {
    let Some(route) = route else {
        return RouteClass::Unmatched;
    };
    let method = if *method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let mut path_known = None;
    for (m, r, class) in ROUTES {
        if *r != route {
            continue;
        }
        if *m == method {
            return *class;
        }
        path_known = Some(*class);
    }
    match path_known {
        // Public and exchange paths answer 405 themselves, without asking who is calling.
        Some(c @ (RouteClass::Public | RouteClass::Exchange)) => c,
        Some(_) => RouteClass::MethodNotAllowed,
        None => RouteClass::Unclassified,
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

/// The policy's decision on `action` over one patient's data for this request's purpose, with
/// the patient's care team and grants as its scope. Patient lists, the census and the clinical
/// body routes share it. `Err` is the response to send instead: 500 when the care team cannot be
/// read (logged without the id), or the decision error.
pub async fn decide_for_patient(
    st: &AppState,
    principal: &Principal,
    purpose: &AccessPurpose,
    action: Action,
    patient: &phi::Sensitive<String>,
    request_id: &str,
) -> Result<Decision, Response> {
    let scope = care_team(st, patient)
        .await
        .map_err(|e| internal("reading the care team", &e))?;
    st.access
        .authorize(&AuthzRequest {
            principal,
            action,
            resource: Resource::Patient(&scope),
            purpose: Some(purpose.purpose),
            reason: Some(&purpose.reason),
        })
        .await
        .map_err(|e| decision_error(&e, request_id))
}

/// Whether the policy lets this request read one patient's data: a row of a patient list is
/// decided exactly as a read of that patient would be.
pub async fn may_read_patient(
    st: &AppState,
    principal: &Principal,
    purpose: &AccessPurpose,
    patient: &phi::Sensitive<String>,
    request_id: &str,
) -> Result<bool, Response> {
    decide_for_patient(st, principal, purpose, Action::ReadPhi, patient, request_id)
        .await
        .map(|d| d.is_allowed())
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

/// The authorize layer.
pub async fn authorize(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let class = classify(req.method(), route.as_deref());
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
        (
            RouteClass::Unmatched
            | RouteClass::MethodNotAllowed
            | RouteClass::Handler
            | RouteClass::Authenticated,
            _,
        )
        | (_, None) => {
            return next.run(req).await;
        }
        (_, Some(r)) => r,
    };
    let mut purpose = None;
    if matches!(
        class,
        RouteClass::Patient
            | RouteClass::PatientList
            | RouteClass::PatientModel
            | RouteClass::PatientBody
    ) {
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
    if class == RouteClass::PatientBody {
        return next.run(req).await;
    }
    let (req, patient) = patient_param(req).await;
    let decision = match class {
        RouteClass::Patient | RouteClass::PatientModel => {
            let Some(patient) = &patient else {
                return Problem::for_status(StatusCode::NOT_FOUND).into_response();
            };
            if class == RouteClass::PatientModel && !super::clinical::valid_patient_id(patient) {
                return super::clinical::malformed_patient_id();
            }
            let scope = match care_team(&st, patient).await {
                Ok(s) => s,
                Err(e) => return internal("reading the care team", &e),
            };
            let purpose = purpose.as_ref();
            st.access
                .authorize(&AuthzRequest {
                    principal: &principal,
                    action: if class == RouteClass::PatientModel {
                        Action::RunModel
                    } else {
                        Action::ReadPhi
                    },
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
        RouteClass::Admin(action) | RouteClass::Audit(action) => {
            let resource = if matches!(class, RouteClass::Audit(_)) {
                Resource::AuditLog
            } else {
                Resource::Gateway
            };
            st.access
                .authorize(&AuthzRequest {
                    principal: &principal,
                    action,
                    resource,
                    purpose: None,
                    reason: None,
                })
                .await
        }
        RouteClass::Unclassified => Ok(Decision::Forbidden {
            policies: vec!["unclassified-route".into()],
        }),
        _ => return next.run(req).await,
    };
    let decision = match decision {
        Ok(d) => d,
        Err(e) => return decision_error(&e, &request_id),
    };
    if decision.is_allowed() {
        if matches!(class, RouteClass::Admin(_)) {
            // Only owned values cross the await: a borrowed request is not `Send`.
            let code = req
                .headers()
                .get(TOTP_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            let source_address = req
                .extensions()
                .get::<ConnInfo>()
                .map(|c| c.peer.ip().to_string())
                .unwrap_or_default();
            if let Err(refusal) =
                step_up(&st, code, source_address, &principal, slot.as_deref()).await
            {
                return refusal;
            }
        }
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

fn insufficient_authentication(detail: &'static str) -> Response {
    let mut r = Problem::new(
        StatusCode::UNAUTHORIZED,
        "insufficient_user_authentication",
        detail,
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Bearer realm=\"phigate\", error=\"insufficient_user_authentication\"",
        ),
    );
    r
}

/// The TOTP step-up of an admin request: a fresh code in `X-TOTP-Code`, verified by the
/// access crate (single use per time step; a bad code counts toward the lockout; every attempt
/// audited). A missing code, or a principal that is not an admin, is refused and audited here.
async fn step_up(
    st: &AppState,
    code: Option<String>,
    source_address: String,
    principal: &Principal,
    slot: Option<&RequestAudit>,
) -> Result<(), Response> {
    let request_id = slot.map(|s| s.request_id.clone()).unwrap_or_default();
    let record_missing = || {
        if let Some(slot) = slot {
            slot.record(Event::Authentication(AuthenticationAttempt {
                method: AuthMethod::PasswordTotp,
                principal: Some(principal.id.clone()),
                source_address: source_address.clone(),
                outcome: Outcome::Failure,
                failure_reason: Some(AuthFailureReason::MfaRequired),
                request_id: Some(request_id.clone()),
            }));
        }
    };
    let Some(code) = code else {
        record_missing();
        return Err(insufficient_authentication(
            "Admin requests need a fresh one-time code from the admin's authenticator in the X-TOTP-Code header.",
        ));
    };
    if !principal.has_role(access::Role::Admin) || !principal.id.starts_with("admin:") {
        record_missing();
        return Err(insufficient_authentication(
            "Admin requests need an admin signed in with password and TOTP.",
        ));
    }
    let meta = access::RequestMeta::new(source_address.clone(), Some(request_id.clone()));
    match st.access.verify_admin_totp(principal, &code, &meta).await {
        Ok(_) => Ok(()),
        Err(AccessError::Credential(access::CredentialError::Locked)) => Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "locked",
            "Too many failed attempts; the account is locked for a while.",
        )
        .into_response()),
        Err(AccessError::Credential(_) | AccessError::InvalidArgument(_)) => {
            Err(insufficient_authentication(
                "The one-time code in X-TOTP-Code was not accepted; wait for the next code and try again.",
            ))
        }
        Err(e) => Err(super::auth::access_failure(&e, &request_id)),
    }
}

fn resource_kind(route: &str) -> &'static str {
    if route.starts_with("/api/v1/patients")
        || route.starts_with("/api/v1/care-gaps")
        || route.starts_with("/api/v1/readmission")
        || route.starts_with("/api/v1/summarize")
    {
        "patient"
    } else if route.starts_with("/admin") {
        "admin"
    } else if route.starts_with("/auth") {
        "auth"
    } else if route.starts_with("/audit") {
        "audit"
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
    fn routes_are_classified_by_method_and_template_and_unknown_ones_are_denied() {
        let get = Method::GET;
        assert_eq!(classify(&get, Some("/health")), RouteClass::Public);
        assert_eq!(classify(&Method::POST, Some("/health")), RouteClass::Public);
        assert_eq!(
            classify(&get, Some("/api/v1/patients/{id}")),
            RouteClass::Patient
        );
        assert_eq!(
            classify(&get, Some("/.well-known/jwks.json")),
            RouteClass::Public
        );
        assert_eq!(
            classify(&Method::POST, Some("/auth/token")),
            RouteClass::Exchange
        );
        assert_eq!(
            classify(&get, Some("/api/v1/patients")),
            RouteClass::PatientList
        );
        assert_eq!(
            classify(&Method::HEAD, Some("/api/v1/census")),
            RouteClass::PatientList
        );
        assert_eq!(
            classify(&get, Some("/api/v1/patients/{id}/{resource}")),
            RouteClass::Patient
        );
        assert_eq!(
            classify(&get, Some("/admin/break-glass")),
            RouteClass::Admin(Action::ReviewBreakGlass)
        );
        assert_eq!(
            classify(&Method::DELETE, Some("/admin/keys/{key_id}")),
            RouteClass::Admin(Action::ManageKeys)
        );
        assert_eq!(
            classify(&Method::PUT, Some("/admin/keys/{key_id}")),
            RouteClass::MethodNotAllowed
        );
        assert_eq!(
            classify(&get, Some("/audit/export")),
            RouteClass::Audit(Action::ExportAudit)
        );
        assert_eq!(
            classify(&get, Some("/admin/new-thing")),
            RouteClass::Unclassified
        );
        assert_eq!(classify(&get, None), RouteClass::Unmatched);
    }

    #[test]
    fn every_route_template_is_listed_once_per_method() {
        let mut seen = std::collections::HashSet::new();
        for (m, r, _) in ROUTES {
            assert!(seen.insert((*m, *r)), "{m} {r} is listed twice");
            assert!(r.starts_with('/'));
        }
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
