//! The credential and emergency-access routes, backed by the `access` crate:
//!
//! * `POST /auth/token`: exchanges an API key (`X-API-Key` or `Authorization: Bearer phg_…`),
//!   an mTLS identity (on the mTLS listener), or an admin's username + password + TOTP code
//!   (JSON body) for a 15-minute EdDSA JWT. A JWT cannot be exchanged for another one (a
//!   stolen token must not outlive its 15 minutes). Every attempt is audited by the access
//!   crate (or, for mTLS, by the authenticate layer).
//! * `GET /.well-known/jwks.json`: the public signing keys in force.
//! * `POST /auth/break-glass`: emergency access to one patient for a limited time (60 minutes
//!   by default), with a reason; recorded as a `break_glass` audit event before it takes
//!   effect. Only principals the policies let ask (clinicians by default).
//! * `GET /admin/break-glass`: the grants made, for review (admins). The reason's text is not
//!   returned (it may hold PHI and admins get none); reviewers find it, sealed, in the audit
//!   event of the grant.

use std::sync::Arc;

use access::{AccessError, CredentialError, RequestMeta};
use audit::{AuthMethod, PurposeOfUse};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use super::auth::access_failure;
use super::authz::{care_team, patient_exists};
use super::problem::{Problem, internal};
use super::reqctx::{ConnInfo, Identity, Principal, RequestAudit};
use super::state::AppState;

fn meta(conn: Option<&ConnInfo>, slot: &RequestAudit) -> RequestMeta {
    RequestMeta::new(
        conn.map(|c| c.peer.ip().to_string()).unwrap_or_default(),
        Some(slot.request_id.clone()),
    )
}

fn bad_request(detail: &'static str) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail).into_response()
}

fn unauthenticated() -> Response {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "The credential was not accepted.",
    )
    .into_response()
}

/// `POST /auth/token` body for an admin login (all fields secret or workforce data).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminLogin {
    username: String,
    password: SecretString,
    totp: SecretString,
    #[serde(default)]
    purpose_of_use: Option<String>,
}

/// `POST /auth/token` optional body for a key or mTLS exchange.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ExchangeOptions {
    #[serde(default)]
    purpose_of_use: Option<String>,
}

/// The answer of `POST /auth/token` (RFC 6749 §5.1 shape).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until it expires (at most 900).
    pub expires_in: i64,
}

fn purpose(code: Option<&str>) -> Result<Option<PurposeOfUse>, &'static str> {
    match code {
        None => Ok(None),
        Some(c) => access::parse_purpose(c)
            .map(Some)
            .map_err(|_| "purpose_of_use is not an HL7 PurposeOfUse code (for example TREAT)."),
    }
}

fn credential_refused(e: CredentialError) -> Response {
    match e {
        CredentialError::Locked => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "locked",
            "Too many failed attempts; the account is locked for a while.",
        )
        .into_response(),
        _ => unauthenticated(),
    }
}

/// `POST /auth/token`.
#[utoipa::path(post, path = "/auth/token", tag = "auth",
    responses((status = 200, description = "A 15-minute JWT", body = TokenResponse),
              (status = 400, description = "Malformed request", body = Problem),
              (status = 401, description = "Credential refused", body = Problem),
              (status = 429, description = "Locked after repeated failures", body = Problem)))]
