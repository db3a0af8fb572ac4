//! The registry supervisor: creation, grants, and restarts.
//!
//! Supervision here is ownership of each process actor's lifecycle. The
//! supervisor spawns every process actor linked to itself, so it alone
//! learns when one fails; it then restarts the actor from the state the
//! store committed and points the routing table at the new actor. Parked
//! callers of the failed actor see their reply port close and are re-parked
//! by the facade on the new actor; no other process is touched.
//!
//! Creation is serialized here so that two racing registrations of one id
//! end in one actor and one record. The supervisor also owns the session
//! grant index ([`GrantIndex`]), since grants relate sessions to many
//! processes and belong to no single process actor.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::messages::{ProcessMsg, SupervisorMsg};
use super::process::{ProcessActor, ProcessActorArgs};
use super::routes::ProcessEntry;
use super::Shared;
use crate::error::RegistryError;
use crate::model::{ProcessHandleGrant, ProcessRecord, ProcessSessionDeleteReport, SessionScope};
use crate::rules::grants::GrantIndex;
use crate::rules::registration::PreparedRegistration;
use crate::store::{GrantChange, ProcessChange, ProcessState, StoredProcess};

/// The supervisor actor.
#[derive(Debug)]
pub struct RegistrySupervisor {
    pub(crate) shared: Arc<Shared>,
}

/// The supervisor's state.
#[derive(Debug, Default)]
pub struct SupervisorState {
    grants: GrantIndex,
    children: HashMap<ActorId, String>,
}

