//! What a worker counts, and the snapshot [`WorkerStats`] it reports.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// A snapshot of a worker's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    /// Sweeps of the worklist.
    pub sweeps: u64,
    /// Leases claimed.
    pub claimed: u64,
    /// Handler runs started (a retry is a further run).
    pub runs: u64,
    /// Processes this worker completed with the handler's outcome.
    pub completed: u64,
    /// Processes this worker completed with a `Failure` outcome after the
    /// handler's last attempt failed (error or panic).
    pub failed: u64,
    /// Handler runs that returned an error.
    pub handler_errors: u64,
    /// Handler runs that panicked.
    pub handler_panics: u64,
    /// Runs retried after a backoff.
    pub retries: u64,
    /// Processes whose lease this worker lost (a renewal or a fenced write
    /// was refused): their handler was cancelled.
    pub lost: u64,
    /// Processes given back unfinished: the worker shut down before the
    /// handler finished, or the registry stopped or its store failed. The
    /// lease was released for another worker when the registry could still
    /// take the release; otherwise it expires after its ttl.
    pub abandoned: u64,
    /// Lease renewals committed.
    pub renewals: u64,
    /// Handlers running now.
    pub running: u64,
    /// Processes this worker gave up because the registry quarantined them
    /// (their actor kept crashing) while it held them. They are not retried:
    /// a quarantined process leaves `list_non_terminal` until an operator
    /// calls [`ActorProcessRegistry::release_quarantine`](crate::ActorProcessRegistry::release_quarantine);
    /// then it is swept and claimed again (and leaves this list).
    pub quarantined: Vec<String>,
}

/// The live counters behind [`WorkerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sweeps: AtomicU64,
    pub(crate) claimed: AtomicU64,
    pub(crate) runs: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) handler_errors: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) abandoned: AtomicU64,
    pub(crate) renewals: AtomicU64,
    pub(crate) running: AtomicU64,
    quarantined: Mutex<BTreeSet<String>>,
}

/// Adds one to `counter`.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn quarantine(&self, process_id: &str) {
        self.quarantined.lock().unwrap_or_else(PoisonError::into_inner).insert(process_id.to_owned());
    }

    /// A process claimed again (its quarantine was released).
    pub(crate) fn claimed_again(&self, process_id: &str) {
        self.quarantined.lock().unwrap_or_else(PoisonError::into_inner).remove(process_id);
    }

    pub(crate) fn snapshot(&self) -> WorkerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WorkerStats {
            sweeps: load(&self.sweeps),
            claimed: load(&self.claimed),
            runs: load(&self.runs),
            completed: load(&self.completed),
            failed: load(&self.failed),
            handler_errors: load(&self.handler_errors),
            handler_panics: load(&self.handler_panics),
            retries: load(&self.retries),
            lost: load(&self.lost),
            abandoned: load(&self.abandoned),
            renewals: load(&self.renewals),
            running: load(&self.running),
            quarantined: self.quarantined.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect(),
        }
    }
}
