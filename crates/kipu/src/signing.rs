//! The APIAuth request signature used by the Kipu API, for both the client and the simulator.
//!
//! # The scheme
//!
//! The canonical string has four comma-separated fields and no trailing newline:
//!
//! ```text
//! {content_type},{content_md5},{request_target},{date}
//! ```
//!
//! A GET always signs the first two fields empty (`,,/api/patients/census?app_id=x,<date>`). The
//! HTTP method itself is not signed. `request_target` is the path plus the query string, with no
//! scheme or host. The signature is the standard, padded base64 of the raw HMAC digest keyed
//! with the UTF-8 bytes of the secret: HMAC-SHA1 for API v3 (`Authorization: APIAuth id:sig`),
//! HMAC-SHA256 for v4 (`Authorization: APIAuth-HMAC-SHA256 id:sig`).
//!
//! # Invariants
//!
//! * [`RequestTarget`] is the only way to build a request target, and it is built once. It
//!   percent-encodes every byte outside `A-Z a-z 0-9 - . _ ~` (space as `+` in the query), so
//!   no HTTP library between us and the socket has a reason to re-encode it; the client sends
//!   [`RequestTarget::as_str`] and signs the same string.
//! * `app_id` is always the last query parameter; a caller-supplied `app_id` is dropped, not
//!   duplicated.
//! * Only API versions 3 and 4 exist here. kipu-python silently accepts 2 or 5; a version we
//!   cannot sign correctly is a configuration error, not a guess.
//! * Verification compares signatures in constant time.
//! * No function here logs, and no error carries the canonical string (it contains query
//!   parameters such as patient ids).

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use secrecy::{ExposeSecret as _, SecretString};

/// The Kipu API version, which selects the HMAC digest and the `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    /// API v3: HMAC-SHA1, `Authorization: APIAuth …`.
    V3,
    /// API v4: HMAC-SHA256, `Authorization: APIAuth-HMAC-SHA256 …`.
    V4,
}

impl ApiVersion {
    /// The number sent in the `Accept` header.
    pub const fn number(self) -> u8 {
        match self {
            Self::V3 => 3,
            Self::V4 => 4,
        }
    }

    /// The `Authorization` scheme token for this version.
    pub const fn scheme(self) -> &'static str {
        match self {
            Self::V3 => "APIAuth",
            Self::V4 => "APIAuth-HMAC-SHA256",
        }
    }

    /// The exact `Accept` header value: `application/vnd.kipusystems+json; version=N`.
    pub fn accept_header(self) -> String {
        format!(
            "application/vnd.kipusystems+json; version={}",
            self.number()
        )
    }

    fn algorithm(self) -> hmac::Algorithm {
        match self {
            Self::V3 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::V4 => hmac::HMAC_SHA256,
        }
    }
}

impl std::str::FromStr for ApiVersion {
    type Err = SigningError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "3" => Ok(Self::V3),
            "4" => Ok(Self::V4),
            _ => Err(SigningError::UnsupportedVersion),
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// Errors from building or checking a signature. None of them carries request data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// The API version is neither 3 nor 4.
    #[error("unsupported Kipu API version: only 3 and 4 are supported")]
    UnsupportedVersion,
    /// The `Authorization` header is missing or not `SCHEME access_id:signature`.
    #[error(
        "malformed Authorization header: expected `APIAuth id:sig` or `APIAuth-HMAC-SHA256 id:sig`"
    )]
    MalformedAuthorization,
    /// The `Date` header is missing or not an RFC 1123 date.
    #[error(
        "missing or malformed Date header: expected an RFC 1123 date such as `Wed, 06 Nov 2019 15:38:34 GMT`"
    )]
    MalformedDate,
    /// The request's date is further from the verifier's clock than the allowed skew.
    #[error("request Date is outside the allowed clock skew of {allowed_secs} s")]
    ClockSkew {
        /// The allowed skew in seconds.
        allowed_secs: u64,
    },
    /// The `Content-MD5` header does not match the body.
    #[error("Content-MD5 does not match the request body")]
    ContentMd5Mismatch,
    /// The signature does not match.
    #[error("signature does not match")]
    BadSignature,
    /// The Authorization scheme is for a different API version than the credentials.
    #[error(
        "Authorization scheme {got} does not match the API version {expected} of these credentials"
    )]
    VersionMismatch {
        /// The version the credentials are configured for.
        expected: ApiVersion,
        /// The version named by the request's scheme.
        got: ApiVersion,
    },
}

