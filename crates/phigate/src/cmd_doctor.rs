//! `phigate doctor`: checks this installation against the production hardening checklist of
//! CoCo's security policy and prints PASS or FAIL per item with how to fix it. Exit code 1
//! when any item fails (2 for a bad configuration file, as `serve`).
//!
//! Items: certificates installed, valid and not from the development CA; TLS 1.3 only
//! (probed on the running gateway); database credentials not defaults; rate limiting on;
//! audit log verifies; encryption keys for the store and its backups kept apart from the data;
//! CORS closed or exact. The probe of the running gateway sends no request: it only completes
//! (or fails) a handshake and reads the negotiated protocol version.
//!
//! "Bootstrap secret replaced": passes when an admin is enrolled (the one-time bootstrap
//! secret printed at the first start is then used up and no new one is made); read from the
//! access tables without changing them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use audit::{AuditLog, NoteVerifier};
use secrecy::ExposeSecret as _;

use crate::cmd_keys::KeyProviderArgs;
use crate::cmd_serve::{DEV_KEK_FILE, audit_storage, cert_paths, load_config};
use crate::serve::devca::DEV_CA_COMMON_NAME;
use crate::serve::x509;

/// Arguments of `phigate doctor`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    keys: KeyProviderArgs,
    /// Configuration file (TOML); default: <data dir>/phigate.toml when it exists.
    #[arg(long, env = "PHIGATE_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

struct Item {
    name: &'static str,
    pass: bool,
    said: String,
    fix: &'static str,
}

fn item(name: &'static str, pass: bool, said: impl Into<String>, fix: &'static str) -> Item {
    Item {
        name,
        pass,
        said: said.into(),
        fix,
    }
}

/// Runs `phigate doctor`.
pub fn run(args: Args, ctx: &crate::context::Context) -> anyhow::Result<()> {
    let (config, _) = load_config(args.config.as_ref(), ctx)?;
    let mut items = Vec::new();

    let (paths, dev_pki) = cert_paths(&config, ctx);
    items.push(check_certificate(&paths.cert, dev_pki));
    items.push(item(
        "rate limiting",
        config.rate_limit.enabled,
        if config.rate_limit.enabled {
            format!(
                "on: {} requests/min per principal, {} per address, {} /auth/* per address",
                config.rate_limit.per_principal_per_minute,
                config.rate_limit.per_address_per_minute,
                config.rate_limit.auth_per_minute
            )
        } else {
            "rate_limit.enabled = false".to_string()
        },
        "remove `enabled = false` from [rate_limit]",
    ));
    items.push(check_database(ctx));
    items.push(check_keys(&args.keys, ctx));
    items.push(item(
        "cors",
        true,
        if config.cors.allowed_origins.is_empty() {
            "closed (no origins allowed)".to_string()
        } else {
            format!(
                "{} exact https origin(s)",
                config.cors.allowed_origins.len()
            )
        },
        "",
    ));

    let runtime = crate::cmd_keys::runtime()?;
    items.push(runtime.block_on(check_audit(ctx)));
    items.push(runtime.block_on(check_bootstrap(ctx)));
    items.push(runtime.block_on(probe_tls(config.server.listen)));

    let failed = items.iter().filter(|i| !i.pass).count();
    for i in &items {
        if i.pass {
            println!("PASS  {:<22} {}", i.name, i.said);
        } else {
            println!("FAIL  {:<22} {}", i.name, i.said);
            println!("      {:<22} fix: {}", "", i.fix);
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} checks failed", items.len());
    }
    println!("all {} checks passed", items.len());
    Ok(())
}

