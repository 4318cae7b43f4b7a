//! Errors as RFC 9457 problem details (`application/problem+json`).
//!
//! Every error the gateway sends is one of these. `title` is the fixed phrase of the status;
//! `detail` is a fixed, hand-written sentence chosen by the code (never built from request
//! data, never an internal error's text); `type` is a stable URN naming the problem class.
//! The scrub layer ([`super::scrub`]) enforces this for errors produced elsewhere (axum
//! rejections, tower-http limits).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem details object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Problem {
    /// A URN naming the problem class, e.g. `urn:phigate:problem:unauthenticated`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// A fixed sentence saying what is wrong and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request id (also in `X-Request-Id`), for support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl Problem {
    /// A problem of class `slug` with a fixed detail sentence.
    pub fn new(status: StatusCode, slug: &'static str, detail: &'static str) -> Self {
        Self {
            kind: format!("urn:phigate:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: Some(detail.to_string()),
            request_id: None,
        }
    }

    /// The generic problem for a status, used when an error came without one.
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, detail) = match status.as_u16() {
            400 => ("bad-request", "The request is malformed."),
            401 => ("unauthenticated", "Authentication is required."),
            403 => ("forbidden", "The request is not allowed."),
            404 => ("not-found", "No such resource."),
            405 => (
                "method-not-allowed",
                "The method is not allowed on this resource.",
            ),
            408 => ("timeout", "The request took too long and was abandoned."),
            411 => ("length-required", "The request needs a Content-Length."),
            413 => (
                "body-too-large",
                "The request body is larger than the gateway accepts.",
            ),
            415 => (
                "unsupported-media-type",
                "The request body must be application/json.",
            ),
            422 => (
                "unprocessable",
                "The request body does not have the expected shape.",
            ),
            429 => (
                "rate-limited",
                "Too many requests; retry after the time in Retry-After.",
            ),
            503 => ("unavailable", "The service is temporarily unavailable."),
            s if s >= 500 => ("internal", "The gateway could not complete the request."),
            _ => ("error", "The request failed."),
        };
        Self::new(status, slug, detail)
    }

    /// The 401 every unauthenticated request to a protected route gets.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "This resource requires a valid bearer token or a client certificate.",
        )
    }

    /// 503 when the audit log could not record the request.
    pub fn audit_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit-unavailable",
            "The request was refused because the audit log could not record it.",
        )
    }

    /// The status as a [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // Marks the body as written by the gateway's own problem type (see the scrub layer).
        response.extensions_mut().insert(Trusted);
        response
    }
}

/// Response extension: the body is a [`Problem`] built by this module.
#[derive(Debug, Clone, Copy)]
pub struct Trusted;

/// Response extension: an error status whose body is a documented answer, not an error
/// message (the 503 of `/ready` listing which check failed); the scrub layer leaves it.
#[derive(Debug, Clone, Copy)]
pub struct Answer;

/// The 500 answer for a failure of the gateway's own machinery (store, audit log, encoding):
/// logs `what` failed with the error, which carries no request data, and answers a problem
/// without any detail.
pub fn internal(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what} failed");
    Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_serializes_with_the_rfc_9457_member_names() {
        let p = Problem::unauthenticated();
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:phigate:problem:unauthenticated");
        assert_eq!(v["title"], "Unauthorized");
        assert_eq!(v["status"], 401);
        assert!(v["detail"].as_str().unwrap().contains("bearer token"));
    }

    #[test]
    fn every_error_status_has_a_generic_problem_with_a_fixed_sentence() {
        for code in 400u16..600 {
            let Ok(status) = StatusCode::from_u16(code) else {
                continue;
            };
            let p = Problem::for_status(status);
            assert_eq!(p.status, code);
            assert!(p.kind.starts_with("urn:phigate:problem:"));
            assert!(p.detail.as_deref().is_some_and(|d| d.ends_with('.')));
        }
    }
}
