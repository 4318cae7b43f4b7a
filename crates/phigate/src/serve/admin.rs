//! The admin API: API keys, admin users and the Cedar policy set, backed by the `access`
//! crate.
//!
//! Every route here is classified [`super::authz::RouteClass::Admin`]: the authorize layer
//! has already checked the principal, asked the policy for the route's action
//! (`manage_keys`, `manage_users`, `manage_policies`) and verified the TOTP step-up code in
//! `X-TOTP-Code` (single use per time step, failures counted toward the lockout, audited)
//! before a handler runs. So every call writes at least the token validation and the step-up
//! to the audit log, and every change writes its own event, by the access crate, before it
//! takes effect:
//!
//! * keys: `key_lifecycle` (generated, rotated, retired);
//! * users: `config_change` of `access.admins` (added, disable/enable/unlock with before and
//!   after);
//! * policies: `config_change` of `access.policies` with the text and SHA-256 before and after.
//!
//! Bad input (malformed JSON, unknown fields, an unknown role, a bad name, an unknown user or
//! key) answers a problem document naming what is wrong, without echoing the value, and
//! changes nothing. Secrets (new API keys, TOTP secrets) are in the `201` answer only, once.
//!
//! Decisions:
//! * API keys cannot carry the admin role (the access crate refuses it): admin access always
//!   needs a password and TOTP.
//! * An admin cannot disable their own account, and cannot install a policy set under which
//!   they could no longer manage policies (422): the API must never lock out its last repairer.
//! * A rotation keeps the old key valid for an overlap window (default 24 hours, at most 30
//!   days, never beyond the old key's own expiry).

use std::sync::Arc;

use access::{AccessError, AdminChange, ApiKeyInfo, Role};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use super::access_routes::Enrollment;
use super::auth::access_failure;
use super::problem::Problem;
use super::reqctx::{Principal, RequestAudit};
use super::state::AppState;

/// Default overlap of a key rotation (24 hours).
pub const DEFAULT_ROTATION_OVERLAP_SECS: u64 = 24 * 3600;
/// Longest overlap of a key rotation (30 days).
pub const MAX_ROTATION_OVERLAP_SECS: u64 = 30 * 24 * 3600;

pub(crate) fn rfc3339(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub(crate) fn bad_request(detail: &'static str) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, "bad-request", detail).into_response()
}

fn problem_with(status: StatusCode, slug: &'static str, detail: String) -> Response {
    let mut p = Problem::new(status, slug, "");
    p.detail = Some(detail);
    p.into_response()
}

/// Maps an access error of an admin operation to its answer. The messages of these variants
/// are fixed sentences of the access crate (or, for an invalid policy, the Cedar validator's
/// message about the text the admin sent); none echoes a secret or PHI.
fn failure(e: AccessError, request_id: &str) -> Response {
    match e {
        AccessError::InvalidArgument(m) => {
            problem_with(StatusCode::BAD_REQUEST, "bad-request", format!("{m}."))
        }
        AccessError::NotFound(m) => {
            problem_with(StatusCode::NOT_FOUND, "not-found", format!("{m}."))
        }
        AccessError::Conflict(m) => problem_with(StatusCode::CONFLICT, "conflict", format!("{m}.")),
        AccessError::InvalidPolicy(m) => problem_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-policy",
            format!("The policy set was refused and the previous one stays in force: {m}"),
        ),
        other => access_failure(&other, request_id),
    }
}

/// The roles named; the error is the detail sentence of the 400.
fn parse_roles(names: &[String]) -> Result<Vec<Role>, &'static str> {
    if names.is_empty() {
        return Err("roles must list at least one role.");
    }
    names
        .iter()
        .map(|n| Role::parse(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            "roles must be among clinician, care_coordinator, analyst, auditor and service (admin access needs a password and TOTP, not a key)."
        })
}

// ---------------------------------------------------------------------------------------------
// API keys
// ---------------------------------------------------------------------------------------------