pub async fn token(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    conn: Option<Extension<ConnInfo>>,
    identity: Option<Extension<Identity>>,
    bearer_jwt: Option<Extension<super::auth::BearerJwt>>,
    body: Bytes,
) -> Response {
    let conn = conn.map(|Extension(c)| c);
    let identity = identity
        .map(|Extension(i)| i)
        .unwrap_or(Identity::Anonymous);
    let (principal, requested) = match identity {
        Identity::Failed { .. } => return unauthenticated(),
        Identity::Authenticated(p) => {
            // A token made from an API key carries `amr: apikey`: the marker, not the
            // principal's method, says a bearer JWT was presented.
            if p.method == AuthMethod::Jwt || bearer_jwt.is_some() {
                return bad_request(
                    "A token cannot be exchanged for another token; present an API key, a client certificate or admin credentials.",
                );
            }
            let options: ExchangeOptions = if body.is_empty() {
                ExchangeOptions::default()
            } else {
                match serde_json::from_slice(&body) {
                    Ok(o) => o,
                    Err(_) => {
                        return bad_request(
                            "The body must be empty or a JSON object with an optional purpose_of_use.",
                        );
                    }
                }
            };
            (p, options.purpose_of_use)
        }
        Identity::Anonymous => {
            let Ok(login) = serde_json::from_slice::<AdminLogin>(&body) else {
                return bad_request(
                    "Present an API key (X-API-Key), a client certificate, or a JSON body with username, password and totp.",
                );
            };
            let totp = login.totp.expose_secret().trim().to_string();
            match st
                .access
                .login_admin(
                    &login.username,
                    &login.password,
                    &totp,
                    &meta(conn.as_ref(), &slot),
                )
                .await
            {
                Ok(p) => (p, login.purpose_of_use),
                Err(AccessError::Credential(e)) => return credential_refused(e),
                Err(AccessError::InvalidArgument(_)) => return unauthenticated(),
                Err(e) => return access_failure(&e, &slot.request_id),
            }
        }
    };
    let purpose = match purpose(requested.as_deref()) {
        Ok(p) => p,
        Err(detail) => return bad_request(detail),
    };
    match st.access.issue_token(&principal, purpose).await {
        Ok(t) => (
            StatusCode::OK,
            axum::Json(TokenResponse {
                access_token: t.token.expose_secret().to_string(),
                token_type: "Bearer".into(),
                expires_in: t.expires_in,
            }),
        )
            .into_response(),
        Err(e) => access_failure(&e, &slot.request_id),
    }
}

/// `GET /.well-known/jwks.json`.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "JSON Web Key Set (Ed25519 public keys)")))]
pub async fn jwks(State(st): State<Arc<AppState>>) -> Response {
    match st.access.jwks().await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading the signing keys failed");
            Problem::for_status(StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
    }
}

/// `POST /auth/break-glass` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakGlassBody {
    patient_id: phi::Sensitive<String>,
    reason: phi::Sensitive<String>,
}

/// The answer of `POST /auth/break-glass`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BreakGlassAnswer {
    /// The grant's id.
    pub grant_id: String,
    /// When it ends (RFC 3339).
    pub expires_at: String,
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// `POST /auth/break-glass`.
#[utoipa::path(post, path = "/auth/break-glass", tag = "auth",
    request_body(content = Object, content_type = "application/json",
        description = "`patient_id` and `reason` (why emergency access is needed)"),
    responses((status = 201, description = "Emergency access granted", body = BreakGlassAnswer),
              (status = 400, description = "Malformed request or no reason", body = Problem),
              (status = 401, description = "Not authenticated", body = Problem),
              (status = 403, description = "This principal may not ask for emergency access", body = Problem),
              (status = 404, description = "No such patient", body = Problem)))]
pub async fn break_glass(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(principal): Extension<Principal>,
    conn: Option<Extension<ConnInfo>>,
    body: Bytes,
) -> Response {
    let Ok(b) = serde_json::from_slice::<BreakGlassBody>(&body) else {
        return bad_request(
            "The body must be a JSON object with patient_id and reason (both strings).",
        );
    };
    if b.reason.expose().trim().is_empty() {
        return bad_request("Emergency access needs a reason.");
    }
    match patient_exists(&st, &b.patient_id).await {
        Ok(true) => {}
        Ok(false) => return Problem::for_status(StatusCode::NOT_FOUND).into_response(),
        Err(e) => return internal("reading the store", &e),
    }
    let scope = match care_team(&st, &b.patient_id).await {
        Ok(s) => s,
        Err(e) => return internal("reading the store", &e),
    };
    let conn = conn.map(|Extension(c)| c);
    match st
        .access
        .break_glass(&principal, &scope, &b.reason, &meta(conn.as_ref(), &slot))
        .await
    {
        Ok(g) => (
            StatusCode::CREATED,
            axum::Json(BreakGlassAnswer {
                grant_id: g.id,
                expires_at: rfc3339(g.expires_at),
            }),
        )
            .into_response(),
        Err(AccessError::InvalidArgument(_)) => Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "This principal may not ask for emergency access.",
        )
        .into_response(),
        Err(e @ (AccessError::MissingReason | AccessError::MissingPurpose)) => {
            let mut p = Problem::new(StatusCode::BAD_REQUEST, "bad-request", "");
            p.detail = Some(e.to_string());
            p.into_response()
        }
        Err(e) => access_failure(&e, &slot.request_id),
    }
}

