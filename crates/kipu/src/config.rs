//! Client configuration: where to connect, with what credentials, and how patiently.
//!
//! The binary reads the environment (`KIPU_*`) and fills this in; the crate itself reads no
//! environment variable and no file.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::Error;
use crate::signing::Credentials;

/// The production Kipu API.
pub const DEFAULT_BASE_URL: &str = "https://api.kipuapi.com";

/// Where the client gets the time for the `Date` header.
///
/// The default is the system clock. Tests inject a skewed clock to prove the server refuses it;
/// an operator whose host clock is known to be off can inject a corrected one.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// How GETs are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 means no retry).
    pub max_attempts: u32,
    /// The first backoff ceiling; each retry doubles it (full jitter draws from 0 to it).
    pub base_delay: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured; a server asking for more gets this.
    pub max_retry_after: Duration,
    /// The whole call, all attempts and waits included, must finish within this.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            deadline: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}

/// Everything a [`crate::Client`] needs. Build it with [`ClientConfig::builder`].
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) credentials: Credentials,
    pub(crate) base_url: url::Url,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) concurrency: usize,
    pub(crate) extra_ca_pem: Vec<reqwest::Certificate>,
    pub(crate) max_body_bytes: usize,
    pub(crate) clock: Clock,
    pub(crate) user_agent: String,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("credentials", &self.credentials)
            .field("base_url", &self.base_url.as_str())
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("extra_ca_certificates", &self.extra_ca_pem.len())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Starts a configuration for these credentials against [`DEFAULT_BASE_URL`].
    pub fn builder(credentials: Credentials) -> ClientConfigBuilder {
        ClientConfigBuilder {
            credentials,
            base_url: DEFAULT_BASE_URL.to_string(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            concurrency: 8,
            extra_ca_pem: Vec::new(),
            max_body_bytes: 64 * 1024 * 1024,
            clock: None,
        }
    }

    /// The credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The base URL (scheme, host, port).
    pub fn base_url(&self) -> &url::Url {
        &self.base_url
    }

    /// The concurrency limit shared by all calls of a client.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }
}

/// Builder for [`ClientConfig`]; [`ClientConfigBuilder::build`] validates everything.
pub struct ClientConfigBuilder {
    credentials: Credentials,
    base_url: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: RetryPolicy,
    concurrency: usize,
    extra_ca_pem: Vec<Vec<u8>>,
    max_body_bytes: usize,
    clock: Option<Clock>,
}

impl std::fmt::Debug for ClientConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfigBuilder")
            .field("credentials", &self.credentials)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl ClientConfigBuilder {
    /// The API base URL: `https://host[:port]`, or `http://` to a loopback host only.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// How long to wait for a TCP connection and TLS handshake.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one attempt may take, body included.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The retry policy for GETs (and for writes the caller opts in).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// How many requests of this client may be in flight at once.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency = limit;
        self
    }

    /// Trusts the CA certificates of a PEM bundle in addition to the platform's roots
    /// (a private Kipu gateway, a TLS-inspecting proxy the organisation operates). Certificate
    /// verification itself cannot be turned off.
    pub fn extra_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_ca_pem.push(pem.into());
        self
    }

    /// The largest response body accepted (default 64 MiB).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// Replaces the clock used for the `Date` header.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Validates and freezes the configuration.
    pub fn build(self) -> Result<ClientConfig, Error> {
        let base_url = validate_base_url(&self.base_url)?;
        if self.concurrency == 0 {
            return Err(Error::Configuration(
                "concurrency must be at least 1".into(),
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::Configuration(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Configuration(
                "timeouts must be greater than zero".into(),
            ));
        }
        let mut extra_ca_pem = Vec::new();
        for pem in &self.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|_| {
                Error::Configuration(
                    "the extra CA bundle is not a valid PEM certificate bundle".into(),
                )
            })?;
            if certs.is_empty() {
                return Err(Error::Configuration(
                    "the extra CA bundle contains no certificate".into(),
                ));
            }
            extra_ca_pem.extend(certs);
        }
        Ok(ClientConfig {
            credentials: self.credentials,
            base_url,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            retry: self.retry,
            concurrency: self.concurrency,
            extra_ca_pem,
            max_body_bytes: self.max_body_bytes,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemTime::now)),
            user_agent: format!("phigate-kipu/{}", env!("CARGO_PKG_VERSION")),
        })
    }
}

/// Accepts `https://host[:port][/]` anywhere and `http://` only to loopback; refuses paths,
/// queries, fragments and userinfo, which would change what is signed or leak credentials.
pub fn validate_base_url(raw: &str) -> Result<url::Url, Error> {
    let url = url::Url::parse(raw.trim_end_matches('/'))
        .map_err(|_| Error::Configuration("the base URL is not a valid absolute URL".into()))?;
    let host = url
        .host()
        .ok_or_else(|| Error::Configuration("the base URL has no host".into()))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(Error::Configuration(
                "plain http:// is refused for a non-loopback host: PHI and signed credentials \
                 would cross the network unencrypted; use https://"
                    .into(),
            ));
        }
        _ => {
            return Err(Error::Configuration(
                "the base URL scheme must be https".into(),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Configuration(
            "the base URL must not contain credentials".into(),
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Configuration(
            "the base URL must be scheme://host[:port] only: Kipu paths start at /api and the \
             signature covers the full path"
                .into(),
        ));
    }
    Ok(url)
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        for ok in [
            "https://api.kipuapi.com",
            "https://api.kipuapi.com/",
            "https://10.0.0.5:8443",
            "http://127.0.0.1:8080",
            "http://127.9.9.9:1",
            "http://[::1]:9000",
            "http://localhost:3000",
        ] {
            assert!(validate_base_url(ok).is_ok(), "{ok}");
        }
        let err = validate_base_url("http://api.kipuapi.com")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unencrypted"), "{err}");
        assert!(validate_base_url("http://10.0.0.1").is_err());
        assert!(validate_base_url("http://localhost.evil.com").is_err());
        assert!(validate_base_url("ftp://api.kipuapi.com").is_err());
        assert!(validate_base_url("https://user:pw@api.kipuapi.com").is_err());
        assert!(validate_base_url("https://api.kipuapi.com/api").is_err());
        assert!(validate_base_url("https://api.kipuapi.com?x=1").is_err());
        assert!(validate_base_url("not a url").is_err());
    }
}
