//! Behaviour of the actor runtime beyond the trait: supervision, parked
//! waiters, shutdown, stats.

use std::sync::Arc;
use std::time::Duration;

use process_registry::testing::until;
use process_registry::{
    ActorProcessRegistry, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessInput,
    ProcessRegistration, ProcessRegistry, RegistryConfig, RegistryError,
};
use serde_json::json;

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new()))
        .with_extra_event_types(vec![ProcessEventType::new("tick", json!({"type": "object"}))])
}

async fn start() -> ActorProcessRegistry {
    ActorProcessRegistry::start(RegistryConfig::default()).await.expect("registry starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_waiter_leaves_nothing_parked() {
    let registry = start().await;
    registry.register_process(registration("p")).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(20), registry.wait_event_after("p", "tick", 0)).await;
    assert!(waited.is_err(), "nothing was appended, so the wait must still be parked");
    until(|| registry.stats().parked_waiters == 0).await;
    let awaited = tokio::time::timeout(Duration::from_millis(20), registry.await_process("p")).await;
    assert!(awaited.is_err());
    until(|| registry.stats().parked_waiters == 0).await;
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_every_parked_caller_with_stopped() {
    let registry = start().await;
    registry.register_process(registration("p")).await.unwrap();
    let mut parked = Vec::new();
    for _ in 0..100 {
        let waiter = registry.clone();
        parked.push(tokio::spawn(async move { waiter.wait_event_after("p", "tick", 0).await }));
        let awaiter = registry.clone();
        parked.push(tokio::spawn(async move { awaiter.await_process("p").await.map(|_| unreachable_event()) }));
    }
    until(|| registry.stats().parked_waiters == 200).await;
    registry.shutdown().await;
    for task in parked {
        let result = tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        assert!(matches!(result, Err(RegistryError::Stopped { .. })), "{result:?}");
    }
    let after = registry.append_event("p", ProcessEventAppendRequest::new("tick", json!({}))).await;
    assert!(matches!(after, Err(RegistryError::Stopped { .. })), "{after:?}");
    assert_eq!(registry.stats().live_actors, 0);
}

fn unreachable_event() -> process_registry::ProcessEvent {
    panic!("await_process must not succeed before completion")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_make_one_actor() {
    let registry = start().await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.register_process(registration("same")).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(registry.stats().running, 1);
    assert_eq!(registry.list_non_terminal().await.unwrap().len(), 1);
    registry.clear_process_wait("same").await.unwrap();
    assert_eq!(registry.stats().live_actors, 1, "one actor, started on first use");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_restarts_with_committed_state_and_parked_waiters() {
    let registry = start().await;
    registry.register_process(registration("p")).await.unwrap();
    registry.register_process(registration("q")).await.unwrap();
    for _ in 0..3 {
        registry.append_event("p", ProcessEventAppendRequest::new("tick", json!({}))).await.unwrap();
    }
    let lease = registry.claim_process_lease("p", "w", 60_000).await.unwrap();
    registry.ack_wake("p", 2).await.unwrap();
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.wait_event_after("p", "tick", 3).await })
    };
    let awaiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.await_process("p").await })
    };
    until(|| registry.stats().parked_waiters == 2).await;
    registry.inject_panic("p").await.unwrap();
    until(|| registry.stats().restarts == 1).await;
    assert_eq!(registry.events_after("p", 0).await.unwrap().len(), 3);
    let taken = registry.claim_process_lease("p", "other", 60_000).await;
    assert!(taken.unwrap_err().to_string().contains("already leased"));
    let renewed = registry.renew_process_lease(&lease, 60_000).await.unwrap();
    assert_eq!(renewed.fencing_token, lease.fencing_token);
    let appended = registry.append_event("p", ProcessEventAppendRequest::new("tick", json!({"n": 4}))).await.unwrap();
    assert_eq!(appended.event.sequence, 4);
    assert_eq!(waiter.await.unwrap().unwrap().sequence, 4);
    registry.complete_process("p", ProcessAwaitOutput::success(json!(1))).await.unwrap();
    assert_eq!(awaiter.await.unwrap().unwrap(), ProcessAwaitOutput::success(json!(1)));
    let other = registry.append_event("q", ProcessEventAppendRequest::new("tick", json!({}))).await.unwrap();
    assert_eq!(other.event.sequence, 1, "other processes are not disturbed");
    assert!(registry.stats().live_actors <= 2);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_processes_by_status() {
    let registry = Arc::new(start().await);
    for id in ["a", "b", "c", "d"] {
        registry.register_process(registration(id)).await.unwrap();
    }
    registry.complete_process("a", ProcessAwaitOutput::success(json!(null))).await.unwrap();
    registry.complete_process("b", ProcessAwaitOutput::failure("x", "y")).await.unwrap();
    registry.complete_process("c", ProcessAwaitOutput::cancelled("z")).await.unwrap();
    let stats = registry.stats();
    assert_eq!((stats.running, stats.completed, stats.failed, stats.cancelled), (1, 1, 1, 1));
    registry.shutdown().await;
}
