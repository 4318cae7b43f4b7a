//! Types that keep protected health information (PHI) out of logs, error messages and panics.
//!
//! The central type is [`Sensitive<T>`]: a wrapper for any value that may hold PHI (a patient
//! name, a response body, a free-text note). Its `Debug` and `Display` print a fixed marker and
//! never the value, so a `tracing` field, a `format!` or an `unwrap()` message cannot leak it.
//!
//! # Invariants
//!
//! * `Debug` and `Display` of a `Sensitive<T>` print [`REDACTED`] and nothing derived from the
//!   value: not its length, not a hash, not a prefix. (A length or hash of a low-entropy value
//!   such as a date of birth is itself identifying.)
//! * `Sensitive<T>` does not implement `serde::Serialize`. Writing PHI to JSON must go through
//!   [`Sensitive::expose`], which is greppable and reviewable, instead of happening because a
//!   struct that carries PHI was handed to a JSON logger.
//! * `Deserialize` is implemented (reading PHI from an EHR response into a wrapper is the safe
//!   direction).
//!
//! The rest of the crate, one module per job:
//!
//! * [`detect`]: detectors for the 18 Safe Harbor identifiers in free text (linear time).
//! * [`redact`]: mask, type tag or keyed pseudonym for detected spans.
//! * [`deid`]: Safe Harbor de-identification of structured records (per value, per column,
//!   per JSON record) and the default policy for Kipu records.
//! * [`logging`]: the tracing layer that only lets safe fields out and scrubs messages, and the
//!   panic hook that scrubs panic messages.
//! * [`eval`]: a labelled synthetic note generator, hand-written fixtures and the scorer.
//!
//! # Invariants (the whole crate)
//!
//! * Nothing in this crate logs, prints or puts into an error message a value it was given to
//!   inspect: errors name the field or the rule, never the value.
//! * No environment variables or files are read: keys, policies and text come from the caller.

#![forbid(unsafe_code)]

pub mod deid;
pub mod detect;
pub mod eval;
pub mod logging;
pub mod redact;

pub use detect::{Detector, PhiKind, Span};
pub use redact::{Mode, PseudonymKey, redact, scrub};

use std::fmt;

/// What `Debug` and `Display` print in place of a sensitive value.
pub const REDACTED: &str = "[REDACTED]";

/// A value that may contain protected health information.
///
/// ```
/// use phi::Sensitive;
/// let name = Sensitive::new(String::from("Jane Roe"));
/// assert_eq!(format!("{name:?} {name}"), "[REDACTED] [REDACTED]");
/// assert_eq!(name.expose(), "Jane Roe");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wraps a value that may contain PHI.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// Borrows the value. Every call site is a place where PHI leaves the wrapper; keep them few
    /// and never pass the result to a logger.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value, with the same caveat as [`Sensitive::expose`].
    pub fn into_inner(self) -> T {
        self.0
    }

    /// Applies `f` inside the wrapper: the result is still sensitive.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Sensitive<U> {
        Sensitive(f(self.0))
    }

    /// Borrows the value as a sensitive reference.
    pub fn as_ref(&self) -> Sensitive<&T> {
        Sensitive(&self.0)
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Sensitive<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Sensitive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "CANARY-7f3a-Zebulon-Quixote";

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Sensitive::new(CANARY.to_string());
        for out in [
            format!("{s:?}"),
            format!("{s:#?}"),
            format!("{s}"),
            format!("{:>40}", s),
        ] {
            assert!(!out.contains(CANARY), "leaked: {out}");
            assert!(!out.contains("Zebulon"));
        }
        assert_eq!(format!("{s:?}"), REDACTED);
    }

    #[test]
    fn nested_in_a_derived_debug_struct_the_value_stays_hidden() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Patient {
            id: u32,
            name: Sensitive<String>,
        }
        let p = Patient {
            id: 7,
            name: Sensitive::new(CANARY.into()),
        };
        let out = format!("{p:?}");
        assert_eq!(out, "Patient { id: 7, name: [REDACTED] }");
    }

    #[test]
    fn map_keeps_the_result_sensitive() {
        let s = Sensitive::new(CANARY.to_string()).map(|v| v.len());
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(*s.expose(), CANARY.len());
    }

    #[test]
    fn deserializes_from_json_into_the_wrapper() {
        let s: Sensitive<String> = serde_json::from_str(&format!("\"{CANARY}\"")).unwrap();
        assert_eq!(s.expose(), CANARY);
        assert_eq!(s.to_string(), REDACTED);
    }

    #[test]
    fn a_panic_message_built_from_it_does_not_leak() {
        let s = Sensitive::new(CANARY.to_string());
        let result = std::panic::catch_unwind(|| panic!("failed on {s:?}"));
        let payload = result.unwrap_err();
        let msg = payload.downcast_ref::<String>().unwrap();
        assert!(!msg.contains(CANARY));
    }
}
