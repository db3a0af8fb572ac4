//! [`ActorProcessRegistry`]: the handle users hold, and its lifecycle.
//!
//! `start` creates the shared state, spawns the supervisor (which routes
//! every process the store already holds, as passive) and the passivation
//! sweeper; `shutdown` stops them and fails every parked caller; `stats`
//! reads the counters. The trait itself is implemented in the facade, and
//! the machinery that carries each call to an actor in `call`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorRef};
use tokio::sync::Mutex;

use super::config::RegistryConfig;
use super::shared::Shared;
use super::stats::RegistryStats;
use super::supervisor::messages::SupervisorMsg;
use super::supervisor::RegistrySupervisor;
use crate::error::RegistryError;

/// How long shutdown waits for actors to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The process registry on per-process actors. Cheap to clone: clones share
/// one registry.
///
/// Call it from tasks on the tokio runtime it was started on
/// (`tokio::spawn`): a caller outside the runtime's workers (a thread in
/// `block_on`) pays a thread wake-up per message. Dropping the last clone
/// without [`shutdown`](Self::shutdown) still stops every actor.
///
/// A process whose actor keeps crashing is quarantined: its committed state
/// stays readable, mutations and waits get
/// [`RegistryError::Quarantined`], and `list_non_terminal` leaves it out
/// until [`release_quarantine`](Self::release_quarantine) (see
/// [`RegistryStats::quarantined`] for what workers and operators do).
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
    /// With a shared store: hands notices of other nodes' commits to the
    /// actors they concern; aborted at shutdown.
    notices: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Inner {
    /// A registry dropped without `shutdown()` still stops its actors.
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(sweeper) = &self.sweeper {
            sweeper.abort();
        }
        if let Some(notices) = &self.notices {
            notices.abort();
        }
        self.supervisor.stop_children(None);
        self.supervisor.stop(None);
    }
}

/// Why the supervisor did not start: the store's own error when recovery
/// failed (a file that cannot be read stays `StoreOpen`), else `Storage`.
fn startup_error(error: ractor::SpawnErr) -> RegistryError {
    let cause = match error {
        ractor::SpawnErr::StartupFailed(cause) => match cause.downcast::<RegistryError>() {
            Ok(error) => return *error,
            Err(cause) => cause.to_string(),
        },
        other => other.to_string(),
    };
    RegistryError::Storage {
        process_id: String::new(),
        message: format!("could not start the registry supervisor: {cause}"),
    }
}

/// Hands each notice of a shared store to the actors it concerns: a
/// process changed elsewhere gets [`ProcessMsg::Refresh`] when this node
/// runs its actor (parked waiters live only in running actors; a passive
/// process is read afresh when activated), an id this node has not routed
/// is a registration elsewhere (workers are told, as for a local one), and
/// after the notice stream reconnects every running actor checks again.
async fn forward_notices(shared: Arc<Shared>, mut notices: tokio::sync::mpsc::UnboundedReceiver<crate::store::Notice>) {
    use super::process::messages::ProcessMsg;
    use super::routes::Slot;
    let registered = |shared: &Shared| shared.registrations.send_modify(|count| *count = count.wrapping_add(1));
    while let Some(notice) = notices.recv().await {
        match notice {
            crate::store::Notice::Changed(process_ids) => {
                let mut unknown = false;
                for process_id in &process_ids {
                    match shared.routes.slot(process_id) {
                        Some(Slot::Active(active)) => {
                            let _ = active.actor.send_message(ProcessMsg::Refresh { retried: false });
                        }
                        Some(Slot::Passive | Slot::Quarantined(_)) => {}
                        None => unknown = true,
                    }
                }
                if unknown {
                    registered(&shared);
                }
            }
            crate::store::Notice::Reconnected => {
                for actor in shared.routes.active_actors() {
                    let _ = actor.send_message(ProcessMsg::Refresh { retried: false });
                }
                registered(&shared);
            }
        }
    }
}

impl ActorProcessRegistry {
    /// Starts a registry on `config.store`: the supervisor routes every
    /// process the store already holds (as passive: their actors start on
    /// first use), and a sweeper ticks passivation when it is enabled.
    ///
    /// Must run inside a tokio runtime. Waits on: the store's `recover`.
    /// Cost: O(stored processes + grants). Errors: `InvalidConfig` for a
    /// configuration out of the bounds [`RegistryConfig`] lists (nothing is
    /// started), the store's own when it cannot be read (`StoreOpen` for an
    /// unreadable SQLite file), `Storage` when the supervisor cannot start.
    /// Cancel safety: a dropped `start` leaves no registry behind.
    pub async fn start(config: RegistryConfig) -> Result<Self, RegistryError> {
        config.validate()?;
        let shared = Arc::new(Shared::new(config));
        let supervisor = RegistrySupervisor { shared: Arc::clone(&shared) };
        let (supervisor, task) = Actor::spawn(None, supervisor, ()).await.map_err(startup_error)?;
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
        let notices = shared
            .store
            .shared()
            .and_then(|store| store.notices())
            .map(|notices| tokio::spawn(forward_notices(Arc::clone(&shared), notices)));
        Ok(Self {
            inner: Arc::new(Inner { shared, supervisor, supervisor_task: Mutex::new(Some(task)), sweeper, notices }),
        })
    }

    /// Opens (or creates) the durable SQLite store at `path` with default
    /// [`SqliteOptions`](crate::SqliteOptions) (fsync every commit, group
    /// commit) and starts a registry on it; `config.store` is replaced.
    /// Every process the file holds is routed as passive; their logs are
    /// read when they are first used.
    ///
    /// Errors: those of [`SqliteStore::open`](crate::SqliteStore::open)
    /// (another registry holds the file, an unknown schema version, not a
    /// database) and of [`Self::start`].
    pub async fn open(path: impl AsRef<std::path::Path>, config: RegistryConfig) -> Result<Self, RegistryError> {
        Self::open_with(path, crate::SqliteOptions::default(), config).await
    }

