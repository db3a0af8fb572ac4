//! The [`ProcessRegistry`] trait on [`ActorProcessRegistry`], as messages.
//!
//! The facade holds no process state. Each method bounds and hashes its
//! input in the caller's task (pure rules, in parallel across callers;
//! a single append from outside the runtime's tasks leaves its hash to
//! the actor, see the `input` module), then makes one call: per-process
//! calls go straight to the process's actor (`ask`, `park`),
//! registrations of new ids, grants and session deletion go to the
//! supervisor (`ask_supervisor`), and record reads come from the
//! snapshots actors publish. Every method runs in a tracing span named
//! after it when a subscriber listens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::call::{traced, Retry};
use super::input;
use super::lifecycle::ActorProcessRegistry;
use super::process::messages::ProcessMsg;
use super::supervisor::grants::owned_grants;
use super::supervisor::messages::SupervisorMsg;
use crate::batch::BatchProcessRegistry;
use crate::error::{PluginError, RegistryError};
use crate::events::{
    ProcessAwaitOutput, ProcessEvent, ProcessEventAppendRequest, ProcessEventAppendResult, ProcessWakeDelivery,
};
use crate::fenced::FencedProcessRegistry;
use crate::model::{
    DurabilityTier, ProcessExternalRef, ProcessHandleDescriptor, ProcessHandleGrant, ProcessHandleGrantEntry,
    ProcessLease, ProcessLeaseCompletion, ProcessListFilter, ProcessRecord, ProcessRegistration,
    ProcessSessionDeleteReport, ProcessStatusFilter, SessionScope, WaitState,
};
use crate::registry::ProcessRegistry;
use crate::rules::limits::truncated;
use crate::rules::registration::{dismantle_registration, prepare_registration, same_registration};
use crate::rules::scope::{check_scope, check_session_id};
use async_trait::async_trait;

/// An append checked in the caller's task and not sent yet (`None` once
/// it was moved into its message), or why it was refused.
type UnsentAppend = Result<Option<(ProcessEventAppendRequest, Option<String>)>, RegistryError>;

/// A committed event as the log shares it, and its wake delivery.
type SharedAppend = (Arc<ProcessEvent>, Option<ProcessWakeDelivery>);

/// Whether the caller is not a task on the runtime (it is the body of a
/// `block_on`, `#[tokio::main]` or `#[tokio::test]`, or a thread of its
/// own): then every message to an actor and every answer crosses threads,
/// and the work between two calls is better done by the actor (see the
/// `input` module). One thread-local read.
fn outside_tasks() -> bool {
    tokio::task::try_id().is_none()
}

fn owned_events(events: Vec<Arc<ProcessEvent>>) -> Vec<ProcessEvent> {
    events.iter().map(|event| ProcessEvent::clone(event)).collect()
}

