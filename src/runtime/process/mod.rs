//! The process actor: the single owner of one process's state.
//!
//! Every call on a process is a message to its actor, handled one at a time,
//! so the actor needs no lock. A mutating handler first *plans* with the pure
//! rules (which may refuse and change nothing), then *submits* the
//! [`ProcessChange`] to the store and applies it to its [`ProcessState`] as
//! planned, so the next call is planned on top of it. Once the store says
//! the change is durable (at once for the memory store, after the group
//! commit's fsync for SQLite), the actor *settles* it: the durable
//! watermark moves, the record snapshot is published and the caller is
//! answered; then the parked waiters it satisfies are (the task woken last
//! runs next on this worker, and a waiter is what somebody waits on).
//! Until then nothing of the
//! change is visible; a commit in flight never holds the actor up (see
//! `pipeline`). A commit the store fails voids everything planned on top
//! of it: those callers get the error and the state rolls back to what is
//! durable. Nothing that can panic runs between the store accepting a
//! change and the actor applying it, so a panic anywhere in a handler
//! leaves the committed state whole for the restarted actor.
//!
//! With a store several nodes share ([`ProcessStore::shared`]) the actor is
//! this node's serializer and cache of the process, and the database
//! orders the nodes: before each read, lease call and fenced write the
//! actor reads the process's version and the server clock in one round
//! trip (`sync`), reloads when another node moved the process, and plans
//! leases on the server's clock. Every commit is fenced by the version it
//! was planned on, so plain appends, waits and external refs are planned
//! on the cached state without that round trip
//! ([`ProcessMsg::plans_optimistically`]): a stale plan commits nothing.
//! The actor waits for each commit before the next call, so it never plans
//! on a change another node may still win. A commit that lost the race answers
//! [`RegistryError::Contended`] and the facade plans the call again.
//! Notices of commits on other nodes arrive as [`ProcessMsg::Refresh`].
//!
//! Parked callers (`wait_event_after`, `await_process`) are reply ports kept
//! in [`Waiters`]; the commit that satisfies them answers them. There is no
//! polling; the one timer is a shared store's retry of a refresh that
//! failed while waiters were parked. A caller that gives up sends
//! [`ProcessMsg::CancelWaiter`] from its drop guard, so nothing stays behind.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};

pub(crate) mod messages;
mod pipeline;
pub(crate) mod state;
mod waiters;

use self::messages::ProcessMsg;
use self::pipeline::{Answer, Pipeline};
use self::state::ProcessState;
use self::waiters::Waiters;
use super::input;
use super::routes::{Mailbox, RecordSnapshot};
use super::shared::{ReadyToken, Shared};
use crate::error::RegistryError;
use crate::events::{ProcessEvent, ProcessEventAppendRequest, ProcessEventType, ProcessWakeDelivery};
use crate::model::{ProcessExternalRef, ProcessLease, ProcessLeaseCompletion, ProcessRecord, WaitState};
use crate::rules::append::{plan_append, plan_batch, wake_delivery, AppendPlan, AppendView, BatchItem};
use crate::rules::lease;
use crate::rules::limits::truncated;
use crate::rules::schema::CompiledSchemas;
use crate::runtime::call::Reply;
use crate::store::{Commit, CommitCallback, CommitResult, ProcessChange, SharedStore, StoredProcess};

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
    /// Started by its registration: the place it holds until its first call.
    pub(crate) ready: Option<ReadyToken>,
}

/// The first retry of a failed refresh (see `ProcessActorState::refresh_failed`).
const MIN_REFRESH_RETRY: Duration = Duration::from_millis(100);
/// The longest delay between retries of failed refreshes.
const MAX_REFRESH_RETRY: Duration = Duration::from_secs(5);

