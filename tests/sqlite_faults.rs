//! A failed commit or a failed fsync on the SQLite store: the caller gets
//! `Storage`, memory is unchanged (no read, waiter or listing sees the
//! change), reads keep working, every later write is refused until the
//! store is reopened, and a reopened store is whole. Faults are injected
//! into the writer thread (feature `fault-injection`). A change the store
//! refuses (as a constraint would) fails alone, with what its actor planned
//! on top of it, and the store stays writable.

use std::path::Path;
use std::time::Duration;

use process_registry::store::StoreFaultsHandle;
use process_registry::{
    ActorProcessRegistry, ProcessEventAppendRequest, ProcessEventType, ProcessInput, ProcessRegistration,
    ProcessRegistry, RegistryConfig, RegistryError, SessionScope, SqliteOptions,
};
use serde_json::json;

fn job(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("resize", Default::default()))
        .with_extra_event_types([ProcessEventType::new("progress", json!({"type": "object"}))])
}

fn progress(n: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("progress", json!({"n": n})).with_replay_key(format!("step-{n}"))
}

async fn open(path: &Path, faults: &StoreFaultsHandle) -> ActorProcessRegistry {
    let options = SqliteOptions { faults: faults.clone(), ..SqliteOptions::default() };
    ActorProcessRegistry::open_with(path, options, RegistryConfig::default()).await.expect("open")
}

/// A store in a fresh directory (`registry.db`) with faults to arm, and
/// process `p` registered with one event.
async fn p_with_one_event() -> (tempfile::TempDir, StoreFaultsHandle, ActorProcessRegistry) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let faults = StoreFaultsHandle::default();
    let registry = open(&directory.path().join("registry.db"), &faults).await;
    registry.register_process(job("p")).await.expect("register");
    registry.append_event("p", progress(1)).await.expect("append 1");
    (directory, faults, registry)
}

