//! The phigate command line: one binary for the Kipu simulator, the Kipu client and exporter,
//! encryption keys, the encrypted store, the audit log and (later) the gateway.
//!
//! Each subcommand lives in its own `cmd_*` module with an `Args` type and a `run` function;
//! this file only wires them together, sets up logging and maps errors to exit codes:
//! 0 success, 1 runtime failure, 2 bad usage or configuration (clap's convention).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_audit;
mod cmd_doctor;
mod cmd_export;
mod cmd_keys;
mod cmd_kipu;
mod cmd_phi;
mod cmd_serve;
mod cmd_sim;
mod cmd_store;
mod cmd_sync;
mod context;
mod exit;
mod serve;

/// phigate: get PHI out of the EHR and serve it to exactly who is allowed, with every access proven.
#[derive(Debug, Parser)]
#[command(name = "phigate", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: context::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Kipu API simulator (synthetic data, signature-verifying).
    Sim(cmd_sim::Args),
    /// Call the Kipu API: fetch endpoints, debug signatures.
    Kipu(cmd_kipu::Args),
    /// Manage key-encryption keys (init, status, rotate, rewrap, retire).
    Keys(cmd_keys::Args),
    /// Inspect and maintain the encrypted store (stats, invalidate, purge, backup, restore).
    Store(cmd_store::Args),
    /// Verify, prove and export the tamper-evident audit log.
    Audit(cmd_audit::Args),
    /// PHI detection: evaluate the detectors on labelled synthetic notes.
    Phi(cmd_phi::Args),
    /// Run the governed HTTPS gateway (TLS 1.3, mTLS, rate limits, audit of every request).
    Serve(cmd_serve::Args),
    /// Check this installation against the production hardening checklist.
    Doctor(cmd_doctor::Args),
    /// Pull the EHR into the encrypted store, incrementally (once, or every DURATION).
    Sync(cmd_sync::Args),
    /// Decrypt files written by `phigate kipu export --encrypt`.
    Decrypt(cmd_export::DecryptArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return exit::command_line(err),
    };
    init_logging();
    exit::report(dispatch(cli))
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let ctx = cli.global.resolve()?;
    match cli.command {
        Command::Sim(args) => cmd_sim::run(args, &ctx),
        Command::Kipu(args) => cmd_kipu::run(args, &ctx),
        Command::Keys(args) => cmd_keys::run(args, &ctx),
        Command::Store(args) => cmd_store::run(args, &ctx),
        Command::Audit(args) => cmd_audit::run(args, &ctx),
        Command::Phi(args) => cmd_phi::run(args, &ctx),
        Command::Serve(args) => cmd_serve::run(args, &ctx),
        Command::Doctor(args) => cmd_doctor::run(args, &ctx),
        Command::Sync(args) => cmd_sync::run(args, &ctx),
        Command::Decrypt(args) => cmd_export::run_decrypt(args, &ctx),
    }
}

/// Logs go to stderr through phi's scrubbing layer: only allow-listed fields are written, and
/// messages and those fields are scrubbed of detected identifiers. `PHIGATE_LOG` sets the filter
/// (default `info`), `PHIGATE_LOG_FORMAT=json` switches to JSON lines. stdout is reserved for
/// command output so that scripts can parse it. Panics go through phi's scrubbing hook.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    phi::logging::install_panic_hook();
    let (filter, filter_error) = match std::env::var("PHIGATE_LOG") {
        Err(_) => (tracing_subscriber::EnvFilter::new("info"), false),
        Ok(spec) => match tracing_subscriber::EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, false),
            Err(_) => (tracing_subscriber::EnvFilter::new("info"), true),
        },
    };
    let format = match std::env::var("PHIGATE_LOG_FORMAT").as_deref() {
        Ok("json") => phi::logging::LogFormat::Json,
        _ => phi::logging::LogFormat::Text,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(phi::logging::PhiLayer::new(std::io::stderr, format))
        .init();
    if filter_error {
        // The value is not echoed: it came from the environment and could hold anything.
        tracing::warn!("PHIGATE_LOG is not a valid filter directive; using info");
    }
}
