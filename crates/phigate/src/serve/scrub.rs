//! The response scrub layer: every error response leaves as an RFC 9457 problem written by
//! [`super::problem`], and its text passes the `phi` crate's detector.
//!
//! * An error produced by the gateway's own [`Problem`] type keeps its fixed sentence, scrubbed
//!   once more as a second line of defence.
//! * Any other error body (an axum extractor's rejection, which can quote the request; a
//!   tower-http limit's plain text; an empty 408) is thrown away and replaced by the generic
//!   problem of its status: no internals, nothing echoed.
//! * Only the headers a client needs survive the rewrite (`Retry-After`, the `RateLimit`
//!   headers, `WWW-Authenticate`, `Allow`).

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use super::problem::{Answer, Problem, Trusted};
use super::reqctx::RequestAudit;

const KEPT_HEADERS: &[&str] = &[
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "www-authenticate",
    "allow",
];

/// Largest problem body re-read.
const MAX_PROBLEM_BYTES: usize = 16 * 1024;

/// The scrub layer.
pub async fn scrub(req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<Arc<RequestAudit>>()
        .map(|a| a.request_id.clone());
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if response.extensions().get::<Answer>().is_some() {
        return response;
    }
    let trusted = response.extensions().get::<Trusted>().is_some();
    let (parts, body) = response.into_parts();
    let mut problem = if trusted {
        match axum::body::to_bytes(body, MAX_PROBLEM_BYTES).await {
            Ok(bytes) => serde_json::from_slice::<Problem>(&bytes)
                .unwrap_or_else(|_| Problem::for_status(status)),
            Err(_) => Problem::for_status(status),
        }
    } else {
        Problem::for_status(status)
    };
    problem.title = phi::scrub(&problem.title, phi::Mode::Tag);
    problem.detail = problem.detail.map(|d| phi::scrub(&d, phi::Mode::Tag));
    problem.status = status.as_u16();
    problem.request_id = request_id;
    let mut out = problem.into_response();
    for name in KEPT_HEADERS {
        for value in parts.headers.get_all(*name) {
            out.headers_mut().append(*name, value.clone());
        }
    }
    out
}
