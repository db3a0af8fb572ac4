//! Fenced writes: writes that commit only under the writer's current lease.
//!
//! A fencing token protects nothing unless writes check it. A worker
//! paused past its lease's expiry (a long pause, a stalled VM) still holds
//! its old [`ProcessLease`] and may still try to append; meanwhile another
//! worker has claimed the process with a higher fencing token. The methods
//! of [`FencedProcessRegistry`] check the presented lease *in the same step
//! as the write* (in [`ActorProcessRegistry`](crate::ActorProcessRegistry),
//! inside the process's actor, so no claim can come between the check and
//! the write) and refuse a stale one with
//! [`RegistryError::LeaseFenced`](crate::RegistryError::LeaseFenced), which
//! names the current fencing token. A refused write changes nothing.
//!
//! The check: the presented lease's owner, lease token and fencing token
//! equal the process's current lease's, and that lease is unexpired by the
//! registry's clock at the moment of the write. It comes before every other
//! rule, replays included: a fenced-out writer learns it lost the process
//! even when its write would only have replayed.
//!
//! For the same reason a fenced write is never sent again by the registry
//! when the process's actor crashes with its answer lost: it reports
//! [`RegistryError::ProcessRestarted`](crate::RegistryError::ProcessRestarted)
//! (it may have committed). Repeat it yourself: with its replay key the
//! repeat answers with the committed event while the lease still holds,
//! and `LeaseFenced` once it does not. The worker does so for its
//! completions.

use crate::events::{ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventAppendResult};
use crate::model::{ProcessLease, ProcessRecord, WaitState};
use crate::registry::ProcessRegistry;
use crate::PluginError;

/// Writes fenced by a lease, beyond the specified trait; implemented by
/// [`ActorProcessRegistry`](crate::ActorProcessRegistry) on every store and
/// by the baseline. [`ProcessWorker`](crate::worker::ProcessWorker) makes
/// every write of its handlers through it.
#[async_trait::async_trait]
pub trait FencedProcessRegistry: ProcessRegistry {
    /// [`ProcessRegistry::append_event`] on `lease.process_id`, if `lease`
    /// is the process's current, unexpired lease.
    ///
    /// Waits on: the process. Cost: that of `append_event` plus the lease
    /// comparison. Cancel safety: as `append_event` (with a replay key,
    /// repeat it; the fence is checked again).
    async fn append_event_fenced(
        &self,
        lease: &ProcessLease,
        request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, PluginError>;

    /// [`ProcessRegistry::complete_process`] on `lease.process_id`, if
    /// `lease` is current and unexpired. The lease stays held: release it
    /// with [`ProcessRegistry::complete_process_lease`].
    ///
    /// Waits on: the process. Cost: that of `complete_process`. Cancel
    /// safety: idempotent while the lease is live; repeat it.
    async fn complete_process_fenced(
        &self,
        lease: &ProcessLease,
        await_output: ProcessAwaitOutput,
    ) -> Result<ProcessRecord, PluginError>;

    /// [`ProcessRegistry::set_process_wait`] on `lease.process_id`, if
    /// `lease` is current and unexpired.
    ///
    /// Waits on: the process. Cost: that of `set_process_wait`. Cancel
    /// safety: idempotent; repeat it.
    async fn set_process_wait_fenced(
        &self,
        lease: &ProcessLease,
        wait: WaitState,
    ) -> Result<ProcessRecord, PluginError>;

    /// A counter of the registrations this registry has committed, which a
    /// worker watches to sweep promptly after new registrations instead of
    /// waiting for its next periodic sweep. `None` (the default) when the
    /// registry cannot tell; the worker then relies on its sweep interval.
    /// Waits on nothing; O(1).
    fn registration_notices(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}
