//! The audit layer: gives the request its id, lets the inner layers collect their events,
//! and writes them through the `audit` crate **before** the response is released. If the log
//! cannot take them (the append's transaction failed), the prepared response is dropped and
//! the client gets 503: no audit, no answer (Vault's rule).
//!
//! Which events a request writes: an `authentication` event whenever a credential was
//! presented (success or failure) or a protected route was asked for without one, a
//! `policy_denied` event for each denial, and `phi_access` events from PHI handlers. Public
//! routes without credentials (`/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs`)
//! write none: they carry no identity and no PHI, and auditing probes would bury the entries
//! reviewers need.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::problem::Problem;
use super::reqctx::{RequestAudit, new_request_id};
use super::state::AppState;

/// The audit (and metrics) layer.
pub async fn audit(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let method = req.method().clone();
    let slot = RequestAudit::new(new_request_id());
    req.extensions_mut().insert(slot.clone());

    let response = next.run(req).await;

    let events = slot.take();
    let mut response = if events.is_empty() {
        response
    } else {
        let appends = events.into_iter().map(|e| st.audit.append(e));
        match futures::future::try_join_all(appends).await {
            Ok(_) => response,
            Err(e) => {
                st.metrics.audit_failure();
                tracing::error!(error = %e, request_id = %slot.request_id, "audit log write failed; request refused");
                let mut problem = Problem::audit_unavailable();
                problem.request_id = Some(slot.request_id.clone());
                problem.into_response()
            }
        }
    };
    if let Ok(v) = HeaderValue::from_str(&slot.request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    st.metrics.observe(
        route.as_deref(),
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}
