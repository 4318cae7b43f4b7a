//! Redaction of detected spans: a fixed mask, a type tag, or a keyed pseudonym.
//!
//! # Invariants
//!
//! * The mask is a fixed `*****` whatever the value's length: a length is itself a hint (a
//!   four-letter surname, a ten-digit phone).
//! * Pseudonyms are HMAC-SHA256 (aws-lc-rs) over the kind and the normalised value under a
//!   caller-supplied key of at least 32 bytes: the same (kind, value) maps to the same pseudonym
//!   under one key, so records can still be joined; without the key nobody can test a guess.
//!   They are **not reversible**: re-identification needs a lookup table kept by whoever holds
//!   the key, which this crate does not build.

use std::fmt;

use aws_lc_rs::hmac;

use crate::detect::{PhiKind, Span};

/// The fixed replacement of [`Mode::Mask`].
pub const MASK: &str = "*****";

/// Minimum pseudonym key length in bytes (HMAC-SHA256's block-size guidance: 256 bits).
pub const MIN_KEY_LEN: usize = 32;

/// Errors building a pseudonym key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The key is shorter than [`MIN_KEY_LEN`].
    #[error("pseudonym key must be at least {MIN_KEY_LEN} bytes, got {0}")]
    TooShort(usize),
}

/// A key for [`Mode::Pseudonym`]. Its bytes live inside aws-lc-rs and are never printed.
#[derive(Clone)]
pub struct PseudonymKey(hmac::Key);

impl PseudonymKey {
    /// Wraps key bytes (at least [`MIN_KEY_LEN`]). The caller keeps and zeroizes its copy.
    pub fn new(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// The pseudonym of `value` as a `kind`: `NAME-3f9a2c1b7d0e` (48 bits of the HMAC; a
    /// collision between two values of one kind needs ~16 million distinct values).
    pub fn pseudonym(&self, kind: PhiKind, value: &str) -> String {
        let tag = self.tag_hex(kind.tag(), &normalise(kind, value));
        format!("{}-{}", kind.tag(), &tag[..12])
    }

    /// HMAC-SHA256 over `domain`, a zero byte and `message`, hex-encoded.
    pub(crate) fn tag_hex(&self, domain: &str, message: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(domain.as_bytes());
        ctx.update(&[0]);
        ctx.update(message.as_bytes());
        hex::encode(ctx.sign().as_ref())
    }

    /// The first 8 bytes of HMAC-SHA256(domain, message) as an integer (for date shifts).
    pub(crate) fn tag_u64(&self, domain: &str, message: &str) -> u64 {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(domain.as_bytes());
        ctx.update(&[0]);
        ctx.update(message.as_bytes());
        let tag = ctx.sign();
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_be_bytes(first)
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey([REDACTED])")
    }
}

/// Normalises a value so that formatting differences do not split one identity into several
/// pseudonyms: digits only for numbers, case and whitespace folded for the rest.
fn normalise(kind: PhiKind, value: &str) -> String {
    match kind {
        PhiKind::Phone | PhiKind::Fax | PhiKind::Ssn | PhiKind::Zip => {
            value.chars().filter(char::is_ascii_digit).collect()
        }
        _ => value
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    }
}

/// How a detected span is replaced.
#[derive(Clone, Copy, Debug)]
pub enum Mode<'k> {
    /// `*****`.
    Mask,
    /// `[PHONE]`, `[NAME]`, ...
    Tag,
    /// `NAME-3f9a2c1b7d0e`: stable per (kind, value) under the key.
    Pseudonym(&'k PseudonymKey),
}

/// Replaces every span of `text` (sorted, disjoint, as returned by the detector).
pub fn redact(text: &str, spans: &[Span], mode: Mode<'_>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in spans {
        if span.start < at || span.end > text.len() {
            continue;
        }
        out.push_str(&text[at..span.start]);
        match mode {
            Mode::Mask => out.push_str(MASK),
            Mode::Tag => {
                out.push('[');
                out.push_str(span.kind.tag());
                out.push(']');
            }
            Mode::Pseudonym(key) => {
                out.push_str(&key.pseudonym(span.kind, &text[span.start..span.end]))
            }
        }
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Detects with the global detector and redacts in one step.
pub fn scrub(text: &str, mode: Mode<'_>) -> String {
    let spans = crate::detect::Detector::global().detect(text);
    redact(text, &spans, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn tag_mode_names_the_kind() {
        assert_eq!(
            scrub("call 415-555-0123 today", Mode::Tag),
            "call [PHONE] today"
        );
    }

    #[test]
    fn mask_mode_hides_the_length() {
        let a = scrub("SSN 123-45-6789", Mode::Mask);
        assert_eq!(a, "SSN *****");
    }

    #[test]
    fn pseudonyms_are_stable_per_value_and_key_and_ignore_formatting() {
        let key = PseudonymKey::new(KEY).unwrap();
        let a = scrub("call 415-555-0123", Mode::Pseudonym(&key));
        let b = scrub("call (415) 555 0123", Mode::Pseudonym(&key));
        assert_eq!(a, b);
        assert!(a.starts_with("call PHONE-"));
        let other = PseudonymKey::new(b"another key another key another key!").unwrap();
        assert_ne!(a, scrub("call 415-555-0123", Mode::Pseudonym(&other)));
        assert_ne!(
            key.pseudonym(PhiKind::Name, "Ann Lee"),
            key.pseudonym(PhiKind::Name, "Ann Li")
        );
        assert_ne!(
            key.pseudonym(PhiKind::Name, "12345"),
            key.pseudonym(PhiKind::Mrn, "12345")
        );
    }

    #[test]
    fn short_keys_are_refused_and_keys_never_print() {
        assert_eq!(
            PseudonymKey::new(b"short").unwrap_err(),
            KeyError::TooShort(5)
        );
        let key = PseudonymKey::new(KEY).unwrap();
        assert!(!format!("{key:?}").contains("0123"));
    }
}
