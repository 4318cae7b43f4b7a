//! The state shared by every request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use audit::{AuditLog, FileKeys};

use super::config::Config;
use super::metrics::Metrics;
use super::ratelimit::Limits;

/// Where the data comes from.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// The built-in Kipu simulator on loopback: SYNTHETIC data.
    Simulator {
        /// Its address.
        addr: SocketAddr,
        /// Patients on its census.
        patients: u64,
    },
    /// The real Kipu API.
    Kipu {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
    },
}

impl Upstream {
    /// Whether the data served is synthetic.
    pub fn is_synthetic(&self) -> bool {
        matches!(self, Upstream::Simulator { .. })
    }
}

/// Everything a request may need.
#[derive(Debug)]
pub struct AppState {
    /// The configuration in force.
    pub config: Config,
    /// The audit log (every request's events are written before its response leaves).
    pub audit: AuditLog,
    /// Keyed hashes of identifiers for audit events.
    pub hasher: Arc<FileKeys>,
    /// Authentication and authorization (API keys, JWTs, admins, Cedar policies, grants).
    pub access: access::Access,
    /// The encrypted store.
    pub store: store::Store,
    /// Rate limits; `None` only when disabled on a loopback-only development setup.
    pub limits: Option<Arc<Limits>>,
    /// Request counters and latency histograms.
    pub metrics: Metrics,
    /// The EHR upstream.
    pub upstream: Upstream,
    /// When the gateway started.
    pub started: Instant,
    /// Care teams read from the store, per access epoch.
    pub care_teams: super::authz::CareTeamCache,
}
