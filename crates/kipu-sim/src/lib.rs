//! A Kipu API simulator: verifies APIAuth signatures like the real service and serves
//! deterministic synthetic data for all 85 endpoints.

#![forbid(unsafe_code)]
