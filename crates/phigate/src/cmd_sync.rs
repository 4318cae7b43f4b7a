//! `phigate sync`: incremental pull of the Kipu EHR into the encrypted store (the data the
//! gateway serves). The engine is the `ehr-sync` crate; this module wires credentials, the
//! store and the schedule.
//!
//! Credentials come from `KIPU_ACCESS_ID`, `KIPU_SECRET_KEY`, `KIPU_APP_ID`, `KIPU_BASE_URL`
//! (default `https://api.kipuapi.com`) and `KIPU_API_VERSION` (3 or 4), as for `phigate kipu`.
//!
//! **Without credentials** sync refuses to run (exit 2) and names the variables: filling a
//! store that may hold real PHI with synthetic patients by default would be worse than
//! stopping. `--simulator` is the explicit opt-in to sync the built-in simulator's synthetic
//! data instead (on a private loopback port, loudly labelled); it is refused when KIPU_*
//! credentials are set, so the two cannot be confused.
//!
//! Output: a per-resource summary on stdout (`--json` for one JSON object per run). It holds
//! counts only; no id or value is ever printed or logged.

use std::time::Duration;

use anyhow::Context as _;
use ehr_sync::{SyncOptions, SyncReport, Syncer};
use kipu::{ApiVersion, ClientConfig, Credentials};
use secrecy::SecretString;

use crate::cmd_keys::{KeyProviderArgs, open_store, runtime};
use crate::exit::usage;

/// Arguments of `phigate sync`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    keys: KeyProviderArgs,
    /// Run once and exit (the default).
    #[arg(long, conflicts_with = "every")]
    once: bool,
    /// Run again DURATION after each run ends (e.g. 90s, 15m, 1h30m) until Ctrl-C.
    #[arg(long, value_name = "DURATION")]
    every: Option<String>,
    /// Read every resource in full this run and remove what the EHR no longer lists.
    #[arg(long)]
    full: bool,
    /// Read incrementally synced resources in full at least this often.
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    reconcile_every: String,
    /// Records per page (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 100)]
    per: u32,
    /// Per-patient listings fetched at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    concurrency: usize,
    /// An extra PEM CA bundle to trust (certificate verification cannot be disabled).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Seconds one API attempt may take.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    /// Print each run's summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Sync the built-in simulator's SYNTHETIC data instead of Kipu (refused when KIPU_*
    /// credentials are set).
    #[arg(long)]
    simulator: bool,
}

const CREDENTIAL_VARS: [&str; 3] = ["KIPU_ACCESS_ID", "KIPU_SECRET_KEY", "KIPU_APP_ID"];

fn env_var(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Err(usage(format!("{name} is set but empty"))),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(usage(format!("{name} is not valid UTF-8"))),
    }
}

/// Where to sync from.
enum Upstream {
    Kipu {
        credentials: Credentials,
        base_url: String,
    },
    Simulator,
}

fn upstream(args: &Args) -> anyhow::Result<Upstream> {
    let set: Vec<&str> = CREDENTIAL_VARS
        .iter()
        .copied()
        .filter(|v| std::env::var_os(v).is_some())
        .collect();
    if args.simulator {
        if !set.is_empty() {
            return Err(usage(
                "--simulator syncs synthetic data; unset KIPU_ACCESS_ID, KIPU_SECRET_KEY and KIPU_APP_ID or drop --simulator",
            ));
        }
        return Ok(Upstream::Simulator);
    }
    if set.is_empty() {
        return Err(usage(
            "no Kipu credentials configured: set KIPU_ACCESS_ID, KIPU_SECRET_KEY and KIPU_APP_ID (and KIPU_BASE_URL) to sync from Kipu, or pass --simulator to sync the built-in simulator's synthetic data",
        ));
    }
    let mut values = Vec::new();
    for name in CREDENTIAL_VARS {
        values.push(env_var(name)?.ok_or_else(|| {
            usage(format!(
                "{name} is not set (the Kipu credentials come from KIPU_ACCESS_ID, KIPU_SECRET_KEY and KIPU_APP_ID)"
            ))
        })?);
    }
    let version = match env_var("KIPU_API_VERSION")? {
        Some(v) => v
            .parse::<ApiVersion>()
            .map_err(|_| usage("KIPU_API_VERSION must be 3 or 4"))?,
        None => ApiVersion::V3,
    };
    let base_url =
        env_var("KIPU_BASE_URL")?.unwrap_or_else(|| kipu::config::DEFAULT_BASE_URL.to_string());
    kipu::config::validate_base_url(&base_url).map_err(|e| usage(format!("KIPU_BASE_URL: {e}")))?;
    let app_id = values.pop().unwrap_or_default();
    let secret = SecretString::from(values.pop().unwrap_or_default());
    let access_id = values.pop().unwrap_or_default();
    Ok(Upstream::Kipu {
        credentials: Credentials::new(access_id, secret, app_id, version),
        base_url,
    })
}

fn client_for(
    credentials: Credentials,
    base_url: String,
    args: &Args,
) -> anyhow::Result<kipu::Client> {
    let mut builder = ClientConfig::builder(credentials)
        .base_url(base_url)
        .request_timeout(Duration::from_secs(args.timeout.max(1)));
    if let Some(path) = &args.ca_file {
        let pem =
            std::fs::read(path).map_err(|e| usage(format!("--ca-file: cannot read it: {e}")))?;
        builder = builder.extra_ca_pem(pem);
    }
    let config = builder.build().map_err(|e| usage(e.to_string()))?;
    Ok(kipu::Client::new(config)?)
}

