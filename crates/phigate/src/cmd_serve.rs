//! `phigate serve`: the governed HTTPS gateway (see [`crate::serve`]).
//!
//! With nothing configured it starts on a fresh machine: SQLite store and audit log in the
//! data directory, a development KEK file (0600) when no key source is configured, a
//! development CA with server and client certificates in `<data dir>/tls/`, and the Kipu
//! simulator on loopback as upstream (SYNTHETIC data, said in the logs and in `/health`).
//! It prints the listening addresses and ready-to-paste curl commands on stdout.
//!
//! Access (API keys, JWT signing keys, admins, Cedar policies, grants) lives in
//! `<data dir>/access.db` (or the PostgreSQL database), under the same KEK as the store. Until
//! an admin is enrolled, each start makes a new one-time admin bootstrap secret (valid 24
//! hours, replacing any unused one) and prints it once on stdout, never in a log line;
//! `POST /auth/enroll` uses it up, and `phigate doctor` fails while no admin is enrolled.
//!
//! With `KIPU_ACCESS_ID`, `KIPU_SECRET_KEY` and `KIPU_APP_ID` set, the upstream is the real
//! Kipu API (`KIPU_BASE_URL`, default `https://api.kipuapi.com`) instead.
//!
//! Configuration comes from `--config FILE` / `PHIGATE_CONFIG`, else `<data dir>/phigate.toml`
//! when it exists; a bad file names the key and refuses to start (exit 2).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use audit::{AuditLog, Storage};
use secrecy::ExposeSecret as _;
use store::{Database, StoreError, TtlPolicy};

use crate::cmd_keys::{KeyProviderArgs, backend, store_error};
use crate::exit::usage;
use crate::serve::config::Config;
use crate::serve::devca::{DevPki, create_private_dir, write_private};
use crate::serve::reqctx::ListenerKind;
use crate::serve::state::{AppState, Upstream};
use crate::serve::tls::{CertPaths, ReloadableTls};

/// Arguments of `phigate serve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    keys: KeyProviderArgs,
    /// Configuration file (TOML); default: <data dir>/phigate.toml when it exists.
    #[arg(long, env = "PHIGATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The file name of the development KEK made when no key source is configured.
pub const DEV_KEK_FILE: &str = "dev-kek.key";

/// Reads the configuration: `--config`, else `<data dir>/phigate.toml`, else defaults.
pub fn load_config(
    explicit: Option<&PathBuf>,
    ctx: &crate::context::Context,
) -> anyhow::Result<(Config, Option<PathBuf>)> {
    if let Some(path) = explicit {
        return Ok((Config::load(path)?, Some(path.clone())));
    }
    let default = ctx.data_dir.join("phigate.toml");
    if default.exists() {
        return Ok((Config::load(&default)?, Some(default)));
    }
    Ok((Config::default(), None))
}

/// The certificate files in force and whether they are the generated development ones.
pub fn cert_paths(config: &Config, ctx: &crate::context::Context) -> (CertPaths, bool) {
    match (&config.tls.cert, &config.tls.key, &config.tls.client_ca) {
        (Some(cert), Some(key), Some(ca)) => (
            CertPaths {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: ca.clone(),
            },
            false,
        ),
        _ => {
            let dev = DevPki::in_dir(&ctx.data_dir);
            (
                CertPaths {
                    cert: dev.server_cert,
                    key: dev.server_key,
                    client_ca: dev.ca_cert,
                },
                true,
            )
        }
    }
}

/// The audit log's storage (the same place `phigate audit` reads).
pub fn audit_storage(ctx: &crate::context::Context) -> Storage {
    match &ctx.database_url {
        Some(url) => Storage::Postgres {
            url: url.expose_secret().to_string().into(),
            schema: None,
        },
        None => Storage::Sqlite {
            path: ctx.data_dir.join("audit.db"),
        },
    }
}

/// Where the access tables live: the data directory's `access.db`, or the PostgreSQL database.
pub fn access_backend(ctx: &crate::context::Context) -> access::Backend {
    match &ctx.database_url {
        Some(url) => access::Backend::Postgres {
            url: url.clone(),
            schema: None,
        },
        None => access::Backend::Sqlite {
            path: ctx.data_dir.join("access.db"),
        },
    }
}