/// A process actor's state.
#[derive(Debug)]
pub(crate) struct ProcessActorState {
    process_id: String,
    state: ProcessState,
    schemas: CompiledSchemas,
    snapshot: Arc<RecordSnapshot>,
    waiters: Waiters,
    mailbox: Arc<Mailbox>,
    /// Commits in flight and the answers behind them.
    pipeline: Pipeline,
    /// When the last call arrived, by the registry clock.
    last_active_ms: u64,
    /// The process's version in a shared store: the commits it has had.
    version: u64,
    /// The plan its commits belong to; a new one after each rollback, so
    /// a store can refuse what was planned on a refused commit.
    plan: u64,
    /// With a shared store: the commit in flight, which the actor awaits
    /// before its next call.
    awaiting: Option<(u64, tokio::sync::oneshot::Receiver<CommitResult>)>,
    /// With a shared store: a commit lost a race or failed, so the cached
    /// state may be behind; the next call checks the version first, even
    /// one that could be planned optimistically.
    stale: bool,
    /// With a shared store: a refresh failed while waiters were parked,
    /// and the actor sent itself another for later (at most one pending).
    refresh_pending: bool,
    /// The delay before that refresh: doubled after each failure in a row
    /// (up to [`MAX_REFRESH_RETRY`]), reset by a successful sync.
    refresh_backoff: Duration,
    /// Started by its registration and not called yet: the place it holds
    /// under [`RegistryConfig::ready_on_register`](crate::RegistryConfig::ready_on_register),
    /// given back at the first call or with the state.
    ready: Option<ReadyToken>,
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
        let version = args.stored.version;
        let state = ProcessState::from_stored(args.stored);
        args.snapshot.publish(Arc::clone(state.record()));
        // A commit of the actor this one replaces may have become durable
        // after it died (a pipelined store): the index follows the record.
        self.shared.stored_status(state.record());
        Ok(ProcessActorState {
            process_id: state.record().id.clone(),
            state,
            schemas: args.schemas,
            snapshot: args.snapshot,
            waiters: Waiters::new(Arc::clone(&self.shared)),
            mailbox: args.mailbox,
            pipeline: Pipeline::default(),
            last_active_ms: self.shared.now_ms(),
            version,
            plan: crate::runtime::shared::next_plan(),
            awaiting: None,
            stale: false,
            refresh_pending: false,
            refresh_backoff: Duration::ZERO,
            ready: args.ready,
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
        match message {
            ProcessMsg::Passivate { idle_ms } => {
                if actor.try_passivate(shared, idle_ms) {
                    // Nothing is in flight and the slot still names this
                    // actor, so no activation can race the store's release.
                    shared.store.release_process(&actor.process_id);
                    // Route callers to a fresh activation at once rather than
                    // let them find closed permits until the supervisor hears
                    // of the stop; the committed state is all in the store.
                    shared.routes.passivate_if_current(&actor.process_id, myself.get_id());
                    myself.stop(None);
                }
                return Ok(());
            }
            ProcessMsg::Committed { ticket, result } => {
                actor.committed(shared, ticket, result);
                return Ok(());
            }
            // Shutting down: calls still queued are answered at once
            // rather than worked through, so shutdown does not wait for a
            // full mailbox to drain.
            message if shared.is_stopping() => message.refuse(&RegistryError::stopped(&actor.process_id)),
            message => {
                // The first call gives back the place an actor started by
                // its registration held.
                actor.ready = None;
                if let ProcessMsg::Refresh { retried: true } = message {
                    // The pending retry is this one, whatever it finds.
                    actor.refresh_pending = false;
                }
                match shared.store.shared() {
                    None => actor.handle_call(shared, &myself, message, shared.now_ms()),
                    Some(store) if message.reads_state() => {
                        let now_ms = if message.plans_optimistically() && !actor.stale {
                            shared.now_ms()
                        } else {
                            match actor.sync(shared, store).await {
                                Ok(now_ms) => now_ms,
                                Err(error) => {
                                    // The cached state may be behind: the next call checks first.
                                    actor.stale = true;
                                    if let ProcessMsg::Refresh { .. } = message {
                                        actor.refresh_failed(&myself, &error);
                                    }
                                    message.refuse(&error);
                                    return Ok(());
                                }
                            }
                        };
                        actor.handle_call(shared, &myself, message, now_ms);
                        actor.await_commit(shared).await;
                    }
                    Some(_) => actor.handle_call(shared, &myself, message, shared.now_ms()),
                }
            }
        }
        Ok(())
    }
}

impl ProcessActorState {
    /// Brings the state up to the shared store's: reads the process's
    /// version and the server clock, and reloads the process when another
    /// node committed since this actor last looked. Returns the server's
    /// clock, on which the call is planned. Parked waiters the reload
    /// satisfies are answered.
    async fn sync(&mut self, shared: &Shared, store: &dyn SharedStore) -> Result<u64, RegistryError> {
        let gone = || RegistryError::Storage {
            process_id: self.process_id.clone(),
            message: "the shared store no longer holds this process".to_owned(),
        };
        let probe = store.probe(&self.process_id).await?.ok_or_else(gone)?;
        if probe.version != self.version {
            // What is new since this actor's log: O(the newer events).
            let seen = self.state.last_sequence();
            let delta = store.load_changes(&self.process_id, seen).await?.ok_or_else(gone)?;
            if delta.last_sequence >= seen {
                self.caught_up(shared, delta);
            } else {
                // The store holds less than this actor (restored from a
                // backup?): start again from what it holds.
                let stored = shared.store.load_process(&self.process_id).await?.ok_or_else(gone)?;
                self.reloaded(shared, stored);
            }
        }
        self.stale = false;
        self.refresh_backoff = Duration::ZERO;
        Ok(probe.now_ms)
    }

