//! Fault injection: which requests fail, and how.
//!
//! # Grammar
//!
//! A fault spec is a comma-separated list of `name=value` items (whitespace around items is
//! ignored; an empty string or `none` means no faults):
//!
//! | item | value | effect |
//! |---|---|---|
//! | `429`, `500`, `502`, `503`, `504` | probability in `[0, 1]` | answer with that status and an `errors` body; a 429 carries `Retry-After` |
//! | `reset` | probability | close the connection without sending any response byte |
//! | `truncate` | probability | send the headers with the full `Content-Length`, half the body, then close |
//! | `latency` | `20ms`, `1s`, or a range `5ms..50ms` | delay added to every response (a range picks a delay per request, deterministically) |
//! | `retry-after` | whole seconds (default 1) | the `Retry-After` value of a 429 |
//!
//! Each name may appear once; the probabilities must sum to at most 1.
//!
//! A faulted request has no effect: it is not processed, so a write that got a 503 or a reset
//! was not stored. (A truncated write would otherwise have to be stored to have a body to cut,
//! so on POST and PATCH `truncate` behaves as `reset`.)
//!
//! # Determinism
//!
//! The fault for a request is a pure function of the seed, the method, the request target with
//! its `app_id` but without the `Date` (the target never contains it), and how many times that
//! same method + target has been seen before (the attempt number). Two runs with the same seed
//! make the same decisions however their requests interleave, and each retry of a target draws
//! afresh, so a retried request eventually succeeds.

use std::fmt;
use std::time::Duration;

/// Which fault a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status code (429, 500, 502, 503 or 504).
    Status(u16),
    /// Close the connection before any response byte.
    Reset,
    /// Send half the body under the full `Content-Length`, then close.
    Truncate,
}

/// The statuses that may be injected, in the order their probabilities are laid out.
const STATUSES: [u16; 5] = [429, 500, 502, 503, 504];

/// A parsed fault specification. [`FaultSpec::none`] injects nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultSpec {
    status: [f64; 5],
    reset: f64,
    truncate: f64,
    latency: Option<(Duration, Duration)>,
    retry_after_secs: u32,
}

/// Why a fault spec was refused. Messages quote only the spec's own item names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// An item is not `name=value`.
    #[error("fault spec item {0:?} is not of the form name=value")]
    NotNameValue(String),
    /// The name is not one the simulator knows.
    #[error(
        "unknown fault {0:?}: expected one of 429, 500, 502, 503, 504, reset, truncate, latency, retry-after"
    )]
    UnknownName(String),
    /// A name appears twice.
    #[error("fault {0:?} is given more than once")]
    Duplicate(String),
    /// A probability is not a number in `[0, 1]`.
    #[error("fault {0:?} needs a probability between 0 and 1, such as 0.05")]
    BadProbability(String),
    /// The probabilities add up to more than 1.
    #[error("fault probabilities add up to more than 1")]
    TooLikely,
    /// The latency is not `Nms`, `Ns` or `A..B` with A <= B.
    #[error("latency must look like 20ms, 1s or 5ms..50ms (at most 60s)")]
    BadLatency,
    /// `retry-after` is not a whole number of seconds.
    #[error("retry-after must be a whole number of seconds between 0 and 3600")]
    BadRetryAfter,
}

impl FaultSpec {
    /// No faults at all.
    pub fn none() -> Self {
        Self {
            retry_after_secs: 1,
            ..Self::default()
        }
    }

