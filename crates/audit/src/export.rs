//! JSONL export with inclusion proofs, its offline verifier, and the accounting of
//! disclosures (45 CFR 164.528).
//!
//! Export format, one JSON object per line:
//! 1. `{"type":"checkpoint","note":"<signed checkpoint note>"}`: the covering checkpoint,
//!    signed at export time over the whole log.
//! 2. then per entry, by increasing index:
//!    `{"type":"entry","index":N,"entry":{...},"proof":["<base64 hash>",...]}` where `entry`
//!    is the entry object (its RFC 8785 form is the leaf) and `proof` its RFC 6962 inclusion
//!    path in the checkpoint's tree.
//!
//! [`verify_export`] needs only the public key: it checks the checkpoint signature, re-derives
//! each leaf from the entry object, and verifies each inclusion proof against the signed root.

use std::io::{BufRead, Read as _, Write};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical;
use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use crate::event::{Entry, Event, PurposeOfUse};
use crate::keys::NoteVerifier;
use crate::log::{AuditLog, QueryFilter};
use crate::merkle::{self, Hash};

/// Longest line accepted by [`verify_export`] (1 MiB).
pub const MAX_EXPORT_LINE: u64 = 1024 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ExportLine {
    Checkpoint {
        note: String,
    },
    Entry {
        index: u64,
        entry: Value,
        proof: Vec<String>,
    },
}

/// What an export held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// Entries written or verified.
    pub entries: u64,
    /// Tree size of the covering checkpoint.
    pub tree_size: u64,
    /// Origin of the log.
    pub origin: String,
}

/// Why an export file failed verification. Never echoes file contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("export verification failed at line {line}: {reason}")]
pub struct ExportError {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

fn b64(hash: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(hash)
}

/// Writes the entries matching `filter` as JSONL with a fresh covering checkpoint and one
/// inclusion proof per entry. Requires a writable log (it signs the checkpoint).
pub async fn export(
    log: &AuditLog,
    filter: &QueryFilter,
    out: &mut dyn Write,
) -> Result<ExportSummary, AuditError> {
    let note = log.checkpoint_now().await?;
    let size = parse_unverified_size(&note)?;
    let io = |source| AuditError::Io {
        context: "writing the export".into(),
        source,
    };
    let header = serde_json::to_string(&ExportLine::Checkpoint { note })
        .map_err(|_| AuditError::InvalidEntry("checkpoint cannot be encoded"))?;
    writeln!(out, "{header}").map_err(io)?;
    let mut count = 0;
    let entries: Vec<Entry> = log
        .query(filter)
        .await?
        .into_iter()
        .map(|(e, _)| e)
        .filter(|e| e.index < size)
        .collect();
    let indices: Vec<u64> = entries.iter().map(|e| e.index).collect();
    let paths = log.inclusion_paths(&indices, size).await?;
    for (entry, path) in entries.into_iter().zip(paths) {
        let line = ExportLine::Entry {
            index: entry.index,
            entry: entry.to_json()?,
            proof: path.iter().map(b64).collect(),
        };
        let text = serde_json::to_string(&line)
            .map_err(|_| AuditError::InvalidEntry("entry cannot be encoded"))?;
        writeln!(out, "{text}").map_err(io)?;
        count += 1;
    }
    out.flush().map_err(io)?;
    Ok(ExportSummary {
        entries: count,
        tree_size: size,
        origin: log.origin().to_string(),
    })
}

fn parse_unverified_size(note: &str) -> Result<u64, AuditError> {
    note.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .ok_or_else(|| AuditError::Corrupt("freshly signed checkpoint does not parse".into()))
}

/// Verifies an export with only the public key. Any malformed line, bad signature, bad proof,
/// duplicate or out-of-order index fails with the line number.
pub fn verify_export(
    input: &mut dyn BufRead,
    verifier: &NoteVerifier,
) -> Result<ExportSummary, ExportError> {
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    let mut checkpoint: Option<Checkpoint> = None;
    let mut last_index: Option<u64> = None;
    let mut entries = 0u64;
    loop {
        buf.clear();
        let read = (&mut *input)
            .take(MAX_EXPORT_LINE + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| ExportError {
                line: line_no + 1,
                reason: format!("read error ({})", e.kind()),
            })?;
        if read == 0 {
            break;
        }
        line_no += 1;
        let fail = |reason: &str| ExportError {
            line: line_no,
            reason: reason.to_string(),
        };
        if buf.len() as u64 > MAX_EXPORT_LINE {
            return Err(fail("line is longer than 1 MiB"));
        }
        let text = std::str::from_utf8(&buf)
            .map_err(|_| fail("line is not UTF-8"))?
            .trim_end();
        if text.is_empty() {
            return Err(fail("empty line"));
        }
        let parsed: ExportLine =
            serde_json::from_str(text).map_err(|_| fail("line is not a valid export record"))?;
        match (parsed, &checkpoint) {
            (ExportLine::Checkpoint { note }, None) => {
                let cp = Checkpoint::parse_and_verify(&note, verifier)
                    .map_err(|e| fail(&e.to_string()))?;
                checkpoint = Some(cp);
            }
            (ExportLine::Checkpoint { .. }, Some(_)) => return Err(fail("second checkpoint line")),
            (ExportLine::Entry { .. }, None) => {
                return Err(fail("entry before the checkpoint line"));
            }
            (
                ExportLine::Entry {
                    index,
                    entry,
                    proof,
                },
                Some(cp),
            ) => {
                if last_index.is_some_and(|last| index <= last) {
                    return Err(fail("entry indexes are not strictly increasing"));
                }
                if index >= cp.size {
                    return Err(fail("entry index is beyond the checkpoint's tree size"));
                }
                if entry.get("index").and_then(Value::as_u64) != Some(index) {
                    return Err(fail("entry's own index differs from the line's index"));
                }
                let leaf = canonical::to_canonical_bytes(&entry)
                    .map_err(|_| fail("entry has a non-integer number"))?;
                Entry::from_json_bytes(&leaf)
                    .map_err(|_| fail("entry is not a valid audit entry"))?;
                let path = proof
                    .iter()
                    .map(|h| {
                        base64::engine::general_purpose::STANDARD
                            .decode(h)
                            .ok()
                            .and_then(|v| Hash::try_from(v).ok())
                    })
                    .collect::<Option<Vec<Hash>>>()
                    .ok_or_else(|| fail("proof hash is not 32 bytes of base64"))?;
                merkle::verify_inclusion(
                    &merkle::leaf_hash(&leaf),
                    index,
                    cp.size,
                    &path,
                    &cp.root,
                )
                .map_err(|e| fail(&format!("inclusion proof of entry {index}: {e}")))?;
                last_index = Some(index);
                entries += 1;
            }
        }
    }
    let cp = checkpoint.ok_or(ExportError {
        line: line_no,
        reason: "no checkpoint line".into(),
    })?;
    Ok(ExportSummary {
        entries,
        tree_size: cp.size,
        origin: cp.origin,
    })
}

/// One line of an accounting of disclosures (45 CFR 164.528(b)(2)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DisclosureRecord {
    /// Date and time of the disclosure (RFC 3339, UTC).
    pub date: String,
    /// Recipient name (and address, if known).
    pub recipient: String,
    /// Purpose of the disclosure (HL7 PurposeOfUse code).
    pub purpose: PurposeOfUse,
    /// Brief description of the PHI disclosed.
    pub description: String,
    /// Audit log index, so each line can be proven with `phigate audit prove`.
    pub audit_index: u64,
}