    /// A refresh could not read the store (a dropped connection, a
    /// timeout). The notice it answered is not sent again, and parked
    /// waiters depend on it: without another try, a waiter whose event
    /// another node committed would wait until some later notice. So while
    /// waiters are parked the actor sends itself a refresh, after a delay
    /// that doubles with each failure in a row. One is pending at most:
    /// failed notices meanwhile schedule nothing more. Without waiters
    /// nothing waits on a refresh (every call checks first, the state being
    /// stale), and none is scheduled.
    fn refresh_failed(&mut self, myself: &ActorRef<ProcessMsg>, error: &RegistryError) {
        if self.refresh_pending || self.waiters.len() == 0 {
            return;
        }
        self.refresh_backoff = if self.refresh_backoff.is_zero() {
            MIN_REFRESH_RETRY
        } else {
            (self.refresh_backoff * 2).min(MAX_REFRESH_RETRY)
        };
        self.refresh_pending = true;
        tracing::warn!(process_id = %self.process_id, %error, retry_in = ?self.refresh_backoff, "a refresh failed with waiters parked; trying again");
        myself.send_after(self.refresh_backoff, || ProcessMsg::Refresh { retried: true });
    }

    /// Applies the changes another node committed, as this actor settles
    /// its own: the log and indexes grow, the record and lease are
    /// replaced, and the waiters the new events satisfy are answered.
    fn caught_up(&mut self, shared: &Shared, delta: crate::store::Changes) {
        for change in &delta.changes {
            if let ProcessChange::WakeAcked { sequence } = change {
                if self.state.is_acked(*sequence) {
                    continue;
                }
            }
            self.state.plan(change);
            self.settle(shared, change);
            self.wake(change);
        }
        self.version = delta.version;
    }

    /// Takes `stored` (committed by another node) as the state, publishes
    /// it, and answers the waiters its new events satisfy.
    fn reloaded(&mut self, shared: &Shared, stored: StoredProcess) {
        let seen = self.state.last_sequence();
        self.version = stored.version;
        self.state = ProcessState::from_stored(stored);
        let record = Arc::clone(self.state.record());
        self.snapshot.publish(Arc::clone(&record));
        let fresh: Vec<Arc<ProcessEvent>> = self.state.committed().events_after(seen).to_vec();
        for event in &fresh {
            self.waiters.event_committed(event);
            if let Some(terminal) = &event.semantics.terminal {
                shared.terminal_durable(&self.process_id, terminal.state);
                self.waiters.terminal_committed(&terminal.await_output);
                self.refuse_terminal_waits(&record);
            }
        }
    }

