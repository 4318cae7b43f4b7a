//! The authenticate layer: establishes who is asking, records the attempt, and never refuses
//! on its own. Refusing is the authorize layer's job, after the rate limiter has charged the
//! source address, so that guessing credentials is rate limited like everything else.
//!
//! Methods:
//! * **mTLS** (the second listener): the listener has already verified the client certificate
//!   chain against the configured CA and mapped its SAN to `service:<name>`; a certificate
//!   without a service SAN never gets this far (the connection is closed).
//! * **Bearer tokens** (the public listener): verified by the `access` crate's token service.
//!   This build has no token service wired in yet, so every presented token is refused as a
//!   bad credential (and audited as such); nothing is ever accepted without verification.

use std::sync::Arc;

use audit::{AuthFailureReason, AuthMethod, AuthenticationAttempt, Event, Outcome};
use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use super::reqctx::{ConnInfo, Identity, ListenerKind, Principal, RequestAudit};

/// Works out the identity of a request from its connection and headers.
pub fn identify(conn: Option<&ConnInfo>, has_authorization: bool) -> Identity {
    match conn {
        Some(c) if c.listener == ListenerKind::Mtls => match &c.service {
            Some(name) => Identity::Authenticated(Principal {
                id: format!("service:{name}"),
                roles: vec!["service".to_string()],
                method: AuthMethod::Mtls,
            }),
            None => Identity::Failed {
                method: AuthMethod::Mtls,
                reason: AuthFailureReason::UntrustedCertificate,
            },
        },
        _ if has_authorization => Identity::Failed {
            method: AuthMethod::Jwt,
            reason: AuthFailureReason::BadCredential,
        },
        _ => Identity::Anonymous,
    }
}

/// The authenticate layer.
pub async fn authenticate(mut req: Request, next: Next) -> Response {
    let conn = req.extensions().get::<ConnInfo>().cloned();
    let identity = identify(conn.as_ref(), req.headers().contains_key(AUTHORIZATION));
    if let Some(slot) = req.extensions().get::<Arc<RequestAudit>>() {
        let source_address = conn
            .as_ref()
            .map(|c| c.peer.ip().to_string())
            .unwrap_or_default();
        let attempt = match &identity {
            Identity::Anonymous => None,
            Identity::Authenticated(p) => Some(AuthenticationAttempt {
                method: p.method,
                principal: Some(p.id.clone()),
                source_address,
                outcome: Outcome::Success,
                failure_reason: None,
                request_id: Some(slot.request_id.clone()),
            }),
            Identity::Failed { method, reason } => Some(AuthenticationAttempt {
                method: *method,
                principal: None,
                source_address,
                outcome: Outcome::Failure,
                failure_reason: Some(*reason),
                request_id: Some(slot.request_id.clone()),
            }),
        };
        if let Some(a) = attempt {
            slot.record(Event::Authentication(a));
        }
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(listener: ListenerKind, service: Option<&str>) -> ConnInfo {
        ConnInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            listener,
            service: service.map(str::to_string),
        }
    }

    #[test]
    fn an_mtls_connection_with_a_service_san_is_that_service() {
        let id = identify(Some(&conn(ListenerKind::Mtls, Some("billing"))), false);
        let Identity::Authenticated(p) = id else {
            panic!("not authenticated")
        };
        assert_eq!(p.id, "service:billing");
        assert_eq!(p.method, AuthMethod::Mtls);
    }

    #[test]
    fn no_credential_is_anonymous_and_an_unverifiable_token_fails() {
        assert_eq!(
            identify(Some(&conn(ListenerKind::Public, None)), false),
            Identity::Anonymous
        );
        assert_eq!(
            identify(Some(&conn(ListenerKind::Public, None)), true),
            Identity::Failed {
                method: AuthMethod::Jwt,
                reason: AuthFailureReason::BadCredential
            }
        );
    }
}
