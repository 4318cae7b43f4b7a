//! Incremental sync of the Kipu EHR into phigate's encrypted store: the data the gateway serves.
//!
//! One job: make the store hold what the EHR holds about each patient (demographics,
//! admissions, care teams, diagnoses, appointments, vital signs, evaluations), pulling only
//! what changed, forgetting patients the EHR soft-deleted, and staying correct however a run
//! ends. [`Syncer::run_once`] does one run; `phigate sync` calls it once or on a schedule, and
//! the gateway can call it at start.
//!
//! # Record kinds
//!
//! Every synced record is stored under its own kind ([`Resource::kind`]), with the patient index
//! set to the patient's casefile id and no expiry. The value is the record exactly as the Kipu
//! API returned it (UTF-8 JSON); `docs/sync.md` lists the kinds, their ids and their JSON.
//! Sync keeps two kinds of its own: [`TOMBSTONE_KIND`] (soft-deleted patients, no patient index
//! so that purging the patient does not purge the tombstone) and [`CURSOR_KIND`] (one record
//! per resource: the high-water mark and when the last full pass finished).
//!
//! # How a run works
//!
//! 1. **Vault first.** Every patient in `/api/vaults/patients` gets a tombstone and all its
//!    records, of every kind (cached API responses included), are deleted with
//!    [`store::Store::invalidate_patient`], which destroys their data keys (crypto-shredding).
//!    This is repeated for every vaulted patient on every run, so a run killed between writing
//!    a tombstone and purging finishes the purge next time. A tombstone whose patient left the
//!    vault (restored in the EHR) is lifted, only after a complete and stable vault listing.
//! 2. **Each resource**, in the order of [`Resource::ALL`] (patients first: the per-patient
//!    resources fan out over the patients the census listed in this run). A record whose
//!    patient has a tombstone is skipped, whatever page it comes on, so a stale full page never
//!    re-imports a deleted patient. Every other record is compared with the stored one by a
//!    SHA-256 of its patient and bytes, and written only when new or different.
//! 3. **Vault again**, to purge patients deleted while the run was going.
//!
//! # Incremental, and why correctness does not depend on it
//!
//! Where the API offers a created/updated-since parameter ([`Resource::since_param`]: vital
//! signs' `created_at_start_date`, patient evaluations' `start_date`), a run after a full pass
//! asks only for records from one day before the high-water mark (the newest timestamp seen in
//! that resource's own data, so a clock difference between phigate and the EHR cannot open a
//! gap; the day of overlap covers Kipu's date-only parameters). Everywhere else every page is
//! read. Either way each record is compared with the stored one, so an EHR that ignores the
//! filter (the simulator did, last session) costs bandwidth, never correctness.
//!
//! A filtered pass cannot see records that disappeared upstream; a full pass can. Each
//! resource is therefore read in full on its first run, with [`SyncOptions::force_full`], and
//! whenever its last full pass is older than [`SyncOptions::reconcile_every`]. After a full pass
//! whose listing was complete and stable (the server's `total_records` did not change while
//! paging and every record arrived), stored records the EHR no longer lists are deleted.
//!
//! # Crash safety
//!
//! Every record write is one atomic upsert keyed by `(kind, id)`, so a rerun cannot duplicate.
//! A resource's cursor is written only after its pass and sweep completed, so a run killed at
//! any point (`kill -9` included) leaves the cursor where it was and the rerun reads the same
//! range again: nothing is lost, and the comparison skips what was already written. Records of
//! a pass interrupted before its sweep stay until the next complete full pass removes them.
//!
//! # Security invariants
//!
//! * Everything written goes through the store, which seals it; cursors and tombstones too.
//! * Logs and errors carry resource names, counts and API error kinds only; record ids,
//!   patient ids, timestamps and values never leave the process except into the store.
//!   Record ids and values are held in [`phi::Sensitive`] or in memory only.
//! * This crate reads no environment variable and no file; the binary configures it.
//! * One sync at a time per store: two concurrent runs would not corrupt anything (every write
//!   is an upsert of the upstream value) but could sweep a record the other just wrote; the
//!   next run restores it.

#![forbid(unsafe_code)]

mod interval;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, FixedOffset};
use futures::StreamExt as _;
use kipu::endpoints::{self, Endpoint};
use serde_json::{Map, Value};
use store::Store;

pub use interval::{IntervalError, parse_interval};

/// Kind of tombstones: one per soft-deleted patient (id: casefile id; no patient index).
pub const TOMBSTONE_KIND: &str = "ehr.tombstone";
/// Kind of sync cursors: one per resource (id: [`Resource::name`]; no patient index).
pub const CURSOR_KIND: &str = "ehr.sync.cursor";

