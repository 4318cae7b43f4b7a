//! `phigate audit`: verify, prove and export the tamper-evident audit log, and produce a
//! patient's accounting of disclosures.
//!
//! The log is `<data dir>/audit.db` (SQLite) unless `PHIGATE_DATABASE_URL` points at
//! PostgreSQL. Signing and HMAC keys live in `<data dir>/audit-keys/` (0600, created on first
//! use), sealed under the key-encryption key configured as for the store (`PHIGATE_KEK`,
//! `PHIGATE_KEK_FILE` or PKCS#11; see `audit::keys`); `audit-keys/audit-public.vkey` is the
//! public key to hand to auditors. `verify`, `prove`, `consistency`, `verify-export` never need
//! the private keys or the KEK; `checkpoint`, `export` and `disclosures` do.
//!
//! With PKCS#11 the audit key ring uses its own token objects, labelled
//! `<--pkcs11-key-label>-audit-v<n>`, so it never collides with the store's KEK versions.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use audit::{AuditLog, FileKeys, NoteVerifier, PatientHasher as _, QueryFilter, Storage};
use base64::Engine as _;
use secrecy::ExposeSecret as _;

/// Name of the checkpoint signing key (appears on every signature line).
const KEY_NAME: &str = "phigate-audit";

/// Arguments of `phigate audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    keys: crate::cmd_keys::KeyProviderArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Recompute every leaf, node and checkpoint signature; exit 1 on any damage.
    Verify {
        /// Public key (C2SP verifier key file); default: the data directory's own copy.
        /// Auditors should pass the copy they hold, not trust the one beside the log.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// Sign and store a checkpoint of the current tree; print it (and write it to --out).
    Checkpoint {
        /// Also write the note to this file (for keeping off-box).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the inclusion proof of entry INDEX (JSON).
    Prove {
        /// Entry index.
        index: u64,
        /// Tree size to prove against (default: the largest signed checkpoint).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Print the consistency proof between tree sizes OLD and NEW (JSON).
    Consistency {
        /// Older tree size.
        old: u64,
        /// Newer tree size.
        new: u64,
    },
    /// Export entries as JSONL with a fresh signed checkpoint and an inclusion proof each.
    Export {
        /// Entries committed at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Entries committed before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Event kind (authentication, phi_access, disclosure, model_inference,
        /// config_change, key_lifecycle, break_glass, policy_denied).
        #[arg(long)]
        kind: Option<String>,
        /// Acting principal.
        #[arg(long)]
        principal: Option<String>,
        /// Patient id ("-" reads it from stdin, keeping it out of the process list).
        #[arg(long, value_name = "ID")]
        patient: Option<String>,
        /// Output file (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Verify an export file offline with only the public key.
    VerifyExport {
        /// The JSONL export.
        file: PathBuf,
        /// Public key (C2SP verifier key file); default: the data directory's copy.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// Accounting of disclosures for one patient (45 CFR 164.528).
    Disclosures {
        /// Patient id ("-" reads it from stdin, keeping it out of the process list).
        #[arg(long, value_name = "ID")]
        patient: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Json,
    Csv,
}

fn storage(ctx: &crate::context::Context) -> Storage {
    match &ctx.database_url {
        Some(url) => Storage::Postgres {
            url: url.expose_secret().to_string().into(),
            schema: None,
        },
        None => Storage::Sqlite {
            path: ctx.data_dir.join("audit.db"),
        },
    }
}

fn key_dir(ctx: &crate::context::Context) -> PathBuf {
    ctx.data_dir.join("audit-keys")
}

/// The audit keys, opened (or created on first use) with the configured KEK.
pub(crate) fn load_keys(
    keys: &crate::cmd_keys::KeyProviderArgs,
    ctx: &crate::context::Context,
) -> anyhow::Result<Arc<FileKeys>> {
    // Same KEK source as the store, but PKCS#11 token objects of its own.
    let audit_keys = crate::cmd_keys::KeyProviderArgs {
        kek_file: keys.kek_file.clone(),
        pkcs11_module: keys.pkcs11_module.clone(),
        pkcs11_slot: keys.pkcs11_slot,
        pkcs11_pin_file: keys.pkcs11_pin_file.clone(),
        pkcs11_key_label: format!("{}-audit", keys.pkcs11_key_label),
    };
    let provider = audit_keys.provider()?;
    match FileKeys::open_or_create(&key_dir(ctx), KEY_NAME, provider) {
        Ok(keys) => Ok(Arc::new(keys)),
        Err(
            e @ (audit::KeyError::WrongKek { .. }
            | audit::KeyError::InsecurePermissions { .. }
            | audit::KeyError::ClearKeyLeftOver { .. }),
        ) => Err(crate::exit::usage(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

fn load_verifier(
    ctx: &crate::context::Context,
    path: Option<&Path>,
) -> anyhow::Result<NoteVerifier> {
    let default = key_dir(ctx).join(audit::keys::PUBLIC_KEY_FILE);
    let path = path.unwrap_or(&default);
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the public key {}", path.display()))?;
    NoteVerifier::parse(&text).with_context(|| format!("public key {}", path.display()))
}

async fn open_writable(
    keys: &crate::cmd_keys::KeyProviderArgs,
    ctx: &crate::context::Context,
) -> anyhow::Result<AuditLog> {
    Ok(AuditLog::open(audit::LogConfig::new(storage(ctx)), load_keys(keys, ctx)?).await?)
}

fn read_patient(arg: &str) -> anyhow::Result<phi::Sensitive<String>> {
    let id = if arg == "-" {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the patient id from stdin")?;
        line.trim().to_string()
    } else {
        arg.to_string()
    };
    if id.is_empty() {
        return Err(crate::exit::usage("the patient id is empty"));
    }
    Ok(phi::Sensitive::new(id))
}

fn parse_time(flag: &str, value: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            crate::exit::usage(format!(
                "--{flag} must be an RFC 3339 time such as 2026-01-31T00:00:00Z"
            ))
        })
}

fn b64(hash: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// Runs `phigate audit`.
pub fn run(args: Args, ctx: &crate::context::Context) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args, ctx))
}

async fn run_async(args: Args, ctx: &crate::context::Context) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match args.command {
        Command::Verify { public_key } => {
            let verifier = load_verifier(ctx, public_key.as_deref())?;
            let log = AuditLog::open_read_only(&storage(ctx)).await?;
            let report = audit::verify_log(&log, &verifier).await?;
            writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
            if let Some(d) = &report.damage {
                bail!(
                    "audit log is damaged: {:?} at index {}: {}",
                    d.kind,
                    d.index,
                    d.detail
                );
            }
            eprintln!(
                "audit log intact: {} entries, {} signed checkpoints verified, {} entries after the last checkpoint",
                report.entries, report.checkpoints_verified, report.unsigned_tail
            );
        }
        Command::Checkpoint { out } => {
            let log = open_writable(&args.keys, ctx).await?;
            let note = log.checkpoint_now().await?;
            if let Some(path) = out {
                std::fs::write(&path, &note)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            write!(stdout, "{note}")?;
        }
        Command::Prove { index, size } => {
            let log = AuditLog::open_read_only(&storage(ctx)).await?;
            let notes = log.checkpoint_notes().await?;
            let size = match size.or_else(|| notes.last().map(|(s, _)| *s)) {
                Some(s) => s,
                None => {
                    bail!("no signed checkpoint yet: run `phigate audit checkpoint` or pass --size")
                }
            };
            let proof = log.inclusion_proof(index, size).await?;
            let note = notes
                .iter()
                .find(|(s, _)| *s == size)
                .map(|(_, n)| n.clone());
            let json = serde_json::json!({
                "index": index,
                "tree_size": size,
                "leaf_hash": b64(&proof.leaf_hash),
                "proof": proof.path.iter().map(|h| b64(h)).collect::<Vec<_>>(),
                "root": b64(&proof.root),
                "checkpoint": note,
            });
            writeln!(stdout, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        Command::Consistency { old, new } => {
            let log = AuditLog::open_read_only(&storage(ctx)).await?;
            let (proof, old_root, new_root) = log.consistency_proof(old, new).await?;
            let json = serde_json::json!({
                "old_size": old,
                "new_size": new,
                "old_root": b64(&old_root),
                "new_root": b64(&new_root),
                "proof": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
            });
            writeln!(stdout, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        Command::Export {
            since,
            until,
            kind,
            principal,
            patient,
            out,
        } => {
            if let Some(k) = &kind
                && !audit::EVENT_KINDS.contains(&k.as_str())
            {
                return Err(crate::exit::usage(format!(
                    "--kind must be one of {}",
                    audit::EVENT_KINDS.join(", ")
                )));
            }
            let keys = load_keys(&args.keys, ctx)?;
            let mut filter = QueryFilter {
                since: since
                    .as_deref()
                    .map(|v| parse_time("since", v))
                    .transpose()?,
                until: until
                    .as_deref()
                    .map(|v| parse_time("until", v))
                    .transpose()?,
                kind,
                principal,
                ..Default::default()
            };
            if let Some(p) = patient {
                let id = read_patient(&p)?;
                filter.patient = keys.keyed_hashes_all_keys(id.expose().as_bytes());
            }
            let log = AuditLog::open(audit::LogConfig::new(storage(ctx)), keys).await?;
            let summary = match out {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(
                        std::fs::File::create(&path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    );
                    audit::export(&log, &filter, &mut file).await?
                }
                None => audit::export(&log, &filter, &mut stdout).await?,
            };
            eprintln!(
                "exported {} entries covered by a checkpoint of {} entries",
                summary.entries, summary.tree_size
            );
        }
        Command::VerifyExport { file, public_key } => {
            let verifier = load_verifier(ctx, public_key.as_deref())?;
            let f = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let summary = audit::verify_export(&mut std::io::BufReader::new(f), &verifier)
                .with_context(|| format!("{} is not a valid audit export", file.display()))?;
            writeln!(
                stdout,
                "export verified: {} entries, each proven included in the signed checkpoint of {} entries of {}",
                summary.entries, summary.tree_size, summary.origin
            )?;
        }
        Command::Disclosures { patient, format } => {
            let id = read_patient(&patient)?;
            let keys = load_keys(&args.keys, ctx)?;
            let refs = keys.keyed_hashes_all_keys(id.expose().as_bytes());
            let log = AuditLog::open_read_only(&storage(ctx)).await?;
            let records = audit::disclosures(&log, refs).await?;
            match format {
                Format::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(&records)?)?,
                Format::Csv => audit::disclosures_csv(&records, &mut stdout)?,
            }
        }
    }
    stdout.flush()?;
    Ok(())
}
