//! Prometheus metrics in the text exposition format.
//!
//! Labels are the matched route template (`/api/v1/patients/{id}`, never the raw path, so no
//! id reaches a label), the method and the status code; requests that matched no route are
//! labelled `unmatched`. Methods outside the standard set are labelled `other`, so label
//! cardinality stays bounded whatever clients send.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::Method;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; 12],
    sum: f64,
    count: u64,
}

/// Request counters and latency histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    audit_failures: AtomicU64,
    tls_handshake_failures: AtomicU64,
    /// The clinical endpoints' series (`phigate_clinical_*`).
    pub clinical: super::clinical::ClinicalMetrics,
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Escapes a label value (route templates are ASCII from our own router, but be exact).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one request.
    pub fn observe(&self, route: Option<&str>, method: &Method, status: u16, elapsed: Duration) {
        let route = route.unwrap_or("unmatched").to_string();
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((route.clone(), method_label(method), status))
                .or_default() += 1;
        }
        if let Ok(mut l) = self.latency.lock() {
            let h = l.entry(route).or_default();
            let secs = elapsed.as_secs_f64();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if secs <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// Counts a request refused because the audit log failed.
    pub fn audit_failure(&self) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed TLS handshake.
    pub fn tls_handshake_failure(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP phigate_http_requests_total Requests served, by route template, method and status.\n");
        out.push_str("# TYPE phigate_http_requests_total counter\n");
        if let Ok(r) = self.requests.lock() {
            for ((route, method, status), n) in r.iter() {
                let _ = writeln!(
                    out,
                    "phigate_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP phigate_http_request_duration_seconds Time from request to response (including the audit write), by route template.\n");
        out.push_str("# TYPE phigate_http_request_duration_seconds histogram\n");
        if let Ok(l) = self.latency.lock() {
            for (route, h) in l.iter() {
                let route = escape(route);
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "phigate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                        h.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "phigate_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(
                    out,
                    "phigate_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                    h.sum
                );
                let _ = writeln!(
                    out,
                    "phigate_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                    h.count
                );
            }
        }
        out.push_str("# HELP phigate_audit_write_failures_total Requests refused because the audit log could not record them.\n");
        out.push_str("# TYPE phigate_audit_write_failures_total counter\n");
        let _ = writeln!(
            out,
            "phigate_audit_write_failures_total {}",
            self.audit_failures.load(Ordering::Relaxed)
        );
        out.push_str("# HELP phigate_tls_handshake_failures_total TLS handshakes that failed (wrong version, no client certificate, ...).\n");
        out.push_str("# TYPE phigate_tls_handshake_failures_total counter\n");
        let _ = writeln!(
            out,
            "phigate_tls_handshake_failures_total {}",
            self.tls_handshake_failures.load(Ordering::Relaxed)
        );
        self.clinical.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_route_templates_and_unmatched_paths_collapse() {
        let m = Metrics::default();
        m.observe(
            Some("/api/v1/patients/{id}"),
            &Method::GET,
            404,
            Duration::from_millis(3),
        );
        m.observe(None, &Method::GET, 401, Duration::from_millis(1));
        let text = m.render();
        assert!(text.contains(
            "phigate_http_requests_total{route=\"/api/v1/patients/{id}\",method=\"GET\",status=\"404\"} 1"
        ));
        assert!(text.contains("route=\"unmatched\",method=\"GET\",status=\"401\"} 1"));
        assert!(text.contains("phigate_http_request_duration_seconds_bucket{route=\"/api/v1/patients/{id}\",le=\"0.005\"} 1"));
    }
}