fn env_set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// The upstream named by the environment: the real Kipu API when its credentials are set.
fn kipu_upstream() -> anyhow::Result<Option<Upstream>> {
    let names = ["KIPU_ACCESS_ID", "KIPU_SECRET_KEY", "KIPU_APP_ID"];
    let set: Vec<bool> = names.iter().map(|n| env_set(n)).collect();
    if set.iter().all(|s| !s) {
        return Ok(None);
    }
    if let Some(i) = set.iter().position(|s| !s) {
        return Err(usage(format!(
            "{} is not set: set all of KIPU_ACCESS_ID, KIPU_SECRET_KEY and KIPU_APP_ID for the real Kipu API, or none for the simulator",
            names[i]
        )));
    }
    let base = std::env::var("KIPU_BASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| kipu::config::DEFAULT_BASE_URL.to_string());
    let url =
        kipu::config::validate_base_url(&base).map_err(|e| usage(format!("KIPU_BASE_URL: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| usage("KIPU_BASE_URL has no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    Ok(Some(Upstream::Kipu { host, port }))
}

/// Uses the configured key source, or a development KEK file in the data directory.
fn key_args(
    mut keys: KeyProviderArgs,
    ctx: &crate::context::Context,
) -> anyhow::Result<KeyProviderArgs> {
    let configured =
        env_set("PHIGATE_KEK") || keys.kek_file.is_some() || keys.pkcs11_module.is_some();
    if configured {
        return Ok(keys);
    }
    let path = ctx.data_dir.join(DEV_KEK_FILE);
    if !path.exists() {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| anyhow::anyhow!("no system randomness"))?;
        let encoded = zeroize::Zeroizing::new(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            key.as_ref(),
        ));
        write_private(&path, encoded.as_bytes())?;
    }
    tracing::warn!(
        "no key-encryption key configured: using the DEVELOPMENT key file in the data directory (set PHIGATE_KEK, PHIGATE_KEK_FILE or PKCS#11 for production)"
    );
    keys.kek_file = Some(path);
    Ok(keys)
}

/// `iss` of the gateway's tokens (the same as `phigate keys` uses).
pub const TOKEN_ISSUER: &str = "phigate";
/// `aud` of the gateway's tokens.
pub const TOKEN_AUDIENCE: &str = "phigate-api";
/// How long the printed admin bootstrap secret is valid.
const BOOTSTRAP_TTL_SECS: u64 = 24 * 3600;

/// Runs `phigate serve`.
pub fn run(args: Args, ctx: &crate::context::Context) -> anyhow::Result<()> {
    let (config, config_path) = load_config(args.config.as_ref(), ctx)?;
    let loopback = config.loopback_only();
    if !config.rate_limit.enabled && !loopback {
        return Err(usage(
            "key `rate_limit.enabled`: false is a development-only setting and is refused when a listener is not on a loopback address",
        ));
    }
    create_private_dir(&ctx.data_dir)?;
    let (paths, dev_pki) = cert_paths(&config, ctx);
    if dev_pki {
        if !loopback {
            return Err(usage(
                "key `tls.cert`: the generated development certificates are refused on non-loopback listeners; configure tls.cert, tls.key and tls.client_ca",
            ));
        }
        if DevPki::in_dir(&ctx.data_dir).ensure(&config.tls.trust_domain)? {
            tracing::warn!("generated a DEVELOPMENT CA and certificates in the data directory");
        }
        tracing::warn!(
            "serving with the DEVELOPMENT certificates (loopback only); configure tls.cert, tls.key and tls.client_ca for production"
        );
    }
    let tls = ReloadableTls::load(paths.clone()).map_err(|e| usage(format!("TLS: {e}")))?;
    let keys = key_args(args.keys, ctx)?;
    let upstream = kipu_upstream()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(ServeParts {
        config,
        config_path,
        tls: Arc::new(tls),
        paths,
        dev_pki,
        keys,
        upstream,
        ctx,
    }))
}

struct ServeParts<'a> {
    config: Config,
    config_path: Option<PathBuf>,
    tls: Arc<ReloadableTls>,
    paths: CertPaths,
    dev_pki: bool,
    keys: KeyProviderArgs,
    upstream: Option<Upstream>,
    ctx: &'a crate::context::Context,
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        usage(format!(
            "key `{key}`: cannot listen on {addr}: {}",
            e.kind()
        ))
    })
}

