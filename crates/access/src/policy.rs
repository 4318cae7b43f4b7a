//! Authorization: Cedar policies over roles and patient-level scope, explicit grants,
//! break-glass, and audited policy replacement.
//!
//! # Entity model (see `policies/phigate.cedarschema`)
//!
//! * `Principal::"<id>"` is in `Role::"<role>"` for each of its roles.
//! * `Patient::"<keyed hash>"` has `care_team: Set<Principal>`. The caller supplies the care
//!   team ([`PatientScope::care_team`]: principal ids, synced from the EHR); the patient id is
//!   replaced by a keyed hash before it reaches Cedar.
//! * Context of patient actions: `purpose` (HL7 code), `has_reason`, `granted` (explicit grant
//!   in force) and `break_glass` (emergency grant in force), the last two read from the
//!   database at decision time.
//!
//! # Decisions
//!
//! Deny by default, forbid beats permit (Cedar's semantics). For patient actions, a refusal
//! when the principal is outside the patient's scope (not on the care team, no grant, no
//! break-glass) is [`Decision::NotFound`]: the server answers exactly as for a missing patient.
//! A refusal within scope is [`Decision::Forbidden`].
//!
//! Requests for patient data need a purpose of use and a reason: without them
//! [`AccessError::MissingPurpose`] / [`AccessError::MissingReason`] (400) before any policy is
//! evaluated; the default policies also forbid them, as defence in depth.

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;
use std::sync::Arc;

use audit::{BreakGlass, ConfigChange, Event, PurposeOfUse, SealedDetail};
use aws_lc_rs::hmac;
use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use phi::Sensitive;
use sealed::ObjectContext;
use serde_json::json;

use crate::Access;
use crate::db::{Pool, with_pool};
use crate::error::{AccessError, Result, db};
use crate::principal::{Principal, RequestMeta, Role, purpose_code, validate_principal_id};

/// The default policies shipped with phigate.
pub const DEFAULT_POLICIES: &str = include_str!("../policies/default.cedar");
/// The Cedar schema every policy set is validated against.
pub const SCHEMA: &str = include_str!("../policies/phigate.cedarschema");

const MAX_REASON_LEN: usize = 2000;
const MAX_POLICY_LEN: usize = 256 * 1024;
const REASON_KIND: &str = "access.grant-reason";

/// What is being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read one patient's data (record, census, diagnoses, vitals, ...).
    ReadPhi,
    /// Run a clinical model (care gaps, readmission, summary) on one patient's data.
    RunModel,
    /// Ask for emergency access to one patient.
    BreakGlass,
    /// List patients (each row is then authorized with [`Action::ReadPhi`]).
    ListPatients,
    /// Read de-identified data.
    ReadDeidentified,
    /// Read or verify the audit log.
    ReadAudit,
    /// Export the audit log or a patient's disclosures.
    ExportAudit,
    /// Manage API keys and signing keys.
    ManageKeys,
    /// Manage admin users.
    ManageUsers,
    /// Read or replace the policies.
    ManagePolicies,
    /// Review break-glass grants.
    ReviewBreakGlass,
}

/// Every action, in a stable order (for table-driven tests and docs).
pub const ALL_ACTIONS: &[Action] = &[
    Action::ReadPhi,
    Action::RunModel,
    Action::BreakGlass,
    Action::ListPatients,
    Action::ReadDeidentified,
    Action::ReadAudit,
    Action::ExportAudit,
    Action::ManageKeys,
    Action::ManageUsers,
    Action::ManagePolicies,
    Action::ReviewBreakGlass,
];

impl Action {
    /// The Cedar action id.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadPhi => "read_phi",
            Self::RunModel => "run_model",
            Self::BreakGlass => "break_glass",
            Self::ListPatients => "list_patients",
            Self::ReadDeidentified => "read_deidentified",
            Self::ReadAudit => "read_audit",
            Self::ExportAudit => "export_audit",
            Self::ManageKeys => "manage_keys",
            Self::ManageUsers => "manage_users",
            Self::ManagePolicies => "manage_policies",
            Self::ReviewBreakGlass => "review_break_glass",
        }
    }

    /// Whether the action concerns one patient's data (needs a [`Resource::Patient`], a purpose
    /// of use and a reason).
    pub fn is_patient_action(self) -> bool {
        matches!(self, Self::ReadPhi | Self::RunModel | Self::BreakGlass)
    }

    fn resource_type(self) -> &'static str {
        match self {
            Self::ReadPhi | Self::RunModel | Self::BreakGlass => "Patient",
            Self::ListPatients
            | Self::ManageKeys
            | Self::ManageUsers
            | Self::ManagePolicies
            | Self::ReviewBreakGlass => "Gateway",
            Self::ReadDeidentified => "Dataset",
            Self::ReadAudit | Self::ExportAudit => "AuditLog",
        }
    }
}