/// Tells running gateways that care teams may have changed: they start a new access cache
/// epoch at their next request, so a clinician taken off a care team loses access at once (see
/// the `access` crate's `cache` module). A failure is logged; gateways then see the change at
/// the next access change or restart.
async fn note_care_team_change(ctx: &crate::context::Context) {
    if let Err(e) = access::bump_generation(&crate::cmd_serve::access_backend(ctx)).await {
        tracing::warn!(error = %e, "could not tell running gateways that care teams changed");
    }
}

/// Runs `phigate sync`.
pub fn run(args: Args, ctx: &crate::context::Context) -> anyhow::Result<()> {
    let every = args
        .every
        .as_deref()
        .map(|e| ehr_sync::parse_interval(e).map_err(|err| usage(format!("--every: {err}"))))
        .transpose()?;
    let reconcile_every = ehr_sync::parse_interval(&args.reconcile_every)
        .map_err(|err| usage(format!("--reconcile-every: {err}")))?;
    if !(1..=1000).contains(&args.per) {
        return Err(usage("--per must be between 1 and 1000"));
    }
    if args.concurrency == 0 || args.concurrency > 64 {
        return Err(usage("--concurrency must be between 1 and 64"));
    }
    let upstream = upstream(&args)?;
    let options = SyncOptions {
        per_page: args.per,
        concurrency: args.concurrency,
        reconcile_every,
        force_full: args.full,
    };
    let rt = runtime()?;
    rt.block_on(async {
        // The simulator, if asked for, lives as long as this command.
        let (client, _sim) = match upstream {
            Upstream::Kipu {
                credentials,
                base_url,
            } => (client_for(credentials, base_url, &args)?, None),
            Upstream::Simulator => {
                let sim = kipu_sim::spawn(kipu_sim::SimConfig::default())
                    .await
                    .context("cannot start the built-in simulator")?;
                tracing::warn!(
                    "syncing the built-in simulator: SYNTHETIC DATA, not a real EHR, is being written to the store"
                );
                let (access_id, secret, app_id) = sim.credentials();
                let credentials = Credentials::new(access_id, secret, app_id, ApiVersion::V3);
                (client_for(credentials, sim.base_url(), &args)?, Some(sim))
            }
        };
        let store = open_store(&args.keys, ctx).await?;
        let syncer = Syncer::new(client, store, options)?;
        let Some(every) = every else {
            let result = syncer.run_once().await;
            note_care_team_change(ctx).await;
            let report = result?;
            print_report(&report, args.json)?;
            return finished(&report);
        };
        loop {
            tokio::select! {
                result = async {
                    let result = syncer.run_once().await;
                    note_care_team_change(ctx).await;
                    result
                } => match result {
                    Ok(report) => {
                        print_report(&report, args.json)?;
                        if !report.is_complete() {
                            tracing::warn!("sync run incomplete; the next run repeats the failed resources");
                        }
                    }
                    // Logged, not fatal: the next tick retries (errors carry no PHI).
                    Err(e) => tracing::error!("sync run failed; retrying at the next interval: {e}"),
                },
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("interrupted during a run; the next sync resumes where it stopped");
                    return Ok(());
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("stopping");
                    return Ok(());
                }
            }
        }
    })
}

fn finished(report: &SyncReport) -> anyhow::Result<()> {
    if report.is_complete() {
        return Ok(());
    }
    let failed: Vec<&str> = report
        .resources
        .iter()
        .filter(|r| r.error.is_some())
        .map(|r| r.resource)
        .collect();
    anyhow::bail!(
        "sync incomplete: {} failed; rerun to resume (their cursors were not advanced)",
        failed.join(", ")
    )
}

fn print_report(report: &SyncReport, json: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        serde_json::to_writer(&mut out, report)?;
        writeln!(out)?;
        out.flush()?;
        return Ok(());
    }
    writeln!(
        out,
        "soft-deleted patients: {} ({} new, {} restored); records purged: {}",
        report.tombstones, report.tombstoned, report.tombstones_lifted, report.purged
    )?;
    writeln!(
        out,
        "{:<13} {:<11} {:>8} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "resource",
        "mode",
        "fetched",
        "new",
        "updated",
        "unchanged",
        "removed",
        "skipped",
        "invalid"
    )?;
    for r in &report.resources {
        let mode = match r.mode {
            ehr_sync::PassMode::Full => "full",
            ehr_sync::PassMode::Incremental => "incremental",
        };
        writeln!(
            out,
            "{:<13} {:<11} {:>8} {:>7} {:>8} {:>9} {:>8} {:>8} {:>8}{}",
            r.resource,
            mode,
            r.fetched,
            r.new,
            r.updated,
            r.unchanged,
            r.removed,
            r.skipped_deleted,
            r.invalid,
            r.error
                .as_deref()
                .map(|e| format!("  FAILED: {e}"))
                .unwrap_or_default()
        )?;
    }
    out.flush()?;
    Ok(())
}