async fn serve(parts: ServeParts<'_>) -> anyhow::Result<()> {
    let ServeParts {
        config,
        config_path,
        tls,
        paths,
        dev_pki,
        keys,
        upstream,
        ctx,
    } = parts;

    // Store: created and its keys initialised on first use.
    let provider = keys.provider()?;
    let db = Database::connect(&backend(ctx)?)
        .await
        .map_err(store_error)?;
    let store = match db.open(provider.clone(), TtlPolicy::default()).await {
        Ok(s) => s,
        Err(StoreError::NotInitialized) => {
            db.init_keys(provider.clone()).await.map_err(store_error)?;
            tracing::info!("initialised the store's key ring");
            db.open(provider, TtlPolicy::default())
                .await
                .map_err(store_error)?
        }
        Err(e) => return Err(store_error(e)),
    };
    let _sweeper = store.spawn_sweeper(Duration::from_secs(60));

    // Audit log.
    // Sealed under the same KEK source as the store (PKCS#11: token objects of their own).
    let audit_keys = crate::cmd_audit::load_keys(&keys, ctx)?;
    let audit = AuditLog::open(
        audit::LogConfig::new(audit_storage(ctx)),
        audit_keys.clone(),
    )
    .await
    .context("cannot open the audit log")?;

    // Access: API keys, JWT signing keys, admins, policies, grants (same database as the store
    // and the audit log: the data directory's SQLite files, or PostgreSQL).
    let mut access_config = access::AccessConfig::new(
        access_backend(ctx),
        keys.provider()?,
        audit.clone(),
        audit_keys.clone(),
        TOKEN_ISSUER,
        TOKEN_AUDIENCE,
    );
    access_config.break_glass_secs = config.access.break_glass_secs;
    let access = access::Access::open(access_config)
        .await
        .map_err(|e| match e {
            access::AccessError::Config(_) | access::AccessError::NewerSchema { .. } => {
                usage(e.to_string())
            }
            other => anyhow::Error::new(other).context("cannot open the access database"),
        })?;
    // Zero configuration: until an admin is enrolled, a one-time bootstrap secret is made at
    // start (replacing any unused one) and printed once, to standard output only.
    let bootstrap = access
        .create_bootstrap_secret(BOOTSTRAP_TTL_SECS)
        .await
        .context("cannot create the admin bootstrap secret")?;
    if bootstrap.is_some() {
        tracing::warn!(
            "no admin is enrolled: a one-time bootstrap secret was printed to standard output (enroll with POST /auth/enroll)"
        );
    }

    // Listeners first: a port in use is reported before the (slower) sync at start.
    let public = bind(config.server.listen, "server.listen").await?;
    let mtls = bind(config.server.mtls_listen, "server.mtls_listen").await?;
    let public_addr = public.local_addr()?;
    let mtls_addr = mtls.local_addr()?;

    // Upstream.
    let mut sim = None;
    let upstream = match upstream {
        Some(u) => u,
        None => {
            let running = kipu_sim::spawn(kipu_sim::SimConfig {
                patients: config.simulator.patients,
                seed: config.simulator.seed,
                addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                ..kipu_sim::SimConfig::default()
            })
            .await
            .map_err(|e| usage(format!("simulator: {e}")))?;
            let u = Upstream::Simulator {
                addr: running.addr(),
                patients: config.simulator.patients,
            };
            sim = Some(running);
            u
        }
    };
    if let Some(running) = &sim {
        sync_simulator(running, &store).await;
    }
    if upstream.is_synthetic() {
        tracing::warn!(
            count = config.simulator.patients,
            "upstream is the built-in Kipu simulator: SYNTHETIC DATA, not a real EHR"
        );
    }
    if !config.rate_limit.enabled {
        tracing::warn!(
            "RATE LIMITS ARE DISABLED (development only; refused on non-loopback listeners)"
        );
    }

    let limits = config
        .rate_limit
        .enabled
        .then(|| Arc::new(crate::serve::ratelimit::Limits::new(&config.rate_limit)));

    let reload_every = Duration::from_secs(config.tls.reload_check_secs);
    let st = Arc::new(AppState {
        config,
        audit: audit.clone(),
        hasher: audit_keys,
        access,
        store,
        limits: limits.clone(),
        metrics: Default::default(),
        upstream: upstream.clone(),
        started: Instant::now(),
        care_teams: Default::default(),
    });
    let app = crate::serve::app(st.clone());

    let mut tasks = vec![
        tls.clone().spawn_watcher(reload_every),
        tokio::spawn(crate::serve::listener::serve(
            public,
            ListenerKind::Public,
            tls.clone(),
            app.clone(),
            st.clone(),
        )),
        tokio::spawn(crate::serve::listener::serve(
            mtls,
            ListenerKind::Mtls,
            tls.clone(),
            app,
            st.clone(),
        )),
    ];
    if let Some(l) = limits {
        tasks.push(l.spawn_janitor());
    }

    print_banner(
        public_addr,
        mtls_addr,
        &upstream,
        dev_pki,
        &paths,
        config_path.as_ref(),
        bootstrap.as_ref(),
        ctx,
    )?;
    tracing::info!(addr = %public_addr, "gateway listening (TLS 1.3)");
    tracing::info!(addr = %mtls_addr, "gateway mTLS listener (client certificates required)");

    shutdown_signal().await;
    tracing::info!("stopping the gateway");
    for t in &tasks {
        t.abort();
    }
    if let Some(s) = sim {
        s.shutdown().await;
    }
    drop(st);
    audit.close().await;
    Ok(())
}