/// `POST /admin/keys` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Service name: 1-64 of `a-z 0-9 . _ -`; the key's principal is `service:<name>`.
    pub service: String,
    /// Roles the key carries (not `admin`).
    pub roles: Vec<String>,
    /// Lifetime in seconds; none: until revoked.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// `POST /admin/keys/{key_id}/rotate` body (may be empty).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old key keeps working, seconds (default 86,400; at most 2,592,000).
    #[serde(default)]
    pub overlap_secs: Option<u64>,
    /// Lifetime of the new key in seconds (default: the old key's lifetime, or none).
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// A new API key. `key` is shown this once and never stored.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewKey {
    /// Public id.
    pub id: String,
    /// The whole key, `phg_<id>_<secret>`.
    pub key: String,
    /// Service.
    pub service: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Expiry (RFC 3339), if any.
    pub expires_at: Option<String>,
    /// On a rotation: the key this one replaces (valid until the end of the overlap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// An API key as listed (never its secret).
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyView {
    /// Public id.
    pub id: String,
    /// Service.
    pub service: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Creation (RFC 3339).
    pub created_at: String,
    /// Expiry, including the end of a rotation overlap (RFC 3339).
    pub expires_at: Option<String>,
    /// Revocation (RFC 3339).
    pub revoked_at: Option<String>,
    /// Last successful use, to the minute (RFC 3339).
    pub last_used_at: Option<String>,
    /// The key that replaced it in a rotation.
    pub replaced_by: Option<String>,
    /// Whether it authenticates now.
    pub usable: bool,
}

fn key_view(k: ApiKeyInfo, now: i64) -> KeyView {
    KeyView {
        usable: k.is_usable(now),
        id: k.id,
        service: k.service,
        roles: k.roles.iter().map(|r| r.as_str().to_string()).collect(),
        created_at: rfc3339(k.created_at),
        expires_at: k.expires_at.map(rfc3339),
        revoked_at: k.revoked_at.map(rfc3339),
        last_used_at: k.last_used_at.map(rfc3339),
        replaced_by: k.replaced_by,
    }
}

fn new_key(k: access::NewApiKey, replaces: Option<String>) -> Response {
    (
        StatusCode::CREATED,
        axum::Json(NewKey {
            id: k.id,
            key: k.secret.expose_secret().to_string(),
            service: k.service,
            roles: k.roles.iter().map(|r| r.as_str().to_string()).collect(),
            expires_at: k.expires_at.map(rfc3339),
            replaces,
        }),
    )
        .into_response()
}

/// `POST /admin/keys`.
#[utoipa::path(post, path = "/admin/keys", tag = "admin", request_body = CreateKey,
    params(("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 201, description = "The key, shown once", body = NewKey),
              (status = 400, description = "Malformed body, bad service name or role", body = Problem),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem)))]
pub async fn create_key(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(admin): Extension<Principal>,
    body: Bytes,
) -> Response {
    let Ok(b) = serde_json::from_slice::<CreateKey>(&body) else {
        return bad_request(
            "The body must be a JSON object with service (string), roles (array of strings) and optional expires_in_secs (integer).",
        );
    };
    let roles = match parse_roles(&b.roles) {
        Ok(r) => r,
        Err(detail) => return bad_request(detail),
    };
    match st
        .access
        .create_api_key(&admin.id, &b.service, &roles, b.expires_in_secs)
        .await
    {
        Ok(k) => new_key(k, None),
        Err(e) => failure(e, &slot.request_id),
    }
}

/// `GET /admin/keys`.
#[utoipa::path(get, path = "/admin/keys", tag = "admin",
    params(("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 200, description = "Every API key, newest first", body = [KeyView]),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem)))]
pub async fn list_keys(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    match st.access.list_api_keys(None).await {
        Ok(keys) => axum::Json(
            keys.into_iter()
                .map(|k| key_view(k, now))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => failure(e, &slot.request_id),
    }
}

/// `DELETE /admin/keys/{key_id}`: revocation, effective at once on every instance.
#[utoipa::path(delete, path = "/admin/keys/{key_id}", tag = "admin",
    params(("key_id" = String, Path, description = "The key's public id"),
           ("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 204, description = "Revoked"),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem),
              (status = 404, description = "No such key", body = Problem),
              (status = 409, description = "Already revoked", body = Problem)))]
pub async fn revoke_key(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(admin): Extension<Principal>,
    Path(key_id): Path<String>,
) -> Response {
    match st.access.revoke_api_key(&admin.id, &key_id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e, &slot.request_id),
    }
}

/// `POST /admin/keys/{key_id}/rotate`.
#[utoipa::path(post, path = "/admin/keys/{key_id}/rotate", tag = "admin", request_body = RotateKey,
    params(("key_id" = String, Path, description = "The key's public id"),
           ("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 201, description = "The successor key, shown once", body = NewKey),
              (status = 400, description = "Malformed body or overlap too long", body = Problem),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem),
              (status = 404, description = "No such key", body = Problem),
              (status = 409, description = "Revoked, expired or already rotated", body = Problem)))]
