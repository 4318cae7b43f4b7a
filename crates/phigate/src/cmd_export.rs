//! `phigate kipu export`: pull endpoints into flattened files (Parquet, CSV, JSON lines), and
//! `phigate decrypt` for files exported with `--encrypt`.
//!
//! ```text
//! phigate kipu export <ENDPOINT...|all> --out DIR [--format parquet|csv|jsonl]
//!     [--layout relational|wide] [--since YYYY-MM-DD] [--deidentify] [--encrypt]
//!     [--resume | --force] [--quiet]
//! ```
//!
//! # What it writes
//!
//! `DIR/<endpoint>/<table>/part-NNNNN-SSS.<ext>`: one directory per endpoint (its short name,
//! e.g. `patient_vital_signs`), one per table (relational layout: `vital_signs`,
//! `vital_signs__<array>`…; wide layout: one table), and the parts. A part is a unit of
//! progress: a page of the census (`--part-patients` patients, whose records are fetched with
//! `--concurrency` requests in flight and written in census order) for patient-scoped
//! endpoints, `--part-pages` pages for the others. Within a part a table continues in a new
//! file (`-001`, `-002`) when a new column appears (see the `tabular` crate docs).
//! `DIR/_export.json` is the checkpoint; `DIR/_keyring.json` exists with `--encrypt`. At the
//! end a JSON summary (files, rows, bytes, duration) goes to stdout; progress bars (records/s,
//! ETA; endpoint names and counts only, never a value) go to stderr unless `--quiet` or stderr
//! is not a terminal.
//!
//! # Resuming
//!
//! Every file is written to a temporary `.<name>.partial` (mode 0600), fsynced and renamed;
//! the checkpoint is updated (also atomically) only after all files of a part are durable, and
//! records each part's files, the next cursor (census page or list page) and the next row ids.
//! An export that stops (network failure after the retries, disk full, permission denied,
//! Ctrl-C, a crash) leaves the checkpoint of the last complete part; `--resume` removes any
//! file of an endpoint directory that the checkpoint does not list (the debris of the
//! interrupted part) and continues at the next part. Parts and row ids are functions of the
//! cursor, so a resumed export writes the same files as an uninterrupted one (tested).
//! An existing non-empty `DIR` is refused unless `--resume` (same settings required) or
//! `--force` (start over: the endpoint directories being exported are emptied of files the new
//! export does not write; nothing else in `DIR` is touched).
//!
//! # `--since`
//!
//! Passed as `created_at_start_date` or `start_date`, whichever the endpoint documents. A named
//! endpoint without such a parameter is refused; with `all`, those endpoints are exported in
//! full and the summary lists them under `since_not_supported`.
//!
//! # `--deidentify`
//!
//! Safe Harbor (`phi::deid`, the default Kipu policy) is applied to every record before it is
//! flattened, field by field, so a field's rule follows its own name (`insurances[].policy_no`
//! is dropped like `policy_no`) rather than a joined column name. Identifiers are dropped, or
//! pseudonymised with `PHIGATE_PHI_KEY` (hex, at least 32 bytes) when it is set; dates keep
//! the year; ZIP codes keep three digits; free text is scrubbed.
//!
//! # `--encrypt`: decision
//!
//! Each file is a sealed stream (the `sealed` crate's format, AES-256-GCM, chunked and
//! authenticated, documented in `sealed::stream`) named `*.sealed`, under a data key wrapped
//! by an export key-encryption key. That KEK is a fresh version created for this export under
//! the configured root key (`PHIGATE_KEK`, `PHIGATE_KEK_FILE` or PKCS#11, as for the store);
//! its wrapped material is in `DIR/_keyring.json` (useless without the root key). Decrypt with
//! `phigate decrypt FILE...` given the same root key. Parquet modular encryption was not
//! chosen: arrow-rs implements it on `ring`, a second cryptographic provider (the workspace
//! allows only aws-lc-rs), readers support it unevenly, and it has no CSV/JSONL counterpart.
//! Plain files are written mode 0600 in directories 0700 either way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use futures::StreamExt as _;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kipu::endpoints::{self, Endpoint, Method};
use kipu::models::Record;
use kipu::{Client, ClientConfig, Page};
use serde::{Deserialize, Serialize};
use tabular::{Destination, Format, Layout, Sink, TableSet};

use crate::exit::usage;

