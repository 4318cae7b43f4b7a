//! The operational routes: `/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs`, and
//! the fallback (404 as a problem).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::OpenApi;

use super::problem::Problem;
use super::state::{AppState, Upstream};

/// How long each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: String,
    /// phigate's version.
    pub version: String,
    /// `simulator` (synthetic data) or `kipu`.
    pub upstream: String,
    /// True when the data served is SYNTHETIC (the built-in simulator).
    pub synthetic_data: bool,
    /// Seconds since start.
    pub uptime_secs: u64,
}

/// One readiness check.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `store`, `audit_log` or `upstream`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
}

/// `GET /ready`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// True when every check passed.
    pub ready: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

/// Liveness and what the gateway serves.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn health(State(st): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        upstream: match st.upstream {
            Upstream::Simulator { .. } => "simulator".into(),
            Upstream::Kipu { .. } => "kipu".into(),
        },
        synthetic_data: st.upstream.is_synthetic(),
        uptime_secs: st.started.elapsed().as_secs(),
    })
}

async fn check_store(st: &AppState) -> bool {
    matches!(
        tokio::time::timeout(
            CHECK_TIMEOUT,
            st.store.get("phigate.gateway.probe", "readiness")
        )
        .await,
        Ok(Ok(_))
    )
}

async fn check_audit(st: &AppState) -> bool {
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, st.audit.tree_head()).await,
        Ok(Ok(_))
    )
}

async fn check_upstream(st: &AppState) -> bool {
    let connect = match &st.upstream {
        Upstream::Simulator { addr, .. } => {
            tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect(*addr)).await
        }
        Upstream::Kipu { host, port } => {
            tokio::time::timeout(
                CHECK_TIMEOUT,
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await
        }
    };
    matches!(connect, Ok(Ok(_)))
}

/// Readiness: the store answers a read, the audit log's tree head can be read, and the
/// upstream accepts a TCP connection, each within two seconds.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, description = "Ready", body = Ready),
              (status = 503, description = "A dependency is down", body = Ready)))]
pub async fn ready(State(st): State<Arc<AppState>>) -> Response {
    let (store, audit, upstream) =
        tokio::join!(check_store(&st), check_audit(&st), check_upstream(&st));
    let checks = vec![
        Check {
            name: "store".into(),
            ok: store,
        },
        Check {
            name: "audit_log".into(),
            ok: audit,
        },
        Check {
            name: "upstream".into(),
            ok: upstream,
        },
    ];
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Not an error body: a 503 here is an answer, so it is marked as written by us.
    let mut response = (status, Json(Ready { ready, checks })).into_response();
    response.extensions_mut().insert(super::problem::Answer);
    response
}

/// Prometheus metrics (labels are route templates, never raw paths).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "phigate gateway",
        description = "Governed HTTPS access to PHI: every request authenticated, rate limited, authorized and audited."
    ),
    paths(
        health,
        ready,
        metrics,
        openapi_json,
        docs,
        super::access_routes::token,
        super::access_routes::enroll,
        super::access_routes::jwks,
        super::access_routes::break_glass,
        super::access_routes::review_break_glass,
        super::admin::list_keys,
        super::admin::create_key,
        super::admin::revoke_key,
        super::admin::rotate_key,
        super::admin::list_users,
        super::admin::create_user,
        super::admin::disable_user,
        super::admin::enable_user,
        super::admin::unlock_user,
        super::admin::get_policies,
        super::admin::put_policies,
        super::auditor::verify,
        super::auditor::export,
        super::auditor::disclosures,
        super::census::census,
        super::patients::list_patients,
        super::patients::get_patient,
        super::patients::get_patient_records,
        super::clinical::care_gaps_patient,
        super::clinical::close_gap,
        super::clinical::care_gaps_cohort,
        super::clinical::guidelines,
        super::clinical::care_gap_metrics,
        super::clinical::predict,
        super::clinical::predict_batch,
        super::clinical::model_info,
        super::clinical::model_features,
        super::clinical::interventions,
        super::clinical::readmission_metrics,
        super::clinical::summarize_patient,
        super::clinical::summarize_custom,
        super::clinical::summarize_problem,
        super::clinical::summarize_transition,
        super::clinical::rag_info,
        super::clinical::llm_controls,
        super::clinical::summary_metrics
    ),
    components(schemas(
        Health,
        Ready,
        Check,
        Problem,
        super::access_routes::TokenResponse,
        super::access_routes::Enrollment,
        super::access_routes::BreakGlassAnswer,
        super::access_routes::BreakGlassReview,
        super::admin::CreateKey,
        super::admin::RotateKey,
        super::admin::NewKey,
        super::admin::KeyView,
        super::admin::CreateUser,
        super::admin::UserView,
        super::admin::PolicyView,
        super::admin::PutPolicies,
        super::auditor::VerifyAnswer,
        super::census::CensusRow
    ))
)]
pub struct ApiDoc;

/// This document, as JSON.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document")))]
pub async fn openapi_json() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(_) => Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response(),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A human-readable page of the routes, made from the OpenAPI document (no scripts).
#[utoipa::path(get, path = "/docs", tag = "operations",
    responses((status = 200, description = "HTML", content_type = "text/html")))]
pub async fn docs() -> Response {
    let doc = ApiDoc::openapi();
    let mut rows = String::new();
    for (path, item) in &doc.paths.paths {
        let ops = [
            ("GET", &item.get),
            ("POST", &item.post),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("DELETE", &item.delete),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            let summary = op
                .summary
                .as_deref()
                .or(op.description.as_deref())
                .unwrap_or("");
            rows.push_str(&format!(
                "<tr><td><code>{method}</code></td><td><code>{}</code></td><td>{}</td></tr>\n",
                html_escape(path),
                html_escape(summary)
            ));
        }
    }
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>phigate API</title></head>\n<body>\n<h1>phigate gateway API</h1>\n<p>Every route except the operational ones needs a bearer token (public listener) or a client certificate (mTLS listener). PHI routes also need <code>X-Purpose-Of-Use</code> and <code>X-Access-Reason</code>. Errors are RFC 9457 problem details. The machine-readable document is at <a href=\"/openapi.json\">/openapi.json</a>.</p>\n<table>\n<tr><th>Method</th><th>Path</th><th>Summary</th></tr>\n{rows}</table>\n</body></html>\n"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

/// Unknown routes (reached only by authenticated callers; see the authorize layer).
pub async fn fallback() -> Response {
    Problem::for_status(StatusCode::NOT_FOUND).into_response()
}
