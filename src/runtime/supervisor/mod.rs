//! The registry supervisor: creation, grants, and restarts.
//!
//! Supervision here is ownership of each process actor's lifecycle: the
//! supervisor alone starts, restarts, passivates and quarantines them.
//!
//! - **Activation.** A registration starts its process's actor before it
//!   answers, while fewer than `ready_on_register` such actors wait for
//!   their first call ([`ReadyBudget`](super::shared::ReadyBudget)), so
//!   the calls that follow a registration find it running. Any other
//!   process has no actor until a call needs one; the supervisor then
//!   starts it from the store ([`SupervisorMsg::Activate`]).
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

use self::grants::{owned_grants, GrantIndex};
use self::messages::SupervisorMsg;
use self::restarts::FailureHistory;
use super::call::Reply;
use super::process::messages::ProcessMsg;
use super::process::{ProcessActor, ProcessActorArgs};
use super::routes::{ActiveProcess, Mailbox, ProcessEntry, RecordSnapshot, Slot};
use super::shared::{ReadyToken, Shared};
use crate::error::RegistryError;
use crate::model::{ProcessRecord, ProcessSessionDeleteReport, SessionScope};
use crate::rules::registration::{same_registration, PreparedRegistration};
use crate::store::{self, Commit, CommitCallback, CommitResult, Committed, GrantChange, StoredProcess};

/// The supervisor actor.
#[derive(Debug)]
pub(crate) struct RegistrySupervisor {
    pub(crate) shared: Arc<Shared>,
}

/// How many times a commit that lost a race to another node (a shared
/// store) is planned again before the caller gets
/// [`RegistryError::Contended`].
pub(crate) const MAX_PLANS: u32 = 32;

