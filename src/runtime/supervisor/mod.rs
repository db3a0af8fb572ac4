//! The registry supervisor: creation, grants, and restarts.
//!
//! Supervision here is ownership of each process actor's lifecycle: the
//! supervisor alone starts, restarts, passivates and quarantines them.
//!
//! - **Activation.** A registered process has no actor until a call needs
//!   one; the supervisor then starts it from the store ([`SupervisorMsg::Activate`]).
//! - **Passivation.** An actor idle for the configured time with nothing
//!   parked drains its mailbox and stops ([`SupervisorMsg::Sweep`]); its
//!   state stays in the store, so memory per idle process is its record.
//! - **Restart.** Every process actor is linked to the supervisor, so it
//!   alone learns when one fails. It starts a fresh actor from the
//!   committed state at once; no other process is touched. Callers that
//!   found the dead actor before the supervisor heard of its death ask for
//!   its replacement ([`SupervisorMsg::Replace`]) and are answered when the
//!   supervisor has handled it.
//! - **Quarantine.** More than `max_restarts` failures within `within_ms`
//!   (OTP's restart intensity) leave the process quarantined: no actor runs
//!   for it, mutations and waits are refused with a typed error, reads are
//!   answered from its committed state, and it is listed in `stats()`
//!   until an operator releases it ([`SupervisorMsg::ReleaseQuarantine`]),
//!   which makes it passive again with a fresh failure history.
//!
//! Creation is serialized here so that two racing registrations of one id
//! end in one actor and one record. The supervisor also owns the session
//! grant index ([`GrantIndex`]), since grants relate sessions to many
//! processes and belong to no single process actor.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

pub(crate) mod grants;
pub(crate) mod messages;
mod restarts;

use self::grants::GrantIndex;
use self::messages::SupervisorMsg;
use self::restarts::FailureHistory;
use super::call::Reply;
use super::process::messages::ProcessMsg;
use super::process::{ProcessActor, ProcessActorArgs};
use super::routes::{ActiveProcess, Mailbox, ProcessEntry, RecordSnapshot, Slot};
use super::shared::Shared;
use crate::error::RegistryError;
use crate::model::{ProcessRecord, ProcessSessionDeleteReport, SessionScope};
use crate::rules::registration::{same_registration, PreparedRegistration};
use crate::store::{self, Commit, CommitCallback, CommitResult, Committed, GrantChange};

/// The supervisor actor.
#[derive(Debug)]
pub(crate) struct RegistrySupervisor {
    pub(crate) shared: Arc<Shared>,
}

/// The supervisor's state.
#[derive(Debug, Default)]
pub(crate) struct SupervisorState {
    grants: GrantIndex,
    /// The running process actors: the only ones a sweep has to visit.
    children: HashMap<ActorId, (String, ActorRef<ProcessMsg>)>,
    /// Recent failure times per process, for the restart intensity.
    failures: FailureHistory,
    /// Registrations being written, by id: the callers waiting for each.
    registering: HashMap<String, Vec<(String, Reply<ProcessRecord>)>>,
    /// Callers waiting for the replacement of an actor that went away
    /// before its end reached the supervisor; answered when it does.
    replacing: HashMap<ActorId, Vec<Reply<Arc<ActiveProcess>>>>,
}

