//! The gateway's configuration file (TOML). Every key has a secure default, so no file is
//! needed on a development machine; a file that is present is read strictly: an unknown key,
//! a value of the wrong type or a value out of range names the key (and the line) and the
//! gateway refuses to start with exit code 2. Values are never echoed: a configuration file
//! may hold paths or origins an operator does not want in a shared log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::exit::usage;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listeners, limits and timeouts.
    pub server: ServerConfig,
    /// Certificates.
    pub tls: TlsConfig,
    /// Token buckets.
    pub rate_limit: RateLimitConfig,
    /// Cross-origin access (closed unless origins are listed).
    pub cors: CorsConfig,
    /// The built-in simulator used when no Kipu credentials are configured.
    pub simulator: SimulatorConfig,
    /// Clinical endpoints: cost guard and the optional LLM provider.
    pub clinical: super::clinical::ClinicalConfig,
    /// Authorization settings.
    pub access: AccessSettings,
}

/// `[access]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSettings {
    /// How long a break-glass grant lasts, in seconds (1 to 86400; default 3600).
    pub break_glass_secs: i64,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            break_glass_secs: access::DEFAULT_BREAK_GLASS_SECS,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The HTTPS listener for people and programs holding tokens.
    pub listen: SocketAddr,
    /// The listener that requires client certificates (service-to-service mTLS); `""` is not
    /// accepted, leave the key out to keep the default.
    pub mtls_listen: SocketAddr,
    /// Whole-request deadline, in seconds (handler and response scrubbing).
    pub request_timeout_secs: u64,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// `Strict-Transport-Security: max-age`, in seconds.
    pub hsts_max_age_secs: u64,
    /// Most TCP connections served at once (per listener).
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            mtls_listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
            request_timeout_secs: 30,
            body_limit_bytes: 1024 * 1024,
            hsts_max_age_secs: 63_072_000,
            max_connections: 4096,
        }
    }
}

/// `[tls]`. Without `cert` and `key`, a development CA and certificates are generated in the
/// data directory (loopback listeners only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain of the server (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key of the server (mode 0600).
    pub key: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (mTLS listener).
    pub client_ca: Option<PathBuf>,
    /// Trust domain of service identities: a client certificate names its service with the
    /// URI SAN `spiffe://<trust_domain>/service/<name>`.
    pub trust_domain: String,
    /// How often the certificate files are checked for changes, in seconds (SIGHUP reloads
    /// at once).
    pub reload_check_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            client_ca: None,
            trust_domain: "phigate.local".to_string(),
            reload_check_secs: 10,
        }
    }
}

/// `[rate_limit]`: GCRA token buckets (one per source address, one per principal, a
/// stricter one per source address for `/auth/*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Turning limits off is a development-only relaxation: refused unless every listener is
    /// on a loopback address, and warned about at every start.
    pub enabled: bool,
    /// Sustained requests per minute per authenticated principal.
    pub per_principal_per_minute: u32,
    /// Burst per principal.
    pub per_principal_burst: u32,
    /// Sustained requests per minute per source address.
    pub per_address_per_minute: u32,
    /// Burst per source address.
    pub per_address_burst: u32,
    /// Sustained `/auth/*` requests per minute per source address.
    pub auth_per_minute: u32,
    /// Burst of `/auth/*` requests per source address.
    pub auth_burst: u32,
    /// Tokens a write (POST, PUT, PATCH, DELETE) costs; a read costs one.
    pub write_cost: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_principal_per_minute: 600,
            per_principal_burst: 60,
            per_address_per_minute: 1200,
            per_address_burst: 120,
            auth_per_minute: 10,
            auth_burst: 5,
            write_cost: 5,
        }
    }
}

/// `[cors]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact `https://` origins allowed to call the API from a browser. Empty: no CORS
    /// headers at all, so browsers refuse cross-origin reads.
    pub allowed_origins: Vec<String>,
}

/// `[simulator]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Patients on the simulated census.
    pub patients: u64,
    /// Seed of the synthetic data.
    pub seed: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            patients: 50,
            seed: 1,
        }
    }
}

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 256 * 1024;

