//! [`ActorProcessRegistry`]: the trait, as messages.
//!
//! The facade holds no process state. It validates and hashes input in the
//! caller's task (pure rules, in parallel across callers), then sends one
//! message and awaits the reply. Per-process calls look their actor up in the
//! routing table and go straight to it; registrations of new ids, grants and
//! session deletion go to the supervisor.
//!
//! When a process actor dies under a call, the reply port closes. Reads and
//! waits are retried on the restarted actor, transparently; a mutation gets
//! [`RegistryError::ProcessRestarted`] (it was not committed, or the commit
//! is visible to a read); during shutdown every call gets
//! [`RegistryError::Stopped`].

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ractor::{Actor, ActorRef, MessagingErr, RpcReplyPort};
use serde_json::json;
use tokio::sync::{Mutex, OwnedSemaphorePermit, TryAcquireError};

use super::messages::{ProcessMsg, Reply, SupervisorMsg};
use super::routes::{ActiveProcess, Slot};
use super::supervisor::{same_registration, RegistrySupervisor};
use super::{OverloadPolicy, RegistryConfig, RegistryStats, Shared};
use crate::error::{PluginError, RegistryError};
use crate::events::{ProcessAwaitOutput, ProcessEvent, ProcessEventAppendRequest, ProcessEventAppendResult};
use crate::model::{
    DurabilityTier, ProcessExternalRef, ProcessHandleDescriptor, ProcessHandleGrant, ProcessHandleGrantEntry,
    ProcessLease, ProcessLeaseCompletion, ProcessListFilter, ProcessRecord, ProcessRegistration,
    ProcessSessionDeleteReport, SessionScope, WaitState,
};
use crate::registry::ProcessRegistry;
use crate::rules::append::check_and_hash_payload;
use crate::rules::limits::{dismantle, truncated, Limits};
use crate::rules::registration::prepare_registration;

/// How long shutdown waits for actors to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How many times a call looks for a restarted actor before giving up.
const RESTART_ATTEMPTS: u32 = 200;

/// The process registry on per-process actors. Cheap to clone: clones share
/// one registry.
#[derive(Clone, Debug)]
pub struct ActorProcessRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    supervisor: ActorRef<SupervisorMsg>,
    supervisor_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Ticks the passivation sweep; aborted at shutdown.
    sweeper: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    /// A registry dropped without `shutdown()` still stops its actors.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(sweeper) = &self.sweeper {
            sweeper.abort();
        }
        self.supervisor.stop_children(None);
        self.supervisor.stop(None);
    }
}

/// Whether a call may be sent again to a restarted actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Reads and waits: the answer does not depend on which actor gives it.
    Transparent,
    /// Mutations: report [`RegistryError::ProcessRestarted`].
    Never,
}

/// Tells the process actor that a parked caller went away (future dropped).
struct WaiterGuard {
    actor: ActorRef<ProcessMsg>,
    waiter_id: u64,
    armed: bool,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        if self.armed {
            // The actor may be gone already; then there is nothing to clean.
            let _ = self.actor.send_message(ProcessMsg::CancelWaiter { waiter_id: self.waiter_id });
        }
    }
}

