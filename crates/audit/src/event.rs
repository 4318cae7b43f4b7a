//! The typed audit events and the entry that wraps them.
//!
//! Everything that may identify a patient (patient ids, MRNs, record ids, free-text reasons)
//! enters the log only as a [`KeyedHash`] (`hmac-sha256:<key id>:<hex>`), which can be built
//! only by a [`crate::PatientHasher`]. Principals (user and service ids), roles, model ids and
//! source addresses are workforce or system data and are stored in clear. What an auditor must
//! read beyond that goes in the optional [`SealedDetail`] blob, encrypted by the caller.

use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{self, CanonicalError};

/// Version of the entry encoding, written into every entry as `"v"`.
pub const ENTRY_VERSION: u64 = 1;

/// Largest accepted sealed detail blob (before base64).
pub const MAX_SEALED_DETAIL_BYTES: usize = 64 * 1024;

/// A keyed HMAC-SHA256 of an identifier, in Vault's format extended with a key id:
/// `hmac-sha256:<key id>:<64 lower-case hex>`. Equal inputs under the same key give equal
/// values, so the log can be searched by patient without holding the id in clear.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyedHash(String);

impl KeyedHash {
    /// Builds the value from a key id and a raw MAC. Only hashers call this.
    pub(crate) fn from_parts(key_id: &str, mac: &[u8]) -> Self {
        Self(format!("hmac-sha256:{key_id}:{}", hex::encode(mac)))
    }

    /// The textual form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyedHash {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let rest = value
            .strip_prefix("hmac-sha256:")
            .ok_or_else(|| "keyed hash must start with hmac-sha256:".to_string())?;
        let (key_id, mac) = rest
            .split_once(':')
            .ok_or_else(|| "keyed hash needs a key id".to_string())?;
        let key_id_ok = !key_id.is_empty()
            && key_id.len() <= 32
            && key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let mac_ok = mac.len() == 64 && mac.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if key_id_ok && mac_ok {
            Ok(Self(value))
        } else {
            Err("keyed hash is not hmac-sha256:<key id>:<64 hex>".to_string())
        }
    }
}

impl From<KeyedHash> for String {
    fn from(value: KeyedHash) -> Self {
        value.0
    }
}

impl fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for KeyedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A plain SHA-256 content hash, `sha256:<hex>`, for model inputs and outputs: content
/// addressing, so a logged inference can be matched against the stored artifact.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContentHash(String);

impl ContentHash {
    /// SHA-256 of raw bytes (for example a model's output text).
    pub fn of_bytes(bytes: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        Self(format!("sha256:{}", hex::encode(d.as_ref())))
    }

    /// The textual form, `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the RFC 8785 canonical form of a JSON value (for structured model inputs).
    pub fn of_json(value: &Value) -> Result<Self, CanonicalError> {
        Ok(Self::of_bytes(&canonical::to_canonical_bytes(value)?))
    }
}

impl TryFrom<String> for ContentHash {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.strip_prefix("sha256:") {
            Some(h)
                if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
            {
                Ok(Self(value))
            }
            _ => Err("content hash is not sha256:<64 hex>".to_string()),
        }
    }
}

impl From<ContentHash> for String {
    fn from(value: ContentHash) -> Self {
        value.0
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An opaque, already-encrypted detail blob (produced by the `sealed` crate) that an auditor
/// with the key can read. The log never sees its plaintext; the leaf hash commits to its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedDetail(Vec<u8>);

impl SealedDetail {
    /// Wraps ciphertext; refuses empty or oversized blobs.
    pub fn new(ciphertext: Vec<u8>) -> Result<Self, crate::AuditError> {
        if ciphertext.is_empty() || ciphertext.len() > MAX_SEALED_DETAIL_BYTES {
            return Err(crate::AuditError::InvalidEntry(
                "sealed detail must be 1..=65536 bytes of ciphertext",
            ));
        }
        Ok(Self(ciphertext))
    }

    /// The ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
}

impl fmt::Debug for SealedDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedDetail({} bytes)", self.0.len())
    }
}

/// HL7 v3 PurposeOfUse codes (value set 2.16.840.1.113883.1.11.20448), as written in the log.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PurposeOfUse {
    /// Treatment.
    Treat,
    /// Emergency treatment (break-glass).
    Etreat,
    /// Healthcare payment.
    Hpaymt,
    /// Healthcare operations.
    Hoperat,
    /// Public health.
    Pubhlth,
    /// Healthcare research.
    Hresch,
    /// Care management.
    Caremgt,
    /// Clinical trial research.
    Clintrch,
    /// Healthcare compliance.
    Hcompl,
    /// Healthcare quality improvement.
    Hqualimp,
    /// Healthcare accreditation.
    Haccred,
    /// Healthcare legal.
    Hlegal,
    /// Healthcare system administration.
    Hsysadmin,
    /// Healthcare marketing.
    Hmarkt,
    /// Patient requested.
    Patrqt,
    /// Family requested.
    Famrqt,
    /// Power of attorney.
    Pwatrny,
    /// Support network.
    Supnwk,
    /// Coverage under policy or program.
    Coverage,
    /// Eligibility determination.
    Eligdtrm,
    /// Disaster.
    Disaster,
    /// Threat.
    Threat,
    /// Law enforcement.
    Law,
    /// Records management.
    Recordmgt,
    /// Training.
    Train,
    /// Test health data.
    Htest,
}

