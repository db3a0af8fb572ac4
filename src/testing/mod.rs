//! Test support, behind the `testing` feature.
//!
//! - `conformance`: the reusable conformance suite every registry must pass.
//! - `baseline`: a global-lock reference registry, the oracle and baseline.

pub mod baseline;

pub mod conformance;
