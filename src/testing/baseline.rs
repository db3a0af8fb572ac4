//! The registry users would otherwise write: every piece of state in plain
//! maps behind one global lock.
//!
//! [`GlobalLockRegistry`] implements the whole [`ProcessRegistry`] trait the
//! straightforward way. All processes, their event logs, replay indexes,
//! acked wakes and leases, and the session-grant index live in one `State`
//! behind a single [`tokio::sync::Mutex`]. Every call takes the lock, decides
//! with the shared pure rules in [`crate::rules`], commits, and releases it.
//! Callers parked in [`wait_event_after`](ProcessRegistry::wait_event_after)
//! and [`await_process`](ProcessRegistry::await_process) wait on their
//! process's [`tokio::sync::Notify`], which every commit to that process
//! signals.
//!
//! It exists for two reasons:
//!
//! - **Baseline.** It is what a team without an actor runtime would ship,
//!   so benchmarks of the actor registry are measured against it. One lock
//!   serializes calls about *different* processes too; that contention is
//!   exactly what per-process actors remove.
//! - **Oracle.** One lock makes every call trivially atomic and every
//!   interleaving a sequence of whole calls, so its behaviour is easy to
//!   believe. Because it decides with the same rules as the actor registry
//!   (registration preparation, the append plan, wake deliveries, lease
//!   rules, the grant index), any difference between the two in a test is a
//!   sequencing bug, not a difference of rules.
//!
//! Guarantees it keeps: no lost wakeup (a waiter registers with the process's
//! `Notify` before it releases the lock it checked the log under), idempotent
//! appends by replay key, fenced leases. Durability is
//! [`DurabilityTier::Inline`]: state lives in memory only. It has no
//! shutdown: parked callers wait until their event arrives or their future
//! is dropped, which leaves nothing behind.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::{Mutex, MutexGuard, Notify};

use crate::batch::BatchProcessRegistry;
use crate::clock::{Clock, SystemClock};
use crate::error::{PluginError, RegistryError};
use crate::events::{
    ProcessAwaitOutput, ProcessEvent, ProcessEventAppendRequest, ProcessEventAppendResult, ProcessEventType,
};
use crate::fenced::FencedProcessRegistry;
use crate::model::{
    DurabilityTier, ProcessExternalRef, ProcessHandleDescriptor, ProcessHandleGrant, ProcessHandleGrantEntry,
    ProcessLease, ProcessLeaseCompletion, ProcessListFilter, ProcessRecord, ProcessRegistration,
    ProcessSessionDeleteReport, SessionScope, WaitState,
};
use crate::registry::ProcessRegistry;
use crate::rules::append::{
    check_and_hash_batched, check_and_hash_payload, plan_append, plan_batch, wake_delivery, AppendPlan, AppendView,
    BatchItem, PlannedEvent, ReplayEntry,
};
use crate::rules::lease::{self, LeaseState};
use crate::rules::limits::{dismantle, truncated, Limits};
use crate::rules::registration::prepare_registration;
use crate::rules::schema::CompiledSchemas;
use crate::rules::scope::{check_scope, check_session_id};
use crate::runtime::{owned_grants, GrantIndex, SchemaCache};

/// A complete [`ProcessRegistry`] with all state behind one global
/// [`tokio::sync::Mutex`]: the performance baseline and test oracle.
///
/// Every call holds the lock for its whole decision and commit, so calls are
/// atomic and serialized across *all* processes. Validation that does not
/// read state (registration preparation, payload limits and hashing) runs
/// before the lock is taken. Costs: per-process calls are O(1) map lookups
/// plus the work of the call; listings are O(processes) plus a sort.
pub struct GlobalLockRegistry {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    schemas: SchemaCache,
}

/// Everything the registry knows, guarded by the one lock.
#[derive(Default)]
struct State {
    processes: HashMap<String, ProcessState>,
    grants: GrantIndex,
}

/// One process: its record, log, indexes, lease and waiters.
struct ProcessState {
    record: ProcessRecord,
    /// The log; `events[i].sequence == i + 1`.
    events: Vec<ProcessEvent>,
    replay: HashMap<String, ReplayEntry>,
    acked_wakes: HashSet<u64>,
    lease: LeaseState,
    schemas: CompiledSchemas,
    /// Signalled (`notify_waiters`) on every committed event.
    committed: Arc<Notify>,
}

impl ProcessState {
    fn last_sequence(&self) -> u64 {
        u64::try_from(self.events.len()).unwrap_or(u64::MAX)
    }

    /// The events with sequence greater than `after_sequence`, without copying.
    fn events_after(&self, after_sequence: u64) -> &[ProcessEvent] {
        let start = usize::try_from(after_sequence).unwrap_or(usize::MAX).min(self.events.len());
        self.events.get(start..).unwrap_or_default()
    }

    /// The event with `sequence`, if the log has it.
    fn event(&self, sequence: u64) -> Option<&ProcessEvent> {
        let index = usize::try_from(sequence.checked_sub(1)?).ok()?;
        self.events.get(index)
    }

    /// The answer to a request that replays event `sequence`.
    fn replayed(
        &self,
        process_id: &str,
        sequence: u64,
        target: Option<&SessionScope>,
    ) -> Result<ProcessEventAppendResult, RegistryError> {
        let event = self.event(sequence).cloned().ok_or_else(|| RegistryError::Storage {
            process_id: process_id.to_owned(),
            message: format!("the replay index names sequence {sequence}, which the log does not hold"),
        })?;
        let wake_delivery = wake_delivery(&self.record, &event, target);
        Ok(ProcessEventAppendResult { event, wake_delivery })
    }

    /// Commits a planned event (the caller signals `committed`).
    fn apply(&mut self, planned: PlannedEvent, target: Option<&SessionScope>) -> ProcessEventAppendResult {
        let wake_delivery = wake_delivery(planned.record_after(&self.record), &planned.event, target);
        self.events.push(planned.event.clone());
        if let Some((key, entry)) = planned.replay {
            self.replay.insert(key, entry);
        }
        if let Some(record) = planned.record {
            self.record = record;
        }
        ProcessEventAppendResult { event: planned.event, wake_delivery }
    }
}