/// How a principal authenticated.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ApiKey,
    Jwt,
    Mtls,
    PasswordTotp,
}

/// Success or failure of an attempt or an operation.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

/// Why an authentication attempt failed (never the presented secret).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFailureReason {
    UnknownPrincipal,
    BadCredential,
    Expired,
    NotYetValid,
    Revoked,
    MfaRequired,
    MfaFailed,
    Replay,
    RateLimited,
    Malformed,
    UntrustedCertificate,
}

/// What a PHI access did.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessAction {
    Read,
    Write,
    Export,
}

/// Key lifecycle steps.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    Generated,
    Activated,
    Rotated,
    Rewrapped,
    Retired,
    Destroyed,
}

/// An authentication attempt, successful or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuthenticationAttempt {
    /// Method presented.
    pub method: AuthMethod,
    /// Claimed or established principal id, when one could be read.
    pub principal: Option<String>,
    /// Client address as seen by the gateway.
    pub source_address: String,
    /// Success or failure.
    pub outcome: Outcome,
    /// Why it failed (None on success).
    pub failure_reason: Option<AuthFailureReason>,
    /// Request correlation id.
    pub request_id: Option<String>,
}

/// An access to PHI.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhiAccess {
    /// Who accessed.
    pub principal: String,
    /// Roles in force for the decision.
    pub roles: Vec<String>,
    /// The patient, as a keyed hash.
    pub patient: Option<KeyedHash>,
    /// Kind of record (e.g. `patient`, `evaluation`, `care_gaps`).
    pub resource_kind: String,
    /// Record id, as a keyed hash (ids are linkable to a patient).
    pub resource_id: Option<KeyedHash>,
    /// Read, write or export.
    pub action: AccessAction,
    /// HL7 purpose of use.
    pub purpose: PurposeOfUse,
    /// Keyed hash of the free-text reason; its text belongs in the sealed detail.
    pub reason: Option<KeyedHash>,
    /// Whether the access was served.
    pub outcome: Outcome,
    /// Request correlation id.
    pub request_id: String,
}

/// A disclosure of PHI outside the covered entity (45 CFR 164.528 accounting).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Disclosure {
    /// Who made the disclosure.
    pub principal: String,
    /// The patient, as a keyed hash.
    pub patient: KeyedHash,
    /// Name (and address, if known) of the recipient entity or person.
    pub recipient: String,
    /// HL7 purpose of use.
    pub purpose: PurposeOfUse,
    /// Brief description of the PHI disclosed, by category (no identifiers).
    pub description: String,
    /// Request correlation id.
    pub request_id: String,
}

/// A model inference over clinical data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInference {
    /// Who asked.
    pub principal: String,
    /// The patient concerned, if any.
    pub patient: Option<KeyedHash>,
    /// Model identifier.
    pub model_id: String,
    /// Model version.
    pub model_version: String,
    /// SHA-256 of the canonical input.
    pub input_sha256: ContentHash,
    /// SHA-256 of the output.
    pub output_sha256: ContentHash,
    /// Wall-clock latency in milliseconds.
    pub latency_ms: u64,
    /// Cost in millionths of a US dollar (integers only: see the canonical encoding).
    pub cost_micro_usd: u64,
    /// Request correlation id.
    pub request_id: String,
}

/// A configuration change, before and after, with secrets replaced by keyed hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigChange {
    /// Who changed it.
    pub principal: String,
    /// What was changed (a setting path such as `gateway.rate_limit`).
    pub setting: String,
    /// Value before (secrets HMAC'd).
    pub before: Value,
    /// Value after (secrets HMAC'd).
    pub after: Value,
}

/// A key lifecycle step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyLifecycle {
    /// Who did it (or `system`).
    pub principal: String,
    /// Key identifier (never key material).
    pub key_id: String,
    /// What the key is for (`kek`, `audit-signing`, `audit-hmac`, `jwt`...).
    pub key_purpose: String,
    /// The step.
    pub action: KeyAction,
}

