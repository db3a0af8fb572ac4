//! Pure rules: plain functions over plain data.
//!
//! Everything here decides; nothing here owns state, sends messages or
//! touches storage. The actors in [`crate::runtime`] sequence calls and own
//! state, and call into these functions to know what to commit. Keeping the
//! rules pure is what lets them be unit-tested without actors and reused by
//! the global-lock reference registry used as a test oracle and baseline.
//!
//! - [`hashing`]: canonical JSON and SHA-256 (registration, payload, wake ids).
//! - [`canonical`]: canonical JSON written straight from `Serialize` (registrations).
//! - [`limits`]: size and depth limits, checked before anything recursive runs.
//! - [`schema`]: JSON Schema compilation and payload validation.
//! - [`registration`]: preparing and validating a registration, and when two are the same.
//! - [`semantics`]: selectors and materialization of terminal and wake semantics.
//! - [`append`]: the numbered append steps of the spec, as one planning function.
//! - [`lease`]: claim, renew and release of fenced leases.
//! - [`scope`]: which session scopes are accepted, so scope ids never collide.

pub mod append;
pub mod canonical;
pub mod hashing;
pub mod lease;
pub mod limits;
pub mod registration;
pub mod schema;
pub mod scope;
pub mod semantics;
