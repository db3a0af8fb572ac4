//! The process actor: the single owner of one process's state.
//!
//! Every call on a process is a message to its actor, handled one at a time,
//! so the actor needs no lock. A mutating handler first *plans* with the pure
//! rules (which may refuse and change nothing), then *commits*: the store
//! records the [`ProcessChange`], the actor applies it to its
//! [`ProcessState`] with infallible pushes and inserts, and publishes the new
//! record snapshot before replying. Nothing that can panic runs between the
//! store accepting a change and the actor applying it, so a panic anywhere
//! in a handler leaves the committed state whole for the restarted actor.
//!
//! Parked callers (`wait_event_after`, `await_process`) are reply ports kept
//! in [`Waiters`]; the commit that satisfies them answers them. There is no
//! polling and no timer. A caller that gives up sends
//! [`ProcessMsg::CancelWaiter`] from its drop guard, so nothing stays behind.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef};

pub(crate) mod messages;
pub(crate) mod state;
mod waiters;

use self::messages::ProcessMsg;
use self::state::ProcessState;
use self::waiters::Waiters;
use super::routes::{Mailbox, RecordSnapshot};
use super::shared::Shared;
use crate::error::RegistryError;
use crate::events::{ProcessEvent, ProcessEventAppendRequest, ProcessWakeDelivery};
use crate::model::{ProcessExternalRef, ProcessLease, ProcessLeaseCompletion, ProcessRecord, WaitState};
use crate::rules::append::{plan_append, wake_delivery, AppendPlan, AppendView};
use crate::rules::lease;
use crate::rules::schema::CompiledSchemas;
use crate::store::{ProcessChange, StoredProcess};

/// The process actor (stateless; its state is [`ProcessActorState`]).
#[derive(Debug)]
pub(crate) struct ProcessActor {
    pub(crate) shared: Arc<Shared>,
}

/// What a process actor starts from.
#[derive(Debug)]
pub(crate) struct ProcessActorArgs {
    /// The committed state the actor starts from.
    pub(crate) stored: StoredProcess,
    /// The mailbox permits callers hold while a call is in flight.
    pub(crate) mailbox: Arc<Mailbox>,
    pub(crate) schemas: CompiledSchemas,
    pub(crate) snapshot: Arc<RecordSnapshot>,
}

/// A process actor's state.
#[derive(Debug)]
pub(crate) struct ProcessActorState {
    process_id: String,
    state: ProcessState,
    schemas: CompiledSchemas,
    snapshot: Arc<RecordSnapshot>,
    waiters: Waiters,
    mailbox: Arc<Mailbox>,
    /// When the last call arrived, by the registry clock.
    last_active_ms: u64,
}