const CHECKPOINT: &str = "_export.json";
const KEYRING: &str = "_keyring.json";
const CHECKPOINT_FORMAT: &str = "phigate-export-checkpoint/v1";
const KEYRING_FORMAT: &str = "phigate-export-keyring/v1";
const SEALED_KIND: &str = "phigate-export-file";
const SEALED_EXT: &str = ".sealed";
const CENSUS: &str = "get_patients_census";

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FormatArg {
    /// Apache Parquet (zstd).
    Parquet,
    /// CSV with a header line.
    Csv,
    /// JSON lines.
    Jsonl,
}

/// Table layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutArg {
    /// One table per array path with `_id`, `_parent_id`, `_ordinal` (no row multiplication).
    Relational,
    /// kipu-python's layout: one table, arrays exploded into rows.
    Wide,
}

/// Arguments of `phigate kipu export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Endpoints: names (`get_patient_vital_signs` or `patient_vital_signs`), or `all` (every
    /// list endpoint that needs no id or only a patient id).
    #[arg(required = true, value_name = "ENDPOINT")]
    endpoints: Vec<String>,
    /// Output directory (created mode 0700).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// File format.
    #[arg(long, value_enum, default_value_t = FormatArg::Parquet)]
    format: FormatArg,
    /// Table layout.
    #[arg(long, value_enum, default_value_t = LayoutArg::Relational)]
    layout: LayoutArg,
    /// Only records created since this day (endpoints with a date filter).
    #[arg(long, value_name = "YYYY-MM-DD")]
    since: Option<String>,
    /// Apply Safe Harbor de-identification (phi crate, default Kipu policy) to every record.
    #[arg(long)]
    deidentify: bool,
    /// Write sealed (encrypted) files; decrypt with `phigate decrypt`. Needs a root key
    /// (PHIGATE_KEK, PHIGATE_KEK_FILE or PKCS#11).
    #[arg(long)]
    encrypt: bool,
    /// Continue the interrupted export in DIR.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Start over in a non-empty DIR.
    #[arg(long)]
    force: bool,
    /// No progress bars (the summary still goes to stdout).
    #[arg(long)]
    quiet: bool,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    concurrency: usize,
    /// Records per page requested from Kipu (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 100)]
    per: u32,
    /// Patients per part for patient-scoped endpoints (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 500)]
    part_patients: u32,
    /// Pages per part for the other endpoints.
    #[arg(long, value_name = "N", default_value_t = 50)]
    part_pages: u32,
    /// Attempts per request, the first included (retries use backoff with jitter).
    #[arg(long, value_name = "N", default_value_t = 6)]
    attempts: u32,
    /// Memory for buffered rows before a flush (one Parquet row group), in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    memory_mib: usize,
    /// An extra PEM CA bundle to trust (certificate verification cannot be disabled).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Seconds one attempt may take.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    keys: crate::cmd_keys::KeyProviderArgs,
}

/// Arguments of `phigate decrypt`.
#[derive(Debug, clap::Args)]
pub struct DecryptArgs {
    /// Sealed files written by `phigate kipu export --encrypt` (`*.sealed`).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The export's key ring (default: `_keyring.json` in the nearest parent directory).
    #[arg(long, value_name = "FILE")]
    keyring: Option<PathBuf>,
    /// Directory for the decrypted files (default: next to each input, without `.sealed`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace existing output files.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    keys: crate::cmd_keys::KeyProviderArgs,
}

