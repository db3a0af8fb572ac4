//! Test support, behind the `testing` feature.
//!
//! - `conformance`: the reusable conformance suite every registry must pass.
//! - `baseline`: a global-lock reference registry, the oracle and baseline.
//! - `postgres` (with feature `postgres`): a fresh database per test on the
//!   server `.ci/run` starts.

// Test support fails a test the way tests do: by panicking.
#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod baseline;

pub mod conformance;

#[cfg(feature = "postgres")]
pub mod postgres;