    /// Parses the grammar described in the module docs.
    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        let mut out = Self::none();
        let trimmed = spec.trim();
        if trimmed.is_empty() || trimmed == "none" {
            return Ok(out);
        }
        let mut seen: Vec<String> = Vec::new();
        for item in trimmed.split(',').map(str::trim) {
            let (name, value) = item
                .split_once('=')
                .ok_or_else(|| FaultSpecError::NotNameValue(item.to_owned()))?;
            let (name, value) = (name.trim(), value.trim());
            if seen.iter().any(|s| s == name) {
                return Err(FaultSpecError::Duplicate(name.to_owned()));
            }
            let probability = || -> Result<f64, FaultSpecError> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && (0.0..=1.0).contains(p))
                    .ok_or_else(|| FaultSpecError::BadProbability(name.to_owned()))
            };
            match name {
                "429" | "500" | "502" | "503" | "504" => {
                    let code: u16 = name
                        .parse()
                        .map_err(|_| FaultSpecError::UnknownName(name.to_owned()))?;
                    let slot = STATUSES.iter().position(|s| *s == code).unwrap_or_default();
                    out.status[slot] = probability()?;
                }
                "reset" => out.reset = probability()?,
                "truncate" => out.truncate = probability()?,
                "latency" => out.latency = Some(parse_latency(value)?),
                "retry-after" => {
                    out.retry_after_secs = value
                        .parse::<u32>()
                        .ok()
                        .filter(|s| *s <= 3600)
                        .ok_or(FaultSpecError::BadRetryAfter)?;
                }
                _ => return Err(FaultSpecError::UnknownName(name.to_owned())),
            }
            seen.push(name.to_owned());
        }
        if out.total_probability() > 1.0 + 1e-9 {
            return Err(FaultSpecError::TooLikely);
        }
        Ok(out)
    }

    /// The probability that a request gets any fault (latency aside).
    pub fn total_probability(&self) -> f64 {
        self.status.iter().sum::<f64>() + self.reset + self.truncate
    }

    /// Whether this spec never changes a response.
    pub fn is_none(&self) -> bool {
        self.total_probability() == 0.0 && self.latency.is_none()
    }

    /// The `Retry-After` seconds sent with an injected 429.
    pub fn retry_after_secs(&self) -> u32 {
        self.retry_after_secs
    }

    /// The fault for a request whose decision hash is `draw` (uniform over `u64`).
    pub(crate) fn decide(&self, draw: u64) -> Option<Fault> {
        // 53 random bits give a uniform float in [0, 1).
        let u = (draw >> 11) as f64 / (1u64 << 53) as f64;
        let mut edge = 0.0;
        for (p, status) in self.status.iter().zip(STATUSES) {
            edge += p;
            if u < edge {
                return Some(Fault::Status(status));
            }
        }
        edge += self.reset;
        if u < edge {
            return Some(Fault::Reset);
        }
        edge += self.truncate;
        if u < edge {
            return Some(Fault::Truncate);
        }
        None
    }

    /// The latency to add for a request whose latency hash is `draw`.
    pub(crate) fn latency(&self, draw: u64) -> Option<Duration> {
        let (lo, hi) = self.latency?;
        let span = hi.saturating_sub(lo).as_micros() as u64;
        let extra = if span == 0 { 0 } else { draw % (span + 1) };
        Some(lo + Duration::from_micros(extra))
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = Vec::new();
        for (p, status) in self.status.iter().zip(STATUSES) {
            if *p > 0.0 {
                items.push(format!("{status}={p}"));
            }
        }
        if self.reset > 0.0 {
            items.push(format!("reset={}", self.reset));
        }
        if self.truncate > 0.0 {
            items.push(format!("truncate={}", self.truncate));
        }
        if let Some((lo, hi)) = self.latency {
            if lo == hi {
                items.push(format!("latency={}ms", lo.as_millis()));
            } else {
                items.push(format!(
                    "latency={}ms..{}ms",
                    lo.as_millis(),
                    hi.as_millis()
                ));
            }
        }
        if self.status[0] > 0.0 {
            items.push(format!("retry-after={}", self.retry_after_secs));
        }
        if items.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&items.join(","))
        }
    }
}

fn parse_duration(value: &str) -> Result<Duration, FaultSpecError> {
    let value = value.trim();
    let (number, unit_micros) = if let Some(n) = value.strip_suffix("ms") {
        (n, 1_000u64)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1_000_000u64)
    } else {
        return Err(FaultSpecError::BadLatency);
    };
    let n: u64 = number
        .trim()
        .parse()
        .map_err(|_| FaultSpecError::BadLatency)?;
    let d = Duration::from_micros(
        n.checked_mul(unit_micros)
            .ok_or(FaultSpecError::BadLatency)?,
    );
    if d > Duration::from_secs(60) {
        return Err(FaultSpecError::BadLatency);
    }
    Ok(d)
}

