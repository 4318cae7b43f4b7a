//! `phigate kipu`: call the Kipu API (`get`) and debug APIAuth signatures (`sign`).
//!
//! Credentials come from `KIPU_ACCESS_ID`, `KIPU_SECRET_KEY`, `KIPU_APP_ID`, `KIPU_BASE_URL`
//! (default `https://api.kipuapi.com`) and `KIPU_API_VERSION` (3 or 4, default 3). A missing or
//! malformed variable is a usage error (exit 2) naming the variable; the secret is never printed.
//!
//! `get` prints the JSON response on stdout (it is PHI: stdout is the user's explicit output;
//! nothing goes to the log). With `--all-pages` it prints one record per line (JSON lines), so
//! any number of pages streams in constant memory and `jq -c`/`wc -l` work directly.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use futures::TryStreamExt as _;
use kipu::endpoints::{self, Endpoint, Method};
use kipu::signing::{CanonicalString, content_md5};
use kipu::{ApiVersion, Client, ClientConfig, Credentials};
use secrecy::SecretString;

use crate::exit::usage;

/// Arguments of `phigate kipu`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// GET an endpoint and print its JSON (credentials from KIPU_* variables).
    Get(GetArgs),
    /// Export endpoints to Parquet, CSV or JSON lines (flattened, resumable).
    Export(Box<crate::cmd_export::ExportArgs>),
    /// Print the canonical string and Authorization header for a request (debug a 401).
    // `--version` here is the API version, not phigate's.
    #[command(disable_version_flag = true)]
    Sign(SignArgs),
}

#[derive(Debug, clap::Args)]
struct GetArgs {
    /// Endpoint: a name (`get_patients_census`, `patients_census`), a path template
    /// (`/api/patients/{patient_id}/vital_signs`) or a concrete path (`/api/patients/12:ab`).
    endpoint: String,
    /// A path id for a template, in order (repeat for several).
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<String>,
    /// A query parameter `key=value` (repeatable; sent in the order given).
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Follow the pagination to the end and print one record per line (JSON lines).
    #[arg(long)]
    all_pages: bool,
    /// Records per page with --all-pages.
    #[arg(long, value_name = "N", default_value_t = 100)]
    per: u32,
    /// An extra PEM CA bundle to trust (certificate verification cannot be disabled).
    #[arg(long, value_name = "FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Seconds one attempt may take.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    timeout: u64,
}

#[derive(Debug, clap::Args)]
struct SignArgs {
    /// HTTP method (GET, POST, PATCH).
    #[arg(long)]
    method: String,
    /// The request target exactly as sent: path plus query string, app_id included.
    #[arg(long)]
    uri: String,
    /// The Date header value (RFC 1123, e.g. "Wed, 06 Nov 2019 15:38:34 GMT").
    #[arg(long)]
    date: String,
    /// Content-Type of the body.
    #[arg(long, requires = "body_file")]
    content_type: Option<String>,
    /// File holding the exact body bytes.
    #[arg(long, requires = "content_type")]
    body_file: Option<std::path::PathBuf>,
    /// API version: 3 (HMAC-SHA1) or 4 (HMAC-SHA256).
    #[arg(long)]
    version: String,
}

/// Runs `phigate kipu`.
pub fn run(args: Args, _ctx: &crate::context::Context) -> anyhow::Result<()> {
    match args.command {
        Command::Get(a) => get(a),
        Command::Sign(a) => sign(a),
        Command::Export(a) => crate::cmd_export::run(*a),
    }
}

fn env_var(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Err(usage(format!("{name} is set but empty"))),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(usage(format!("{name} is not valid UTF-8"))),
    }
}

fn required(name: &str) -> anyhow::Result<String> {
    env_var(name)?.ok_or_else(|| usage(format!("{name} is not set (the Kipu credentials come from KIPU_ACCESS_ID, KIPU_SECRET_KEY and KIPU_APP_ID)")))
}

fn version_from(name: &str, raw: &str) -> anyhow::Result<ApiVersion> {
    raw.parse()
        .map_err(|_| usage(format!("{name} must be 3 or 4")))
}

/// The client configuration from the `KIPU_*` variables (shared by `get` and `export`).
pub(crate) fn client_config_from_env(
    timeout_secs: u64,
    ca_file: Option<&std::path::Path>,
    concurrency: usize,
    retry: kipu::RetryPolicy,
) -> anyhow::Result<ClientConfig> {
    let access_id = required("KIPU_ACCESS_ID")?;
    let secret = SecretString::from(required("KIPU_SECRET_KEY")?);
    let app_id = required("KIPU_APP_ID")?;
    let base_url =
        env_var("KIPU_BASE_URL")?.unwrap_or_else(|| kipu::config::DEFAULT_BASE_URL.to_string());
    let version = match env_var("KIPU_API_VERSION")? {
        Some(v) => version_from("KIPU_API_VERSION", &v)?,
        None => ApiVersion::V3,
    };
    kipu::config::validate_base_url(&base_url).map_err(|e| usage(format!("KIPU_BASE_URL: {e}")))?;
    let mut builder = ClientConfig::builder(Credentials::new(access_id, secret, app_id, version))
        .base_url(base_url)
        .request_timeout(Duration::from_secs(timeout_secs.max(1)))
        .concurrency(concurrency)
        .retry(retry);
    if let Some(path) = ca_file {
        let pem =
            std::fs::read(path).map_err(|e| usage(format!("--ca-file: cannot read it: {e}")))?;
        builder = builder.extra_ca_pem(pem);
    }
    builder.build().map_err(|e| usage(e.to_string()))
}

