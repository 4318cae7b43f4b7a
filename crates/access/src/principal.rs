//! Who is asking: roles, principals and the request metadata every check is audited with.

use std::fmt;

use audit::{AuthMethod, PurposeOfUse};

use crate::error::{AccessError, Result};

/// The gateway's roles. What each may do is decided by the Cedar policies
/// (`policies/default.cedar`); these are only names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Reads PHI of patients whose care team they are on (or who are granted to them).
    Clinician,
    /// Like a clinician for the patients they coordinate.
    CareCoordinator,
    /// De-identified data only.
    Analyst,
    /// Audit endpoints only.
    Auditor,
    /// A service principal (API key or mTLS): what its key's roles and grants allow.
    Service,
    /// Gateway administration (keys, users, policies, break-glass review); no PHI by default.
    Admin,
}

/// Every role, in a stable order.
pub const ALL_ROLES: &[Role] = &[
    Role::Clinician,
    Role::CareCoordinator,
    Role::Analyst,
    Role::Auditor,
    Role::Service,
    Role::Admin,
];

impl Role {
    /// The name used in tokens, the database, the CLI and the policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Clinician => "clinician",
            Self::CareCoordinator => "care_coordinator",
            Self::Analyst => "analyst",
            Self::Auditor => "auditor",
            Self::Service => "service",
            Self::Admin => "admin",
        }
    }

    /// Parses [`Role::as_str`] output.
    pub fn parse(s: &str) -> Result<Self> {
        ALL_ROLES
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                AccessError::InvalidArgument(
                    "unknown role; expected one of clinician, care_coordinator, analyst, auditor, service, admin"
                        .into(),
                )
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated principal. Its id is workforce or system data (`service:<name>`,
/// `admin:<username>`, `user:<name>`), never PHI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable id, `<kind>:<name>`.
    pub id: String,
    /// Roles in force.
    pub roles: Vec<Role>,
    /// How the principal authenticated.
    pub method: AuthMethod,
    /// Purpose of use bound at token issue, if any.
    pub purpose: Option<PurposeOfUse>,
    /// The credential used: API key id, JWT `jti`.
    pub credential_id: Option<String>,
    /// When the credential stops being valid (seconds since the epoch), if known.
    pub expires_at: Option<i64>,
}

impl Principal {
    /// A principal established by the caller (for example a service identified by its mTLS
    /// certificate's SAN, mapped by the server's configuration). `id` must be `<kind>:<name>`.
    pub fn new(id: impl Into<String>, roles: Vec<Role>, method: AuthMethod) -> Result<Self> {
        let id = id.into();
        validate_principal_id(&id)?;
        Ok(Self {
            id,
            roles,
            method,
            purpose: None,
            credential_id: None,
            expires_at: None,
        })
    }

    /// Whether the principal holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Checks a principal id: `<kind>:<name>`, 3..=128 printable ASCII characters without spaces
/// or quotes.
pub(crate) fn validate_principal_id(id: &str) -> Result<()> {
    let ok = id.len() >= 3
        && id.len() <= 128
        && id
            .split_once(':')
            .is_some_and(|(k, n)| !k.is_empty() && !n.is_empty())
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(AccessError::InvalidArgument(
            "principal id must be <kind>:<name>, 3-128 printable characters without quotes".into(),
        ))
    }
}

/// Checks a service or user name: 1..=64 of `[a-z0-9._-]`, starting with a letter or digit.
pub(crate) fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(AccessError::InvalidArgument(format!(
            "{what} must be 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
        )))
    }
}

/// What every audited check needs to know about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// Client address as seen by the gateway.
    pub source_address: String,
    /// Request correlation id.
    pub request_id: Option<String>,
}

impl RequestMeta {
    /// Metadata for a request from `source_address` with correlation id `request_id`.
    pub fn new(source_address: impl Into<String>, request_id: Option<String>) -> Self {
        Self {
            source_address: source_address.into(),
            request_id,
        }
    }

    /// Metadata for the local command line.
    pub fn cli() -> Self {
        Self {
            source_address: "local-cli".into(),
            request_id: None,
        }
    }
}

/// Parses an HL7 PurposeOfUse code (`TREAT`, `ETREAT`, ...), case-insensitively.
pub fn parse_purpose(code: &str) -> Result<PurposeOfUse> {
    let code = code.trim();
    if code.is_empty() {
        return Err(AccessError::MissingPurpose);
    }
    if code.len() > 16 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(AccessError::UnknownPurpose);
    }
    serde_json::from_value(serde_json::Value::String(code.to_ascii_uppercase()))
        .map_err(|_| AccessError::UnknownPurpose)
}

/// The upper-case code of a purpose of use.
pub fn purpose_code(purpose: PurposeOfUse) -> String {
    match serde_json::to_value(purpose) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
