//! The actor runtime: who owns what.
//!
//! - Each registered process is one process actor while it is in use
//!   (`process`). It alone owns and mutates that process's state: record,
//!   event log, replay index, acked wakes, wait state, lease, and the callers
//!   parked in `wait_event_after` / `await_process`. Calls on one process
//!   are serialized by its mailbox; calls on different processes run in
//!   parallel, with no global lock anywhere. An idle process with nothing
//!   parked has no actor: its committed state waits in the store, and the
//!   next call starts a fresh actor from it.
//! - The registry supervisor (`supervisor`) creates processes (so racing
//!   registrations of one id end in one process), activates and passivates
//!   their actors, owns the session-grant index, and supervises: a process
//!   actor that panics is restarted from its committed state in the store,
//!   and no other process notices.
//! - [`ActorProcessRegistry`] is the facade: it turns each trait call into
//!   one message and awaits the reply. Per-process calls go straight to the
//!   process actor through the routing table (`routes`), never through the
//!   supervisor; reads of a record use the snapshot its actor publishes.
//!
//! The files, by job:
//!
//! - `lifecycle`: the registry handle: start, shutdown, stats.
//! - `facade`: the trait, each method a short delegation.
//! - `call`: the calling machinery: ask, park, mailbox permits, the retry
//!   policy per message, the guard that cancels a dropped wait.
//! - `input`: bounds on caller input checked in the caller's task (and
//!   the one check a caller outside the tasks leaves to the actor).
//! - `config`, `stats`, `shared`: what configures, what counts, and
//!   what every actor shares.
//! - `schemas`: the compiled-schema cache, shared across processes.
//! - `status_index`: the ids in order, one set per status, so listings
//!   cost O(result) and take no lock while they copy records.

mod call;
mod config;
mod facade;
mod input;
mod lifecycle;
mod process;
mod routes;
mod schemas;
mod shared;
mod stats;
mod status_index;
mod supervisor;

pub use config::{MailboxConfig, OverloadPolicy, RegistryConfig, RestartIntensity, DEFAULT_READY_ON_REGISTER};
pub use lifecycle::ActorProcessRegistry;
pub use stats::RegistryStats;

#[cfg(feature = "testing")]
pub(crate) use schemas::SchemaCache;
#[cfg(feature = "testing")]
pub(crate) use supervisor::grants::{owned_grants, GrantIndex};