/// The credentials Kipu issues: an access id, a secret key and an app id (`recipient_id`).
///
/// `Debug` shows the access id and app id (identifiers, not secrets) and never the secret.
#[derive(Clone)]
pub struct Credentials {
    access_id: String,
    secret_key: SecretString,
    app_id: String,
    version: ApiVersion,
}

impl Credentials {
    /// Bundles the three credentials with the API version they are for.
    pub fn new(
        access_id: impl Into<String>,
        secret_key: SecretString,
        app_id: impl Into<String>,
        version: ApiVersion,
    ) -> Self {
        Self {
            access_id: access_id.into(),
            secret_key,
            app_id: app_id.into(),
            version,
        }
    }

    /// The access id (sent in clear in every `Authorization` header).
    pub fn access_id(&self) -> &str {
        &self.access_id
    }

    /// The app id, appended as the last query parameter of every request.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The API version these credentials sign for.
    pub fn version(&self) -> ApiVersion {
        self.version
    }

    /// Signs a canonical string and returns the base64 signature.
    pub fn sign(&self, canonical: &CanonicalString) -> String {
        sign(self.version, &self.secret_key, canonical)
    }

    /// The full `Authorization` header value for a canonical string.
    pub fn authorization(&self, canonical: &CanonicalString) -> String {
        format!(
            "{} {}:{}",
            self.version.scheme(),
            self.access_id,
            self.sign(canonical)
        )
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_id", &self.access_id)
            .field("secret_key", &"[REDACTED]")
            .field("app_id", &self.app_id)
            .field("version", &self.version)
            .finish()
    }
}

/// Computes the base64 HMAC of a canonical string under `secret` for `version`.
pub fn sign(version: ApiVersion, secret: &SecretString, canonical: &CanonicalString) -> String {
    let key = hmac::Key::new(version.algorithm(), secret.expose_secret().as_bytes());
    BASE64.encode(hmac::sign(&key, canonical.0.as_bytes()).as_ref())
}

/// Checks a base64 signature in constant time.
pub fn verify(
    version: ApiVersion,
    secret: &SecretString,
    canonical: &CanonicalString,
    signature_b64: &str,
) -> Result<(), SigningError> {
    let provided = BASE64
        .decode(signature_b64)
        .map_err(|_| SigningError::BadSignature)?;
    let key = hmac::Key::new(version.algorithm(), secret.expose_secret().as_bytes());
    hmac::verify(&key, canonical.0.as_bytes(), &provided).map_err(|_| SigningError::BadSignature)
}

/// `Content-MD5`: standard base64 of the raw 16-byte MD5 of the exact body bytes.
pub fn content_md5(body: &[u8]) -> String {
    BASE64.encode(Md5::digest(body))
}

/// Formats a time as an RFC 1123 GMT date (`Wed, 06 Nov 2019 15:38:34 GMT`).
pub fn http_date(at: SystemTime) -> String {
    httpdate::fmt_http_date(at)
}

/// Parses an RFC 1123 date as sent in the `Date` header.
pub fn parse_http_date(value: &str) -> Result<SystemTime, SigningError> {
    httpdate::parse_http_date(value).map_err(|_| SigningError::MalformedDate)
}

/// Checks that `date` lies within `allowed` of `now`, in either direction.
pub fn check_clock_skew(
    date: SystemTime,
    now: SystemTime,
    allowed: Duration,
) -> Result<(), SigningError> {
    let skew = match now.duration_since(date) {
        Ok(behind) => behind,
        Err(ahead) => ahead.duration(),
    };
    if skew > allowed {
        return Err(SigningError::ClockSkew {
            allowed_secs: allowed.as_secs(),
        });
    }
    Ok(())
}

/// The string that is signed. Build it with [`CanonicalString::for_get`] or
/// [`CanonicalString::for_body`]; its `Debug` hides the request target (it may hold patient ids).
#[derive(Clone, PartialEq, Eq)]
pub struct CanonicalString(String);

impl CanonicalString {
    /// The GET form: `,,{request_target},{date}`. Content-Type and Content-MD5 are never signed
    /// on a GET, whatever headers the request carries.
    pub fn for_get(request_target: &str, date: &str) -> Self {
        Self(format!(",,{request_target},{date}"))
    }

