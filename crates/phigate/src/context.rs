//! What every subcommand may need from the environment, read once here: the binary is the only
//! place that reads environment variables (ARCHITECTURE.md).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use store::TtlPolicy;

/// Global options, resolved.
#[derive(Debug)]
pub struct Context {
    /// Where phigate keeps its SQLite files, keys, certificates and checkpoints.
    pub data_dir: PathBuf,
    /// `PHIGATE_DATABASE_URL`: a PostgreSQL URL shared by several instances; `None` means the
    /// SQLite files in `data_dir`.
    pub database_url: Option<SecretString>,
    /// Time to live per record kind (`--ttl` / `PHIGATE_TTL` over the store's defaults). Every
    /// command that opens the store gets it, so records written by any of them expire by it.
    pub ttl: TtlPolicy,
}

/// Global command-line options.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// Data directory (default: $XDG_DATA_HOME/phigate or ~/.local/share/phigate).
    #[arg(long, global = true, env = "PHIGATE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Time to live of stored records of a kind, as KIND=DURATION with a unit s, m, h or d
    /// (e.g. `--ttl kipu.response=5m`); `*=DURATION` applies to kinds without their own.
    /// Repeatable, or comma-separated in PHIGATE_TTL. Cached API responses (kipu.response)
    /// default to 15m; other kinds do not expire unless configured.
    #[arg(
        long = "ttl",
        global = true,
        env = "PHIGATE_TTL",
        value_delimiter = ',',
        value_name = "KIND=DURATION"
    )]
    pub ttl: Vec<String>,
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
        let ttl = ttl_policy(&self.ttl).map_err(crate::exit::usage)?;
        Ok(Context {
            data_dir,
            database_url,
            ttl,
        })
    }
}

/// Longest TTL accepted: a year. Longer values are almost certainly a unit mistake.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// The store's limit on kind names.
const MAX_KIND_LEN: usize = 128;

/// Builds the TTL policy from `KIND=DURATION` items over the store's defaults. Errors name the
/// offending item (kinds and durations are configuration, not PHI).
fn ttl_policy(items: &[String]) -> Result<TtlPolicy, String> {
    let mut policy = TtlPolicy::default();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let (kind, duration) = item.rsplit_once('=').ok_or_else(|| {
            format!("--ttl {item:?}: expected KIND=DURATION, e.g. kipu.response=15m")
        })?;
        let ttl = parse_duration(duration).map_err(|why| format!("--ttl {item:?}: {why}"))?;
        if kind == "*" {
            policy = policy.with_default(Some(ttl));
        } else if kind.is_empty()
            || kind.len() > MAX_KIND_LEN
            || !kind.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "--ttl {item:?}: the kind must be 1..={MAX_KIND_LEN} printable ASCII characters without spaces, or * for every other kind"
            ));
        } else {
            policy = policy.with_kind(kind, ttl);
        }
    }
    Ok(policy)
}

/// `<positive integer><unit>` with unit s, m, h or d; at most [`MAX_TTL`].
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or("the duration needs a unit: s, m, h or d (e.g. 15m)")?;
    let (number, unit) = text.split_at(split);
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("the duration must be a whole number followed by s, m, h or d".into()),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| "the duration must start with a whole number")?;
    if n == 0 {
        return Err("the duration must be greater than zero".into());
    }
    let ttl = n
        .checked_mul(unit_secs)
        .map(Duration::from_secs)
        .filter(|d| *d <= MAX_TTL)
        .ok_or("the duration is longer than the maximum of 365d")?;
    Ok(ttl)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn items(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn no_ttl_flags_keep_the_store_defaults() {
        let policy = ttl_policy(&[]).unwrap();
        assert_eq!(
            policy.ttl_for(store::CACHED_RESPONSE_KIND),
            Some(store::CACHED_RESPONSE_TTL)
        );
        assert_eq!(policy.ttl_for("patient"), None);
    }

    #[test]
    fn per_kind_and_default_ttls_are_applied() {
        let policy = ttl_policy(&items(&["kipu.response=5m", "*=2h", "patient=30d"])).unwrap();
        assert_eq!(
            policy.ttl_for("kipu.response"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            policy.ttl_for("patient"),
            Some(Duration::from_secs(30 * 86_400))
        );
        assert_eq!(
            policy.ttl_for("appointment"),
            Some(Duration::from_secs(7200))
        );
    }

    #[test]
    fn bad_ttl_items_are_refused_with_the_reason() {
        for (item, reason) in [
            ("kipu.response", "expected KIND=DURATION"),
            ("kipu.response=15", "needs a unit"),
            ("kipu.response=15x", "followed by s, m, h or d"),
            ("kipu.response=m", "start with a whole number"),
            ("kipu.response=0s", "greater than zero"),
            ("kipu.response=366d", "maximum of 365d"),
            (
                "kipu.response=99999999999999999999s",
                "start with a whole number",
            ),
            ("=5m", "the kind must be"),
            ("pat ient=5m", "the kind must be"),
        ] {
            let err = ttl_policy(&items(&[item])).unwrap_err();
            assert!(err.contains(reason), "{item}: {err}");
        }
    }

    proptest! {
        #[test]
        fn any_valid_kind_and_duration_round_trips(
            kind in "[!-~&&[^=*]][!-~&&[^=]]{0,40}",
            n in 1u64..=365,
            unit in prop::sample::select(vec![("s", 1u64), ("m", 60), ("h", 3600), ("d", 86_400)]),
        ) {
            let item = format!("{kind}={n}{}", unit.0);
            let policy = ttl_policy(&[item]).unwrap();
            let want = Duration::from_secs(n * unit.1);
            prop_assert_eq!(policy.ttl_for(&kind), Some(want));
        }

        #[test]
        fn arbitrary_input_is_accepted_or_refused_with_a_ttl_message(item in ".{0,64}") {
            match ttl_policy(&[item]) {
                Ok(_) => {}
                Err(e) => prop_assert!(e.starts_with("--ttl "), "{}", e),
            }
        }
    }
}
