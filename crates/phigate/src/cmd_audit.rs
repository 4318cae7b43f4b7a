//! `phigate audit`: placeholder until its issue lands; every invocation fails loudly.

/// Arguments of `phigate audit`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `phigate audit`.
pub fn run(_args: Args, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    anyhow::bail!("phigate audit is not available in this build")
}