impl Config {
    /// Reads and validates `path`. Every error is a usage error (exit code 2) naming the key.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| usage(format!("config file {shown}: cannot read it: {}", e.kind())))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(usage(format!(
                "config file {shown}: larger than {MAX_CONFIG_BYTES} bytes"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(format!(
                "config file {shown}: cannot read it as UTF-8 text: {}",
                e.kind()
            ))
        })?;
        Self::parse(&text).map_err(|msg| usage(format!("config file {shown}: {msg}")))
    }

    /// Parses and validates configuration text; the error names the key and the problem.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| describe_toml_error(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        fn positive(key: &str, value: u64) -> Result<(), String> {
            if value == 0 {
                return Err(format!("key `{key}`: must be greater than 0"));
            }
            Ok(())
        }
        let s = &self.server;
        positive("server.request_timeout_secs", s.request_timeout_secs)?;
        if s.request_timeout_secs > 600 {
            return Err("key `server.request_timeout_secs`: must be at most 600".into());
        }
        positive("server.body_limit_bytes", s.body_limit_bytes as u64)?;
        if s.body_limit_bytes > 64 * 1024 * 1024 {
            return Err("key `server.body_limit_bytes`: must be at most 67108864 (64 MiB)".into());
        }
        if s.hsts_max_age_secs < 31_536_000 {
            return Err(
                "key `server.hsts_max_age_secs`: must be at least 31536000 (one year)".into(),
            );
        }
        positive("server.max_connections", s.max_connections as u64)?;
        if s.listen.port() != 0 && s.listen == s.mtls_listen {
            return Err("key `server.mtls_listen`: must differ from `server.listen`".into());
        }
        let t = &self.tls;
        match (&t.cert, &t.key) {
            (Some(_), None) => return Err("key `tls.key`: required when `tls.cert` is set".into()),
            (None, Some(_)) => return Err("key `tls.cert`: required when `tls.key` is set".into()),
            _ => {}
        }
        if t.cert.is_some() && t.client_ca.is_none() {
            return Err(
                "key `tls.client_ca`: required when `tls.cert` is set (the mTLS listener needs the CA that issues service certificates)"
                    .into(),
            );
        }
        if t.cert.is_none() && t.client_ca.is_some() {
            return Err("key `tls.client_ca`: set `tls.cert` and `tls.key` as well, or leave all three out for the development CA".into());
        }
        let domain_ok = !t.trust_domain.is_empty()
            && t.trust_domain.len() <= 253
            && t.trust_domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !domain_ok {
            return Err(
                "key `tls.trust_domain`: must be a lower-case DNS-style name (a-z, 0-9, '.', '-')"
                    .into(),
            );
        }
        positive("tls.reload_check_secs", t.reload_check_secs)?;
        let r = &self.rate_limit;
        for (key, value) in [
            (
                "rate_limit.per_principal_per_minute",
                r.per_principal_per_minute,
            ),
            ("rate_limit.per_principal_burst", r.per_principal_burst),
            (
                "rate_limit.per_address_per_minute",
                r.per_address_per_minute,
            ),
            ("rate_limit.per_address_burst", r.per_address_burst),
            ("rate_limit.auth_per_minute", r.auth_per_minute),
            ("rate_limit.auth_burst", r.auth_burst),
            ("rate_limit.write_cost", r.write_cost),
        ] {
            positive(key, u64::from(value))?;
        }
        if r.write_cost > r.per_principal_burst || r.write_cost > r.per_address_burst {
            return Err("key `rate_limit.write_cost`: must not exceed `per_principal_burst` or `per_address_burst` (a write could never pass)".into());
        }
        for (i, origin) in self.cors.allowed_origins.iter().enumerate() {
            let ok = origin.strip_prefix("https://").is_some_and(|host| {
                !host.is_empty()
                    && !host.contains('/')
                    && !host.contains('*')
                    && host.bytes().all(|b| b.is_ascii_graphic())
            });
            if !ok {
                return Err(format!(
                    "key `cors.allowed_origins[{i}]`: must be an exact https:// origin without path or wildcard"
                ));
            }
        }
        if !(1..=86_400).contains(&self.access.break_glass_secs) {
            return Err("key `access.break_glass_secs`: must be between 1 and 86400".into());
        }
        if self.simulator.patients == 0 || self.simulator.patients > kipu_sim::MAX_PATIENTS {
            return Err(format!(
                "key `simulator.patients`: must be between 1 and {}",
                kipu_sim::MAX_PATIENTS
            ));
        }
        self.clinical.validate()?;
        Ok(())
    }

    /// Whether every listener is on a loopback address.
    pub fn loopback_only(&self) -> bool {
        self.server.listen.ip().is_loopback() && self.server.mtls_listen.ip().is_loopback()
    }
}

