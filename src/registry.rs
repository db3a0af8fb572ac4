//! The [`ProcessRegistry`] trait: the contract every registry implements.
//!
//! Signatures are fixed by the specification. The documentation of each
//! method says what it waits on, what it costs in
//! [`ActorProcessRegistry`](crate::ActorProcessRegistry), and what dropping
//! its future leaves behind, in three words each:
//!
//! - **Waits on**: *nothing* (answered in the caller's task from published
//!   snapshots), *the process* (one message to the process's actor, queued
//!   behind the calls before it on that process; the caller may wait for a
//!   mailbox slot under `OverloadPolicy::Wait`), or *the supervisor* (one
//!   message to the supervisor actor, serialized with every other
//!   supervisor call). Only `wait_event_after` and `await_process`
//!   **park**: they wait for a future commit, without polling.
//! - **Cost**: the work the call does once its message is handled.
//! - **Cancel safety**: what a dropped future leaves. Unless a method says
//!   otherwise, a call whose message was sent completes or fails on its
//!   own, never half-way: dropping its future only discards the answer, so
//!   the change may or may not have been committed (read to find out, or
//!   repeat an idempotent call).

use crate::events::{ProcessAwaitOutput, ProcessEvent, ProcessEventAppendRequest, ProcessEventAppendResult};
use crate::model::{
    ProcessExternalRef, ProcessHandleDescriptor, ProcessHandleGrant, ProcessHandleGrantEntry, ProcessLease,
    ProcessLeaseCompletion, ProcessListFilter, ProcessRecord, ProcessRegistration, ProcessSessionDeleteReport,
    SessionScope, WaitState,
};
use crate::PluginError;

/// Durability-neutral process registry.
#[async_trait::async_trait]
pub trait ProcessRegistry: Send + Sync {
    /// Durability tier this process registry provides; defaults to
    /// [`DurabilityTier`](crate::DurabilityTier)`::Inline`. Waits on
    /// nothing; O(1).
    fn durability_tier(&self) -> crate::DurabilityTier {
        crate::DurabilityTier::Inline
    }

    /// Registers a process, idempotently: the same id with an equal
    /// registration returns the existing record as it is now; with a
    /// different registration it is a conflict.
    ///
    /// Waits on: nothing for a known id; the supervisor for a new one, which
    /// serializes creation so racing registrations end in one process.
    /// Cost: validation, canonical JSON and SHA-256 of the registration, in
    /// the caller's task; schemas compile once per distinct schema. Cancel
    /// safety: the process exists or not, never half-registered.
    async fn register_process(&self, registration: ProcessRegistration) -> Result<ProcessRecord, PluginError>;

    /// Records where the process's work lives in another system.
    ///
    /// Waits on: the process. Cost: O(1) plus a copy of the record.
    /// Cancel safety: idempotent; repeat it.
    async fn set_external_ref(
        &self,
        process_id: &str,
        external_ref: ProcessExternalRef,
    ) -> Result<ProcessRecord, PluginError>;

    /// Lets `session_scope` address the process (re-granting replaces the
    /// descriptor). Never appends an event.
    ///
    /// Waits on: the supervisor. Cost: O(log grants). Cancel safety:
    /// idempotent; repeat it.
    async fn grant_handle(
        &self,
        session_scope: &SessionScope,
        process_id: &str,
        descriptor: ProcessHandleDescriptor,
    ) -> Result<ProcessHandleGrant, PluginError>;

    /// Removes a grant; a no-op when it does not exist or the process is unknown.
    ///
    /// Waits on: the supervisor. Cost: O(log grants). Cancel safety:
    /// idempotent; repeat it.
    async fn revoke_handle(&self, session_scope: &SessionScope, process_id: &str) -> Result<(), PluginError>;

    /// Moves grants between scopes, keeping descriptors. All or nothing: if
    /// any id is not granted to `from_scope`, nothing moves.
    ///
    /// Waits on: the supervisor. Cost: O(ids x log grants). Cancel safety:
    /// all of it moved or none.
    async fn transfer_handle_grants(
        &self,
        from_scope: &SessionScope,
        to_scope: &SessionScope,
        process_ids: &[String],
    ) -> Result<(), PluginError>;

    /// A scope's grants with current records, by process id.
    ///
    /// Waits on: the supervisor (for the grants; records come from
    /// snapshots). Cost: O(the scope's grants). Cancel safety: a read.
    async fn list_handle_grants(
        &self,
        session_scope: &SessionScope,
    ) -> Result<Vec<ProcessHandleGrantEntry>, PluginError>;

    /// The non-terminal part of [`Self::list_handle_grants`]; waits on and
    /// costs the same.
    async fn list_live_handle_grants(
        &self,
        session_scope: &SessionScope,
    ) -> Result<Vec<ProcessHandleGrantEntry>, PluginError> {
        Ok(self
            .list_handle_grants(session_scope)
            .await?
            .into_iter()
            .filter(|(_, record)| !record.is_terminal())
            .collect())
    }

