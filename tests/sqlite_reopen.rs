//! A registry on the SQLite store answers after close and reopen exactly as
//! it did before: records, events, replay dedupe, wake acks, wait states,
//! external refs, grants and leases survive, and fencing tokens keep rising
//! across reopen. Time comes from a manual clock, shared across reopens.

use std::path::Path;
use std::sync::Arc;

use process_registry::{
    ActorProcessRegistry, ManualClock, ProcessEventAppendRequest, ProcessEventType, ProcessExternalRef,
    ProcessHandleDescriptor, ProcessInput, ProcessListFilter, ProcessRegistration, ProcessRegistry,
    ProcessStatusFilter, ProcessValueSelector, ProcessWakeSpec, RegistryConfig, RegistryError, SessionScope, WaitKind,
    WaitState,
};
use serde_json::json;

const START_MS: u64 = 1_700_000_000_000;

async fn open(path: &Path, clock: &Arc<ManualClock>) -> ActorProcessRegistry {
    ActorProcessRegistry::open(path, RegistryConfig::default().with_clock(Arc::clone(clock) as _))
        .await
        .expect("the store opens")
}

fn job(id: &str) -> ProcessRegistration {
    let nudge = ProcessEventType::new("nudge", json!({"type": "object"}))
        .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Pointer("/text".to_owned())));
    ProcessRegistration::new(id, ProcessInput::definition("resize", Default::default()))
        .with_extra_event_types([nudge, ProcessEventType::new("progress", json!({"type": "object"}))])
        .with_wake_target(SessionScope::new("owner"))
}