/// An emergency ("break-glass") access grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakGlass {
    /// Who got access.
    pub principal: String,
    /// The patient, as a keyed hash.
    pub patient: KeyedHash,
    /// Keyed hash of the stated reason; its text belongs in the sealed detail.
    pub reason: KeyedHash,
    /// When the grant ends (RFC 3339, UTC).
    pub expires_at: String,
    /// Request correlation id.
    pub request_id: String,
}

/// A request the policy engine refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyDenied {
    /// Who asked.
    pub principal: String,
    /// Roles in force.
    pub roles: Vec<String>,
    /// The attempted action.
    pub action: String,
    /// Kind of resource.
    pub resource_kind: String,
    /// The patient concerned, if any.
    pub patient: Option<KeyedHash>,
    /// The rule (or default deny) that decided.
    pub rule: String,
    /// Request correlation id.
    pub request_id: String,
}

/// One auditable event.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Authentication(AuthenticationAttempt),
    PhiAccess(PhiAccess),
    Disclosure(Disclosure),
    ModelInference(ModelInference),
    ConfigChange(ConfigChange),
    KeyLifecycle(KeyLifecycle),
    BreakGlass(BreakGlass),
    PolicyDenied(PolicyDenied),
}

/// Every event kind, as written in `"kind"` and accepted by query filters.
pub const EVENT_KINDS: &[&str] = &[
    "authentication",
    "phi_access",
    "disclosure",
    "model_inference",
    "config_change",
    "key_lifecycle",
    "break_glass",
    "policy_denied",
];

impl Event {
    /// The `"kind"` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Authentication(_) => "authentication",
            Event::PhiAccess(_) => "phi_access",
            Event::Disclosure(_) => "disclosure",
            Event::ModelInference(_) => "model_inference",
            Event::ConfigChange(_) => "config_change",
            Event::KeyLifecycle(_) => "key_lifecycle",
            Event::BreakGlass(_) => "break_glass",
            Event::PolicyDenied(_) => "policy_denied",
        }
    }

    /// The acting principal, if known.
    pub fn principal(&self) -> Option<&str> {
        match self {
            Event::Authentication(e) => e.principal.as_deref(),
            Event::PhiAccess(e) => Some(&e.principal),
            Event::Disclosure(e) => Some(&e.principal),
            Event::ModelInference(e) => Some(&e.principal),
            Event::ConfigChange(e) => Some(&e.principal),
            Event::KeyLifecycle(e) => Some(&e.principal),
            Event::BreakGlass(e) => Some(&e.principal),
            Event::PolicyDenied(e) => Some(&e.principal),
        }
    }

    /// The patient concerned, if any.
    pub fn patient(&self) -> Option<&KeyedHash> {
        match self {
            Event::PhiAccess(e) => e.patient.as_ref(),
            Event::Disclosure(e) => Some(&e.patient),
            Event::ModelInference(e) => e.patient.as_ref(),
            Event::BreakGlass(e) => Some(&e.patient),
            Event::PolicyDenied(e) => e.patient.as_ref(),
            Event::Authentication(_) | Event::ConfigChange(_) | Event::KeyLifecycle(_) => None,
        }
    }
}

/// A committed log entry: what the leaf hash covers.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Position in the log (0-based).
    pub index: u64,
    /// When the entry was committed (UTC, microsecond precision).
    pub time: DateTime<Utc>,
    /// The event.
    pub event: Event,
    /// Optional caller-encrypted detail.
    pub sealed_detail: Option<SealedDetail>,
}

/// The fixed textual time format of entries: RFC 3339, UTC, exactly six fractional digits.
pub(crate) fn format_time(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Entry {
    /// The JSON object whose RFC 8785 form is the leaf: `{"event":{..},"index":N,
    /// "sealed_detail":"<base64>"?,"time":"...Z","v":1}`.
    pub fn to_json(&self) -> Result<Value, crate::AuditError> {
        let event = serde_json::to_value(&self.event)
            .map_err(|_| crate::AuditError::InvalidEntry("event cannot be encoded as JSON"))?;
        Ok(entry_json(
            self.index,
            &self.time,
            event,
            self.sealed_detail.as_ref(),
        ))
    }

    /// The canonical leaf bytes.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, crate::AuditError> {
        let event = crate::encode::event_canonical_bytes(&self.event)
            .map_err(|_| crate::AuditError::InvalidEntry("entry has a non-integer number"))?;
        Ok(leaf_bytes(
            self.index,
            &format_time(&self.time),
            &event,
            self.sealed_detail.as_ref(),
        ))
    }

    /// Parses leaf bytes (or any JSON form of an entry).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, crate::AuditError> {
        #[derive(Deserialize)]
        struct Raw {
            v: u64,
            index: u64,
            time: DateTime<Utc>,
            event: Event,
            sealed_detail: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|_| crate::AuditError::InvalidEntry("entry is not a valid audit entry"))?;
        if raw.v != ENTRY_VERSION {
            return Err(crate::AuditError::InvalidEntry(
                "entry has an unknown version",
            ));
        }
        let sealed_detail = match raw.sealed_detail {
            None => None,
            Some(b64) => Some(SealedDetail::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| crate::AuditError::InvalidEntry("sealed detail is not base64"))?,
            )?),
        };
        Ok(Self {
            index: raw.index,
            time: raw.time,
            event: raw.event,
            sealed_detail,
        })
    }
}