impl ActorProcessRegistry {
    /// Starts a registry on `config.store`: the supervisor routes every
    /// process the store already holds (as passive: their actors start on
    /// first use), and a sweeper ticks passivation when it is enabled.
    pub async fn start(config: RegistryConfig) -> Result<Self, RegistryError> {
        let shared = Arc::new(Shared::new(config));
        let supervisor = RegistrySupervisor { shared: Arc::clone(&shared) };
        let (supervisor, task) = Actor::spawn(None, supervisor, ()).await.map_err(|err| RegistryError::Storage {
            process_id: String::new(),
            message: format!("could not start the registry supervisor: {err}"),
        })?;
        let sweeper = shared.passivate_after.map(|idle| {
            let supervisor = supervisor.clone();
            let period = (idle / 2).max(Duration::from_millis(50));
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if supervisor.send_message(SupervisorMsg::Sweep).is_err() {
                        break;
                    }
                }
            })
        });
        Ok(Self { inner: Arc::new(Inner { shared, supervisor, supervisor_task: Mutex::new(Some(task)), sweeper }) })
    }

    /// Stops every actor. Parked callers, calls in flight and later calls
    /// get [`RegistryError::Stopped`]; reads of published records
    /// (`get_process`, `list_processes`, `list_non_terminal`) keep answering
    /// from the last snapshots. Idempotent.
    pub async fn shutdown(&self) {
        let shared = &self.inner.shared;
        shared.stopping.store(true, Ordering::Release);
        if let Some(sweeper) = &self.inner.sweeper {
            sweeper.abort();
        }
        let supervisor = &self.inner.supervisor;
        // Every process actor is linked to the supervisor: this stops them all.
        supervisor.stop_children_and_wait(None, Some(SHUTDOWN_GRACE)).await;
        let _ = supervisor.stop_and_wait(None, Some(SHUTDOWN_GRACE)).await;
        if let Some(task) = self.inner.supervisor_task.lock().await.take() {
            let _ = task.await;
        }
    }

    /// Counters for dashboards; O(1).
    pub fn stats(&self) -> RegistryStats {
        self.inner.shared.counters.snapshot()
    }

    /// Makes the process's actor panic, to exercise supervision.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_panic(&self, process_id: &str) -> Result<(), RegistryError> {
        let active = self.active(process_id).await?;
        active.actor.send_message(ProcessMsg::InjectPanic).map_err(|_| RegistryError::stopped(process_id))
    }

    /// Asks every actor idle for the configured time (by the registry clock)
    /// to passivate now, instead of at the next periodic sweep.
    pub fn passivate_idle(&self) {
        let _ = self.inner.supervisor.send_message(SupervisorMsg::Sweep);
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The running actor of a process, activating one when it is passive.
    async fn active(&self, process_id: &str) -> Result<Arc<ActiveProcess>, RegistryError> {
        match self.shared().routes.slot(process_id) {
            None => Err(RegistryError::unknown(process_id)),
            Some(Slot::Active(active)) => Ok(active),
            Some(Slot::Quarantined) => Err(RegistryError::Quarantined { process_id: process_id.to_owned() }),
            Some(Slot::Passive) => {
                self.ask_supervisor(process_id, |reply| SupervisorMsg::Activate {
                    process_id: process_id.to_owned(),
                    reply,
                })
                .await
            }
        }
    }

    /// A mailbox slot on `active`, per the overload policy; `None` when the
    /// actor is passivating (its permits are closed) and the call must be
    /// routed again.
    async fn permit(
        &self,
        process_id: &str,
        active: &ActiveProcess,
    ) -> Result<Option<OwnedSemaphorePermit>, RegistryError> {
        let permits = Arc::clone(&active.permits);
        match self.shared().mailbox.policy {
            OverloadPolicy::Wait => Ok(permits.acquire_owned().await.ok()),
            OverloadPolicy::Reject => match permits.try_acquire_owned() {
                Ok(permit) => Ok(Some(permit)),
                Err(TryAcquireError::Closed) => Ok(None),
                Err(TryAcquireError::NoPermits) => Err(RegistryError::Overloaded {
                    process_id: process_id.to_owned(),
                    capacity: self.shared().mailbox.capacity,
                }),
            },
        }
    }

    fn lost(&self, process_id: &str) -> RegistryError {
        if self.shared().is_stopping() {
            RegistryError::stopped(process_id)
        } else {
            RegistryError::ProcessRestarted { process_id: process_id.to_owned() }
        }
    }

    /// Sends `build(reply)` to the process's actor and awaits the answer.
    ///
    /// A send refused by an actor that is stopping hands the message back,
    /// and it is re-sent unchanged to the replacement actor: it was never
    /// seen, so this is safe for every call. A message that was delivered
    /// but never answered died with its actor: during shutdown that is
    /// `Stopped`; otherwise a `Transparent` call is built and sent again,
    /// and a mutation reports `ProcessRestarted`.
    async fn ask<T: Send + 'static>(
        &self,
        process_id: &str,
        retry: Retry,
        mut build: impl FnMut(Reply<T>) -> Option<ProcessMsg>,
    ) -> Result<T, RegistryError> {
        let mut attempts = 0u32;
        loop {
            let (tx, rx) = ractor::concurrency::oneshot();
            let Some(mut message) = build(RpcReplyPort::from(tx)) else {
                return Err(self.lost(process_id));
            };
            loop {
                let active = self.active(process_id).await?;
                let Some(_permit) = self.permit(process_id, &active).await? else {
                    // Passivating: the supervisor marks the process passive next.
                    tokio::task::yield_now().await;
                    continue;
                };
                match active.actor.send_message(message) {
                    Ok(()) => match rx.await {
                        Ok(answer) => return answer,
                        Err(_) => break,
                    },
                    Err(MessagingErr::SendErr(refused)) => message = refused,
                    Err(_) => return Err(self.lost(process_id)),
                }
                self.before_retry(process_id, &mut attempts).await?;
            }
            if retry == Retry::Never {
                return Err(self.lost(process_id));
            }
            self.before_retry(process_id, &mut attempts).await?;
        }
    }

    /// Waits a moment for the supervisor to replace a dead actor; gives up
    /// on shutdown or after `RESTART_ATTEMPTS`.
    async fn before_retry(&self, process_id: &str, attempts: &mut u32) -> Result<(), RegistryError> {
        *attempts += 1;
        if self.shared().is_stopping() || *attempts > RESTART_ATTEMPTS {
            return Err(self.lost(process_id));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }

    /// Parks on the process's actor until `build`'s wait is answered; the
    /// guard cancels the wait if this future is dropped first.
    async fn park<T: Send + 'static>(
        &self,
        process_id: &str,
        build: impl Fn(u64, Reply<T>) -> ProcessMsg,
    ) -> Result<T, RegistryError> {
        let mut attempts = 0u32;
        loop {
            let actor = self.active(process_id).await?.actor.clone();
            let waiter_id = self.shared().next_waiter_id();
            let (tx, rx) = ractor::concurrency::oneshot();
            if actor.send_message(build(waiter_id, RpcReplyPort::from(tx))).is_ok() {
                let mut guard = WaiterGuard { actor, waiter_id, armed: true };
                let answer = rx.await;
                guard.armed = false;
                match answer {
                    Ok(answer) => return answer,
                    Err(_) if self.shared().is_stopping() => return Err(RegistryError::stopped(process_id)),
                    // Restarted: re-park on the new actor straight away.
                    Err(_) => continue,
                }
            }
            self.before_retry(process_id, &mut attempts).await?;
        }
    }

    /// Sends `build(reply)` to the supervisor and awaits the answer.
    async fn ask_supervisor<T: Send + 'static>(
        &self,
        process_id: &str,
        build: impl FnOnce(Reply<T>) -> SupervisorMsg,
    ) -> Result<T, RegistryError> {
        if self.shared().is_stopping() {
            return Err(RegistryError::stopped(process_id));
        }
        let (tx, rx) = ractor::concurrency::oneshot();
        self.inner
            .supervisor
            .send_message(build(RpcReplyPort::from(tx)))
            .map_err(|_| RegistryError::stopped(process_id))?;
        rx.await.unwrap_or_else(|_| Err(RegistryError::stopped(process_id)))
    }

    async fn grant_entries(
        &self,
        session_scope: &SessionScope,
        keep: impl Fn(&ProcessRecord) -> bool,
    ) -> Result<Vec<ProcessHandleGrantEntry>, RegistryError> {
        let grants =
            self.ask_supervisor("", |reply| SupervisorMsg::ListGrants { scope: session_scope.clone(), reply }).await?;
        Ok(grants
            .into_iter()
            .filter_map(|grant| {
                let record = self.shared().routes.record(&grant.process_id)?;
                keep(&record).then(|| (grant, ProcessRecord::clone(&record)))
            })
            .collect())
    }
}

