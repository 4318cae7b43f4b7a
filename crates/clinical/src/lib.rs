//! Clinical intelligence as pure functions over a validated clinical record: care gaps from CMS
//! eCQM definitions (including behavioral-health measures), the LACE and HOSPITAL readmission
//! scores, deterministic extractive summaries whose every statement cites its source record, a
//! medication dose-range check and a cost guard. The crate's one job is the clinical logic; it
//! does no I/O (no network, no files, no environment, no clock): the gateway loads records,
//! passes "as of" dates in and serves the results.
//!
//! # Modules
//!
//! * [`model`]: the record model with validating constructors.
//! * [`fhir`]: import of FHIR R4 bundles of the shape CoCo's synthetic generator writes.
//! * [`kipu`]: mapping of the Kipu record JSON shapes (`docs/kipu-shapes.md`) into the model.
//! * [`valueset`]: the code lists (documented subsets of VSAC value sets).
//! * [`gaps`]: one rule per measure, with citations, denominators, exclusions and numerators.
//! * [`readmission`]: LACE and HOSPITAL exactly as published, tiers, interventions.
//! * [`summary`]: cited extractive summaries, citation verification, PHI scan and redaction.
//! * [`dose`]: maximum-daily-dose check over any text.
//! * [`cost`]: per-request ceiling and daily budget.
//! * [`coco`]: CoCo's response shapes (spec §1.4–1.6) and the conversions into them.
//!
//! # Security invariants
//!
//! * PHI never reaches an error message, a panic message or `Debug` output: errors name fields
//!   and rules, never values; the patient id, birth date and free text are
//!   [`phi::Sensitive`]; items print their kind and source id only.
//! * No silent defaults that change a score: impossible dates, negative or absurd values and
//!   unaccepted units are typed errors at construction; a score or rule that lacks an input
//!   reports "insufficient data" naming it. Nothing is invented: no confidence interval without
//!   a published basis, no statement without a citation.
//! * Deterministic: the same record and the same `as_of` give the same output, byte for byte.
//! * Summaries leave the crate only through a PHI scan whose redaction depends on the caller's
//!   role; roles the caller did not map are redacted.
//!
//! # Decisions where the spec and good practice disagree
//!
//! CoCo (spec §2) hard-coded patients, scored readmission from random inputs and gave
//! never-screened patients no gap. This crate follows the cited measures instead, and documents
//! each deviation from a measure in [`gaps`] and [`readmission`].

//! # Figures checked against their source, and not
//!
//! Checked (stated here with the citation, in agreement with the published figure as widely
//! reproduced, and computed by hand in a test): the LACE and HOSPITAL points tables, ranges,
//! bands and validation C-statistics ([`readmission`], `tests/readmission.rs`); each measure's
//! age bounds, windows, thresholds and exclusions as [`gaps`] states them
//! (`tests/care_gaps.rs`). Unconfirmed against a primary text: the completeness of the value-set
//! subsets ([`valueset`]), the maximum-daily-dose table ([`dose`]), priorities, impacts,
//! intervention effect sizes and cost estimates (phigate's or CoCo's figures), and the use of
//! LACE/HOSPITAL on behavioral-health stays (outside their validated population).
//! `docs/clinical-api.md` has the details.

#![forbid(unsafe_code)]

pub mod coco;
pub mod cost;
pub mod dose;
pub mod error;
pub mod fhir;
pub mod gaps;
pub mod kipu;
pub mod model;
pub mod readmission;
pub mod summary;
pub mod valueset;

pub use error::{ClinicalError, ImportError};
pub use model::PatientRecord;
