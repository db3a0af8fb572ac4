//! A registry of supervised, long-lived background processes for
//! high-concurrency in-process runtimes (agent runtimes, workflow engines,
//! job runners), built on per-process [`ractor`] actors.
//!
//! A *process* is work that outlives the call that started it. The registry
//! lets a runtime register it once, append typed events to its own ordered
//! log, wait for an event or for its outcome without polling, decide which
//! sessions may address it, and after a crash hand each unfinished process
//! to exactly one worker.
//!
//! # Guarantees
//!
//! - **Idempotent registration.** Registering an id twice with an equal
//!   registration returns the existing record; racing registrations of one
//!   id end in one process. A different registration is a conflict.
//! - **Idempotent, gapless appends.** Each process's events are numbered
//!   1, 2, 3, ... with no gap and no duplicate, whatever the concurrency; a
//!   repeated request with the same replay key returns the original event.
//! - **No lost wakeup.** A caller parked in
//!   [`wait_event_after`](ProcessRegistry::wait_event_after) or
//!   [`await_process`](ProcessRegistry::await_process) is answered by the
//!   commit that satisfies it, with no polling, no timer and no window in
//!   between. Dropping its future leaves nothing behind.
//! - **Fenced leases.** At most one unexpired lease per process; every
//!   grant takes a fencing token strictly greater than any before it. The
//!   writes of [`FencedProcessRegistry`] commit only under the current,
//!   unexpired lease, checked in the same step as the write, so a worker
//!   whose process was taken over cannot write to it.
//! - **Recovery exactly once.** [`worker::ProcessWorker`] runs every
//!   unfinished process under a lease, renews it, cancels a handler whose
//!   lease is lost, and completes through the fenced completion.
//! - **Supervision.** A process actor that panics is restarted from its
//!   committed state; other processes never notice. One that keeps
//!   crashing is quarantined.
//! - **Typed errors.** Bad input gets a [`RegistryError`] naming the
//!   process and changes nothing; nothing on an input path panics.
//! - **Durability tier.** [`ProcessRegistry::durability_tier`] reports what
//!   the store really guarantees: [`DurabilityTier::Inline`] for the default
//!   [`MemoryStore`] (state survives actor restarts, not the OS process);
//!   [`DurabilityTier::Durable`] for [`SqliteStore`]
//!   ([`ActorProcessRegistry::open`]), which fsyncs every change before the
//!   call that made it returns and shows nothing that is not yet durable.
//!
//! # Example
//!
//! ```
//! use process_registry::{
//!     ActorProcessRegistry, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessInput,
//!     ProcessRegistration, ProcessRegistry, RegistryConfig,
//! };
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), process_registry::RegistryError> {
//! let registry = ActorProcessRegistry::start(RegistryConfig::default()).await?;
//! let progress = ProcessEventType::new("progress", json!({"type": "object", "required": ["percent"]}));
//! let registration = ProcessRegistration::new("job-1", ProcessInput::definition("resize", Default::default()))
//!     .with_extra_event_types([progress]);
//! registry.register_process(registration).await?;
//!
//! // Someone waits for the outcome without polling...
//! let waiter = {
//!     let registry = registry.clone();
//!     tokio::spawn(async move { registry.await_process("job-1").await })
//! };
//! // ...while the runner reports progress and completes the process.
//! let appended = registry.append_event("job-1", ProcessEventAppendRequest::new("progress", json!({"percent": 50}))).await?;
//! assert_eq!(appended.event.sequence, 1);
//! registry.complete_process("job-1", ProcessAwaitOutput::success(json!({"pixels": 640}))).await?;
//!
//! assert_eq!(waiter.await.expect("joined")?, ProcessAwaitOutput::success(json!({"pixels": 640})));
//! registry.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layers
//!
//! - [`model`] and [`events`]: plain data types, as the specification names them.
//! - `rules`: pure functions that decide (validation, hashing, semantics,
//!   append planning, leases), unit-tested without actors. Internal; public
//!   with the `testing` feature, for oracles and model-based tests.
//! - [`runtime`]: the actors that sequence calls and own state, and the
//!   [`ActorProcessRegistry`] facade implementing [`ProcessRegistry`].
//! - [`store`]: where committed state is kept, behind one seam.
//! - [`fenced`] and [`worker`]: writes fenced by a lease, and the recovery
//!   worker built on the public traits only.
//! - [`clock`], [`error`], [`registry`]: time, the typed errors, the trait.

#![deny(missing_docs)]
// The no-panic promise, enforced where it is made: library code neither
// unwraps nor indexes unchecked. Each exception is a commented `allow` on
// the one item whose invariant makes it safe. Unit tests may panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod batch;
pub mod clock;
pub mod error;
pub mod events;
pub mod fenced;
pub mod model;
pub mod registry;
#[cfg(feature = "testing")]
pub mod rules;
#[cfg(not(feature = "testing"))]
mod rules;
pub mod runtime;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

pub use batch::BatchProcessRegistry;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{PluginError, RegistryError};
pub use events::*;
pub use fenced::FencedProcessRegistry;
pub use model::*;
pub use registry::ProcessRegistry;
pub use rules::limits::Limits;
pub use runtime::{
    ActorProcessRegistry, MailboxConfig, OverloadPolicy, RegistryConfig, RegistryStats, RestartIntensity,
    DEFAULT_READY_ON_REGISTER,
};
pub use store::{CommitMode, MemoryStore, ProcessStore, SqliteOptions, SqliteStore, SyncMode};
#[cfg(feature = "postgres")]
pub use store::{PostgresOptions, PostgresStore};

/// The README's usage example, compiled and run as a doc-test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