impl State {
    fn process(&self, process_id: &str) -> Result<&ProcessState, RegistryError> {
        self.processes.get(process_id).ok_or_else(|| RegistryError::unknown(process_id))
    }

    fn process_mut(&mut self, process_id: &str) -> Result<&mut ProcessState, RegistryError> {
        self.processes.get_mut(process_id).ok_or_else(|| RegistryError::unknown(process_id))
    }
}

impl GlobalLockRegistry {
    /// An empty registry on the system clock with default [`Limits`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty registry reading time (timestamps, lease expiry) from `clock`.
    #[must_use]
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        let limits = Limits::default();
        let schemas = SchemaCache::new(limits.max_cached_schemas);
        Self { state: Mutex::new(State::default()), clock, limits, schemas }
    }

    /// Replaces the input [`Limits`] (and so the schema cache's bound: the
    /// cache starts over, empty; call this before registering anything).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.schemas = SchemaCache::new(limits.max_cached_schemas);
        self.limits = limits;
        self
    }

    async fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().await
    }

    /// Returns the first `Some` that `ready` gives for the process, checked
    /// now and after every commit to it. Parks on the process's `Notify`
    /// between checks; dropping the future deregisters it.
    async fn park_until<T>(
        &self,
        process_id: &str,
        mut ready: impl FnMut(&ProcessState) -> Option<T> + Send,
    ) -> Result<T, RegistryError> {
        loop {
            let state = self.lock().await;
            let process = state.process(process_id)?;
            if let Some(found) = ready(process) {
                return Ok(found);
            }
            let committed = Arc::clone(&process.committed);
            let notified = committed.notified();
            tokio::pin!(notified);
            // Registered before the lock is released: any commit after the
            // check above wakes this caller, so no wakeup is lost.
            notified.as_mut().enable();
            drop(state);
            notified.await;
        }
    }

    /// Step 1 of an append: limits and the payload hash. A refused payload
    /// is dropped iteratively, since it may be nested arbitrarily deep.
    fn hash_payload(
        &self,
        process_id: &str,
        request: ProcessEventAppendRequest,
    ) -> Result<(ProcessEventAppendRequest, String), RegistryError> {
        checked(request, |request| check_and_hash_payload(&self.limits, process_id, request))
    }

    /// Steps 2-10 of an append, under the lock. Returns the result and the
    /// record after the append.
    fn append_locked(
        &self,
        state: &mut State,
        process_id: &str,
        request: ProcessEventAppendRequest,
        payload_hash: String,
        fence: Option<&ProcessLease>,
    ) -> Result<(ProcessEventAppendResult, ProcessRecord), RegistryError> {
        let now_ms = self.clock.now_ms();
        let process = state.process_mut(process_id)?;
        if let Some(presented) = fence {
            lease::check_fence(&process.lease, presented, now_ms)?;
        }
        let target = request.wake_target_scope.clone();
        let replayed = request.replay_key().and_then(|key| process.replay.get(key));
        let view = AppendView {
            record: &process.record,
            last_sequence: process.last_sequence(),
            schemas: &process.schemas,
            replayed,
            limits: &self.limits,
        };
        match plan_append(view, request, payload_hash, now_ms)? {
            AppendPlan::Replay { sequence } => {
                Ok((process.replayed(process_id, sequence, target.as_ref())?, process.record.clone()))
            }
            AppendPlan::Commit(planned) => {
                let result = process.apply(*planned, target.as_ref());
                process.committed.notify_waiters();
                Ok((result, process.record.clone()))
            }
        }
    }

    /// Runs `update` on a process's record and stamps `updated_at_ms`,
    /// under `fence`'s lease when there is one.
    async fn update_record(
        &self,
        process_id: &str,
        fence: Option<&ProcessLease>,
        update: impl FnOnce(&mut ProcessRecord) -> Result<(), RegistryError>,
    ) -> Result<ProcessRecord, RegistryError> {
        let mut state = self.lock().await;
        let process = state.process_mut(process_id)?;
        if let Some(presented) = fence {
            lease::check_fence(&process.lease, presented, self.clock.now_ms())?;
        }
        update(&mut process.record)?;
        process.record.updated_at_ms = self.clock.now_ms();
        Ok(process.record.clone())
    }

    /// Sets the wait state, under `fence`'s lease when there is one.
    async fn set_wait(
        &self,
        process_id: &str,
        wait: WaitState,
        fence: Option<&ProcessLease>,
    ) -> Result<ProcessRecord, RegistryError> {
        self.update_record(process_id, fence, |record| {
            if record.is_terminal() {
                return Err(RegistryError::AlreadyTerminal { process_id: process_id.to_owned() });
            }
            record.wait = Some(wait);
            Ok(())
        })
        .await
    }

    /// Appends the terminal event for `await_output`, under `fence`'s
    /// lease when there is one.
    async fn complete(
        &self,
        process_id: &str,
        await_output: ProcessAwaitOutput,
        fence: Option<&ProcessLease>,
    ) -> Result<ProcessRecord, RegistryError> {
        // Serializing a value nested past the limit would recurse as deep as
        // it goes: refuse it first, as the payload check would.
        if let Some(value) = await_output_value(&await_output) {
            if let Err(err) = self.limits.check_depth(process_id, "payload depth", value) {
                dismantle_await_output(await_output);
                return Err(err);
            }
        }
        let event_type = await_output.terminal_state().event_type();
        let output = serde_json::to_value(&await_output).map_err(|err| RegistryError::InvalidPayload {
            process_id: process_id.to_owned(),
            event_type: event_type.to_owned(),
            path: "/await_output".to_owned(),
            message: err.to_string(),
        })?;
        let payload = Value::Object(Map::from_iter([("await_output".to_owned(), output)]));
        let request = ProcessEventAppendRequest::new(event_type, payload)
            .with_replay_key(format!("process:{process_id}:terminal:{event_type}"));
        let (request, payload_hash) = self.hash_payload(process_id, request)?;
        let mut state = self.lock().await;
        let (_, record) = self.append_locked(&mut state, process_id, request, payload_hash, fence)?;
        Ok(record)
    }
}

