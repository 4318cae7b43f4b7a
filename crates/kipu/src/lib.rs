//! A client for the Kipu Health EHR API (v3 and v4).
//!
//! Its one job: move data between Kipu and phigate correctly and without leaking it. It does
//! what the Python library `kipu-python` does, without its defects:
//!
//! * [`signing`]: the APIAuth HMAC signature (v3 HMAC-SHA1, v4 HMAC-SHA256). The request target
//!   is built once, and the signature covers exactly the bytes that go on the wire, so parameters
//!   with `:`, `/`, `*`, `(`, `)` or `!` authenticate (kipu-python signs one URL and sends another).
//! * [`endpoints`]: the catalogue of the 85 endpoints, shared with the simulator.
//! * [`Client`]: all 85 endpoints as typed methods grouped by resource
//!   (`client.patients().census(&CensusQuery::default()).stream()`), typed query builders
//!   ([`query`]), serde models ([`models`]), pagination as a `Stream`, retries, and a raw escape
//!   hatch ([`Client::get`], [`Client::request`]).
//!
//! ```no_run
//! # async fn demo(client: kipu::Client) -> Result<(), kipu::Error> {
//! use futures::TryStreamExt as _;
//! let mut census = client.patients().census(&kipu::query::CensusQuery::default()).per(100).stream();
//! while let Some(patient) = census.try_next().await? {
//!     let vitals = client
//!         .medical_records()
//!         .patient_vital_signs(patient.casefile_id.expose(), &Default::default())
//!         .collect_all()
//!         .await?;
//!     # let _ = vitals;
//! }
//! # Ok(()) }
//! ```
//!
//! # Security invariants
//!
//! * **Transport.** rustls on aws-lc-rs, TLS 1.2 minimum, certificate verification always on
//!   (platform roots plus an optional extra CA bundle; there is no switch to turn verification
//!   off). Plain `http://` is refused unless the host is loopback (the simulator). No proxy is
//!   taken from the environment, no cookies are kept.
//! * **Redirects are never followed**: following one would re-send the signed `Authorization`
//!   to a target it was not made for. A 3xx is [`Error::Redirect`].
//! * **Signed = sent.** Every request target is built once by [`signing::RequestTarget`], and
//!   before sending, the client checks that the URL library did not alter it (path ids `.`/`..`
//!   are refused because URL parsers resolve them). Each attempt carries a fresh `Date` and a
//!   fresh signature.
//! * **Retries** only for GETs (429, 502, 503, 504, connection errors, timeouts, truncated
//!   bodies), with full-jitter exponential backoff, `Retry-After` honoured up to a cap, a maximum
//!   number of attempts and an overall deadline. Writes are retried only when the caller opts in
//!   ([`WriteOptions::retry`]): a retried POST can create a duplicate record.
//! * **One concurrency limit** per client (a semaphore shared by all its clones and calls).
//! * **No PHI in errors.** [`Error`]'s `Display`/`Debug` carry method, status and the endpoint
//!   *template*, never a filled-in id, a query value or a body; the body is reachable only as
//!   `phi::Sensitive<ErrorBody>`. Transport errors are stored with their URL stripped, decode
//!   errors without serde's message (which can quote a value).
//! * **No PHI in Debug of data.** Models wrap identifiers and free text in `phi::Sensitive`
//!   (see [`models`] for the exact line drawn); raw responses come back as
//!   `Sensitive<serde_json::Value>`; query values and path ids held by a [`List`] are
//!   `Sensitive`.
//! * The crate reads no environment variable and no file, and does not log.
//!
//! # Decisions where the spec and security disagree
//!
//! * kipu-python accepts `http://` anywhere and follows redirects; this client refuses both.
//! * kipu-python accepts API versions other than 3 and 4; this client refuses them.
//! * The base URL must be `scheme://host[:port]`: a path prefix would not be part of what
//!   kipu-python signs, and guessing would produce signatures the server rejects.
//! * Booleans are sent as `true`/`false`, not Python's `True`/`False`.

#![forbid(unsafe_code)]

mod client;
pub mod config;
pub mod endpoints;
mod error;
pub mod models;
pub mod multipart;
pub mod query;
pub mod resources;
pub mod signing;

pub use client::{Client, List, Page, Pagination, WriteBody, WriteOptions, parse_retry_after};
pub use config::{ClientConfig, ClientConfigBuilder, Clock, RetryPolicy};
pub use error::{DecodeCategory, Error, ErrorBody, Route};
pub use multipart::Attachment;
pub use signing::{ApiVersion, Credentials};
