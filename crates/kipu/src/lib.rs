//! A client for the Kipu Health EHR API (v3 and v4).
//!
//! This crate does what the Python library `kipu-python` does, without its defects:
//!
//! * [`signing`]: the APIAuth HMAC signature (v3 HMAC-SHA1, v4 HMAC-SHA256). The request target
//!   is built once, and the signature covers exactly the bytes that go on the wire, so parameters
//!   with `:`, `/`, `*`, `(`, `)` or `!` authenticate (kipu-python signs one URL and sends another).
//! * [`endpoints`]: the catalogue of the 85 endpoints, shared with the simulator.

#![forbid(unsafe_code)]

pub mod endpoints;
pub mod signing;
