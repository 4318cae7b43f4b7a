//! The one error type of the client.
//!
//! # Invariants
//!
//! * `Display` and `Debug` carry the HTTP method, the status and the endpoint **template**
//!   (`/api/patients/{patient_id}`), never a filled-in path, a query string or a response body:
//!   ids and query values identify patients, and Kipu's error bodies may echo request data.
//! * A response body is kept only as [`ErrorBody`] inside [`phi::Sensitive`]; reading it is an
//!   explicit [`phi::Sensitive::expose`] call.
//! * Wrapped transport errors have their URL stripped (`reqwest::Error::without_url`) before
//!   they are stored, and JSON decode errors keep only line, column and category: serde's own
//!   message can quote the offending value.

use std::time::Duration;

use bytes::Bytes;
use phi::Sensitive;

/// What the server said when it refused a request. Reach it through
/// [`Error::body`]; it is PHI-adjacent and never printed by the error itself.
#[derive(Clone, Default)]
pub struct ErrorBody {
    /// The messages of Kipu's `errors` (string or array) and `error` keys, in that order.
    pub messages: Vec<String>,
    /// The raw body bytes as received (possibly truncated to the configured body limit).
    pub raw: Bytes,
}

impl ErrorBody {
    /// Reads Kipu's error conventions: `{"errors": "..."}`, `{"errors": ["...", ...]}`,
    /// `{"errors": {"field": ["..."]}}` and `{"error": "..."}`. Anything else keeps only `raw`.
    pub fn from_bytes(raw: Bytes) -> Self {
        let mut messages = Vec::new();
        if let Ok(serde_json::Value::Object(map)) =
            serde_json::from_slice::<serde_json::Value>(&raw)
        {
            for key in ["errors", "error"] {
                if let Some(value) = map.get(key) {
                    collect_messages(value, &mut messages);
                }
            }
        }
        Self { messages, raw }
    }
}

impl std::fmt::Debug for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ErrorBody([REDACTED])")
    }
}

fn collect_messages(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_messages(v, out)),
        serde_json::Value::Object(map) => {
            for (field, v) in map {
                let mut inner = Vec::new();
                collect_messages(v, &mut inner);
                out.extend(inner.into_iter().map(|m| format!("{field}: {m}")));
            }
        }
        serde_json::Value::Null => {}
        other => out.push(other.to_string()),
    }
}

/// Where a failed call was going: method and endpoint template, nothing filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `POST` or `PATCH`.
    pub method: &'static str,
    /// The endpoint template, or `(uncatalogued path)` for a raw call that matches no
    /// catalogue row (its concrete path may contain ids, so it is not shown).
    pub template: &'static str,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.template)
    }
}

/// The category of a JSON decode failure, without serde's message (which may quote data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeCategory {
    /// The body is not JSON at all (HTML, plain text, an empty 2xx).
    Syntax,
    /// The body ended in the middle of a JSON value.
    Eof,
    /// Valid JSON that does not have the expected shape.
    Shape,
}