    /// The form for every other method: `{content_type},{content_md5},{request_target},{date}`,
    /// either of the first two possibly empty.
    pub fn for_body(
        content_type: &str,
        content_md5: &str,
        request_target: &str,
        date: &str,
    ) -> Self {
        Self(format!(
            "{content_type},{content_md5},{request_target},{date}"
        ))
    }

    /// Builds the form that fits `method` (GET or anything else).
    pub fn for_method(
        method: &str,
        content_type: &str,
        content_md5: &str,
        request_target: &str,
        date: &str,
    ) -> Self {
        if method.eq_ignore_ascii_case("GET") {
            Self::for_get(request_target, date)
        } else {
            Self::for_body(content_type, content_md5, request_target, date)
        }
    }

    /// The exact bytes that are signed. Printing them leaks query parameters: only the
    /// `phigate kipu sign` debugging command, run by the credential holder, should.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CanonicalString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CanonicalString([REDACTED])")
    }
}

/// A parsed `Authorization: SCHEME access_id:signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader<'a> {
    /// The version named by the scheme.
    pub version: ApiVersion,
    /// The access id before the colon.
    pub access_id: &'a str,
    /// The base64 signature after the last colon.
    pub signature: &'a str,
}

impl<'a> AuthorizationHeader<'a> {
    /// Parses the header value. The scheme is matched exactly (case-sensitive, one space).
    pub fn parse(value: &'a str) -> Result<Self, SigningError> {
        let (scheme, rest) = value
            .split_once(' ')
            .ok_or(SigningError::MalformedAuthorization)?;
        let version = match scheme {
            "APIAuth" => ApiVersion::V3,
            "APIAuth-HMAC-SHA256" => ApiVersion::V4,
            _ => return Err(SigningError::MalformedAuthorization),
        };
        let (access_id, signature) = rest
            .rsplit_once(':')
            .ok_or(SigningError::MalformedAuthorization)?;
        if access_id.is_empty() || signature.is_empty() || access_id.contains(' ') {
            return Err(SigningError::MalformedAuthorization);
        }
        Ok(Self {
            version,
            access_id,
            signature,
        })
    }
}

/// Characters kept as they are in paths and queries: RFC 3986 unreserved.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_encoded(out: &mut String, value: &str, space_as_plus: bool) {
    for &b in value.as_bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else if b == b' ' && space_as_plus {
            out.push('+');
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0x0f)] as char);
        }
    }
}

/// Percent-encodes one path segment (a patient id such as `12:3f9a…` or `p 1/x`): every byte
/// outside the unreserved set, including `/`, becomes `%XX`, so an id can never change the path.
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    push_encoded(&mut out, segment, false);
    out
}

/// Encodes query pairs in order with `application/x-www-form-urlencoded` rules as Python's
/// `urlencode` applies them (space as `+`, upper-case hex, unreserved kept).
pub fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        push_encoded(&mut out, k, true);
        out.push('=');
        push_encoded(&mut out, v, true);
    }
    out
}

/// The request target (path plus query string) that is both signed and sent.
///
/// ```
/// use kipu::signing::RequestTarget;
/// let t = RequestTarget::new(
///     "/api/patients/{patient_id}/vital_signs",
///     &["12:ab/c"],
///     &[("created_at_start_date", "2024-01-01 10:00:00")],
///     "app",
/// )
/// .unwrap();
/// assert_eq!(
///     t.as_str(),
///     "/api/patients/12%3Aab%2Fc/vital_signs?created_at_start_date=2024-01-01+10%3A00%3A00&app_id=app"
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RequestTarget(String);

/// A path template whose `{placeholders}` do not match the ids given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path template {template} needs {expected} ids, got {got}")]
pub struct PathArityError {
    /// The template (never a filled-in path).
    pub template: String,
    /// How many placeholders it has.
    pub expected: usize,
    /// How many ids were given.
    pub got: usize,
}

