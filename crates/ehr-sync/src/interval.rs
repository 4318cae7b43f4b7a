//! Sync intervals as people write them: `90s`, `15m`, `1h30m`, `2d`.

use std::time::Duration;

/// Why an interval was refused. The message quotes no input (it came from a command line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    /// Not `<number><unit>` pieces with units `s`, `m`, `h`, `d`.
    #[error(
        "an interval is one or more <number><unit> pieces with units s, m, h or d, such as 90s, 15m or 1h30m"
    )]
    Syntax,
    /// Zero, or more than 365 days.
    #[error("an interval must be between 1 second and 365 days")]
    OutOfRange,
}

const MAX: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `90s`, `15m`, `1h30m`, `2d` (each unit at most once, largest first; no sign, no
/// spaces, no fractions).
pub fn parse_interval(text: &str) -> Result<Duration, IntervalError> {
    if text.is_empty() {
        return Err(IntervalError::Syntax);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_rank = usize::MAX;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if digits.len() >= 12 {
                return Err(IntervalError::OutOfRange);
            }
            digits.push(c);
            continue;
        }
        let (rank, seconds) = match c {
            'd' => (3, 86_400),
            'h' => (2, 3_600),
            'm' => (1, 60),
            's' => (0, 1),
            _ => return Err(IntervalError::Syntax),
        };
        if digits.is_empty() || rank >= last_rank {
            return Err(IntervalError::Syntax);
        }
        last_rank = rank;
        let n: u64 = digits.parse().map_err(|_| IntervalError::Syntax)?;
        digits.clear();
        total = n
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or(IntervalError::OutOfRange)?;
    }
    if !digits.is_empty() {
        return Err(IntervalError::Syntax);
    }
    let d = Duration::from_secs(total);
    if d.is_zero() || d > MAX {
        return Err(IntervalError::OutOfRange);
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn common_intervals_parse() {
        assert_eq!(parse_interval("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_interval("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_interval("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_interval("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(
            parse_interval("1d2h3m4s"),
            Ok(Duration::from_secs(86_400 + 7_200 + 180 + 4))
        );
    }

    #[test]
    fn malformed_intervals_are_refused() {
        for bad in [
            "", "15", "m", "1x", "1h1h", "30m1h", "-5m", "1.5h", " 5m", "5m ", "1hm",
        ] {
            assert_eq!(parse_interval(bad), Err(IntervalError::Syntax), "{bad:?}");
        }
        for out in ["0s", "0h0m", "366d", "99999999999999d"] {
            assert_eq!(parse_interval(out), Err(IntervalError::OutOfRange), "{out:?}");
        }
    }

    proptest! {
        #[test]
        fn written_intervals_parse_back_to_their_seconds(d in 0u64..365, h in 0u64..24, m in 0u64..60, s in 0u64..60) {
            prop_assume!(d + h + m + s > 0);
            let mut text = String::new();
            for (n, unit) in [(d, 'd'), (h, 'h'), (m, 'm'), (s, 's')] {
                if n > 0 {
                    text.push_str(&format!("{n}{unit}"));
                }
            }
            prop_assert_eq!(
                parse_interval(&text),
                Ok(Duration::from_secs(d * 86_400 + h * 3_600 + m * 60 + s))
            );
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,24}") {
            let _ = parse_interval(&text);
        }
    }
}
