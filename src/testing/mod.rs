//! Test support, behind the `testing` feature.
//!
//! - `conformance`: the reusable conformance suite every registry must pass.
//! - `baseline`: a global-lock reference registry, the oracle and baseline.
//! - `postgres` (with feature `postgres`): a fresh database per test on the
//!   server `.ci/run` starts.
//! - `preparation`: registration preparation alone, and its floor (for
//!   the loadgen).
//! - [`until`]: a bounded wait for state a registry reaches asynchronously.

// Test support fails a test the way tests do: by panicking.
#![allow(clippy::panic, clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

pub mod baseline;

pub mod conformance;

#[cfg(feature = "postgres")]
pub mod postgres;

pub mod preparation;

/// Waits until `condition` holds, checking every millisecond for at most
/// 5 s of checks, and panics (failing the test) when it never does. For
/// state a registry reaches asynchronously (an actor passivated, a waiter
/// parked); it bounds a wait, it times nothing.
pub async fn until(mut condition: impl FnMut() -> bool) {
    for _ in 0..5_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("condition never became true");
}