fn wait(key: &str) -> WaitState {
    WaitState {
        kind: WaitKind::Signal {
            name: "approval".to_owned(),
            event_type: "nudge".to_owned(),
            key: key.to_owned(),
            ordinal: 1,
        },
        since_ms: START_MS,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_committed_survives_close_and_reopen() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("registry.db");
    let clock = Arc::new(ManualClock::new(START_MS));
    let alice = SessionScope::new("alice");
    let bob = SessionScope::with_frame("bob", "f1");

    let registry = open(&path, &clock).await;
    let registered = registry.register_process(job("p1")).await.expect("register p1");
    registry.register_process(job("p2")).await.expect("register p2");
    let first = registry
        .append_event("p1", ProcessEventAppendRequest::new("nudge", json!({"text": "hi"})).with_replay_key("k1"))
        .await
        .expect("append 1");
    registry.append_event("p1", ProcessEventAppendRequest::new("progress", json!({"n": 2}))).await.expect("append 2");
    registry
        .append_event("p1", ProcessEventAppendRequest::new("nudge", json!({"text": "again"})))
        .await
        .expect("append 3");
    registry.ack_wake("p1", 1).await.expect("ack 1");
    registry.set_process_wait("p1", wait("approval-1")).await.expect("wait");
    let external =
        ProcessExternalRef { backend: "queue".to_owned(), id: "q-7".to_owned(), metadata: Some(json!({"a": 1})) };
    registry.set_external_ref("p1", external.clone()).await.expect("external ref");
    let label = ProcessHandleDescriptor { kind: Some("job".to_owned()), label: Some("resize".to_owned()) };
    registry.grant_handle(&alice, "p1", label.clone()).await.expect("grant alice p1");
    registry.grant_handle(&alice, "p2", label.clone()).await.expect("grant alice p2");
    registry.grant_handle(&bob, "p1", ProcessHandleDescriptor::default()).await.expect("grant bob p1");
    registry.transfer_handle_grants(&alice, &bob, &["p2".to_owned()]).await.expect("transfer p2");
    let lease = registry.claim_process_lease("p1", "worker-a", 60_000).await.expect("claim");
    assert_eq!(lease.fencing_token, 1);
    registry.complete_process("p2", process_registry::ProcessAwaitOutput::success(json!("done"))).await.expect("done");

    let before_p1 = registry.get_process("p1").await.expect("p1 exists");
    let before_p2 = registry.get_process("p2").await.expect("p2 exists");
    let before_events = registry.events_after("p1", 0).await.expect("events");
    let before_wakes = registry.wake_events_after("p1", 0).await.expect("wakes");
    let before_alice = registry.list_handle_grants(&alice).await.expect("alice grants");
    let before_bob = registry.list_handle_grants(&bob).await.expect("bob grants");
    registry.shutdown().await;

    let registry = open(&path, &clock).await;
    assert_eq!(registry.get_process("p1").await.as_ref(), Some(&before_p1), "the record of p1");
    assert_eq!(registry.get_process("p2").await.as_ref(), Some(&before_p2), "the terminal record of p2");
    assert_eq!(registered.created_at_ms, before_p1.created_at_ms);
    assert_eq!(before_p1.wait, Some(wait("approval-1")));
    assert_eq!(before_p1.external_ref, Some(external));
    assert_eq!(registry.events_after("p1", 0).await.expect("events"), before_events, "the log");
    assert_eq!(registry.count_events_through("p1", "nudge", 3).await.expect("count"), 2);
    assert_eq!(registry.recent_events("p1", 1).await.expect("recent"), before_events[2..].to_vec());
    assert_eq!(registry.wake_events_after("p1", 0).await.expect("wakes"), before_wakes, "acks");
    assert_eq!(before_wakes.iter().map(|event| event.sequence).collect::<Vec<_>>(), vec![3]);
    assert_eq!(registry.list_handle_grants(&alice).await.expect("alice"), before_alice, "alice's grants");
    assert_eq!(registry.list_handle_grants(&bob).await.expect("bob"), before_bob, "bob's grants");
    assert_eq!(before_bob.len(), 2, "bob holds p1 and the transferred p2");
    assert_eq!(
        registry.list_processes(&ProcessListFilter { status: ProcessStatusFilter::Any, ..Default::default() }).await,
        Ok(vec![before_p1.clone(), before_p2.clone()])
    );
    assert_eq!(registry.list_non_terminal().await, Ok(vec![before_p1.clone()]), "the recovery worklist");

    // Replay dedupe: the same key and payload returns the original event.
    let replayed = registry
        .append_event("p1", ProcessEventAppendRequest::new("nudge", json!({"text": "hi"})).with_replay_key("k1"))
        .await
        .expect("replay");
    assert_eq!(replayed.event, first.event);
    let conflict = registry
        .append_event("p1", ProcessEventAppendRequest::new("nudge", json!({"text": "other"})).with_replay_key("k1"))
        .await;
    assert!(matches!(conflict, Err(RegistryError::ReplayConflict { .. })), "{conflict:?}");
    // The next sequence continues the log.
    let next = registry.append_event("p1", ProcessEventAppendRequest::new("progress", json!({}))).await.expect("next");
    assert_eq!(next.event.sequence, 4);

    // The lease survived: another owner is refused until it expires.
    let held = registry.claim_process_lease("p1", "worker-b", 60_000).await;
    assert!(matches!(held, Err(RegistryError::LeaseHeld { .. })), "{held:?}");
    let renewed = registry.renew_process_lease(&lease, 60_000).await.expect("the old lease renews after reopen");
    assert_eq!(renewed.fencing_token, 1);
    let completed = registry.complete_process("p2", process_registry::ProcessAwaitOutput::success(json!("done"))).await;
    assert!(completed.is_ok(), "repeating a completion is idempotent after reopen: {completed:?}");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_tokens_keep_rising_across_reopen_and_release() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("registry.db");
    let clock = Arc::new(ManualClock::new(START_MS));
    let mut last_token = 0;
    for round in 0..4 {
        let registry = open(&path, &clock).await;
        if round == 0 {
            registry.register_process(job("p")).await.expect("register");
        }
        let owner = format!("worker-{round}");
        let lease = registry.claim_process_lease("p", &owner, 1_000).await.expect("claim");
        assert!(lease.fencing_token > last_token, "round {round}: {} after {last_token}", lease.fencing_token);
        last_token = lease.fencing_token;
        if round % 2 == 0 {
            // Released: the token is kept for the next claim.
            registry
                .complete_process_lease(&process_registry::ProcessLeaseCompletion::from_lease(&lease))
                .await
                .expect("release");
        } else {
            // Held past its expiry: the next claim takes over.
            clock.advance(2_000);
        }
        registry.shutdown().await;
    }
    assert_eq!(last_token, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deletion_survives_reopen_whole() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("registry.db");
    let clock = Arc::new(ManualClock::new(START_MS));
    let registry = open(&path, &clock).await;
    for id in ["a", "b", "c"] {
        registry.register_process(job(id)).await.expect("register");
        registry
            .grant_handle(&SessionScope::with_frame("s", id), id, ProcessHandleDescriptor::default())
            .await
            .expect("grant");
    }
    registry.grant_handle(&SessionScope::new("keep"), "b", ProcessHandleDescriptor::default()).await.expect("grant");
    let report = registry.delete_session_process_state("s").await.expect("delete");
    assert_eq!(report.revoked_handle_count, 3);
    registry.shutdown().await;

    let registry = open(&path, &clock).await;
    for id in ["a", "b", "c"] {
        let grants = registry.handle_grants_for_process(id).await.expect("grants");
        let sessions: Vec<&str> = grants.iter().map(|grant| grant.session_id.as_str()).collect();
        let expected: Vec<&str> = if id == "b" { vec!["keep"] } else { vec![] };
        assert_eq!(sessions, expected, "grants of {id} after reopen");
    }
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_an_active_process_see_only_durable_state_and_a_reopen_sees_all_of_it() {
    // Many concurrent appenders on one process and on many: every answered
    // append is in the reopened log, gapless.
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("registry.db");
    let clock = Arc::new(ManualClock::new(START_MS));
    let registry = open(&path, &clock).await;
    for id in 0..8 {
        registry.register_process(job(&format!("p{id}"))).await.expect("register");
    }
    let mut tasks = Vec::new();
    for task in 0..32u64 {
        let registry = registry.clone();
        tasks.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for n in 0..20u64 {
                let id = format!("p{}", (task + n) % 8);
                let request = ProcessEventAppendRequest::new("progress", json!({"task": task, "n": n}))
                    .with_replay_key(format!("{task}:{n}"));
                let appended = registry.append_event(&id, request).await.expect("append");
                let seen = registry.events_after(&id, appended.event.sequence - 1).await.expect("read");
                assert_eq!(seen.first().map(|event| event.sequence), Some(appended.event.sequence), "read-your-writes");
                answered.push((id, appended.event.sequence, task, n));
            }
            answered
        }));
    }
    let mut answered = Vec::new();
    for task in tasks {
        answered.extend(task.await.expect("task"));
    }
    registry.shutdown().await;

    let registry = open(&path, &clock).await;
    let mut total = 0;
    for id in 0..8 {
        let id = format!("p{id}");
        let events = registry.events_after(&id, 0).await.expect("events");
        let sequences: Vec<u64> = events.iter().map(|event| event.sequence).collect();
        assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>(), "{id} is gapless");
        total += events.len();
    }
    assert_eq!(total, answered.len());
    for (id, sequence, task, n) in answered {
        let events = registry.events_after(&id, sequence - 1).await.expect("events");
        assert_eq!(events.first().map(|event| event.payload.clone()), Some(json!({"task": task, "n": n})));
    }
    registry.shutdown().await;
}