/// One patient as the caller knows it.
#[derive(Debug, Clone)]
pub struct PatientScope {
    /// The patient id (PHI; only its keyed hash goes further).
    pub patient_id: Sensitive<String>,
    /// Principal ids on the patient's care team (synced from the EHR).
    pub care_team: Vec<String>,
}

/// What an action is done to.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// One patient.
    Patient(&'a PatientScope),
    /// The gateway (administration, lists).
    Gateway,
    /// The audit log.
    AuditLog,
    /// De-identified data.
    Dataset,
}

impl Resource<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Patient(_) => "Patient",
            Self::Gateway => "Gateway",
            Self::AuditLog => "AuditLog",
            Self::Dataset => "Dataset",
        }
    }
}

/// An authorization question.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// Who asks.
    pub principal: &'a Principal,
    /// What they want to do.
    pub action: Action,
    /// To what.
    pub resource: Resource<'a>,
    /// Purpose of use (from `X-Purpose-Of-Use` or the token's `pou`).
    pub purpose: Option<PurposeOfUse>,
    /// Free-text reason (from `X-Access-Reason`).
    pub reason: Option<&'a Sensitive<String>>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Permitted. `policies` are the `@id`s of the permitting policies; `break_glass` says the
    /// access rests on an emergency grant (the server should say so in its PHI access record).
    Allow {
        /// Determining policies.
        policies: Vec<String>,
        /// Whether an emergency grant was in force.
        break_glass: bool,
    },
    /// Refused within scope (403). `policies` are the forbidding policies (empty: default deny).
    Forbidden {
        /// Determining policies.
        policies: Vec<String>,
    },
    /// Refused, and the patient is outside the principal's scope: answer exactly as for a
    /// missing patient (404).
    NotFound {
        /// Determining policies.
        policies: Vec<String>,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }

    /// The HTTP status the server answers a refusal with (200 for Allow).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Allow { .. } => 200,
            Self::Forbidden { .. } => 403,
            Self::NotFound { .. } => 404,
        }
    }

    /// The rule for an audit record: the determining policy ids, or `default-deny`.
    pub fn rule(&self) -> String {
        let policies = match self {
            Self::Allow { policies, .. }
            | Self::Forbidden { policies }
            | Self::NotFound { policies } => policies,
        };
        if policies.is_empty() {
            "default-deny".into()
        } else {
            policies.join(",")
        }
    }
}

/// A break-glass grant just made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassGrant {
    /// Grant id.
    pub id: String,
    /// When it ends (seconds since the epoch).
    pub expires_at: i64,
}

/// A break-glass grant as listed for review.
#[derive(Debug)]
pub struct BreakGlassRecord {
    /// Grant id.
    pub id: String,
    /// Who got emergency access.
    pub principal: String,
    /// The patient as the audit log's keyed hash (search the log with it).
    pub patient: String,
    /// The stated reason (PHI possible: show only to reviewers).
    pub reason: Sensitive<String>,
    /// When it was granted.
    pub created_at: i64,
    /// When it ends.
    pub expires_at: i64,
    /// Whether it is still in force.
    pub active: bool,
}

/// The policy set in force, as shown to admins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    /// Cedar text.
    pub text: String,
    /// SHA-256 of the text, hex.
    pub sha256: String,
    /// Last change.
    pub updated_at: i64,
    /// Who made it (`system` for the defaults).
    pub updated_by: String,
}

pub(crate) struct LoadedPolicies {
    sha256: String,
    set: PolicySet,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref())
}

pub(crate) fn schema() -> Result<Schema> {
    let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA)
        .map_err(|e| AccessError::Config(format!("the built-in Cedar schema is invalid: {e}")))?;
    Ok(schema)
}

