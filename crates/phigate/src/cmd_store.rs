//! `phigate store`: placeholder until its issue lands; every invocation fails loudly.

/// Arguments of `phigate store`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `phigate store`.
pub fn run(_args: Args, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    anyhow::bail!("phigate store is not available in this build")
}