/// Turns a TOML error into "line N, key `a.b`: problem" without the source excerpt that the
/// error's `Display` would include (it could show a value).
fn describe_toml_error(text: &str, err: &toml::de::Error) -> String {
    let message = without_values(err.message().trim());
    let Some(span) = err.span() else {
        return message;
    };
    let offset = span.start.min(text.len());
    let line_no = text[..offset].bytes().filter(|b| *b == b'\n').count() + 1;
    match key_at(text, offset) {
        Some(key) => format!("line {line_no}, key `{key}`: {message}"),
        None => format!("line {line_no}: {message}"),
    }
}

/// serde's messages quote the offending value ("invalid type: string \"...\", expected u32");
/// keep the kind of problem and what was expected, drop the value.
fn without_values(message: &str) -> String {
    if let Some((head, expected)) = message.split_once(", expected ") {
        let head = if head.starts_with("unknown field") {
            // names the key, which the operator typed: not a value
            head
        } else if head.starts_with("invalid type") {
            "invalid type"
        } else if head.starts_with("unknown variant") {
            "unknown value"
        } else {
            "invalid value"
        };
        return format!("{head}, expected {expected}");
    }
    if message.contains('"') || message.contains('\'') {
        return "invalid value".to_string();
    }
    message.to_string()
}

/// The dotted key of the `key = value` line containing `offset`, prefixed by the nearest
/// `[table]` header above it. Only key names come out, never values.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        );
    }
    let key = line.split('=').next()?.trim();
    let key_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !key_ok {
        return table;
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_secure_defaults() {
        let c = Config::parse("").unwrap();
        assert!(c.rate_limit.enabled);
        assert!(c.cors.allowed_origins.is_empty());
        assert!(c.loopback_only());
        assert_eq!(c.server.body_limit_bytes, 1024 * 1024);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_table_and_line() {
        let err = Config::parse("[server]\nlisen = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("server.lisen"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_key_and_never_echoes_the_value() {
        let err = Config::parse("[rate_limit]\nwrite_cost = \"SECRET-VALUE-123\"\n").unwrap_err();
        assert!(err.contains("rate_limit.write_cost"), "{err}");
        assert!(!err.contains("SECRET-VALUE-123"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let err = Config::parse("[rate_limit]\nauth_burst = 0\n").unwrap_err();
        assert_eq!(err, "key `rate_limit.auth_burst`: must be greater than 0");
        let err = Config::parse("[server]\nhsts_max_age_secs = 60\n").unwrap_err();
        assert!(err.starts_with("key `server.hsts_max_age_secs`"), "{err}");
    }

    #[test]
    fn cors_wildcards_and_plain_http_origins_are_refused() {
        for bad in [
            "*",
            "http://app.example",
            "https://*.example",
            "https://a.example/x",
        ] {
            let text = format!("[cors]\nallowed_origins = [\"{bad}\"]\n");
            let err = Config::parse(&text).unwrap_err();
            assert!(
                err.starts_with("key `cors.allowed_origins[0]`"),
                "{bad}: {err}"
            );
        }
        let ok = Config::parse("[cors]\nallowed_origins = [\"https://app.example\"]\n").unwrap();
        assert_eq!(
            ok.cors.allowed_origins,
            vec!["https://app.example".to_string()]
        );
    }

    proptest::proptest! {
        #[test]
        fn any_value_of_a_wrong_type_is_never_echoed(value in "[A-Za-z][A-Za-z0-9 _.-]{7,40}") {
            for key in ["write_cost", "auth_burst", "enabled"] {
                let text = format!("[rate_limit]\n{key} = \"{value}\"\n");
                let err = Config::parse(&text).unwrap_err();
                proptest::prop_assert!(!err.contains(value.as_str()), "{}", err);
                let wanted = format!("rate_limit.{key}");
                proptest::prop_assert!(err.contains(&wanted), "{}", err);
            }
        }

        #[test]
        fn arbitrary_text_never_panics_the_parser(text in "\\PC{0,200}") {
            let _ = Config::parse(&text);
        }
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let err = Config::parse("[tls]\ncert = \"/x.pem\"\n").unwrap_err();
        assert!(err.starts_with("key `tls.key`"), "{err}");
    }
}
