//! Transport edge cases against a small scripted HTTP server on loopback (not a model of Kipu:
//! each handler plays one misbehaviour): the target on the wire, redirects, Retry-After,
//! truncated bodies, non-JSON 2xx, write retries, the attempt budget and the concurrency limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use kipu::query::{CensusQuery, PatientQuery};
use kipu::signing::{CanonicalString, RequestTarget};
use kipu::{ApiVersion, Client, ClientConfig, Credentials, Error, RetryPolicy, WriteOptions};
use phi::Sensitive;
use secrecy::SecretString;

#[derive(Default)]
struct Counters {
    hits: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn credentials() -> Credentials {
    Credentials::new("id1", SecretString::from("s3cret"), "app", ApiVersion::V3)
}

fn client(base: &str, retry: RetryPolicy) -> Client {
    let config = ClientConfig::builder(credentials())
        .base_url(base)
        .retry(retry)
        .build()
        .unwrap();
    Client::new(config).unwrap()
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    }
}

const EMPTY_CENSUS: &str = r#"{"pagination": {"current_page": 1, "total_pages": 1, "records_per_page": 20, "total_records": 0}, "patients": []}"#;

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [("content-type", "application/json")], body).into_response()
}

#[tokio::test]
async fn the_target_on_the_wire_is_byte_for_byte_the_one_signed() {
    let seen: Arc<std::sync::Mutex<Vec<(String, String, String)>>> = Arc::default();
    let s = seen.clone();
    let base = serve(
        Router::new().fallback(any(move |uri: Uri, headers: HeaderMap| {
            let s = s.clone();
            async move {
                let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
                s.lock()
                    .unwrap()
                    .push((uri.to_string(), h("date"), h("authorization")));
                json(StatusCode::OK, r#"{"patient": {"casefile_id": "1:a"}}"#)
            }
        })),
    )
    .await;
    let c = client(&base, RetryPolicy::none());
    let id = "12:ab/c d(ö)!*";
    let query = PatientQuery {
        phi_level: Some(kipu::query::PhiLevel::Medium),
        ..Default::default()
    };
    c.patients().get(id, &query).await.unwrap();
    let (uri, date, auth) = seen.lock().unwrap().pop().unwrap();
    let expected = RequestTarget::new(
        "/api/patients/{patient_id}",
        &[id],
        &[("phi_level", "medium")],
        "app",
    )
    .unwrap();
    assert_eq!(uri, expected.as_str());
    assert_eq!(
        uri,
        "/api/patients/12%3Aab%2Fc%20d%28%C3%B6%29%21%2A?phi_level=medium&app_id=app"
    );
    let canonical = CanonicalString::for_get(&uri, &date);
    assert_eq!(auth, credentials().authorization(&canonical));
}

#[tokio::test]
async fn a_redirect_is_an_error_and_is_not_followed() {
    let elsewhere = Arc::new(Counters::default());
    let e = elsewhere.clone();
    let other = serve(Router::new().fallback(any(move || {
        e.hits.fetch_add(1, Ordering::SeqCst);
        async { json(StatusCode::OK, EMPTY_CENSUS) }
    })))
    .await;
    let base = serve(Router::new().fallback(any(move || {
        let location = format!("{other}/api/patients/census");
        async move { (StatusCode::FOUND, [("location", location)]).into_response() }
    })))
    .await;
    let err = client(&base, fast_retry(3))
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Redirect { status: 302, .. }), "{err}");
    assert_eq!(
        elsewhere.hits.load(Ordering::SeqCst),
        0,
        "signed headers never reached the other host"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_and_the_retry_is_freshly_signed() {
    let counters = Arc::new(Counters::default());
    let dates: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let (c2, d2) = (counters.clone(), dates.clone());
    let base = serve(Router::new().fallback(any(move |headers: HeaderMap| {
        let n = c2.hits.fetch_add(1, Ordering::SeqCst);
        d2.lock()
            .unwrap()
            .push(headers["date"].to_str().unwrap().to_string());
        async move {
            if n == 0 {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", "1")],
                    r#"{"errors": "slow down"}"#,
                )
                    .into_response()
            } else {
                json(StatusCode::OK, EMPTY_CENSUS)
            }
        }
    })))
    .await;
    let page = client(&base, fast_retry(3))
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap();
    assert!(page.records.is_empty());
    assert_eq!(counters.hits.load(Ordering::SeqCst), 2);
    let dates = dates.lock().unwrap();
    // The second attempt waited the full second, so its Date (whole seconds) moved on.
    assert_ne!(dates[0], dates[1], "each attempt carries its own Date");
}

#[tokio::test]
async fn rate_limiting_past_the_budget_reports_retry_after() {
    let base = serve(Router::new().fallback(any(|| async {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "0")],
            r#"{"errors": "no"}"#,
        )
            .into_response()
    })))
    .await;
    let err = client(&base, fast_retry(2))
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d.is_zero()),
        "{err}"
    );
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_retried_as_a_broken_connection() {
    let counters = Arc::new(Counters::default());
    let c2 = counters.clone();
    let base = serve(Router::new().fallback(any(move || {
        let n = c2.hits.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                let half = &EMPTY_CENSUS[..EMPTY_CENSUS.len() / 2];
                let stream = futures::stream::iter([
                    Ok::<_, std::io::Error>(bytes::Bytes::from_static(half.as_bytes())),
                    Err(std::io::Error::other("cut")),
                ]);
                Response::builder()
                    .header("content-length", EMPTY_CENSUS.len())
                    .header("content-type", "application/json")
                    .body(Body::from_stream(stream))
                    .unwrap()
            } else {
                json(StatusCode::OK, EMPTY_CENSUS)
            }
        }
    })))
    .await;
    client(&base, fast_retry(3))
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap();
    assert_eq!(counters.hits.load(Ordering::SeqCst), 2);

    // Without retries, the same break is a connection error.
    let c3 = Arc::new(Counters::default());
    let c4 = c3.clone();
    let base = serve(Router::new().fallback(any(move || {
        c4.hits.fetch_add(1, Ordering::SeqCst);
        async {
            let stream = futures::stream::iter([
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"{\"patients\": [")),
                Err(std::io::Error::other("cut")),
            ]);
            Response::builder()
                .header("content-length", 500)
                .body(Body::from_stream(stream))
                .unwrap()
        }
    })))
    .await;
    let err = client(&base, RetryPolicy::none())
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err}");
}