/// The settings an export was started with; `--resume` requires the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Settings {
    endpoints: Vec<String>,
    format: FormatArg,
    layout: LayoutArg,
    since: Option<String>,
    deidentify: bool,
    encrypt: bool,
    per: u32,
    part_patients: u32,
    part_pages: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct FileRecord {
    path: String,
    table: String,
    rows: u64,
    bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EndpointState {
    /// Census page (patient-scoped) or list page where the next part starts (1-based).
    next_cursor: u32,
    parts: u32,
    done: bool,
    records: u64,
    next_row_ids: BTreeMap<String, u64>,
    files: Vec<FileRecord>,
}

impl Default for EndpointState {
    fn default() -> Self {
        Self {
            next_cursor: 1,
            parts: 0,
            done: false,
            records: 0,
            next_row_ids: BTreeMap::new(),
            files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    format: String,
    settings: Settings,
    endpoints: BTreeMap<String, EndpointState>,
}

/// Runs `phigate kipu export`.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if !(1..=64).contains(&args.concurrency) {
        return Err(usage("--concurrency must be between 1 and 64"));
    }
    if !(1..=1000).contains(&args.per) {
        return Err(usage("--per must be between 1 and 1000"));
    }
    if !(1..=1000).contains(&args.part_patients) {
        return Err(usage("--part-patients must be between 1 and 1000"));
    }
    if args.part_pages == 0 || args.attempts == 0 || args.memory_mib == 0 {
        return Err(usage(
            "--part-pages, --attempts and --memory-mib must be at least 1",
        ));
    }
    let (selected, explicit) = select_endpoints(&args.endpoints)?;
    let since = match &args.since {
        None => None,
        Some(day) => {
            let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                .map_err(|_| usage("--since must be a date such as 2024-01-31"))?;
            if explicit && let Some(e) = selected.iter().find(|e| since_param(e).is_none()) {
                return Err(usage(format!(
                    "--since: {} has no date filter; export it without --since",
                    e.name
                )));
            }
            Some(date.format("%Y-%m-%d").to_string())
        }
    };
    let retry = kipu::RetryPolicy {
        max_attempts: args.attempts,
        ..kipu::RetryPolicy::default()
    };
    let config = crate::cmd_kipu::client_config_from_env(
        args.timeout,
        args.ca_file.as_deref(),
        args.concurrency,
        retry,
    )?;
    let settings = Settings {
        endpoints: selected.iter().map(|e| e.name.to_string()).collect(),
        format: args.format,
        layout: args.layout,
        since: since.clone(),
        deidentify: args.deidentify,
        encrypt: args.encrypt,
        per: args.per,
        part_patients: args.part_patients,
        part_pages: args.part_pages,
    };
    let (checkpoint, resumed) = prepare_dir(&args.out, &settings, args.resume, args.force)?;
    let keyring = if args.encrypt {
        Some(export_keyring(&args.keys, &args.out, resumed)?)
    } else {
        None
    };
    let policy = if args.deidentify {
        Some(deid_policy()?)
    } else {
        None
    };
    let job = Job {
        out: args.out.clone(),
        config,
        selected,
        since,
        settings,
        keyring,
        policy,
        concurrency: args.concurrency,
        memory_budget: args.memory_mib << 20,
        quiet: args.quiet,
    };
    let runtime = crate::cmd_keys::runtime()?;
    let mut checkpoint = checkpoint;
    let outcome = runtime.block_on(job.run(&mut checkpoint));
    if let Err(err) = outcome {
        return Err(stopped(err, &args.out, &checkpoint));
    }
    print_summary(
        &args.out,
        &checkpoint,
        &job_flags(&args),
        resumed,
        started.elapsed(),
    )
}

fn job_flags(args: &ExportArgs) -> serde_json::Value {
    serde_json::json!({
        "format": args.format,
        "layout": args.layout,
        "deidentified": args.deidentify,
        "encrypted": args.encrypt,
    })
}

/// Explains an export that stopped: what happened (no values), what is saved, how to go on.
fn stopped(err: anyhow::Error, out: &Path, checkpoint: &Checkpoint) -> anyhow::Error {
    let io_kind = err.chain().find_map(|e| {
        e.downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                e.downcast_ref::<tabular::Error>()
                    .and_then(tabular::Error::io_kind)
            })
    });
    let cause = match io_kind {
        Some(std::io::ErrorKind::StorageFull) => "the disk is full. ",
        Some(std::io::ErrorKind::PermissionDenied) => "permission denied. ",
        Some(std::io::ErrorKind::ReadOnlyFilesystem) => "the file system is read-only. ",
        _ => "",
    };
    let parts: u32 = checkpoint.endpoints.values().map(|s| s.parts).sum();
    err.context(format!(
        "export stopped: {cause}{parts} completed part(s) are recorded in {}; fix the cause and run the same command with --resume to continue",
        out.join(CHECKPOINT).display()
    ))
}

/// The selected endpoints, and whether they were named (not `all`).
fn select_endpoints(names: &[String]) -> anyhow::Result<(Vec<&'static Endpoint>, bool)> {
    let exportable = |e: &&Endpoint| {
        e.method == Method::Get && e.is_list() && e.path_params().all(|p| p == "patient_id")
    };
    if names.iter().any(|n| n == "all") {
        if names.len() > 1 {
            return Err(usage("`all` cannot be combined with endpoint names"));
        }
        return Ok((
            endpoints::ENDPOINTS.iter().filter(exportable).collect(),
            false,
        ));
    }
    let mut out: Vec<&'static Endpoint> = Vec::new();
    for name in names {
        let found = endpoints::ENDPOINTS
            .iter()
            .filter(exportable)
            .find(|e| e.name == name.as_str() || e.short_name() == name.as_str());
        match found {
            Some(e) if !out.contains(&e) => out.push(e),
            Some(_) => {}
            None => {
                let mut valid: Vec<&str> = endpoints::ENDPOINTS
                    .iter()
                    .filter(exportable)
                    .map(|e| e.short_name())
                    .collect();
                valid.sort_unstable();
                // The name is echoed: it is an endpoint name typed by the user, not a record.
                let shown: String = name.chars().take(64).collect();
                return Err(usage(format!(
                    "unknown or non-exportable endpoint {shown:?}; exportable endpoints (list reads needing no id or only a patient id; `get_` prefix optional), or `all`:\n  {}",
                    valid.join("\n  ")
                )));
            }
        }
    }
    Ok((out, true))
}