impl From<serde_json::error::Category> for DecodeCategory {
    fn from(c: serde_json::error::Category) -> Self {
        match c {
            serde_json::error::Category::Eof => Self::Eof,
            serde_json::error::Category::Data => Self::Shape,
            serde_json::error::Category::Io | serde_json::error::Category::Syntax => Self::Syntax,
        }
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Every way a Kipu call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 401: the signature, the credentials or the `Date` were refused.
    #[error("{route}: 401 unauthorized (check the access id, secret, API version and clock)")]
    Unauthorized {
        /// The call.
        route: Route,
        /// The server's explanation.
        body: Sensitive<ErrorBody>,
    },
    /// 403: the credentials may not use this endpoint.
    #[error("{route}: 403 forbidden")]
    Forbidden {
        /// The call.
        route: Route,
        /// The server's explanation.
        body: Sensitive<ErrorBody>,
    },
    /// 404 (or 410): no such record or endpoint.
    #[error("{route}: {status} not found")]
    NotFound {
        /// The call.
        route: Route,
        /// 404 or 410.
        status: u16,
        /// The server's explanation.
        body: Sensitive<ErrorBody>,
    },
    /// 400 or 422: the server rejected the parameters or the body.
    #[error("{route}: {status} validation failed")]
    Validation {
        /// The call.
        route: Route,
        /// 400 or 422.
        status: u16,
        /// The server's explanation (field names and messages; may echo submitted values).
        body: Sensitive<ErrorBody>,
    },
    /// 429: too many requests, after the retry budget was spent (or on a write).
    #[error("{route}: 429 rate limited{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The call.
        route: Route,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// The server's explanation.
        body: Sensitive<ErrorBody>,
    },
    /// 5xx, after the retry budget was spent (or on a write).
    #[error("{route}: {status} server error")]
    Server {
        /// The call.
        route: Route,
        /// The status.
        status: u16,
        /// The server's explanation.
        body: Sensitive<ErrorBody>,
    },
    /// Any other non-2xx status.
    #[error("{route}: unexpected status {status}")]
    UnexpectedStatus {
        /// The call.
        route: Route,
        /// The status.
        status: u16,
        /// The body.
        body: Sensitive<ErrorBody>,
    },
    /// A 3xx. Redirects are never followed: they would re-send signed headers to a target the
    /// signature was not made for, possibly on another host.
    #[error("{route}: server answered with redirect {status}; redirects are not followed")]
    Redirect {
        /// The call.
        route: Route,
        /// The status.
        status: u16,
    },
    /// The attempt (or the whole call, see [`Error::DeadlineExceeded`]) timed out.
    #[error("{route}: timed out")]
    Timeout {
        /// The call.
        route: Route,
    },
    /// The overall deadline of the call passed before an attempt succeeded.
    #[error("{route}: gave up after {attempts} attempt(s): the overall deadline passed")]
    DeadlineExceeded {
        /// The call.
        route: Route,
        /// Attempts made.
        attempts: u32,
        /// What the last attempt failed with.
        #[source]
        last: Box<Error>,
    },
    /// The connection failed or broke, including a body that ended before its
    /// `Content-Length`.
    #[error("{route}: connection failed")]
    Connection {
        /// The call.
        route: Route,
        /// The transport error, URL stripped.
        #[source]
        source: Source,
    },
    /// The TLS handshake failed (untrusted certificate, protocol below TLS 1.2, ...).
    #[error("{route}: TLS handshake failed")]
    Tls {
        /// The call.
        route: Route,
        /// The transport error, URL stripped.
        #[source]
        source: Source,
    },
    /// A 2xx response whose body is not the JSON expected. The body is not kept.
    #[error(
        "{route}: could not decode the {status} response ({category:?} at line {line}, column {column})"
    )]
    Decode {
        /// The call.
        route: Route,
        /// The status.
        status: u16,
        /// What went wrong.
        category: DecodeCategory,
        /// Where.
        line: usize,
        /// Where.
        column: usize,
    },
    /// The response body exceeded the configured limit.
    #[error("{route}: response body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The call.
        route: Route,
        /// The limit.
        limit: usize,
    },
    /// The request could not be built (wrong number of ids, bad multipart field, ...).
    #[error("{route}: invalid request: {reason}")]
    InvalidRequest {
        /// The call.
        route: Route,
        /// What is wrong (never the offending value).
        reason: &'static str,
    },
    /// The client configuration is unusable. The message names the setting, never a secret.
    #[error("invalid Kipu client configuration: {0}")]
    Configuration(String),
}

impl Error {
    /// The response body of a refused request, if there was one.
    pub fn body(&self) -> Option<&Sensitive<ErrorBody>> {
        match self {
            Self::Unauthorized { body, .. }
            | Self::Forbidden { body, .. }
            | Self::NotFound { body, .. }
            | Self::Validation { body, .. }
            | Self::RateLimited { body, .. }
            | Self::Server { body, .. }
            | Self::UnexpectedStatus { body, .. } => Some(body),
            Self::DeadlineExceeded { last, .. } => last.body(),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Forbidden { .. } => Some(403),
            Self::RateLimited { .. } => Some(429),
            Self::NotFound { status, .. }
            | Self::Validation { status, .. }
            | Self::Server { status, .. }
            | Self::UnexpectedStatus { status, .. }
            | Self::Redirect { status, .. }
            | Self::Decode { status, .. } => Some(*status),
            Self::DeadlineExceeded { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Whether a GET that failed like this may be tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } | Self::Timeout { .. } | Self::Connection { .. } => true,
            Self::Server { status, .. } => matches!(status, 502..=504),
            // A truncated JSON body of a 2xx is a broken transfer, not a server's statement.
            Self::Decode {
                category: DecodeCategory::Eof,
                ..
            } => true,
            _ => false,
        }
    }

    pub(crate) fn from_status(
        route: Route,
        status: u16,
        retry_after: Option<Duration>,
        raw: Bytes,
    ) -> Self {
        let body = Sensitive::new(ErrorBody::from_bytes(raw));
        match status {
            300..=399 => Self::Redirect { route, status },
            400 | 422 => Self::Validation {
                route,
                status,
                body,
            },
            401 => Self::Unauthorized { route, body },
            403 => Self::Forbidden { route, body },
            404 | 410 => Self::NotFound {
                route,
                status,
                body,
            },
            429 => Self::RateLimited {
                route,
                retry_after,
                body,
            },
            500..=599 => Self::Server {
                route,
                status,
                body,
            },
            _ => Self::UnexpectedStatus {
                route,
                status,
                body,
            },
        }
    }

    pub(crate) fn decode(route: Route, status: u16, err: &serde_json::Error) -> Self {
        Self::Decode {
            route,
            status,
            category: err.classify().into(),
            line: err.line(),
            column: err.column(),
        }
    }