const CURSOR_VERSION: u64 = 1;

/// A resource that sync keeps in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// Census patients (demographics): `/api/patients/census`.
    Patients,
    /// Admissions (one per casefile): `/api/patients/admissions`.
    Admissions,
    /// Care teams (one record per patient): `/api/patients/care_teams`.
    CareTeams,
    /// Diagnosis history, per patient: `/api/patients/{patient_id}/diagnosis_history`.
    Diagnoses,
    /// Appointments: `/api/scheduler/appointments`.
    Appointments,
    /// Vital signs: `/api/vital_signs`.
    VitalSigns,
    /// Patient evaluations: `/api/patient_evaluations`.
    Evaluations,
}

impl Resource {
    /// Every resource, in the order a run syncs them (patients first).
    pub const ALL: [Resource; 7] = [
        Resource::Patients,
        Resource::Admissions,
        Resource::CareTeams,
        Resource::Diagnoses,
        Resource::Appointments,
        Resource::VitalSigns,
        Resource::Evaluations,
    ];

    /// The resource's name (also its cursor's id).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Patients => "patients",
            Self::Admissions => "admissions",
            Self::CareTeams => "care_teams",
            Self::Diagnoses => "diagnoses",
            Self::Appointments => "appointments",
            Self::VitalSigns => "vital_signs",
            Self::Evaluations => "evaluations",
        }
    }

    /// The store kind its records are kept under.
    pub const fn kind(self) -> &'static str {
        match self {
            Self::Patients => "ehr.patient",
            Self::Admissions => "ehr.admission",
            Self::CareTeams => "ehr.care_team",
            Self::Diagnoses => "ehr.diagnosis",
            Self::Appointments => "ehr.appointment",
            Self::VitalSigns => "ehr.vital_sign",
            Self::Evaluations => "ehr.evaluation",
        }
    }

    /// The kipu-python name of the endpoint it reads.
    pub const fn endpoint_name(self) -> &'static str {
        match self {
            Self::Patients => "get_patients_census",
            Self::Admissions => "get_patients_admissions",
            Self::CareTeams => "get_patients_care_teams",
            Self::Diagnoses => "get_patient_diagnosis_history",
            Self::Appointments => "get_scheduler_appointments",
            Self::VitalSigns => "get_vital_signs",
            Self::Evaluations => "get_patient_evaluations",
        }
    }

    /// The record field that is the record's id in the store.
    pub const fn id_field(self) -> &'static str {
        match self {
            Self::Patients | Self::Admissions => "casefile_id",
            Self::CareTeams => "patient_id",
            _ => "id",
        }
    }

    /// The record field that names the patient (a casefile id).
    pub const fn patient_field(self) -> &'static str {
        match self {
            Self::Patients | Self::Admissions => "casefile_id",
            _ => "patient_id",
        }
    }

    /// The created/updated-since query parameter and the record timestamp it filters on, for
    /// resources whose endpoint offers one.
    pub const fn since_param(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::VitalSigns => Some(("created_at_start_date", "created_at")),
            Self::Evaluations => Some(("start_date", "updated_at")),
            _ => None,
        }
    }

    /// Whether it is read per patient (one listing per census patient).
    pub const fn per_patient(self) -> bool {
        matches!(self, Self::Diagnoses)
    }

    /// The resource with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    fn endpoint(self) -> Result<&'static Endpoint, SyncError> {
        endpoints::find(self.endpoint_name())
            .filter(|e| e.is_list())
            .ok_or(SyncError::Catalogue(
                "a synced endpoint is missing from the catalogue",
            ))
    }
}

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Records per page (`per`), 1 to 1000.
    pub per_page: u32,
    /// Per-patient listings fetched at once.
    pub concurrency: usize,
    /// Read incremental resources in full when their last full pass is older than this.
    pub reconcile_every: Duration,
    /// Read every resource in full this run, whatever the cursors say.
    pub force_full: bool,
}

impl Default for SyncOptions {
    /// 100 records per page, 4 concurrent listings, full reconciliation daily.
    fn default() -> Self {
        Self {
            per_page: 100,
            concurrency: 4,
            reconcile_every: Duration::from_secs(24 * 3600),
            force_full: false,
        }
    }
}

/// Whether a resource pass read everything or only what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PassMode {
    /// Every page; records the EHR no longer lists are removed after a complete pass.
    Full,
    /// Only records since the high-water mark (minus a day).
    Incremental,
}