pub async fn rotate_key(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(admin): Extension<Principal>,
    Path(key_id): Path<String>,
    body: Bytes,
) -> Response {
    let b = if body.iter().all(u8::is_ascii_whitespace) {
        RotateKey::default()
    } else {
        match serde_json::from_slice::<RotateKey>(&body) {
            Ok(b) => b,
            Err(_) => {
                return bad_request(
                    "The body must be empty or a JSON object with optional overlap_secs and expires_in_secs (integers).",
                );
            }
        }
    };
    let overlap = b.overlap_secs.unwrap_or(DEFAULT_ROTATION_OVERLAP_SECS);
    if overlap > MAX_ROTATION_OVERLAP_SECS {
        return bad_request("overlap_secs must be at most 2592000 (30 days).");
    }
    match st
        .access
        .rotate_api_key(&admin.id, &key_id, overlap, b.expires_in_secs)
        .await
    {
        Ok(k) => new_key(k, Some(key_id)),
        Err(e) => failure(e, &slot.request_id),
    }
}

// ---------------------------------------------------------------------------------------------
// Admin users
// ---------------------------------------------------------------------------------------------

/// `POST /admin/users` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 1-64 of `a-z 0-9 . _ -`; the principal is `admin:<username>`.
    pub username: String,
    /// At least 12 characters.
    #[schema(value_type = String)]
    pub password: SecretString,
}

/// An admin user as listed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    /// User name.
    pub username: String,
    /// Principal id.
    pub principal: String,
    /// Creation (RFC 3339).
    pub created_at: String,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// When it was disabled (RFC 3339).
    pub disabled_at: Option<String>,
    /// Whether it is locked after repeated failures now.
    pub locked: bool,
    /// End of the lockout (RFC 3339).
    pub locked_until: Option<String>,
    /// Failures counted toward the next lockout.
    pub failed_count: i64,
}

fn user_view(a: access::AdminInfo) -> UserView {
    UserView {
        disabled: a.disabled_at.is_some(),
        locked: a.locked_until.is_some(),
        username: a.username,
        principal: a.principal,
        created_at: rfc3339(a.created_at),
        disabled_at: a.disabled_at.map(rfc3339),
        locked_until: a.locked_until.map(rfc3339),
        failed_count: a.failed_count,
    }
}

/// `POST /admin/users`: another admin, with a new TOTP secret shown once.
#[utoipa::path(post, path = "/admin/users", tag = "admin", request_body = CreateUser,
    params(("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 201, description = "The new admin's TOTP enrollment, shown once", body = Enrollment),
              (status = 400, description = "Malformed body, bad username or short password", body = Problem),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem),
              (status = 409, description = "The username exists", body = Problem)))]
pub async fn create_user(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(admin): Extension<Principal>,
    body: Bytes,
) -> Response {
    let Ok(b) = serde_json::from_slice::<CreateUser>(&body) else {
        return bad_request("The body must be a JSON object with username and password (strings).");
    };
    match st
        .access
        .create_admin(&admin, &b.username, &b.password)
        .await
    {
        Ok(e) => Enrollment::created(e),
        Err(e) => failure(e, &slot.request_id),
    }
}

/// `GET /admin/users`.
#[utoipa::path(get, path = "/admin/users", tag = "admin",
    params(("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 200, description = "Every admin user", body = [UserView]),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem)))]
pub async fn list_users(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
) -> Response {
    match st.access.list_admins().await {
        Ok(list) => axum::Json(list.into_iter().map(user_view).collect::<Vec<_>>()).into_response(),
        Err(e) => failure(e, &slot.request_id),
    }
}

async fn change_user(
    st: &AppState,
    slot: &RequestAudit,
    admin: &Principal,
    username: &str,
    change: AdminChange,
) -> Response {
    match st.access.change_admin(admin, username, change).await {
        Ok(info) => axum::Json(user_view(info)).into_response(),
        Err(e) => failure(e, &slot.request_id),
    }
}

/// `POST /admin/users/{username}/disable`: no sign-in and no admin operation until enabled.
#[utoipa::path(post, path = "/admin/users/{username}/disable", tag = "admin",
    params(("username" = String, Path, description = "The admin's user name"),
           ("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 200, description = "The account, disabled", body = UserView),
              (status = 400, description = "Bad user name", body = Problem),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem),
              (status = 404, description = "No such admin", body = Problem),
              (status = 409, description = "Already disabled, or the caller's own account", body = Problem)))]
pub async fn disable_user(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(admin): Extension<Principal>,
    Path(username): Path<String>,
) -> Response {
    change_user(&st, &slot, &admin, &username, AdminChange::Disable).await
}