    /// Once the process is terminal no terminal event can follow (spec step
    /// 7): the callers still waiting for one get `AlreadyTerminal` rather
    /// than waiting for shutdown.
    fn refuse_terminal_waits(&mut self, record: &ProcessRecord) {
        let process_id = &self.process_id;
        self.waiters.refuse_events(
            |event_type| record.event_type(event_type).is_some_and(ProcessEventType::is_terminal),
            || RegistryError::AlreadyTerminal { process_id: process_id.clone() },
        );
    }

    /// With a shared store: waits for the commit the call submitted and
    /// settles it, so the next call is planned on what the database holds.
    async fn await_commit(&mut self, shared: &Shared) {
        if let Some((ticket, answer)) = self.awaiting.take() {
            let result = answer.await.unwrap_or_else(|_| {
                Err(RegistryError::Storage {
                    process_id: self.process_id.clone(),
                    message: "the store dropped a commit without answering it".to_owned(),
                })
            });
            match &result {
                Ok(_) => self.version += 1,
                // Lost a race, or an outcome unknown: check before the next plan.
                Err(_) => self.stale = true,
            }
            self.committed(shared, ticket, result);
        }
    }

    fn handle_call(&mut self, shared: &Shared, myself: &ActorRef<ProcessMsg>, message: ProcessMsg, now_ms: u64) {
        self.last_active_ms = shared.now_ms();
        let mut calls = Calls { actor: self, shared, myself };
        match message {
            ProcessMsg::Passivate { .. } | ProcessMsg::Committed { .. } | ProcessMsg::Refresh { .. } => {}
            ProcessMsg::Append { request, payload_hash, owned_answer, fence, reply } => {
                let hashed = match payload_hash {
                    Some(payload_hash) => Ok((request, payload_hash)),
                    // A caller outside the runtime's tasks left step 1's hash to us.
                    None => input::hashed(&calls.shared.limits, &calls.actor.process_id, request),
                };
                let (request, payload_hash) = match hashed {
                    Ok(hashed) => hashed,
                    Err(error) => return calls.answer(reply, Err(error)),
                };
                if let Err(error) = calls.fenced(fence.as_deref(), now_ms) {
                    return calls.answer(reply, Err(error));
                }
                calls.append(request, payload_hash, owned_answer, now_ms, reply);
            }
            ProcessMsg::AppendBatch { requests, reply } => calls.append_batch(requests, now_ms, reply),
            ProcessMsg::EventsAfter { after, reply } => {
                let _ = reply.send(Ok(calls.actor.state.committed().events_after(after).to_vec()));
            }
            ProcessMsg::CountThrough { event_type, up_to, reply } => {
                let _ = reply.send(Ok(calls.actor.state.committed().count_through(&event_type, up_to)));
            }
            ProcessMsg::Recent { limit, reply } => {
                let _ = reply.send(Ok(calls.actor.state.committed().recent(limit).to_vec()));
            }
            ProcessMsg::WakeEventsAfter { after, reply } => {
                let _ = reply.send(Ok(calls.actor.state.committed().wake_events_after(after)));
            }
            ProcessMsg::AckWake { sequence, reply } => calls.ack_wake(sequence, reply),
            ProcessMsg::WaitEvent { event_type, after, waiter_id, admitted, reply } => {
                let actor = calls.actor;
                // Declared types never change: a wait on another could only
                // be answered by shutdown.
                if actor.state.record().event_type(&event_type).is_none() {
                    let _ = reply.send(Err(RegistryError::UndeclaredEventType {
                        process_id: actor.process_id.clone(),
                        event_type: truncated(&event_type),
                    }));
                    return;
                }
                match actor.state.committed().first_of_type_after(&event_type, after) {
                    Some(event) => {
                        let _ = reply.send(Ok(Arc::clone(event)));
                    }
                    // A terminal event after the terminal one is refused
                    // (spec step 7): such a wait could only be answered by
                    // shutdown, and would keep the actor from passivating.
                    None if actor.state.durable_record().is_terminal()
                        && actor.state.record().event_type(&event_type).is_some_and(ProcessEventType::is_terminal) =>
                    {
                        let _ =
                            reply.send(Err(RegistryError::AlreadyTerminal { process_id: actor.process_id.clone() }));
                    }
                    None if !reply.is_closed() => actor.waiters.park_event(event_type, after, waiter_id, reply),
                    None => {}
                }
                drop(admitted);
            }
            ProcessMsg::AwaitOutput { waiter_id, admitted, reply } => {
                let actor = calls.actor;
                match actor.state.durable_record().status.await_output() {
                    Some(output) => {
                        let _ = reply.send(Ok(output.clone()));
                    }
                    None if !reply.is_closed() => actor.waiters.park_output(waiter_id, reply),
                    None => {}
                }
                drop(admitted);
            }
            ProcessMsg::CancelWaiter { waiter_id } => calls.actor.waiters.cancel(waiter_id),
            ProcessMsg::SetWait { wait, fence, reply } => {
                if let Err(error) = calls.fenced(fence.as_deref(), now_ms) {
                    return calls.answer(reply, Err(error));
                }
                calls.set_wait(wait, now_ms, reply);
            }
            ProcessMsg::SetExternalRef { external_ref, reply } => {
                calls.set_external_ref(external_ref, now_ms, reply);
            }
            ProcessMsg::ClaimLease { owner_id, ttl_ms, reply } => calls.claim_lease(&owner_id, ttl_ms, now_ms, reply),
            ProcessMsg::RenewLease { lease, ttl_ms, reply } => calls.renew_lease(&lease, ttl_ms, now_ms, reply),
            ProcessMsg::CompleteLease { completion, reply } => calls.complete_lease(&completion, reply),
            // The one deliberate panic: supervision tests ask for it.
            #[cfg(feature = "fault-injection")]
            #[allow(clippy::panic)]
            ProcessMsg::InjectPanic => panic!("fault injected into process `{}`", calls.actor.process_id),
        }
    }