    pub(crate) fn transport(route: Route, err: reqwest::Error) -> Self {
        let err = err.without_url();
        if err.is_timeout() {
            return Self::Timeout { route };
        }
        if is_tls_failure(&err) {
            return Self::Tls {
                route,
                source: Box::new(err),
            };
        }
        Self::Connection {
            route,
            source: Box::new(err),
        }
    }
}

/// reqwest does not classify TLS failures. A failed handshake (untrusted or mismatched
/// certificate, a protocol version below the minimum, a peer that does not speak TLS, a TLS
/// alert) surfaces as a [`rustls::Error`] somewhere in the source chain: usually inside a
/// [`std::io::Error`] that tokio-rustls returned to the connector. The chain is inspected by
/// type, never by message text, so an unrelated error that merely mentions "certificate" is
/// not mistaken for a TLS failure.
///
/// `io::Error::source` skips the error it wraps (it returns the inner error's *source*), so
/// each `io::Error` in the chain is opened with `get_ref` as well.
pub(crate) fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if e.is::<rustls::Error>() {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_tls_failure(inner)
        {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: Route = Route {
        method: "GET",
        template: "/api/patients/{patient_id}",
    };

    #[test]
    fn error_body_reads_errors_plural_and_error_singular() {
        let b = ErrorBody::from_bytes(Bytes::from_static(
            br#"{"errors": ["a", "b"], "error": "c"}"#,
        ));
        assert_eq!(b.messages, ["a", "b", "c"]);
        let b = ErrorBody::from_bytes(Bytes::from_static(
            br#"{"errors": {"dob": ["is invalid"]}}"#,
        ));
        assert_eq!(b.messages, ["dob: is invalid"]);
        let b = ErrorBody::from_bytes(Bytes::from_static(b"<html>oops</html>"));
        assert!(b.messages.is_empty());
        assert_eq!(&b.raw[..], b"<html>oops</html>");
    }

    #[test]
    fn display_and_debug_show_status_and_template_but_never_the_body() {
        let canary = "CANARY-Zebulon-555-0199";
        let raw = Bytes::from(format!(r#"{{"errors": "patient {canary} not found"}}"#));
        for status in [400, 401, 403, 404, 422, 429, 500, 503, 418] {
            let err = Error::from_status(ROUTE, status, None, raw.clone());
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(canary), "{shown}");
            assert!(shown.contains("/api/patients/{patient_id}"), "{shown}");
            assert_eq!(err.status(), Some(status));
            let body = err.body().expect("refusals keep the body");
            assert!(body.expose().messages[0].contains(canary));
        }
    }

    #[test]
    fn statuses_map_to_the_right_kind() {
        let e = |s| Error::from_status(ROUTE, s, Some(Duration::from_secs(7)), Bytes::new());
        assert!(matches!(e(401), Error::Unauthorized { .. }));
        assert!(matches!(e(403), Error::Forbidden { .. }));
        assert!(matches!(e(404), Error::NotFound { .. }));
        assert!(matches!(e(422), Error::Validation { .. }));
        assert!(matches!(e(302), Error::Redirect { .. }));
        assert!(
            matches!(e(429), Error::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 7)
        );
        assert!(e(429).to_string().contains("retry after 7 s"));
        assert!(e(502).is_retryable() && e(503).is_retryable() && e(504).is_retryable());
        assert!(!e(500).is_retryable() && !e(401).is_retryable() && !e(404).is_retryable());
    }

    #[test]
    fn a_rustls_error_anywhere_in_the_chain_is_a_tls_failure() {
        let bare = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(is_tls_failure(&bare));
        // How tokio-rustls reports a failed handshake to the connector.
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, bare.clone());
        assert!(is_tls_failure(&io));
        // Deeper: a connector error whose source is that io::Error.
        #[derive(Debug, thiserror::Error)]
        #[error("client error (Connect)")]
        struct Wrapper(#[source] std::io::Error);
        assert!(is_tls_failure(&Wrapper(io)));
        let alert = std::io::Error::other(rustls::Error::AlertReceived(
            rustls::AlertDescription::ProtocolVersion,
        ));
        assert!(is_tls_failure(&Wrapper(alert)));
    }

    #[test]
    fn errors_that_only_mention_tls_words_are_not_tls_failures() {
        for text in [
            "certificate store unavailable",
            "TLS",
            "tls handshake",
            "handshake",
        ] {
            let io = std::io::Error::other(text);
            assert!(!is_tls_failure(&io), "{text}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_tls_failure(&refused));
    }

    #[test]
    fn decode_errors_do_not_quote_the_body() {
        let canary = "CANARY-Quixote";
        let err = serde_json::from_str::<u32>(&format!("\"{canary}\"")).unwrap_err();
        assert!(
            err.to_string().contains(canary),
            "serde quotes values, which is why we drop it"
        );
        let ours = Error::decode(ROUTE, 200, &err);
        assert!(!format!("{ours} {ours:?}").contains(canary));
    }
}
