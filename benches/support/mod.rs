//! What the criterion benches (`benches/registry.rs`) and the loadgen
//! (`benches/loadgen/`) share, so that both measure the same thing in the
//! same way. Both include this folder by path (`#[path] mod support;`).
//!
//! - `workload`: how a benchmark process is registered, what its events look
//!   like, and the runtime every figure runs on.
//! - `subject`: the two registries every figure compares.
//! - `parking`: timing how fast a parked caller is woken.
//!
//! Calls that can fail return `Result<_, String>`: the loadgen reports the
//! message and exits non-zero, the criterion benches panic with it.

pub mod parking;
pub mod subject;
pub mod workload;
