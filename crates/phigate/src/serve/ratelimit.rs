//! Rate limits: GCRA token buckets (governor) per source address, per authenticated
//! principal, and a stricter one per source address for `/auth/*`. A read costs one token, a
//! write (`POST`, `PUT`, `PATCH`, `DELETE`) costs `write_cost`.
//!
//! A refused request gets 429 with `Retry-After` (whole seconds, rounded up) and the IETF
//! `RateLimit-Policy` / `RateLimit` headers naming the bucket that refused; a served request
//! carries the `RateLimit` header of the bucket closest to empty.
//!
//! # Several instances
//!
//! The buckets live in each instance's memory. Behind a load balancer with N instances a
//! client can get up to N times the configured rate. This is sound because the limits are a
//! denial-of-service guard, not an entitlement: the bound stays finite and known. Size them as
//! `wanted_rate / N` per instance (or use source-address affinity at the load balancer, which
//! makes the per-address buckets exact). Revocation and audit, which must be exact, are shared
//! through PostgreSQL instead. The full reasoning and sizing rules: `docs/gateway-operations.md`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::config::RateLimitConfig;
use super::problem::Problem;
use super::reqctx::{ConnInfo, Identity};
use super::state::AppState;

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One named bucket family.
struct Bucket<K: std::hash::Hash + Eq + Clone> {
    name: &'static str,
    quota: Quota,
    limiter: Keyed<K>,
}

impl<K: std::hash::Hash + Eq + Clone> Bucket<K> {
    fn new(name: &'static str, per_minute: u32, burst: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        Self {
            name,
            quota,
            limiter: RateLimiter::dashmap(quota).with_middleware::<StateInformationMiddleware>(),
        }
    }

    fn policy_header(&self) -> String {
        let window = self.quota.replenish_interval() * self.quota.burst_size().get();
        format!(
            "\"{}\";q={};w={}",
            self.name,
            self.quota.burst_size(),
            window.as_secs().max(1)
        )
    }

    /// Charges `cost` tokens; `Ok(remaining)` or `Err(wait)`.
    fn charge(&self, key: &K, cost: NonZeroU32, clock: &DefaultClock) -> Result<u32, Duration> {
        match self.limiter.check_key_n(key, cost) {
            Ok(Ok(snapshot)) => Ok(snapshot.remaining_burst_capacity()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(clock.now())),
            // More than the burst can ever hold (config validation prevents it for writes).
            Err(_) => Err(self.quota.replenish_interval() * self.quota.burst_size().get()),
        }
    }
}

/// All buckets of one gateway instance.
pub struct Limits {
    address: Bucket<IpAddr>,
    principal: Bucket<String>,
    auth: Bucket<IpAddr>,
    write_cost: NonZeroU32,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("write_cost", &self.write_cost)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// Buckets as configured.
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            address: Bucket::new("address", c.per_address_per_minute, c.per_address_burst),
            principal: Bucket::new(
                "principal",
                c.per_principal_per_minute,
                c.per_principal_burst,
            ),
            auth: Bucket::new("auth", c.auth_per_minute, c.auth_burst),
            write_cost: NonZeroU32::new(c.write_cost).unwrap_or(NonZeroU32::MIN),
            clock: DefaultClock::default(),
        }
    }

    /// Forgets buckets that are full again (bounded memory under address churn).
    pub fn spawn_janitor(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                self.address.limiter.retain_recent();
                self.principal.limiter.retain_recent();
                self.auth.limiter.retain_recent();
                self.address.limiter.shrink_to_fit();
                self.principal.limiter.shrink_to_fit();
                self.auth.limiter.shrink_to_fit();
            }
        })
    }
}

fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

fn header(value: String) -> Option<HeaderValue> {
    HeaderValue::from_str(&value).ok()
}

/// The rate-limit layer (runs after authentication, before authorization).
pub async fn limit(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let Some(limits) = st.limits.as_ref() else {
        return next.run(req).await;
    };
    let ip = req
        .extensions()
        .get::<ConnInfo>()
        .map(|c| c.peer.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let principal = match req.extensions().get::<Identity>() {
        Some(Identity::Authenticated(p)) => Some(p.id.clone()),
        _ => None,
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let is_auth_route = route.as_deref().is_some_and(|r| r.starts_with("/auth/"));
    let cost = if is_write(req.method()) {
        limits.write_cost
    } else {
        NonZeroU32::MIN
    };

    // Tightest bucket seen so far: (name, remaining, policy).
    let mut tightest: Option<(&'static str, u32, String)> = None;
    let mut note = |name: &'static str, remaining: u32, policy: String| {
        if tightest.as_ref().is_none_or(|t| remaining < t.1) {
            tightest = Some((name, remaining, policy));
        }
    };
    let refused = |name: &'static str, policy: String, wait: Duration| {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.max(1);
        let mut response = Problem::for_status(StatusCode::TOO_MANY_REQUESTS).into_response();
        let h = response.headers_mut();
        if let Some(v) = header(secs.to_string()) {
            h.insert(axum::http::header::RETRY_AFTER, v);
        }
        if let Some(v) = header(policy) {
            h.insert(RATELIMIT_POLICY.clone(), v);
        }
        if let Some(v) = header(format!("\"{name}\";r=0;t={secs}")) {
            h.insert(RATELIMIT.clone(), v);
        }
        response
    };

    if is_auth_route {
        match limits.auth.charge(&ip, cost, &limits.clock) {
            Ok(rem) => note("auth", rem, limits.auth.policy_header()),
            Err(wait) => {
                return refused("auth", limits.auth.policy_header(), wait);
            }
        }
    }
    match limits.address.charge(&ip, cost, &limits.clock) {
        Ok(rem) => note("address", rem, limits.address.policy_header()),
        Err(wait) => return refused("address", limits.address.policy_header(), wait),
    }
    if let Some(p) = &principal {
        match limits.principal.charge(p, cost, &limits.clock) {
            Ok(rem) => note("principal", rem, limits.principal.policy_header()),
            Err(wait) => return refused("principal", limits.principal.policy_header(), wait),
        }
    }

    let mut response = next.run(req).await;
    if let Some((name, remaining, policy)) = tightest {
        let h = response.headers_mut();
        if let Some(v) = header(policy) {
            h.insert(RATELIMIT_POLICY.clone(), v);
        }
        if let Some(v) = header(format!("\"{name}\";r={remaining}")) {
            h.insert(RATELIMIT.clone(), v);
        }
    }
    response
}
