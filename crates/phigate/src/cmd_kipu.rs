//! `phigate kipu`: placeholder until its issue lands; every invocation fails loudly.

/// Arguments of `phigate kipu`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `phigate kipu`.
pub fn run(_args: Args, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    anyhow::bail!("phigate kipu is not available in this build")
}