/// Refuses an await output whose values nest deeper than the limit (they
/// are serialized recursively), dropping them without recursion.
fn bounded_output(
    limits: &Limits,
    process_id: &str,
    output: ProcessAwaitOutput,
) -> Result<ProcessAwaitOutput, RegistryError> {
    let what = "await output depth";
    Ok(match output {
        ProcessAwaitOutput::Success { value } => {
            ProcessAwaitOutput::Success { value: limits.bounded(process_id, what, value)? }
        }
        ProcessAwaitOutput::Failure { code, message, raw } => ProcessAwaitOutput::Failure {
            code,
            message,
            raw: raw.map(|raw| limits.bounded(process_id, what, raw)).transpose()?,
        },
        ProcessAwaitOutput::Cancelled { message, raw } => ProcessAwaitOutput::Cancelled {
            message,
            raw: raw.map(|raw| limits.bounded(process_id, what, raw)).transpose()?,
        },
    })
}

fn owned_events(events: Vec<Arc<ProcessEvent>>) -> Vec<ProcessEvent> {
    events.iter().map(|event| ProcessEvent::clone(event)).collect()
}

/// Runs `call` inside a span naming the operation and the process, when a
/// subscriber listens at debug level. Otherwise the call runs bare: even a
/// disabled span's wrapper costs about 3% of a sequential append.
async fn traced<T>(operation: &'static str, process_id: &str, call: impl Future<Output = T>) -> T {
    use tracing::Instrument;
    if tracing::enabled!(tracing::Level::DEBUG) {
        call.instrument(tracing::debug_span!("process_registry", operation, process_id = %truncated(process_id))).await
    } else {
        call.await
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
                return Err(RegistryError::stopped(&process_id));
            }
            let prepared = prepare_registration(registration, &shared.limits, &shared.schemas)?;
            if let Some(existing) = shared.routes.record(&prepared.registration.id) {
                return same_registration(&existing, &prepared.hash);
            }
            let prepared = Box::new(prepared);
            self.ask_supervisor(&process_id, |reply| SupervisorMsg::Register { prepared, reply }).await
        })
        .await
    }

    async fn set_external_ref(
        &self,
        process_id: &str,
        external_ref: ProcessExternalRef,
    ) -> Result<ProcessRecord, PluginError> {
        traced("set_external_ref", process_id, async {
            let mut external_ref = external_ref;
            if let Some(metadata) = external_ref.metadata.take() {
                external_ref.metadata = Some(self.shared().limits.bounded(process_id, "metadata depth", metadata)?);
            }
            let mut external_ref = Some(external_ref);
            self.ask(process_id, Retry::Never, |reply| {
                Some(ProcessMsg::SetExternalRef { external_ref: external_ref.take()?, reply })
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
            self.ask_supervisor("", |reply| SupervisorMsg::DeleteSession { session_id: session_id.to_owned(), reply })
                .await
        })
        .await
    }

    async fn append_event(
        &self,
        process_id: &str,
        request: ProcessEventAppendRequest,
    ) -> Result<ProcessEventAppendResult, PluginError> {
        traced("append_event", process_id, async {
            let payload_hash = match check_and_hash_payload(&self.shared().limits, process_id, &request) {
                Ok(hash) => hash,
                Err(err) => {
                    dismantle(request.payload);
                    return Err(err);
                }
            };
            let mut unsent = Some((request, payload_hash));
            let (event, wake_delivery) = self
                .ask(process_id, Retry::Never, |reply| {
                    let (request, payload_hash) = unsent.take()?;
                    Some(ProcessMsg::Append { request, payload_hash, reply })
                })
                .await?;
            Ok(ProcessEventAppendResult { event: ProcessEvent::clone(&event), wake_delivery })
        })
        .await
    }

    async fn events_after(&self, process_id: &str, after_sequence: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        traced("events_after", process_id, async {
            let events = self
                .ask(process_id, Retry::Transparent, |reply| {
                    Some(ProcessMsg::EventsAfter { after: after_sequence, reply })
                })
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
            self.ask(process_id, Retry::Transparent, |reply| {
                Some(ProcessMsg::CountThrough { event_type: event_type.to_owned(), up_to: up_to_sequence, reply })
            })
            .await
        })
        .await
    }

    async fn recent_events(&self, process_id: &str, limit: usize) -> Result<Vec<ProcessEvent>, PluginError> {
        traced("recent_events", process_id, async {
            let events =
                self.ask(process_id, Retry::Transparent, |reply| Some(ProcessMsg::Recent { limit, reply })).await?;
            Ok(owned_events(events))
        })
        .await
    }

    async fn wake_events_after(&self, process_id: &str, after_sequence: u64) -> Result<Vec<ProcessEvent>, PluginError> {
        traced("wake_events_after", process_id, async {
            let events = self
                .ask(process_id, Retry::Transparent, |reply| {
                    Some(ProcessMsg::WakeEventsAfter { after: after_sequence, reply })
                })
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
            let event = self
                .park(process_id, |waiter_id, reply| ProcessMsg::WaitEvent {
                    event_type: event_type.to_owned(),
                    after: after_sequence,
                    waiter_id,
                    reply,
                })
                .await?;
            Ok(ProcessEvent::clone(&event))
        })
        .await
    }

    async fn await_process(&self, process_id: &str) -> Result<ProcessAwaitOutput, PluginError> {
        traced("await_process", process_id, async {
            self.park(process_id, |waiter_id, reply| ProcessMsg::AwaitOutput { waiter_id, reply }).await
        })
        .await
    }

    async fn complete_process(
        &self,
        process_id: &str,
        await_output: ProcessAwaitOutput,
    ) -> Result<ProcessRecord, PluginError> {
        let event_type = await_output.terminal_state().event_type();
        let await_output = bounded_output(&self.shared().limits, process_id, await_output)?;
        let output = serde_json::to_value(&await_output).map_err(|err| RegistryError::InvalidPayload {
            process_id: process_id.to_owned(),
            event_type: event_type.to_owned(),
            path: "/await_output".to_owned(),
            message: err.to_string(),
        })?;
        let request = ProcessEventAppendRequest::new(event_type, json!({ "await_output": output }))
            .with_replay_key(format!("process:{process_id}:terminal:{event_type}"));
        self.append_event(process_id, request).await?;
        self.shared()
            .routes
            .record(process_id)
            .map(|record| ProcessRecord::clone(&record))
            .ok_or_else(|| RegistryError::unknown(process_id))
    }

    async fn set_process_wait(&self, process_id: &str, wait: WaitState) -> Result<ProcessRecord, PluginError> {
        traced("set_process_wait", process_id, async {
            let mut wait = Some(wait);
            self.ask(process_id, Retry::Never, |reply| Some(ProcessMsg::SetWait { wait: Some(wait.take()?), reply }))
                .await
        })
        .await
    }

    async fn clear_process_wait(&self, process_id: &str) -> Result<ProcessRecord, PluginError> {
        traced("clear_process_wait", process_id, async {
            self.ask(process_id, Retry::Never, |reply| Some(ProcessMsg::SetWait { wait: None, reply })).await
        })
        .await
    }

    async fn get_process(&self, process_id: &str) -> Option<ProcessRecord> {
        let _span =
            tracing::trace_span!("process_registry", operation = "get_process", process_id = %truncated(process_id))
                .entered();
        self.shared().routes.record(process_id).map(|record| ProcessRecord::clone(&record))
    }

    async fn list_processes(&self, filter: &ProcessListFilter) -> Result<Vec<ProcessRecord>, PluginError> {
        traced("list_processes", "", async {
            Ok(self
                .shared()
                .routes
                .records_where(|record| filter.matches(record))
                .iter()
                .map(|record| ProcessRecord::clone(record))
                .collect())
        })
        .await
    }

    async fn ack_wake(&self, process_id: &str, sequence: u64) -> Result<(), PluginError> {
        traced("ack_wake", process_id, async {
            self.ask(process_id, Retry::Never, |reply| Some(ProcessMsg::AckWake { sequence, reply })).await
        })
        .await
    }

    async fn list_non_terminal(&self) -> Result<Vec<ProcessRecord>, PluginError> {
        traced("list_non_terminal", "", async {
            Ok(self
                .shared()
                .routes
                .records_where(|record| !record.is_terminal())
                .iter()
                .map(|record| ProcessRecord::clone(record))
                .collect())
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
            self.ask(&completion.process_id, Retry::Never, |reply| {
                Some(ProcessMsg::CompleteLease { completion: completion.clone(), reply })
            })
            .await
        })
        .await
    }
}