impl Actor for RegistrySupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, (): ()) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState::default();
        let recovered = self.shared.store.recover().await?;
        for record in recovered.records {
            self.route_new(record);
        }
        for change in recovered.grants {
            match change {
                GrantChange::Granted { scope, process_id, descriptor } => {
                    state.grants.grant(&scope, &process_id, descriptor);
                }
                GrantChange::Revoked { scope_id, process_id } => {
                    state.grants.revoke(&crate::model::SessionScopeId(scope_id), &process_id);
                }
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Register { prepared, reply } => self.register(&myself, state, *prepared, reply),
            SupervisorMsg::Registered { record, result } => self.registered(state, record, result),
            SupervisorMsg::Activate { process_id, reply } => {
                let _ = reply.send(self.activate(&myself, state, &process_id).await);
            }
            SupervisorMsg::Replace { process_id, gone, reply } => {
                if state.children.contains_key(&gone) {
                    // Its end is on the way (the supervision event of an
                    // actor is sent after its mailbox closes).
                    state.replacing.entry(gone).or_default().push(reply);
                } else {
                    let _ = reply.send(self.activate(&myself, state, &process_id).await);
                }
            }
            SupervisorMsg::Sweep => {
                if let Some(idle) = self.shared.passivate_after {
                    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
                    for (_, actor) in state.children.values() {
                        let _ = actor.send_message(ProcessMsg::Passivate { idle_ms });
                    }
                }
            }
            SupervisorMsg::Grant { scope, process_id, descriptor, reply } => {
                let result = if self.shared.routes.contains(&process_id) {
                    let change = GrantChange::Granted {
                        scope: scope.clone(),
                        process_id: process_id.clone(),
                        descriptor: descriptor.clone(),
                    };
                    match store::commit(&*self.shared.store, Commit::Grants { changes: vec![change] }).await {
                        Ok(_) => Ok(state.grants.grant(&scope, &process_id, descriptor)),
                        Err(err) => Err(err),
                    }
                } else {
                    Err(RegistryError::unknown(&process_id))
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::Revoke { scope, process_id, reply } => {
                let _ = reply.send(self.revoke(state, &scope, &process_id).await);
            }
            SupervisorMsg::Transfer { from, to, process_ids, reply } => {
                let _ = reply.send(self.transfer(state, &from, &to, &process_ids).await);
            }
            SupervisorMsg::ListGrants { scope, reply } => {
                let _ = reply.send(Ok(state.grants.grants_of_scope(&scope.id())));
            }
            SupervisorMsg::HasGrant { scope, process_id, reply } => {
                let granted = state.grants.has(&scope.id(), &process_id) && self.shared.routes.contains(&process_id);
                let _ = reply.send(Ok(granted));
            }
            SupervisorMsg::GrantsOfProcess { process_id, reply } => {
                let result = if self.shared.routes.contains(&process_id) {
                    Ok(state.grants.grants_of_process(&process_id))
                } else {
                    Err(RegistryError::unknown(&process_id))
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::DeleteSession { session_id, reply } => {
                let _ = reply.send(self.delete_session(state, session_id).await);
            }
            SupervisorMsg::ReleaseQuarantine { process_id, reply } => {
                let _ = reply.send(self.release_quarantine(state, &process_id));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, reason) => {
                let Some((process_id, _)) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                // A failed actor never ran post_stop.
                self.shared.counters.actor_stopped();
                // At shutdown, dropping the waiting callers' ports answers them `Stopped`.
                let waiting = state.replacing.remove(&cell.get_id()).unwrap_or_default();
                if self.shared.is_stopping() {
                    return Ok(());
                }
                let replaced = if state.failures.exceeds(
                    &process_id,
                    self.shared.now_ms(),
                    self.shared.restart_intensity,
                ) {
                    self.quarantine(&process_id, &reason);
                    Err(RegistryError::Quarantined { process_id: process_id.clone() })
                } else {
                    tracing::warn!(process_id = %process_id, %reason, "process actor failed; restarting from committed state");
                    self.shared.routes.passivate_if_current(&process_id, cell.get_id());
                    self.shared.counters.restarted();
                    // A failed restart must not take the supervisor down:
                    // the slot stays passive and the next call tries again.
                    let restarted = self.activate(&myself, state, &process_id).await;
                    if let Err(err) = &restarted {
                        tracing::error!(process_id = %process_id, %err, "restarting the process actor failed");
                    }
                    restarted
                };
                for reply in waiting {
                    let _ = reply.send(replaced.clone());
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some((process_id, _)) = state.children.remove(&cell.get_id()) {
                    self.shared.routes.passivate_if_current(&process_id, cell.get_id());
                    let waiting = state.replacing.remove(&cell.get_id()).unwrap_or_default();
                    if !waiting.is_empty() && !self.shared.is_stopping() {
                        let replaced = self.activate(&myself, state, &process_id).await;
                        for reply in waiting {
                            let _ = reply.send(replaced.clone());
                        }
                    }
                }
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }
}

impl RegistrySupervisor {
    /// Quarantines a process whose actor failed more often than the restart
    /// intensity allows. This and [`Self::release_quarantine`] are the only
    /// places a quarantine starts or ends.
    ///
    /// A durable store records the quarantine here, before the slot
    /// changes, so that a reopened registry routes the process as
    /// quarantined (in `pre_start`) instead of passive.
    fn quarantine(&self, process_id: &str, reason: &dyn std::fmt::Display) {
        tracing::error!(process_id = %process_id, %reason, "process actor keeps failing; quarantined");
        self.shared.routes.set_slot(process_id, Slot::Quarantined(Arc::default()));
        self.shared.counters.quarantine(process_id);
    }

    /// Lifts the quarantine of `process_id`: the process goes back to
    /// passive (its next call starts an actor from the committed state)
    /// with no failure remembered, so the restart intensity counts afresh.
    ///
    /// A durable store records the release here, before the slot changes.
    fn release_quarantine(&self, state: &mut SupervisorState, process_id: &str) -> Result<(), RegistryError> {
        match self.shared.routes.slot(process_id) {
            None => Err(RegistryError::unknown(process_id)),
            Some(Slot::Quarantined(_)) => {
                state.failures.forget(process_id);
                self.shared.routes.set_slot(process_id, Slot::Passive);
                self.shared.counters.release(process_id);
                tracing::info!(process_id = %process_id, "quarantine released");
                Ok(())
            }
            Some(Slot::Active(_) | Slot::Passive) => {
                Err(RegistryError::NotQuarantined { process_id: process_id.to_owned() })
            }
        }
    }

    /// Starts an actor for a passive process; returns the running one when
    /// there is one already.
    async fn activate(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        process_id: &str,
    ) -> Result<Arc<ActiveProcess>, RegistryError> {
        if self.shared.is_stopping() {
            return Err(RegistryError::stopped(process_id));
        }
        match self.shared.routes.slot(process_id) {
            None => return Err(RegistryError::unknown(process_id)),
            Some(Slot::Active(active)) => return Ok(active),
            Some(Slot::Quarantined(_)) => return Err(RegistryError::Quarantined { process_id: process_id.to_owned() }),
            Some(Slot::Passive) => {}
        }
        let storage = |message: String| RegistryError::Storage { process_id: process_id.to_owned(), message };
        let stored = self
            .shared
            .store
            .load_process(process_id)
            .await?
            .ok_or_else(|| storage("the store does not hold this process".to_owned()))?;
        let snapshot =
            self.shared.routes.snapshot_handle(process_id).ok_or_else(|| RegistryError::unknown(process_id))?;
        let schemas = self
            .shared
            .schemas
            .schemas_for(&stored.record.event_types)
            .map_err(|(name, reason)| storage(format!("stored schema of `{name}` does not compile: {reason}")))?;
        let mailbox = Arc::new(Mailbox::new(self.shared.mailbox.capacity));
        let args = ProcessActorArgs { stored, mailbox: Arc::clone(&mailbox), schemas, snapshot };
        let actor = ProcessActor { shared: Arc::clone(&self.shared) };
        let (actor, _join) = Actor::spawn_linked(None, actor, args, myself.get_cell())
            .await
            .map_err(|err| storage(format!("could not start the process actor: {err}")))?;
        state.children.insert(actor.get_id(), (process_id.to_owned(), actor.clone()));
        let active = Arc::new(ActiveProcess { actor, mailbox });
        self.shared.routes.set_slot(process_id, Slot::Active(Arc::clone(&active)));
        self.shared.counters.activated();
        Ok(active)
    }

    /// Routes a committed process, passive: its actor starts on first use.
    fn route_new(&self, record: Arc<ProcessRecord>) {
        if self.shared.routes.contains(&record.id) {
            return;
        }
        self.shared.counters.count_status(&record.status);
        let snapshot = Arc::new(RecordSnapshot::new(Arc::clone(&record)));
        self.shared.routes.insert(record.id.clone(), ProcessEntry { slot: Slot::Passive, record: snapshot });
    }

    /// Answers for an existing process, or submits a new one. Creation is
    /// pipelined: the supervisor goes on with other calls while the store
    /// writes, and the process becomes visible (routed) only once durable.
    /// A registration of an id already being written waits for that write.
    fn register(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        prepared: PreparedRegistration,
        reply: Reply<ProcessRecord>,
    ) {
        let process_id = prepared.registration.id.clone();
        if let Some(existing) = self.shared.routes.record(&process_id) {
            let _ = reply.send(same_registration(&existing, &prepared.hash));
            return;
        }
        if let Some(waiting) = state.registering.get_mut(&process_id) {
            waiting.push((prepared.hash, reply));
            return;
        }
        let hash = prepared.hash.clone();
        // Accepted: only now are its declarations interned.
        let record = Arc::new(prepared.accepted(&self.shared.schemas).new_record(self.shared.now_ms()));
        let myself = myself.clone();
        let written = Arc::clone(&record);
        let later: CommitCallback = Box::new(move |result| {
            let _ = myself.send_message(SupervisorMsg::Registered { record: written, result });
        });
        state.registering.insert(process_id, vec![(hash, reply)]);
        if let Some(result) = self.shared.store.submit(Commit::Register { record: Arc::clone(&record) }, later) {
            self.registered(state, record, result);
        }
    }

    /// The store's answer to a registration: route it and answer everyone
    /// who registered that id meanwhile.
    fn registered(&self, state: &mut SupervisorState, record: Arc<ProcessRecord>, result: CommitResult) {
        let waiting = state.registering.remove(&record.id).unwrap_or_default();
        let fresh = matches!(result, Ok(Committed::Done));
        let stored = match result {
            Ok(Committed::Done) => Ok(record),
            Ok(Committed::AlreadyRegistered(existing)) => Ok(existing),
            Err(error) => Err(error),
        };
        if let Ok(stored) = &stored {
            self.route_new(Arc::clone(stored));
        }
        if fresh {
            // Routed first, so a worker woken by the notice lists it.
            self.shared.registrations.send_modify(|count| *count = count.wrapping_add(1));
        }
        for (hash, reply) in waiting {
            let answer = match &stored {
                Ok(stored) => same_registration(stored, &hash),
                Err(error) => Err(error.clone()),
            };
            let _ = reply.send(answer);
        }
    }

    async fn revoke(
        &self,
        state: &mut SupervisorState,
        scope: &SessionScope,
        process_id: &str,
    ) -> Result<(), RegistryError> {
        let scope_id = scope.id();
        if !state.grants.has(&scope_id, process_id) {
            return Ok(());
        }
        let change = GrantChange::Revoked { scope_id: scope_id.0.clone(), process_id: process_id.to_owned() };
        store::commit(&*self.shared.store, Commit::Grants { changes: vec![change] }).await?;
        state.grants.revoke(&scope_id, process_id);
        Ok(())
    }

    async fn transfer(
        &self,
        state: &mut SupervisorState,
        from: &SessionScope,
        to: &SessionScope,
        process_ids: &[String],
    ) -> Result<(), RegistryError> {
        let from_id = from.id();
        if let Some(missing) = state.grants.missing(&from_id, process_ids).into_iter().next() {
            return Err(RegistryError::HandleNotGranted { process_id: missing, scope_id: from_id.0 });
        }
        let mut changes = Vec::with_capacity(process_ids.len() * 2);
        for process_id in process_ids {
            let descriptor = state.grants.descriptor(&from_id, process_id).cloned().unwrap_or_default();
            changes.push(GrantChange::Revoked { scope_id: from_id.0.clone(), process_id: process_id.clone() });
            changes.push(GrantChange::Granted { scope: to.clone(), process_id: process_id.clone(), descriptor });
        }
        // One commit: on disk, too, everything moves or nothing does.
        store::commit(&*self.shared.store, Commit::Grants { changes }).await?;
        state.grants.transfer(from, to, process_ids).map_err(|missing| RegistryError::HandleNotGranted {
            process_id: missing.into_iter().next().unwrap_or_default(),
            scope_id: from_id.0,
        })
    }

    async fn delete_session(
        &self,
        state: &mut SupervisorState,
        session_id: String,
    ) -> Result<ProcessSessionDeleteReport, RegistryError> {
        let changes: Vec<GrantChange> = state
            .grants
            .grants_of_session(&session_id)
            .into_iter()
            .map(|(scope_id, process_id)| GrantChange::Revoked { scope_id: scope_id.0, process_id })
            .collect();
        if !changes.is_empty() {
            store::commit(&*self.shared.store, Commit::Grants { changes }).await?;
        }
        let routes = &self.shared.routes;
        Ok(state.grants.delete_session(&session_id, |id| routes.record(id).is_some_and(|record| !record.is_terminal())))
    }
}
