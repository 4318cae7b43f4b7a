//! `phigate store`: inspect and maintain the encrypted store: stats, invalidate, purge,
//! backup, restore.
//!
//! Record ids and patient ids may be PHI, so `invalidate key` and `invalidate patient` read
//! them from standard input rather than from the command line (which `ps` and shell history
//! would keep). Nothing this command prints contains an id or a value.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cmd_keys::{KeyProviderArgs, open_store, runtime};

/// Arguments of `phigate store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    keys: KeyProviderArgs,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Record counts per kind, expired records awaiting purge, records per KEK version, and
    /// the time to live that applies to each kind under the current configuration (`--ttl`).
    Stats {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Delete records (their data keys are destroyed with them).
    Invalidate {
        #[command(subcommand)]
        target: InvalidateTarget,
    },
    /// Delete expired records now and compact the database so deleted rows leave the files.
    Purge,
    /// Write an encrypted, authenticated backup of every live record to FILE (mode 0600).
    Backup {
        /// Destination; refused if it exists unless --overwrite.
        file: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        overwrite: bool,
    },
    /// Restore a backup. The whole file is verified first; records newer in the store are kept
    /// and reported as conflicts unless --force.
    Restore {
        /// Backup file written by `phigate store backup`.
        file: PathBuf,
        /// Overwrite records that are newer in the store than in the backup.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum InvalidateTarget {
    /// One record: its id is read from the first line of standard input.
    Key {
        /// The record's kind.
        kind: String,
    },
    /// Every record of a kind.
    Kind {
        /// The kind, e.g. kipu.response.
        kind: String,
    },
    /// Every record about a patient: the patient id is read from the first line of standard input.
    Patient,
    /// Every record.
    All {
        /// Required confirmation.
        #[arg(long)]
        yes: bool,
    },
}

fn read_stdin_line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    let value = line.trim_end_matches(['\r', '\n']).to_string();
    if value.is_empty() {
        return Err(crate::exit::usage(format!(
            "expected the {what} on the first line of standard input"
        )));
    }
    Ok(value)
}

/// Runs `phigate store`.
pub fn run(args: Args, ctx: &crate::context::Context) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        // Validate everything that needs no store before opening it.
        let stdin_value = match &args.command {
            StoreCommand::Invalidate { target: InvalidateTarget::Key { .. } } => Some(read_stdin_line("record id")?),
            StoreCommand::Invalidate { target: InvalidateTarget::Patient } => Some(read_stdin_line("patient id")?),
            StoreCommand::Invalidate { target: InvalidateTarget::All { yes: false } } => {
                return Err(crate::exit::usage("`invalidate all` deletes every record; confirm with --yes"));
            }
            StoreCommand::Backup { file, overwrite: false } if file.exists() => {
                return Err(crate::exit::usage(format!(
                    "{} exists; choose another name or pass --overwrite",
                    file.display()
                )));
            }
            StoreCommand::Restore { file, .. } if !file.is_file() => {
                return Err(crate::exit::usage(format!("{}: no such backup file", file.display())));
            }
            _ => None,
        };
        let store = open_store(&args.keys, ctx).await?;
        match args.command {
            StoreCommand::Stats { json } => {
                let stats = store.stats().await?;
                // The TTL in force for each kind present, and for cached responses.
                let ttl: std::collections::BTreeMap<&str, Option<u64>> = stats
                    .live_by_kind
                    .keys()
                    .map(String::as_str)
                    .chain([store::CACHED_RESPONSE_KIND])
                    .map(|kind| (kind, ctx.ttl.ttl_for(kind).map(|d| d.as_secs())))
                    .collect();
                if json {
                    let doc = serde_json::json!({
                        "backend": stats.backend,
                        "live_by_kind": stats.live_by_kind,
                        "expired": stats.expired,
                        "by_kek_version": stats.by_kek_version.iter().map(|(v, n)| (v.to_string(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
                        "ttl_seconds": ttl,
                    });
                    println!("{doc}");
                } else {
                    println!("backend: {}", stats.backend);
                    let total: u64 = stats.live_by_kind.values().sum();
                    println!("live records: {total}");
                    for (kind, n) in &stats.live_by_kind {
                        println!("  {kind}: {n}");
                    }
                    println!("expired, awaiting purge: {}", stats.expired);
                    for (v, n) in &stats.by_kek_version {
                        println!("records under KEK version {v}: {n}");
                    }
                    for (kind, secs) in &ttl {
                        match secs {
                            Some(s) => println!("time to live of {kind}: {s} s"),
                            None => println!("time to live of {kind}: none (does not expire)"),
                        }
                    }
                }
            }
            StoreCommand::Invalidate { target } => {
                let n = match target {
                    InvalidateTarget::Key { kind } => {
                        u64::from(store.invalidate_key(&kind, stdin_value.as_deref().unwrap_or_default()).await?)
                    }
                    InvalidateTarget::Kind { kind } => store.invalidate_kind(&kind).await?,
                    InvalidateTarget::Patient => store.invalidate_patient(stdin_value.as_deref().unwrap_or_default()).await?,
                    InvalidateTarget::All { .. } => store.invalidate_all().await?,
                };
                println!("invalidated {n} record(s); their data keys are destroyed");
            }
            StoreCommand::Purge => {
                let n = store.purge_expired().await?;
                store.compact().await?;
                println!("purged {n} expired record(s) and compacted the store");
            }
            StoreCommand::Backup { file, overwrite } => {
                let n = write_backup(&store, &file, overwrite).await?;
                println!("wrote an encrypted backup of {n} record(s) to {}", file.display());
            }
            StoreCommand::Restore { file, force } => {
                let input = std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
                let report = store
                    .restore(std::io::BufReader::new(input), force)
                    .await
                    .with_context(|| format!("backup {} was refused; the store was not changed", file.display()))?;
                println!(
                    "restored {} record(s); {} unchanged; {} expired and skipped",
                    report.restored, report.unchanged, report.expired
                );
                if report.conflicts > 0 {
                    println!(
                        "{} record(s) are newer in the store than in the backup and were kept; pass --force to overwrite them",
                        report.conflicts
                    );
                }
            }
        }
        Ok(())
    })
}

/// Writes to a private temporary file next to `file`, fsyncs, then renames: a crash leaves
/// either no backup or a complete one.
async fn write_backup(store: &store::Store, file: &Path, overwrite: bool) -> anyhow::Result<u64> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .context("the backup path needs a file name")?;
    let tmp = dir.join(format!(".{}.partial", name.to_string_lossy()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let handle = options
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let result = async {
        let mut writer = std::io::BufWriter::new(handle);
        let summary = store.backup(&mut writer).await?;
        writer.flush()?;
        let handle = writer.into_inner().map_err(|e| e.into_error())?;
        handle.sync_all()?;
        if !overwrite && file.exists() {
            anyhow::bail!(
                "{} appeared while the backup was written; not replacing it",
                file.display()
            );
        }
        std::fs::rename(&tmp, file)?;
        Ok(summary.records)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