/// What one resource pass did. Counts only, no ids.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResourceReport {
    /// [`Resource::name`].
    pub resource: &'static str,
    /// [`Resource::kind`].
    pub kind: &'static str,
    /// Full or incremental.
    pub mode: PassMode,
    /// Records received from the API.
    pub fetched: u64,
    /// Records written that the store did not have.
    pub new: u64,
    /// Records written because they changed.
    pub updated: u64,
    /// Records identical to the stored ones (not written).
    pub unchanged: u64,
    /// Stored records deleted because the EHR no longer lists them.
    pub removed: u64,
    /// Records skipped because their patient is soft-deleted.
    pub skipped_deleted: u64,
    /// Records skipped because they lack an id or a patient.
    pub invalid: u64,
    /// Whether the listing was complete and stable, so that removals were applied.
    pub swept: bool,
    /// Why the pass failed, if it did (an API or store error kind; no PHI). Its cursor was
    /// not advanced: the next run repeats it.
    pub error: Option<String>,
}

impl ResourceReport {
    fn new(resource: Resource, mode: PassMode) -> Self {
        Self {
            resource: resource.name(),
            kind: resource.kind(),
            mode,
            fetched: 0,
            new: 0,
            updated: 0,
            unchanged: 0,
            removed: 0,
            skipped_deleted: 0,
            invalid: 0,
            swept: false,
            error: None,
        }
    }

    /// Records written (new plus updated).
    pub fn written(&self) -> u64 {
        self.new + self.updated
    }
}

/// What a run did. Counts only, no ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Soft-deleted patients the vault lists now.
    pub tombstones: u64,
    /// Patients tombstoned by this run.
    pub tombstoned: u64,
    /// Tombstones lifted because their patient left the vault.
    pub tombstones_lifted: u64,
    /// Records of soft-deleted patients deleted by this run (all kinds).
    pub purged: u64,
    /// One entry per resource, in sync order.
    pub resources: Vec<ResourceReport>,
}

impl SyncReport {
    /// Whether every resource pass succeeded.
    pub fn is_complete(&self) -> bool {
        self.resources.iter().all(|r| r.error.is_none())
    }

    /// The report of `resource`, if it ran.
    pub fn resource(&self, resource: Resource) -> Option<&ResourceReport> {
        self.resources.iter().find(|r| r.resource == resource.name())
    }
}

