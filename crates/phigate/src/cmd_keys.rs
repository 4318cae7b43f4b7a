//! `phigate keys`: key-encryption keys (KEKs) of the encrypted store: init, status, rotate,
//! rewrap, retire. Also home of the key-provider and database options shared with
//! `phigate store`.
//!
//! API keys of the gateway (`access` crate) live here too: `create`, `list`, `revoke` and
//! `rotate-api-key` (named so, because `rotate` rotates the KEK). An API key is printed once
//! by `create` and `rotate-api-key` and never again; the database keeps only a keyed hash.
//! Each of these commands is written to the audit log as a key lifecycle event.
//!
//! Secrets are never taken as command-line values (they would show in `ps` and shell history):
//! the root KEK comes from `PHIGATE_KEK` or a key file, the PKCS#11 PIN from `PHIGATE_PKCS11_PIN`
//! or a PIN file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use sealed::{KeyProvider, Pkcs11Config, Pkcs11KeyProvider, SealError, SoftwareKeyProvider};
use secrecy::SecretString;
use store::{BackendConfig, Database, KeyStatus, Store, StoreError, TtlPolicy};

/// How to find the KEK.
#[derive(Debug, clap::Args)]
pub struct KeyProviderArgs {
    /// File holding the root KEK (32 raw bytes or their base64); must not be readable by group
    /// or others. The alternative `PHIGATE_KEK` takes the base64 directly from the environment.
    #[arg(long, env = "PHIGATE_KEK_FILE", value_name = "FILE", global = true)]
    pub kek_file: Option<PathBuf>,
    /// PKCS#11 module (for SoftHSM2: /usr/lib/softhsm/libsofthsm2.so). The KEK then never
    /// leaves the token.
    #[arg(
        long,
        env = "PHIGATE_PKCS11_MODULE",
        value_name = "PATH",
        global = true
    )]
    pub pkcs11_module: Option<PathBuf>,
    /// PKCS#11 slot id of the token.
    #[arg(long, env = "PHIGATE_PKCS11_SLOT", value_name = "SLOT", global = true)]
    pub pkcs11_slot: Option<u64>,
    /// File holding the token's user PIN (alternative: `PHIGATE_PKCS11_PIN`).
    #[arg(
        long,
        env = "PHIGATE_PKCS11_PIN_FILE",
        value_name = "FILE",
        global = true
    )]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// Label prefix of the KEK objects on the token (version n is `<prefix>-v<n>`).
    #[arg(
        long,
        env = "PHIGATE_PKCS11_KEY_LABEL",
        default_value = "phigate-kek",
        global = true
    )]
    pub pkcs11_key_label: String,
}

const NO_KEY_HELP: &str = "no key-encryption key configured: set PHIGATE_KEK to the base64 of 32 random bytes \
(e.g. `openssl rand -base64 32`), or PHIGATE_KEK_FILE to a chmod-600 key file, or PHIGATE_PKCS11_MODULE with \
--pkcs11-slot and PHIGATE_PKCS11_PIN / PHIGATE_PKCS11_PIN_FILE";

fn env_secret(name: &str) -> anyhow::Result<Option<SecretString>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(SecretString::from(v))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(crate::exit::usage(format!("{name} is not valid UTF-8")))
        }
    }
}

fn seal_config_error(source: &str, e: SealError) -> anyhow::Error {
    crate::exit::usage(format!("{source}: {e}"))
}