/// The JSON value inside an await output, if it carries one.
fn await_output_value(output: &ProcessAwaitOutput) -> Option<&Value> {
    match output {
        ProcessAwaitOutput::Success { value } => Some(value),
        ProcessAwaitOutput::Failure { raw, .. } | ProcessAwaitOutput::Cancelled { raw, .. } => raw.as_ref(),
    }
}

/// Drops the JSON value inside an await output iteratively.
fn dismantle_await_output(output: ProcessAwaitOutput) {
    match output {
        ProcessAwaitOutput::Success { value } => dismantle(value),
        ProcessAwaitOutput::Failure { raw, .. } | ProcessAwaitOutput::Cancelled { raw, .. } => {
            raw.into_iter().for_each(dismantle);
        }
    }
}

impl Default for GlobalLockRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for GlobalLockRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalLockRegistry")
            .field("clock", &self.clock)
            .field("limits", &self.limits)
            .field("schemas", &self.schemas)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ProcessRegistry for GlobalLockRegistry {
    fn durability_tier(&self) -> DurabilityTier {
        DurabilityTier::Inline
    }

    async fn register_process(&self, registration: ProcessRegistration) -> Result<ProcessRecord, PluginError> {
        let prepared = prepare_registration(registration, &self.limits, &self.schemas)?;
        let mut state = self.lock().await;
        let id = prepared.registration.id.clone();
        if let Some(existing) = state.processes.get(&id) {
            if existing.record.registration_hash == prepared.hash {
                return Ok(existing.record.clone());
            }
            return Err(RegistryError::RegistrationConflict {
                process_id: id,
                existing_hash: existing.record.registration_hash.clone(),
                requested_hash: prepared.hash,
            });
        }
        let prepared = prepared.accepted(&self.schemas);
        let record = prepared.new_record(self.clock.now_ms());
        state.processes.insert(
            id,
            ProcessState {
                record: record.clone(),
                events: Vec::new(),
                replay: HashMap::new(),
                acked_wakes: HashSet::new(),
                lease: LeaseState::default(),
                schemas: prepared.schemas,
                committed: Arc::new(Notify::new()),
            },
        );
        Ok(record)
    }

    async fn set_external_ref(
        &self,
        process_id: &str,
        external_ref: ProcessExternalRef,
    ) -> Result<ProcessRecord, PluginError> {
        if let Some(metadata) = &external_ref.metadata {
            if let Err(err) = self.limits.check_depth(process_id, "external ref metadata depth", metadata) {
                external_ref.metadata.into_iter().for_each(dismantle);
                return Err(err);
            }
        }
        self.update_record(process_id, None, |record| {
            record.external_ref = Some(external_ref);
            Ok(())
        })
        .await
    }

    async fn grant_handle(
        &self,
        session_scope: &SessionScope,
        process_id: &str,
        descriptor: ProcessHandleDescriptor,
    ) -> Result<ProcessHandleGrant, PluginError> {
        self.limits.check_id(process_id, "process id bytes", process_id)?;
        check_scope(&self.limits, process_id, session_scope)?;
        crate::rules::scope::check_descriptor(&self.limits, process_id, &descriptor)?;
        let mut state = self.lock().await;
        state.process(process_id)?;
        Ok(state.grants.grant(session_scope, process_id, descriptor))
    }

    async fn revoke_handle(&self, session_scope: &SessionScope, process_id: &str) -> Result<(), PluginError> {
        check_scope(&self.limits, process_id, session_scope)?;
        self.lock().await.grants.revoke(&session_scope.id(), process_id);
        Ok(())
    }

    async fn transfer_handle_grants(
        &self,
        from_scope: &SessionScope,
        to_scope: &SessionScope,
        process_ids: &[String],
    ) -> Result<(), PluginError> {
        let first = process_ids.first().map(String::as_str).unwrap_or_default();
        check_scope(&self.limits, first, from_scope)?;
        check_scope(&self.limits, first, to_scope)?;
        let mut state = self.lock().await;
        state.grants.transfer(from_scope, to_scope, process_ids).map_err(|missing| RegistryError::HandleNotGranted {
            process_id: missing.into_iter().next().unwrap_or_default(),
            scope_id: from_scope.id().0,
        })
    }

    async fn list_handle_grants(
        &self,
        session_scope: &SessionScope,
    ) -> Result<Vec<ProcessHandleGrantEntry>, PluginError> {
        check_scope(&self.limits, "", session_scope)?;
        let state = self.lock().await;
        Ok(state
            .grants
            .grants_of_scope(&session_scope.id())
            .into_iter()
            .filter_map(|grant| {
                let record = state.processes.get(&grant.process_id)?.record.clone();
                Some((ProcessHandleGrant::clone(&grant), record))
            })
            .collect())
    }

    async fn has_handle_grant(&self, session_scope: &SessionScope, process_id: &str) -> Result<bool, PluginError> {
        check_scope(&self.limits, process_id, session_scope)?;
        let state = self.lock().await;
        Ok(state.grants.has(&session_scope.id(), process_id) && state.processes.contains_key(process_id))
    }

    async fn handle_grants_for_process(&self, process_id: &str) -> Result<Vec<ProcessHandleGrant>, PluginError> {
        let state = self.lock().await;
        state.process(process_id)?;
        Ok(owned_grants(state.grants.grants_of_process(process_id)))
    }

    async fn delete_session_process_state(&self, session_id: &str) -> Result<ProcessSessionDeleteReport, PluginError> {
        check_session_id(&self.limits, "", session_id)?;
        let mut state = self.lock().await;
        let state = &mut *state;
        let processes = &state.processes;
        let is_live = |id: &str| processes.get(id).is_some_and(|process| !process.record.is_terminal());
        let report = state.grants.delete_session(session_id, is_live);
        Ok(report)
    }

    async fn append_event(
        &self,
        process_id: &str,
        request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, PluginError> {
        let (request, payload_hash) = self.hash_payload(process_id, request)?;
        let mut state = self.lock().await;
        let (result, _) = self.append_locked(&mut state, process_id, request, payload_hash, None)?;
        Ok(result)
    }

    async fn events_after(&self, process_id: &str, after_sequence: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        let state = self.lock().await;
        Ok(state.process(process_id)?.events_after(after_sequence).to_vec())
    }

    async fn count_events_through(
        &self,
        process_id: &str,
        event_type: &str,
        up_to_sequence: u64,
    ) -> Result<u64, PluginError> {
        self.limits.check_id(process_id, "event type bytes", event_type)?;
        let state = self.lock().await;
        let events = &state.process(process_id)?.events;
        let end = usize::try_from(up_to_sequence).unwrap_or(usize::MAX).min(events.len());
        let counted =
            events.get(..end).unwrap_or_default().iter().filter(|event| event.event_type == event_type).count();
        Ok(u64::try_from(counted).unwrap_or(u64::MAX))
    }

    async fn recent_events(&self, process_id: &str, limit: usize) -> Result<Vec<ProcessEvent>, PluginError> {
        let state = self.lock().await;
        let events = &state.process(process_id)?.events;
        let start = events.len().saturating_sub(limit);
        Ok(events.get(start..).unwrap_or_default().to_vec())
    }

    async fn wake_events_after(&self, process_id: &str, after_sequence: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        let state = self.lock().await;
        let process = state.process(process_id)?;
        Ok(process
            .events_after(after_sequence)
            .iter()
            .filter(|event| event.is_wake() && !process.acked_wakes.contains(&event.sequence))
            .cloned()
            .collect())
    }

    async fn wait_event_after(
        &self,
        process_id: &str,
        event_type: &str,
        after_sequence: u64,
    ) -> Result<ProcessEvent, PluginError> {
        self.limits.check_id(process_id, "event type bytes", event_type)?;
        // Declared types never change: a wait on another could never be answered.
        if self.lock().await.process(process_id)?.record.event_type(event_type).is_none() {
            return Err(RegistryError::UndeclaredEventType {
                process_id: process_id.to_owned(),
                event_type: truncated(event_type),
            });
        }
        let mut scanned_through = after_sequence;
        self.park_until(process_id, |process| {
            let found =
                process.events_after(scanned_through).iter().find(|event| event.event_type == event_type).cloned();
            // Nothing up to the end of the log matched, and the log only grows.
            scanned_through = scanned_through.max(process.last_sequence());
            match found {
                Some(event) => Some(Ok(event)),
                // No terminal event follows the terminal one (step 7).
                None if process.record.is_terminal()
                    && process.record.event_type(event_type).is_some_and(ProcessEventType::is_terminal) =>
                {
                    Some(Err(RegistryError::AlreadyTerminal { process_id: process_id.to_owned() }))
                }
                None => None,
            }
        })
        .await?
    }

    async fn await_process(&self, process_id: &str) -> Result<ProcessAwaitOutput, PluginError> {
        self.park_until(process_id, |process| process.record.status.await_output().cloned()).await
    }

    async fn complete_process(
        &self,
        process_id: &str,
        await_output: ProcessAwaitOutput,
    ) -> Result<ProcessRecord, PluginError> {
        self.complete(process_id, await_output, None).await
    }

    async fn set_process_wait(&self, process_id: &str, wait: WaitState) -> Result<ProcessRecord, PluginError> {
        self.set_wait(process_id, wait, None).await
    }

    async fn clear_process_wait(&self, process_id: &str) -> Result<ProcessRecord, PluginError> {
        self.update_record(process_id, None, |record| {
            record.wait = None;
            Ok(())
        })
        .await
    }

    async fn get_process(&self, process_id: &str) -> Option<ProcessRecord> {
        let state = self.lock().await;
        state.processes.get(process_id).map(|process| process.record.clone())
    }

    async fn list_processes(&self, filter: &ProcessListFilter) -> Result<Vec<ProcessRecord>, PluginError> {
        let state = self.lock().await;
        let mut records: Vec<ProcessRecord> = state
            .processes
            .values()
            .filter(|process| filter.matches(&process.record))
            .map(|process| process.record.clone())
            .collect();
        drop(state);
        records.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    async fn ack_wake(&self, process_id: &str, sequence: u64) -> Result<(), PluginError> {
        let mut state = self.lock().await;
        let process = state.process_mut(process_id)?;
        let last_sequence = process.last_sequence();
        if sequence == 0 || sequence > last_sequence {
            return Err(RegistryError::SequenceOutOfRange {
                process_id: process_id.to_owned(),
                sequence,
                last_sequence,
            });
        }
        process.acked_wakes.insert(sequence);
        Ok(())
    }

    async fn list_non_terminal(&self) -> Result<Vec<ProcessRecord>, PluginError> {
        let state = self.lock().await;
        let mut records: Vec<ProcessRecord> = state
            .processes
            .values()
            .filter(|process| !process.record.is_terminal())
            .map(|process| process.record.clone())
            .collect();
        drop(state);
        records.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    async fn claim_process_lease(
        &self,
        process_id: &str,
        owner_id: &str,
        lease_ttl_ms: u64,
    ) -> Result<ProcessLease, PluginError> {
        self.limits.check_id(process_id, "owner id bytes", owner_id)?;
        crate::rules::limits::refuse_nul(process_id, "owner id", owner_id)?;
        let mut state = self.lock().await;
        let process = state.process_mut(process_id)?;
        if process.record.is_terminal() {
            return Err(RegistryError::AlreadyTerminal { process_id: process_id.to_owned() });
        }
        let now_ms = self.clock.now_ms();
        let token = uuid::Uuid::new_v4().to_string();
        let claimed = lease::claim(&process.lease, process_id, owner_id, lease_ttl_ms, now_ms, token)?;
        process.lease = lease::granted(&process.lease, claimed.clone());
        Ok(claimed)
    }

    async fn renew_process_lease(&self, lease: &ProcessLease, lease_ttl_ms: u64) -> Result<ProcessLease, PluginError> {
        let mut state = self.lock().await;
        let process = state.process_mut(&lease.process_id)?;
        let renewed = lease::renew(&process.lease, lease, lease_ttl_ms, self.clock.now_ms())?;
        process.lease.current = Some(Box::new(renewed.clone()));
        Ok(renewed)
    }

    async fn complete_process_lease(&self, completion: &ProcessLeaseCompletion) -> Result<(), PluginError> {
        let mut state = self.lock().await;
        let process = state.process_mut(&completion.process_id)?;
        if let Some(released) = lease::release(&process.lease, completion) {
            process.lease = released;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl BatchProcessRegistry for GlobalLockRegistry {
    async fn append_events(
        &self,
        process_id: &str,
        requests: Vec<ProcessEventAppendRequest>,
    ) -> Result<Vec<ProcessEventAppendResult>, PluginError> {
        if requests.len() > self.limits.max_batch_events {
            for request in requests {
                dismantle(request.payload);
            }
            let limit = self.limits.max_batch_events;
            return Err(crate::rules::limits::limit_exceeded(process_id, "events in one batch", limit));
        }
        let mut hashed = Vec::with_capacity(requests.len());
        let mut batch_bytes = 0;
        let mut requests = requests.into_iter();
        while let Some(request) = requests.next() {
            match checked(request, |request| {
                check_and_hash_batched(&self.limits, process_id, request, &mut batch_bytes)
            }) {
                Ok(pair) => hashed.push(pair),
                Err(error) => {
                    // Unmeasured caller JSON: dropped without recursion.
                    for rest in requests {
                        dismantle(rest.payload);
                    }
                    return Err(error);
                }
            }
        }
        let now_ms = self.clock.now_ms();
        let mut state = self.lock().await;
        let process = state.process_mut(process_id)?;
        let targets: Vec<_> = hashed.iter().map(|(request, _)| request.wake_target_scope.clone()).collect();
        let items = plan_batch(
            &process.record,
            process.last_sequence(),
            &process.schemas,
            &self.limits,
            |key| process.replay.get(key),
            hashed,
            now_ms,
        )?;
        let mut results = Vec::with_capacity(items.len());
        let mut appended = false;
        for (item, target) in items.into_iter().zip(targets) {
            match item {
                BatchItem::Replay { sequence } => {
                    results.push(process.replayed(process_id, sequence, target.as_ref())?)
                }
                BatchItem::Commit(planned) => {
                    // Planned as a whole before anything was applied: the
                    // batch is already all or nothing here.
                    results.push(process.apply(*planned, target.as_ref()));
                    appended = true;
                }
            }
        }
        if appended {
            process.committed.notify_waiters();
        }
        Ok(results)
    }
}

/// `request` with its payload hash as `hash` finds it, or `hash`'s error
/// with the request dropped without recursion (unmeasured caller JSON).
fn checked(
    request: ProcessEventAppendRequest,
    hash: impl FnOnce(&ProcessEventAppendRequest) -> Result<String, RegistryError>,
) -> Result<(ProcessEventAppendRequest, String), RegistryError> {
    match hash(&request) {
        Ok(hash) => Ok((request, hash)),
        Err(err) => {
            dismantle(request.payload);
            Err(err)
        }
    }
}

#[async_trait::async_trait]
impl FencedProcessRegistry for GlobalLockRegistry {
    async fn append_event_fenced(
        &self,
        lease: &ProcessLease,
        request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, PluginError> {
        let process_id = &lease.process_id;
        let (request, payload_hash) = self.hash_payload(process_id, request)?;
        let mut state = self.lock().await;
        let (result, _) = self.append_locked(&mut state, process_id, request, payload_hash, Some(lease))?;
        Ok(result)
    }

    async fn complete_process_fenced(
        &self,
        lease: &ProcessLease,
        await_output: ProcessAwaitOutput,
    ) -> Result<ProcessRecord, PluginError> {
        self.complete(&lease.process_id, await_output, Some(lease)).await
    }

    async fn set_process_wait_fenced(
        &self,
        lease: &ProcessLease,
        wait: WaitState,
    ) -> Result<ProcessRecord, PluginError> {
        self.set_wait(&lease.process_id, wait, Some(lease)).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::clock::ManualClock;
    use crate::events::{ProcessEventType, ProcessValueSelector, ProcessWakeSpec, COMPLETED, FAILED};
    use crate::model::{ProcessInput, ProcessStatusFilter, WaitKind};
    use crate::rules::registration::no_args;

    /// `depth` levels of single-element arrays (a scalar has depth 1).
    fn nested_arrays(depth: usize) -> Value {
        let mut value = Value::Null;
        for _ in 1..depth {
            value = Value::Array(vec![value]);
        }
        value
    }

    /// Generous guard so a lost wakeup fails the test instead of hanging it.
    const GUARD: Duration = Duration::from_secs(10);

    fn note_type() -> ProcessEventType {
        ProcessEventType::new(
            "note",
            json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        )
        .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Pointer("/text".into())))
    }

    fn registration(id: &str) -> ProcessRegistration {
        ProcessRegistration::new(id, ProcessInput::definition("job", no_args()))
            .with_extra_event_types(vec![note_type(), ProcessEventType::new("tick", json!({}))])
            .with_wake_target(SessionScope::new("home"))
    }

    fn note(text: &str) -> ProcessEventAppendRequest {
        ProcessEventAppendRequest::new("note", json!({ "text": text }))
    }

    fn manual() -> (Arc<ManualClock>, GlobalLockRegistry) {
        let clock = Arc::new(ManualClock::new(1_000));
        let registry = GlobalLockRegistry::with_clock(clock.clone());
        (clock, registry)
    }

    async fn registered(ids: &[&str]) -> (Arc<ManualClock>, GlobalLockRegistry) {
        let (clock, registry) = manual();
        for id in ids {
            registry.register_process(registration(id)).await.unwrap();
        }
        (clock, registry)
    }

    #[tokio::test]
    async fn registering_again_returns_the_current_record_and_a_different_registration_conflicts() {
        let (clock, registry) = registered(&["p"]).await;
        let first = registry.get_process("p").await.unwrap();
        assert_eq!((first.created_at_ms, first.updated_at_ms), (1_000, 1_000));
        clock.advance(5);
        registry.append_event("p", note("hi")).await.unwrap();
        let again = registry.register_process(registration("p")).await.unwrap();
        assert_eq!(again.updated_at_ms, 1_005, "the existing record as it is now, not reset");
        assert_eq!(again.created_at_ms, 1_000);
        let err = registry.register_process(registration("p").with_env_ref("elsewhere")).await.unwrap_err();
        assert!(matches!(err, RegistryError::RegistrationConflict { ref process_id, .. } if process_id == "p"));
        let invalid = registry.register_process(registration("")).await.unwrap_err();
        assert!(matches!(invalid, RegistryError::InvalidRegistration { .. }));
        assert_eq!(registry.durability_tier(), DurabilityTier::Inline);
    }

    #[tokio::test]
    async fn replayed_appends_return_the_original_event_and_conflicting_ones_fail() {
        let (_, registry) = registered(&["p"]).await;
        let first = registry.append_event("p", note("hi").with_replay_key("k")).await.unwrap();
        assert_eq!(first.event.sequence, 1);
        let delivery = first.wake_delivery.as_ref().unwrap();
        assert_eq!(delivery.target_scope_id, "session:home");
        let elsewhere = SessionScope::with_frame("other", "f");
        let replay = registry
            .append_event("p", note("hi").with_replay_key("k").with_wake_target_scope(elsewhere))
            .await
            .unwrap();
        assert_eq!(replay.event, first.event);
        assert_eq!(replay.wake_delivery.unwrap().target_scope_id, "session:other/frame:f");
        assert_eq!(registry.events_after("p", 0).await.unwrap().len(), 1, "nothing appended");
        let conflict = registry.append_event("p", note("ho").with_replay_key("k")).await.unwrap_err();
        assert!(matches!(conflict, RegistryError::ReplayConflict { .. }));
        let second = registry.append_event("p", note("ho")).await.unwrap();
        assert_eq!(second.event.sequence, 2);
        let invalid = registry.append_event("p", ProcessEventAppendRequest::new("note", json!({"text": 1})));
        assert!(matches!(invalid.await, Err(RegistryError::InvalidPayload { ref path, .. }) if path == "/text"));
        let unknown = registry.append_event("nope", note("x")).await.unwrap_err();
        assert!(matches!(unknown, RegistryError::UnknownProcess { .. }));
        assert_eq!(registry.events_after("p", 0).await.unwrap().len(), 2, "failed appends change nothing");
    }

    #[tokio::test]
    async fn log_queries_slice_the_log() {
        let (_, registry) = registered(&["p"]).await;
        for text in ["a", "b", "c"] {
            registry.append_event("p", note(text)).await.unwrap();
            registry.append_event("p", ProcessEventAppendRequest::new("tick", json!({}))).await.unwrap();
        }
        let sequences = |events: Vec<ProcessEvent>| events.into_iter().map(|e| e.sequence).collect::<Vec<_>>();
        assert_eq!(sequences(registry.events_after("p", 4).await.unwrap()), [5, 6]);
        assert!(registry.events_after("p", u64::MAX).await.unwrap().is_empty());
        assert_eq!(registry.count_events_through("p", "note", 4).await.unwrap(), 2);
        assert_eq!(registry.count_events_through("p", "note", u64::MAX).await.unwrap(), 3);
        assert_eq!(sequences(registry.recent_events("p", 2).await.unwrap()), [5, 6]);
        assert_eq!(registry.recent_events("p", 100).await.unwrap().len(), 6);
        assert!(registry.recent_events("p", 0).await.unwrap().is_empty());
        assert!(registry.recent_events("nope", 1).await.is_err());
    }

    #[tokio::test]
    async fn wakes_are_listed_until_acked_and_acks_are_bounded_by_the_log() {
        let (_, registry) = registered(&["p"]).await;
        for text in ["a", "b", "c"] {
            registry.append_event("p", note(text)).await.unwrap();
        }
        registry.append_event("p", ProcessEventAppendRequest::new("tick", json!({}))).await.unwrap();
        registry.ack_wake("p", 2).await.unwrap();
        registry.ack_wake("p", 2).await.unwrap();
        let wakes: Vec<u64> = registry.wake_events_after("p", 0).await.unwrap().iter().map(|e| e.sequence).collect();
        assert_eq!(wakes, [1, 3]);
        let err = registry.ack_wake("p", 5).await.unwrap_err();
        assert!(matches!(err, RegistryError::SequenceOutOfRange { sequence: 5, last_sequence: 4, .. }));
        assert!(registry.ack_wake("nope", 1).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parked_waiters_are_woken_by_concurrent_appends() {
        let (_, registry) = registered(&["p", "q"]).await;
        let registry = Arc::new(registry);
        let waiters: Vec<_> = (0..16u64)
            .map(|after| {
                let registry = Arc::clone(&registry);
                tokio::spawn(async move { registry.wait_event_after("p", "note", after).await })
            })
            .collect();
        let appender = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                for i in 0..16 {
                    // Appends to another process and of other types must not satisfy anyone.
                    registry.append_event("q", note("noise")).await?;
                    registry.append_event("p", ProcessEventAppendRequest::new("tick", json!({}))).await?;
                    registry.append_event("p", note(&format!("n{i}"))).await?;
                }
                Ok::<_, RegistryError>(())
            })
        };
        tokio::time::timeout(GUARD, appender).await.unwrap().unwrap().unwrap();
        for (after, waiter) in (0..16u64).zip(waiters) {
            let event = tokio::time::timeout(GUARD, waiter).await.unwrap().unwrap().unwrap();
            // The first note after `after`: notes sit at even sequences.
            let expected = if after % 2 == 0 { after + 2 } else { after + 1 };
            assert_eq!((event.event_type.as_str(), event.sequence), ("note", expected));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_wakeup_is_lost_when_appends_race_waiters() {
        let (_, registry) = registered(&["p"]).await;
        let registry = Arc::new(registry);
        for round in 0..200u64 {
            let waiter = {
                let registry = Arc::clone(&registry);
                tokio::spawn(async move { registry.wait_event_after("p", "note", round).await })
            };
            let appender = {
                let registry = Arc::clone(&registry);
                tokio::spawn(async move { registry.append_event("p", note("x")).await })
            };
            appender.await.unwrap().unwrap();
            let event = tokio::time::timeout(GUARD, waiter).await.unwrap().unwrap().unwrap();
            assert_eq!(event.sequence, round + 1);
        }
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_the_process_usable() {
        let (_, registry) = registered(&["p"]).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(5), registry.wait_event_after("p", "note", 0)).await;
        assert!(gave_up.is_err());
        registry.append_event("p", note("later")).await.unwrap();
        assert_eq!(registry.wait_event_after("p", "note", 0).await.unwrap().sequence, 1);
        assert!(registry.wait_event_after("nope", "note", 0).await.is_err());
        assert!(registry.await_process("nope").await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn await_process_parks_until_completion_and_completion_is_idempotent() {
        let (_, registry) = registered(&["p"]).await;
        let registry = Arc::new(registry);
        let waiting = WaitState {
            kind: WaitKind::Signal { name: "go".into(), event_type: "tick".into(), key: "k".into(), ordinal: 1 },
            since_ms: 1_000,
        };
        assert!(registry.set_process_wait("p", waiting.clone()).await.unwrap().wait.is_some());
        let awaiter = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move { registry.await_process("p").await })
        };
        let output = ProcessAwaitOutput::success(json!({"answer": 42}));
        let completer = {
            let registry = Arc::clone(&registry);
            let output = output.clone();
            tokio::spawn(async move { registry.complete_process("p", output).await })
        };
        let record = tokio::time::timeout(GUARD, completer).await.unwrap().unwrap().unwrap();
        assert!(record.is_terminal());
        assert!(record.wait.is_none(), "a terminal event clears the wait");
        assert_eq!(tokio::time::timeout(GUARD, awaiter).await.unwrap().unwrap().unwrap(), output);

        let again = registry.complete_process("p", output.clone()).await.unwrap();
        assert_eq!(again, record);
        let events = registry.events_after("p", 0).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, COMPLETED);
        assert_eq!(events[0].invocation.replay_key.as_deref(), Some("process:p:terminal:process.completed"));
        let other_value = registry.complete_process("p", ProcessAwaitOutput::success(json!(0))).await;
        assert!(matches!(other_value, Err(RegistryError::ReplayConflict { .. })));
        let failed = registry.complete_process("p", ProcessAwaitOutput::failure("x", "y")).await;
        assert!(matches!(failed, Err(RegistryError::AlreadyTerminal { .. })));
        assert!(registry.events_after("p", 0).await.unwrap().iter().all(|e| e.event_type != FAILED));
        let err = registry.set_process_wait("p", waiting).await.unwrap_err();
        assert!(matches!(err, RegistryError::AlreadyTerminal { .. }));
        assert_eq!(registry.await_process("p").await.unwrap(), output);
        assert!(registry.complete_process("nope", output).await.is_err());
    }

    #[tokio::test]
    async fn leases_fence_other_owners_until_expiry_and_tokens_only_grow() {
        let (clock, registry) = registered(&["p", "done"]).await;
        let a = registry.claim_process_lease("p", "a", 100).await.unwrap();
        assert_eq!((a.fencing_token, a.expires_at_epoch_ms), (1, 1_100));
        let held = registry.claim_process_lease("p", "b", 100).await.unwrap_err();
        assert!(held.to_string().contains("already leased by a until 1100"), "{held}");

        clock.advance(50);
        let a = registry.renew_process_lease(&a, 100).await.unwrap();
        assert_eq!((a.fencing_token, a.expires_at_epoch_ms), (1, 1_150));
        clock.advance(100);
        let b = registry.claim_process_lease("p", "b", 100).await.unwrap();
        assert_eq!(b.fencing_token, 2);
        assert_ne!(b.lease_token, a.lease_token);
        let stale = registry.renew_process_lease(&a, 100).await.unwrap_err();
        assert!(stale.to_string().contains("missing or expired"), "{stale}");

        // A stale completion is a silent no-op: b keeps the lease.
        registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&a)).await.unwrap();
        assert!(registry.claim_process_lease("p", "c", 100).await.is_err());
        registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&b)).await.unwrap();
        registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&b)).await.unwrap();
        let c = registry.claim_process_lease("p", "c", 100).await.unwrap();
        assert_eq!(c.fencing_token, 3, "fencing tokens survive release");
        assert_eq!(registry.claim_process_lease("p", "c", 100).await.unwrap().fencing_token, 4);

        registry.complete_process("done", ProcessAwaitOutput::cancelled("stop")).await.unwrap();
        let terminal = registry.claim_process_lease("done", "a", 100).await.unwrap_err();
        assert!(matches!(terminal, RegistryError::AlreadyTerminal { .. }));
        assert!(matches!(
            registry.claim_process_lease("nope", "a", 100).await,
            Err(RegistryError::UnknownProcess { .. })
        ));
        let mut orphan = c.clone();
        orphan.process_id = "nope".into();
        assert!(registry.renew_process_lease(&orphan, 1).await.is_err());
        assert!(registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&orphan)).await.is_err());
    }

    #[tokio::test]
    async fn grants_move_all_or_nothing_and_session_deletion_reports_orphans() {
        let (_, registry) = registered(&["a", "b", "c", "done"]).await;
        let (s, s_frame, s2) = (SessionScope::new("s"), SessionScope::with_frame("s", "f"), SessionScope::new("s2"));
        let label = |text: &str| ProcessHandleDescriptor { kind: None, label: Some(text.into()) };
        registry.grant_handle(&s, "b", label("b")).await.unwrap();
        registry.grant_handle(&s, "a", label("old")).await.unwrap();
        let regrant = registry.grant_handle(&s, "a", label("a")).await.unwrap();
        assert_eq!(regrant.descriptor, label("a"));
        registry.grant_handle(&s_frame, "c", label("c")).await.unwrap();
        registry.grant_handle(&s2, "b", label("b2")).await.unwrap();
        registry.grant_handle(&s, "done", label("done")).await.unwrap();
        registry.complete_process("done", ProcessAwaitOutput::success(json!(1))).await.unwrap();
        assert!(registry.grant_handle(&s, "nope", label("x")).await.is_err());

        let listed: Vec<_> =
            registry.list_handle_grants(&s).await.unwrap().into_iter().map(|(g, r)| (g.process_id, r.id)).collect();
        assert_eq!(listed, [("a".into(), "a".into()), ("b".into(), "b".into()), ("done".into(), "done".into())]);
        assert_eq!(registry.list_live_handle_grants(&s).await.unwrap().len(), 2);
        assert!(registry.has_handle_grant(&s, "a").await.unwrap());
        assert!(!registry.has_handle_grant(&s2, "a").await.unwrap());
        let sessions: Vec<_> =
            registry.handle_grants_for_process("b").await.unwrap().into_iter().map(|g| g.session_id).collect();
        assert_eq!(sessions, ["s", "s2"]);
        assert!(registry.handle_grants_for_process("nope").await.is_err());

        let err = registry.transfer_handle_grants(&s2, &s_frame, &["b".into(), "c".into()]).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::HandleNotGranted { ref process_id, ref scope_id } if process_id == "c" && scope_id == "session:s2")
        );
        assert!(registry.has_handle_grant(&s2, "b").await.unwrap(), "nothing moved");
        registry.transfer_handle_grants(&s_frame, &s2, &["c".into()]).await.unwrap();
        let moved = registry.list_handle_grants(&s2).await.unwrap();
        assert_eq!(moved[1].0.descriptor, label("c"));
        assert_eq!(moved[1].0.session_id, "s2");
        registry.grant_handle(&s_frame, "c", label("c")).await.unwrap();

        registry.revoke_handle(&s, "nope").await.unwrap();
        registry.revoke_handle(&SessionScope::new("never"), "a").await.unwrap();

        let report = registry.delete_session_process_state("s").await.unwrap();
        assert_eq!(report.session_id, "s");
        assert_eq!(report.revoked_handle_count, 4);
        assert_eq!(report.deleted_wake_count, 0);
        assert_eq!(report.orphaned_process_ids, ["a"]);
        assert_eq!(report.preserved_process_ids, ["b", "c"]);
        assert!(registry.list_handle_grants(&s_frame).await.unwrap().is_empty());
        assert_eq!(registry.events_after("a", 0).await.unwrap().len(), 0, "grant changes append nothing");
    }

    #[tokio::test]
    async fn listings_filter_and_sort_by_id() {
        let (_, registry) = registered(&["c", "a", "b"]).await;
        registry.complete_process("b", ProcessAwaitOutput::failure("e", "m")).await.unwrap();
        registry
            .set_external_ref("c", ProcessExternalRef { backend: "queue".into(), id: "1".into(), metadata: None })
            .await
            .unwrap();
        let ids = |records: Vec<ProcessRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(registry.list_non_terminal().await.unwrap()), ["a", "c"]);
        assert_eq!(ids(registry.list_processes(&ProcessListFilter::default()).await.unwrap()), ["a", "c"]);
        assert_eq!(ids(registry.list_processes(&ProcessListFilter::any()).await.unwrap()), ["a", "b", "c"]);
        let failed = ProcessListFilter { status: ProcessStatusFilter::Failed, ..ProcessListFilter::default() };
        assert_eq!(ids(registry.list_processes(&failed).await.unwrap()), ["b"]);
        assert!(registry.get_process("c").await.unwrap().external_ref.is_some());
        assert!(registry.get_process("nope").await.is_none());
        assert!(registry.clear_process_wait("nope").await.is_err());
    }

    #[tokio::test]
    async fn absurdly_deep_input_is_refused_without_overflowing_the_stack() {
        let (_, registry) = registered(&["p"]).await;
        let deep_payload = ProcessEventAppendRequest::new("tick", nested_arrays(100_000));
        let err = registry.append_event("p", deep_payload).await.unwrap_err();
        assert!(matches!(err, RegistryError::LimitExceeded { .. }));
        let deep_output = ProcessAwaitOutput::success(nested_arrays(100_000));
        assert!(matches!(registry.complete_process("p", deep_output).await, Err(RegistryError::LimitExceeded { .. })));
        let deep_input = ProcessRegistration::new("q", ProcessInput::external(nested_arrays(100_000)));
        assert!(matches!(registry.register_process(deep_input).await, Err(RegistryError::LimitExceeded { .. })));
        let deep_schema =
            registration("q").with_extra_event_types(vec![ProcessEventType::new("deep", nested_arrays(100_000))]);
        assert!(matches!(registry.register_process(deep_schema).await, Err(RegistryError::LimitExceeded { .. })));
        let deep_ref =
            ProcessExternalRef { backend: "b".into(), id: "i".into(), metadata: Some(nested_arrays(100_000)) };
        assert!(matches!(registry.set_external_ref("p", deep_ref).await, Err(RegistryError::LimitExceeded { .. })));
        assert!(registry.get_process("q").await.is_none());
        assert_eq!(registry.append_event("p", note("fine")).await.unwrap().event.sequence, 1);
    }
}