/// Why a run stopped. Messages carry no ids or values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The Kipu API failed (after the client's retries).
    #[error("Kipu API: {0}")]
    Kipu(#[from] kipu::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// A sync record in the store (cursor or tombstone) is not what this version writes.
    #[error("sync state in the store is corrupt: {0}")]
    Corrupt(&'static str),
    /// The endpoint catalogue lacks an endpoint sync needs (a build defect).
    #[error("{0}")]
    Catalogue(&'static str),
    /// Invalid options.
    #[error("invalid sync options: {0}")]
    InvalidOptions(&'static str),
}

/// A resource's cursor as stored (sealed) under [`CURSOR_KIND`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cursor {
    /// The newest `since` timestamp seen (RFC 3339, as the EHR wrote it).
    high_water: Option<String>,
    /// Wall-clock ms when the last complete full pass started.
    last_full_ms: Option<i64>,
    /// Wall-clock ms when the last complete pass of any mode started.
    last_run_ms: Option<i64>,
}

impl Cursor {
    fn to_json(&self) -> Vec<u8> {
        serde_json::json!({
            "version": CURSOR_VERSION,
            "high_water": self.high_water,
            "last_full_ms": self.last_full_ms,
            "last_run_ms": self.last_run_ms,
        })
        .to_string()
        .into_bytes()
    }

    fn from_json(bytes: &[u8]) -> Result<Self, SyncError> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|_| SyncError::Corrupt("cursor is not JSON"))?;
        if v.get("version").and_then(Value::as_u64) != Some(CURSOR_VERSION) {
            return Err(SyncError::Corrupt("cursor has an unknown version"));
        }
        Ok(Self {
            high_water: v
                .get("high_water")
                .and_then(Value::as_str)
                .map(str::to_owned),
            last_full_ms: v.get("last_full_ms").and_then(Value::as_i64),
            last_run_ms: v.get("last_run_ms").and_then(Value::as_i64),
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The id of a record: a string as is, a number in decimal.
fn field_text(record: &Map<String, Value>, field: &str) -> Option<String> {
    match record.get(field)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn content_hash(patient: &str, bytes: &[u8]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(&(patient.len() as u64).to_be_bytes());
    ctx.update(patient.as_bytes());
    ctx.update(bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// What to do with one fetched record.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// No id or no patient.
    Invalid,
    /// Its patient is soft-deleted.
    SkipDeleted,
    /// Same as stored.
    Unchanged,
    /// Not stored yet.
    New,
    /// Stored with other content.
    Updated,
}

/// A stored record, reduced to what comparison and sweeping need.
#[derive(Debug, Clone)]
struct Existing {
    hash: [u8; 32],
    patient: Option<String>,
}

/// A fetched record, ready to be compared and written.
struct Prepared {
    id: String,
    patient: String,
    bytes: Vec<u8>,
    hash: [u8; 32],
}

fn prepare(
    resource: Resource,
    record: &Map<String, Value>,
    path_patient: Option<&str>,
) -> Option<Prepared> {
    let id = field_text(record, resource.id_field())?;
    let patient = field_text(record, resource.patient_field())
        .or_else(|| path_patient.map(str::to_owned))?;
    let bytes = serde_json::to_vec(record).ok()?;
    let hash = content_hash(&patient, &bytes);
    Some(Prepared {
        id,
        patient,
        bytes,
        hash,
    })
}

fn classify(
    prepared: Option<&Prepared>,
    tombstones: &HashSet<String>,
    existing: &HashMap<String, Existing>,
) -> Action {
    let Some(p) = prepared else {
        return Action::Invalid;
    };
    if tombstones.contains(&p.patient) {
        return Action::SkipDeleted;
    }
    match existing.get(&p.id) {
        Some(e) if e.hash == p.hash => Action::Unchanged,
        Some(_) => Action::Updated,
        None => Action::New,
    }
}

/// The sync engine: a Kipu client and the store it fills.
#[derive(Debug, Clone)]
pub struct Syncer {
    client: kipu::Client,
    store: Store,
    options: SyncOptions,
}

/// State of one resource pass.
struct Pass<'a> {
    resource: Resource,
    report: ResourceReport,
    existing: HashMap<String, Existing>,
    seen: HashSet<String>,
    tombstones: &'a HashSet<String>,
    high_water: Option<DateTime<FixedOffset>>,
    /// Patients whose listing failed with a 404 this pass: their stored records are kept.
    unlisted_patients: HashSet<String>,
    /// Whether the listing was complete and stable.
    complete: bool,
}

/// Whether a paged listing was stable: the server's `total_records` did not change between
/// pages, and as many records arrived as it announced.
#[derive(Debug, Default)]
struct Totals {
    pages: u64,
    first: Option<u64>,
    changed: bool,
    received: u64,
}

impl Totals {
    fn page(&mut self, total: Option<u64>, records: usize) {
        if self.pages == 0 {
            self.first = total;
        } else if total != self.first {
            self.changed = true;
        }
        self.pages += 1;
        self.received += records as u64;
    }

    fn stable(&self) -> bool {
        !self.changed && self.first.is_none_or(|t| t == self.received)
    }
}

/// One page plus its pagination totals.
struct FetchedPage {
    records: Vec<Map<String, Value>>,
    total_records: Option<u64>,
    last: bool,
}

impl Syncer {
    /// A syncer writing what `client` reads into `store`.
    pub fn new(client: kipu::Client, store: Store, options: SyncOptions) -> Result<Self, SyncError> {
        if !(1..=1000).contains(&options.per_page) {
            return Err(SyncError::InvalidOptions("per_page must be 1 to 1000"));
        }
        if options.concurrency == 0 {
            return Err(SyncError::InvalidOptions("concurrency must be at least 1"));
        }
        for r in Resource::ALL {
            r.endpoint()?;
        }
        Ok(Self {
            client,
            store,
            options,
        })
    }

    /// The store it writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One run: vault, every resource, vault again. A failing resource is reported in
    /// [`ResourceReport::error`] and the others still run; a failing vault listing or store
    /// stops the run with an error (nothing is imported without current tombstones).
    pub async fn run_once(&self) -> Result<SyncReport, SyncError> {
        let started = now_ms();
        let mut report = SyncReport::default();
        let tombstones = self.apply_vault(&mut report).await?;
        let mut live_patients: Option<Vec<String>> = None;
        for resource in Resource::ALL {
            let result = self
                .sync_resource(resource, &tombstones, &mut live_patients, started)
                .await;
            let r = match result {
                Ok(r) => r,
                Err((mut r, e)) => {
                    tracing::warn!(
                        safe_resource = resource.name(),
                        "resource sync failed; its cursor is unchanged and the next run repeats it: {e}"
                    );
                    r.error = Some(e.to_string());
                    r
                }
            };
            tracing::info!(
                safe_resource = r.resource,
                safe_mode = if r.mode == PassMode::Full { "full" } else { "incremental" },
                fetched_count = r.fetched,
                new_count = r.new,
                updated_count = r.updated,
                unchanged_count = r.unchanged,
                removed_count = r.removed,
                skipped_count = r.skipped_deleted,
                invalid_count = r.invalid,
                "resource synced"
            );
            report.resources.push(r);
        }
        let mut after = SyncReport::default();
        self.apply_vault(&mut after).await?;
        report.tombstones = after.tombstones;
        report.tombstoned += after.tombstoned;
        report.tombstones_lifted += after.tombstones_lifted;
        report.purged += after.purged;
        Ok(report)
    }

    async fn fetch_page(
        &self,
        endpoint: &'static Endpoint,
        ids: &[&str],
        query: &[(&str, &str)],
        page: u32,
    ) -> Result<FetchedPage, SyncError> {
        let per = self.options.per_page;
        let fetched = self
            .client
            .raw_list(endpoint, ids, query)
            .per(per)
            .starting_at(page)
            .page()
            .await?;
        let n = fetched.records.len();
        let pagination = fetched.pagination;
        let last = n == 0
            || pagination
                .and_then(|p| Some(p.current_page? >= p.total_pages?))
                .unwrap_or(false)
            || n < per as usize;
        Ok(FetchedPage {
            records: fetched
                .records
                .into_iter()
                .map(|r| r.0.into_inner())
                .collect(),
            total_records: pagination.and_then(|p| p.total_records),
            last,
        })
    }

    /// Reads every page of a listing into memory (small listings: the vault); the flag is
    /// false when the server's total changed while paging or fewer records arrived than it
    /// announced.
    async fn list_all(
        &self,
        endpoint: &'static Endpoint,
        ids: &[&str],
        query: &[(&str, &str)],
    ) -> Result<(Vec<Map<String, Value>>, bool), SyncError> {
        let mut out = Vec::new();
        let mut totals = Totals::default();
        let mut page = 1u32;
        loop {
            let fetched = self.fetch_page(endpoint, ids, query, page).await?;
            totals.page(fetched.total_records, fetched.records.len());
            out.extend(fetched.records);
            if fetched.last {
                break;
            }
            page = page
                .checked_add(1)
                .ok_or(SyncError::Corrupt("more pages than a u32 counts"))?;
        }
        Ok((out, totals.stable()))
    }

    async fn apply_vault(&self, report: &mut SyncReport) -> Result<HashSet<String>, SyncError> {
        let endpoint = endpoints::find("get_vaults_patients")
            .ok_or(SyncError::Catalogue("the vault endpoint is missing"))?;
        let (records, stable) = self.list_all(endpoint, &[], &[]).await?;
        let stored: HashSet<String> = self
            .store
            .list_kind(TOMBSTONE_KIND)
            .await?
            .into_iter()
            .map(|r| r.id.into_inner())
            .collect();
        let mut vault = HashSet::new();
        for record in &records {
            let Some(patient) = field_text(record, "casefile_id") else {
                continue;
            };
            if !stored.contains(&patient) {
                let tombstone = serde_json::json!({
                    "patient_id": patient,
                    "deleted_at": record.get("deleted_at").cloned().unwrap_or(Value::Null),
                });
                self.store
                    .put_with_ttl(
                        TOMBSTONE_KIND,
                        &patient,
                        None,
                        tombstone.to_string().as_bytes(),
                        None,
                    )
                    .await?;
                report.tombstoned += 1;
            }
            // Every run, not only when the tombstone is new: a run killed after writing the
            // tombstone and before this purge completes it now.
            report.purged += self.store.invalidate_patient(&patient).await?;
            vault.insert(patient);
        }
        if stable {
            for gone in stored.difference(&vault) {
                self.store.invalidate_key(TOMBSTONE_KIND, gone).await?;
                report.tombstones_lifted += 1;
            }
        } else {
            // An unstable listing may have missed a vaulted patient: keep every tombstone.
            vault.extend(stored);
        }
        report.tombstones = vault.len() as u64;
        if report.tombstoned > 0 || report.purged > 0 {
            tracing::info!(
                tombstoned_count = report.tombstoned,
                purged_count = report.purged,
                "soft-deleted patients purged"
            );
        }
        Ok(vault)
    }

    async fn load_cursor(&self, resource: Resource) -> Result<Cursor, SyncError> {
        match self.store.get(CURSOR_KIND, resource.name()).await? {
            Some(rec) => Cursor::from_json(rec.value.expose()),
            None => Ok(Cursor::default()),
        }
    }

    async fn load_existing(&self, kind: &str) -> Result<HashMap<String, Existing>, SyncError> {
        let mut out = HashMap::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list_kind_page(kind, cursor.as_ref(), store::MAX_LIST_PAGE)
                .await?;
            for rec in page.records {
                let patient = rec.patient.map(phi::Sensitive::into_inner);
                let hash = content_hash(patient.as_deref().unwrap_or(""), rec.value.expose());
                out.insert(rec.id.into_inner(), Existing { hash, patient });
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    async fn sync_resource(
        &self,
        resource: Resource,
        tombstones: &HashSet<String>,
        live_patients: &mut Option<Vec<String>>,
        started: i64,
    ) -> Result<ResourceReport, (ResourceReport, SyncError)> {
        let cursor = match self.load_cursor(resource).await {
            Ok(c) => c,
            Err(e) => return Err((ResourceReport::new(resource, PassMode::Full), e)),
        };
        let reconcile_ms = i64::try_from(self.options.reconcile_every.as_millis()).unwrap_or(i64::MAX);
        let since = resource.since_param().and_then(|(param, _)| {
            let high_water = cursor.high_water.as_deref()?;
            let last_full = cursor.last_full_ms?;
            if self.options.force_full || started.saturating_sub(last_full) >= reconcile_ms {
                return None;
            }
            let hw = DateTime::parse_from_rfc3339(high_water).ok()?;
            let from = hw.date_naive().pred_opt()?;
            Some((param, from.format("%Y-%m-%d").to_string()))
        });
        let mode = if since.is_some() {
            PassMode::Incremental
        } else {
            PassMode::Full
        };
        let mut pass = Pass {
            resource,
            report: ResourceReport::new(resource, mode),
            existing: HashMap::new(),
            seen: HashSet::new(),
            tombstones,
            high_water: cursor
                .high_water
                .as_deref()
                .and_then(|h| DateTime::parse_from_rfc3339(h).ok()),
            unlisted_patients: HashSet::new(),
            complete: true,
        };
        match self
            .run_pass(&mut pass, since, live_patients)
            .await
        {
            Ok(()) => {}
            Err(e) => return Err((pass.report, e)),
        }
        let finish = async {
            if mode == PassMode::Full && pass.complete {
                self.sweep(&mut pass).await?;
            }
            let next = Cursor {
                high_water: pass.high_water.map(|h| h.to_rfc3339()),
                last_full_ms: if mode == PassMode::Full && pass.complete {
                    Some(started)
                } else {
                    cursor.last_full_ms
                },
                last_run_ms: Some(started),
            };
            self.store
                .put_with_ttl(CURSOR_KIND, resource.name(), None, &next.to_json(), None)
                .await?;
            Ok::<(), SyncError>(())
        };
        match finish.await {
            Ok(()) => Ok(pass.report),
            Err(e) => Err((pass.report, e)),
        }
    }

    async fn run_pass(
        &self,
        pass: &mut Pass<'_>,
        since: Option<(&'static str, String)>,
        live_patients: &mut Option<Vec<String>>,
    ) -> Result<(), SyncError> {
        let resource = pass.resource;
        let endpoint = resource.endpoint()?;
        pass.existing = self.load_existing(resource.kind()).await?;
        if resource.per_patient() {
            let Some(patients) = live_patients.as_ref() else {
                return Err(SyncError::Catalogue(
                    "per-patient resources need the census of this run, which failed",
                ));
            };
            let per = self.options.per_page;
            let client = self.client.clone();
            let mut listings = futures::stream::iter(patients.iter().cloned())
                .map(|patient| {
                    let client = client.clone();
                    async move {
                        let result = client
                            .raw_list(endpoint, &[patient.as_str()], &[])
                            .per(per)
                            .collect_all()
                            .await;
                        (patient, result)
                    }
                })
                .buffer_unordered(self.options.concurrency);
            let mut done = 0u64;
            while let Some((patient, result)) = listings.next().await {
                match result {
                    Ok(records) => {
                        for record in records {
                            self.ingest(pass, &record.0.into_inner(), Some(&patient))
                                .await?;
                        }
                    }
                    Err(kipu::Error::NotFound { .. }) => {
                        // Deleted or merged since the census was read: keep what we have;
                        // the vault step purges it if it was deleted.
                        pass.unlisted_patients.insert(patient);
                    }
                    Err(e) => return Err(e.into()),
                }
                done += 1;
                if done.is_multiple_of(50) {
                    tracing::debug!(
                        safe_resource = resource.name(),
                        records = pass.report.fetched,
                        "page stored"
                    );
                }
            }
            return Ok(());
        }
        let query: Vec<(&str, &str)> = since
            .as_ref()
            .map(|(k, v)| vec![(*k, v.as_str())])
            .unwrap_or_default();
        let mut page = 1u32;
        let mut totals = Totals::default();
        let mut patients = Vec::new();
        loop {
            let fetched = self.fetch_page(endpoint, &[], &query, page).await?;
            totals.page(fetched.total_records, fetched.records.len());
            for record in &fetched.records {
                if resource == Resource::Patients
                    && let Some(p) = field_text(record, resource.patient_field())
                    && !pass.tombstones.contains(&p)
                {
                    patients.push(p);
                }
                self.ingest(pass, record, None).await?;
            }
            tracing::debug!(
                safe_resource = resource.name(),
                page,
                records = fetched.records.len(),
                "page stored"
            );
            if fetched.last {
                break;
            }
            page = page
                .checked_add(1)
                .ok_or(SyncError::Corrupt("more pages than a u32 counts"))?;
        }
        pass.complete = totals.stable();
        if resource == Resource::Patients {
            if !pass.complete {
                // A census that shifted while paging may have skipped patients; per-patient
                // resources then read the ones seen, and sweep nothing for the others.
                tracing::warn!("the census changed while it was read; removals are deferred to the next run");
            }
            patients.sort_unstable();
            patients.dedup();
            *live_patients = Some(patients);
        }
        Ok(())
    }

    async fn ingest(
        &self,
        pass: &mut Pass<'_>,
        record: &Map<String, Value>,
        path_patient: Option<&str>,
    ) -> Result<(), SyncError> {
        pass.report.fetched += 1;
        let prepared = prepare(pass.resource, record, path_patient);
        let action = classify(prepared.as_ref(), pass.tombstones, &pass.existing);
        if let Some((_, field)) = pass.resource.since_param()
            && let Some(ts) = record.get(field).and_then(Value::as_str)
            && let Ok(ts) = DateTime::parse_from_rfc3339(ts)
            && pass.high_water.is_none_or(|h| ts > h)
        {
            pass.high_water = Some(ts);
        }
        let Some(p) = prepared else {
            pass.report.invalid += 1;
            return Ok(());
        };
        match action {
            Action::Invalid => pass.report.invalid += 1,
            Action::SkipDeleted => pass.report.skipped_deleted += 1,
            Action::Unchanged => pass.report.unchanged += 1,
            Action::New | Action::Updated => {
                self.store
                    .put_with_ttl(
                        pass.resource.kind(),
                        &p.id,
                        Some(&p.patient),
                        &p.bytes,
                        None,
                    )
                    .await?;
                if action == Action::New {
                    pass.report.new += 1;
                } else {
                    pass.report.updated += 1;
                }
                pass.existing.insert(
                    p.id.clone(),
                    Existing {
                        hash: p.hash,
                        patient: Some(p.patient.clone()),
                    },
                );
            }
        }
        if action != Action::SkipDeleted {
            pass.seen.insert(p.id);
        }
        Ok(())
    }

    async fn sweep(&self, pass: &mut Pass<'_>) -> Result<(), SyncError> {
        let gone: Vec<String> = pass
            .existing
            .iter()
            .filter(|(id, e)| {
                !pass.seen.contains(*id)
                    && !e
                        .patient
                        .as_ref()
                        .is_some_and(|p| pass.unlisted_patients.contains(p))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if self.store.invalidate_key(pass.resource.kind(), &id).await? {
                pass.report.removed += 1;
            }
        }
        pass.report.swept = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test records are objects"),
        }
    }

    #[test]
    fn a_record_of_a_tombstoned_patient_is_skipped_even_on_a_full_page() {
        let tombstones: HashSet<String> = ["1001:dead".to_string()].into();
        let r = record(serde_json::json!({"casefile_id": "1001:dead", "first_name": "A"}));
        let p = prepare(Resource::Patients, &r, None);
        assert_eq!(
            classify(p.as_ref(), &tombstones, &HashMap::new()),
            Action::SkipDeleted
        );
        let v = record(serde_json::json!({"id": 7, "patient_id": "1001:dead"}));
        let p = prepare(Resource::VitalSigns, &v, None);
        assert_eq!(
            classify(p.as_ref(), &tombstones, &HashMap::new()),
            Action::SkipDeleted
        );
        // Diagnoses name the patient in the path when the record does not.
        let d = record(serde_json::json!({"id": 9, "code": "F10.20"}));
        let p = prepare(Resource::Diagnoses, &d, Some("1001:dead"));
        assert_eq!(
            classify(p.as_ref(), &tombstones, &HashMap::new()),
            Action::SkipDeleted
        );
    }

    #[test]
    fn records_are_new_unchanged_or_updated_by_content() {
        let r = record(serde_json::json!({"id": 7, "patient_id": "1000:a", "heart_rate": 80}));
        let p = prepare(Resource::VitalSigns, &r, None).unwrap();
        assert_eq!(p.id, "7");
        assert_eq!(p.patient, "1000:a");
        let none = HashSet::new();
        let mut existing = HashMap::new();
        assert_eq!(classify(Some(&p), &none, &existing), Action::New);
        existing.insert(
            "7".to_string(),
            Existing {
                hash: p.hash,
                patient: Some(p.patient.clone()),
            },
        );
        assert_eq!(classify(Some(&p), &none, &existing), Action::Unchanged);
        let changed = record(serde_json::json!({"id": 7, "patient_id": "1000:a", "heart_rate": 81}));
        let q = prepare(Resource::VitalSigns, &changed, None).unwrap();
        assert_eq!(classify(Some(&q), &none, &existing), Action::Updated);
        // The same bytes under another patient are a change too.
        let moved = record(serde_json::json!({"id": 7, "patient_id": "1000:b", "heart_rate": 80}));
        let m = prepare(Resource::VitalSigns, &moved, None).unwrap();
        assert_eq!(classify(Some(&m), &none, &existing), Action::Updated);
    }

    #[test]
    fn records_without_an_id_or_a_patient_are_invalid() {
        let none = HashSet::new();
        for (resource, v) in [
            (Resource::VitalSigns, serde_json::json!({"patient_id": "1000:a"})),
            (Resource::VitalSigns, serde_json::json!({"id": 1})),
            (Resource::VitalSigns, serde_json::json!({"id": "", "patient_id": "1000:a"})),
            (Resource::Patients, serde_json::json!({"first_name": "A"})),
            (Resource::CareTeams, serde_json::json!({"care_team": []})),
        ] {
            let p = prepare(resource, &record(v), None);
            assert!(p.is_none());
            assert_eq!(classify(p.as_ref(), &none, &HashMap::new()), Action::Invalid);
        }
    }

    #[test]
    fn a_listing_is_stable_only_if_its_total_held_and_every_record_arrived() {
        let mut t = Totals::default();
        t.page(Some(7), 5);
        t.page(Some(7), 2);
        assert!(t.stable());
        let mut moved = Totals::default();
        moved.page(Some(7), 5);
        moved.page(Some(8), 2);
        assert!(!moved.stable(), "a record was added while paging");
        let mut short = Totals::default();
        short.page(Some(7), 5);
        short.page(Some(7), 1);
        assert!(!short.stable(), "one record never arrived");
        let mut unknown = Totals::default();
        unknown.page(None, 5);
        unknown.page(None, 3);
        assert!(unknown.stable(), "no totals announced: nothing to contradict");
    }

    #[test]
    fn cursor_round_trips_and_unknown_versions_are_refused() {
        let c = Cursor {
            high_water: Some("2025-06-30T20:55:00-05:00".into()),
            last_full_ms: Some(1),
            last_run_ms: Some(2),
        };
        assert_eq!(Cursor::from_json(&c.to_json()).unwrap(), c);
        assert_eq!(
            Cursor::from_json(&Cursor::default().to_json()).unwrap(),
            Cursor::default()
        );
        assert!(Cursor::from_json(br#"{"version": 99}"#).is_err());
        assert!(Cursor::from_json(b"not json").is_err());
    }

    #[test]
    fn every_resource_reads_a_catalogued_list_endpoint_and_has_its_own_kind() {
        let mut kinds = HashSet::new();
        for r in Resource::ALL {
            let e = r.endpoint().unwrap();
            assert_eq!(e.is_patient_scoped(), r.per_patient(), "{}", r.name());
            if let Some((param, _)) = r.since_param() {
                assert!(e.params.contains(&param), "{} offers {param}", r.name());
            }
            assert!(kinds.insert(r.kind()));
            assert_eq!(Resource::from_name(r.name()), Some(r));
        }
        assert!(!kinds.contains(TOMBSTONE_KIND) && !kinds.contains(CURSOR_KIND));
    }
}