impl RequestTarget {
    /// Fills `template`'s `{placeholders}` with `ids` in order (each percent-encoded as one
    /// segment), appends the query pairs in order and `app_id` last. A caller-supplied `app_id`
    /// pair is dropped.
    pub fn new(
        template: &str,
        ids: &[&str],
        query: &[(&str, &str)],
        app_id: &str,
    ) -> Result<Self, PathArityError> {
        let expected = template.matches('{').count();
        if expected != ids.len() {
            return Err(PathArityError {
                template: template.to_string(),
                expected,
                got: ids.len(),
            });
        }
        let mut path = String::with_capacity(template.len() + 32);
        let mut ids = ids.iter();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            path.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            // Arity was checked above, so an id is always there.
            if let Some(id) = ids.next() {
                push_encoded(&mut path, id, false);
            }
            rest = &rest[close..];
        }
        path.push_str(rest);
        let query = encode_query(
            query
                .iter()
                .copied()
                .filter(|(k, _)| *k != "app_id")
                .chain([("app_id", app_id)]),
        );
        Ok(Self(format!("{path}?{query}")))
    }

    /// Wraps a target that was received on the wire (the simulator verifies exactly this).
    pub fn from_wire(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The exact string to send after the host and to sign.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path part (before `?`).
    pub fn path(&self) -> &str {
        self.0.split_once('?').map_or(&self.0, |(p, _)| p)
    }
}

