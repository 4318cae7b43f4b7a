//! TLS for both listeners: TLS 1.3 only (rustls with aws-lc-rs), ALPN `h2` and `http/1.1`,
//! client certificates required on the mTLS listener, and certificates that reload without a
//! restart (on SIGHUP, and when a file's modification time or size changes).
//!
//! A reload builds complete new configurations first; if anything is wrong (unreadable file,
//! key not matching the certificate, key file readable by others) the old configuration stays
//! in force and a warning names the file and the problem. New connections pick up the new
//! configuration; established ones keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificates come from.
#[derive(Debug, Clone)]
pub struct CertPaths {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM, mode 0600).
    pub key: PathBuf,
    /// CAs for client certificates (PEM).
    pub client_ca: PathBuf,
}

impl CertPaths {
    fn files(&self) -> [&Path; 3] {
        [&self.cert, &self.key, &self.client_ca]
    }
}

/// Why certificates could not be loaded. Messages name the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the combination.
    #[error("TLS configuration refused: {0}")]
    Config(String),
}

fn file_err(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The process-wide crypto provider: aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Both server configurations, swapped as a whole on reload.
#[derive(Debug)]
pub struct TlsConfigs {
    /// The public listener (no client certificates asked for).
    pub public: Arc<ServerConfig>,
    /// The mTLS listener (a client certificate chaining to `client_ca` is required).
    pub mtls: Arc<ServerConfig>,
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, format!("cannot read certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "holds no certificate"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(|e| file_err(path, e.kind().to_string()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(file_err(
                path,
                "private key must not be accessible by group or others (chmod 600)",
            ));
        }
    }
    PrivateKeyDer::from_pem_file(path)
        .map_err(|_| file_err(path, "not a PEM private key (PKCS#8, PKCS#1 or SEC1)"))
}

/// Builds both configurations from the files.
pub fn build(paths: &CertPaths) -> Result<TlsConfigs, TlsError> {
    let provider = provider();
    let chain = load_certs(&paths.cert)?;
    let key = load_key(&paths.key)?;
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| file_err(&paths.key, format!("does not match the certificate: {e}")))?;
    let certified = Arc::new(certified);

    let mut roots = rustls::RootCertStore::empty();
    for ca in load_certs(&paths.client_ca)? {
        roots.add(ca).map_err(|e| {
            file_err(
                &paths.client_ca,
                format!("not a usable CA certificate: {e}"),
            )
        })?;
    }
    // Client certificates are required: `allow_unauthenticated` is never called.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;

    let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut public = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(certified.clone())));
    public.alpn_protocols = alpn.clone();
    let mut mtls = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(Fixed(certified)));
    mtls.alpn_protocols = alpn;
    Ok(TlsConfigs {
        public: Arc::new(public),
        mtls: Arc::new(mtls),
    })
}

#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The current configurations, replaced on reload.
#[derive(Debug)]
pub struct ReloadableTls {
    paths: CertPaths,
    current: RwLock<Arc<TlsConfigs>>,
}

type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(paths: &CertPaths) -> Stamp {
    paths
        .files()
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

impl ReloadableTls {
    /// Loads the files once; an error here refuses the start.
    pub fn load(paths: CertPaths) -> Result<Self, TlsError> {
        let configs = build(&paths)?;
        Ok(Self {
            paths,
            current: RwLock::new(Arc::new(configs)),
        })
    }

    /// The configurations for a new connection.
    pub fn current(&self) -> Arc<TlsConfigs> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rebuilds from the files; on error the old configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let configs = Arc::new(build(&self.paths)?);
        match self.current.write() {
            Ok(mut guard) => *guard = configs,
            Err(poisoned) => *poisoned.into_inner() = configs,
        }
        Ok(())
    }

    /// Reloads on SIGHUP and whenever a file changes (checked every `interval`).
    pub fn spawn_watcher(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut last = stamp(&self.paths);
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            #[cfg(unix)]
            let mut hup =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(s) => Some(s),
                    Err(_) => {
                        tracing::warn!(
                            "cannot listen for SIGHUP; certificates reload on file change only"
                        );
                        None
                    }
                };
            loop {
                #[cfg(unix)]
                let by_signal = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                #[cfg(not(unix))]
                let by_signal = {
                    tick.tick().await;
                    false
                };
                let now = stamp(&self.paths);
                if !by_signal && now == last {
                    continue;
                }
                last = now;
                match self.reload() {
                    Ok(()) => tracing::info!(
                        reason = if by_signal { "sighup" } else { "file change" },
                        "TLS certificates reloaded"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "TLS certificates NOT reloaded; the previous ones stay in force"
                    ),
                }
            }
        })
    }
}

/// The service principal named by a verified client certificate: the first URI SAN of the
/// form `spiffe://<trust_domain>/service/<name>`, with `name` of 1 to 64 characters from
/// `a-z 0-9 - _ .`. Anything else gives `None` and the connection is refused.
pub fn service_from_cert(cert: &CertificateDer<'_>, trust_domain: &str) -> Option<String> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let prefix = format!("spiffe://{trust_domain}/service/");
    ee.valid_uri_names().find_map(|uri| {
        let name = uri.strip_prefix(&prefix)?;
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        ok.then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_cert(uri: &str) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn a_spiffe_service_uri_in_the_trust_domain_names_the_service() {
        let cert = client_cert("spiffe://phigate.local/service/billing-export");
        assert_eq!(
            service_from_cert(&cert, "phigate.local").as_deref(),
            Some("billing-export")
        );
    }

    #[test]
    fn other_trust_domains_and_malformed_names_give_no_principal() {
        let other = client_cert("spiffe://evil.example/service/billing");
        assert_eq!(service_from_cert(&other, "phigate.local"), None);
        let upper = client_cert("spiffe://phigate.local/service/Billing");
        assert_eq!(service_from_cert(&upper, "phigate.local"), None);
        let nested = client_cert("spiffe://phigate.local/service/a/b");
        assert_eq!(service_from_cert(&nested, "phigate.local"), None);
    }
}