fn since_param(e: &Endpoint) -> Option<&'static str> {
    ["created_at_start_date", "start_date"]
        .into_iter()
        .find(|p| e.params.contains(p))
}

fn deid_policy() -> anyhow::Result<phi::deid::Policy> {
    let mut policy = phi::deid::Policy::kipu_default(chrono::Utc::now().date_naive());
    match std::env::var("PHIGATE_PHI_KEY") {
        Ok(hex_key) => {
            let bytes = zeroize::Zeroizing::new(
                hex::decode(hex_key.trim()).map_err(|_| usage("PHIGATE_PHI_KEY is not hex"))?,
            );
            let key = phi::PseudonymKey::new(&bytes)
                .map_err(|e| usage(format!("PHIGATE_PHI_KEY: {e}")))?;
            policy = policy.with_key(key);
        }
        Err(std::env::VarError::NotPresent) => {}
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(usage("PHIGATE_PHI_KEY is not valid UTF-8"));
        }
    }
    Ok(policy)
}

// ---------------------------------------------------------------------------------------------
// The output directory and the checkpoint

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

fn prepare_dir(
    out: &Path,
    settings: &Settings,
    resume: bool,
    force: bool,
) -> anyhow::Result<(Checkpoint, bool)> {
    let fresh = Checkpoint {
        format: CHECKPOINT_FORMAT.into(),
        settings: settings.clone(),
        endpoints: BTreeMap::new(),
    };
    match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(out)
                .with_context(|| format!("cannot create the output directory {}", out.display()))?;
            return Ok((fresh, false));
        }
        Err(e) => {
            return Err(usage(format!(
                "--out {}: cannot inspect it: {e}",
                out.display()
            )));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(usage(format!("--out {} is not a directory", out.display())));
        }
        Ok(_) => {}
    }
    let empty = std::fs::read_dir(out)
        .with_context(|| format!("cannot list {}", out.display()))?
        .next()
        .is_none();
    if empty {
        return Ok((fresh, false));
    }
    if force {
        for name in [CHECKPOINT, KEYRING] {
            match std::fs::remove_file(out.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot remove {name}")),
            }
        }
        return Ok((fresh, false));
    }
    if !resume {
        return Err(usage(format!(
            "--out {} exists and is not empty; use --resume to continue an interrupted export there, or --force to start over",
            out.display()
        )));
    }
    let path = out.join(CHECKPOINT);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(usage(format!(
                "--resume: {} has no {CHECKPOINT}, so there is no export to resume there",
                out.display()
            )));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let checkpoint: Checkpoint = serde_json::from_slice(&bytes)
        .ok()
        .filter(|c: &Checkpoint| c.format == CHECKPOINT_FORMAT)
        .ok_or_else(|| {
            usage(format!(
                "--resume: {} is not a phigate export checkpoint",
                path.display()
            ))
        })?;
    if checkpoint.settings != *settings {
        return Err(usage(format!(
            "--resume: the export in {} was started with other settings (endpoints, format, layout, --since, --deidentify, --encrypt, --per or part sizes); repeat them exactly, or use --force to start over",
            out.display()
        )));
    }
    Ok((checkpoint, true))
}