    /// Decides to passivate: idle long enough, nothing parked, nothing in
    /// the pipeline, and no call in flight. The last is proven by taking
    /// every mailbox permit (each caller holds one from before it sends
    /// until it has its answer), and closing the semaphore makes later
    /// callers re-route to a new actor instead of sending here. So no call
    /// is ever dropped unanswered.
    fn try_passivate(&mut self, shared: &Shared, idle_ms: u64) -> bool {
        let idle_for = shared.now_ms().saturating_sub(self.last_active_ms);
        if self.waiters.len() > 0 || !self.pipeline.is_empty() || idle_for < idle_ms {
            return false;
        }
        if !self.mailbox.close_if_idle(shared.mailbox.capacity) {
            return false;
        }
        shared.counters.passivated();
        true
    }

    /// The store's answer to commit `ticket`.
    fn committed(&mut self, shared: &Shared, ticket: u64, result: CommitResult) {
        match result {
            Ok(_) => {
                for settled in self.pipeline.durable(ticket) {
                    for change in &settled.changes {
                        self.settle(shared, change);
                    }
                    (settled.answer)(Ok(()));
                    // Waiters after the caller: the task woken last runs
                    // next on this worker (tokio's LIFO slot), and a waiter
                    // is the one somebody is waiting on.
                    for change in &settled.changes {
                        self.wake(change);
                    }
                }
            }
            // A ticket failed already (with everything behind it) is done.
            Err(error) if self.pipeline.holds(ticket) => {
                tracing::error!(process_id = %self.process_id, %error, "commit failed; rolling back to the durable state");
                self.pipeline.fail_all(&error);
                self.state.roll_back();
                self.plan = crate::runtime::shared::next_plan();
            }
            Err(_) => {}
        }
    }

    /// Makes one durable change visible to reads: the watermark, the
    /// snapshot, the status index and counters.
    fn settle(&mut self, shared: &Shared, change: &ProcessChange) {
        self.state.make_durable(change);
        match change {
            ProcessChange::Appended { event, record, .. } => {
                self.snapshot.publish(Arc::clone(record));
                if let Some(terminal) = &event.semantics.terminal {
                    shared.terminal_durable(&self.process_id, terminal.state);
                }
            }
            ProcessChange::RecordUpdated { record } => self.snapshot.publish(Arc::clone(record)),
            ProcessChange::WakeAcked { .. } | ProcessChange::LeaseUpdated { .. } => {}
        }
    }