/// The zero-configuration start fills the store from the simulator once, so that the gateway
/// has synthetic patients to serve. A failure is logged and the gateway serves what the store
/// holds (`phigate sync` can be run later).
async fn sync_simulator(sim: &kipu_sim::RunningSim, store: &store::Store) {
    let (access_id, secret, app_id) = sim.credentials();
    let credentials = kipu::Credentials::new(access_id, secret, app_id, kipu::ApiVersion::V3);
    let client = match kipu::ClientConfig::builder(credentials)
        .base_url(sim.base_url())
        .build()
        .map_err(|e| e.to_string())
        .and_then(|c| kipu::Client::new(c).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the simulator client; not syncing at start");
            return;
        }
    };
    let syncer =
        match ehr_sync::Syncer::new(client, store.clone(), ehr_sync::SyncOptions::default()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the sync; not syncing at start");
                return;
            }
        };
    match syncer.run_once().await {
        Ok(report) => {
            let records: u64 = report.resources.iter().map(|r| r.fetched).sum();
            tracing::info!(
                records,
                outcome = if report.is_complete() {
                    "complete"
                } else {
                    "incomplete"
                },
                "synced the simulator's SYNTHETIC data into the store"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "initial sync of the simulator failed; serving what the store holds")
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn url_host(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one line of output per argument; a struct would only rename them"
)]
fn print_banner(
    public: SocketAddr,
    mtls: SocketAddr,
    upstream: &Upstream,
    dev_pki: bool,
    paths: &CertPaths,
    config_path: Option<&PathBuf>,
    bootstrap: Option<&secrecy::SecretString>,
    ctx: &crate::context::Context,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match upstream {
        Upstream::Simulator { patients, .. } => writeln!(
            out,
            "# upstream: SYNTHETIC DATA from the built-in Kipu simulator ({patients} patients), not a real EHR"
        )?,
        Upstream::Kipu { host, .. } => writeln!(out, "# upstream: Kipu API at {host}")?,
    }
    match config_path {
        Some(p) => writeln!(out, "# config: {}", p.display())?,
        None => writeln!(
            out,
            "# config: built-in defaults (no phigate.toml in the data directory)"
        )?,
    }
    writeln!(out, "listening https://{public} (TLS 1.3, bearer tokens)")?;
    writeln!(
        out,
        "listening-mtls https://{mtls} (TLS 1.3, client certificate required)"
    )?;
    let ca = paths.client_ca.display();
    writeln!(out, "# try it:")?;
    writeln!(
        out,
        "curl --cacert '{ca}' https://{}/health",
        url_host(public)
    )?;
    if dev_pki {
        let dev = DevPki::in_dir(&ctx.data_dir);
        writeln!(
            out,
            "curl --cacert '{ca}' --cert '{}' --key '{}' https://{}/health",
            dev.client_cert.display(),
            dev.client_key.display(),
            url_host(mtls)
        )?;
        writeln!(
            out,
            "# DEVELOPMENT certificates from {} (run `phigate doctor` before production)",
            dev.ca_cert.display()
        )?;
    }
    if let Some(secret) = bootstrap {
        writeln!(
            out,
            "# no admin yet: one-time admin bootstrap secret (shown once, valid 24 hours; a restart replaces it):"
        )?;
        writeln!(out, "bootstrap-secret {}", secret.expose_secret())?;
        writeln!(
            out,
            "curl --cacert '{ca}' -H 'Content-Type: application/json' -d '{{\"bootstrap_secret\":\"<secret>\",\"username\":\"admin\",\"password\":\"<12+ characters>\"}}' https://{}/auth/enroll",
            url_host(public)
        )?;
    }
    writeln!(
        out,
        "curl --cacert '{ca}' -H 'X-API-Key: <key from phigate keys create>' -X POST https://{}/auth/token",
        url_host(public)
    )?;
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(())
}