impl ActorProcessRegistry {
    /// Appends `request`, fenced by `fence` when there is one, and answers
    /// with an owned copy of the event.
    ///
    /// Not an `async fn`, nor is [`Self::append_shared`]: one keeps each
    /// argument for its whole life, so every pending append would carry
    /// the request once per layer. The request is checked before the
    /// future is built, and the future holds it once, in the slot the
    /// message is built from.
    fn append<'a>(
        &'a self,
        process_id: &'a str,
        request: ProcessEventAppendRequest,
        fence: Option<&'a ProcessLease>,
    ) -> impl Future<Output = Result<ProcessEventAppendResult, PluginError>> + Send + 'a {
        // Outside the runtime's tasks the hash and the copy are the
        // actor's (see `input`): the copy arrives as an `Arc` nobody
        // else holds, unwrapped here for free.
        let outside = outside_tasks();
        let mut unsent = self.checked_append(process_id, request, outside);
        async move {
            let (event, wake_delivery) = self.send_append(process_id, &mut unsent, fence, outside).await?;
            let event = if outside {
                Arc::try_unwrap(event).unwrap_or_else(|shared| ProcessEvent::clone(&shared))
            } else {
                ProcessEvent::clone(&event)
            };
            Ok(ProcessEventAppendResult { event, wake_delivery })
        }
    }

    /// [`Self::append`], answering with the committed event as the log
    /// shares it: callers that only need the commit (completion answers
    /// with the record) skip the deep copy of its payload.
    fn append_shared<'a>(
        &'a self,
        process_id: &'a str,
        request: ProcessEventAppendRequest,
        fence: Option<&'a ProcessLease>,
    ) -> impl Future<Output = Result<SharedAppend, PluginError>> + Send + 'a {
        let mut unsent = self.checked_append(process_id, request, outside_tasks());
        async move { self.send_append(process_id, &mut unsent, fence, false).await }
    }

    /// `request` checked against the limits, with its payload hash unless
    /// `leave_hash` leaves it to the actor, ready to be sent (`Some`), or
    /// why it is refused.
    fn checked_append(&self, process_id: &str, request: ProcessEventAppendRequest, leave_hash: bool) -> UnsentAppend {
        let limits = &self.shared().limits;
        if leave_hash {
            input::checked_unhashed(limits, process_id, request).map(|request| Some((request, None)))
        } else {
            input::checked_append(limits, process_id, request).map(|(request, hash)| Some((request, Some(hash))))
        }
    }

    /// Sends the checked append in `unsent` to the process's actor; with
    /// `owned_answer`, the actor answers with an event of the answer's own.
    async fn send_append(
        &self,
        process_id: &str,
        unsent: &mut UnsentAppend,
        fence: Option<&ProcessLease>,
        owned_answer: bool,
    ) -> Result<SharedAppend, PluginError> {
        let unsent = unsent.as_mut().map_err(|error| error.clone())?;
        // A replay key makes a second send answer with the first's event,
        // unless the append is fenced: a second send is checked against the
        // lease as it is then, which may have moved on since the first
        // committed, and would answer `LeaseFenced` for a write that happened.
        let keyed = unsent.as_ref().is_some_and(|(request, _)| request.replay_key().is_some());
        let retry = if keyed && fence.is_none() { Retry::Idempotent } else { Retry::Never };
        let resent = self.resends(retry);
        self.ask(process_id, retry, |reply| {
            let (request, payload_hash) = if resent {
                // Kept for a retry: each send gets a copy.
                unsent.clone()?
            } else {
                // Sent once: moved, never copied.
                unsent.take()?
            };
            Some(ProcessMsg::Append { request, payload_hash, owned_answer, fence: fence.cloned().map(Box::new), reply })
        })
        .await
    }

    /// Whether a call with `retry` may be sent more than once, so its
    /// message must be built from a copy: after a lost answer when it is
    /// not `Never`, and whenever a shared store may answer `Contended`
    /// (nothing committed: the call is planned again).
    fn resends(&self, retry: Retry) -> bool {
        retry != Retry::Never || self.shared().store.shared().is_some()
    }

    /// `record` as the registry holds it now: with a shared store another
    /// node may have moved it since this node cached it, so it is read
    /// again; otherwise it is the answer as it stands.
    async fn current_record(&self, record: ProcessRecord) -> Result<ProcessRecord, RegistryError> {
        let Some(store) = self.shared().store.shared() else {
            return Ok(record);
        };
        let fresh = store.fetch_records(std::slice::from_ref(&record.id)).await?;
        Ok(fresh.first().map_or(record, |current| ProcessRecord::clone(current)))
    }

    /// The record as published after a commit this caller waited for.
    fn committed_record(&self, process_id: &str) -> Result<ProcessRecord, PluginError> {
        self.shared()
            .routes
            .record(process_id)
            .map(|record| ProcessRecord::clone(&record))
            .ok_or_else(|| RegistryError::unknown(process_id))
    }

    /// Sets (`Some`) or clears (`None`) the wait state, fenced by `fence`
    /// when there is one.
    async fn set_wait(
        &self,
        process_id: &str,
        wait: Option<WaitState>,
        fence: Option<&ProcessLease>,
    ) -> Result<ProcessRecord, PluginError> {
        // Setting a wait is idempotent (the same state again), but the
        // state moves into the message: a set is sent once. A fenced call
        // is sent once too (a second send would be checked against the
        // lease as it is then; see `send_append`).
        let retry = if wait.is_some() || fence.is_some() { Retry::Never } else { Retry::Idempotent };
        let resent = self.resends(retry);
        let mut unsent = Some(wait);
        self.ask(process_id, retry, |reply| {
            let wait = if resent { unsent.clone()? } else { unsent.take()? };
            Some(ProcessMsg::SetWait { wait, fence: fence.cloned().map(Box::new), reply })
        })
        .await
    }

    async fn grant_entries(
        &self,
        session_scope: &SessionScope,
        keep: impl Fn(&ProcessRecord) -> bool,
    ) -> Result<Vec<ProcessHandleGrantEntry>, RegistryError> {
        check_scope(&self.shared().limits, "", session_scope)?;
        let Some(store) = self.shared().store.shared() else {
            // One writer: the published index and records are current.
            let grants = self.shared().grants.read().grants_of_scope(&session_scope.id());
            return Ok(grants
                .into_iter()
                .filter_map(|grant| {
                    let record = self.shared().routes.record(&grant.process_id)?;
                    keep(&record).then(|| (ProcessHandleGrant::clone(&grant), ProcessRecord::clone(&record)))
                })
                .collect());
        };
        let grants =
            self.ask_supervisor("", |reply| SupervisorMsg::ListGrants { scope: session_scope.clone(), reply }).await?;
        // Records as the store holds them now: another node may have
        // completed a process this node has cached.
        let ids: Vec<String> = grants.iter().map(|grant| grant.process_id.clone()).collect();
        let records: std::collections::HashMap<String, Arc<ProcessRecord>> =
            store.fetch_records(&ids).await?.into_iter().map(|record| (record.id.clone(), record)).collect();
        Ok(grants
            .into_iter()
            .filter_map(|grant| {
                let record = records.get(&grant.process_id)?;
                keep(record).then(|| (grant, ProcessRecord::clone(record)))
            })
            .collect())
    }
}

