//! The actor runtime: who owns what.
//!
//! - Each registered process is one [`ProcessActor`](process::ProcessActor).
//!   It alone owns and mutates that process's state: record, event log,
//!   replay index, acked wakes, wait state, lease, and the callers parked
//!   in `wait_event_after` / `await_process`. Calls on one process are
//!   serialized by its mailbox; calls on different processes run in
//!   parallel, with no global lock anywhere.
//! - The [`RegistrySupervisor`](supervisor::RegistrySupervisor) creates
//!   process actors (so racing registrations of one id end in one actor),
//!   owns the session-grant index, and supervises: a process actor that
//!   panics is restarted from its committed state in the store, and no other
//!   process notices.
//! - [`ActorProcessRegistry`] is the facade: it turns each trait call into
//!   one message and awaits the reply. Per-process calls go straight to the
//!   process actor through the routing table ([`routes`]), never through the
//!   supervisor; reads of a record use the snapshot its actor publishes.

pub mod facade;
pub mod messages;
pub mod process;
pub mod routes;
pub mod supervisor;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::events::ProcessTerminalState;
use crate::model::ProcessStatus;
use crate::rules::limits::Limits;
use crate::rules::schema::SchemaCache;
use crate::store::{MemoryStore, ProcessStore};

pub use facade::ActorProcessRegistry;

/// How to start an [`ActorProcessRegistry`].
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Where time comes from (leases, timestamps).
    pub clock: Arc<dyn Clock>,
    /// Bounds on caller input.
    pub limits: Limits,
    /// Where committed state is kept.
    pub store: Arc<dyn ProcessStore>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { clock: Arc::new(SystemClock), limits: Limits::default(), store: Arc::new(MemoryStore::new()) }
    }
}

impl RegistryConfig {
    /// Reads time from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Bounds input by `limits`.
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Keeps committed state in `store`.
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn ProcessStore>) -> Self {
        self.store = store;
        self
    }
}

/// A cheap snapshot of the registry, for dashboards. Each field is read
/// from an atomic counter: O(1), no message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryStats {
    /// Non-terminal processes.
    pub running: u64,
    /// Completed processes.
    pub completed: u64,
    /// Failed processes.
    pub failed: u64,
    /// Cancelled processes.
    pub cancelled: u64,
    /// Process actors currently alive.
    pub live_actors: u64,
    /// Callers parked in `wait_event_after` / `await_process`.
    pub parked_waiters: u64,
    /// Process actor restarts after a panic.
    pub restarts: u64,
}

/// Counters behind [`RegistryStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    running: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    live_actors: AtomicI64,
    parked_waiters: AtomicI64,
    restarts: AtomicU64,
}

impl Counters {
    pub(crate) fn count_status(&self, status: &ProcessStatus) {
        let counter = match status {
            ProcessStatus::Running => &self.running,
            ProcessStatus::Completed { .. } => &self.completed,
            ProcessStatus::Failed { .. } => &self.failed,
            ProcessStatus::Cancelled { .. } => &self.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_terminal(&self, state: ProcessTerminalState) {
        self.running.fetch_sub(1, Ordering::Relaxed);
        let counter = match state {
            ProcessTerminalState::Completed => &self.completed,
            ProcessTerminalState::Failed => &self.failed,
            ProcessTerminalState::Cancelled => &self.cancelled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn actor_started(&self) {
        self.live_actors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn actor_stopped(&self) {
        self.live_actors.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn parked(&self, delta: i64) {
        self.parked_waiters.fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RegistryStats {
        let non_negative = |value: i64| u64::try_from(value).unwrap_or(0);
        RegistryStats {
            running: self.running.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            live_actors: non_negative(self.live_actors.load(Ordering::Relaxed)),
            parked_waiters: non_negative(self.parked_waiters.load(Ordering::Relaxed)),
            restarts: self.restarts.load(Ordering::Relaxed),
        }
    }
}

/// What every actor and the facade share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) routes: routes::Routes,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: Limits,
    pub(crate) schemas: SchemaCache,
    pub(crate) store: Arc<dyn ProcessStore>,
    pub(crate) counters: Counters,
    pub(crate) stopping: AtomicBool,
    next_waiter: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: RegistryConfig) -> Self {
        Self {
            routes: routes::Routes::default(),
            clock: config.clock,
            limits: config.limits,
            schemas: SchemaCache::new(),
            store: config.store,
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            next_waiter: AtomicU64::new(1),
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn next_waiter_id(&self) -> u64 {
        self.next_waiter.fetch_add(1, Ordering::Relaxed)
    }
}