/// The accounting of disclosures for one patient, given the patient's keyed hashes under every
/// key held, oldest first. Only [`Event::Disclosure`] entries are disclosures.
pub async fn disclosures(
    log: &AuditLog,
    patient_refs: Vec<crate::event::KeyedHash>,
) -> Result<Vec<DisclosureRecord>, AuditError> {
    if patient_refs.is_empty() {
        return Err(AuditError::InvalidEntry("no patient reference given"));
    }
    let filter = QueryFilter {
        kind: Some("disclosure".into()),
        patient: patient_refs,
        ..Default::default()
    };
    Ok(log
        .query(&filter)
        .await?
        .into_iter()
        .filter_map(|(entry, _)| match entry.event {
            Event::Disclosure(d) => Some(DisclosureRecord {
                date: crate::event::format_time(&entry.time),
                recipient: d.recipient,
                purpose: d.purpose,
                description: d.description,
                audit_index: entry.index,
            }),
            _ => None,
        })
        .collect())
}

/// Writes disclosure records as RFC 4180 CSV. Fields starting with `=`, `+`, `-`, `@`, tab or
/// carriage return are prefixed with `'` so a spreadsheet does not evaluate them as formulas.
pub fn disclosures_csv(records: &[DisclosureRecord], out: &mut dyn Write) -> std::io::Result<()> {
    out.write_all(b"date,recipient,purpose,description,audit_index\r\n")?;
    for r in records {
        let purpose = serde_json::to_value(r.purpose)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let fields = [
            r.date.clone(),
            r.recipient.clone(),
            purpose,
            r.description.clone(),
            r.audit_index.to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.write_all(line.join(",").as_bytes())?;
        out.write_all(b"\r\n")?;
    }
    Ok(())
}

fn csv_field(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}
