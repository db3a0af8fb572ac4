//! [`ProcessWorker`]: the recovery loop every user of leases would
//! otherwise write by hand.
//!
//! A worker takes `list_non_terminal` as its worklist, claims each
//! process's lease (free, expired, or its own from before a crash), runs
//! the handler registered for the process's definition in a task of its
//! own, renews the lease beside it, completes the process through the
//! fenced completion and releases the lease. It uses the registry only
//! through its public traits ([`ProcessRegistry`](crate::ProcessRegistry)
//! and [`FencedProcessRegistry`]), so it runs on any registry and store.
//!
//! Who owns what:
//!
//! - the **sweep task** owns the worklist: it sweeps at start, every
//!   `sweep_interval`, and promptly after a registration on the same
//!   registry ([`FencedProcessRegistry::registration_notices`]); it claims
//!   only while a concurrency permit is free, so claimed processes never
//!   wait for a slot;
//! - each **run task** owns one claimed process (its lease, its handler
//!   task and its renewals; see `run`);
//! - [`ProcessWorker`] owns the tokens that stop both: `shutdown` stops
//!   claiming and lets handlers finish until its deadline; dropping the
//!   worker is a crash (everything stops at once, leases are not
//!   released and expire after their ttl).
//!
//! Exactly once: a process's handler runs under exactly one live lease at a
//! time, and every write it makes through its [`ProcessContext`] is fenced
//! by that lease. A handler whose lease was lost is cancelled (its token
//! fires, then its future is dropped after `cancel_grace`), and whatever it
//! still tries to write is refused with [`RegistryError::LeaseFenced`].
//! Tasks a handler spawns are its own: the worker stops the handler's
//! future (its task is aborted), not what it spawned. Such a task should
//! watch [`ProcessContext::cancelled`], which fires when its attempt ends
//! (or the run is cancelled); until the lease is lost its writes through a
//! context clone are still accepted, fenced by the run's lease.
//! Steps a handler records with replay keys survive a crash of its worker:
//! [`ProcessContext::recorded`] tells the next run which are done.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod config;
mod context;
mod run;
mod stats;

pub use self::config::{HandlerPolicy, WorkerConfig, MAX_LEASE_TTL};
pub use self::context::ProcessContext;
pub use self::stats::WorkerStats;

use self::stats::{bump, Counters};
use crate::error::RegistryError;
use crate::events::ProcessAwaitOutput;
use crate::fenced::FencedProcessRegistry;
use crate::model::{ProcessInput, ProcessLeaseCompletion, ProcessRecord};

/// A handler's future, with its error already a message.
type HandlerFuture = Pin<Box<dyn Future<Output = Result<ProcessAwaitOutput, String>> + Send>>;
/// A handler, type-erased.
type Handler = Arc<dyn Fn(ProcessContext) -> HandlerFuture + Send + Sync>;