    /// Answers the waiters a settled change satisfies (or can no longer be
    /// satisfied: a terminal event refuses waits for other terminal types).
    fn wake(&mut self, change: &ProcessChange) {
        if let ProcessChange::Appended { event, record, .. } = change {
            self.waiters.event_committed(event);
            if let Some(terminal) = &event.semantics.terminal {
                self.waiters.terminal_committed(&terminal.await_output);
                self.refuse_terminal_waits(record);
            }
        }
    }
}

/// One call being handled: the actor's state and what it needs to commit.
struct Calls<'a> {
    actor: &'a mut ProcessActorState,
    shared: &'a Shared,
    myself: &'a ActorRef<ProcessMsg>,
}

impl Calls<'_> {
    /// Answers `reply` with `result`: now when nothing is in flight, else
    /// behind everything in flight (the result may rest on a pending change).
    fn answer<T: Send + 'static>(&mut self, reply: Reply<T>, result: Result<T, RegistryError>) {
        if self.actor.pipeline.is_empty() {
            let _ = reply.send(result);
        } else {
            self.actor.pipeline.push_answer(answer_with(reply, result));
        }
    }

    /// Submits `changes` and answers `reply` with `value` once they are
    /// durable (or with the store's error).
    fn commit<T: Send + 'static>(&mut self, changes: Vec<ProcessChange>, reply: Reply<T>, value: T) {
        let actor = &mut *self.actor;
        // A store that commits inline (memory) takes the changes by
        // reference and answers at once: no ticket, no callback, no copy.
        if actor.pipeline.is_empty() {
            match self.shared.store.commit_inline(&actor.process_id, &changes) {
                Some(Ok(_)) => {
                    for change in &changes {
                        actor.state.plan(change);
                        actor.settle(self.shared, change);
                    }
                    let _ = reply.send(Ok(value));
                    // Waiters after the caller, as in `committed`.
                    for change in &changes {
                        actor.wake(change);
                    }
                    return;
                }
                Some(Err(error)) => {
                    let _ = reply.send(Err(error));
                    return;
                }
                None => {}
            }
        }
        let ticket = actor.pipeline.next_ticket();
        let later: CommitCallback = if self.shared.store.shared().is_some() {
            // The actor awaits this answer before its next call.
            let (sender, answer) = tokio::sync::oneshot::channel();
            actor.awaiting = Some((ticket, answer));
            Box::new(move |result| {
                let _ = sender.send(result);
            })
        } else {
            let myself = self.myself.clone();
            Box::new(move |result| {
                // The actor may be gone (shutdown); then nobody waits for this.
                let _ = myself.send_message(ProcessMsg::Committed { ticket, result });
            })
        };
        let commit = Commit::Process {
            process_id: actor.process_id.clone(),
            base_version: actor.version,
            plan: actor.plan,
            changes: changes.clone(),
        };
        let answered = self.shared.store.submit(commit, later);
        if answered.is_some() {
            // Answered inline: nothing to await.
            self.actor.awaiting = None;
        }
        let actor = &mut *self.actor;
        match answered {
            Some(Err(error)) => self.answer(reply, Err(error)),
            answered => {
                for change in &changes {
                    actor.state.plan(change);
                }
                actor.pipeline.push_commit(ticket, changes, answer_with(reply, Ok(value)));
                if let Some(Ok(_)) = answered {
                    self.actor.committed(self.shared, ticket, Ok(crate::store::Committed::Done));
                }
            }
        }
    }

    /// Checks a fenced call's lease against the lease as planned, so the
    /// check and the write it guards are one step of this actor: no claim
    /// can slip between them.
    fn fenced(&self, fence: Option<&ProcessLease>, now_ms: u64) -> Result<(), RegistryError> {
        fence.map_or(Ok(()), |presented| lease::check_fence(self.actor.state.lease(), presented, now_ms))
    }

    fn append(
        &mut self,
        request: ProcessEventAppendRequest,
        payload_hash: String,
        owned_answer: bool,
        now_ms: u64,
        reply: Reply<(Arc<ProcessEvent>, Option<ProcessWakeDelivery>)>,
    ) {
        let actor = &*self.actor;
        let target = request.wake_target_scope.clone();
        let view = AppendView {
            record: actor.state.record(),
            last_sequence: actor.state.last_sequence(),
            schemas: &actor.schemas,
            replayed: request.replay_key().and_then(|key| actor.state.replay_entry(key)),
            limits: &self.shared.limits,
        };
        match plan_append(view, request, payload_hash, now_ms) {
            Err(error) => self.answer(reply, Err(error)),
            Ok(AppendPlan::Replay { sequence }) => {
                let result = match actor.state.event(sequence) {
                    Some(event) => {
                        let delivery = wake_delivery(actor.state.record(), event, target.as_ref());
                        Ok((answered(event, owned_answer), delivery))
                    }
                    None => Err(RegistryError::Storage {
                        process_id: actor.process_id.clone(),
                        message: format!("replay index names missing event {sequence}"),
                    }),
                };
                self.answer(reply, result);
            }
            Ok(AppendPlan::Commit(planned)) => {
                let planned = *planned;
                let event = Arc::new(planned.event);
                let record = planned.record.map_or_else(|| Arc::clone(actor.state.record()), Arc::new);
                let delivery = wake_delivery(&record, &event, target.as_ref());
                let answer = answered(&event, owned_answer);
                let change = ProcessChange::Appended { event, replay: planned.replay, record };
                self.commit(vec![change], reply, (answer, delivery));
            }
        }
    }

    /// A batch append: planned as one change, committed at once or refused
    /// as a whole (see [`plan_batch`]).
    fn append_batch(
        &mut self,
        requests: Vec<(ProcessEventAppendRequest, String)>,
        now_ms: u64,
        reply: Reply<Vec<(Arc<ProcessEvent>, Option<ProcessWakeDelivery>)>>,
    ) {
        let actor = &*self.actor;
        let state = &actor.state;
        let targets: Vec<_> = requests.iter().map(|(request, _)| request.wake_target_scope.clone()).collect();
        let planned = plan_batch(
            state.record(),
            state.last_sequence(),
            &actor.schemas,
            &self.shared.limits,
            |key| state.replay_entry(key),
            requests,
            now_ms,
        );
        let items = match planned {
            Ok(items) => items,
            Err(error) => return self.answer(reply, Err(error)),
        };
        let mut changes = Vec::new();
        let mut answers: Vec<(Arc<ProcessEvent>, Option<ProcessWakeDelivery>)> = Vec::with_capacity(items.len());
        // The record after the events so far: shared by every event that
        // leaves it unchanged.
        let mut current = Arc::clone(state.record());
        for (item, target) in items.into_iter().zip(targets) {
            match item {
                BatchItem::Replay { sequence } => {
                    // In the log, or planned earlier in this batch.
                    let found = state.event(sequence).cloned().or_else(|| {
                        answers.iter().find(|(event, _)| event.sequence == sequence).map(|(e, _)| Arc::clone(e))
                    });
                    let Some(event) = found else {
                        let error = RegistryError::Storage {
                            process_id: actor.process_id.clone(),
                            message: format!("replay index names missing event {sequence}"),
                        };
                        return self.answer(reply, Err(error));
                    };
                    let delivery = wake_delivery(state.record(), &event, target.as_ref());
                    answers.push((event, delivery));
                }
                BatchItem::Commit(planned) => {
                    let planned = *planned;
                    let event = Arc::new(planned.event);
                    if let Some(changed) = planned.record {
                        current = Arc::new(changed);
                    }
                    let record = Arc::clone(&current);
                    let delivery = wake_delivery(&record, &event, target.as_ref());
                    changes.push(ProcessChange::Appended { event: Arc::clone(&event), replay: planned.replay, record });
                    answers.push((event, delivery));
                }
            }
        }
        if changes.is_empty() {
            self.answer(reply, Ok(answers));
        } else {
            self.commit(changes, reply, answers);
        }
    }

    fn ack_wake(&mut self, sequence: u64, reply: Reply<()>) {
        let state = &self.actor.state;
        let last_sequence = state.last_sequence();
        if sequence == 0 || sequence > last_sequence {
            let error = RegistryError::SequenceOutOfRange {
                process_id: self.actor.process_id.clone(),
                sequence,
                last_sequence,
            };
            return self.answer(reply, Err(error));
        }
        if state.is_acked(sequence) {
            return self.answer(reply, Ok(()));
        }
        self.commit(vec![ProcessChange::WakeAcked { sequence }], reply, ());
    }

    /// Commits the record `update` makes, stamped with `now_ms`: the clock
    /// the call was planned on (a shared store's server clock, as appends
    /// are stamped), so `updated_at_ms` never mixes two clocks.
    fn update_record(&mut self, update: impl FnOnce(&mut ProcessRecord), now_ms: u64, reply: Reply<ProcessRecord>) {
        let mut record = ProcessRecord::clone(self.actor.state.record());
        update(&mut record);
        record.updated_at_ms = now_ms;
        let answer = record.clone();
        self.commit(vec![ProcessChange::RecordUpdated { record: Arc::new(record) }], reply, answer);
    }

    fn set_wait(&mut self, wait: Option<WaitState>, now_ms: u64, reply: Reply<ProcessRecord>) {
        if wait.is_some() && self.actor.state.record().is_terminal() {
            let error = RegistryError::AlreadyTerminal { process_id: self.actor.process_id.clone() };
            return self.answer(reply, Err(error));
        }
        self.update_record(|record| record.wait = wait, now_ms, reply);
    }

    fn set_external_ref(&mut self, external_ref: ProcessExternalRef, now_ms: u64, reply: Reply<ProcessRecord>) {
        self.update_record(|record| record.external_ref = Some(external_ref), now_ms, reply);
    }

    fn claim_lease(&mut self, owner_id: &str, ttl_ms: u64, now_ms: u64, reply: Reply<ProcessLease>) {
        let actor = &*self.actor;
        if actor.state.record().is_terminal() {
            let error = RegistryError::AlreadyTerminal { process_id: actor.process_id.clone() };
            return self.answer(reply, Err(error));
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        match lease::claim(actor.state.lease(), &actor.process_id, owner_id, ttl_ms, now_ms, token) {
            Ok(claimed) => {
                let next = lease::granted(actor.state.lease(), claimed.clone());
                self.commit(vec![ProcessChange::LeaseUpdated { lease: next }], reply, claimed);
            }
            Err(error) => self.answer(reply, Err(error)),
        }
    }

    fn renew_lease(&mut self, presented: &ProcessLease, ttl_ms: u64, now_ms: u64, reply: Reply<ProcessLease>) {
        let current = self.actor.state.lease();
        match lease::renew(current, presented, ttl_ms, now_ms) {
            Ok(renewed) => {
                let next = lease::granted(current, renewed.clone());
                self.commit(vec![ProcessChange::LeaseUpdated { lease: next }], reply, renewed);
            }
            Err(error) => self.answer(reply, Err(error)),
        }
    }

    fn complete_lease(&mut self, completion: &ProcessLeaseCompletion, reply: Reply<()>) {
        match lease::release(self.actor.state.lease(), completion) {
            Some(next) => self.commit(vec![ProcessChange::LeaseUpdated { lease: next }], reply, ()),
            None => self.answer(reply, Ok(())),
        }
    }
}

/// The event an append answers with: the log's own, or, when the caller
/// asked for an owned one, a copy of its own that the caller unwraps.
fn answered(event: &Arc<ProcessEvent>, owned: bool) -> Arc<ProcessEvent> {
    if owned {
        Arc::new(ProcessEvent::clone(event))
    } else {
        Arc::clone(event)
    }
}

/// An [`Answer`] that sends `result` to `reply`, or the pipeline's error.
fn answer_with<T: Send + 'static>(reply: Reply<T>, result: Result<T, RegistryError>) -> Answer {
    Box::new(move |outcome| {
        // A caller that went away no longer needs the answer.
        let _ = reply.send(outcome.and(result));
    })
}