fn check_certificate(cert: &Path, dev_pki: bool) -> Item {
    const NAME: &str = "tls certificates";
    const FIX: &str =
        "set tls.cert, tls.key and tls.client_ca to certificates from your organisation's CA";
    if dev_pki {
        return item(
            NAME,
            false,
            "the generated development certificates are in use",
            FIX,
        );
    }
    let pem = match std::fs::read(cert) {
        Ok(b) => b,
        Err(e) => {
            return item(
                NAME,
                false,
                format!("{}: {}", cert.display(), e.kind()),
                FIX,
            );
        }
    };
    use rustls_pki_types::pem::PemObject as _;
    let Some(Ok(der)) = rustls_pki_types::CertificateDer::pem_slice_iter(&pem).next() else {
        return item(
            NAME,
            false,
            format!("{}: no PEM certificate", cert.display()),
            FIX,
        );
    };
    let Some(info) = x509::parse(&der) else {
        return item(
            NAME,
            false,
            format!("{}: not a parseable X.509 certificate", cert.display()),
            FIX,
        );
    };
    if x509::contains(info.issuer, DEV_CA_COMMON_NAME.as_bytes()) {
        return item(
            NAME,
            false,
            "the server certificate was issued by a phigate development CA",
            FIX,
        );
    }
    let now = chrono::Utc::now();
    if now < info.not_before || now > info.not_after {
        return item(
            NAME,
            false,
            format!(
                "the server certificate is not valid now (valid {} to {})",
                info.not_before.date_naive(),
                info.not_after.date_naive()
            ),
            "renew the certificate; the gateway reloads it without a restart (SIGHUP)",
        );
    }
    if info.not_after - now < chrono::Duration::days(14) {
        return item(
            NAME,
            false,
            format!(
                "the server certificate expires on {}",
                info.not_after.date_naive()
            ),
            "renew the certificate; the gateway reloads it without a restart (SIGHUP)",
        );
    }
    item(
        NAME,
        true,
        format!(
            "valid until {}, not from the development CA",
            info.not_after.date_naive()
        ),
        "",
    )
}

/// Well-known default passwords (CoCo's compose file used `coco:coco`).
const DEFAULT_PASSWORDS: &[&str] = &[
    "", "postgres", "password", "admin", "root", "secret", "changeme", "coco", "phigate", "test",
    "123456",
];

fn check_database(ctx: &crate::context::Context) -> Item {
    const NAME: &str = "database credentials";
    let Some(url) = &ctx.database_url else {
        return item(
            NAME,
            true,
            "SQLite files in the data directory (no network credentials)",
            "",
        );
    };
    let url = url.expose_secret();
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", authority),
    };
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let fix = "give each environment its own database role with a long random password (PHIGATE_DATABASE_URL)";
    if DEFAULT_PASSWORDS.contains(&password) || password.eq_ignore_ascii_case(user) {
        return item(
            NAME,
            false,
            "PHIGATE_DATABASE_URL uses an empty or default password",
            fix,
        );
    }
    if user.is_empty() || user == "postgres" {
        return item(
            NAME,
            false,
            "PHIGATE_DATABASE_URL connects as the superuser or no user",
            fix,
        );
    }
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "");
    let tls = url.contains("sslmode=verify-full") || url.contains("sslmode=verify-ca");
    if !local && !tls {
        return item(
            NAME,
            false,
            "PHIGATE_DATABASE_URL reaches a remote server without sslmode=verify-full",
            "add sslmode=verify-full to PHIGATE_DATABASE_URL",
        );
    }
    item(NAME, true, "own role, non-default password", "")
}

fn check_keys(keys: &KeyProviderArgs, ctx: &crate::context::Context) -> Item {
    const NAME: &str = "backup/store encryption";
    const FIX: &str = "configure the KEK outside the data directory: PHIGATE_KEK, PHIGATE_KEK_FILE elsewhere, or PKCS#11";
    let env_kek = std::env::var_os("PHIGATE_KEK").is_some_and(|v| !v.is_empty());
    if keys.pkcs11_module.is_some() {
        return item(
            NAME,
            true,
            "sealed under a PKCS#11 key that never leaves the token",
            "",
        );
    }
    if env_kek {
        return item(NAME, true, "sealed under the KEK from PHIGATE_KEK", "");
    }
    match &keys.kek_file {
        Some(f) if f.starts_with(&ctx.data_dir) || f.ends_with(DEV_KEK_FILE) => item(
            NAME,
            false,
            "the KEK file is inside the data directory: a copy of the data (or a backup next to it) carries its key",
            FIX,
        ),
        Some(_) => item(
            NAME,
            true,
            "sealed under a KEK file kept outside the data directory",
            "",
        ),
        None if ctx.data_dir.join(DEV_KEK_FILE).exists() => item(
            NAME,
            false,
            "the development KEK generated by `phigate serve` is in use",
            FIX,
        ),
        None => item(NAME, false, "no key-encryption key configured", FIX),
    }
}

