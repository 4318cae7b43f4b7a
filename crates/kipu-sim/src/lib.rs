//! A Kipu API simulator: verifies APIAuth signatures like the real service and serves
//! deterministic synthetic data for all 85 endpoints of `kipu::endpoints::ENDPOINTS`.
//!
//! Every other part of phigate is tested against it, so it is strict where Kipu is strict and
//! realistic where a client could be fooled.
//!
//! # What it does
//!
//! * **Authentication** ([`auth`]): the canonical string is rebuilt from the request *as
//!   received*: the raw request target (`path_and_query` exactly as on the wire, never
//!   re-encoded), the received `Content-Type`, `Content-MD5` and `Date`. The Authorization scheme
//!   must match the API version of the credentials (a v3 header against v4 credentials is
//!   refused), `Accept` must name that version, `Content-MD5` must match the body and is required
//!   when there is one, `Date` must lie within the configured skew (±900 s by default), and
//!   `app_id` must be the last query parameter and equal the configured app id. A failure is a
//!   401 `{"errors": "<which check failed>", "status_code": 401}`.
//! * **Data** (`data`): N patients (default 200, tested at 100,000) generated lazily from
//!   `(seed, index)`; a page of the census is computed from its index range. Same seed, same
//!   bytes. A few soft-deleted patients appear only in `/api/vaults/patients`.
//! * **Canaries**: every patient carries five unique strings that cannot occur by chance: a
//!   `Qx…` token in the last name, a `QX…` MRN, a `555-…` phone, an `@example.com` email and a
//!   `Zv…` token in every free-text field. [`Simulator::canaries`] lists them so tests can grep
//!   any output for PHI leaks.
//! * **Pagination** like Kipu: `page`/`per` (default 20, at most 1000; anything else is a 422).
//! * **Filters** (kipu-api.md §2): `start_date`/`end_date` on the census (patients whose stay
//!   meets the window), `patients/latest` (updated within it: the "updated since" query of a
//!   sync), `patients/admissions` (admitted within it, plus `location_id`),
//!   `scheduler/appointments` (by `start_time`), `insurances/latest` and
//!   `utilization_reviews/latest` (by `updated_at`); `created_at_start_date`/
//!   `created_at_end_date` on every patient-scoped list (by `created_at`, or `updated_at` for
//!   records without one); `days` on patient, provider and user appointments (starting within
//!   that many days of the simulator's "today", 2025-06-30; no default is applied). Bounds are
//!   `YYYY-MM-DD` (an end date covers its whole day) or `YYYY-MM-DD HH:MM:SS`, in the data's
//!   local time; a malformed bound is a 422 naming the parameter. Every generated record
//!   carries `updated_at`.
//! * **Speed**: the serialized JSON of generated patients and of each patient's records of a
//!   kind is cached (at most [`RESPONSE_CACHE_BYTES`], oldest evicted first), so the hot reads
//!   (census pages, one patient, a patient's records) copy bytes instead of building and
//!   serializing JSON values. Whatever a write touched is served from the general path, and a
//!   test holds both paths to the same bytes.
//! * **Faults** ([`FaultSpec`]), decided after authentication (a bad signature is always a
//!   plain 401) from `hash(seed, method, target, attempt)`, so they are reproducible under
//!   concurrency and a retried request eventually succeeds.
//! * **Writes** (4 POST, 4 PATCH, JSON or multipart) are kept in memory and show in later reads.
//!
//! # Security invariants
//!
//! * The data is synthetic; the default credentials are fixed, public, development-only values
//!   ([`SimConfig::default`]) and must never be used against a real service.
//! * Nothing here logs a request target, a query, a header value or a body: they carry
//!   PHI-like canaries. Logs name the method, the endpoint *template* and the status only.
//! * Error bodies never echo request data; they name the check or the field that failed.
//! * [`spawn`] binds loopback unless given another address; refusing non-loopback addresses for
//!   the command line is the binary's job (`phigate sim`).
//! * No environment variable or file is read here; the binary passes the configuration.

#![forbid(unsafe_code)]

mod api;
mod auth;
mod cache;
mod data;
mod dict;
mod faults;
mod server;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use faults::{FaultSpec, FaultSpecError};
pub use kipu::signing::ApiVersion;
use secrecy::{ExposeSecret as _, SecretString};
pub use server::RunningSim;

/// The most patients the simulator will generate (ids and canaries stay unique below it).
pub const MAX_PATIENTS: u64 = 1_000_000;

/// The memory the simulator may spend on serialized generated records (see the crate docs).
pub const RESPONSE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The fixed development credentials of [`SimConfig::default`]. Synthetic-only: they protect
/// nothing and must never be configured against the real Kipu API.
pub const DEV_ACCESS_ID: &str = "phigate-sim-access-id";
/// See [`DEV_ACCESS_ID`].
pub const DEV_SECRET_KEY: &str = "phigate-sim-secret-key-SYNTHETIC-DATA-ONLY";
/// See [`DEV_ACCESS_ID`].
pub const DEV_APP_ID: &str = "phigate-sim-app";

