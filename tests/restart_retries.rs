//! What a call in flight gets when its process actor crashes: calls the
//! dead actor never saw, reads and waits are carried to the replacement
//! actor, however long the supervisor takes to start it; shutdown ends
//! every such wait with `Stopped`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use process_registry::runtime::RestartIntensity;
use process_registry::store::{GrantChange, ProcessChange, Recovered, StoredProcess};
use process_registry::{
    ActorProcessRegistry, DurabilityTier, MemoryStore, ProcessEventAppendRequest, ProcessEventType, ProcessInput,
    ProcessRegistration, ProcessRegistry, ProcessStore, ProcessValueSelector, ProcessWakeSpec, RegistryConfig,
    RegistryError,
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

async fn until(mut condition: impl FnMut() -> bool) {
    for _ in 0..5_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition never became true");
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

    async fn commit_process(&self, process_id: &str, change: &ProcessChange) -> Result<(), RegistryError> {
        self.inner.commit_process(process_id, change).await
    }

    async fn commit_grant(&self, change: &GrantChange) -> Result<(), RegistryError> {
        self.inner.commit_grant(change).await
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
        .with_restart_intensity(never_quarantine());
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
