//! The phigate command line: one binary for the simulator, the Kipu client and exporter, the
//! gateway, keys, the store and the audit log.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// phigate: get PHI out of the EHR and serve it to exactly who is allowed, with every access proven.
#[derive(Debug, Parser)]
#[command(name = "phigate", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
