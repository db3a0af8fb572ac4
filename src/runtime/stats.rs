//! What the registry counts, for dashboards.
//!
//! Every count is an atomic updated where the event happens (the actors,
//! the supervisor, the waiter bookkeeping); [`RegistryStats`] is a snapshot
//! of them, O(1), taken without any message.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::events::ProcessTerminalState;
use crate::model::ProcessStatus;

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
    /// Callers parked in `wait_event_after` / `await_process`. A waiter is
    /// uncounted before it is answered, but after the call that satisfied
    /// it is: that caller may still see it counted for a moment.
    pub parked_waiters: u64,
    /// Process actor restarts after a panic.
    pub restarts: u64,
    /// Actors started for passive processes (first use or after passivation).
    pub activations: u64,
    /// Actors stopped because their process was idle.
    pub passivations: u64,
    /// Processes quarantined after repeated crashes, by id ascending.
    ///
    /// A quarantined process has no actor: reads of its committed state
    /// (`get_process`, `events_after`, `count_events_through`,
    /// `recent_events`, `wake_events_after`, `list_processes`) still
    /// answer, every mutation and wait gets
    /// [`RegistryError::Quarantined`](crate::RegistryError::Quarantined), and
    /// `list_non_terminal` leaves it out, so a recovery worker's sweep never
    /// picks a process it cannot claim. This list is where an operator finds
    /// them: inspect the log, fix the cause, then
    /// [`release_quarantine`](crate::ActorProcessRegistry::release_quarantine)
    /// puts the process back on the worklist. Until then no worker should
    /// touch it; a worker that meets `Quarantined` anyway (it listed just
    /// before the quarantine) skips the process.
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
        self.quarantined.lock().unwrap_or_else(PoisonError::into_inner).insert(process_id.to_owned());
    }

    pub(crate) fn release(&self, process_id: &str) {
        self.quarantined.lock().unwrap_or_else(PoisonError::into_inner).remove(process_id);
    }

    /// The quarantined ids (a copy: usually empty, so free).
    pub(crate) fn quarantined_ids(&self) -> BTreeSet<String> {
        self.quarantined.lock().unwrap_or_else(PoisonError::into_inner).clone()
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
            quarantined: self.quarantined.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect(),
        }
    }
}
