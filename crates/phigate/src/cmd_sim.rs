//! `phigate sim`: runs the Kipu API simulator on a loopback port until Ctrl-C.
//!
//! It prints the address, the base URL and the credentials it accepts as `export` lines. They
//! are fixed, public, synthetic test credentials and the data is synthetic, so printing them
//! is deliberate. It refuses non-loopback addresses: the synthetic records are shaped like PHI
//! and carry canaries, and must not be served on a network. Request logs carry the method,
//! the endpoint template and the status only (never targets or bodies, which hold canaries).

use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context as _;
use kipu_sim::{ApiVersion, FaultSpec, MAX_PATIENTS, SimConfig, SimError};
use secrecy::ExposeSecret as _;

use crate::exit::usage;

/// Arguments of `phigate sim`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Loopback address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    addr: String,
    /// Patients on the census (1 to 1,000,000).
    #[arg(long, default_value_t = 200, value_name = "N")]
    patients: u64,
    /// Seed of the synthetic data and of fault decisions.
    #[arg(long, default_value_t = 1, value_name = "S")]
    seed: u64,
    /// Faults to inject, e.g. `429=0.1,503=0.05,reset=0.05,truncate=0.02,latency=20ms,retry-after=1`.
    #[arg(long, default_value = "none", value_name = "SPEC")]
    faults: String,
    /// Kipu API version of the accepted credentials (3: HMAC-SHA1, 4: HMAC-SHA256).
    #[arg(long, default_value = "3", value_name = "3|4")]
    api_version: String,
    /// Print every patient canary, one per line, and exit (for shell-based leak checks).
    #[arg(long)]
    list_canaries: bool,
}

/// Runs `phigate sim`.
pub fn run(args: Args, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    let config = config_from(&args)?;
    if args.list_canaries {
        let sim = kipu_sim::Simulator::new(&config).map_err(|e| usage(e.to_string()))?;
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        for canary in sim.canaries() {
            writeln!(out, "{canary}")?;
        }
        out.flush()?;
        return Ok(());
    }
    // One worker per CPU the process may use; pinned to one CPU (as `bench/kipu_fetch.sh`
    // does), a current-thread runtime, which avoids work stealing and cross-thread wake-ups.
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let runtime = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

fn config_from(args: &Args) -> anyhow::Result<SimConfig> {
    let addr: SocketAddr = args
        .addr
        .parse()
        .map_err(|_| usage("--addr must be an IP address and port, such as 127.0.0.1:8080"))?;
    if !addr.ip().is_loopback() {
        return Err(usage(
            "--addr must be a loopback address (127.0.0.1 or ::1): the simulator serves PHI-shaped synthetic data and must not be reachable from the network",
        ));
    }
    if args.patients == 0 || args.patients > MAX_PATIENTS {
        return Err(usage(format!(
            "--patients must be between 1 and {MAX_PATIENTS}"
        )));
    }
    let faults = FaultSpec::parse(&args.faults).map_err(|e| usage(format!("--faults: {e}")))?;
    let api_version: ApiVersion = args
        .api_version
        .parse()
        .map_err(|_| usage("--api-version must be 3 or 4"))?;
    Ok(SimConfig {
        patients: args.patients,
        seed: args.seed,
        faults,
        api_version,
        addr: Some(addr),
        ..SimConfig::default()
    })
}

async fn serve(config: SimConfig) -> anyhow::Result<()> {
    let patients = config.patients;
    let seed = config.seed;
    let version = config.api_version;
    let faults = config.faults.to_string();
    let sim = kipu_sim::spawn(config).await.map_err(|e| match e {
        SimError::Bind { .. } | SimError::Config(_) => usage(e.to_string()),
    })?;
    let (access_id, secret, app_id) = sim.credentials();
    {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        writeln!(
            out,
            "# SYNTHETIC DATA: Kipu API simulator, not a real EHR. These are public test credentials."
        )?;
        writeln!(
            out,
            "# listening on {} ({patients} patients, seed {seed}, API v{version}, faults: {faults})",
            sim.addr()
        )?;
        writeln!(out, "export KIPU_ACCESS_ID={access_id}")?;
        writeln!(out, "export KIPU_SECRET_KEY={}", secret.expose_secret())?;
        writeln!(out, "export KIPU_APP_ID={app_id}")?;
        writeln!(out, "export KIPU_API_VERSION={version}")?;
        writeln!(out, "export KIPU_BASE_URL={}", sim.base_url())?;
        out.flush()?;
    }
    tracing::warn!(addr = %sim.addr(), "serving SYNTHETIC DATA with public test credentials; press Ctrl-C to stop");
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    tracing::info!("stopping the simulator");
    sim.shutdown().await;
    Ok(())
}