/// The canonical leaf, spliced from the event's canonical bytes. Equal to
/// `to_canonical_bytes(entry_json(..))` because JCS orders the members `event`, `index`,
/// `sealed_detail`, `time`, `v` (already sorted) and none of the spliced strings (an RFC 3339
/// time, base64) contains a character JCS escapes; a unit test holds this equality.
pub(crate) fn leaf_bytes(
    index: u64,
    time_text: &str,
    event_canonical: &[u8],
    sealed_detail: Option<&SealedDetail>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(event_canonical.len() + 96);
    out.extend_from_slice(b"{\"event\":");
    out.extend_from_slice(event_canonical);
    out.extend_from_slice(b",\"index\":");
    out.extend_from_slice(index.to_string().as_bytes());
    if let Some(detail) = sealed_detail {
        out.extend_from_slice(b",\"sealed_detail\":\"");
        out.extend_from_slice(detail.to_base64().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(time_text.as_bytes());
    out.extend_from_slice(b"\",\"v\":");
    out.extend_from_slice(ENTRY_VERSION.to_string().as_bytes());
    out.push(b'}');
    out
}

pub(crate) fn entry_json(
    index: u64,
    time: &DateTime<Utc>,
    event: Value,
    sealed_detail: Option<&SealedDetail>,
) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("v".into(), Value::from(ENTRY_VERSION));
    map.insert("index".into(), Value::from(index));
    map.insert("time".into(), Value::from(format_time(time)));
    map.insert("event".into(), event);
    if let Some(detail) = sealed_detail {
        map.insert("sealed_detail".into(), Value::from(detail.to_base64()));
    }
    Value::Object(map)
}

/// Key names whose values are treated as secrets in configuration snapshots.
const SECRET_MARKERS: &[&str] = &[
    "secret",
    "password",
    "passwd",
    "token",
    "key",
    "credential",
    "private",
    "salt",
    "dsn",
    "url",
];

impl ConfigChange {
    /// Builds a change record, replacing every string value under a secret-looking key
    /// (`*secret*`, `*password*`, `*token*`, `*key*`, `*credential*`, `*private*`, `*salt*`,
    /// `*dsn*`, `*url*`, case-insensitive) by its keyed hash, so a reviewer can see that a
    /// secret changed, and match it against a known value, without the log holding it.
    pub fn new(
        principal: impl Into<String>,
        setting: impl Into<String>,
        before: Value,
        after: Value,
        hasher: &dyn crate::PatientHasher,
    ) -> Self {
        Self {
            principal: principal.into(),
            setting: setting.into(),
            before: redact_secrets(before, false, hasher),
            after: redact_secrets(after, false, hasher),
        }
    }
}

fn redact_secrets(value: Value, under_secret: bool, hasher: &dyn crate::PatientHasher) -> Value {
    match value {
        Value::String(s) if under_secret => Value::String(hasher.keyed_hash(s.as_bytes()).0),
        Value::Number(_) | Value::Bool(_) if under_secret => {
            Value::String(hasher.keyed_hash(value.to_string().as_bytes()).0)
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| redact_secrets(v, under_secret, hasher))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let secret = under_secret || SECRET_MARKERS.iter().any(|m| lower.contains(m));
                    let v = redact_secrets(v, secret, hasher);
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_leaf_equals_the_canonical_form_of_the_entry_object() {
        let event = serde_json::json!({"kind": "key_lifecycle", "principal": "a\"b\n", "z": [1, {"y": null, "x": -3}]});
        let event_bytes = canonical::to_canonical_bytes(&event).unwrap();
        let time = chrono::DateTime::parse_from_rfc3339("2026-11-23T14:40:18.000001Z")
            .unwrap()
            .with_timezone(&Utc);
        for detail in [
            None,
            Some(SealedDetail::new(vec![0xff, 0, 1, 2, 3]).unwrap()),
        ] {
            for index in [0u64, 7, 9_007_199_254_740_991] {
                let expected = canonical::to_canonical_bytes(&entry_json(
                    index,
                    &time,
                    event.clone(),
                    detail.as_ref(),
                ))
                .unwrap();
                assert_eq!(
                    leaf_bytes(index, &format_time(&time), &event_bytes, detail.as_ref()),
                    expected
                );
            }
        }
    }
}