#[async_trait]
impl ProcessRegistry for ActorProcessRegistry {
    fn durability_tier(&self) -> DurabilityTier {
        self.shared().store.durability_tier()
    }

    async fn register_process(&self, registration: ProcessRegistration) -> Result<ProcessRecord, PluginError> {
        let process_id = truncated(&registration.id);
        traced("register_process", &process_id.clone(), async move {
            let shared = self.shared();
            if shared.is_stopping() {
                // Unmeasured caller JSON: drop it without recursion.
                dismantle_registration(registration);
                return Err(RegistryError::stopped(&process_id));
            }
            let prepared = prepare_registration(registration, &shared.limits, &shared.schemas)?;
            if let Some(existing) = shared.routes.record(&prepared.registration.id) {
                let answer = same_registration(&existing, &prepared.hash)?;
                return self.current_record(answer).await;
            }
            let prepared = Box::new(prepared);
            let answer = self.ask_supervisor(&process_id, |reply| SupervisorMsg::Register { prepared, reply }).await?;
            self.current_record(answer).await
        })
        .await
    }

    async fn set_external_ref(
        &self,
        process_id: &str,
        external_ref: ProcessExternalRef,
    ) -> Result<ProcessRecord, PluginError> {
        traced("set_external_ref", process_id, async {
            let external_ref = input::bounded_external_ref(&self.shared().limits, process_id, external_ref)?;
            self.ask(process_id, Retry::Idempotent, |reply| {
                Some(ProcessMsg::SetExternalRef { external_ref: external_ref.clone(), reply })
            })
            .await
        })
        .await
    }

    async fn grant_handle(
        &self,
        session_scope: &SessionScope,
        process_id: &str,
        descriptor: ProcessHandleDescriptor,
    ) -> Result<ProcessHandleGrant, PluginError> {
        traced("grant_handle", process_id, async {
            let limits = &self.shared().limits;
            limits.check_id(process_id, "process id bytes", process_id)?;
            check_scope(limits, process_id, session_scope)?;
            crate::rules::scope::check_descriptor(limits, process_id, &descriptor)?;
            self.ask_supervisor(process_id, |reply| SupervisorMsg::Grant {
                scope: session_scope.clone(),
                process_id: process_id.to_owned(),
                descriptor,
                reply,
            })
            .await
        })
        .await
    }

    async fn revoke_handle(&self, session_scope: &SessionScope, process_id: &str) -> Result<(), PluginError> {
        traced("revoke_handle", process_id, async {
            check_scope(&self.shared().limits, process_id, session_scope)?;
            self.ask_supervisor(process_id, |reply| SupervisorMsg::Revoke {
                scope: session_scope.clone(),
                process_id: process_id.to_owned(),
                reply,
            })
            .await
        })
        .await
    }

    async fn transfer_handle_grants(
        &self,
        from_scope: &SessionScope,
        to_scope: &SessionScope,
        process_ids: &[String],
    ) -> Result<(), PluginError> {
        let first = process_ids.first().map(String::as_str).unwrap_or_default();
        traced("transfer_handle_grants", first, async {
            check_scope(&self.shared().limits, first, from_scope)?;
            check_scope(&self.shared().limits, first, to_scope)?;
            self.ask_supervisor(first, |reply| SupervisorMsg::Transfer {
                from: from_scope.clone(),
                to: to_scope.clone(),
                process_ids: process_ids.to_vec(),
                reply,
            })
            .await
        })
        .await
    }

