//! `phigate phi`: placeholder until its issue lands; every invocation fails loudly.

/// Arguments of `phigate phi`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `phigate phi`.
pub fn run(_args: Args, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    anyhow::bail!("phigate phi is not available in this build")
}
