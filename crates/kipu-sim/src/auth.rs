//! Verification of the APIAuth signature of a request as it was received.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use kipu::signing::{self, ApiVersion, AuthorizationHeader, CanonicalString};
use secrecy::SecretString;

/// What the simulator accepts.
pub(crate) struct Verifier {
    pub version: ApiVersion,
    pub access_id: String,
    pub secret: SecretString,
    pub app_id: String,
    pub max_skew: Duration,
}

/// Why a request was refused; the message names the check, never request data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    MissingAuthorization,
    MalformedAuthorization,
    UnknownAccessId,
    VersionMismatch,
    BadAccept,
    MissingDate,
    MalformedDate,
    ClockSkew,
    MissingContentMd5,
    ContentMd5Mismatch,
    BadSignature,
    AppId,
}

impl Refusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::MissingAuthorization => "missing Authorization header",
            Self::MalformedAuthorization => {
                "malformed Authorization header: expected `APIAuth id:sig` or `APIAuth-HMAC-SHA256 id:sig`"
            }
            Self::UnknownAccessId => "unknown access id",
            Self::VersionMismatch => {
                "Authorization scheme does not match the API version configured for these credentials"
            }
            Self::BadAccept => {
                "Accept header must be `application/vnd.kipusystems+json; version=N` for the configured API version"
            }
            Self::MissingDate => "missing Date header",
            Self::MalformedDate => "malformed Date header: expected an RFC 1123 GMT date",
            Self::ClockSkew => "Date header is outside the allowed clock skew",
            Self::MissingContentMd5 => "a request with a body must carry Content-MD5",
            Self::ContentMd5Mismatch => "Content-MD5 does not match the request body",
            Self::BadSignature => "signature does not match the request",
            Self::AppId => {
                "the app_id query parameter must be present once, last, and equal the app id of these credentials"
            }
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refusal> {
    match headers.get(name) {
        None => Ok(None),
        // A header that is not visible ASCII cannot have been signed by a conforming client.
        Some(v) => v.to_str().map(Some).map_err(|_| Refusal::BadSignature),
    }
}

impl Verifier {
    /// Checks a request: `target` is the raw path and query exactly as received.
    pub(crate) fn verify(
        &self,
        method: &str,
        target: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Refusal> {
        let authorization =
            header(headers, "authorization")?.ok_or(Refusal::MissingAuthorization)?;
        let auth = AuthorizationHeader::parse(authorization)
            .map_err(|_| Refusal::MalformedAuthorization)?;
        if auth.access_id != self.access_id {
            return Err(Refusal::UnknownAccessId);
        }
        if auth.version != self.version {
            return Err(Refusal::VersionMismatch);
        }
        if header(headers, "accept")? != Some(self.version.accept_header().as_str()) {
            return Err(Refusal::BadAccept);
        }
        let date = header(headers, "date")?.ok_or(Refusal::MissingDate)?;
        let sent = signing::parse_http_date(date).map_err(|_| Refusal::MalformedDate)?;
        signing::check_clock_skew(sent, now, self.max_skew).map_err(|_| Refusal::ClockSkew)?;
        let content_md5 = header(headers, "content-md5")?;
        match content_md5 {
            Some(md5) if md5 != signing::content_md5(body) => {
                return Err(Refusal::ContentMd5Mismatch);
            }
            None if !body.is_empty() => return Err(Refusal::MissingContentMd5),
            _ => {}
        }
        let content_type = header(headers, "content-type")?.unwrap_or("");
        let canonical = CanonicalString::for_method(
            method,
            content_type,
            content_md5.unwrap_or(""),
            target,
            date,
        );
        signing::verify(self.version, &self.secret, &canonical, auth.signature)
            .map_err(|_| Refusal::BadSignature)?;
        self.check_app_id(target)
    }

    fn check_app_id(&self, target: &str) -> Result<(), Refusal> {
        let query = target
            .split_once('?')
            .map(|(_, q)| q)
            .ok_or(Refusal::AppId)?;
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let app_ids = pairs.iter().filter(|(k, _)| k == "app_id").count();
        match pairs.last() {
            Some((k, v)) if k == "app_id" && v == &self.app_id && app_ids == 1 => Ok(()),
            _ => Err(Refusal::AppId),
        }
    }
}
