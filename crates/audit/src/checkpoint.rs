//! Checkpoints in the C2SP `tlog-checkpoint` format, signed as C2SP signed notes.
//!
//! ```text
//! phigate-audit/3f9c0d2a51e64b7a          <- origin (unique per log)
//! 1234                                     <- tree size, decimal
//! 0vN5... (base64 of the 32-byte root)     <- root hash, standard base64
//! timestamp 2026-11-23T14:40:18.123456Z    <- extension line: when it was signed (UTC)
//!
//! — phigate-audit AbCdEf...                <- signature line: key name, base64(key id || sig)
//! ```
//!
//! The signature covers the body bytes (every line above the blank line, each ending in
//! `\n`). The `timestamp` extension line is phigate's: C2SP allows opaque extension lines
//! after the root hash, and ours states when the head was signed; verifiers require it.
//! Parsing is strict and bounded, and never panics on malformed input.

use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::keys::{CheckpointSigner, KeyError, NoteVerifier};
use crate::merkle::Hash;

/// Largest note accepted by the parser.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// An unsigned tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log origin line.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// RFC 6962 root hash.
    pub root: Hash,
    /// When it was signed.
    pub timestamp: DateTime<Utc>,
}

/// Why a checkpoint note was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The text is not a well-formed checkpoint note.
    #[error("checkpoint is malformed: {0}")]
    Malformed(&'static str),
    /// No signature line by the expected key.
    #[error("checkpoint has no signature by key {0}")]
    NoSignatureByKey(String),
    /// The signature by the expected key does not verify.
    #[error("checkpoint signature by key {0} does not verify (forged or altered)")]
    BadSignature(String),
    /// The origin is not the expected log.
    #[error("checkpoint is for another log")]
    WrongOrigin,
}

impl Checkpoint {
    /// The note body that gets signed.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntimestamp {}\n",
            self.origin,
            self.size,
            base64::engine::general_purpose::STANDARD.encode(self.root),
            crate::event::format_time(&self.timestamp)
        )
    }

    /// Signs the body and returns the full note text.
    pub fn sign(&self, signer: &dyn CheckpointSigner) -> Result<String, KeyError> {
        let body = self.body();
        let verifier = signer.note_verifier();
        let sig = signer.sign(body.as_bytes())?;
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&verifier.key_id());
        blob.extend_from_slice(&sig);
        Ok(format!(
            "{body}\n\u{2014} {} {}\n",
            verifier.name(),
            base64::engine::general_purpose::STANDARD.encode(blob)
        ))
    }

    /// Parses a note and verifies its signature by `verifier`. Other signature lines (for
    /// example witness cosignatures) are allowed and ignored.
    pub fn parse_and_verify(note: &str, verifier: &NoteVerifier) -> Result<Self, CheckpointError> {
        use CheckpointError::Malformed;
        if note.len() > MAX_NOTE_BYTES {
            return Err(Malformed("note is larger than 16 KiB"));
        }
        let split = note
            .find("\n\n")
            .ok_or(Malformed("no blank line before signatures"))?;
        let body = &note[..split + 1];
        let sigs = &note[split + 2..];
        let checkpoint = Self::parse_body(body)?;

        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(Malformed("signature block must end with a newline"));
        }
        let mut found_key = false;
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or(Malformed("bad signature line"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or(Malformed("bad signature line"))?;
            let blob = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| Malformed("signature is not base64"))?;
            if blob.len() < 5 {
                return Err(Malformed("signature too short"));
            }
            if name != verifier.name() || blob[..4] != verifier.key_id() {
                continue;
            }
            found_key = true;
            if blob.len() == 68 && verifier.verify(body.as_bytes(), &blob[4..]) {
                return Ok(checkpoint);
            }
        }
        if found_key {
            Err(CheckpointError::BadSignature(verifier.name().to_string()))
        } else {
            Err(CheckpointError::NoSignatureByKey(
                verifier.name().to_string(),
            ))
        }
    }

    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        use CheckpointError::Malformed;
        let mut lines = body[..body.len() - 1].split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(Malformed("empty origin"))?;
        let size_text = lines.next().ok_or(Malformed("missing tree size"))?;
        let canonical_decimal = !size_text.is_empty()
            && size_text.len() <= 20
            && size_text.bytes().all(|b| b.is_ascii_digit())
            && (size_text == "0" || !size_text.starts_with('0'));
        if !canonical_decimal {
            return Err(Malformed("tree size is not a decimal number"));
        }
        let size: u64 = size_text
            .parse()
            .map_err(|_| Malformed("tree size out of range"))?;
        let root_b64 = lines.next().ok_or(Malformed("missing root hash"))?;
        let root: Hash = base64::engine::general_purpose::STANDARD
            .decode(root_b64)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(Malformed("root hash is not 32 bytes of base64"))?;
        let mut timestamp = None;
        for ext in lines {
            if ext.is_empty() {
                return Err(Malformed("empty extension line"));
            }
            if let Some(ts) = ext.strip_prefix("timestamp ") {
                if timestamp.is_some() {
                    return Err(Malformed("duplicate timestamp line"));
                }
                timestamp = Some(
                    DateTime::parse_from_rfc3339(ts)
                        .map_err(|_| Malformed("timestamp is not RFC 3339"))?
                        .with_timezone(&Utc),
                );
            }
        }
        let timestamp = timestamp.ok_or(Malformed("missing timestamp line"))?;
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            timestamp,
        })
    }
}