/// `POST /admin/users/{username}/enable`.
#[utoipa::path(post, path = "/admin/users/{username}/enable", tag = "admin",
    params(("username" = String, Path, description = "The admin's user name"),
           ("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 200, description = "The account, enabled", body = UserView),
              (status = 400, description = "Bad user name", body = Problem),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem),
              (status = 404, description = "No such admin", body = Problem),
              (status = 409, description = "Not disabled", body = Problem)))]
pub async fn enable_user(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(admin): Extension<Principal>,
    Path(username): Path<String>,
) -> Response {
    change_user(&st, &slot, &admin, &username, AdminChange::Enable).await
}

/// `POST /admin/users/{username}/unlock`: ends a lockout and resets the failure count.
#[utoipa::path(post, path = "/admin/users/{username}/unlock", tag = "admin",
    params(("username" = String, Path, description = "The admin's user name"),
           ("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 200, description = "The account, unlocked", body = UserView),
              (status = 400, description = "Bad user name", body = Problem),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem),
              (status = 404, description = "No such admin", body = Problem)))]
pub async fn unlock_user(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(admin): Extension<Principal>,
    Path(username): Path<String>,
) -> Response {
    change_user(&st, &slot, &admin, &username, AdminChange::Unlock).await
}

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

/// The policy set in force.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    /// Cedar text.
    pub text: String,
    /// SHA-256 of the text (hex).
    pub sha256: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Who made it (`system` for the shipped defaults).
    pub updated_by: String,
}

/// `PUT /admin/policies` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPolicies {
    /// The complete new Cedar policy set (every policy with a unique `@id`).
    pub text: String,
}

fn policy_view(p: access::PolicyInfo) -> PolicyView {
    PolicyView {
        text: p.text,
        sha256: p.sha256,
        updated_at: rfc3339(p.updated_at),
        updated_by: p.updated_by,
    }
}

/// `GET /admin/policies`.
#[utoipa::path(get, path = "/admin/policies", tag = "admin",
    params(("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 200, description = "The policy set in force with its SHA-256", body = PolicyView),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem)))]
pub async fn get_policies(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
) -> Response {
    match st.access.policies().await {
        Ok(p) => axum::Json(policy_view(p)).into_response(),
        Err(e) => failure(e, &slot.request_id),
    }
}

/// `PUT /admin/policies`: validated against the schema with Cedar's validator; audited as a
/// `config_change` with the before and after text and SHA-256; in force on every instance at
/// its next decision.
#[utoipa::path(put, path = "/admin/policies", tag = "admin", request_body = PutPolicies,
    params(("X-TOTP-Code" = String, Header, description = "A fresh TOTP code of the admin")),
    responses((status = 200, description = "The new policy set, in force", body = PolicyView),
              (status = 400, description = "Malformed body", body = Problem),
              (status = 401, description = "Not authenticated or no valid TOTP code", body = Problem),
              (status = 403, description = "Not permitted", body = Problem),
              (status = 422, description = "Refused by the Cedar parser or validator, or it would remove the caller's own manage_policies permission; the old set stays", body = Problem)))]
pub async fn put_policies(
    State(st): State<Arc<AppState>>,
    Extension(slot): Extension<Arc<RequestAudit>>,
    Extension(admin): Extension<Principal>,
    body: Bytes,
) -> Response {
    let Ok(b) = serde_json::from_slice::<PutPolicies>(&body) else {
        return bad_request("The body must be a JSON object with text (the Cedar policy set).");
    };
    match st.access.replace_policies(&admin, &b.text).await {
        Ok(p) => axum::Json(policy_view(p)).into_response(),
        Err(e) => failure(e, &slot.request_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_an_unknown_role_is_refused_without_echo() {
        let ok = parse_roles(&["clinician".into(), "service".into()]).unwrap();
        assert_eq!(ok, vec![Role::Clinician, Role::Service]);
        assert!(parse_roles(&[]).is_err());
        let refused = parse_roles(&["CANARY-ROLE-Smith".into()]).unwrap_err();
        assert!(!refused.contains("CANARY"));
        assert!(refused.contains("clinician"));
    }

    #[test]
    fn access_errors_map_to_their_statuses() {
        let id = "req";
        assert_eq!(
            failure(AccessError::NotFound("no API key with this id"), id).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            failure(AccessError::Conflict("already revoked"), id).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            failure(AccessError::InvalidPolicy("unexpected token".into()), id).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            failure(AccessError::InvalidArgument("bad name".into()), id).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