fn parse_latency(value: &str) -> Result<(Duration, Duration), FaultSpecError> {
    match value.split_once("..") {
        Some((lo, hi)) => {
            let (lo, hi) = (parse_duration(lo)?, parse_duration(hi)?);
            if lo > hi {
                return Err(FaultSpecError::BadLatency);
            }
            Ok((lo, hi))
        }
        None => {
            let d = parse_duration(value)?;
            Ok((d, d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let spec = FaultSpec::parse(
            "429=0.1,502=0.05,503=0.05,504=0.02,500=0.01,reset=0.05,truncate=0.02,latency=20ms,retry-after=1",
        )
        .unwrap();
        assert!((spec.total_probability() - 0.30).abs() < 1e-9);
        assert_eq!(spec.latency(7), Some(Duration::from_millis(20)));
        assert_eq!(spec.retry_after_secs(), 1);
    }

    #[test]
    fn empty_and_none_mean_no_faults() {
        assert!(FaultSpec::parse("").unwrap().is_none());
        assert!(FaultSpec::parse(" none ").unwrap().is_none());
        assert_eq!(FaultSpec::none().decide(0), None);
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        let cases = [
            ("429", FaultSpecError::NotNameValue("429".into())),
            ("418=0.1", FaultSpecError::UnknownName("418".into())),
            ("429=2", FaultSpecError::BadProbability("429".into())),
            ("429=-0.1", FaultSpecError::BadProbability("429".into())),
            ("429=NaN", FaultSpecError::BadProbability("429".into())),
            ("429=0.1,429=0.2", FaultSpecError::Duplicate("429".into())),
            ("429=0.6,500=0.6", FaultSpecError::TooLikely),
            ("latency=20", FaultSpecError::BadLatency),
            ("latency=50ms..5ms", FaultSpecError::BadLatency),
            ("latency=61s", FaultSpecError::BadLatency),
            ("retry-after=soon", FaultSpecError::BadRetryAfter),
        ];
        for (spec, want) in cases {
            assert_eq!(FaultSpec::parse(spec), Err(want), "{spec}");
        }
    }

    #[test]
    fn decisions_follow_the_cumulative_layout() {
        let spec = FaultSpec::parse("429=0.25,reset=0.25,truncate=0.25").unwrap();
        let at = |u: f64| spec.decide(((u * (1u64 << 53) as f64) as u64) << 11);
        assert_eq!(at(0.1), Some(Fault::Status(429)));
        assert_eq!(at(0.3), Some(Fault::Reset));
        assert_eq!(at(0.6), Some(Fault::Truncate));
        assert_eq!(at(0.9), None);
    }

    #[test]
    fn latency_ranges_stay_within_bounds() {
        let spec = FaultSpec::parse("latency=5ms..50ms").unwrap();
        for draw in [0u64, 1, 12345, u64::MAX] {
            let d = spec.latency(draw).unwrap();
            assert!(d >= Duration::from_millis(5) && d <= Duration::from_millis(50));
        }
    }

    #[test]
    fn display_round_trips() {
        let spec = FaultSpec::parse("429=0.1,reset=0.05,latency=5ms..50ms,retry-after=3").unwrap();
        assert_eq!(FaultSpec::parse(&spec.to_string()).unwrap(), spec);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsing_arbitrary_text_never_panics(spec in ".{0,80}") {
                let _ = FaultSpec::parse(&spec);
            }

            #[test]
            fn valid_specs_round_trip_and_decide_within_their_total(
                p429 in 0u32..=20, p503 in 0u32..=20, reset in 0u32..=20, truncate in 0u32..=20,
                lo in 0u64..100, extra in 0u64..100, draw in any::<u64>(),
            ) {
                let text = format!(
                    "429={},503={},reset={},truncate={},latency={lo}ms..{}ms",
                    f64::from(p429) / 100.0, f64::from(p503) / 100.0,
                    f64::from(reset) / 100.0, f64::from(truncate) / 100.0, lo + extra,
                );
                let spec = FaultSpec::parse(&text).unwrap();
                prop_assert_eq!(FaultSpec::parse(&spec.to_string()).unwrap(), spec.clone());
                if spec.total_probability() == 0.0 {
                    prop_assert_eq!(spec.decide(draw), None);
                }
                let latency = spec.latency(draw).unwrap();
                prop_assert!(latency >= Duration::from_millis(lo) && latency <= Duration::from_millis(lo + extra));
            }
        }
    }
}
