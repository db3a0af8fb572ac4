//! What a handler gets: [`ProcessContext`], the process it runs and the
//! lease it runs under.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

use crate::error::RegistryError;
use crate::events::{ProcessEvent, ProcessEventAppendRequest, ProcessEventAppendResult};
use crate::fenced::FencedProcessRegistry;
use crate::model::{ProcessLease, ProcessRecord, WaitState};

/// One handler run's view of its process. Cheap to clone (one `Arc`); every
/// clone writes under the same lease.
///
/// Every write goes through the [`FencedProcessRegistry`] methods with the
/// worker's lease, so once the lease is lost (another worker took the
/// process over after it expired) every write is refused with
/// [`RegistryError::LeaseFenced`] and changes nothing: a stale handler
/// cannot interleave its steps with its successor's.
///
/// Steps: a handler that records each step with a replay key can ask
/// [`Self::recorded`] whether an earlier run (a retry, or a worker that was
/// killed) already recorded it, and skip it. The context reads the log once
/// when the run starts.
#[derive(Clone, Debug)]
pub struct ProcessContext {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<dyn FencedProcessRegistry>,
    record: ProcessRecord,
    lease: ProcessLease,
    attempt: u32,
    cancel: CancellationToken,
    /// Replay key -> the event recorded under it: the log as read when the
    /// run started, plus this run's own appends.
    recorded: Mutex<HashMap<String, ProcessEvent>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessContext")
            .field("process_id", &self.record.id)
            .field("fencing_token", &self.lease.fencing_token)
            .field("attempt", &self.attempt)
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl ProcessContext {
    /// A context for one run; reads the process's log for [`Self::recorded`].
    pub(crate) async fn load(
        registry: Arc<dyn FencedProcessRegistry>,
        record: ProcessRecord,
        lease: ProcessLease,
        attempt: u32,
        cancel: CancellationToken,
    ) -> Result<Self, RegistryError> {
        let log = registry.events_after(&record.id, 0).await?;
        let recorded =
            log.into_iter().filter_map(|event| Some((event.invocation.replay_key.clone()?, event))).collect();
        let inner = Inner { registry, record, lease, attempt, cancel, recorded: Mutex::new(recorded) };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The process's record as it was when the lease was claimed.
    pub fn record(&self) -> &ProcessRecord {
        &self.inner.record
    }

    /// The process id.
    pub fn process_id(&self) -> &str {
        &self.inner.record.id
    }

    /// The lease this run holds.
    pub fn lease(&self) -> &ProcessLease {
        &self.inner.lease
    }

    /// The lease's fencing token: strictly greater than that of any earlier
    /// owner of this process. Attach it to side effects outside the
    /// registry so they can refuse a stale writer too.
    pub fn fencing_token(&self) -> u64 {
        self.inner.lease.fencing_token
    }

    /// Which run of the handler this is under the current claim (1 for the
    /// first; retries count up).
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// The registry, for reads (writes should go through this context, so
    /// they are fenced).
    pub fn registry(&self) -> &Arc<dyn FencedProcessRegistry> {
        &self.inner.registry
    }

    /// True once the worker wants this run to stop: its lease was lost, the
    /// registry stopped or its store failed, or the worker is shutting down
    /// past its deadline; and once this attempt has ended (a clone kept by
    /// a task the handler spawned sees it).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Resolves when [`Self::is_cancelled`] becomes true. A handler that
    /// selects on it can stop cleanly; one that does not is dropped after
    /// the worker's `cancel_grace`. Parks on nothing else; dropping it is
    /// free.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await;
    }

    /// The event an earlier run recorded under `replay_key` (a step already
    /// done), if the log holds one. Waits on nothing: answered from the log
    /// read when this run started and this run's own appends. O(1).
    pub fn recorded(&self, replay_key: &str) -> Option<ProcessEvent> {
        self.inner.recorded.lock().unwrap_or_else(PoisonError::into_inner).get(replay_key).cloned()
    }

    /// Appends an event under this run's lease
    /// ([`FencedProcessRegistry::append_event_fenced`]).
    ///
    /// Waits on: the process. Cancel safety: as `append_event`; with a
    /// replay key, repeat it.
    pub async fn append(&self, request: ProcessEventAppendRequest) -> Result<ProcessEventAppendResult, RegistryError> {
        let result = self.inner.registry.append_event_fenced(&self.inner.lease, request).await?;
        if let Some(key) = &result.event.invocation.replay_key {
            self.inner
                .recorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.clone(), result.event.clone());
        }
        Ok(result)
    }

    /// Sets what the process waits for, under this run's lease
    /// ([`FencedProcessRegistry::set_process_wait_fenced`]).
    ///
    /// Waits on: the process. Cancel safety: idempotent; repeat it.
    pub async fn set_wait(&self, wait: WaitState) -> Result<ProcessRecord, RegistryError> {
        self.inner.registry.set_process_wait_fenced(&self.inner.lease, wait).await
    }

    /// The first event of `event_type` after `after_sequence`, parking until
    /// one is committed ([`ProcessRegistry::wait_event_after`](crate::ProcessRegistry::wait_event_after)).
    /// A read: not fenced.
    ///
    /// Parks on: the process's next matching commit, without polling.
    /// Cancel safety: dropping it unparks the waiter.
    pub async fn wait_event_after(&self, event_type: &str, after_sequence: u64) -> Result<ProcessEvent, RegistryError> {
        self.inner.registry.wait_event_after(self.process_id(), event_type, after_sequence).await
    }

    /// The events after `after_sequence` (a read: not fenced).
    ///
    /// Waits on: the process. Cost: a copy of the events returned.
    pub async fn events_after(&self, after_sequence: u64) -> Result<Vec<ProcessEvent>, RegistryError> {
        self.inner.registry.events_after(self.process_id(), after_sequence).await
    }
}
