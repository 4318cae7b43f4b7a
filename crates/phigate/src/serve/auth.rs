//! The authenticate layer: establishes who is asking, records the attempt, and never refuses
//! a bad credential on its own. Refusing is the authorize layer's job, after the rate limiter
//! has charged the source address, so that guessing credentials is rate limited like
//! everything else. (It does refuse with 503 when the audit log cannot record the attempt:
//! no audit, no answer.)
//!
//! Methods:
//! * **mTLS** (the second listener): the listener has already verified the client certificate
//!   chain against the configured CA and mapped its SAN to `service:<name>`, role `service`;
//!   a certificate without a service SAN never gets this far (the connection is closed). This
//!   layer records the authentication event itself.
//! * **API keys** (`Authorization: Bearer phg_…` or `X-API-Key: phg_…`): verified by the
//!   `access` crate against its database at every request (revocation takes effect at once on
//!   every instance); the crate audits the attempt.
//! * **Bearer JWTs** (any other bearer value): validated by the `access` crate (EdDSA only,
//!   known `kid`, `exp`/`nbf` with the configured leeway, `aud`, `iss`, revoked `jti`; verified
//!   tokens are cached, revocation is checked at every request); this layer records the
//!   attempt in the request's audit events, written with the request's other events in one
//!   group commit before the response leaves. Such requests carry the [`BearerJwt`] marker:
//!   a JWT is never exchangeable for another one at `POST /auth/token`, whatever its `amr`.
//! * Any other `Authorization` scheme is a malformed credential, audited here.

use std::sync::Arc;

use access::{AccessError, RequestMeta, Role, TokenVerdict};
use audit::{AuthFailureReason, AuthMethod, AuthenticationAttempt, Event, Outcome};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use secrecy::SecretString;

use super::problem::Problem;
use super::reqctx::{ConnInfo, Identity, ListenerKind, Principal, RequestAudit};
use super::state::AppState;

/// A credential presented in the request headers.
#[derive(Debug)]
pub enum Presented {
    /// An API key (`phg_…`).
    ApiKey(SecretString),
    /// A bearer token (a JWT, or garbage).
    Bearer(SecretString),
    /// An `Authorization` header that is not a bearer credential.
    Malformed,
}

/// Reads the credential from the headers, if any. `X-API-Key` wins over `Authorization`.
pub fn presented(headers: &HeaderMap) -> Option<Presented> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(match v.to_str() {
            Ok(k) if !k.trim().is_empty() => Presented::ApiKey(SecretString::from(k.trim())),
            _ => Presented::Malformed,
        });
    }
    let v = headers.get(AUTHORIZATION)?;
    let Ok(v) = v.to_str() else {
        return Some(Presented::Malformed);
    };
    let Some((scheme, value)) = v.trim().split_once(' ') else {
        return Some(Presented::Malformed);
    };
    let value = value.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || value.is_empty() {
        return Some(Presented::Malformed);
    }
    Some(if value.starts_with(access::API_KEY_PREFIX) {
        Presented::ApiKey(SecretString::from(value))
    } else {
        Presented::Bearer(SecretString::from(value))
    })
}

/// Marks a request whose credential was a bearer JWT (whatever the token's `amr` says about
/// how it was first obtained): `POST /auth/token` refuses to exchange it for a fresh token, so
/// a stolen token cannot outlive its 15 minutes.
#[derive(Debug, Clone, Copy)]
pub struct BearerJwt;

/// The principal of an mTLS connection's service.
pub fn mtls_identity(service: Option<&str>) -> Identity {
    match service.and_then(|name| {
        Principal::new(
            format!("service:{name}"),
            vec![Role::Service],
            AuthMethod::Mtls,
        )
        .ok()
    }) {
        Some(p) => Identity::Authenticated(p),
        None => Identity::Failed {
            method: AuthMethod::Mtls,
            reason: AuthFailureReason::UntrustedCertificate,
        },
    }
}

/// The problem answered when the access service itself failed (not a refusal).
pub fn access_failure(e: &AccessError, request_id: &str) -> Response {
    let mut problem = match e {
        AccessError::AuditUnavailable(_) => Problem::audit_unavailable(),
        _ => {
            tracing::error!(error = %e, request_id, "access service failed");
            Problem::for_status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
        }
    };
    problem.request_id = Some(request_id.to_string());
    problem.into_response()
}

