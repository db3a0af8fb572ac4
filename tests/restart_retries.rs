//! What a call in flight gets when its process actor crashes: reads, waits
//! and idempotent mutations are carried to the replacement actor, however
//! long the supervisor takes to start it; only calls whose effect may have
//! been lost with the actor report `ProcessRestarted`; shutdown ends every
//! wait with `Stopped`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use process_registry::runtime::RestartIntensity;
use process_registry::store::{Commit, CommitCallback, CommitResult, ProcessChange, Recovered, StoredProcess};
use process_registry::testing::until;
use process_registry::{
    ActorProcessRegistry, DurabilityTier, MemoryStore, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType,
    ProcessExternalRef, ProcessInput, ProcessLeaseCompletion, ProcessListFilter, ProcessRegistration, ProcessRegistry,
    ProcessStatusFilter, ProcessStore, ProcessValueSelector, ProcessWakeSpec, RegistryConfig, RegistryError,
};
use serde_json::json;
use tokio::sync::Semaphore;

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new())).with_extra_event_types(vec![
        ProcessEventType::new("tick", json!({"type": "object"})),
        ProcessEventType::new("poke", json!({"type": "object"}))
            .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Const(json!("poked")))),
    ])
}

fn tick() -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("tick", json!({}))
}

/// Never quarantines: these tests crash one process many times.
fn never_quarantine() -> RestartIntensity {
    RestartIntensity { max_restarts: usize::MAX, within_ms: 1 }
}

/// A memory store whose `load_process` of one id blocks until the test
/// opens the gate: while it blocks, the supervisor (which loads a process
/// to start its actor) handles nothing else, restarts included.
#[derive(Debug)]
struct GatedStore {
    inner: MemoryStore,
    gated_id: String,
    /// Closed semaphore = open gate: `acquire` then fails at once.
    gate: Semaphore,
    entered: AtomicU64,
}

impl GatedStore {
    fn new(gated_id: &str) -> Self {
        Self {
            inner: MemoryStore::new(),
            gated_id: gated_id.to_owned(),
            gate: Semaphore::new(0),
            entered: AtomicU64::new(0),
        }
    }

    fn open(&self) {
        self.gate.close();
    }

    fn loads_waiting(&self) -> u64 {
        self.entered.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ProcessStore for GatedStore {
    fn durability_tier(&self) -> DurabilityTier {
        self.inner.durability_tier()
    }

    async fn recover(&self) -> Result<Recovered, RegistryError> {
        self.inner.recover().await
    }

    async fn load_process(&self, process_id: &str) -> Result<Option<StoredProcess>, RegistryError> {
        if process_id == self.gated_id {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let _closed = self.gate.acquire().await;
        }
        self.inner.load_process(process_id).await
    }

    fn submit(&self, commit: Commit, later: CommitCallback) -> Option<CommitResult> {
        self.inner.submit(commit, later)
    }

    fn commit_inline(&self, process_id: &str, changes: &[ProcessChange]) -> Option<CommitResult> {
        self.inner.commit_inline(process_id, changes)
    }
}

/// A registry on a [`GatedStore`] where `p`'s actor has crashed while the
/// supervisor is stuck loading `slow`: `p`'s slot still names the dead
/// actor, whose mailbox refuses every message, and nothing replaces it until
/// the gate opens. Returns the registry, the store and `p`'s parked waiter.
async fn crashed_behind_a_stuck_supervisor() -> (
    ActorProcessRegistry,
    Arc<GatedStore>,
    tokio::task::JoinHandle<Result<process_registry::ProcessEvent, RegistryError>>,
) {
    let store = Arc::new(GatedStore::new("slow"));
    let config = RegistryConfig::default()
        .with_store(store.clone())
        .with_passivation(None)
        .with_restart_intensity(never_quarantine())
        // `slow` must start passive, so that its first call loads it.
        .with_ready_on_register(0);
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    registry.register_process(registration("slow")).await.unwrap();
    assert_eq!(registry.append_event("p", tick()).await.unwrap().event.sequence, 1);
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.wait_event_after("p", "tick", 1).await })
    };
    until(|| registry.stats().parked_waiters == 1).await;
    {
        let registry = registry.clone();
        tokio::spawn(async move { registry.events_after("slow", 0).await });
    }
    until(|| store.loads_waiting() == 1).await;
    registry.inject_panic("p").await.unwrap();
    // The dead actor's parked waiters are dropped with it: it is gone.
    until(|| registry.stats().parked_waiters == 0).await;
    assert_eq!(registry.stats().restarts, 0, "the supervisor has not handled the crash yet");
    (registry, store, waiter)
}