/// Whether an admin replaced the bootstrap secret (reads `access_admins`; changes nothing).
async fn check_bootstrap(ctx: &crate::context::Context) -> Item {
    const NAME: &str = "bootstrap secret";
    const FIX: &str = "enroll the first admin with the bootstrap secret printed by `phigate serve` (POST /auth/enroll)";
    const QUERY: &str = "SELECT COUNT(*) FROM access_admins";
    let count: Result<i64, sqlx::Error> = match &ctx.database_url {
        Some(url) => match sqlx::PgPool::connect(url.expose_secret()).await {
            Ok(pool) => sqlx::query_scalar(QUERY).fetch_one(&pool).await,
            Err(e) => Err(e),
        },
        None => {
            let path = ctx.data_dir.join("access.db");
            if !path.exists() {
                return item(
                    NAME,
                    false,
                    "no access database yet (the gateway never started here)",
                    FIX,
                );
            }
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .read_only(true);
            match sqlx::SqlitePool::connect_with(options).await {
                Ok(pool) => sqlx::query_scalar(QUERY).fetch_one(&pool).await,
                Err(e) => Err(e),
            }
        }
    };
    match count {
        Ok(n) if n > 0 => item(
            NAME,
            true,
            format!("replaced: {n} admin(s) enrolled, the one-time secret is used up"),
            "",
        ),
        Ok(_) => item(
            NAME,
            false,
            "no admin enrolled: the one-time bootstrap secret is still the way in",
            FIX,
        ),
        Err(_) => item(NAME, false, "cannot read the access database", FIX),
    }
}

async fn check_audit(ctx: &crate::context::Context) -> Item {
    const NAME: &str = "audit log";
    const FIX: &str =
        "run `phigate audit verify` for the damaged entry and restore the log from its replica";
    let key = ctx
        .data_dir
        .join("audit-keys")
        .join(audit::keys::PUBLIC_KEY_FILE);
    let verifier = match std::fs::read_to_string(&key)
        .ok()
        .and_then(|t| NoteVerifier::parse(&t).ok())
    {
        Some(v) => v,
        None => {
            return item(
                NAME,
                false,
                format!("no readable public key at {}", key.display()),
                "start `phigate serve` once (it creates the log and its keys)",
            );
        }
    };
    let log = match AuditLog::open_read_only(&audit_storage(ctx)).await {
        Ok(l) => l,
        Err(e) => return item(NAME, false, format!("cannot open the audit log: {e}"), FIX),
    };
    match audit::verify_log(&log, &verifier).await {
        Ok(r) if r.is_intact() => item(
            NAME,
            true,
            format!(
                "{} entries verify ({} signed checkpoints)",
                r.entries, r.checkpoints_verified
            ),
            "",
        ),
        Ok(r) => item(
            NAME,
            false,
            format!(
                "damage at entry {}",
                r.damage.map(|d| d.index).unwrap_or_default()
            ),
            FIX,
        ),
        Err(e) => item(NAME, false, format!("verification failed: {e}"), FIX),
    }
}

/// Accepts any server certificate: the probe only reads the negotiated protocol version and
/// sends no data, so trusting the certificate does not matter (and the certificate is checked
/// separately above).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn handshake(
    addr: SocketAddr,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<(), String> {
    let provider = crate::serve::tls::provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.kind().to_string())?;
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    tokio::time::timeout(
        std::time::Duration::from_secs(3),
        connector.connect(name, tcp),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())?;
    Ok(())
}

async fn probe_tls(listen: SocketAddr) -> Item {
    const NAME: &str = "tls 1.3 only";
    let addr = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    if let Err(e) = handshake(addr, &rustls::version::TLS13).await {
        return item(
            NAME,
            false,
            format!("cannot complete a TLS 1.3 handshake with the gateway at {addr} ({e})"),
            "start `phigate serve` with this configuration, then run the doctor again",
        );
    }
    match handshake(addr, &rustls::version::TLS12).await {
        Ok(()) => item(
            NAME,
            false,
            format!("{addr} accepted a TLS 1.2 handshake"),
            "serve with phigate's own listener (TLS 1.3 only); remove any TLS-terminating proxy that allows 1.2",
        ),
        Err(_) => item(
            NAME,
            true,
            format!("{addr} speaks TLS 1.3 and refuses TLS 1.2"),
            "",
        ),
    }
}
