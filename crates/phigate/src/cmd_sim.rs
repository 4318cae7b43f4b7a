//! `phigate sim`: placeholder until its issue lands; every invocation fails loudly.

/// Arguments of `phigate sim`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `phigate sim`.
pub fn run(_args: Args, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    anyhow::bail!("phigate sim is not available in this build")
}