/// The authenticate layer.
pub async fn authenticate(
    State(st): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let slot = req.extensions().get::<Arc<RequestAudit>>().cloned();
    let source_address = conn
        .as_ref()
        .map(|c| c.peer.ip().to_string())
        .unwrap_or_default();
    let request_id = slot
        .as_ref()
        .map(|s| s.request_id.clone())
        .unwrap_or_default();
    let record_here = |identity: &Identity| {
        let Some(slot) = &slot else { return };
        let attempt = match identity {
            Identity::Anonymous => return,
            Identity::Authenticated(p) => AuthenticationAttempt {
                method: p.method,
                principal: Some(p.id.clone()),
                source_address: source_address.clone(),
                outcome: Outcome::Success,
                failure_reason: None,
                request_id: Some(slot.request_id.clone()),
            },
            Identity::Failed { method, reason } => AuthenticationAttempt {
                method: *method,
                principal: None,
                source_address: source_address.clone(),
                outcome: Outcome::Failure,
                failure_reason: Some(*reason),
                request_id: Some(slot.request_id.clone()),
            },
        };
        slot.record(Event::Authentication(attempt));
    };

    let mut bearer_jwt = false;
    let identity = match conn.as_ref() {
        Some(c) if c.listener == ListenerKind::Mtls => {
            let identity = mtls_identity(c.service.as_deref());
            record_here(&identity);
            identity
        }
        _ => {
            let meta = RequestMeta::new(source_address.clone(), Some(request_id.clone()));
            match presented(req.headers()) {
                None => Identity::Anonymous,
                Some(Presented::Malformed) => {
                    let identity = Identity::Failed {
                        method: AuthMethod::Jwt,
                        reason: AuthFailureReason::Malformed,
                    };
                    record_here(&identity);
                    identity
                }
                Some(Presented::ApiKey(key)) => {
                    match st.access.authenticate_api_key(&key, &meta).await {
                        Ok(p) => Identity::Authenticated(p),
                        Err(AccessError::Credential(e)) => Identity::Failed {
                            method: AuthMethod::ApiKey,
                            reason: e.audit_reason(),
                        },
                        Err(e) => return access_failure(&e, &request_id),
                    }
                }
                Some(Presented::Bearer(token)) => {
                    bearer_jwt = true;
                    // Checked without the crate's own audit append: the attempt goes into this
                    // request's events, written with the rest in one group commit before the
                    // response leaves (503 if it cannot be).
                    let (identity, principal, reason) = match st.access.verify_token(&token).await {
                        Ok(TokenVerdict::Valid(p)) => {
                            let id = p.id.clone();
                            (Identity::Authenticated(p), Some(id), None)
                        }
                        Ok(TokenVerdict::Refused { subject, error }) => (
                            Identity::Failed {
                                method: AuthMethod::Jwt,
                                reason: error.audit_reason(),
                            },
                            subject,
                            Some(error.audit_reason()),
                        ),
                        Err(e) => return access_failure(&e, &request_id),
                    };
                    if let Some(slot) = &slot {
                        slot.record(Event::Authentication(AuthenticationAttempt {
                            method: AuthMethod::Jwt,
                            principal,
                            source_address: source_address.clone(),
                            outcome: if reason.is_none() {
                                Outcome::Success
                            } else {
                                Outcome::Failure
                            },
                            failure_reason: reason,
                            request_id: Some(slot.request_id.clone()),
                        }));
                    }
                    identity
                }
            }
        }
    };
    if bearer_jwt {
        req.extensions_mut().insert(BearerJwt);
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use secrecy::ExposeSecret as _;

    #[test]
    fn an_mtls_connection_with_a_service_san_is_that_service() {
        let Identity::Authenticated(p) = mtls_identity(Some("billing")) else {
            panic!("not authenticated")
        };
        assert_eq!(p.id, "service:billing");
        assert_eq!(p.roles, vec![Role::Service]);
        assert_eq!(p.method, AuthMethod::Mtls);
        assert_eq!(
            mtls_identity(None),
            Identity::Failed {
                method: AuthMethod::Mtls,
                reason: AuthFailureReason::UntrustedCertificate
            }
        );
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn credentials_are_told_apart_by_header_and_prefix() {
        assert!(presented(&HeaderMap::new()).is_none());
        let Some(Presented::ApiKey(k)) = presented(&with("x-api-key", "phg_abc_def")) else {
            panic!("X-API-Key is an API key")
        };
        assert_eq!(k.expose_secret(), "phg_abc_def");
        assert!(matches!(
            presented(&with("authorization", "Bearer phg_abc_def")),
            Some(Presented::ApiKey(_))
        ));
        let Some(Presented::Bearer(t)) = presented(&with("authorization", "bearer a.b.c")) else {
            panic!("a bearer JWT")
        };
        assert_eq!(t.expose_secret(), "a.b.c");
        for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "token"] {
            assert!(
                matches!(
                    presented(&with("authorization", bad)),
                    Some(Presented::Malformed)
                ),
                "{bad:?} is malformed"
            );
        }
    }
}
