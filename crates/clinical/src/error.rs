//! Typed errors. Every message names the field, rule or record position that is wrong and
//! never the value: a date of birth, a lab value or a free-text note never reaches an error
//! string (they are PHI or health information).

/// An invalid input to the clinical model or to a computation over it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClinicalError {
    /// A source record id is empty, too long or holds characters outside printable ASCII.
    #[error("invalid source record id: {0}")]
    InvalidSourceId(&'static str),
    /// Two items of one record carry the same source record id.
    #[error("duplicate source record id in the {0} list")]
    DuplicateSourceId(&'static str),
    /// A date that cannot be true (outside 1900..=2100, an end before its start, an event
    /// before birth, a birth date after the evaluation date).
    #[error("{field}: impossible date ({reason})")]
    ImpossibleDate {
        /// The field (static name).
        field: &'static str,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A date string that does not parse as an ISO 8601 date or date-time.
    #[error("{field}: not an ISO 8601 date")]
    UnparsableDate {
        /// The field (static name).
        field: &'static str,
    },
    /// A code that does not have the syntax of its code system.
    #[error("{field}: not a valid {system} code")]
    InvalidCode {
        /// The field (static name).
        field: &'static str,
        /// The code system.
        system: &'static str,
    },
    /// A measurement that is negative, not finite or physiologically absurd.
    #[error("{what}: value outside the plausible range {range}")]
    ValueOutOfRange {
        /// The measurement (static name).
        what: &'static str,
        /// The accepted range, in the canonical unit.
        range: &'static str,
    },
    /// A measurement in a unit this crate does not accept for it.
    #[error("{what}: unit not accepted (accepted: {expected})")]
    BadUnit {
        /// The measurement (static name).
        what: &'static str,
        /// The accepted units.
        expected: &'static str,
    },
    /// A required field is missing.
    #[error("{0}: required field missing")]
    Missing(&'static str),
    /// Any other structural problem, described by a static reason.
    #[error("{what}: {reason}")]
    Invalid {
        /// The item (static name).
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// An error importing a bundle or a set of Kipu records: where it happened plus the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{format} import, {location}: {cause}")]
pub struct ImportError {
    /// `FHIR R4` or `Kipu`.
    pub format: &'static str,
    /// Position in the input (`entry 3 (Observation)`, `vital_signs[2]`): indexes and static
    /// type names only.
    pub location: String,
    /// What is wrong.
    pub cause: ClinicalError,
}