    async fn list_handle_grants(
        &self,
        session_scope: &SessionScope,
    ) -> Result<Vec<ProcessHandleGrantEntry>, PluginError> {
        traced("list_handle_grants", "", self.grant_entries(session_scope, |_| true)).await
    }

    async fn list_live_handle_grants(
        &self,
        session_scope: &SessionScope,
    ) -> Result<Vec<ProcessHandleGrantEntry>, PluginError> {
        traced("list_live_handle_grants", "", self.grant_entries(session_scope, |record| !record.is_terminal())).await
    }

    async fn has_handle_grant(&self, session_scope: &SessionScope, process_id: &str) -> Result<bool, PluginError> {
        traced("has_handle_grant", process_id, async {
            check_scope(&self.shared().limits, process_id, session_scope)?;
            if self.shared().store.shared().is_none() {
                let granted = self.shared().grants.read().has(&session_scope.id(), process_id);
                return Ok(granted && self.shared().routes.contains(process_id));
            }
            self.ask_supervisor(process_id, |reply| SupervisorMsg::HasGrant {
                scope: session_scope.clone(),
                process_id: process_id.to_owned(),
                reply,
            })
            .await
        })
        .await
    }

    async fn handle_grants_for_process(&self, process_id: &str) -> Result<Vec<ProcessHandleGrant>, PluginError> {
        traced("handle_grants_for_process", process_id, async {
            if self.shared().store.shared().is_none() {
                if !self.shared().routes.contains(process_id) {
                    return Err(RegistryError::unknown(process_id));
                }
                let grants = self.shared().grants.read().grants_of_process(process_id);
                return Ok(owned_grants(grants));
            }
            self.ask_supervisor(process_id, |reply| SupervisorMsg::GrantsOfProcess {
                process_id: process_id.to_owned(),
                reply,
            })
            .await
        })
        .await
    }

    async fn delete_session_process_state(&self, session_id: &str) -> Result<ProcessSessionDeleteReport, PluginError> {
        traced("delete_session_process_state", "", async {
            check_session_id(&self.shared().limits, "", session_id)?;
            self.ask_supervisor("", |reply| SupervisorMsg::DeleteSession { session_id: session_id.to_owned(), reply })
                .await
        })
        .await
    }