// Paused time: the runtime jumps the clock forward whenever every task
// waits, so "an hour" of a stuck supervisor passes at once, and a retry
// budget counted in sleeps would run out long before it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_call_that_never_reached_a_crashed_actor_waits_for_its_replacement_however_slow_the_supervisor() {
    let (registry, store, waiter) = crashed_behind_a_stuck_supervisor().await;
    let appends: Vec<_> = (0..16)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.append_event("p", tick()).await })
        })
        .collect();
    let reads: Vec<_> = (0..16)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.count_events_through("p", "tick", 1).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    store.open();

    let mut sequences = Vec::new();
    for append in appends {
        sequences
            .push(append.await.unwrap().expect("a never-delivered append is sent to the new actor").event.sequence);
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (2..=17).collect::<Vec<u64>>());
    for read in reads {
        assert_eq!(read.await.unwrap().expect("a read waits for the new actor"), 1);
    }
    assert_eq!(waiter.await.unwrap().expect("the waiter re-parks on the new actor").sequence, 2);
    assert_eq!(registry.stats().restarts, 1);
    registry.shutdown().await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn calls_waiting_for_a_replacement_actor_get_stopped_at_shutdown() {
    let (registry, store, waiter) = crashed_behind_a_stuck_supervisor().await;
    let appends: Vec<_> = (0..8)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.append_event("p", tick()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    let shutdown = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.shutdown().await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    store.open();
    shutdown.await.unwrap();
    for append in appends {
        let result = append.await.unwrap();
        assert!(matches!(result, Err(RegistryError::Stopped { .. })), "{result:?}");
    }
    let waited = waiter.await.unwrap();
    assert!(matches!(waited, Err(RegistryError::Stopped { .. })), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_mutations_in_flight_when_the_actor_crashes_are_retried_not_reported_as_restarted() {
    const WAKES: u64 = 64;
    const CRASHES: u64 = 40;
    let config = RegistryConfig::default().with_passivation(None).with_restart_intensity(never_quarantine());
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    for _ in 0..WAKES {
        registry.append_event("p", ProcessEventAppendRequest::new("poke", json!({}))).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let spawn_loop = |body: fn(ActorProcessRegistry, u64) -> futures_like::BoxFuture| {
        let (registry, stop, calls) = (registry.clone(), stop.clone(), calls.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                body(registry.clone(), n).await;
                calls.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let loops = vec![
        spawn_loop(|registry, n| {
            Box::pin(async move {
                let acked = registry.ack_wake("p", 1 + n % WAKES).await;
                assert!(acked.is_ok(), "ack_wake: {acked:?}");
            })
        }),
        spawn_loop(|registry, n| {
            Box::pin(async move {
                let external = ProcessExternalRef { backend: "queue".into(), id: n.to_string(), metadata: None };
                let record = registry.set_external_ref("p", external.clone()).await;
                assert_eq!(record.expect("set_external_ref").external_ref, Some(external));
            })
        }),
        spawn_loop(|registry, _| {
            Box::pin(async move {
                let record = registry.clear_process_wait("p").await;
                assert_eq!(record.expect("clear_process_wait").wait, None);
            })
        }),
        spawn_loop(|registry, _| {
            Box::pin(async move {
                // Claiming is not idempotent (each claim takes a new
                // fencing token), so a crash may refuse it; releasing is.
                let lease = match registry.claim_process_lease("p", "worker", 60_000).await {
                    Ok(lease) => lease,
                    Err(RegistryError::ProcessRestarted { .. }) => return,
                    Err(other) => panic!("claim: {other:?}"),
                };
                let released = registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await;
                assert!(released.is_ok(), "complete_process_lease: {released:?}");
            })
        }),
        spawn_loop(|registry, n| {
            Box::pin(async move {
                // A replay key makes an append idempotent: it is retried too.
                let request =
                    ProcessEventAppendRequest::new("tick", json!({ "n": n })).with_replay_key(format!("tick-{n}"));
                let appended = registry.append_event("p", request).await;
                assert_eq!(appended.expect("keyed append_event").event.payload, json!({ "n": n }));
            })
        }),
        spawn_loop(|registry, _| {
            Box::pin(async move {
                assert!(registry.events_after("p", 0).await.expect("events_after").len() as u64 >= WAKES);
            })
        }),
    ];
    for crash in 1..=CRASHES {
        registry.inject_panic("p").await.unwrap();
        until(|| registry.stats().restarts >= crash).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in loops {
        task.await.unwrap();
    }
    assert!(calls.load(Ordering::Relaxed) > CRASHES, "calls ran alongside the crashes");
    let ticks: Vec<u64> = registry
        .events_after("p", WAKES)
        .await
        .unwrap()
        .iter()
        .map(|event| event.payload["n"].as_u64().expect("a tick"))
        .collect();
    assert_eq!(ticks, (1..=ticks.len() as u64).collect::<Vec<_>>(), "each keyed append committed exactly once");
    assert_eq!(registry.stats().restarts, CRASHES);
    registry.shutdown().await;
}

/// An empty replay key is no key (spec step 4; it dedupes nothing), so an
/// append carrying one is not idempotent: when its actor crashes with the
/// append's commit in flight (the durable store pipelines commits), the
/// call reports `ProcessRestarted` rather than being sent again, which
/// would commit it a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_with_an_empty_replay_key_is_never_committed_twice_across_crashes() {
    const CRASHES: u64 = 40;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let registry = durable_registry(directory.path(), never_quarantine()).await;
    registry.register_process(registration("p")).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let appenders: Vec<_> = (0..4u64)
        .map(|appender| {
            let (registry, stop) = (registry.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let request = ProcessEventAppendRequest::new("tick", json!({ "appender": appender, "n": n }))
                        .with_replay_key("");
                    match registry.append_event("p", request).await {
                        Ok(_) | Err(RegistryError::ProcessRestarted { .. }) => {}
                        Err(other) => panic!("append_event: {other:?}"),
                    }
                }
            })
        })
        .collect();
    for crash in 1..=CRASHES {
        registry.inject_panic("p").await.unwrap();
        until(|| registry.stats().restarts >= crash).await;
    }
    stop.store(true, Ordering::Relaxed);
    for appender in appenders {
        appender.await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    for event in registry.events_after("p", 0).await.unwrap() {
        let call = (event.payload["appender"].as_u64(), event.payload["n"].as_u64());
        assert!(seen.insert(call), "the append {call:?} was committed twice");
    }
    assert!(seen.len() as u64 > CRASHES, "appends ran alongside the crashes");
    registry.shutdown().await;
}

/// A completion in flight when its actor crashes (the durable store
/// pipelines commits, so it becomes durable after the actor died) is seen
/// by the listings and the counters as by the log: the replacement actor
/// starts from the stored, completed record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_durable_after_its_actor_crashed_is_listed_and_counted() {
    const PROCESSES: usize = 20;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let registry = durable_registry(directory.path(), never_quarantine()).await;
    let ids: Vec<String> = (0..PROCESSES).map(|n| format!("p-{n}")).collect();
    for id in &ids {
        registry.register_process(registration(id)).await.unwrap();
    }
    for (n, id) in ids.iter().enumerate() {
        let completing = complete_then_crash(&registry, id).await;
        until(|| registry.stats().restarts > n as u64).await;
        match completing.await.unwrap() {
            Ok(_) | Err(RegistryError::ProcessRestarted { .. }) => {}
            Err(other) => panic!("complete_process: {other:?}"),
        }
        // Whatever the crash did, the process ends completed (a retry
        // after a lost answer replays the completion).
        registry.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.expect("completed");
    }
    let completed = registry
        .list_processes(&ProcessListFilter { status: ProcessStatusFilter::Completed, ..ProcessListFilter::default() })
        .await
        .unwrap();
    assert_eq!(completed.len(), PROCESSES, "every completed process is listed as completed");
    let running = registry
        .list_processes(&ProcessListFilter { status: ProcessStatusFilter::Running, ..ProcessListFilter::default() })
        .await
        .unwrap();
    assert!(running.is_empty(), "no completed process is listed as running: {running:?}");
    let stats = registry.stats();
    assert_eq!((stats.running, stats.completed), (0, PROCESSES as u64), "{stats:?}");
    registry.shutdown().await;
}

/// The same when the crash quarantines the process: the record it is
/// published with, and the status it is listed under, are those of the
/// stored log, which may hold a completion that became durable after the
/// actor died.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_process_shows_the_completion_its_dead_actor_left_in_flight() {
    const PROCESSES: usize = 20;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let quarantine_at_once = RestartIntensity { max_restarts: 0, within_ms: 60_000 };
    let registry = durable_registry(directory.path(), quarantine_at_once).await;
    let ids: Vec<String> = (0..PROCESSES).map(|n| format!("q-{n}")).collect();
    for id in &ids {
        registry.register_process(registration(id)).await.unwrap();
    }
    for id in &ids {
        let completing = complete_then_crash(&registry, id).await;
        until(|| registry.stats().quarantined.contains(id)).await;
        let _ = completing.await.unwrap();
    }
    let mut completed_in_log = 0;
    for id in &ids {
        let log = registry.events_after(id, 0).await.expect("a quarantined process's log is readable");
        let completed = log.iter().any(|event| event.semantics.terminal.is_some());
        let record = registry.get_process(id).await.expect("registered");
        assert_eq!(record.is_terminal(), completed, "{id}: the record agrees with its log");
        completed_in_log += usize::from(completed);
    }
    let listed = registry
        .list_processes(&ProcessListFilter { status: ProcessStatusFilter::Completed, ..ProcessListFilter::default() })
        .await
        .unwrap();
    assert_eq!(listed.len(), completed_in_log, "listed as completed exactly when the log says so");
    registry.shutdown().await;
}

/// A SQLite registry in `directory` that never passivates, with `intensity`.
async fn durable_registry(directory: &std::path::Path, intensity: RestartIntensity) -> ActorProcessRegistry {
    let config = RegistryConfig::default().with_passivation(None).with_restart_intensity(intensity);
    ActorProcessRegistry::open(directory.join("registry.db"), config).await.expect("open the registry")
}

/// Starts completing `id`, then crashes its actor with a panic queued
/// right behind the completion, handled while its commit is (most of the
/// time) still in flight. The completion's task is returned.
async fn complete_then_crash(
    registry: &ActorProcessRegistry,
    id: &str,
) -> tokio::task::JoinHandle<Result<process_registry::ProcessRecord, RegistryError>> {
    let completing = {
        let (registry, id) = (registry.clone(), id.to_owned());
        tokio::spawn(async move { registry.complete_process(&id, ProcessAwaitOutput::success(json!(1))).await })
    };
    tokio::task::yield_now().await;
    registry.inject_panic(id).await.unwrap();
    completing
}

mod futures_like {
    pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}