/// Opening a file with many processes parses their records on several
/// threads: every record comes back, in id order, as it was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_thousands_of_processes_reopens_with_every_record_whole() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("registry.db");
    let clock = Arc::new(ManualClock::new(START_MS));
    let registry = open(&path, &clock).await;
    let shared: Arc<dyn ProcessRegistry> = Arc::new(registry.clone());
    // Over the single-thread threshold (4,096 records), from concurrent
    // registrants so the group commit keeps it quick.
    let tasks: Vec<_> = (0..8u32)
        .map(|task| {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                for i in (task..6_000).step_by(8) {
                    shared.register_process(job(&format!("p{i:05}"))).await.expect("register");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a registrant");
    }
    registry
        .complete_process("p04321", process_registry::ProcessAwaitOutput::success(json!("done")))
        .await
        .expect("complete one");
    let before = registry.list_processes(&ProcessListFilter::any()).await.expect("list before");
    registry.shutdown().await;

    let reopened = open(&path, &clock).await;
    let after = reopened.list_processes(&ProcessListFilter::any()).await.expect("list after");
    assert_eq!(after.len(), 6_000);
    assert!(after.windows(2).all(|pair| pair[0].id < pair[1].id), "listed in id order");
    assert_eq!(after, before);
    assert_eq!(reopened.list_non_terminal().await.expect("worklist").len(), 5_999);
    reopened.shutdown().await;
}