/// Parses and validates a policy set against the schema (strict mode). Every policy must carry
/// an `@id` annotation, unique in the set.
pub(crate) fn parse_and_validate(text: &str, schema: &Schema) -> Result<PolicySet> {
    if text.len() > MAX_POLICY_LEN {
        return Err(AccessError::InvalidPolicy(
            "the policy text is larger than 256 KiB".into(),
        ));
    }
    let set = PolicySet::from_str(text).map_err(|e| AccessError::InvalidPolicy(e.to_string()))?;
    let validator = Validator::new(schema.clone());
    let result = validator.validate(&set, ValidationMode::Strict);
    if !result.validation_passed() {
        let messages: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
        return Err(AccessError::InvalidPolicy(messages.join("; ")));
    }
    let mut ids = HashSet::new();
    for policy in set.policies() {
        match policy.annotation("id") {
            Some(id) if !id.is_empty() => {
                if !ids.insert(id.to_owned()) {
                    return Err(AccessError::InvalidPolicy(format!(
                        "two policies have @id(\"{id}\")"
                    )));
                }
            }
            _ => {
                return Err(AccessError::InvalidPolicy(
                    "every policy needs an @id(\"...\") annotation".into(),
                ));
            }
        }
    }
    if set.templates().next().is_some() {
        return Err(AccessError::InvalidPolicy(
            "policy templates are not supported".into(),
        ));
    }
    Ok(set)
}

async fn stored_policy(pool: &Pool) -> Result<Option<(String, String, i64, String)>> {
    Ok(with_pool!(pool, p => {
        sqlx::query_as("SELECT text, sha256, updated_at, updated_by FROM access_policies WHERE id = 1")
            .fetch_optional(p)
            .await
            .map_err(db("reading the policies"))?
    }))
}