impl KeyProviderArgs {
    /// Builds the configured provider; exactly one source must be configured.
    pub fn provider(&self) -> anyhow::Result<Arc<dyn KeyProvider>> {
        let env_kek = env_secret("PHIGATE_KEK")?;
        let sources = [
            env_kek.is_some(),
            self.kek_file.is_some(),
            self.pkcs11_module.is_some(),
        ];
        match sources.iter().filter(|s| **s).count() {
            0 => return Err(crate::exit::usage(NO_KEY_HELP)),
            1 => {}
            _ => {
                return Err(crate::exit::usage(
                    "several key sources configured (PHIGATE_KEK, PHIGATE_KEK_FILE, PHIGATE_PKCS11_MODULE); configure exactly one",
                ));
            }
        }
        if let Some(kek) = env_kek {
            let provider = SoftwareKeyProvider::from_base64(&kek)
                .map_err(|e| seal_config_error("PHIGATE_KEK", e))?;
            return Ok(Arc::new(provider));
        }
        if let Some(path) = &self.kek_file {
            let provider = SoftwareKeyProvider::from_key_file(path)
                .map_err(|e| seal_config_error("key file", e))?;
            return Ok(Arc::new(provider));
        }
        let module = self.pkcs11_module.clone().unwrap_or_default();
        let slot = self.pkcs11_slot.ok_or_else(|| {
            crate::exit::usage("PKCS#11 needs a slot: set --pkcs11-slot or PHIGATE_PKCS11_SLOT")
        })?;
        let pin = match (env_secret("PHIGATE_PKCS11_PIN")?, &self.pkcs11_pin_file) {
            (Some(pin), None) => pin,
            (None, Some(file)) => read_pin_file(file)?,
            (Some(_), Some(_)) => {
                return Err(crate::exit::usage(
                    "set only one of PHIGATE_PKCS11_PIN and PHIGATE_PKCS11_PIN_FILE",
                ));
            }
            (None, None) => {
                return Err(crate::exit::usage(
                    "PKCS#11 needs the user PIN: set PHIGATE_PKCS11_PIN or PHIGATE_PKCS11_PIN_FILE",
                ));
            }
        };
        let config = Pkcs11Config {
            module,
            slot,
            pin,
            label_prefix: self.pkcs11_key_label.clone(),
        };
        let provider =
            Pkcs11KeyProvider::open(&config).map_err(|e| seal_config_error("PKCS#11", e))?;
        Ok(Arc::new(provider))
    }
}

