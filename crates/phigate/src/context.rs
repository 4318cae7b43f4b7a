//! What every subcommand may need from the environment, read once here: the binary is the only
//! place that reads environment variables (ARCHITECTURE.md).

use std::path::PathBuf;

use secrecy::SecretString;

/// Global options, resolved.
#[derive(Debug)]
pub struct Context {
    /// Where phigate keeps its SQLite files, keys, certificates and checkpoints.
    pub data_dir: PathBuf,
    /// `PHIGATE_DATABASE_URL`: a PostgreSQL URL shared by several instances; `None` means the
    /// SQLite files in `data_dir`.
    pub database_url: Option<SecretString>,
}

/// Global command-line options.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Data directory (default: $XDG_DATA_HOME/phigate or ~/.local/share/phigate).
    #[arg(long, global = true, env = "PHIGATE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl GlobalArgs {
    /// Resolves the data directory and reads `PHIGATE_DATABASE_URL`.
    pub fn resolve(self) -> anyhow::Result<Context> {
        let data_dir = match self.data_dir {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        let database_url = match std::env::var("PHIGATE_DATABASE_URL") {
            Ok(url) if url.trim().is_empty() => None,
            Ok(url) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(crate::exit::usage(
                        "PHIGATE_DATABASE_URL must be a postgres:// or postgresql:// URL",
                    ));
                }
                Some(SecretString::from(url))
            }
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(crate::exit::usage(
                    "PHIGATE_DATABASE_URL is not valid UTF-8",
                ));
            }
        };
        Ok(Context {
            data_dir,
            database_url,
        })
    }
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("phigate"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/phigate")),
        None => Err(crate::exit::usage(
            "cannot choose a data directory: set --data-dir, PHIGATE_DATA_DIR or HOME",
        )),
    }
}