/// How the simulator behaves.
#[derive(Clone)]
pub struct SimConfig {
    /// Patients on the census (1 to [`MAX_PATIENTS`]).
    pub patients: u64,
    /// The seed of all generated data and of the fault decisions.
    pub seed: u64,
    /// Which faults to inject.
    pub faults: FaultSpec,
    /// The API version the credentials are for (selects the accepted scheme and `Accept`).
    pub api_version: ApiVersion,
    /// The access id the simulator accepts.
    pub access_id: String,
    /// The secret key it verifies with.
    pub secret_key: SecretString,
    /// The app id (`recipient_id`) it requires.
    pub app_id: String,
    /// How far a request's `Date` may be from the simulator's clock, either way.
    pub max_clock_skew: Duration,
    /// Where [`spawn`] binds; `None` means `127.0.0.1:0` (a free loopback port).
    pub addr: Option<SocketAddr>,
}

impl Default for SimConfig {
    /// 200 patients, seed 1, no faults, API v3, the public development credentials, ±900 s.
    fn default() -> Self {
        Self {
            patients: 200,
            seed: 1,
            faults: FaultSpec::none(),
            api_version: ApiVersion::V3,
            access_id: DEV_ACCESS_ID.to_owned(),
            secret_key: SecretString::from(DEV_SECRET_KEY),
            app_id: DEV_APP_ID.to_owned(),
            max_clock_skew: Duration::from_secs(900),
            addr: None,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("patients", &self.patients)
            .field("seed", &self.seed)
            .field("faults", &self.faults.to_string())
            .field("api_version", &self.api_version)
            .field("access_id", &self.access_id)
            .field("secret_key", &"[REDACTED]")
            .field("app_id", &self.app_id)
            .field("max_clock_skew", &self.max_clock_skew)
            .field("addr", &self.addr)
            .finish()
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is impossible.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// The simulator's state: configuration, the generator and what has been written. Embed it
/// with [`router`], or run it with [`spawn`].
pub struct Simulator {
    verifier: auth::Verifier,
    faults: FaultSpec,
    data: data::Dataset,
    writes: RwLock<api::Writes>,
    attempts: Mutex<HashMap<u64, u32>>,
    occupancy: std::sync::OnceLock<Vec<u64>>,
    cache: cache::Cache,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("patients", &self.data.patients)
            .field("seed", &self.data.seed)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Checks the configuration and prepares the (lazy) data.
    pub fn new(config: &SimConfig) -> Result<Self, SimError> {
        if config.patients == 0 || config.patients > MAX_PATIENTS {
            return Err(SimError::Config(format!(
                "patients must be between 1 and {MAX_PATIENTS}"
            )));
        }
        if config.access_id.is_empty() || config.access_id.contains([' ', ':']) {
            return Err(SimError::Config(
                "access id must be non-empty, without spaces or colons".into(),
            ));
        }
        if config.secret_key.expose_secret().is_empty() {
            return Err(SimError::Config("secret key must not be empty".into()));
        }
        if config.app_id.is_empty() {
            return Err(SimError::Config("app id must not be empty".into()));
        }
        Ok(Self {
            verifier: auth::Verifier {
                version: config.api_version,
                access_id: config.access_id.clone(),
                secret: config.secret_key.clone(),
                app_id: config.app_id.clone(),
                max_skew: config.max_clock_skew,
            },
            faults: config.faults.clone(),
            data: data::Dataset::new(config.seed, config.patients),
            writes: RwLock::new(api::Writes::default()),
            attempts: Mutex::new(HashMap::new()),
            occupancy: std::sync::OnceLock::new(),
            cache: cache::Cache::new(RESPONSE_CACHE_BYTES),
        })
    }

    /// Every canary of every generated patient (census and vault): five per patient.
    pub fn canaries(&self) -> Vec<String> {
        (0..self.data.generated())
            .flat_map(|i| self.patient_canaries(i))
            .collect()
    }

    /// The five canaries of the generated patient at `index` (0-based; census patients first,
    /// then the soft-deleted ones): last-name token, MRN, phone, email, free-text token.
    pub fn patient_canaries(&self, index: u64) -> [String; 5] {
        let c = self.data.canaries(index);
        [c.name, c.mrn, c.phone, c.email, c.note]
    }

    /// How many patients the census lists before any write.
    pub fn patients(&self) -> u64 {
        self.data.patients
    }

    /// The casefile id of the generated patient at `index`.
    pub fn casefile_id(&self, index: u64) -> String {
        self.data.casefile_id(index)
    }
}

/// The axum router that serves the API for a simulator (a fallback handler dispatching on
/// `kipu::endpoints::match_path`). Connection resets are best served by [`spawn`], which closes
/// the connection without a response; embedded, a reset becomes a body that fails at once.
pub fn router(state: Arc<Simulator>) -> axum::Router {
    axum::Router::new().fallback(api::handle).with_state(state)
}

/// Starts the simulator on `config.addr` (default `127.0.0.1:0`) in the current Tokio runtime.
pub async fn spawn(config: SimConfig) -> Result<RunningSim, SimError> {
    server::spawn(config).await
}
