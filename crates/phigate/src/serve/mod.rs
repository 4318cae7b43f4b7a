//! The governed HTTPS gateway behind `phigate serve`.
//!
//! # The request path
//!
//! Every route, public or not, known or not, passes the same stack, assembled in one place
//! ([`app`]):
//!
//! ```text
//! security headers → (CORS, only if configured) → audit → scrub → body limit → timeout
//!   → authenticate → rate limit → authorize → handler
//! ```
//!
//! The request goes left to right; the response comes back right to left, so the handler's
//! answer is scrubbed, then audited, and only then released.
//!
//! # Security invariants
//!
//! * HTTPS only, TLS 1.3 only, rustls with aws-lc-rs; there is no plain-HTTP listener.
//! * The mTLS listener requires a client certificate chaining to the configured CA whose URI
//!   SAN names a service (`spiffe://<trust domain>/service/<name>`); anything else is refused
//!   at the connection and audited.
//! * Deny by default: only `/health`, `/ready`, `/metrics`, `/openapi.json`, `/docs` and
//!   `/.well-known/jwks.json` are served without a principal, and `POST /auth/token` checks
//!   the credential it exchanges; everything else needs a principal and a permitting Cedar
//!   policy (the `access` crate decides). Routes are classified in one table
//!   ([`authz::ROUTES`]); a route left out of it is refused to everyone. Admin routes also
//!   need a TOTP step-up code (`X-TOTP-Code`) on every request. The routes, their roles,
//!   headers and errors are listed in `docs/gateway-api.md`.
//! * Every request that presents a credential, asks for a protected route or is denied writes
//!   its audit events before its response is released; if the log cannot write, the client
//!   gets 503 instead.
//! * Errors are RFC 9457 problem details with fixed sentences; nothing from the request and no
//!   internal error text is echoed, and the text passes the PHI detector once more.
//! * `Cache-Control: no-store`, `X-Content-Type-Options: nosniff`, HSTS, `X-Frame-Options:
//!   DENY`, a closed CSP and `Referrer-Policy: no-referrer` on every response. CORS is closed
//!   unless exact `https://` origins are configured.
//! * Metrics are labelled by route template; logs carry route templates and request ids only.
//! * Development relaxations (generated development certificates, disabled rate limits) are
//!   refused unless every listener is on loopback, and warned about at every start.
//!
//! Decision (spec vs security): the HIPAA document asks for "`X-Request-ID` on all
//! responses" and CoCo echoes the client's value; the gateway always makes its own (a random
//! UUID v4) and ignores the client's, so a client cannot forge or inject correlation ids into
//! the audit log.

pub mod access_routes;
pub mod admin;
pub mod auditor;
pub mod auth;
pub mod authz;
pub mod census;
pub mod clinical;
pub mod config;
pub mod devca;
pub mod listener;
pub mod metrics;
pub mod patients;
pub mod problem;
pub mod ratelimit;
pub mod record;
pub mod reqctx;
pub mod routes;
pub mod scrub;
pub mod state;
pub mod tls;
pub mod x509;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, post};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use state::AppState;

async fn one_access_epoch(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    access::request_scope(next.run(request)).await
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-purpose-of-use"),
                HeaderName::from_static("x-access-reason"),
                HeaderName::from_static("x-totp-code"),
            ])
            .expose_headers([
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("ratelimit"),
                HeaderName::from_static("ratelimit-policy"),
                header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// Puts a (length-limited) request body back into axum's body type for the layers below.
fn rebody<B>(req: axum::http::Request<B>) -> axum::extract::Request
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    req.map(axum::body::Body::new)
}

/// The router with the whole governed stack.
pub fn app(st: Arc<AppState>) -> Router {
    let server = &st.config.server;
    let hsts = HeaderValue::from_str(&format!(
        "max-age={}; includeSubDomains",
        server.hsts_max_age_secs
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("max-age=63072000; includeSubDomains"));

    let routes = Router::new()
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(routes::openapi_json))
        .route("/docs", get(routes::docs))
        .route("/.well-known/jwks.json", get(access_routes::jwks))
        .route("/auth/token", post(access_routes::token))
        .route("/auth/enroll", post(access_routes::enroll))
        .route("/auth/break-glass", post(access_routes::break_glass))
        .route("/admin/break-glass", get(access_routes::review_break_glass))
        .route("/admin/keys", get(admin::list_keys).post(admin::create_key))
        .route("/admin/keys/{key_id}", delete(admin::revoke_key))
        .route("/admin/keys/{key_id}/rotate", post(admin::rotate_key))
        .route(
            "/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route("/admin/users/{username}/disable", post(admin::disable_user))
        .route("/admin/users/{username}/enable", post(admin::enable_user))
        .route("/admin/users/{username}/unlock", post(admin::unlock_user))
        .route(
            "/admin/policies",
            get(admin::get_policies).put(admin::put_policies),
        )
        .route("/audit/verify", get(auditor::verify))
        .route("/audit/export", get(auditor::export))
        .route(
            "/audit/patients/{id}/disclosures",
            get(auditor::disclosures),
        )
        .route("/api/v1/census", get(census::census))
        .route("/api/v1/patients", get(patients::list_patients))
        .route("/api/v1/patients/{id}", get(patients::get_patient))
        .route(
            "/api/v1/patients/{id}/{resource}",
            get(patients::get_patient_records),
        )
        .fallback(routes::fallback)
        .with_state(st.clone())
        .merge(clinical::router(st.clone()));

    // Outermost first. A request runs down this list; the response runs back up.
    let stack = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            hsts,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .option_layer(cors_layer(&st.config.cors.allowed_origins))
        .layer(from_fn(clinical::cost_header))
        // 6. audit: writes the request's events before the response leaves (503 if it cannot)
        .layer(from_fn_with_state(st.clone(), record::audit))
        // 5. response scrub: every error becomes a problem document, PHI-scrubbed
        .layer(from_fn(scrub::scrub))
        .layer(RequestBodyLimitLayer::new(server.body_limit_bytes))
        .map_request(rebody)
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(server.request_timeout_secs),
        ))
        // one access-generation check per request (revocation: see `access::request_scope`)
        .layer(from_fn(one_access_epoch))
        // 1. authenticate: who is asking (never refuses by itself)
        .layer(from_fn_with_state(st.clone(), auth::authenticate))
        // 2. rate limit: per source address, per principal, stricter for /auth/*
        .layer(from_fn_with_state(st.clone(), ratelimit::limit))
        // 3. authorize: deny by default; then 4. the handler
        .layer(from_fn_with_state(st.clone(), authz::authorize));
    routes.layer(stack)
}