fn get(args: GetArgs) -> anyhow::Result<()> {
    let config = client_config_from_env(
        args.timeout,
        args.ca_file.as_deref(),
        8,
        kipu::RetryPolicy::default(),
    )?;
    let params = args
        .params
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| usage("--param must be KEY=VALUE with a non-empty key"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.per == 0 {
        return Err(usage("--per must be at least 1"));
    }
    let target = resolve_endpoint(&args.endpoint, &args.ids)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let client = Client::new(config)?;
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        if args.all_pages {
            let ResolvedEndpoint::Catalogued { endpoint, ids } = &target else {
                return Err(usage("--all-pages needs a catalogued list endpoint"));
            };
            if !endpoint.is_list() {
                return Err(usage(format!(
                    "--all-pages: {} is not a list endpoint",
                    endpoint.name
                )));
            }
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let mut records = client
                .raw_list(endpoint, &ids, &pairs)
                .per(args.per)
                .stream();
            let mut count = 0u64;
            while let Some(record) = records.try_next().await? {
                serde_json::to_writer(&mut out, record.0.expose())?;
                out.write_all(b"\n")?;
                count += 1;
            }
            out.flush()?;
            tracing::info!(
                records = count,
                endpoint = endpoint.path,
                "kipu get finished"
            );
            return Ok(());
        }
        let value = match &target {
            ResolvedEndpoint::Catalogued { endpoint, ids } => {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                client
                    .request(endpoint, &ids, &pairs, None, Default::default())
                    .await?
            }
            ResolvedEndpoint::Path(path) => client.get(path, &pairs).await?,
        };
        serde_json::to_writer_pretty(&mut out, value.expose())?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    })
}

enum ResolvedEndpoint {
    Catalogued {
        endpoint: &'static Endpoint,
        ids: Vec<String>,
    },
    Path(String),
}

fn resolve_endpoint(name: &str, ids: &[String]) -> anyhow::Result<ResolvedEndpoint> {
    // Names and templates first: `get` only reads, so a write name is refused.
    let by_name = endpoints::ENDPOINTS
        .iter()
        .filter(|e| e.method == Method::Get)
        .find(|e| e.name == name || e.short_name() == name || e.path == name);
    if let Some(endpoint) = by_name {
        let want = endpoint.path_params().count();
        if ids.len() != want {
            return Err(usage(format!(
                "{} needs {want} --id value(s) ({}), got {}",
                endpoint.name,
                endpoint.path_params().collect::<Vec<_>>().join(", "),
                ids.len()
            )));
        }
        return Ok(ResolvedEndpoint::Catalogued {
            endpoint,
            ids: ids.to_vec(),
        });
    }
    if name.starts_with("/api/") && !name.contains('{') {
        if !ids.is_empty() {
            return Err(usage(
                "--id is only for names and templates; this path is concrete",
            ));
        }
        return Ok(ResolvedEndpoint::Path(name.to_string()));
    }
    if let Some(write) = endpoints::find(name) {
        return Err(usage(format!(
            "{} is a {} endpoint; `phigate kipu get` only reads",
            write.name, write.method
        )));
    }
    let mut valid: Vec<&str> = endpoints::ENDPOINTS
        .iter()
        .filter(|e| e.method == Method::Get)
        .map(|e| e.name)
        .collect();
    valid.sort_unstable();
    Err(usage(format!(
        "unknown endpoint; use a name, a path template or a concrete /api/ path. Valid names:\n  {}",
        valid.join("\n  ")
    )))
}

fn sign(args: SignArgs) -> anyhow::Result<()> {
    let access_id = required("KIPU_ACCESS_ID")?;
    let secret = SecretString::from(required("KIPU_SECRET_KEY")?);
    let version = version_from("--version", &args.version)?;
    let method = args.method.to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "POST" | "PATCH" | "PUT" | "DELETE") {
        return Err(usage("--method must be GET, POST, PATCH, PUT or DELETE"));
    }
    if !args.uri.starts_with('/') {
        return Err(usage(
            "--uri must be the request target: a path starting with / plus its query",
        ));
    }
    kipu::signing::parse_http_date(&args.date).map_err(|_| {
        usage("--date must be an RFC 1123 date such as \"Wed, 06 Nov 2019 15:38:34 GMT\"")
    })?;
    let body = match &args.body_file {
        Some(path) => Some(
            std::fs::read(path).map_err(|e| usage(format!("--body-file: cannot read it: {e}")))?,
        ),
        None => None,
    };
    if method == "GET" && body.is_some() {
        return Err(usage(
            "a GET has no body: drop --content-type and --body-file",
        ));
    }
    // An empty body signs like kipu-python: no Content-Type, no Content-MD5.
    let md5 = body.as_deref().filter(|b| !b.is_empty()).map(content_md5);
    let content_type = if md5.is_some() {
        args.content_type.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let canonical = CanonicalString::for_method(
        &method,
        &content_type,
        md5.as_deref().unwrap_or(""),
        &args.uri,
        &args.date,
    );
    // Only the access id is needed to format the header; the app id is already in the URI.
    let creds = Credentials::new(access_id, secret, "", version);
    let mut out = std::io::stdout().lock();
    writeln!(out, "canonical string: {}", canonical.as_str())?;
    writeln!(out, "Authorization: {}", creds.authorization(&canonical))?;
    writeln!(out, "Date: {}", args.date)?;
    writeln!(out, "Accept: {}", version.accept_header())?;
    if let Some(md5) = md5 {
        writeln!(out, "Content-Type: {content_type}")?;
        writeln!(out, "Content-MD5: {md5}")?;
    }
    Ok(())
}