fn save_checkpoint(out: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(checkpoint).map_err(std::io::Error::other)?;
    write_atomically(out, CHECKPOINT, &bytes)
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.partial"));
    let result = (|| {
        let mut file = private_file(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        // The previous version of `name` stays; only the temporary file goes.
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes every file under `dir` that `keep` does not list (relative to `base`).
fn remove_unrecorded(base: &Path, dir: &Path, keep: &BTreeSet<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            remove_unrecorded(base, &path, keep)?;
        } else {
            let rel = path
                .strip_prefix(base)
                .map(|p| p.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if !keep.contains(&rel) {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Encryption

#[derive(Debug, Serialize, Deserialize)]
struct KeyringFile {
    format: String,
    key_id: String,
    versions: Vec<KeyringVersion>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyringVersion {
    version: u32,
    state: String,
    /// The KEK version's material: sealed under the root key (or a token handle), so it is
    /// useless without the root key.
    material: String,
}

fn export_keyring(
    keys: &crate::cmd_keys::KeyProviderArgs,
    out: &Path,
    resumed: bool,
) -> anyhow::Result<sealed::Keyring> {
    let provider = keys.provider()?;
    if resumed {
        return load_keyring(provider, &out.join(KEYRING));
    }
    let keyring = sealed::Keyring::new(provider, Vec::new())?;
    keyring.initialize()?;
    let file = KeyringFile {
        format: KEYRING_FORMAT.into(),
        key_id: keyring.key_id().to_string(),
        versions: keyring
            .records()
            .into_iter()
            .map(|r| KeyringVersion {
                version: r.version,
                state: r.state.as_str().to_string(),
                material: base64::engine::general_purpose::STANDARD.encode(&r.material),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file)?;
    write_atomically(out, KEYRING, &bytes).context("cannot write the export key ring")?;
    Ok(keyring)
}

fn load_keyring(
    provider: Arc<dyn sealed::KeyProvider>,
    path: &Path,
) -> anyhow::Result<sealed::Keyring> {
    let bytes = std::fs::read(path)
        .map_err(|e| usage(format!("cannot read the key ring {}: {e}", path.display())))?;
    let file: KeyringFile = serde_json::from_slice(&bytes)
        .ok()
        .filter(|f: &KeyringFile| f.format == KEYRING_FORMAT)
        .ok_or_else(|| {
            usage(format!(
                "{} is not a phigate export key ring",
                path.display()
            ))
        })?;
    if file.key_id != provider.key_id() {
        return Err(usage(format!(
            "the export was encrypted under root key {} but the configured root key is {}",
            file.key_id,
            provider.key_id()
        )));
    }
    let records = file
        .versions
        .into_iter()
        .map(|v| {
            Ok(sealed::KeyVersionRecord {
                version: v.version,
                state: sealed::KeyState::parse(&v.state)?,
                material: base64::engine::general_purpose::STANDARD
                    .decode(v.material)
                    .map_err(|_| sealed::SealError::Malformed("key ring material is not base64"))?,
            })
        })
        .collect::<Result<Vec<_>, sealed::SealError>>()
        .map_err(|e| usage(format!("{}: {e}", path.display())))?;
    Ok(sealed::Keyring::new(provider, records)?)
}

fn seal_io(e: sealed::SealError) -> std::io::Error {
    match e {
        sealed::SealError::Io(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

/// Files under one endpoint directory: temporary file, fsync, rename, fsync of the directory.
struct ExportDir {
    dir: PathBuf,
    keyring: Option<sealed::Keyring>,
}

enum Inner {
    Plain(BufWriter<std::fs::File>),
    Sealed(sealed::StreamWriter<BufWriter<std::fs::File>>),
}

struct AtomicFile {
    tmp: PathBuf,
    path: PathBuf,
    inner: Option<Inner>,
}

impl Destination for ExportDir {
    fn create(&mut self, name: &str) -> std::io::Result<Box<dyn Sink>> {
        let mut path = self.dir.join(name);
        if self.keyring.is_some() {
            let mut os = path.into_os_string();
            os.push(SEALED_EXT);
            path = PathBuf::from(os);
        }
        let parent = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        create_private_dir(&parent)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{file_name}.partial"));
        let writer = BufWriter::with_capacity(1 << 20, private_file(&tmp)?);
        let inner = match &self.keyring {
            Some(keyring) => Inner::Sealed(
                sealed::StreamWriter::new(keyring, SEALED_KIND, writer).map_err(seal_io)?,
            ),
            None => Inner::Plain(writer),
        };
        Ok(Box::new(AtomicFile {
            tmp,
            path,
            inner: Some(inner),
        }))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.inner.as_mut() {
            Some(Inner::Plain(w)) => w.write(buf),
            Some(Inner::Sealed(s)) => {
                s.write_all(buf).map_err(seal_io)?;
                Ok(buf.len())
            }
            None => Err(std::io::Error::other("file already committed")),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.inner.as_mut() {
            Some(Inner::Plain(w)) => w.flush(),
            // A sealed stream flushes whole chunks itself; the final one on commit.
            _ => Ok(()),
        }
    }
}

impl Sink for AtomicFile {
    fn commit(mut self: Box<Self>) -> std::io::Result<u64> {
        let Some(inner) = self.inner.take() else {
            return Err(std::io::Error::other("file already committed"));
        };
        let result = (|| {
            let writer = match inner {
                Inner::Plain(w) => w,
                Inner::Sealed(s) => s.finish().map_err(seal_io)?,
            };
            let file = writer.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            let bytes = file.metadata()?.len();
            drop(file);
            std::fs::rename(&self.tmp, &self.path)?;
            if let Some(parent) = self.path.parent() {
                sync_dir(parent)?;
            }
            Ok(bytes)
        })();
        if result.is_err() {
            // A full disk or a lost permission mid-commit: leave no temporary file behind.
            let _ = std::fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed (an error stopped the part): remove the temporary file.
        if self.inner.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The export itself

struct Job {
    out: PathBuf,
    config: ClientConfig,
    selected: Vec<&'static Endpoint>,
    since: Option<String>,
    settings: Settings,
    keyring: Option<sealed::Keyring>,
    policy: Option<phi::deid::Policy>,
    concurrency: usize,
    memory_budget: usize,
    quiet: bool,
}

/// A progress bar per endpoint. Messages hold endpoint names and counts only.
struct Progress {
    bar: ProgressBar,
    started: Instant,
    records_at_start: u64,
}

impl Progress {
    fn update(&self, records: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (records - self.records_at_start) as f64 / secs;
        self.bar
            .set_message(format!("{records} records, {rate:.0} records/s"));
    }
}

impl Job {
    async fn run(&self, checkpoint: &mut Checkpoint) -> anyhow::Result<()> {
        let client = Client::new(self.config.clone())?;
        let multi = MultiProgress::with_draw_target(if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        for &endpoint in &self.selected {
            let key = endpoint.short_name().to_string();
            let mut state = checkpoint.endpoints.get(&key).cloned().unwrap_or_default();
            if state.done {
                continue;
            }
            // Debris of an interrupted part (or of an earlier export with --force).
            let keep: BTreeSet<String> = state.files.iter().map(|f| f.path.clone()).collect();
            remove_unrecorded(&self.out, &self.out.join(&key), &keep)
                .with_context(|| format!("cannot clean {}", self.out.join(&key).display()))?;
            let bar = multi.add(ProgressBar::no_length());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>28} [{bar:30}] {pos}/{len} {msg} (ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(key.clone());
            let progress = Progress {
                bar,
                started: Instant::now(),
                records_at_start: state.records,
            };
            while !state.done {
                self.part(&client, endpoint, &key, &mut state, &progress)
                    .await?;
                checkpoint.endpoints.insert(key.clone(), state.clone());
                save_checkpoint(&self.out, checkpoint).context("cannot write the checkpoint")?;
            }
            progress.update(state.records);
            progress.bar.finish();
        }
        Ok(())
    }

    fn table_set(
        &self,
        endpoint: &Endpoint,
        key: &str,
        state: &EndpointState,
    ) -> anyhow::Result<TableSet> {
        let options = tabular::Options {
            layout: match self.settings.layout {
                LayoutArg::Relational => Layout::Relational,
                LayoutArg::Wide => Layout::Wide,
            },
            format: match self.settings.format {
                FormatArg::Parquet => Format::Parquet,
                FormatArg::Csv => Format::Csv,
                FormatArg::Jsonl => Format::Jsonl,
            },
            memory_budget: self.memory_budget,
            file_prefix: format!("part-{:05}", state.parts + 1),
            ..tabular::Options::default()
        };
        let destination = ExportDir {
            dir: self.out.join(key),
            keyring: self.keyring.clone(),
        };
        Ok(
            TableSet::new(endpoint.shape.key(), options, Box::new(destination))?
                .with_row_ids(state.next_row_ids.clone()),
        )
    }

    fn push(&self, set: &mut TableSet, record: Record) -> anyhow::Result<()> {
        let value = serde_json::Value::Object(record.0.into_inner());
        match &self.policy {
            Some(policy) => set.push(&phi::deid::deidentify_json(&value, policy)?)?,
            None => set.push(&value)?,
        }
        Ok(())
    }

    fn query(&self, endpoint: &Endpoint) -> Vec<(String, String)> {
        match (&self.since, since_param(endpoint)) {
            (Some(day), Some(param)) => vec![(param.to_string(), day.clone())],
            _ => Vec::new(),
        }
    }

    /// One part: fetch, flatten, write, commit. Updates `state` only when all files are durable.
    async fn part(
        &self,
        client: &Client,
        endpoint: &'static Endpoint,
        key: &str,
        state: &mut EndpointState,
        progress: &Progress,
    ) -> anyhow::Result<()> {
        let mut set = self.table_set(endpoint, key, state)?;
        let query = self.query(endpoint);
        let pairs: Vec<(&str, &str)> = query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (next_cursor, done) = if endpoint.is_patient_scoped() {
            let census = endpoints::find(CENSUS)
                .context("the census endpoint is missing from the catalogue")?;
            let per = self.settings.part_patients;
            let page: Page<Record> = client
                .raw_list(census, &[], &[])
                .per(per)
                .starting_at(state.next_cursor)
                .page()
                .await
                .context("cannot read the census")?;
            progress.bar.set_length(total_of(&page).unwrap_or(0));
            progress
                .bar
                .set_position(u64::from(state.next_cursor - 1) * u64::from(per));
            let done = is_last(&page, per);
            let ids: Vec<String> = page
                .records
                .iter()
                .map(|r| {
                    r.0.expose()
                        .get("casefile_id")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string)
                        .context("a census record has no casefile_id")
                })
                .collect::<anyhow::Result<_>>()?;
            let per_page = self.settings.per;
            let mut fetches = futures::stream::iter(ids.into_iter().map(|id| {
                let list = client
                    .raw_list(endpoint, &[id.as_str()], &pairs)
                    .per(per_page);
                list.collect_all()
            }))
            .buffered(self.concurrency);
            let mut records = state.records;
            while let Some(result) = fetches.next().await {
                let patient_records =
                    result.with_context(|| format!("cannot read {}", endpoint.name))?;
                records += patient_records.len() as u64;
                for record in patient_records {
                    self.push(&mut set, record)?;
                }
                progress.bar.inc(1);
                progress.update(records);
            }
            (state.next_cursor + 1, done)
        } else {
            let mut page_no = state.next_cursor;
            let mut done = false;
            let mut records = state.records;
            for _ in 0..self.settings.part_pages {
                let page: Page<Record> = client
                    .raw_list(endpoint, &[], &pairs)
                    .per(self.settings.per)
                    .starting_at(page_no)
                    .page()
                    .await
                    .with_context(|| format!("cannot read {}", endpoint.name))?;
                if let Some(total) = total_of(&page) {
                    progress.bar.set_length(total);
                }
                let last = is_last(&page, self.settings.per);
                records += page.records.len() as u64;
                progress.bar.inc(page.records.len() as u64);
                for record in page.records {
                    self.push(&mut set, record)?;
                }
                progress.update(records);
                page_no += 1;
                if last {
                    done = true;
                    break;
                }
            }
            (page_no, done)
        };
        let summary = set.finish()?;
        state.records += summary.records;
        state.next_row_ids = summary.next_row_ids;
        state
            .files
            .extend(summary.files.into_iter().map(|f| FileRecord {
                path: format!(
                    "{key}/{}{}",
                    f.name,
                    if self.keyring.is_some() {
                        SEALED_EXT
                    } else {
                        ""
                    }
                ),
                table: f.table,
                rows: f.rows,
                bytes: f.bytes,
            }));
        state.parts += 1;
        state.next_cursor = next_cursor;
        state.done = done;
        Ok(())
    }
}

fn total_of<T>(page: &Page<T>) -> Option<u64> {
    page.pagination.and_then(|p| p.total_records)
}

/// The last page: empty, short, or the pagination block says so.
fn is_last<T>(page: &Page<T>, per: u32) -> bool {
    let n = page.records.len();
    if n == 0 || n < per as usize {
        return true;
    }
    matches!(page.pagination, Some(p) if matches!((p.current_page, p.total_pages), (Some(c), Some(t)) if c >= t))
}

fn print_summary(
    out: &Path,
    checkpoint: &Checkpoint,
    flags: &serde_json::Value,
    resumed: bool,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let mut endpoints = Vec::new();
    let (mut files, mut rows, mut bytes, mut records) = (0usize, 0u64, 0u64, 0u64);
    let mut since_not_supported = Vec::new();
    for name in &checkpoint.settings.endpoints {
        let Some(endpoint) = endpoints::find(name) else {
            continue;
        };
        let key = endpoint.short_name();
        let state = checkpoint.endpoints.get(key).cloned().unwrap_or_default();
        if checkpoint.settings.since.is_some() && since_param(endpoint).is_none() {
            since_not_supported.push(key);
        }
        let mut tables: BTreeMap<&str, (u64, u64, usize)> = BTreeMap::new();
        for f in &state.files {
            let t = tables.entry(f.table.as_str()).or_default();
            t.0 += f.rows;
            t.1 += f.bytes;
            t.2 += 1;
        }
        files += state.files.len();
        rows += state.files.iter().map(|f| f.rows).sum::<u64>();
        bytes += state.files.iter().map(|f| f.bytes).sum::<u64>();
        records += state.records;
        endpoints.push(serde_json::json!({
            "endpoint": key,
            "records": state.records,
            "parts": state.parts,
            "tables": tables.iter().map(|(name, (r, b, n))| serde_json::json!({
                "table": name, "rows": r, "bytes": b, "files": n,
            })).collect::<Vec<_>>(),
            "files": state.files.iter().map(|f| serde_json::json!({
                "path": f.path, "table": f.table, "rows": f.rows, "bytes": f.bytes,
            })).collect::<Vec<_>>(),
        }));
    }
    let summary = serde_json::json!({
        "out": out.display().to_string(),
        "format": flags["format"],
        "layout": flags["layout"],
        "deidentified": flags["deidentified"],
        "encrypted": flags["encrypted"],
        "resumed": resumed,
        "since_not_supported": since_not_supported,
        "endpoints": endpoints,
        "records": records,
        "files": files,
        "rows": rows,
        "bytes": bytes,
        "duration_ms": elapsed.as_millis() as u64,
    });
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    serde_json::to_writer(&mut lock, &summary)?;
    writeln!(lock)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// phigate decrypt

/// Runs `phigate decrypt`.
pub fn run_decrypt(args: DecryptArgs, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    let provider = args.keys.provider()?;
    if let Some(out) = &args.out {
        create_private_dir(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let mut keyrings: BTreeMap<PathBuf, sealed::Keyring> = BTreeMap::new();
    for input in &args.files {
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(plain_name) = name.strip_suffix(SEALED_EXT).filter(|n| !n.is_empty()) else {
            return Err(usage(format!(
                "{} does not end in {SEALED_EXT}; it was not written by `phigate kipu export --encrypt`",
                input.display()
            )));
        };
        let keyring_path = match &args.keyring {
            Some(p) => p.clone(),
            None => find_keyring(input).ok_or_else(|| {
                usage(format!(
                    "no {KEYRING} found in a parent directory of {}; pass --keyring",
                    input.display()
                ))
            })?,
        };
        if !keyrings.contains_key(&keyring_path) {
            let keyring = load_keyring(provider.clone(), &keyring_path)?;
            keyrings.insert(keyring_path.clone(), keyring);
        }
        let keyring = &keyrings[&keyring_path];
        let dir = match &args.out {
            Some(d) => d.clone(),
            None => input.parent().unwrap_or(Path::new(".")).to_path_buf(),
        };
        let target = dir.join(plain_name);
        if target.exists() && !args.force {
            return Err(usage(format!(
                "{} exists; use --force to replace it",
                target.display()
            )));
        }
        let source = std::fs::File::open(input)
            .map_err(|e| usage(format!("cannot open {}: {e}", input.display())))?;
        let mut reader =
            sealed::StreamReader::new(keyring, SEALED_KIND, std::io::BufReader::new(source))
                .with_context(|| format!("{} cannot be opened", input.display()))?;
        let tmp = dir.join(format!(".{plain_name}.partial"));
        let result = (|| -> anyhow::Result<u64> {
            let mut out = BufWriter::new(private_file(&tmp)?);
            let mut written = 0u64;
            while let Some(chunk) = reader.next_chunk()? {
                out.write_all(&chunk)?;
                written += chunk.len() as u64;
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            // Renamed only once the last chunk authenticated: a truncated or altered file
            // leaves no output.
            std::fs::rename(&tmp, &target)?;
            Ok(written)
        })();
        match result {
            Ok(written) => {
                tracing::info!(bytes = written, "decrypted one file");
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e.context(format!("cannot decrypt {}", input.display())));
            }
        }
    }
    Ok(())
}

fn find_keyring(input: &Path) -> Option<PathBuf> {
    let mut dir = input.parent();
    while let Some(d) = dir {
        let candidate = d.join(KEYRING);
        if candidate.is_file() {
            return Some(candidate);
        }
        dir = d.parent();
    }
    None
}