#[tokio::test]
async fn a_2xx_that_is_not_json_is_a_decode_error_without_the_body() {
    let base = serve(Router::new().fallback(any(|| async {
        (StatusCode::OK, "<html>CANARY-Quixote maintenance</html>").into_response()
    })))
    .await;
    let err = client(&base, fast_retry(3))
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { status: 200, .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains("CANARY"));
    let err = client(&base, fast_retry(3))
        .get("/api/patients/census", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err}");
}

#[tokio::test]
async fn writes_are_not_retried_unless_the_caller_opts_in() {
    let counters = Arc::new(Counters::default());
    let c2 = counters.clone();
    let base = serve(Router::new().fallback(any(move || {
        let n = c2.hits.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < 2 {
                json(StatusCode::SERVICE_UNAVAILABLE, r#"{"errors": "busy"}"#)
            } else {
                json(StatusCode::CREATED, r#"{"contact": {"id": 9}}"#)
            }
        }
    })))
    .await;
    let c = client(&base, fast_retry(5));
    let data = || Sensitive::new(serde_json::json!({"first_name": "A"}));
    let err = c
        .contacts()
        .create(data(), WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Server { status: 503, .. }), "{err}");
    assert_eq!(
        counters.hits.load(Ordering::SeqCst),
        1,
        "no automatic retry of a POST"
    );

    let created = c
        .contacts()
        .create(
            data(),
            WriteOptions {
                retry: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created.id, Some(9));
    assert_eq!(counters.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn gets_stop_after_max_attempts_and_do_not_retry_client_errors() {
    let counters = Arc::new(Counters::default());
    let c2 = counters.clone();
    let base = serve(Router::new().fallback(any(move |uri: Uri| {
        c2.hits.fetch_add(1, Ordering::SeqCst);
        async move {
            if uri.path().ends_with("census") {
                json(StatusCode::BAD_GATEWAY, r#"{"errors": "upstream"}"#)
            } else {
                json(StatusCode::NOT_FOUND, r#"{"errors": "nope"}"#)
            }
        }
    })))
    .await;
    let c = client(&base, fast_retry(4));
    let err = c
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Server { status: 502, .. }), "{err}");
    assert_eq!(counters.hits.load(Ordering::SeqCst), 4);
    let err = c
        .patients()
        .get("1:a", &PatientQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    assert_eq!(counters.hits.load(Ordering::SeqCst), 5, "a 404 is final");
}

#[tokio::test]
async fn the_overall_deadline_ends_a_call_that_keeps_failing() {
    let base = serve(Router::new().fallback(any(|| async {
        (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "30")], "{}").into_response()
    })))
    .await;
    let retry = RetryPolicy {
        max_attempts: 10,
        deadline: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    let err = client(&base, retry)
        .patients()
        .census(&CensusQuery::default())
        .page()
        .await
        .unwrap_err();
    match err {
        Error::DeadlineExceeded { attempts, last, .. } => {
            assert_eq!(
                attempts, 1,
                "a 30 s Retry-After cannot fit in a 2 s deadline"
            );
            assert!(matches!(*last, Error::RateLimited { .. }));
        }
        other => panic!("expected DeadlineExceeded, got {other}"),
    }
}

#[tokio::test]
async fn one_concurrency_limit_is_shared_by_all_calls_of_a_client() {
    let counters = Arc::new(Counters::default());
    let c2 = counters.clone();
    let base = serve(Router::new().fallback(any(move || {
        let c = c2.clone();
        c.hits.fetch_add(1, Ordering::SeqCst);
        async move {
            let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            c.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.in_flight.fetch_sub(1, Ordering::SeqCst);
            json(StatusCode::OK, EMPTY_CENSUS)
        }
    })))
    .await;
    let config = ClientConfig::builder(credentials())
        .base_url(&base)
        .concurrency(3)
        .build()
        .unwrap();
    let c = Client::new(config).unwrap();
    let calls = (0..12).map(|_| {
        let c = c.clone();
        async move { c.patients().census(&CensusQuery::default()).page().await }
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(counters.hits.load(Ordering::SeqCst), 12);
    assert!(counters.max_in_flight.load(Ordering::SeqCst) <= 3);
}

#[test]
fn plain_http_to_a_remote_host_is_refused_with_the_reason() {
    let err = ClientConfig::builder(credentials())
        .base_url("http://api.kipuapi.com")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Configuration(_)));
    assert!(err.to_string().contains("unencrypted"), "{err}");
}

#[test]
fn a_malformed_extra_ca_bundle_is_a_configuration_error() {
    let err = ClientConfig::builder(credentials())
        .extra_ca_pem(b"not pem".to_vec())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Configuration(_)), "{err}");
}
