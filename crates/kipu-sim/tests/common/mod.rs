//! Hand-signed requests against a running simulator (raw reqwest + kipu::signing, not the
//! client crate), so these tests check the simulator's verification on its own.

#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use kipu::signing::{self, ApiVersion, CanonicalString, RequestTarget};
use kipu_sim::{RunningSim, SimConfig};
use secrecy::{ExposeSecret as _, SecretString};

/// One request, with every part a test may want to get wrong.
pub struct Req {
    pub method: &'static str,
    /// The target that is signed.
    pub target: String,
    /// The target that is sent, when a test alters it after signing.
    pub wire_target: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Overrides the Content-MD5 header (None: computed when there is a body).
    pub content_md5: Option<Option<String>>,
    /// Seconds added to the current time for the Date header.
    pub date_offset: i64,
    /// Signs with this version instead of the simulator's.
    pub version: Option<ApiVersion>,
    pub accept: Option<String>,
    pub access_id: Option<String>,
}

impl Req {
    pub fn get(target: impl Into<String>) -> Self {
        Self {
            method: "GET",
            target: target.into(),
            wire_target: None,
            content_type: None,
            body: Vec::new(),
            content_md5: None,
            date_offset: 0,
            version: None,
            accept: None,
            access_id: None,
        }
    }

    pub fn json(method: &'static str, target: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method,
            content_type: Some("application/json".into()),
            body: serde_json::to_vec(body).unwrap(),
            ..Self::get(target)
        }
    }
}

pub struct Signer {
    pub base: String,
    pub access_id: String,
    pub secret: SecretString,
    pub app_id: String,
    pub version: ApiVersion,
    pub http: reqwest::Client,
}

impl Signer {
    pub fn for_sim(sim: &RunningSim, version: ApiVersion) -> Self {
        let (access_id, secret, app_id) = sim.credentials();
        Self {
            base: sim.base_url(),
            access_id,
            secret,
            app_id,
            version,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }

    /// The target for a template, ids and query, `app_id` appended last.
    pub fn target(&self, template: &str, ids: &[&str], query: &[(&str, &str)]) -> String {
        RequestTarget::new(template, ids, query, &self.app_id)
            .unwrap()
            .as_str()
            .to_owned()
    }

    pub async fn send(&self, req: Req) -> reqwest::Result<reqwest::Response> {
        let now = SystemTime::now();
        let date_at = if req.date_offset >= 0 {
            now + Duration::from_secs(req.date_offset as u64)
        } else {
            now - Duration::from_secs(req.date_offset.unsigned_abs())
        };
        let date = signing::http_date(date_at);
        let md5 = match req.content_md5.clone() {
            Some(v) => v,
            None if !req.body.is_empty() => Some(signing::content_md5(&req.body)),
            None => None,
        };
        let version = req.version.unwrap_or(self.version);
        let canonical = CanonicalString::for_method(
            req.method,
            req.content_type.as_deref().unwrap_or(""),
            md5.as_deref().unwrap_or(""),
            &req.target,
            &date,
        );
        let signature = signing::sign(version, &self.secret, &canonical);
        let access_id = req
            .access_id
            .clone()
            .unwrap_or_else(|| self.access_id.clone());
        let url = format!(
            "{}{}",
            self.base,
            req.wire_target.as_deref().unwrap_or(&req.target)
        );
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
        let mut builder = self
            .http
            .request(method, url)
            .header("Date", date)
            .header(
                "Accept",
                req.accept
                    .clone()
                    .unwrap_or_else(|| self.version.accept_header()),
            )
            .header(
                "Authorization",
                format!("{} {}:{}", version.scheme(), access_id, signature),
            );
        if let Some(ct) = &req.content_type {
            builder = builder.header("Content-Type", ct);
        }
        if let Some(md5) = md5 {
            builder = builder.header("Content-MD5", md5);
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body);
        }
        builder.send().await
    }

    /// GET a target and return (status, JSON body).
    pub async fn get_json(&self, target: &str) -> (u16, serde_json::Value) {
        let r = self.send(Req::get(target)).await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    pub fn secret_str(&self) -> &str {
        self.secret.expose_secret()
    }
}

pub async fn start(config: SimConfig) -> (RunningSim, Signer) {
    let version = config.api_version;
    let sim = kipu_sim::spawn(config).await.unwrap();
    let signer = Signer::for_sim(&sim, version);
    (sim, signer)
}
