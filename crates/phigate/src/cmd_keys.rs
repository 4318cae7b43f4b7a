//! `phigate keys`: placeholder until its issue lands; every invocation fails loudly.

/// Arguments of `phigate keys`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `phigate keys`.
pub fn run(_args: Args, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    anyhow::bail!("phigate keys is not available in this build")
}