/// A handler and its failure policy.
struct Registered {
    handler: Handler,
    policy: HandlerPolicy,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// What the sweep task, the run tasks and the handle share.
struct WorkerShared {
    registry: Arc<dyn FencedProcessRegistry>,
    config: WorkerConfig,
    handlers: HashMap<String, Arc<Registered>>,
    counters: Counters,
    /// Processes with a run task here: never claimed twice by this worker.
    running: Mutex<HashSet<String>>,
    permits: Arc<Semaphore>,
    /// `shutdown` was called: claim nothing more.
    stop_claiming: CancellationToken,
    /// `shutdown`'s deadline passed: cancel every handler now.
    hard_stop: CancellationToken,
    /// The worker was dropped: stop everything, release nothing.
    crashed: CancellationToken,
    /// Asks the sweep task for a sweep now.
    sweep_now: Notify,
    tasks: TaskTracker,
}

impl std::fmt::Debug for WorkerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerShared")
            .field("config", &self.config)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ProcessWorker`]: its configuration and one handler per
/// definition name.
pub struct WorkerBuilder {
    registry: Arc<dyn FencedProcessRegistry>,
    config: WorkerConfig,
    handlers: HashMap<String, Arc<Registered>>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("config", &self.config)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Runs `handler` for every process whose input is the definition
    /// `definition` ([`ProcessInput::Definition`]), once per claim; an error
    /// or a panic fails the process ([`HandlerPolicy::default`]). A second
    /// handler for the same name replaces the first.
    #[must_use]
    pub fn handler<F, Fut, E>(self, definition: impl Into<String>, handler: F) -> Self
    where
        F: Fn(ProcessContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ProcessAwaitOutput, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        self.handler_with_policy(definition, HandlerPolicy::default(), handler)
    }

    /// As [`Self::handler`], with `policy` deciding what an error or a
    /// panic leads to.
    #[must_use]
    pub fn handler_with_policy<F, Fut, E>(
        mut self,
        definition: impl Into<String>,
        policy: HandlerPolicy,
        handler: F,
    ) -> Self
    where
        F: Fn(ProcessContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ProcessAwaitOutput, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        let handler: Handler = Arc::new(move |context| {
            let run = handler(context);
            Box::pin(async move { run.await.map_err(|error| error.to_string()) })
        });
        self.handlers.insert(definition.into(), Arc::new(Registered { handler, policy }));
        self
    }

    /// Starts the worker: its first sweep begins at once.
    ///
    /// Errors: [`RegistryError::InvalidConfig`] for a configuration out of
    /// bounds, no handler, or no tokio runtime to run on (call it from
    /// within one). Nothing is claimed before it returns `Ok`.
    pub fn start(self) -> Result<ProcessWorker, RegistryError> {
        self.config.validate(self.handlers.iter().map(|(name, registered)| (name.as_str(), &registered.policy)))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| RegistryError::InvalidConfig {
            reason: "a worker starts inside a tokio runtime (call start from a task or within block_on)".to_owned(),
        })?;
        let shared = Arc::new(WorkerShared {
            permits: Arc::new(Semaphore::new(self.config.concurrency)),
            registry: self.registry,
            config: self.config,
            handlers: self.handlers,
            counters: Counters::default(),
            running: Mutex::new(HashSet::new()),
            stop_claiming: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            crashed: CancellationToken::new(),
            sweep_now: Notify::new(),
            tasks: TaskTracker::new(),
        });
        let sweeper = runtime.spawn(sweep_loop(Arc::clone(&shared)));
        Ok(ProcessWorker { shared, sweeper: Some(sweeper) })
    }
}

/// A running worker (see the module docs). Dropping it without
/// [`Self::shutdown`] is a crash: every task stops at once and leases
/// expire after their ttl.
#[derive(Debug)]
pub struct ProcessWorker {
    shared: Arc<WorkerShared>,
    sweeper: Option<JoinHandle<()>>,
}

impl ProcessWorker {
    /// A builder over `registry` with `config`; add handlers, then
    /// [`WorkerBuilder::start`].
    pub fn builder(registry: Arc<dyn FencedProcessRegistry>, config: WorkerConfig) -> WorkerBuilder {
        WorkerBuilder { registry, config, handlers: HashMap::new() }
    }

    /// The lease owner id.
    pub fn owner_id(&self) -> &str {
        &self.shared.config.owner_id
    }

    /// A snapshot of the counters. Waits on nothing; O(quarantined).
    pub fn stats(&self) -> WorkerStats {
        self.shared.counters.snapshot()
    }

    /// Asks for a sweep now instead of at the next interval (coalesced with
    /// one already asked for). Waits on nothing.
    pub fn sweep_now(&self) {
        self.shared.sweep_now.notify_one();
    }

    /// Stops claiming, lets running handlers finish until `deadline` has
    /// passed, then cancels the rest at once (their processes are given
    /// back unfinished: counted `abandoned`), releases every lease still
    /// held, and returns the final counters.
    ///
    /// Parks on: the running handlers, at most `deadline` plus the time
    /// their releases take. Cancel safety: dropping the future is a crash
    /// (as dropping the worker).
    pub async fn shutdown(mut self, deadline: Duration) -> WorkerStats {
        let shared = Arc::clone(&self.shared);
        shared.stop_claiming.cancel();
        if let Some(sweeper) = self.sweeper.take() {
            // It stops at its next wait (a claim in flight finishes first and
            // is given back); a panic in it is already logged.
            let _ = sweeper.await;
        }
        shared.tasks.close();
        if tokio::time::timeout(deadline, shared.tasks.wait()).await.is_err() {
            shared.hard_stop.cancel();
            shared.tasks.wait().await;
        }
        shared.counters.snapshot()
    }
}

impl Drop for ProcessWorker {
    fn drop(&mut self) {
        // `crashed` first: a run task that sees it stops where it is and
        // releases nothing. Then every handler's token fires, so a context
        // clone that escaped its handler sees `cancelled()` too (its writes
        // stay fenced by the lease, which expires after its ttl).
        self.shared.crashed.cancel();
        self.shared.hard_stop.cancel();
        self.shared.stop_claiming.cancel();
        if let Some(sweeper) = self.sweeper.take() {
            sweeper.abort();
        }
    }
}

/// The definition name of `record`, if its input is a definition.
fn definition_of(record: &ProcessRecord) -> Option<&str> {
    match &record.input {
        ProcessInput::Definition { name, .. } => Some(name),
        ProcessInput::External { .. } => None,
    }
}

/// Sweeps at start, then after every interval, registration notice or
/// [`ProcessWorker::sweep_now`], until claiming stops.
async fn sweep_loop(shared: Arc<WorkerShared>) {
    let mut notices = shared.registry.registration_notices();
    loop {
        // Not raced against `stop_claiming`: dropped mid-claim, a sweep
        // would leave a granted lease with no run task to release it (held
        // until its ttl). The sweep watches the token between claims.
        sweep(&shared).await;
        if shared.stop_claiming.is_cancelled() {
            return;
        }
        tokio::select! {
            biased;
            () = shared.stop_claiming.cancelled() => return,
            () = shared.sweep_now.notified() => {}
            () = registered(&mut notices) => {}
            () = tokio::time::sleep(shared.config.sweep_interval) => {}
        }
    }
}

/// Resolves after the next registration; never when the registry gives no
/// notices (or has shut down).
async fn registered(notices: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(receiver) = notices {
        if receiver.changed().await.is_ok() {
            return;
        }
        *notices = None;
    }
    std::future::pending::<()>().await;
}

/// Where in the worklist this worker starts: workers sharing a registry
/// start at different places, so they do not all race for the same first
/// processes.
fn start_offset(owner_id: &str, len: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    owner_id.hash(&mut hasher);
    usize::try_from(hasher.finish()).unwrap_or(0).checked_rem(len).unwrap_or(0)
}

/// One pass over the worklist: for every process this worker has a handler
/// for and does not run yet, wait for a concurrency permit, claim the
/// lease, and spawn its run task.
async fn sweep(shared: &Arc<WorkerShared>) {
    bump(&shared.counters.sweeps);
    let listed = tokio::select! {
        biased;
        () = shared.stop_claiming.cancelled() => return,
        listed = shared.registry.list_non_terminal() => listed,
    };
    let worklist = match listed {
        Ok(worklist) => worklist,
        Err(error) => {
            tracing::warn!(%error, "listing the worklist failed; trying again at the next sweep");
            return;
        }
    };
    let offset = start_offset(&shared.config.owner_id, worklist.len());
    let (before, after) = worklist.split_at(offset.min(worklist.len()));
    for record in after.iter().chain(before) {
        let Some(registered) = definition_of(record).and_then(|name| shared.handlers.get(name)) else {
            continue;
        };
        if shared.running.lock().unwrap_or_else(PoisonError::into_inner).contains(&record.id) {
            continue;
        }
        let permit = tokio::select! {
            biased;
            () = shared.stop_claiming.cancelled() => return,
            permit = Arc::clone(&shared.permits).acquire_owned() => permit,
        };
        let Ok(permit) = permit else {
            return;
        };
        if shared.stop_claiming.is_cancelled() {
            return;
        }
        match shared
            .registry
            .claim_process_lease(&record.id, &shared.config.owner_id, shared.config.lease_ttl_ms())
            .await
        {
            // Shutdown began while the claim was in flight: give it back.
            Ok(lease) if shared.stop_claiming.is_cancelled() => {
                let completion = ProcessLeaseCompletion::from_lease(&lease);
                if let Err(error) = shared.registry.complete_process_lease(&completion).await {
                    tracing::debug!(process_id = %record.id, %error, "releasing the lease failed; it expires after its ttl");
                }
                return;
            }
            Ok(lease) => {
                bump(&shared.counters.claimed);
                shared.counters.claimed_again(&record.id);
                // The record as it is now, not as listed.
                let record = shared.registry.get_process(&record.id).await.unwrap_or_else(|| record.clone());
                shared.running.lock().unwrap_or_else(PoisonError::into_inner).insert(record.id.clone());
                shared.counters.running.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shared.tasks.spawn(run::run_process(Arc::clone(shared), Arc::clone(registered), record, lease, permit));
            }
            // Someone else's, finished meanwhile, or gone: not ours to run.
            Err(
                RegistryError::LeaseHeld { .. }
                | RegistryError::AlreadyTerminal { .. }
                | RegistryError::UnknownProcess { .. },
            ) => {}
            Err(RegistryError::Quarantined { .. }) => shared.counters.quarantine(&record.id),
            Err(RegistryError::Stopped { .. }) => return,
            Err(error) => tracing::warn!(process_id = %record.id, %error, "claiming a lease failed"),
        }
    }
}