    /// [`Self::open`] with explicit store options.
    pub async fn open_with(
        path: impl AsRef<std::path::Path>,
        options: crate::SqliteOptions,
        config: RegistryConfig,
    ) -> Result<Self, RegistryError> {
        let path = path.as_ref().to_owned();
        let store = tokio::task::spawn_blocking(move || crate::SqliteStore::open(path, options))
            .await
            .map_err(|error| RegistryError::Storage { process_id: String::new(), message: error.to_string() })??;
        Self::start(config.with_store(Arc::new(store))).await
    }

    /// Connects to the PostgreSQL database `url` names with default
    /// [`PostgresOptions`](crate::PostgresOptions) and starts a registry
    /// node on it (feature `postgres`); `config.store` is replaced. Every
    /// node connected to the same database is one registry: see
    /// [`PostgresStore`](crate::PostgresStore) for what holds across
    /// nodes and what each call costs.
    ///
    /// Waits on: connecting, the schema migration (under an advisory lock
    /// other nodes may hold a moment), and reading every record and grant.
    /// Errors: those of [`PostgresStore::connect`](crate::PostgresStore::connect)
    /// and of [`Self::start`].
    #[cfg(feature = "postgres")]
    pub async fn connect(url: &str, config: RegistryConfig) -> Result<Self, RegistryError> {
        Self::connect_with(url, crate::PostgresOptions::default(), config).await
    }

    /// [`Self::connect`] with explicit store options.
    #[cfg(feature = "postgres")]
    pub async fn connect_with(
        url: &str,
        options: crate::PostgresOptions,
        config: RegistryConfig,
    ) -> Result<Self, RegistryError> {
        let store = crate::PostgresStore::connect(url, options).await?;
        Self::start(config.with_store(Arc::new(store))).await
    }

    /// Stops every actor. Parked callers, calls in flight and later calls
    /// get [`RegistryError::Stopped`]; reads of published records
    /// (`get_process`, `list_processes`, `list_non_terminal`) keep answering
    /// from the last snapshots, and on the memory store so do the reads of
    /// event logs (they never needed an actor). Idempotent.
    ///
    /// Waits on: every actor stopping, at most 5 s each for the process
    /// actors and the supervisor. Cancel safety: the stop is already under
    /// way when the future is dropped; later calls still get `Stopped`.
    pub async fn shutdown(&self) {
        let shared = &self.inner.shared;
        shared.stopping.store(true, Ordering::Release);
        if let Some(sweeper) = &self.inner.sweeper {
            sweeper.abort();
        }
        if let Some(notices) = &self.inner.notices {
            notices.abort();
        }
        let supervisor = &self.inner.supervisor;
        // Every process actor is linked to the supervisor: this stops them all.
        supervisor.stop_children_and_wait(None, Some(SHUTDOWN_GRACE)).await;
        let _ = supervisor.stop_and_wait(None, Some(SHUTDOWN_GRACE)).await;
        if let Some(task) = self.inner.supervisor_task.lock().await.take() {
            let _ = task.await;
        }
        // Every actor is gone: flush and release the store.
        if let Err(error) = shared.store.close().await {
            tracing::error!(%error, "closing the store failed");
        }
    }

    /// Counters for dashboards. Waits on nothing: atomic reads, O(1) (plus
    /// a copy of the quarantined ids).
    pub fn stats(&self) -> RegistryStats {
        self.inner.shared.counters.snapshot()
    }

    /// Lifts the quarantine of `process_id` (see
    /// [`RegistryStats::quarantined`]): the process becomes passive, with
    /// its committed state as it was and no failure remembered, so the
    /// restart intensity counts afresh; its next call starts an actor, and
    /// it is back on the `list_non_terminal` worklist (when it is not
    /// terminal). Meant for an operator who has looked at why it crashed.
    ///
    /// Waits on: one message to the supervisor, behind the calls it is
    /// handling. Cost: O(1). Errors: `UnknownProcess` for an unknown id,
    /// `NotQuarantined` when the process is not quarantined (nothing
    /// changes; a caller repeating a release may treat it as done),
    /// `Stopped` after shutdown. Cancel safety: a dropped future leaves the
    /// release either done or not started, never half done.
    pub async fn release_quarantine(&self, process_id: &str) -> Result<(), RegistryError> {
        self.ask_supervisor(process_id, |reply| SupervisorMsg::ReleaseQuarantine {
            process_id: process_id.to_owned(),
            reply,
        })
        .await
    }

    /// Makes the process's actor panic, to exercise supervision.
    #[cfg(feature = "fault-injection")]
    pub async fn inject_panic(&self, process_id: &str) -> Result<(), RegistryError> {
        let active = self.active(process_id).await?;
        active
            .actor
            .send_message(super::process::messages::ProcessMsg::InjectPanic)
            .map_err(|_| RegistryError::stopped(process_id))
    }

    /// Asks every actor idle for the configured time (by the registry clock)
    /// to passivate now, instead of at the next periodic sweep. Returns at
    /// once; the actors passivate asynchronously.
    pub fn passivate_idle(&self) {
        let _ = self.inner.supervisor.send_message(SupervisorMsg::Sweep);
    }

    /// What every actor and the facade share.
    pub(super) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The supervisor actor.
    pub(super) fn supervisor(&self) -> &ActorRef<SupervisorMsg> {
        &self.inner.supervisor
    }
}