fn read_pin_file(path: &Path) -> anyhow::Result<SecretString> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(|e| {
            crate::exit::usage(format!("PIN file {}: cannot read it: {e}", path.display()))
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(crate::exit::usage(format!(
                "PIN file {} has permissions {mode:03o}, readable by group or others; run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::exit::usage(format!("PIN file {}: cannot read it: {e}", path.display()))
    })?;
    Ok(SecretString::from(
        text.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

/// The store's database: PostgreSQL when `PHIGATE_DATABASE_URL` is set, else `store.db` in the
/// data directory (created 0700).
pub fn backend(ctx: &crate::context::Context) -> anyhow::Result<BackendConfig> {
    if let Some(url) = &ctx.database_url {
        return Ok(BackendConfig::Postgres {
            url: url.clone(),
            schema: None,
        });
    }
    create_private_dir(&ctx.data_dir)?;
    Ok(BackendConfig::Sqlite {
        path: ctx.data_dir.join("store.db"),
    })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    Ok(())
}

/// A Tokio runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Maps store errors caused by configuration to exit code 2.
pub fn store_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::KeyMismatch { .. }
        | StoreError::NotInitialized
        | StoreError::InsecureFile { .. }
        | StoreError::NewerSchema { .. } => crate::exit::usage(e.to_string()),
        other => anyhow::Error::new(other),
    }
}

/// Opens the store with the configured key.
pub async fn open_store(
    keys: &KeyProviderArgs,
    ctx: &crate::context::Context,
    ttl: TtlPolicy,
) -> anyhow::Result<Store> {
    let provider = keys.provider()?;
    let db = Database::connect(&backend(ctx)?)
        .await
        .map_err(store_error)?;
    db.open(provider, ttl).await.map_err(store_error)
}

/// Arguments of `phigate keys`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    keys: KeyProviderArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Create KEK version 1 and the store's index key (once per store).
    Init,
    /// Show the key ring: versions, states and how many data keys each wraps.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Create a new KEK version and make it active (existing data stays readable).
    Rotate,
    /// Re-wrap every data key under the active KEK version (payloads are not touched).
    Rewrap,
    /// Destroy a KEK version. Refused while it is active or still wraps data keys.
    Retire {
        /// The version to retire.
        #[arg(value_name = "VERSION")]
        kek_version: u32,
    },
    /// Create a gateway API key for a service; the key is printed once.
    Create {
        /// Service the key belongs to (a-z, 0-9, '.', '_', '-').
        #[arg(long, value_name = "NAME")]
        service: String,
        /// Role the key carries (repeatable): clinician, care_coordinator, analyst, auditor,
        /// service. Admin is refused: admin access needs a password and a TOTP code.
        #[arg(long = "role", value_name = "ROLE", required = true)]
        roles: Vec<String>,
        /// Lifetime, e.g. 90d, 12h, 30m, 3600s (default: until revoked).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// List gateway API keys (never their secrets).
    List {
        /// Only this service's keys.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a gateway API key; every instance refuses it from the next request on.
    Revoke {
        /// The key id (the part after `phg_` and before the next `_`).
        #[arg(value_name = "KEY_ID")]
        id: String,
    },
    /// Replace a gateway API key: prints the new key once; the old one keeps working for the
    /// overlap window, then expires.
    RotateApiKey {
        /// The key id to replace.
        #[arg(value_name = "KEY_ID")]
        id: String,
        /// How long the old key stays valid, e.g. 24h (default 24h).
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        overlap: String,
        /// Lifetime of the new key (default: the old key's lifetime, or until revoked).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
}

/// Runs `phigate keys`.
pub fn run(args: Args, ctx: &crate::context::Context) -> anyhow::Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        match args.command {
            KeysCommand::Init => {
                let provider = args.keys.provider()?;
                let db = Database::connect(&backend(ctx)?).await.map_err(store_error)?;
                let status = db.init_keys(provider).await.map_err(|e| match e {
                    StoreError::Seal(SealError::AlreadyInitialized(v)) => crate::exit::usage(format!(
                        "the store already has keys (active KEK version {v}); use `phigate keys rotate` for a new version"
                    )),
                    other => store_error(other),
                })?;
                println!("initialised the key ring {} ({}) in the {} store", status.key_id, status.provider, db.backend_name());
                print_status(&status, false);
            }
            KeysCommand::Status { json } => {
                let store = open_store(&args.keys, ctx, TtlPolicy::default()).await?;
                print_status(&store.key_status().await?, json);
            }
            KeysCommand::Rotate => {
                let store = open_store(&args.keys, ctx, TtlPolicy::default()).await?;
                let version = store.rotate_kek().await?;
                println!("KEK version {version} is now active; run `phigate keys rewrap` to move existing data keys to it");
            }
            KeysCommand::Rewrap => {
                let store = open_store(&args.keys, ctx, TtlPolicy::default()).await?;
                let n = store.rewrap_all().await?;
                let active = store.key_status().await?.versions.iter().rev().find(|v| v.state == sealed::KeyState::Active).map(|v| v.version);
                println!("re-wrapped {n} data key(s) under KEK version {}", active.unwrap_or_default());
            }
            KeysCommand::Retire { kek_version: version } => {
                let store = open_store(&args.keys, ctx, TtlPolicy::default()).await?;
                store.retire_kek(version).await?;
                println!("KEK version {version} retired and destroyed; backups taken under it can no longer be restored");
            }
            KeysCommand::Create { service, roles, expires } => {
                let roles = roles
                    .iter()
                    .map(|r| access::Role::parse(r).map_err(|e| crate::exit::usage(format!("--role: {e}"))))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let expires = expires.as_deref().map(|d| parse_duration("--expires", d)).transpose()?;
                let access = open_access(&args.keys, ctx).await?;
                let key = access
                    .create_api_key(CLI_ACTOR, &service, &roles, expires)
                    .await
                    .map_err(access_error)?;
                print_new_key(&key);
            }
            KeysCommand::List { service, json } => {
                let access = open_access(&args.keys, ctx).await?;
                let keys = access.list_api_keys(service.as_deref()).await.map_err(access_error)?;
                print_api_keys(&keys, json);
            }
            KeysCommand::Revoke { id } => {
                let access = open_access(&args.keys, ctx).await?;
                access.revoke_api_key(CLI_ACTOR, &id).await.map_err(access_error)?;
                println!("API key {id} revoked; every gateway instance refuses it from the next request on");
            }
            KeysCommand::RotateApiKey { id, overlap, expires } => {
                let overlap = parse_duration("--overlap", &overlap)?;
                let expires = expires.as_deref().map(|d| parse_duration("--expires", d)).transpose()?;
                let access = open_access(&args.keys, ctx).await?;
                let key = access
                    .rotate_api_key(CLI_ACTOR, &id, overlap, expires)
                    .await
                    .map_err(access_error)?;
                print_new_key(&key);
                println!("the old key {id} stays valid for {overlap} more second(s)");
            }
        }
        Ok(())
    })
}

fn print_status(status: &KeyStatus, json: bool) {
    if json {
        let versions: Vec<_> = status
            .versions
            .iter()
            .map(|v| serde_json::json!({"version": v.version, "state": v.state.as_str(), "wraps": v.wraps}))
            .collect();
        let doc = serde_json::json!({"key_id": status.key_id, "provider": status.provider, "versions": versions});
        println!("{doc}");
        return;
    }
    println!("key id:   {}", status.key_id);
    println!("provider: {}", status.provider);
    println!("{:>8}  {:<13}  {:>10}", "version", "state", "data keys");
    for v in &status.versions {
        println!(
            "{:>8}  {:<13}  {:>10}",
            v.version,
            v.state.as_str(),
            v.wraps
        );
    }
}

/// Who the audit log names for API-key commands run from the command line.
const CLI_ACTOR: &str = "cli:local";
/// Name of the audit checkpoint key (the same as `phigate audit` uses).
const AUDIT_KEY_NAME: &str = "phigate-audit";

/// Parses `90d`, `12h`, `30m`, `45s` or a bare number of seconds.
fn parse_duration(flag: &str, text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let n: u64 = digits.parse().unwrap_or(0);
    match n.checked_mul(factor) {
        Some(secs) if secs > 0 => Ok(secs),
        _ => Err(crate::exit::usage(format!(
            "{flag}: expected a positive duration such as 90d, 12h, 30m or 3600s"
        ))),
    }
}

/// Opens the audit log (`<data dir>/audit.db` or PostgreSQL) and the access database
/// (`<data dir>/access.db` or PostgreSQL) with the configured KEK.
async fn open_access(
    keys: &KeyProviderArgs,
    ctx: &crate::context::Context,
) -> anyhow::Result<access::Access> {
    let provider = keys.provider()?;
    let (storage, backend) = match &ctx.database_url {
        Some(url) => (
            audit::Storage::Postgres {
                url: url.clone(),
                schema: None,
            },
            access::Backend::Postgres {
                url: url.clone(),
                schema: None,
            },
        ),
        None => {
            create_private_dir(&ctx.data_dir)?;
            (
                audit::Storage::Sqlite {
                    path: ctx.data_dir.join("audit.db"),
                },
                access::Backend::Sqlite {
                    path: ctx.data_dir.join("access.db"),
                },
            )
        }
    };
    let audit_keys = Arc::new(
        audit::FileKeys::open_or_create(&ctx.data_dir.join("audit-keys"), AUDIT_KEY_NAME)
            .map_err(|e| crate::exit::usage(format!("audit keys: {e}")))?,
    );
    let log = audit::AuditLog::open(audit::LogConfig::new(storage), audit_keys.clone())
        .await
        .context("cannot open the audit log")?;
    let config =
        access::AccessConfig::new(backend, provider, log, audit_keys, "phigate", "phigate-api");
    access::Access::open(config).await.map_err(access_error)
}

/// Maps access errors caused by the invocation or configuration to exit code 2.
fn access_error(e: access::AccessError) -> anyhow::Error {
    use access::AccessError as E;
    match e {
        E::InvalidArgument(_)
        | E::NotFound(_)
        | E::Conflict(_)
        | E::Config(_)
        | E::NewerSchema { .. }
        | E::Seal(SealError::WrongKey { .. }) => crate::exit::usage(e.to_string()),
        other => anyhow::Error::new(other),
    }
}

fn when(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

fn roles_text(roles: &[access::Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn print_new_key(key: &access::NewApiKey) {
    use secrecy::ExposeSecret as _;
    println!(
        "API key {} for service {} (roles: {}; expires: {})",
        key.id,
        key.service,
        roles_text(&key.roles),
        key.expires_at
            .map_or_else(|| "never".to_string(), |t| when(Some(t)))
    );
    println!("{}", key.secret.expose_secret());
    println!("store it now: it is shown only this once");
}

fn print_api_keys(keys: &[access::ApiKeyInfo], json: bool) {
    if json {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| {
                serde_json::json!({
                    "id": k.id,
                    "service": k.service,
                    "roles": k.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    "created_at": k.created_at,
                    "expires_at": k.expires_at,
                    "revoked_at": k.revoked_at,
                    "last_used_at": k.last_used_at,
                    "replaced_by": k.replaced_by,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!(
        "{:<16}  {:<20}  {:<24}  {:<20}  {:<20}  {:<20}  state",
        "id", "service", "roles", "created", "expires", "last used"
    );
    let now = chrono::Utc::now().timestamp();
    for k in keys {
        let state = if k.revoked_at.is_some() {
            "revoked"
        } else if !k.is_usable(now) {
            "expired"
        } else if k.replaced_by.is_some() {
            "rotating"
        } else {
            "active"
        };
        println!(
            "{:<16}  {:<20}  {:<24}  {:<20}  {:<20}  {:<20}  {state}",
            k.id,
            k.service,
            roles_text(&k.roles),
            when(Some(k.created_at)),
            when(k.expires_at),
            when(k.last_used_at)
        );
    }
}