impl Actor for ProcessActor {
    type Msg = ProcessMsg;
    type State = ProcessActorState;
    type Arguments = ProcessActorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        self.shared.counters.actor_started();
        let state = ProcessState::from_stored(args.stored);
        args.snapshot.publish(Arc::clone(state.record()));
        Ok(ProcessActorState {
            process_id: state.record().id.clone(),
            state,
            schemas: args.schemas,
            snapshot: args.snapshot,
            waiters: Waiters::new(Arc::clone(&self.shared)),
            mailbox: args.mailbox,
            last_active_ms: self.shared.now_ms(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        self.shared.counters.actor_stopped();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        actor: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let shared = &self.shared;
        if let ProcessMsg::Passivate { idle_ms } = message {
            if actor.try_passivate(shared, idle_ms) {
                // Route callers to a fresh activation at once rather than
                // let them find closed permits until the supervisor hears
                // of the stop; the committed state is all in the store.
                shared.routes.passivate_if_current(&actor.process_id, myself.get_id());
                myself.stop(None);
            }
            return Ok(());
        }
        let now_ms = shared.now_ms();
        actor.last_active_ms = now_ms;
        match message {
            ProcessMsg::Passivate { .. } => {}
            ProcessMsg::Append { request, payload_hash, reply } => {
                let result = actor.append(shared, request, payload_hash, now_ms).await;
                let _ = reply.send(result);
            }
            ProcessMsg::EventsAfter { after, reply } => {
                let _ = reply.send(Ok(actor.state.events_after(after).to_vec()));
            }
            ProcessMsg::CountThrough { event_type, up_to, reply } => {
                let _ = reply.send(Ok(actor.state.count_through(&event_type, up_to)));
            }
            ProcessMsg::Recent { limit, reply } => {
                let _ = reply.send(Ok(actor.state.recent(limit).to_vec()));
            }
            ProcessMsg::WakeEventsAfter { after, reply } => {
                let _ = reply.send(Ok(actor.state.wake_events_after(after)));
            }
            ProcessMsg::AckWake { sequence, reply } => {
                let result = actor.ack_wake(shared, sequence).await;
                let _ = reply.send(result);
            }
            ProcessMsg::WaitEvent { event_type, after, waiter_id, reply } => {
                match actor.state.first_of_type_after(&event_type, after) {
                    Some(event) => {
                        let _ = reply.send(Ok(Arc::clone(event)));
                    }
                    None if !reply.is_closed() => actor.waiters.park_event(event_type, after, waiter_id, reply),
                    None => {}
                }
            }
            ProcessMsg::AwaitOutput { waiter_id, reply } => match actor.state.record().status.await_output() {
                Some(output) => {
                    let _ = reply.send(Ok(output.clone()));
                }
                None if !reply.is_closed() => actor.waiters.park_output(waiter_id, reply),
                None => {}
            },
            ProcessMsg::CancelWaiter { waiter_id } => actor.waiters.cancel(waiter_id),
            ProcessMsg::SetWait { wait, reply } => {
                let result = actor.set_wait(shared, wait).await;
                let _ = reply.send(result);
            }
            ProcessMsg::SetExternalRef { external_ref, reply } => {
                let result = actor.set_external_ref(shared, external_ref).await;
                let _ = reply.send(result);
            }
            ProcessMsg::ClaimLease { owner_id, ttl_ms, reply } => {
                let result = actor.claim_lease(shared, &owner_id, ttl_ms).await;
                let _ = reply.send(result);
            }
            ProcessMsg::RenewLease { lease, ttl_ms, reply } => {
                let result = actor.renew_lease(shared, &lease, ttl_ms).await;
                let _ = reply.send(result);
            }
            ProcessMsg::CompleteLease { completion, reply } => {
                let result = actor.complete_lease(shared, &completion).await;
                let _ = reply.send(result);
            }
            // The one deliberate panic: supervision tests ask for it.
            #[cfg(feature = "fault-injection")]
            #[allow(clippy::panic)]
            ProcessMsg::InjectPanic => panic!("fault injected into process `{}`", actor.process_id),
        }
        Ok(())
    }
}

impl ProcessActorState {
    /// Decides to passivate: idle long enough, nothing parked, and no call
    /// in flight. The last is proven by taking every mailbox permit (each
    /// caller holds one from before it sends until it has its answer), and
    /// closing the semaphore makes later callers re-route to a new actor
    /// instead of sending here. So no call is ever dropped unanswered.
    fn try_passivate(&mut self, shared: &Shared, idle_ms: u64) -> bool {
        let idle_for = shared.now_ms().saturating_sub(self.last_active_ms);
        if self.waiters.len() > 0 || idle_for < idle_ms {
            return false;
        }
        if !self.mailbox.close_if_idle(shared.mailbox.capacity) {
            return false;
        }
        shared.counters.passivated();
        true
    }

    /// Records `change` in the store, then applies and publishes it.
    async fn commit(&mut self, shared: &Shared, change: ProcessChange) -> Result<(), RegistryError> {
        shared.store.commit_process(&self.process_id, &change).await?;
        self.state.apply(&change);
        if matches!(
            change,
            ProcessChange::Appended { .. } | ProcessChange::RecordUpdated { .. } | ProcessChange::Registered { .. }
        ) {
            self.snapshot.publish(Arc::clone(self.state.record()));
        }
        Ok(())
    }

    async fn append(
        &mut self,
        shared: &Shared,
        request: ProcessEventAppendRequest,
        payload_hash: String,
        now_ms: u64,
    ) -> Result<(Arc<ProcessEvent>, Option<ProcessWakeDelivery>), RegistryError> {
        let target = request.wake_target_scope.clone();
        let view = AppendView {
            record: self.state.record(),
            last_sequence: self.state.last_sequence(),
            schemas: &self.schemas,
            replayed: request.replay_key().and_then(|key| self.state.replay_entry(key)),
        };
        match plan_append(view, request, payload_hash, now_ms)? {
            AppendPlan::Replay { sequence } => {
                let event = self.state.event(sequence).cloned().ok_or_else(|| RegistryError::Storage {
                    process_id: self.process_id.clone(),
                    message: format!("replay index names missing event {sequence}"),
                })?;
                let delivery = wake_delivery(self.state.record(), &event, target.as_ref());
                Ok((event, delivery))
            }
            AppendPlan::Commit(planned) => {
                let planned = *planned;
                let event = Arc::new(planned.event);
                let terminal = event.semantics.terminal.clone();
                let record = Arc::new(planned.record);
                let change = ProcessChange::Appended { event: Arc::clone(&event), replay: planned.replay, record };
                self.commit(shared, change).await?;
                let delivery = wake_delivery(self.state.record(), &event, target.as_ref());
                self.waiters.event_committed(&event);
                if let Some(terminal) = terminal {
                    shared.counters.count_terminal(terminal.state);
                    self.waiters.terminal_committed(&terminal.await_output);
                }
                Ok((event, delivery))
            }
        }
    }

    async fn ack_wake(&mut self, shared: &Shared, sequence: u64) -> Result<(), RegistryError> {
        let last_sequence = self.state.last_sequence();
        if sequence == 0 || sequence > last_sequence {
            return Err(RegistryError::SequenceOutOfRange {
                process_id: self.process_id.clone(),
                sequence,
                last_sequence,
            });
        }
        if self.state.is_acked(sequence) {
            return Ok(());
        }
        self.commit(shared, ProcessChange::WakeAcked { sequence }).await
    }

    async fn update_record(
        &mut self,
        shared: &Shared,
        update: impl FnOnce(&mut ProcessRecord),
    ) -> Result<ProcessRecord, RegistryError> {
        let mut record = ProcessRecord::clone(self.state.record());
        update(&mut record);
        record.updated_at_ms = shared.now_ms();
        let record = Arc::new(record);
        self.commit(shared, ProcessChange::RecordUpdated { record: Arc::clone(&record) }).await?;
        Ok(ProcessRecord::clone(&record))
    }

    async fn set_wait(&mut self, shared: &Shared, wait: Option<WaitState>) -> Result<ProcessRecord, RegistryError> {
        if wait.is_some() && self.state.record().is_terminal() {
            return Err(RegistryError::AlreadyTerminal { process_id: self.process_id.clone() });
        }
        self.update_record(shared, |record| record.wait = wait).await
    }

    async fn set_external_ref(
        &mut self,
        shared: &Shared,
        external_ref: ProcessExternalRef,
    ) -> Result<ProcessRecord, RegistryError> {
        self.update_record(shared, |record| record.external_ref = Some(external_ref)).await
    }

    async fn claim_lease(
        &mut self,
        shared: &Shared,
        owner_id: &str,
        ttl_ms: u64,
    ) -> Result<ProcessLease, RegistryError> {
        if self.state.record().is_terminal() {
            return Err(RegistryError::AlreadyTerminal { process_id: self.process_id.clone() });
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let claimed = lease::claim(self.state.lease(), &self.process_id, owner_id, ttl_ms, shared.now_ms(), token)?;
        let next = lease::granted(self.state.lease(), claimed.clone());
        self.commit(shared, ProcessChange::LeaseUpdated { lease: next }).await?;
        Ok(claimed)
    }

    async fn renew_lease(
        &mut self,
        shared: &Shared,
        presented: &ProcessLease,
        ttl_ms: u64,
    ) -> Result<ProcessLease, RegistryError> {
        let renewed = lease::renew(self.state.lease(), presented, ttl_ms, shared.now_ms())?;
        let next = lease::granted(self.state.lease(), renewed.clone());
        self.commit(shared, ProcessChange::LeaseUpdated { lease: next }).await?;
        Ok(renewed)
    }

    async fn complete_lease(
        &mut self,
        shared: &Shared,
        completion: &ProcessLeaseCompletion,
    ) -> Result<(), RegistryError> {
        match lease::release(self.state.lease(), completion) {
            Some(next) => self.commit(shared, ProcessChange::LeaseUpdated { lease: next }).await,
            None => Ok(()),
        }
    }
}