/// Loads the stored policy set, storing the defaults on first start.
pub(crate) async fn load_initial(pool: &Pool, schema: &Schema, now: i64) -> Result<LoadedPolicies> {
    if stored_policy(pool).await?.is_none() {
        parse_and_validate(DEFAULT_POLICIES, schema)?;
        with_pool!(pool, p => {
            sqlx::query("INSERT INTO access_policies (id, text, sha256, updated_at, updated_by) VALUES (1, $1, $2, $3, 'system') ON CONFLICT (id) DO NOTHING")
                .bind(DEFAULT_POLICIES)
                .bind(sha256_hex(DEFAULT_POLICIES))
                .bind(now)
                .execute(p)
                .await
                .map_err(db("storing the default policies"))?;
        });
    }
    let (text, sha256, _, _) = stored_policy(pool)
        .await?
        .ok_or(AccessError::Corrupt("the policies are missing"))?;
    let set = parse_and_validate(&text, schema)
        .map_err(|_| AccessError::Corrupt("the stored policies no longer validate"))?;
    Ok(LoadedPolicies { sha256, set })
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid> {
    let ty = EntityTypeName::from_str(type_name)
        .map_err(|_| AccessError::Corrupt("Cedar entity type"))?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

fn cedar_err<E>(_: E) -> AccessError {
    AccessError::Corrupt("building a Cedar request failed")
}

fn check_reason(reason: Option<&Sensitive<String>>) -> Result<bool> {
    match reason {
        Some(r) if !r.expose().trim().is_empty() => {
            if r.expose().len() > MAX_REASON_LEN {
                Err(AccessError::InvalidArgument(
                    "the reason is longer than 2000 bytes".into(),
                ))
            } else {
                Ok(true)
            }
        }
        _ => Ok(false),
    }
}

/// The digest of everything a decision depends on besides the policy set's entities model:
/// the policy text's SHA-256, the principal and its roles, the action, the resource type and,
/// for a patient, its keyed hash, its care team (in order), the purpose, whether a reason was
/// given, and the grants in force. Each field is length-prefixed.
fn decision_key(
    policy_sha: &str,
    req: &AuthzRequest<'_>,
    patient: Option<(&[u8], bool, bool, bool)>,
) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut field = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    field(b"phigate/access/decision/v1");
    field(policy_sha.as_bytes());
    field(req.principal.id.as_bytes());
    let mut roles: Vec<&str> = req.principal.roles.iter().map(|r| r.as_str()).collect();
    roles.sort_unstable();
    roles.dedup();
    field(roles.join(",").as_bytes());
    field(req.action.as_str().as_bytes());
    field(req.resource.type_name().as_bytes());
    if let (Resource::Patient(scope), Some((mac, granted, break_glass, has_reason))) =
        (req.resource, patient)
    {
        field(mac);
        field(&(scope.care_team.len() as u64).to_be_bytes());
        for m in &scope.care_team {
            field(m.as_bytes());
        }
        let purpose = req
            .purpose
            .or((req.action == Action::BreakGlass).then_some(PurposeOfUse::Etreat))
            .map(purpose_code)
            .unwrap_or_default();
        field(purpose.as_bytes());
        field(&[
            u8::from(has_reason),
            u8::from(granted),
            u8::from(break_glass),
        ]);
    }
    let digest = ctx.finish();
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// id, principal, reason_sealed, audit_patient, created_at, expires_at, revoked_at.
type GrantRow = (
    String,
    String,
    Option<Vec<u8>>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

/// Grants in force for (principal, patient): (explicit, break-glass).
struct GrantsInForce {
    granted: bool,
    break_glass: bool,
}

impl Access {
    fn patient_mac(&self, patient: &Sensitive<String>) -> Vec<u8> {
        hmac::sign(&self.inner.patient_mac, patient.expose().as_bytes())
            .as_ref()
            .to_vec()
    }

    async fn grants_in_force(
        &self,
        epoch: u64,
        principal: &str,
        patient_mac: &[u8],
    ) -> Result<GrantsInForce> {
        let now = self.now();
        // Cached per epoch (see `crate::cache`): every grant, revocation and break-glass starts
        // a new epoch; expiry is checked against the clock here, at every decision.
        let list = match self.inner.caches.grants(epoch, principal, patient_mac) {
            Some(list) => list,
            None => {
                let rows: Vec<(String, Option<i64>)> = with_pool!(&self.inner.pool, p => {
                    sqlx::query_as(
                        "SELECT kind, expires_at FROM access_grants WHERE principal = $1 AND patient_mac = $2 AND revoked_at IS NULL",
                    )
                    .bind(principal)
                    .bind(patient_mac)
                    .fetch_all(p)
                    .await
                    .map_err(db("reading patient grants"))?
                });
                let list = Arc::new(rows);
                self.inner
                    .caches
                    .put_grants(epoch, principal, patient_mac, list.clone());
                list
            }
        };
        let in_force = |kind: &str| {
            list.iter()
                .any(|(k, expires)| k == kind && expires.is_none_or(|e| e > now))
        };
        Ok(GrantsInForce {
            granted: in_force("grant"),
            break_glass: in_force("break_glass"),
        })
    }

    /// The policy set in force, refreshed when another instance (or this one) replaced it.
    async fn current_policies(&self, epoch: u64) -> Result<Arc<LoadedPolicies>> {
        // A replacement on any instance starts a new epoch; within one, the version read once
        // stands.
        if self.inner.caches.policy_checked(epoch) {
            return Ok(self
                .inner
                .policies
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone());
        }
        let sha: Option<String> = with_pool!(&self.inner.pool, p => {
            sqlx::query_scalar("SELECT sha256 FROM access_policies WHERE id = 1")
                .fetch_optional(p)
                .await
                .map_err(db("reading the policy version"))?
        });
        let sha = sha.ok_or(AccessError::Corrupt("the policies are missing"))?;
        {
            let cached = self
                .inner
                .policies
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cached.sha256 == sha {
                self.inner.caches.set_policy_checked(epoch);
                return Ok(cached.clone());
            }
        }
        let (text, sha256, _, _) = stored_policy(&self.inner.pool)
            .await?
            .ok_or(AccessError::Corrupt("the policies are missing"))?;
        let set = parse_and_validate(&text, &self.inner.schema)
            .map_err(|_| AccessError::Corrupt("the stored policies no longer validate"))?;
        let loaded = Arc::new(LoadedPolicies { sha256, set });
        *self
            .inner
            .policies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = loaded.clone();
        self.inner.caches.set_policy_checked(epoch);
        Ok(loaded)
    }

    /// Whether `set` permits `principal` to do the gateway-level `action` (no database reads).
    fn gateway_permits(
        &self,
        set: &PolicySet,
        principal: &Principal,
        action: Action,
    ) -> Result<bool> {
        validate_principal_id(&principal.id)?;
        let principal_uid = uid("Principal", &principal.id)?;
        let parents: HashSet<EntityUid> = principal
            .roles
            .iter()
            .map(|r| uid("Role", r.as_str()))
            .collect::<Result<_>>()?;
        let mut entities = vec![Entity::new_no_attrs(principal_uid.clone(), parents)];
        for role in crate::principal::ALL_ROLES {
            entities.push(Entity::new_no_attrs(
                uid("Role", role.as_str())?,
                HashSet::new(),
            ));
        }
        let resource = uid("Gateway", "gateway")?;
        entities.push(Entity::new_no_attrs(resource.clone(), HashSet::new()));
        let schema = &self.inner.schema;
        let entities = Entities::from_entities(entities, Some(schema)).map_err(cedar_err)?;
        let request = Request::new(
            principal_uid,
            uid("Action", action.as_str())?,
            resource,
            Context::empty(),
            Some(schema),
        )
        .map_err(cedar_err)?;
        let response = Authorizer::new().is_authorized(&request, set, &entities);
        Ok(response.decision() == cedar_policy::Decision::Allow
            && response.diagnostics().errors().count() == 0)
    }

    /// Decides a request. Grants, the policy version and decisions are cached per epoch (one
    /// generation check per call; see [`crate::cache`]); writes no audit record (the server records the PHI access or the denial with the decision's
    /// [`Decision::rule`]).
    pub async fn authorize(&self, req: &AuthzRequest<'_>) -> Result<Decision> {
        let action = req.action;
        if action.resource_type() != req.resource.type_name() {
            return Err(AccessError::InvalidArgument(format!(
                "action {} applies to a {} resource",
                action.as_str(),
                action.resource_type()
            )));
        }
        validate_principal_id(&req.principal.id)?;
        let has_reason = check_reason(req.reason)?;
        if action.is_patient_action() {
            if req.purpose.is_none() && action != Action::BreakGlass {
                return Err(AccessError::MissingPurpose);
            }
            if !has_reason {
                return Err(AccessError::MissingReason);
            }
        }
        // One generation check for the whole decision (see `crate::cache`).
        let epoch = self.epoch().await?;
        let loaded = self.current_policies(epoch).await?;
        let mut in_scope = true;
        let mut via_break_glass = false;
        let mut patient = None;
        if let Resource::Patient(scope) = req.resource {
            let mac = self.patient_mac(&scope.patient_id);
            let grants = self.grants_in_force(epoch, &req.principal.id, &mac).await?;
            let on_team = scope.care_team.iter().any(|m| m == &req.principal.id);
            in_scope = on_team || grants.granted || grants.break_glass;
            via_break_glass = grants.break_glass && !on_team && !grants.granted;
            patient = Some((mac, grants));
        }
        // Decisions are a pure function of these inputs and the policy text: cached per epoch
        // under a digest of all of them.
        let key = decision_key(
            &loaded.sha256,
            req,
            patient
                .as_ref()
                .map(|(mac, g)| (mac.as_slice(), g.granted, g.break_glass, has_reason)),
        );
        if let Some(d) = self.inner.caches.decision(epoch, &key) {
            return Ok(d);
        }
        let principal_uid = uid("Principal", &req.principal.id)?;
        let parents: HashSet<EntityUid> = req
            .principal
            .roles
            .iter()
            .map(|r| uid("Role", r.as_str()))
            .collect::<Result<_>>()?;
        let mut entities = vec![Entity::new_no_attrs(principal_uid.clone(), parents)];
        for role in crate::principal::ALL_ROLES {
            entities.push(Entity::new_no_attrs(
                uid("Role", role.as_str())?,
                HashSet::new(),
            ));
        }
        let (resource_uid, context) = match req.resource {
            Resource::Patient(scope) => {
                let (mac, grants) = patient
                    .as_ref()
                    .ok_or(AccessError::Corrupt("patient scope missing"))?;
                let patient_uid = uid("Patient", &hex::encode(mac))?;
                let team = scope
                    .care_team
                    .iter()
                    .filter(|m| validate_principal_id(m).is_ok())
                    .map(|m| uid("Principal", m).map(RestrictedExpression::new_entity_uid))
                    .collect::<Result<Vec<_>>>()?;
                let attrs =
                    HashMap::from([("care_team".to_owned(), RestrictedExpression::new_set(team))]);
                entities.push(
                    Entity::new(patient_uid.clone(), attrs, HashSet::new()).map_err(cedar_err)?,
                );
                let purpose = req
                    .purpose
                    .or((action == Action::BreakGlass).then_some(PurposeOfUse::Etreat))
                    .map(purpose_code)
                    .unwrap_or_default();
                let context = Context::from_pairs([
                    (
                        "purpose".to_owned(),
                        RestrictedExpression::new_string(purpose),
                    ),
                    (
                        "has_reason".to_owned(),
                        RestrictedExpression::new_bool(has_reason),
                    ),
                    (
                        "granted".to_owned(),
                        RestrictedExpression::new_bool(grants.granted),
                    ),
                    (
                        "break_glass".to_owned(),
                        RestrictedExpression::new_bool(grants.break_glass),
                    ),
                ])
                .map_err(cedar_err)?;
                (patient_uid, context)
            }
            other => {
                let id = match other {
                    Resource::AuditLog => "main",
                    Resource::Dataset => "deidentified",
                    _ => "gateway",
                };
                let ty = other.type_name();
                let resource_uid = uid(ty, id)?;
                entities.push(Entity::new_no_attrs(resource_uid.clone(), HashSet::new()));
                (resource_uid, Context::empty())
            }
        };
        let schema = &self.inner.schema;
        let entities = Entities::from_entities(entities, Some(schema)).map_err(cedar_err)?;
        let request = Request::new(
            principal_uid,
            uid("Action", action.as_str())?,
            resource_uid,
            context,
            Some(schema),
        )
        .map_err(cedar_err)?;
        let response = Authorizer::new().is_authorized(&request, &loaded.set, &entities);
        let policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|pid| {
                loaded
                    .set
                    .policy(pid)
                    .and_then(|p| p.annotation("id").map(str::to_owned))
                    .unwrap_or_else(|| pid.to_string())
            })
            .collect();
        let errors = response.diagnostics().errors().count();
        let decision = match response.decision() {
            cedar_policy::Decision::Allow if errors == 0 => Decision::Allow {
                policies,
                break_glass: via_break_glass,
            },
            _ if action.is_patient_action() && !in_scope => Decision::NotFound { policies },
            _ => Decision::Forbidden { policies },
        };
        self.inner.caches.put_decision(epoch, key, decision.clone());
        Ok(decision)
    }

    /// The policy set in force.
    pub async fn policies(&self) -> Result<PolicyInfo> {
        let (text, sha256, updated_at, updated_by) = stored_policy(&self.inner.pool)
            .await?
            .ok_or(AccessError::Corrupt("the policies are missing"))?;
        Ok(PolicyInfo {
            text,
            sha256,
            updated_at,
            updated_by,
        })
    }

    /// Checks a policy set against the schema without installing it.
    pub fn validate_policies(&self, text: &str) -> Result<()> {
        parse_and_validate(text, &self.inner.schema).map(|_| ())
    }

    /// Replaces the policy set. An invalid set is refused with the parser's or validator's
    /// message and the old one stays. The change is audited as a configuration change with the
    /// before and after text and SHA-256, before it takes effect; every instance picks it up on
    /// its next decision. Only an admin may do this.
    pub async fn replace_policies(&self, actor: &Principal, text: &str) -> Result<PolicyInfo> {
        if !actor.has_role(Role::Admin) {
            return Err(AccessError::InvalidArgument(
                "only an admin can replace the policies".into(),
            ));
        }
        let set = parse_and_validate(text, &self.inner.schema)?;
        // An admin may not saw off the branch they sit on: a set under which this admin could
        // no longer manage policies would leave nobody able to repair it through the API.
        if !self.gateway_permits(&set, actor, Action::ManagePolicies)? {
            return Err(AccessError::InvalidPolicy(format!(
                "the new policy set would remove your own {} permission; it was not installed",
                Action::ManagePolicies.as_str()
            )));
        }
        let before = self.policies().await?;
        let sha = sha256_hex(text);
        let now = self.now();
        let ctx = "replacing the policies";
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            crate::cache::bump_in_tx!(tx);
            sqlx::query("UPDATE access_policies SET text = $1, sha256 = $2, updated_at = $3, updated_by = $4 WHERE id = 1")
                .bind(text)
                .bind(&sha)
                .bind(now)
                .bind(&actor.id)
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            let change = ConfigChange::new(
                actor.id.clone(),
                "access.policies",
                json!({ "sha256": before.sha256, "text": before.text }),
                json!({ "sha256": sha, "text": text }),
                self.inner.auditor.hasher.as_ref(),
            );
            self.inner.auditor.append(Event::ConfigChange(change), None).await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.touch_generation()?;
        *self
            .inner
            .policies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(LoadedPolicies {
            sha256: sha.clone(),
            set,
        });
        Ok(PolicyInfo {
            text: text.to_owned(),
            sha256: sha,
            updated_at: now,
            updated_by: actor.id.clone(),
        })
    }

    fn new_grant_id() -> Result<String> {
        let mut id = [0u8; 12];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| AccessError::Crypto("random generator"))?;
        Ok(hex::encode(id))
    }

    /// Explicitly grants `grantee` (a principal id) access to one patient, for
    /// `expires_in_secs` or until revoked. Only an admin may; audited as a configuration change
    /// (the patient as its keyed hash).
    pub async fn grant_patient(
        &self,
        actor: &Principal,
        grantee: &str,
        patient: &Sensitive<String>,
        expires_in_secs: Option<u64>,
    ) -> Result<String> {
        if !actor.has_role(Role::Admin) {
            return Err(AccessError::InvalidArgument(
                "only an admin can grant patients".into(),
            ));
        }
        validate_principal_id(grantee)?;
        if patient.expose().is_empty() {
            return Err(AccessError::InvalidArgument(
                "the patient id is empty".into(),
            ));
        }
        let now = self.now();
        let expires_at = expires_in_secs
            .map(|s| i64::try_from(s).map(|s| now.saturating_add(s)))
            .transpose()
            .map_err(|_| AccessError::InvalidArgument("expiry is too far away".into()))?;
        let id = Self::new_grant_id()?;
        let audit_patient = self.inner.auditor.hasher.patient_ref(patient);
        let mac = self.patient_mac(patient);
        let ctx = "granting a patient";
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            crate::cache::bump_in_tx!(tx);
            sqlx::query(
                "INSERT INTO access_grants (id, principal, patient_mac, kind, granted_by, reason_sealed, audit_patient, created_at, expires_at) VALUES ($1, $2, $3, 'grant', $4, NULL, $5, $6, $7)",
            )
            .bind(&id)
            .bind(grantee)
            .bind(&mac)
            .bind(&actor.id)
            .bind(audit_patient.as_str())
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            let change = ConfigChange::new(
                actor.id.clone(),
                "access.grants",
                json!(null),
                json!({ "grant": id, "grantee": grantee, "patient": audit_patient.as_str(), "expires_at": expires_at }),
                self.inner.auditor.hasher.as_ref(),
            );
            self.inner.auditor.append(Event::ConfigChange(change), None).await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.touch_generation()?;
        Ok(id)
    }

    /// Revokes an explicit grant or a break-glass grant at once (every instance).
    pub async fn revoke_grant(&self, actor: &Principal, id: &str) -> Result<()> {
        if !actor.has_role(Role::Admin) {
            return Err(AccessError::InvalidArgument(
                "only an admin can revoke grants".into(),
            ));
        }
        let now = self.now();
        let ctx = "revoking a grant";
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            crate::cache::bump_in_tx!(tx);
            let done = sqlx::query("UPDATE access_grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
            if done.rows_affected() != 1 {
                return Err(AccessError::NotFound("no grant in force with this id"));
            }
            let change = ConfigChange::new(
                actor.id.clone(),
                "access.grants",
                json!({ "grant": id }),
                json!({ "grant": id, "revoked_at": now }),
                self.inner.auditor.hasher.as_ref(),
            );
            self.inner.auditor.append(Event::ConfigChange(change), None).await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.touch_generation()?;
        Ok(())
    }

    /// Break-glass: grants `principal` emergency access to one patient for the configured
    /// duration (60 minutes by default), if the policies permit it to ask (clinicians by
    /// default). The reason is required. Recorded as a break-glass audit event (patient and
    /// reason as keyed hashes, the reason's text sealed in the event's detail) before the grant
    /// takes effect; listed by [`Access::list_break_glass`] for review.
    pub async fn break_glass(
        &self,
        principal: &Principal,
        patient: &PatientScope,
        reason: &Sensitive<String>,
        meta: &RequestMeta,
    ) -> Result<BreakGlassGrant> {
        let decision = self
            .authorize(&AuthzRequest {
                principal,
                action: Action::BreakGlass,
                resource: Resource::Patient(patient),
                purpose: Some(PurposeOfUse::Etreat),
                reason: Some(reason),
            })
            .await?;
        if !decision.is_allowed() {
            return Err(AccessError::InvalidArgument(
                "this principal may not request emergency access".into(),
            ));
        }
        let now = self.now();
        let expires_at = now + self.inner.config.break_glass_secs;
        let id = Self::new_grant_id()?;
        let reason_text = reason.expose().trim();
        let sealed_reason = self.inner.keyring.seal(
            &ObjectContext::new(REASON_KIND, id.as_bytes()),
            reason_text.as_bytes(),
        )?;
        let hasher = self.inner.auditor.hasher.clone();
        let audit_patient = hasher.patient_ref(&patient.patient_id);
        let mac = self.patient_mac(&patient.patient_id);
        let expires_text = chrono::DateTime::<chrono::Utc>::from_timestamp(expires_at, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let event = Event::BreakGlass(BreakGlass {
            principal: principal.id.clone(),
            patient: audit_patient.clone(),
            reason: hasher.keyed_hash(reason_text.as_bytes()),
            expires_at: expires_text,
            request_id: meta
                .request_id
                .clone()
                .unwrap_or_else(|| format!("break-glass:{id}")),
        });
        let detail =
            SealedDetail::new(sealed_reason.clone()).map_err(AccessError::AuditUnavailable)?;
        let ctx = "recording a break-glass grant";
        self.touch_generation()?;
        with_pool!(&self.inner.pool, p => {
            let mut tx = p.begin().await.map_err(db(ctx))?;
            crate::cache::bump_in_tx!(tx);
            sqlx::query(
                "INSERT INTO access_grants (id, principal, patient_mac, kind, granted_by, reason_sealed, audit_patient, created_at, expires_at) VALUES ($1, $2, $3, 'break_glass', $2, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(&principal.id)
            .bind(&mac)
            .bind(&sealed_reason)
            .bind(audit_patient.as_str())
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(db(ctx))?;
            self.inner.auditor.append(event, Some(detail)).await?;
            tx.commit().await.map_err(db(ctx))?;
        });
        self.touch_generation()?;
        Ok(BreakGlassGrant { id, expires_at })
    }

    /// Break-glass grants made at or after `since` (all when `None`), newest first, for review.
    pub async fn list_break_glass(&self, since: Option<i64>) -> Result<Vec<BreakGlassRecord>> {
        let now = self.now();
        let rows: Vec<GrantRow> = with_pool!(&self.inner.pool, p => {
            sqlx::query_as(
                "SELECT id, principal, reason_sealed, audit_patient, created_at, expires_at, revoked_at FROM access_grants WHERE kind = 'break_glass' AND created_at >= $1 ORDER BY created_at DESC, id",
            )
            .bind(since.unwrap_or(i64::MIN))
            .fetch_all(p)
            .await
            .map_err(db("listing break-glass grants"))?
        });
        rows.into_iter()
            .map(
                |(id, principal, sealed, patient, created_at, expires_at, revoked_at)| {
                    let sealed =
                        sealed.ok_or(AccessError::Corrupt("a break-glass grant has no reason"))?;
                    let reason = self
                        .inner
                        .keyring
                        .open(&ObjectContext::new(REASON_KIND, id.as_bytes()), &sealed)?;
                    let reason = String::from_utf8(reason.to_vec())
                        .map_err(|_| AccessError::Corrupt("a break-glass reason is not UTF-8"))?;
                    let expires_at = expires_at.unwrap_or(created_at);
                    Ok(BreakGlassRecord {
                        active: revoked_at.is_none() && expires_at > now,
                        id,
                        principal,
                        patient,
                        reason: Sensitive::new(reason),
                        created_at,
                        expires_at,
                    })
                },
            )
            .collect()
    }
}
