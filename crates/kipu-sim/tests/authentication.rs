//! The simulator verifies the signature of the request exactly as received.

mod common;

use common::{Req, start};
use kipu::signing::ApiVersion;
use kipu_sim::SimConfig;
use serde_json::json;

const CENSUS: &str = "/api/patients/census";

async fn refused_with(signer: &common::Signer, req: Req, needle: &str) {
    let r = signer.send(req).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status_code"], 401);
    let msg = body["errors"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg}");
}

#[tokio::test]
async fn reserved_characters_in_the_query_authenticate_because_the_received_target_is_verified() {
    let (sim, s) = start(SimConfig::default()).await;
    let value = "2024-01-01 10:00:00 a:b/c*d(e)f!g&h=i+j ö";
    let target = s.target(CENSUS, &[], &[("note", value), ("per", "5")]);
    assert!(target.contains("%3A") && target.contains("%C3%B6"));
    let r = s.send(Req::get(target.clone())).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // A path id with reserved characters is encoded too, and authenticates (then 404s).
    let odd = s.target("/api/patients/{patient_id}", &["p 1/x:(y)!"], &[]);
    assert_eq!(s.send(Req::get(odd)).await.unwrap().status().as_u16(), 404);

    // The same request with the target changed after signing is refused.
    let altered = target.replace("%3A", ":");
    refused_with(
        &s,
        Req {
            wire_target: Some(altered),
            ..Req::get(target.clone())
        },
        "signature",
    )
    .await;
    let swapped = target.replace("per=5", "per=6");
    refused_with(
        &s,
        Req {
            wire_target: Some(swapped),
            ..Req::get(target)
        },
        "signature",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_v3_header_against_v4_credentials_is_refused_and_v4_is_accepted() {
    let (sim, s) = start(SimConfig {
        api_version: ApiVersion::V4,
        ..SimConfig::default()
    })
    .await;
    let target = s.target(CENSUS, &[], &[]);
    assert_eq!(
        s.send(Req::get(target.clone()))
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    refused_with(
        &s,
        Req {
            version: Some(ApiVersion::V3),
            ..Req::get(target.clone())
        },
        "API version",
    )
    .await;
    // The v3 Accept header is refused as well, even with a v4 signature.
    let v3_accept = ApiVersion::V3.accept_header();
    refused_with(
        &s,
        Req {
            accept: Some(v3_accept),
            ..Req::get(target)
        },
        "Accept",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn clock_skew_beyond_the_window_is_refused_in_both_directions() {
    let (sim, s) = start(SimConfig::default()).await;
    let target = s.target(CENSUS, &[], &[]);
    refused_with(
        &s,
        Req {
            date_offset: -1000,
            ..Req::get(target.clone())
        },
        "clock skew",
    )
    .await;
    refused_with(
        &s,
        Req {
            date_offset: 1000,
            ..Req::get(target.clone())
        },
        "clock skew",
    )
    .await;
    // Well inside the window both ways is fine.
    for offset in [-600, 600] {
        let r = s
            .send(Req {
                date_offset: offset,
                ..Req::get(target.clone())
            })
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn content_md5_must_match_the_body_and_is_required_with_one() {
    let (sim, s) = start(SimConfig::default()).await;
    let (_, _, app) = sim.credentials();
    let target = s.target("/api/patients", &[], &[]);
    let body = json!({"document": {"recipient_id": app, "data": {"first_name": "Ann", "last_name": "Lee"}}});
    let wrong = Some(Some(kipu::signing::content_md5(b"something else")));
    refused_with(
        &s,
        Req {
            content_md5: wrong,
            ..Req::json("POST", target.clone(), &body)
        },
        "Content-MD5",
    )
    .await;
    refused_with(
        &s,
        Req {
            content_md5: Some(None),
            ..Req::json("POST", target.clone(), &body)
        },
        "Content-MD5",
    )
    .await;
    // Nothing was stored by the refused requests.
    let (_, census) = s.get_json(&s.target(CENSUS, &[], &[("per", "1")])).await;
    assert_eq!(census["pagination"]["total_records"], 200);
    let r = s.send(Req::json("POST", target, &body)).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_missing_or_misplaced_app_id_is_refused() {
    let (sim, s) = start(SimConfig::default()).await;
    let (_, _, app) = sim.credentials();
    let wrong = kipu::signing::RequestTarget::new(CENSUS, &[], &[], "other-app").unwrap();
    refused_with(&s, Req::get(wrong.as_str()), "app_id").await;
    refused_with(&s, Req::get(format!("{CENSUS}?per=5")), "app_id").await;
    refused_with(
        &s,
        Req::get(format!("{CENSUS}?app_id={app}&per=5")),
        "app_id",
    )
    .await;
    refused_with(
        &s,
        Req::get(format!("{CENSUS}?app_id={app}&app_id={app}")),
        "app_id",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_access_id_bad_signature_and_missing_headers_are_refused_without_echoing_data() {
    let (sim, s) = start(SimConfig::default()).await;
    let target = s.target("/api/patients/{patient_id}", &["CANARYID123"], &[]);
    refused_with(
        &s,
        Req {
            access_id: Some("nobody".into()),
            ..Req::get(target.clone())
        },
        "unknown access id",
    )
    .await;
    let bad = common::Signer {
        secret: secrecy::SecretString::from("not-the-secret"),
        ..common::Signer::for_sim(&sim, ApiVersion::V3)
    };
    let r = bad.send(Req::get(target.clone())).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("CANARYID123") && !text.contains("nobody"),
        "{text}"
    );

    let raw = reqwest::Client::new()
        .get(format!("{}{}", s.base, target))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 401);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["errors"], "missing Authorization header");
    sim.shutdown().await;
}