impl Actor for RegistrySupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<Self::Msg>, (): ()) -> Result<Self::State, ActorProcessingErr> {
        let mut state = SupervisorState::default();
        let recovered = self.shared.store.recover().await?;
        for stored in recovered.processes {
            self.shared.counters.count_status(&stored.record.status);
            let process_id = stored.record.id.clone();
            let snapshot = Arc::new(ArcSwap::new(Arc::clone(&stored.record)));
            let actor = self.spawn_process(&myself, stored, Arc::clone(&snapshot)).await?;
            state.children.insert(actor.get_id(), process_id.clone());
            self.shared.routes.insert(process_id, ProcessEntry { actor, record: snapshot });
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
            SupervisorMsg::Register { prepared, reply } => {
                let _ = reply.send(self.register(&myself, state, *prepared).await);
            }
            SupervisorMsg::Grant { scope, process_id, descriptor, reply } => {
                let result = if self.shared.routes.contains(&process_id) {
                    let change = GrantChange::Granted {
                        scope: scope.clone(),
                        process_id: process_id.clone(),
                        descriptor: descriptor.clone(),
                    };
                    match self.shared.store.commit_grant(&change).await {
                        Ok(()) => Ok(state.grants.grant(&scope, &process_id, descriptor)),
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
                let Some(process_id) = state.children.remove(&cell.get_id()) else {
                    return Ok(());
                };
                // A failed actor never ran post_stop.
                self.shared.counters.actor_stopped();
                if self.shared.is_stopping() {
                    return Ok(());
                }
                tracing::warn!(process_id = %process_id, %reason, "process actor failed; restarting from committed state");
                self.restart(&myself, state, &process_id).await?;
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.children.remove(&cell.get_id());
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
        }
        Ok(())
    }
}

impl RegistrySupervisor {
    async fn spawn_process(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        stored: StoredProcess,
        snapshot: Arc<ArcSwap<ProcessRecord>>,
    ) -> Result<ActorRef<ProcessMsg>, ActorProcessingErr> {
        let schemas = self
            .shared
            .schemas
            .compile_all(&stored.record.event_types)
            .map_err(|(name, reason)| format!("stored schema of `{name}` no longer compiles: {reason}"))?;
        let args = ProcessActorArgs { state: ProcessState::from_stored(stored), schemas, snapshot };
        let actor = ProcessActor { shared: Arc::clone(&self.shared) };
        let (actor_ref, _join) = Actor::spawn_linked(None, actor, args, myself.get_cell()).await?;
        Ok(actor_ref)
    }

    async fn register(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        prepared: PreparedRegistration,
    ) -> Result<ProcessRecord, RegistryError> {
        let process_id = prepared.registration.id.clone();
        if let Some(existing) = self.shared.routes.record(&process_id) {
            return same_registration(&existing, &prepared.hash);
        }
        let record = Arc::new(prepared.new_record(self.shared.now_ms()));
        self.shared
            .store
            .commit_process(&process_id, &ProcessChange::Registered { record: Arc::clone(&record) })
            .await?;
        let snapshot = Arc::new(ArcSwap::new(Arc::clone(&record)));
        let args = ProcessActorArgs {
            state: ProcessState::from_stored(StoredProcess::new(Arc::clone(&record))),
            schemas: prepared.schemas,
            snapshot: Arc::clone(&snapshot),
        };
        let actor = ProcessActor { shared: Arc::clone(&self.shared) };
        let (actor_ref, _join) =
            Actor::spawn_linked(None, actor, args, myself.get_cell()).await.map_err(|err| RegistryError::Storage {
                process_id: process_id.clone(),
                message: format!("could not start the process actor: {err}"),
            })?;
        state.children.insert(actor_ref.get_id(), process_id.clone());
        self.shared.counters.count_status(&record.status);
        self.shared.routes.insert(process_id, ProcessEntry { actor: actor_ref, record: snapshot });
        Ok(ProcessRecord::clone(&record))
    }

    async fn restart(
        &self,
        myself: &ActorRef<SupervisorMsg>,
        state: &mut SupervisorState,
        process_id: &str,
    ) -> Result<(), ActorProcessingErr> {
        let Some(stored) = self.shared.store.load_process(process_id).await? else {
            return Err(format!("process `{process_id}` vanished from the store").into());
        };
        let Some(snapshot) = self.shared.routes.snapshot_handle(process_id) else {
            return Err(format!("process `{process_id}` has no route").into());
        };
        let actor = self.spawn_process(myself, stored, snapshot).await?;
        state.children.insert(actor.get_id(), process_id.to_owned());
        self.shared.routes.set_actor(process_id, actor);
        self.shared.counters.restarted();
        Ok(())
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
        self.shared
            .store
            .commit_grant(&GrantChange::Revoked { scope_id: scope_id.0.clone(), process_id: process_id.to_owned() })
            .await?;
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
        for process_id in process_ids {
            let descriptor = state
                .grants
                .grants_of_scope(&from_id)
                .into_iter()
                .find(|grant| &grant.process_id == process_id)
                .map(|grant| grant.descriptor)
                .unwrap_or_default();
            self.shared
                .store
                .commit_grant(&GrantChange::Revoked { scope_id: from_id.0.clone(), process_id: process_id.clone() })
                .await?;
            self.shared
                .store
                .commit_grant(&GrantChange::Granted { scope: to.clone(), process_id: process_id.clone(), descriptor })
                .await?;
        }
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
        let scoped: Vec<(String, ProcessHandleGrant)> = state
            .grants
            .iter()
            .filter(|(_, grant_session, _, _)| *grant_session == session_id)
            .map(|(scope_id, grant_session, process_id, descriptor)| {
                (
                    scope_id.0.clone(),
                    ProcessHandleGrant {
                        session_id: grant_session.to_owned(),
                        process_id: process_id.to_owned(),
                        descriptor: descriptor.clone(),
                    },
                )
            })
            .collect();
        for (scope_id, grant) in &scoped {
            self.shared
                .store
                .commit_grant(&GrantChange::Revoked {
                    scope_id: scope_id.clone(),
                    process_id: grant.process_id.clone(),
                })
                .await?;
        }
        let revoked = state.grants.revoke_session(&session_id);
        let mut report = ProcessSessionDeleteReport {
            session_id,
            revoked_handle_count: revoked.revoked,
            ..ProcessSessionDeleteReport::default()
        };
        for process_id in revoked.affected {
            let live = self.shared.routes.record(&process_id).is_some_and(|record| !record.is_terminal());
            if !live {
                continue;
            }
            if state.grants.is_granted_anywhere(&process_id) {
                report.preserved_process_ids.push(process_id);
            } else {
                report.orphaned_process_ids.push(process_id);
            }
        }
        Ok(report)
    }
}

/// The existing record when `hash` matches its registration, else a conflict.
pub(crate) fn same_registration(existing: &ProcessRecord, hash: &str) -> Result<ProcessRecord, RegistryError> {
    if existing.registration_hash == hash {
        Ok(existing.clone())
    } else {
        Err(RegistryError::RegistrationConflict {
            process_id: existing.id.clone(),
            existing_hash: existing.registration_hash.clone(),
            requested_hash: hash.to_owned(),
        })
    }
}