impl fmt::Debug for RequestTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestTarget([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Wed, 06 Nov 2019 15:38:34 GMT";

    fn secret() -> SecretString {
        SecretString::from("test_secret")
    }

    fn both(canonical: &CanonicalString) -> (String, String) {
        (
            sign(ApiVersion::V3, &secret(), canonical),
            sign(ApiVersion::V4, &secret(), canonical),
        )
    }

    // Golden vectors of kipu-api.md §1.6, computed with kipu-python 0.0.2.
    #[test]
    fn golden_get_census() {
        let c = CanonicalString::for_get("/api/patients/census?app_id=test_app", DATE);
        assert_eq!(
            c.as_str(),
            ",,/api/patients/census?app_id=test_app,Wed, 06 Nov 2019 15:38:34 GMT"
        );
        assert_eq!(
            both(&c),
            (
                "/tq1hhuodh0l8KAi1sHr40CBQlI=".into(),
                "4u2PWWi+HBDsdzLn+2Z+FfBTy9H0l09akLXk8PYP0DU=".into()
            )
        );
    }

    #[test]
    fn golden_get_without_query() {
        let c = CanonicalString::for_get("/api/test", DATE);
        assert_eq!(
            both(&c),
            (
                "6HLRhEj+GtC6K99/2XuB+M/9TD4=".into(),
                "0PhwBlIP7PRRE5lwcPZgktJbP9t+GQhPALBVWgNUC/w=".into()
            )
        );
    }

    #[test]
    fn golden_post_test_suite_inputs() {
        let c = CanonicalString::for_body(
            "application/json",
            "VpofNeoRAzRvCD/YjO1mSw==",
            "/api/patients",
            DATE,
        );
        assert_eq!(
            both(&c),
            (
                "Kjvt1O6L8AWt9rqMRNecse2IuH4=".into(),
                "lcpZ1IPOpeutRBImSF9r+07NUHyUAhTNRkyCyoXN6jQ=".into()
            )
        );
    }

    #[test]
    fn golden_post_full_body() {
        let body = br#"{"document": {"recipient_id": "test_app", "data": {"first_name": "John"}}}"#;
        let md5 = content_md5(body);
        assert_eq!(md5, "p9r4jtQp5glFy0hl6r/oxg==");
        let target = RequestTarget::new("/api/patients", &[], &[], "test_app").unwrap();
        let c =
            CanonicalString::for_method("POST", "application/json", &md5, target.as_str(), DATE);
        assert_eq!(
            c.as_str(),
            "application/json,p9r4jtQp5glFy0hl6r/oxg==,/api/patients?app_id=test_app,Wed, 06 Nov 2019 15:38:34 GMT"
        );
        assert_eq!(
            both(&c),
            (
                "J1lneVpnAAS8HmKsPOV8PZMyQ3I=".into(),
                "YIL+pOtrxXzBORiMKcDTNe3NUH5acFLC438ErAQthWQ=".into()
            )
        );
    }

    #[test]
    fn golden_patch_with_empty_body_signs_like_a_get() {
        let target =
            RequestTarget::new("/api/patients/{patient_id}", &["42"], &[], "test_app").unwrap();
        let c = CanonicalString::for_method("PATCH", "", "", target.as_str(), DATE);
        assert_eq!(
            c,
            CanonicalString::for_get("/api/patients/42?app_id=test_app", DATE)
        );
        assert_eq!(
            both(&c),
            (
                "n+2OeHLtsnHYtFTinZJFGTEIasw=".into(),
                "R+pw37cPJtFPWYQTzGer732XAm6zi1GAOyjpyaOZnA8=".into()
            )
        );
    }

    #[test]
    fn content_md5_of_the_test_suite_body() {
        assert_eq!(
            content_md5(br#"{"test": "data"}"#),
            "b+p0ihjehLY2Na8siridQQ=="
        );
    }

    #[test]
    fn authorization_header_format_per_version() {
        let c = CanonicalString::for_get("/api/test", DATE);
        let v3 = Credentials::new("id1", secret(), "app", ApiVersion::V3);
        let v4 = Credentials::new("id1", secret(), "app", ApiVersion::V4);
        assert_eq!(
            v3.authorization(&c),
            "APIAuth id1:6HLRhEj+GtC6K99/2XuB+M/9TD4="
        );
        assert_eq!(
            v4.authorization(&c),
            "APIAuth-HMAC-SHA256 id1:0PhwBlIP7PRRE5lwcPZgktJbP9t+GQhPALBVWgNUC/w="
        );
        assert_eq!(
            ApiVersion::V3.accept_header(),
            "application/vnd.kipusystems+json; version=3"
        );
        assert_eq!(
            ApiVersion::V4.accept_header(),
            "application/vnd.kipusystems+json; version=4"
        );
    }

    #[test]
    fn http_date_is_rfc1123_gmt_and_round_trips() {
        let t = parse_http_date(DATE).unwrap();
        assert_eq!(http_date(t), DATE);
        assert_eq!(
            parse_http_date("yesterday"),
            Err(SigningError::MalformedDate)
        );
    }

    #[test]
    fn clock_skew_is_symmetric_and_bounded() {
        let now = parse_http_date(DATE).unwrap();
        let window = Duration::from_secs(900);
        assert!(check_clock_skew(now - Duration::from_secs(900), now, window).is_ok());
        assert!(check_clock_skew(now + Duration::from_secs(900), now, window).is_ok());
        assert!(check_clock_skew(now - Duration::from_secs(901), now, window).is_err());
        assert!(check_clock_skew(now + Duration::from_secs(901), now, window).is_err());
    }

    #[test]
    fn only_versions_three_and_four_parse() {
        assert_eq!("3".parse::<ApiVersion>(), Ok(ApiVersion::V3));
        assert_eq!("4".parse::<ApiVersion>(), Ok(ApiVersion::V4));
        for bad in ["2", "5", "", "v3", "33"] {
            assert_eq!(
                bad.parse::<ApiVersion>(),
                Err(SigningError::UnsupportedVersion)
            );
        }
    }

    #[test]
    fn request_target_encodes_every_reserved_character() {
        let t = RequestTarget::new(
            "/api/patients/census",
            &[],
            &[("q", "a b:c/d*e(f)g!h&i=j+k'ö~")],
            "app",
        )
        .unwrap();
        assert_eq!(
            t.as_str(),
            "/api/patients/census?q=a+b%3Ac%2Fd%2Ae%28f%29g%21h%26i%3Dj%2Bk%27%C3%B6~&app_id=app"
        );
    }

    #[test]
    fn request_target_puts_app_id_last_and_drops_a_caller_app_id() {
        let t = RequestTarget::new(
            "/api/x",
            &[],
            &[("app_id", "evil"), ("page", "2"), ("per", "50")],
            "real",
        )
        .unwrap();
        assert_eq!(t.as_str(), "/api/x?page=2&per=50&app_id=real");
    }

    #[test]
    fn request_target_checks_path_arity() {
        let err = RequestTarget::new("/api/patients/{patient_id}", &[], &[], "a").unwrap_err();
        assert_eq!((err.expected, err.got), (1, 0));
        let two = RequestTarget::new(
            "/api/patients/{patient_id}/insurances/{insurance_id}",
            &["p 1/x", "9"],
            &[],
            "a",
        )
        .unwrap();
        assert_eq!(two.path(), "/api/patients/p%201%2Fx/insurances/9");
    }

    #[test]
    fn authorization_header_parses_both_schemes_and_rejects_others() {
        let h = AuthorizationHeader::parse("APIAuth id:sig=").unwrap();
        assert_eq!(
            (h.version, h.access_id, h.signature),
            (ApiVersion::V3, "id", "sig=")
        );
        let h = AuthorizationHeader::parse("APIAuth-HMAC-SHA256 id:sig").unwrap();
        assert_eq!(h.version, ApiVersion::V4);
        for bad in [
            "",
            "APIAuth",
            "APIAuth id",
            "Bearer id:sig",
            "apiauth id:sig",
            "APIAuth :sig",
            "APIAuth id:",
        ] {
            assert_eq!(
                AuthorizationHeader::parse(bad),
                Err(SigningError::MalformedAuthorization),
                "{bad}"
            );
        }
    }

    #[test]
    fn verify_accepts_the_right_signature_and_rejects_tampering() {
        let c = CanonicalString::for_get("/api/test", DATE);
        assert!(
            verify(
                ApiVersion::V3,
                &secret(),
                &c,
                "6HLRhEj+GtC6K99/2XuB+M/9TD4="
            )
            .is_ok()
        );
        assert_eq!(
            verify(
                ApiVersion::V3,
                &secret(),
                &c,
                "7HLRhEj+GtC6K99/2XuB+M/9TD4="
            ),
            Err(SigningError::BadSignature)
        );
        // The v3 signature is not valid under v4 and vice versa.
        assert!(
            verify(
                ApiVersion::V4,
                &secret(),
                &c,
                "6HLRhEj+GtC6K99/2XuB+M/9TD4="
            )
            .is_err()
        );
        assert!(verify(ApiVersion::V3, &secret(), &c, "not base64!").is_err());
    }

    #[test]
    fn debug_output_hides_secret_and_request_data() {
        let creds = Credentials::new(
            "id1",
            SecretString::from("s3cr3t-CANARY"),
            "app",
            ApiVersion::V3,
        );
        let c = CanonicalString::for_get("/api/patients/CANARY-ID?app_id=a", DATE);
        let t = RequestTarget::new("/api/patients/{id}", &["CANARY-ID"], &[], "a").unwrap();
        let out = format!("{creds:?} {c:?} {t:?}");
        assert!(!out.contains("CANARY"), "{out}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn decode_component(s: &str) -> String {
            let bytes = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'+' => out.push(b' '),
                    b'%' => {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                        out.push(u8::from_str_radix(hex, 16).unwrap());
                        i += 2;
                    }
                    b => out.push(b),
                }
                i += 1;
            }
            String::from_utf8(out).unwrap()
        }

        proptest! {
            #[test]
            fn encoded_query_is_plain_ascii_and_decodes_back_in_order(
                pairs in proptest::collection::vec((".{1,12}", ".{0,24}"), 0..6)
            ) {
                let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "app_id").collect();
                let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let target = RequestTarget::new("/api/x", &[], &refs, "app").unwrap();
                let query = target.as_str().split_once('?').unwrap().1;
                prop_assert!(query.bytes().all(|b| is_unreserved(b) || matches!(b, b'%' | b'+' | b'&' | b'=')));
                let decoded: Vec<(String, String)> = query
                    .split('&')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        (decode_component(k), decode_component(v))
                    })
                    .collect();
                let mut expected = pairs.clone();
                expected.push(("app_id".into(), "app".into()));
                prop_assert_eq!(decoded, expected);
            }

            #[test]
            fn encoded_path_segment_never_contains_a_separator(id in ".{0,40}") {
                let enc = encode_path_segment(&id);
                prop_assert!(!enc.contains('/') && !enc.contains('?') && !enc.contains('#'));
                prop_assert_eq!(decode_component(&enc.replace('+', "%2B")), id);
            }

            #[test]
            fn sign_then_verify_round_trips(target in ".{0,64}", ct in "[a-z/+;= -]{0,30}", body in proptest::collection::vec(any::<u8>(), 0..256)) {
                let md5 = content_md5(&body);
                for v in [ApiVersion::V3, ApiVersion::V4] {
                    let c = CanonicalString::for_body(&ct, &md5, &target, DATE);
                    let sig = sign(v, &secret(), &c);
                    prop_assert!(verify(v, &secret(), &c, &sig).is_ok());
                    let other = CanonicalString::for_body(&ct, &md5, &format!("{target}x"), DATE);
                    prop_assert!(verify(v, &secret(), &other, &sig).is_err());
                }
            }
        }
    }
}
