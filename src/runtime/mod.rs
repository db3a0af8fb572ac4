//! The actor runtime: who owns what.
//!
//! - Each registered process is one process actor while it is in use. It
//!   alone owns and mutates that process's state: record, event log,
//!   replay index, acked wakes, wait state, lease, and the callers parked
//!   in `wait_event_after` / `await_process`. Calls on one process are
//!   serialized by its mailbox; calls on different processes run in
//!   parallel, with no global lock anywhere. An idle process with nothing
//!   parked has no actor: its committed state waits in the store, and the
//!   next call starts a fresh actor from it.
//! - The registry supervisor creates processes (so racing registrations of
//!   one id end in one process), activates and passivates their actors,
//!   owns the session-grant index, and supervises: a process actor that
//!   panics is restarted from its committed state in the store, and no other
//!   process notices.
//! - [`ActorProcessRegistry`] is the facade: it turns each trait call into
//!   one message and awaits the reply. Per-process calls go straight to the
//!   process actor through the routing table (`routes`), never through the
//!   supervisor; reads of a record use the snapshot its actor publishes.

pub mod facade;
pub(crate) mod messages;
pub(crate) mod process;
pub(crate) mod routes;
pub(crate) mod supervisor;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, SystemClock};
use crate::events::ProcessTerminalState;
use crate::model::ProcessStatus;
use crate::rules::limits::Limits;
use crate::rules::schema::SchemaCache;
use crate::store::{MemoryStore, ProcessStore};

pub use facade::ActorProcessRegistry;

/// What callers do when a process has `capacity` calls in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverloadPolicy {
    /// Wait for a slot (async backpressure).
    #[default]
    Wait,
    /// Fail at once with [`RegistryError::Overloaded`](crate::RegistryError::Overloaded).
    Reject,
}

/// The bound on one process's mailbox.
///
/// ractor mailboxes are unbounded; the facade bounds them instead, with one
/// semaphore per active process, so a flood of calls on one process cannot
/// grow memory without limit. Parked waiters do not count against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxConfig {
    /// Calls in flight per process.
    pub capacity: usize,
    /// What a caller beyond the bound does.
    pub policy: OverloadPolicy,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        Self { capacity: 1024, policy: OverloadPolicy::Wait }
    }
}

/// How often a process actor may crash before it is quarantined, as OTP's
/// restart intensity: more than `max_restarts` within `within_ms` (by the
/// registry clock) quarantines the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartIntensity {
    /// Restarts allowed inside the window.
    pub max_restarts: usize,
    /// The window, in milliseconds.
    pub within_ms: u64,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        Self { max_restarts: 5, within_ms: 5_000 }
    }
}

/// How to start an [`ActorProcessRegistry`].
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Where time comes from (leases, timestamps, restart windows, idleness).
    pub clock: Arc<dyn Clock>,
    /// Bounds on caller input.
    pub limits: Limits,
    /// Where committed state is kept.
    pub store: Arc<dyn ProcessStore>,
    /// The bound on each process's calls in flight.
    pub mailbox: MailboxConfig,
    /// When a crashing process is quarantined.
    pub restart_intensity: RestartIntensity,
    /// Stop the actor of a process idle (no call, nothing parked) this long;
    /// its state stays in the store and the next call re-activates it.
    /// `None` keeps actors until shutdown.
    pub passivate_after: Option<Duration>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            limits: Limits::default(),
            store: Arc::new(MemoryStore::new()),
            mailbox: MailboxConfig::default(),
            restart_intensity: RestartIntensity::default(),
            passivate_after: Some(Duration::from_secs(30)),
        }
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

    /// Bounds each process's calls in flight.
    #[must_use]
    pub fn with_mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.mailbox = mailbox;
        self
    }

    /// Sets the restart intensity.
    #[must_use]
    pub fn with_restart_intensity(mut self, restart_intensity: RestartIntensity) -> Self {
        self.restart_intensity = restart_intensity;
        self
    }

    /// Passivates actors idle for `idle` (`None`: never).
    #[must_use]
    pub fn with_passivation(mut self, idle: Option<Duration>) -> Self {
        self.passivate_after = idle;
        self
    }
}

/// A cheap snapshot of the registry, for dashboards. Each count is read
/// from an atomic counter: O(1), no message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Actors started for passive processes (first use or after passivation).
    pub activations: u64,
    /// Actors stopped because their process was idle.
    pub passivations: u64,
    /// Processes quarantined after repeated crashes, by id.
    pub quarantined: Vec<String>,
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
    activations: AtomicU64,
    passivations: AtomicU64,
    quarantined: Mutex<BTreeSet<String>>,
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

    pub(crate) fn activated(&self) {
        self.activations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn passivated(&self) {
        self.passivations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn quarantine(&self, process_id: &str) {
        if let Ok(mut quarantined) = self.quarantined.lock() {
            quarantined.insert(process_id.to_owned());
        }
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
            activations: self.activations.load(Ordering::Relaxed),
            passivations: self.passivations.load(Ordering::Relaxed),
            quarantined: self.quarantined.lock().map(|ids| ids.iter().cloned().collect()).unwrap_or_default(),
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
    pub(crate) mailbox: MailboxConfig,
    pub(crate) restart_intensity: RestartIntensity,
    pub(crate) passivate_after: Option<Duration>,
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
            mailbox: config.mailbox,
            restart_intensity: config.restart_intensity,
            passivate_after: config.passivate_after,
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