    /// True only for a granted, existing process.
    ///
    /// Waits on: the supervisor. Cost: O(1). Cancel safety: a read.
    async fn has_handle_grant(&self, session_scope: &SessionScope, process_id: &str) -> Result<bool, PluginError> {
        Ok(self.list_handle_grants(session_scope).await?.into_iter().any(|(grant, _)| grant.process_id == process_id))
    }

    /// A process's grants, sorted by session id.
    ///
    /// Waits on: the supervisor. Cost: O(the process's grants). Cancel
    /// safety: a read.
    async fn handle_grants_for_process(&self, process_id: &str) -> Result<Vec<ProcessHandleGrant>, PluginError>;

    /// Removes the grants of every scope of a session and reports which
    /// non-terminal processes were orphaned or preserved. Wake acks are
    /// process-scoped and kept.
    ///
    /// Waits on: the supervisor. Cost: O(the session's grants). Cancel
    /// safety: repeat it; a second call revokes nothing more.
    async fn delete_session_process_state(&self, session_id: &str) -> Result<ProcessSessionDeleteReport, PluginError>;

    /// Appends one event, idempotently by replay key; serialized per process.
    ///
    /// Waits on: the process. Cost: payload bounds and hash in the caller's
    /// task (from outside the runtime's tasks, the hash and the copy of the
    /// answer in the process's actor instead), then schema validation,
    /// O(1) amortized commit, and one wake per waiter it answers. Cancel
    /// safety: the event is committed or not; repeat with the same replay
    /// key to learn which without a duplicate.
    async fn append_event(
        &self,
        process_id: &str,
        request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, PluginError>;

    /// Events with sequence greater than `after_sequence`, ascending.
    ///
    /// Waits on: the process. Cost: O(result) (events are shared, then
    /// cloned once for the caller). Cancel safety: a read.
    async fn events_after(&self, process_id: &str, after_sequence: u64) -> Result<Vec<ProcessEvent>, PluginError>;

    /// Count events of `event_type` with `sequence <= up_to_sequence`.
    ///
    /// This is the signal-ordinal query: the Nth occurrence of a signal event
    /// resolves the Nth durable wait key. The default scans the event log;
    /// store backends override it with a COUNT so per-signal cost stays flat
    /// instead of growing with a long-lived process's history.
    ///
    /// Waits on: the process. Cost: O(log n) over a per-type index in
    /// `ActorProcessRegistry`. Cancel safety: a read. A type the process
    /// does not declare counts 0.
    async fn count_events_through(
        &self,
        process_id: &str,
        event_type: &str,
        up_to_sequence: u64,
    ) -> Result<u64, PluginError> {
        Ok(self
            .events_after(process_id, 0)
            .await?
            .into_iter()
            .filter(|event| event.sequence <= up_to_sequence && event.event_type == event_type)
            .count() as u64)
    }

    /// The most recent `limit` events, in ascending sequence order.
    ///
    /// Observation snapshots use this to show a bounded activity tail without
    /// fetching a process's entire history on every poll. The default scans
    /// the event log; store backends override it with ORDER BY ... LIMIT.
    ///
    /// Waits on: the process. Cost: O(limit). Cancel safety: a read.
    async fn recent_events(&self, process_id: &str, limit: usize) -> Result<Vec<ProcessEvent>, PluginError> {
        let mut events = self.events_after(process_id, 0).await?;
        if events.len() > limit {
            events.drain(..events.len() - limit);
        }
        Ok(events)
    }

    /// Events after `after_sequence` that materialized a wake and whose
    /// sequence has not been acked, ascending.
    ///
    /// Waits on: the process. Cost: O(wakes after the cursor). Cancel
    /// safety: a read.
    async fn wake_events_after(&self, process_id: &str, after_sequence: u64) -> Result<Vec<ProcessEvent>, PluginError>;

    /// The first event of `event_type` with sequence greater than
    /// `after_sequence`.
    ///
    /// **Parks** on the process until such an event is committed: no
    /// polling, no timer, no mailbox slot held while parked; the commit
    /// answers it. Cost: O(log n) to look, O(1) to park. Cancel safety:
    /// dropping the future (or a timeout around it) unparks the caller and
    /// leaves nothing behind. On shutdown it fails with
    /// [`RegistryError::Stopped`](crate::RegistryError::Stopped); if the
    /// process's actor restarts, the wait is re-parked transparently. A type
    /// the process does not declare could never be answered: it is refused
    /// at once with
    /// [`RegistryError::UndeclaredEventType`](crate::RegistryError::UndeclaredEventType).
    async fn wait_event_after(
        &self,
        process_id: &str,
        event_type: &str,
        after_sequence: u64,
    ) -> Result<ProcessEvent, PluginError>;

    /// The await output once the process is terminal.
    ///
    /// **Parks** on the process until its terminal commit, with the same
    /// cost, cancellation, restart and shutdown behaviour as
    /// [`Self::wait_event_after`].
    async fn await_process(&self, process_id: &str) -> Result<ProcessAwaitOutput, PluginError>;

    /// Appends the terminal event for `await_output` with a deterministic
    /// replay key, so repeating the same call is idempotent; a different
    /// outcome afterwards is an error.
    ///
    /// Waits on: the process (an append). Cost: that of
    /// [`Self::append_event`], and it answers every parked
    /// [`Self::await_process`]. Cancel safety: idempotent; repeat it.
    async fn complete_process(
        &self,
        process_id: &str,
        await_output: ProcessAwaitOutput,
    ) -> Result<ProcessRecord, PluginError>;

    /// Sets what the process waits for (error on a terminal process).
    ///
    /// Waits on: the process. Cost: O(1) plus a copy of the record. Cancel
    /// safety: idempotent; repeat it.
    async fn set_process_wait(&self, process_id: &str, wait: WaitState) -> Result<ProcessRecord, PluginError>;

    /// Clears the wait state.
    ///
    /// Waits on: the process. Cost: O(1) plus a copy of the record. Cancel
    /// safety: idempotent; repeat it.
    async fn clear_process_wait(&self, process_id: &str) -> Result<ProcessRecord, PluginError>;

    /// The current record, or `None` for an unknown id.
    ///
    /// Waits on: nothing (the snapshot the actor published before its last
    /// reply). Cost: O(1) plus a copy of the record. Cancel safety: a read.
    async fn get_process(&self, process_id: &str) -> Option<ProcessRecord>;

    /// Records passing `filter`, by id ascending.
    ///
    /// Waits on: nothing (published snapshots). Cost: O(processes) to
    /// filter, O(result log result) to sort. Cancel safety: a read.
    async fn list_processes(&self, filter: &ProcessListFilter) -> Result<Vec<ProcessRecord>, PluginError>;

    /// Acknowledges the wake of event `sequence`. Idempotent; acks survive
    /// session deletion; a sequence beyond the log is an error.
    ///
    /// Waits on: the process. Cost: O(log acks). Cancel safety: idempotent;
    /// repeat it.
    async fn ack_wake(&self, process_id: &str, sequence: u64) -> Result<(), PluginError>;

    /// All non-terminal process records, in stable `process_id` order.
    ///
    /// This is the recovery sweep's worklist: every process that was started
    /// but has not reached a terminal event is a candidate for re-execution
    /// by a worker after a crash. Terminal processes are excluded — they are
    /// already done and idempotent by `process_id`, so re-running them would
    /// be wasted work.
    ///
    /// Waits on: nothing (published snapshots). Cost: as
    /// [`Self::list_processes`]. Cancel safety: a read.
    async fn list_non_terminal(&self) -> Result<Vec<ProcessRecord>, PluginError>;

    /// Claim the durable single-owner lease over a non-terminal process.
    ///
    /// An unexpired lease held by a *different* owner fences the claim (returns
    /// an error); claiming a free, expired, or own lease succeeds and bumps the
    /// `fencing_token`. The returned [`ProcessLease`]'s
    /// `(owner_id, lease_token)` plus `fencing_token` are the contract a worker
    /// presents on every subsequent renew/complete — a stale writer is rejected.
    ///
    /// Waits on: the process. Cost: O(1) and a fresh random lease token.
    /// Cancel safety: the lease may have been granted with the answer lost;
    /// it then expires after its ttl (or the same owner claims again, which
    /// supersedes it with a higher fencing token).
    async fn claim_process_lease(
        &self,
        process_id: &str,
        owner_id: &str,
        lease_ttl_ms: u64,
    ) -> Result<ProcessLease, PluginError>;

    /// Extend the expiry of a live lease the caller still owns.
    ///
    /// The lease must match the persisted `(owner, lease_token, fencing_token)`
    /// and be unexpired, else the renewal is rejected (the lease was superseded
    /// or expired). Workers renew across long-running effects so a healthy
    /// process is not swept out from under its live owner.
    ///
    /// Waits on: the process. Cost: O(1). Cancel safety: the expiry moved or
    /// not; renew again with the same lease.
    async fn renew_process_lease(&self, lease: &ProcessLease, lease_ttl_ms: u64) -> Result<ProcessLease, PluginError>;

    /// Release a lease the caller owns, fenced by the completion's
    /// `(process_id, lease_token)`.
    ///
    /// Mirrors clearing a runtime turn lease: a stale completion (whose token no
    /// longer matches the live lease) is a no-op so it cannot release a lease a
    /// newer owner now holds. Idempotent — completing an already-released lease
    /// succeeds.
    ///
    /// Waits on: the process. Cost: O(1). Cancel safety: idempotent; repeat
    /// it.
    async fn complete_process_lease(&self, completion: &ProcessLeaseCompletion) -> Result<(), PluginError>;
}