    // Written out as `async_trait` would write it, without its `async`
    // block: that block would keep the request beside the future that
    // holds it already, in every pending append (a flood of callers on a
    // full mailbox pays it per caller). `append` checks the request before
    // it builds its future.
    fn append_event<'life0, 'life1, 'async_trait>(
        &'life0 self,
        process_id: &'life1 str,
        request: ProcessEventAppendRequest,
    ) -> Pin<Box<dyn Future<Output = Result<ProcessEventAppendResult, PluginError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(traced("append_event", process_id, self.append(process_id, request, None)))
    }

    async fn events_after(&self, process_id: &str, after_sequence: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        traced("events_after", process_id, async {
            let events = self
                .read(
                    process_id,
                    |reply| ProcessMsg::EventsAfter { after: after_sequence, reply },
                    |committed| committed.events_after(after_sequence).to_vec(),
                )
                .await?;
            Ok(owned_events(events))
        })
        .await
    }

    async fn count_events_through(
        &self,
        process_id: &str,
        event_type: &str,
        up_to_sequence: u64,
    ) -> Result<u64, PluginError> {
        traced("count_events_through", process_id, async {
            self.shared().limits.check_id(process_id, "event type bytes", event_type)?;
            self.read(
                process_id,
                |reply| ProcessMsg::CountThrough { event_type: event_type.to_owned(), up_to: up_to_sequence, reply },
                |committed| committed.count_through(event_type, up_to_sequence),
            )
            .await
        })
        .await
    }

    async fn recent_events(&self, process_id: &str, limit: usize) -> Result<Vec<ProcessEvent>, PluginError> {
        traced("recent_events", process_id, async {
            let events = self
                .read(
                    process_id,
                    |reply| ProcessMsg::Recent { limit, reply },
                    |committed| committed.recent(limit).to_vec(),
                )
                .await?;
            Ok(owned_events(events))
        })
        .await
    }

    async fn wake_events_after(&self, process_id: &str, after_sequence: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        traced("wake_events_after", process_id, async {
            let events = self
                .read(
                    process_id,
                    |reply| ProcessMsg::WakeEventsAfter { after: after_sequence, reply },
                    |committed| committed.wake_events_after(after_sequence),
                )
                .await?;
            Ok(owned_events(events))
        })
        .await
    }

    async fn wait_event_after(
        &self,
        process_id: &str,
        event_type: &str,
        after_sequence: u64,
    ) -> Result<ProcessEvent, PluginError> {
        traced("wait_event_after", process_id, async {
            self.shared().limits.check_id(process_id, "event type bytes", event_type)?;
            let event = self
                .park(process_id, |waiter_id, admitted, reply| ProcessMsg::WaitEvent {
                    event_type: event_type.to_owned(),
                    after: after_sequence,
                    waiter_id,
                    admitted,
                    reply,
                })
                .await?;
            Ok(ProcessEvent::clone(&event))
        })
        .await
    }

    async fn await_process(&self, process_id: &str) -> Result<ProcessAwaitOutput, PluginError> {
        traced("await_process", process_id, async {
            self.park(process_id, |waiter_id, admitted, reply| ProcessMsg::AwaitOutput { waiter_id, admitted, reply })
                .await
        })
        .await
    }

    async fn complete_process(
        &self,
        process_id: &str,
        await_output: ProcessAwaitOutput,
    ) -> Result<ProcessRecord, PluginError> {
        traced("complete_process", process_id, async {
            let request = input::terminal_request(&self.shared().limits, process_id, await_output)?;
            self.append_shared(process_id, request, None).await?;
            // A repeated completion is answered from this node's cache and
            // commits nothing: with a shared store another node may have
            // moved the record since (an external ref set after the end),
            // so it is read as it stands.
            self.current_record(self.committed_record(process_id)?).await
        })
        .await
    }

    async fn set_process_wait(&self, process_id: &str, wait: WaitState) -> Result<ProcessRecord, PluginError> {
        traced("set_process_wait", process_id, self.set_wait(process_id, Some(wait), None)).await
    }

    async fn clear_process_wait(&self, process_id: &str) -> Result<ProcessRecord, PluginError> {
        traced("clear_process_wait", process_id, self.set_wait(process_id, None, None)).await
    }

    async fn get_process(&self, process_id: &str) -> Option<ProcessRecord> {
        if let Some(store) = self.shared().store.shared() {
            // The record as the store holds it now, whichever node wrote it.
            return traced("get_process", process_id, async {
                match store.fetch_records(&[process_id.to_owned()]).await {
                    Ok(records) => records.first().map(|record| ProcessRecord::clone(record)),
                    Err(error) => {
                        tracing::error!(%error, "get_process could not read the shared store");
                        None
                    }
                }
            })
            .await;
        }
        let _span =
            tracing::trace_span!("process_registry", operation = "get_process", process_id = %truncated(process_id))
                .entered();
        self.shared().routes.record(process_id).map(|record| ProcessRecord::clone(&record))
    }

    async fn list_processes(&self, filter: &ProcessListFilter) -> Result<Vec<ProcessRecord>, PluginError> {
        traced("list_processes", "", async {
            if let Some(store) = self.shared().store.shared() {
                let running_only = filter.status == ProcessStatusFilter::Running;
                let records = store.list_records(running_only).await?;
                return Ok(records
                    .iter()
                    .filter(|record| filter.matches(record))
                    .map(|record| ProcessRecord::clone(record))
                    .collect());
            }
            Ok(self.shared().routes.listed(filter.status, |record| filter.matches(record)))
        })
        .await
    }

    async fn ack_wake(&self, process_id: &str, sequence: u64) -> Result<(), PluginError> {
        traced("ack_wake", process_id, async {
            self.ask(process_id, Retry::Idempotent, |reply| Some(ProcessMsg::AckWake { sequence, reply })).await
        })
        .await
    }

    /// The recovery worklist: every non-terminal process a worker can claim,
    /// so quarantined ones are left out (they are in `stats().quarantined`
    /// until released).
    async fn list_non_terminal(&self) -> Result<Vec<ProcessRecord>, PluginError> {
        traced("list_non_terminal", "", async {
            let shared = self.shared();
            let quarantined = shared.counters.quarantined_ids();
            if let Some(store) = shared.store.shared() {
                let records = store.list_records(true).await?;
                return Ok(records
                    .iter()
                    .filter(|record| !record.is_terminal() && !quarantined.contains(record.id.as_str()))
                    .map(|record| ProcessRecord::clone(record))
                    .collect());
            }
            Ok(shared.routes.listed(ProcessStatusFilter::Running, |record| {
                !record.is_terminal() && !quarantined.contains(record.id.as_str())
            }))
        })
        .await
    }

    async fn claim_process_lease(
        &self,
        process_id: &str,
        owner_id: &str,
        lease_ttl_ms: u64,
    ) -> Result<ProcessLease, PluginError> {
        traced("claim_process_lease", process_id, async {
            self.shared().limits.check_id(process_id, "owner id bytes", owner_id)?;
            crate::rules::limits::refuse_nul(process_id, "owner id", owner_id)?;
            self.ask(process_id, Retry::Never, |reply| {
                Some(ProcessMsg::ClaimLease { owner_id: owner_id.to_owned(), ttl_ms: lease_ttl_ms, reply })
            })
            .await
        })
        .await
    }

    async fn renew_process_lease(&self, lease: &ProcessLease, lease_ttl_ms: u64) -> Result<ProcessLease, PluginError> {
        traced("renew_process_lease", &lease.process_id, async {
            self.ask(&lease.process_id, Retry::Never, |reply| {
                Some(ProcessMsg::RenewLease { lease: lease.clone(), ttl_ms: lease_ttl_ms, reply })
            })
            .await
        })
        .await
    }

    async fn complete_process_lease(&self, completion: &ProcessLeaseCompletion) -> Result<(), PluginError> {
        traced("complete_process_lease", &completion.process_id, async {
            self.ask(&completion.process_id, Retry::Idempotent, |reply| {
                Some(ProcessMsg::CompleteLease { completion: completion.clone(), reply })
            })
            .await
        })
        .await
    }
}

