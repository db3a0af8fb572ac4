//! Reads of committed state on the memory store are answered in the
//! caller's task: no message, no activation, and read-your-writes against
//! the process actor that writes. On SQLite the same holds while a
//! process's actor runs (the store keeps its committed state resident from
//! activation to passivation); a passivated process keeps no log in memory.

use std::sync::Arc;
use std::time::Duration;

use process_registry::store::InlineRead;
use process_registry::testing::until;
use process_registry::{
    ActorProcessRegistry, ManualClock, ProcessEventAppendRequest, ProcessEventType, ProcessInput, ProcessRegistration,
    ProcessRegistry, ProcessStore, ProcessValueSelector, ProcessWakeSpec, RegistryConfig, RegistryError, SqliteOptions,
    SqliteStore,
};
use serde_json::json;

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new())).with_extra_event_types(vec![
        ProcessEventType::new("tick", json!({"type": "object"})),
        ProcessEventType::new("poke", json!({"type": "object"}))
            .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Const(json!("poked")))),
    ])
}

fn event(event_type: &str, n: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new(event_type, json!({ "n": n }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_a_passivated_process_answer_its_log_and_start_no_actor() {
    let clock = Arc::new(ManualClock::new(1_000));
    let config = RegistryConfig::default().with_clock(clock.clone()).with_passivation(Some(Duration::from_secs(60)));
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    for (n, event_type) in ["tick", "poke", "tick", "poke", "tick"].into_iter().enumerate() {
        registry.append_event("p", event(event_type, n as u64)).await.unwrap();
    }
    registry.ack_wake("p", 2).await.unwrap();
    clock.advance(120_000);
    registry.passivate_idle();
    until(|| registry.stats().live_actors == 0).await;
    let activations = registry.stats().activations;

    let log = registry.events_after("p", 0).await.unwrap();
    assert_eq!(log.iter().map(|event| event.sequence).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(registry.events_after("p", 3).await.unwrap(), log[3..].to_vec());
    assert_eq!(registry.recent_events("p", 2).await.unwrap(), log[3..].to_vec());
    assert_eq!(registry.count_events_through("p", "tick", 3).await.unwrap(), 2);
    assert_eq!(registry.count_events_through("p", "poke", 99).await.unwrap(), 2);
    let unacked: Vec<u64> = registry.wake_events_after("p", 0).await.unwrap().iter().map(|e| e.sequence).collect();
    assert_eq!(unacked, [4], "the acked wake (2) is not listed");
    assert!(matches!(registry.events_after("nobody", 0).await, Err(RegistryError::UnknownProcess { .. })));

    let stats = registry.stats();
    assert_eq!((stats.activations, stats.live_actors), (activations, 0), "no read started an actor");
    // A mutation still activates, and the reads after it see it.
    registry.append_event("p", event("tick", 5)).await.unwrap();
    assert_eq!(registry.stats().activations, activations + 1);
    assert_eq!(registry.recent_events("p", 1).await.unwrap()[0].sequence, 6);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readers_racing_an_appender_see_whole_prefixes_and_every_returned_append() {
    readers_racing_an_appender(ActorProcessRegistry::start(RegistryConfig::default()).await.unwrap(), 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_sqlite_readers_racing_an_appender_see_whole_prefixes_and_every_returned_append() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("registry.db");
    // Every append waits for its fsync, so fewer of them.
    readers_racing_an_appender(ActorProcessRegistry::open(path, RegistryConfig::default()).await.unwrap(), 300).await;
}

async fn readers_racing_an_appender(registry: ActorProcessRegistry, appends: u64) {
    registry.register_process(registration("p")).await.unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (registry, done) = (registry.clone(), done.clone());
            tokio::spawn(async move {
                let (mut seen, mut reads) = (0u64, 0u64);
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let log = registry.events_after("p", 0).await.unwrap();
                    let sequences: Vec<u64> = log.iter().map(|event| event.sequence).collect();
                    assert_eq!(sequences, (1..=log.len() as u64).collect::<Vec<_>>(), "a whole prefix");
                    assert!(log.len() as u64 >= seen, "a log never shrinks: {} after {seen}", log.len());
                    let ticks = registry.count_events_through("p", "tick", u64::MAX).await.unwrap();
                    assert!(ticks >= log.len() as u64, "the count is read later than the log");
                    seen = log.len() as u64;
                    reads += 1;
                    tokio::task::yield_now().await;
                }
                reads
            })
        })
        .collect();
    for n in 1..=appends {
        let appended = registry.append_event("p", event("tick", n)).await.unwrap();
        assert_eq!(appended.event.sequence, n);
        // Read-your-writes: the append that returned is in every later read.
        let tail = registry.events_after("p", n - 1).await.unwrap();
        assert_eq!(tail.first().map(|event| event.sequence), Some(n));
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    assert!(reads > 0, "the readers ran");
    assert_eq!(registry.events_after("p", 0).await.unwrap().len() as u64, appends);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_passivated_process_keeps_no_log_in_memory_and_its_next_read_loads_it() {
    let directory = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let config = RegistryConfig::default().with_clock(clock.clone()).with_passivation(Some(Duration::from_secs(60)));
    let registry = ActorProcessRegistry::open(directory.path().join("registry.db"), config).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    for (n, event_type) in ["tick", "poke", "tick", "poke"].into_iter().enumerate() {
        registry.append_event("p", event(event_type, n as u64)).await.unwrap();
    }
    registry.ack_wake("p", 2).await.unwrap();
    let activations = registry.stats().activations;
    let log = registry.events_after("p", 0).await.unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(registry.count_events_through("p", "poke", 4).await.unwrap(), 2);
    assert_eq!(registry.stats().activations, activations, "reads of a running actor's process load nothing");

    clock.advance(120_000);
    registry.passivate_idle();
    until(|| registry.stats().live_actors == 0).await;
    // Nothing resident: the read goes to a new actor, loaded from the file.
    assert_eq!(registry.events_after("p", 0).await.unwrap(), log);
    assert_eq!(registry.stats().activations, activations + 1, "the read after passivation loaded the process");
    let unacked: Vec<u64> = registry.wake_events_after("p", 0).await.unwrap().iter().map(|e| e.sequence).collect();
    assert_eq!(unacked, [4], "the durable ack came back with the log");
    registry.append_event("p", event("tick", 9)).await.unwrap();
    assert_eq!(registry.recent_events("p", 1).await.unwrap()[0].sequence, 5, "and later appends are read");
    assert_eq!(registry.count_events_through("p", "tick", 5).await.unwrap(), 3);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_process_started_by_its_registration_is_read_in_memory_and_kept_on_disk() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("registry.db");
    let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    let registry = ActorProcessRegistry::start(RegistryConfig::default().with_store(store.clone())).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    assert_eq!((registry.stats().live_actors, registry.stats().activations), (1, 1), "started by its registration");
    let mut inline_len = None;
    let read = store.read_inline("p", &mut |view| inline_len = Some(view.events_after(0).len()));
    assert_eq!((read, inline_len), (InlineRead::Read, Some(0)), "resident from the start, with nothing read back");

    registry.append_event("p", event("tick", 1)).await.unwrap();
    registry.append_event("p", event("poke", 2)).await.unwrap();
    assert_eq!(registry.events_after("p", 0).await.unwrap().len(), 2);
    assert_eq!(registry.stats().activations, 1, "its calls found it running");
    registry.shutdown().await;
    drop(registry);
    drop(store);

    let reopened = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.unwrap();
    let sequences: Vec<u64> = reopened.events_after("p", 0).await.unwrap().iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2], "what it committed is on disk");
    reopened.shutdown().await;
}