/// One break-glass grant for review.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BreakGlassReview {
    /// Grant id.
    pub id: String,
    /// Who got emergency access.
    pub principal: String,
    /// The patient as the audit log's keyed hash.
    pub patient: String,
    /// When it was granted (RFC 3339).
    pub created_at: String,
    /// When it ends (RFC 3339).
    pub expires_at: String,
    /// Whether it is still in force.
    pub active: bool,
}

/// `GET /admin/break-glass`.
#[utoipa::path(get, path = "/admin/break-glass", tag = "admin",
    responses((status = 200, description = "Break-glass grants, newest first", body = [BreakGlassReview]),
              (status = 401, description = "Not authenticated", body = Problem),
              (status = 403, description = "Not an admin", body = Problem)))]
pub async fn review_break_glass(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
) -> Response {
    match st.access.list_break_glass(None).await {
        Ok(list) => axum::Json(
            list.into_iter()
                .map(|r| BreakGlassReview {
                    id: r.id,
                    principal: r.principal,
                    patient: r.patient,
                    created_at: rfc3339(r.created_at),
                    expires_at: rfc3339(r.expires_at),
                    active: r.active,
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => access_failure(&e, &slot.request_id),
    }
}

/// `POST /auth/enroll` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    bootstrap_secret: SecretString,
    username: String,
    password: SecretString,
}

/// The answer of `POST /auth/enroll`: the TOTP secret, shown once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Enrollment {
    /// The new admin's principal id.
    pub principal: String,
    /// The TOTP secret (base32), for an authenticator app. Shown once.
    pub totp_secret: String,
    /// The same as an `otpauth://` URI.
    pub otpauth_uri: String,
}

impl Enrollment {
    /// The `201 Created` answer that shows a new admin's TOTP secret, once.
    pub fn created(e: access::AdminEnrollment) -> Response {
        (
            StatusCode::CREATED,
            axum::Json(Self {
                principal: e.principal_id,
                totp_secret: e.totp_secret.expose_secret().to_string(),
                otpauth_uri: e.otpauth_uri.expose_secret().to_string(),
            }),
        )
            .into_response()
    }
}

/// `POST /auth/enroll`: the first admin, with the one-time bootstrap secret printed at start.
#[utoipa::path(post, path = "/auth/enroll", tag = "auth",
    responses((status = 201, description = "The first admin; its TOTP secret, shown once", body = Enrollment),
              (status = 400, description = "Malformed request or weak password", body = Problem),
              (status = 401, description = "Bootstrap secret refused", body = Problem)))]
pub async fn enroll(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    conn: Option<Extension<ConnInfo>>,
    body: Bytes,
) -> Response {
    let Ok(b) = serde_json::from_slice::<EnrollBody>(&body) else {
        return bad_request(
            "The body must be a JSON object with bootstrap_secret, username and password.",
        );
    };
    let conn = conn.map(|Extension(c)| c);
    match st
        .access
        .enroll_admin(
            &b.bootstrap_secret,
            &b.username,
            &b.password,
            &meta(conn.as_ref(), &slot),
        )
        .await
    {
        Ok(e) => Enrollment::created(e),
        Err(AccessError::Credential(e)) => credential_refused(e),
        Err(e @ AccessError::InvalidArgument(_)) => {
            let mut p = Problem::new(StatusCode::BAD_REQUEST, "bad-request", "");
            p.detail = Some(e.to_string());
            p.into_response()
        }
        Err(AccessError::Conflict(_)) => Problem::new(
            StatusCode::CONFLICT,
            "conflict",
            "An admin is already enrolled; the bootstrap secret is no longer valid.",
        )
        .into_response(),
        Err(e) => access_failure(&e, &slot.request_id),
    }
}