/// Runs the same story with either fault; returns the reopened registry.
async fn a_failed_write_changes_nothing(arm: impl Fn(&StoreFaultsHandle)) -> (ActorProcessRegistry, tempfile::TempDir) {
    let (directory, faults, registry) = p_with_one_event().await;
    let path = directory.path().join("registry.db");
    let before = registry.get_process("p").await.expect("p");
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.wait_event_after("p", "progress", 1).await })
    };

    arm(&faults);
    let failed = registry.append_event("p", progress(2)).await;
    assert!(matches!(failed, Err(RegistryError::Storage { .. })), "the faulted append: {failed:?}");

    // Memory is unchanged: reads, listings and waiters see nothing of it.
    assert_eq!(registry.get_process("p").await, Some(before.clone()));
    assert_eq!(registry.events_after("p", 0).await.expect("events").len(), 1);
    assert_eq!(registry.count_events_through("p", "progress", 10).await, Ok(1));
    assert_eq!(registry.list_non_terminal().await, Ok(vec![before.clone()]));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), async {
            while !waiter.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_err(),
        "the waiter was not woken by a change that failed"
    );
    waiter.abort();

    // The store refuses every later write until reopened.
    let refused = registry.append_event("p", progress(3)).await;
    assert!(matches!(refused, Err(RegistryError::Storage { .. })), "after the fault: {refused:?}");
    let refused = registry.register_process(job("q")).await;
    assert!(matches!(refused, Err(RegistryError::Storage { .. })), "a registration after the fault: {refused:?}");
    assert!(registry.get_process("q").await.is_none());
    let refused = registry.grant_handle(&SessionScope::new("s"), "p", Default::default()).await;
    assert!(matches!(refused, Err(RegistryError::Storage { .. })), "a grant after the fault: {refused:?}");
    assert_eq!(registry.list_handle_grants(&SessionScope::new("s")).await, Ok(vec![]));
    // Reads keep working.
    assert_eq!(registry.events_after("p", 0).await.expect("events").len(), 1);
    registry.shutdown().await;

    let registry = open(&path, &StoreFaultsHandle::default()).await;
    (registry, directory)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_changes_nothing_and_poisons_the_store_until_reopen() {
    let (registry, _directory) = a_failed_write_changes_nothing(|faults| faults.faults().fail_next_commit()).await;
    // The rolled-back append is not on disk; retrying it appends it once.
    assert_eq!(registry.events_after("p", 0).await.expect("events").len(), 1);
    let retried = registry.append_event("p", progress(2)).await.expect("retry after reopen");
    assert_eq!(retried.event.sequence, 2);
    let again = registry.append_event("p", progress(2)).await.expect("replay");
    assert_eq!(again.event.sequence, 2, "the replay key dedupes the retry");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_changes_nothing_in_memory_and_its_retry_is_exactly_once() {
    let (registry, _directory) = a_failed_write_changes_nothing(|faults| faults.faults().fail_next_sync()).await;
    // After a failed fsync the disk may or may not hold the append (here
    // SQLite did write it); the caller's retry with its replay key ends
    // with exactly one event either way.
    let retried = registry.append_event("p", progress(2)).await.expect("retry after reopen");
    assert_eq!(retried.event.sequence, 2);
    let events = registry.events_after("p", 0).await.expect("events");
    assert_eq!(events.iter().map(|event| event.sequence).collect::<Vec<_>>(), vec![1, 2]);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_every_call_planned_on_top_of_it() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("registry.db");
    let faults = StoreFaultsHandle::default();
    let registry = open(&path, &faults).await;
    registry.register_process(job("p")).await.expect("register");
    faults.faults().fail_next_commit();
    // Many appends in flight on one process: whichever batch the fault hits,
    // no caller is told of a change that is not on disk.
    let mut tasks = Vec::new();
    for n in 1..=32 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move { registry.append_event("p", progress(n)).await }));
    }
    let mut answered = Vec::new();
    for task in tasks {
        if let Ok(appended) = task.await.expect("task") {
            answered.push(appended.event.sequence);
        }
    }
    let visible = registry.events_after("p", 0).await.expect("events");
    assert_eq!(visible.iter().map(|event| event.sequence).collect::<Vec<_>>(), {
        let mut answered = answered.clone();
        answered.sort_unstable();
        answered
    });
    registry.shutdown().await;
    let registry = open(&path, &StoreFaultsHandle::default()).await;
    let stored = registry.events_after("p", 0).await.expect("events");
    assert_eq!(stored.len(), answered.len(), "what was answered is what is on disk");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_change_fails_alone_and_its_process_goes_on_writing() {
    let (directory, faults, registry) = p_with_one_event().await;
    let path = directory.path().join("registry.db");

    faults.faults().refuse_next_change();
    let refused = registry.append_event("p", progress(2)).await;
    assert!(matches!(refused, Err(RegistryError::Storage { .. })), "the refused append: {refused:?}");
    // The actor rolled back and plans anew: its next calls commit.
    let appended = registry.append_event("p", progress(2)).await.expect("the retry commits");
    assert_eq!(appended.event.sequence, 2);
    let external =
        process_registry::ProcessExternalRef { backend: "queue".to_owned(), id: "j".to_owned(), metadata: None };
    let record = registry.set_external_ref("p", external.clone()).await.expect("a record update commits");
    assert_eq!(record.external_ref.as_ref(), Some(&external));

    // Refused in the middle of pipelined calls: every call planned on top
    // of the refused one fails with it, and what was answered is what is
    // on disk, record included.
    faults.faults().refuse_next_change();
    let mut tasks = Vec::new();
    for n in 3..=34 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move { registry.append_event("p", progress(n)).await }));
    }
    let mut answered = vec![1, 2];
    for task in tasks {
        if let Ok(appended) = task.await.expect("task") {
            answered.push(appended.event.sequence);
        }
    }
    answered.sort_unstable();
    assert!(answered.len() < 34, "one append was refused");
    let next = registry.append_event("p", progress(99)).await.expect("the store stays writable");
    answered.push(next.event.sequence);
    let before = registry.get_process("p").await.expect("p");
    registry.shutdown().await;

    let registry = open(&path, &StoreFaultsHandle::default()).await;
    let stored = registry.events_after("p", 0).await.expect("events");
    assert_eq!(stored.iter().map(|event| event.sequence).collect::<Vec<_>>(), answered, "gapless, as answered");
    assert_eq!(registry.get_process("p").await, Some(before), "the record on disk is the one answered");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_fsync_a_restarted_actor_does_not_load_the_unknown_commit() {
    let (directory, faults, registry) = p_with_one_event().await;
    let path = directory.path().join("registry.db");
    faults.faults().fail_next_sync();
    let failed = registry.append_event("p", progress(2)).await;
    assert!(matches!(failed, Err(RegistryError::Storage { .. })), "the append whose fsync failed: {failed:?}");
    // The file holds the append (SQLite wrote it before the fsync "failed"),
    // but its caller was told it failed: an actor started from the file
    // must not show it.
    let restarts = registry.stats().restarts;
    registry.inject_panic("p").await.expect("crash the actor");
    // The supervisor heard of the death (and tried its restart).
    tokio::time::timeout(Duration::from_secs(60), async {
        while registry.stats().restarts == restarts && registry.stats().quarantined.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the actor's death was handled");
    let read = tokio::time::timeout(Duration::from_secs(60), registry.events_after("p", 0)).await.expect("answered");
    match read {
        Ok(events) => assert_eq!(events.len(), 1, "only what its callers were told committed"),
        Err(RegistryError::Storage { .. } | RegistryError::Quarantined { .. }) => {}
        Err(other) => panic!("reading p after the failed fsync: {other:?}"),
    }
    registry.shutdown().await;
    // Reopened, the store reads the file as it is; the caller's retry
    // with its replay key then ends with exactly one event.
    let registry = open(&path, &StoreFaultsHandle::default()).await;
    let retried = registry.append_event("p", progress(2)).await.expect("retry after reopen");
    assert_eq!(retried.event.sequence, 2);
    assert_eq!(registry.events_after("p", 0).await.expect("events").len(), 2);
    registry.shutdown().await;
}