/// The supervisor's state.
#[derive(Debug, Default)]
pub(crate) struct SupervisorState {
    /// With a shared store: the version of the grants the published index
    /// (`Shared::grants`) holds, or
    /// `None` when they must be read again.
    grants_version: Option<u64>,
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
        let state = SupervisorState::default();
        let recovered = self.shared.store.recover().await?;
        for record in recovered.records {
            self.route_new(record);
        }
        // A quarantine recorded before the reopen stands.
        for process_id in &recovered.quarantined {
            if self.shared.routes.slot(process_id).is_some() {
                self.shared.routes.set_slot(process_id, Slot::Quarantined(Arc::default()));
                self.shared.counters.quarantine(process_id);
            }
        }
        let mut grants = self.shared.grants.write();
        for change in &recovered.grants {
            grants.apply(change);
        }
        drop(grants);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Register { prepared, reply } => self.register(&myself, state, *prepared, reply).await,
            SupervisorMsg::Registered { record, result } => self.registered(&myself, state, record, result).await,
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
                let _ = reply.send(self.grant(state, &scope, &process_id, descriptor).await);
            }
            SupervisorMsg::Revoke { scope, process_id, reply } => {
                let _ = reply.send(self.revoke(state, &scope, &process_id).await);
            }
            SupervisorMsg::Transfer { from, to, process_ids, reply } => {
                let _ = reply.send(self.transfer(state, &from, &to, &process_ids).await);
            }
            SupervisorMsg::ListGrants { scope, reply } => {
                let listed =
                    self.fresh_grants(state).await.map(|()| self.shared.grants.read().grants_of_scope(&scope.id()));
                let _ = reply.send(listed.map(owned_grants));
            }
            SupervisorMsg::HasGrant { scope, process_id, reply } => {
                let fresh = self.fresh_grants(state).await;
                let has = fresh.is_ok() && self.shared.grants.read().has(&scope.id(), &process_id);
                let granted = match fresh {
                    Ok(()) if has => self.known(&process_id).await,
                    Ok(()) => Ok(false),
                    Err(error) => Err(error),
                };
                let _ = reply.send(granted);
            }
            SupervisorMsg::GrantsOfProcess { process_id, reply } => {
                let result = match self.known(&process_id).await {
                    Ok(true) => self
                        .fresh_grants(state)
                        .await
                        .map(|()| owned_grants(self.shared.grants.read().grants_of_process(&process_id))),
                    Ok(false) => Err(RegistryError::unknown(&process_id)),
                    Err(error) => Err(error),
                };
                let _ = reply.send(result);
            }
            SupervisorMsg::DeleteSession { session_id, reply } => {
                let _ = reply.send(self.delete_session(state, session_id).await);
            }
            SupervisorMsg::ReleaseQuarantine { process_id, reply } => {
                let _ = reply.send(self.release_quarantine(state, &process_id).await);
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
                    self.quarantine(&process_id, reason.to_string()).await;
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
    /// The store records the quarantine first (a durable one keeps it, so a
    /// reopened registry routes the process as quarantined), then the slot
    /// changes. Parks the supervisor for that one commit. A store that
    /// refuses the write leaves the process quarantined all the same, until
    /// this registry stops: an actor that keeps failing must not run again.
    async fn quarantine(&self, process_id: &str, reason: String) {
        tracing::error!(process_id = %process_id, %reason, "process actor keeps failing; quarantined");
        let commit = Commit::Quarantined { process_id: process_id.to_owned(), reason, since_ms: self.shared.now_ms() };
        if let Err(error) = store::commit(&*self.shared.store, commit).await {
            tracing::error!(process_id = %process_id, %error, "the store did not record the quarantine");
        }
        // The dead actor's last commits may have become durable after it
        // died (a pipelined store) and were never settled: the published
        // record and the status index follow what the store holds.
        match self.shared.store.load_process(process_id).await {
            Ok(Some(stored)) => {
                if let Some(snapshot) = self.shared.routes.snapshot_handle(process_id) {
                    snapshot.publish(Arc::clone(&stored.record));
                }
                self.shared.stored_status(&stored.record);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(process_id = %process_id, %error, "could not read the quarantined process back")
            }
        }
        // What the store kept for the dead actor's reads goes: the
        // quarantine's own view answers them from here on.
        self.shared.store.release_process(process_id);
        self.shared.routes.set_slot(process_id, Slot::Quarantined(Arc::default()));
        self.shared.counters.quarantine(process_id);
    }

    /// Lifts the quarantine of `process_id`: the process goes back to
    /// passive (its next call starts an actor from the committed state)
    /// with no failure remembered, so the restart intensity counts afresh.
    ///
    /// The store records the release first; when it refuses, the process
    /// stays quarantined and the caller gets its error. Parks the
    /// supervisor for that one commit.
    async fn release_quarantine(&self, state: &mut SupervisorState, process_id: &str) -> Result<(), RegistryError> {
        match self.shared.routes.slot(process_id) {
            None => Err(RegistryError::unknown(process_id)),
            Some(Slot::Quarantined(_)) => {
                store::commit(&*self.shared.store, Commit::QuarantineReleased { process_id: process_id.to_owned() })
                    .await?;
                state.failures.forget(process_id);
                // A copy the quarantine's reads left in the store goes with it.
                self.shared.store.release_process(process_id);
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
        // With a shared store an id this node has not routed may have been
        // registered by another node: it is adopted when the store has it.
        let adopting = match self.shared.routes.slot(process_id) {
            None if self.shared.store.shared().is_some() => true,
            None => return Err(RegistryError::unknown(process_id)),
            Some(Slot::Active(active)) => return Ok(active),
            Some(Slot::Quarantined(_)) => return Err(RegistryError::Quarantined { process_id: process_id.to_owned() }),
            Some(Slot::Passive) => false,
        };
        let storage = |message: String| RegistryError::Storage { process_id: process_id.to_owned(), message };
        let stored = match self.shared.store.load_process(process_id).await? {
            Some(stored) => stored,
            None if adopting => return Err(RegistryError::unknown(process_id)),
            None => return Err(storage("the store does not hold this process".to_owned())),
        };
        if adopting {
            self.route_new(Arc::clone(&stored.record));
        }
        let started = self.start(myself, state, stored, None).await;
        if started.is_err() {
            // No actor: nothing of the process stays resident.
            self.shared.store.release_process(process_id);
        }
        started
    }

    /// Starts the actor of a routed process from `stored`, its committed
    /// state, and routes it active. `ready` is the place an actor started
    /// by its registration holds until its first call.
    async fn start(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        stored: StoredProcess,
        ready: Option<ReadyToken>,
    ) -> Result<Arc<ActiveProcess>, RegistryError> {
        let record = Arc::clone(&stored.record);
        let process_id = record.id.as_str();
        let storage = |message: String| RegistryError::Storage { process_id: process_id.to_owned(), message };
        let snapshot =
            self.shared.routes.snapshot_handle(process_id).ok_or_else(|| RegistryError::unknown(process_id))?;
        let schemas = self
            .shared
            .schemas
            .schemas_for(&stored.record.event_types)
            .map_err(|(name, reason)| storage(format!("stored schema of `{name}` does not compile: {reason}")))?;
        let mailbox = Arc::new(Mailbox::new(self.shared.mailbox.capacity));
        let args = ProcessActorArgs { stored, mailbox: Arc::clone(&mailbox), schemas, snapshot, ready };
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
    async fn register(
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
        let accepted = prepared.accepted(&self.shared.schemas);
        let record = Arc::new(accepted.new_record(self.shared.now_ms()));
        let supervisor = myself.clone();
        let written = Arc::clone(&record);
        let later: CommitCallback = Box::new(move |result| {
            let _ = supervisor.send_message(SupervisorMsg::Registered { record: written, result });
        });
        state.registering.insert(process_id, vec![(hash, reply)]);
        if let Some(result) = self.shared.store.submit(Commit::Register { record: Arc::clone(&record) }, later) {
            self.registered(myself, state, record, result).await;
        }
        // Freed only now, after the answers: the registration as the caller
        // sent it (its event types and their schemas, which the record
        // shares interned) is a deep tree, and freeing it before answering
        // made every registration wait for it (a quarter of the
        // supervisor's time per registration in a profile).
        drop(accepted);
    }

    /// The store's answer to a registration: route it, start its actor
    /// when it is fresh and the [`ReadyBudget`](super::shared::ReadyBudget)
    /// has a place, and answer everyone who registered that id meanwhile.
    ///
    /// The actor starts before the answers go out, so a caller's next call
    /// finds it running. A failed start only logs: the process stays
    /// passive, and its first call activates it as usual.
    async fn registered(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        record: Arc<ProcessRecord>,
        result: CommitResult,
    ) {
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
        if let (true, Ok(stored)) = (fresh, &stored) {
            self.start_registered(myself, state, stored).await;
        }
        for (hash, reply) in waiting {
            let answer = match &stored {
                Ok(stored) => same_registration(stored, &hash),
                Err(error) => Err(error.clone()),
            };
            let _ = reply.send(answer);
        }
    }

    /// Starts the actor of a process this registry has just registered,
    /// when the [`ReadyBudget`](super::shared::ReadyBudget) has a place: never
    /// with a shared store (another node may take the process first) nor
    /// at shutdown (the supervisor is stopping its children). A failed
    /// start leaves the process passive, with nothing of it resident.
    async fn start_registered(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        record: &Arc<ProcessRecord>,
    ) {
        if self.shared.store.shared().is_some() || self.shared.is_stopping() {
            return;
        }
        let Some(ready) = self.shared.ready.take() else {
            return;
        };
        let stored = self.shared.store.load_registered(Arc::clone(record));
        if let Err(error) = self.start(myself, state, stored, Some(ready)).await {
            self.shared.store.release_process(&record.id);
            tracing::warn!(process_id = %record.id, %error, "could not start a registered process's actor; it stays passive");
        }
    }

    /// Whether `process_id` is registered. With a shared store an id this
    /// node has not routed is looked up in the store (another node may have
    /// registered it) and routed when found.
    async fn known(&self, process_id: &str) -> Result<bool, RegistryError> {
        if self.shared.routes.contains(process_id) {
            return Ok(true);
        }
        let Some(store) = self.shared.store.shared() else {
            return Ok(false);
        };
        // No shared store holds such an id (PostgreSQL text refuses NUL),
        // and the database would answer it with an error, not "none".
        if process_id.contains('\0') || process_id.len() > self.shared.limits.max_id_bytes {
            return Ok(false);
        }
        match store.fetch_records(&[process_id.to_owned()]).await?.into_iter().next() {
            Some(record) => {
                self.route_new(record);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// With a shared store: reloads the grant index when another node
    /// changed the grants since this node last read them (one round trip
    /// when nothing changed). A store this registry writes alone never
    /// changes behind its back: nothing to do.
    async fn fresh_grants(&self, state: &mut SupervisorState) -> Result<(), RegistryError> {
        let Some(store) = self.shared.store.shared() else {
            return Ok(());
        };
        if state.grants_version == Some(store.grants_version().await?) {
            return Ok(());
        }
        let (version, grants) = store.load_grants().await?;
        let mut index = GrantIndex::default();
        for change in &grants {
            index.apply(change);
        }
        *self.shared.grants.write() = index;
        state.grants_version = Some(version);
        Ok(())
    }

    /// Commits the grant changes `plan` makes of the current index, all or
    /// nothing, and returns them; the caller applies them to the index.
    /// With a shared store the plan is made on the store's grants and
    /// committed fenced by their version: when another node committed
    /// first, the index is reloaded and `plan` runs again (at most
    /// [`MAX_PLANS`] times).
    async fn commit_grants(
        &self,
        state: &mut SupervisorState,
        plan: impl Fn(&GrantIndex) -> Result<Vec<GrantChange>, RegistryError>,
    ) -> Result<Vec<GrantChange>, RegistryError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.fresh_grants(state).await?;
            let changes = plan(&self.shared.grants.read())?;
            if changes.is_empty() {
                return Ok(changes);
            }
            let base_version = state.grants_version.unwrap_or(0);
            let commit = Commit::Grants { base_version, changes: changes.clone() };
            match store::commit(&*self.shared.store, commit).await {
                Ok(_) => {
                    state.grants_version = state.grants_version.map(|version| version + 1);
                    return Ok(changes);
                }
                Err(RegistryError::Contended { .. }) if attempts < MAX_PLANS => state.grants_version = None,
                Err(RegistryError::Contended { process_id, .. }) => {
                    state.grants_version = None;
                    return Err(RegistryError::Contended { process_id, attempts });
                }
                Err(error) => {
                    // The commit may have landed: read the grants afresh.
                    state.grants_version = None;
                    return Err(error);
                }
            }
        }
    }

    async fn grant(
        &self,
        state: &mut SupervisorState,
        scope: &SessionScope,
        process_id: &str,
        descriptor: crate::model::ProcessHandleDescriptor,
    ) -> Result<crate::model::ProcessHandleGrant, RegistryError> {
        if !self.known(process_id).await? {
            return Err(RegistryError::unknown(process_id));
        }
        let change = GrantChange::Granted {
            scope: scope.clone(),
            process_id: process_id.to_owned(),
            descriptor: descriptor.clone(),
        };
        self.commit_grants(state, |_| Ok(vec![change.clone()])).await?;
        Ok(self.shared.grants.write().grant(scope, process_id, descriptor))
    }

    async fn revoke(
        &self,
        state: &mut SupervisorState,
        scope: &SessionScope,
        process_id: &str,
    ) -> Result<(), RegistryError> {
        let scope_id = scope.id();
        let changes = self
            .commit_grants(state, |grants| {
                Ok(if grants.has(&scope_id, process_id) {
                    vec![GrantChange::Revoked { scope_id: scope_id.0.clone(), process_id: process_id.to_owned() }]
                } else {
                    Vec::new()
                })
            })
            .await?;
        if !changes.is_empty() {
            self.shared.grants.write().revoke(&scope_id, process_id);
        }
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
        let not_granted = |missing: Vec<String>| RegistryError::HandleNotGranted {
            process_id: missing.into_iter().next().unwrap_or_default(),
            scope_id: from_id.0.clone(),
        };
        // One commit: on disk, too, everything moves or nothing does.
        self.commit_grants(state, |grants| {
            let missing = grants.missing(&from_id, process_ids);
            if !missing.is_empty() {
                return Err(not_granted(missing));
            }
            let mut changes = Vec::with_capacity(process_ids.len() * 2);
            for process_id in process_ids {
                let descriptor = grants.descriptor(&from_id, process_id).cloned().unwrap_or_default();
                changes.push(GrantChange::Revoked { scope_id: from_id.0.clone(), process_id: process_id.clone() });
                changes.push(GrantChange::Granted { scope: to.clone(), process_id: process_id.clone(), descriptor });
            }
            Ok(changes)
        })
        .await?;
        self.shared.grants.write().transfer(from, to, process_ids).map_err(not_granted)
    }

    async fn delete_session(
        &self,
        state: &mut SupervisorState,
        session_id: String,
    ) -> Result<ProcessSessionDeleteReport, RegistryError> {
        let changes = self
            .commit_grants(state, |grants| {
                Ok(grants
                    .grants_of_session(&session_id)
                    .into_iter()
                    .map(|(scope_id, process_id)| GrantChange::Revoked { scope_id: scope_id.0, process_id })
                    .collect())
            })
            .await?;
        // Which of the processes that lost a grant are live: with a shared
        // store, as the store has them now (another node may have
        // completed one); else, or when that read fails, from the records
        // this node publishes. The deletion is committed by now: a failed
        // read must not leave the index behind the database, nor tell the
        // caller nothing moved.
        let live: Option<std::collections::HashSet<String>> = match self.shared.store.shared() {
            Some(store) => {
                let mut affected: Vec<String> = changes
                    .iter()
                    .filter_map(|change| match change {
                        GrantChange::Revoked { process_id, .. } => Some(process_id.clone()),
                        GrantChange::Granted { .. } => None,
                    })
                    .collect();
                affected.sort();
                affected.dedup();
                match store.fetch_records(&affected).await {
                    Ok(records) => Some(
                        records
                            .into_iter()
                            .filter(|record| !record.is_terminal())
                            .map(|record| record.id.clone())
                            .collect(),
                    ),
                    Err(error) => {
                        tracing::warn!(%error, %session_id, "a committed session deletion reports liveness from this node's records");
                        None
                    }
                }
            }
            None => None,
        };
        let routes = &self.shared.routes;
        Ok(self.shared.grants.write().delete_session(&session_id, |id| match &live {
            Some(live) => live.contains(id),
            None => routes.record(id).is_some_and(|record| !record.is_terminal()),
        }))
    }
}