#[async_trait]
impl BatchProcessRegistry for ActorProcessRegistry {
    async fn append_events(
        &self,
        process_id: &str,
        requests: Vec<ProcessEventAppendRequest>,
    ) -> Result<Vec<ProcessEventAppendResult>, PluginError> {
        traced("append_events", process_id, async {
            // An empty batch goes to the actor too: an unknown process is
            // an error however little is asked of it (it commits nothing).
            let checked = input::checked_batch(&self.shared().limits, process_id, requests)?;
            // Sent again after a lost answer only when every request has a
            // replay key (then a second send answers with the first's events).
            let retry = if checked.iter().all(|(request, _)| request.replay_key().is_some()) {
                Retry::Idempotent
            } else {
                Retry::Never
            };
            let resent = self.resends(retry);
            let mut unsent = Some(checked);
            let answered = self
                .ask(process_id, retry, |reply| {
                    let requests = if resent { unsent.clone()? } else { unsent.take()? };
                    Some(ProcessMsg::AppendBatch { requests, reply })
                })
                .await?;
            Ok(answered
                .into_iter()
                .map(|(event, wake_delivery)| ProcessEventAppendResult {
                    event: ProcessEvent::clone(&event),
                    wake_delivery,
                })
                .collect())
        })
        .await
    }
}

#[async_trait]
impl FencedProcessRegistry for ActorProcessRegistry {
    async fn append_event_fenced(
        &self,
        lease: &ProcessLease,
        request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, PluginError> {
        let process_id = &lease.process_id;
        traced("append_event_fenced", process_id, self.append(process_id, request, Some(lease))).await
    }

    async fn complete_process_fenced(
        &self,
        lease: &ProcessLease,
        await_output: ProcessAwaitOutput,
    ) -> Result<ProcessRecord, PluginError> {
        let process_id = &lease.process_id;
        traced("complete_process_fenced", process_id, async {
            let request = input::terminal_request(&self.shared().limits, process_id, await_output)?;
            self.append_shared(process_id, request, Some(lease)).await?;
            self.committed_record(process_id)
        })
        .await
    }

    async fn set_process_wait_fenced(
        &self,
        lease: &ProcessLease,
        wait: WaitState,
    ) -> Result<ProcessRecord, PluginError> {
        let process_id = &lease.process_id;
        traced("set_process_wait_fenced", process_id, self.set_wait(process_id, Some(wait), Some(lease))).await
    }

    fn registration_notices(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.shared().registrations.subscribe())
    }
}
