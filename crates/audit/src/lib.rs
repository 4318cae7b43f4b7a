//! phigate's tamper-evident audit log: one job, recording who did what to which patient's data
//! in a form an auditor can verify without trusting the operator.
//!
//! # Design
//!
//! * **Events** ([`Event`]): authentication attempts, PHI access (with HL7 purpose of use),
//!   disclosures, model inferences, configuration changes, key lifecycle, break-glass grants and
//!   denied policy decisions, each a typed struct.
//! * **Entries** are JSON objects `{"event":{...},"index":N,"sealed_detail":"..."?,"time":"...",
//!   "v":1}` encoded with RFC 8785 (JCS, integers only; see [`canonical`]). The exact canonical
//!   bytes are stored and hashed as an RFC 6962 leaf, so a hash never depends on a serializer.
//!   Example leaf: `{"event":{"action":"key","key_id":"kek-2","key_purpose":"kek",
//!   "kind":"key_lifecycle","principal":"admin:ops"},"index":0,
//!   "time":"2026-11-23T14:40:18.123456Z","v":1}` (shown wrapped). Events are encoded to
//!   JCS directly, member by member (`encode` module, [`Event::canonical_bytes`]); a property
//!   test holds that this equals the generic path through `serde_json::Value`.
//! * **Merkle log** ([`merkle`]): RFC 6962 leaf/node hashing; inclusion and consistency proofs
//!   with RFC 9162 verifiers that reject truncated and extended proofs.
//! * **Checkpoints** ([`Checkpoint`]): C2SP signed-note checkpoints (origin, size, root, plus a
//!   `timestamp` extension line), Ed25519 via aws-lc-rs; the note key id is derived as C2SP says.
//! * **Storage**: SQLite (default; file 0600, WAL, `synchronous=FULL`) or PostgreSQL for several
//!   writers. A single tree-head row, locked per batch (`FOR UPDATE` / `BEGIN IMMEDIATE`),
//!   serializes index assignment across processes: no gaps, no forks. Schema version 2: an
//!   append writes only the entry row (index, canonical bytes, leaf hash) and the tree head;
//!   the search columns (time, kind, principal, patient HMAC) are copied into an indexed side
//!   table after the acknowledgement, in batches (every 16,384 entries or 50 ms idle), and
//!   queries read the not-yet-copied entries from the log itself, so results are always
//!   complete. Version-1 databases are migrated when opened for writing.
//! * **Group commit**: [`AuditLog::append`] hands the event to one writer task, which commits
//!   everything queued in one transaction (one multi-row `INSERT`, one fsync) and only then
//!   answers each caller with its index. Batches adapt to the callers: the writer counts the
//!   callers inside `append` and waits (at most [`LogConfig::max_linger`]) until each has
//!   queued its entry, so 64 waiting writers share one fsync and a lone writer waits for
//!   nobody. If the transaction fails, every caller in it gets [`AuditError::WriteFailed`] and
//!   must refuse the audited action (Vault's rule: no audit, no action).
//! * **Keys** ([`keys`]): the Ed25519 checkpoint key and the HMAC keys are stored sealed
//!   (envelope-encrypted by the `sealed` crate under the KEK from the environment, a key file
//!   or a PKCS#11 token), like every other secret in phigate; only the public verifier key is
//!   in clear, for auditors.
//! * **Verification** ([`verify_log`]) is pinned to the tree head read at its start (so it
//!   runs while appends continue), reads entries in packed pages of 1,024 per query, runs over
//!   aligned 65,536-leaf chunks on four tasks and combines the chunk roots; on any
//!   irregularity it falls back to one ordered row-by-row pass, so the damage reported never
//!   depends on the parallelism.
//!
//! # Security invariants
//!
//! * No PHI in clear: patient ids, MRNs, record ids and free-text reasons enter the log only as
//!   [`KeyedHash`] values, `hmac-sha256:<key id>:<hex>` (Vault's format with a key id, so old
//!   entries stay searchable after a key rotation: searches hash the id under every key held).
//!   Free-text reasons are needed by reviewers; they go, encrypted by the caller, in the
//!   optional [`SealedDetail`] blob, and the clear log carries only their keyed hash. Model
//!   inputs and outputs are logged as plain SHA-256 content hashes (content addressing, to match
//!   stored artifacts); a caller whose input is low-entropy identifying data must use a keyed
//!   hash instead. Configuration before/after values have secret-looking fields replaced by
//!   keyed hashes ([`ConfigChange::new`]). Disclosure recipients and descriptions are in clear
//!   because the patient's accounting must show them; descriptions name categories, not data.
//! * Append-only: there is no API that updates or deletes entries; storage triggers refuse
//!   UPDATE/DELETE/TRUNCATE; retention is "nothing is ever deleted" ([`RETENTION_YEARS`] is the
//!   floor any future archival must respect).
//! * Verification ([`verify_log`], [`verify_export`]) needs only the public key and recomputes
//!   every leaf, every node and every checkpoint signature; it reports the first bad index and
//!   the kind of damage.
//! * A database written by a newer schema version is refused, never rewritten.
//! * Errors never contain entry contents or key material; parsers of checkpoints, proofs and
//!   exports are bounded and never panic on malformed input.
//!
//! Decision (spec vs security): CoCo's logger stores `patient_id` in clear and only masks detail
//! keys by name; this crate never accepts an identifier in clear at all ([`KeyedHash`] can only
//! be made by a [`PatientHasher`]).

#![forbid(unsafe_code)]

pub mod canonical;
pub mod checkpoint;
mod encode;
mod error;
pub mod event;
pub mod export;
pub mod keys;
mod log;
pub mod merkle;
mod pages;
mod search;
mod sqlite_append;
mod store;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use error::AuditError;
pub use event::{
    AccessAction, AuthFailureReason, AuthMethod, AuthenticationAttempt, BreakGlass, ConfigChange,
    ContentHash, Disclosure, EVENT_KINDS, Entry, Event, KeyAction, KeyLifecycle, KeyedHash,
    ModelInference, Outcome, PhiAccess, PolicyDenied, PurposeOfUse, SealedDetail,
};
pub use export::{
    DisclosureRecord, ExportError, ExportSummary, disclosures, disclosures_csv, export,
    verify_export,
};
pub use keys::{CheckpointSigner, FileKeys, KeyError, NoteVerifier, PatientHasher};
pub use log::{AuditLog, InclusionProof, LogConfig, QueryFilter, RETENTION_YEARS};
pub use store::{SCHEMA_VERSION, Storage};
pub use verify::{
    DEFAULT_CHUNK_LEAVES, Damage, DamageKind, VerifyOptions, VerifyReport, verify_log,
    verify_log_with,
};
