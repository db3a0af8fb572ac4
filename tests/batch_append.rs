//! `BatchProcessRegistry::append_events`: many events to one process as one
//! change, on the actor registry (memory, SQLite, PostgreSQL when the test
//! server is there) and on the baseline.
//!
//! Pins: requests commit in order, one result each; a refused request
//! refuses the batch and leaves the log and record as they were; replay
//! keys are honoured per request, against the log and against the batch's
//! earlier requests; a second terminal event in one batch is refused;
//! parked waiters are answered by a batch; an empty batch is a no-op (on
//! an unknown process, `UnknownProcess`); a batch over `max_batch_events`,
//! or whose payloads pass `max_batch_bytes`, is `LimitExceeded`; on SQLite
//! a batch is one transaction (one fsync) and survives a reopen.

use std::sync::Arc;
use std::time::Duration;

use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::testing::postgres;
use process_registry::{
    ActorProcessRegistry, BatchProcessRegistry, Limits, ProcessEventAppendRequest, ProcessEventType, ProcessInput,
    ProcessRegistration, ProcessRegistry, ProcessStatus, RegistryConfig, RegistryError, SqliteOptions, SqliteStore,
};
use serde_json::json;

/// A registry under test, and what keeps its files alive.
struct Subject {
    name: &'static str,
    registry: Arc<dyn BatchProcessRegistry>,
    _directory: Option<tempfile::TempDir>,
}

async fn subjects(limits: Limits) -> Vec<Subject> {
    let config = || RegistryConfig::default().with_limits(limits.clone());
    let mut subjects = vec![
        Subject {
            name: "actor, memory",
            registry: Arc::new(ActorProcessRegistry::start(config()).await.expect("start")),
            _directory: None,
        },
        Subject {
            name: "baseline",
            registry: Arc::new(GlobalLockRegistry::new().with_limits(limits.clone())),
            _directory: None,
        },
    ];
    let directory = tempfile::tempdir().expect("a directory");
    let sqlite = ActorProcessRegistry::open(directory.path().join("batch.db"), config()).await.expect("open");
    subjects.push(Subject { name: "actor, SQLite", registry: Arc::new(sqlite), _directory: Some(directory) });
    if let Some(server) = postgres::server() {
        let url = postgres::fresh_database(&server).await;
        let node = ActorProcessRegistry::connect(&url, config()).await.expect("connect");
        subjects.push(Subject { name: "actor, PostgreSQL", registry: Arc::new(node), _directory: None });
    }
    subjects
}

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new())).with_extra_event_types([
        ProcessEventType::new(
            "step",
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
        ),
    ])
}

fn step(n: i64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("step", json!({ "n": n }))
}

fn completed(value: i64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new(
        "process.completed",
        json!({ "await_output": { "status": "success", "value": value } }),
    )
    .with_replay_key(format!("done-{value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_commits_in_order_with_one_result_per_request() {
    for subject in subjects(Limits::default()).await {
        let registry = &subject.registry;
        registry.register_process(registration("p")).await.expect("register");
        registry.append_event("p", step(0)).await.expect("a first event");
        let results = registry.append_events("p", (1..=5).map(step).collect()).await.expect("batch");
        let sequences: Vec<u64> = results.iter().map(|result| result.event.sequence).collect();
        assert_eq!(sequences, [2, 3, 4, 5, 6], "{}", subject.name);
        let log = registry.events_after("p", 0).await.expect("log");
        let payloads: Vec<i64> = log.iter().map(|event| event.payload["n"].as_i64().expect("n")).collect();
        assert_eq!(payloads, [0, 1, 2, 3, 4, 5], "{}", subject.name);
        assert!(registry.append_events("p", Vec::new()).await.expect("empty").is_empty(), "{}", subject.name);
        assert_eq!(registry.events_after("p", 0).await.expect("log").len(), 6, "{}: empty batch", subject.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_refuses_the_whole_batch() {
    for subject in subjects(Limits::default()).await {
        let registry = &subject.registry;
        registry.register_process(registration("p")).await.expect("register");
        let before = registry.get_process("p").await.expect("record");
        let undeclared = vec![step(1), ProcessEventAppendRequest::new("nope", json!({})), step(3)];
        assert!(
            matches!(registry.append_events("p", undeclared).await, Err(RegistryError::UndeclaredEventType { .. })),
            "{}",
            subject.name
        );
        let invalid = vec![step(1), step(2), ProcessEventAppendRequest::new("step", json!({"n": "two"}))];
        assert!(
            matches!(registry.append_events("p", invalid).await, Err(RegistryError::InvalidPayload { .. })),
            "{}",
            subject.name
        );
        let twice_terminal = vec![step(1), completed(1), completed(2)];
        assert!(
            matches!(registry.append_events("p", twice_terminal).await, Err(RegistryError::AlreadyTerminal { .. })),
            "{}",
            subject.name
        );
        assert!(registry.events_after("p", 0).await.expect("log").is_empty(), "{}: nothing committed", subject.name);
        assert_eq!(registry.get_process("p").await.expect("record"), before, "{}: record unchanged", subject.name);
        // The same process still takes a good batch.
        let ok = registry.append_events("p", vec![step(1), completed(7)]).await.expect("batch");
        assert_eq!(ok.len(), 2);
        assert!(matches!(registry.get_process("p").await.expect("record").status, ProcessStatus::Completed { .. }));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_keys_are_honoured_per_request() {
    for subject in subjects(Limits::default()).await {
        let registry = &subject.registry;
        registry.register_process(registration("p")).await.expect("register");
        let first = registry
            .append_events("p", vec![step(1).with_replay_key("a"), step(2).with_replay_key("b")])
            .await
            .expect("first batch");
        assert_eq!(first.iter().map(|r| r.event.sequence).collect::<Vec<_>>(), [1, 2]);
        // Against the log: `a` replays, the new request gets 3.
        let second =
            registry.append_events("p", vec![step(1).with_replay_key("a"), step(3)]).await.expect("second batch");
        assert_eq!(second.iter().map(|r| r.event.sequence).collect::<Vec<_>>(), [1, 3], "{}", subject.name);
        // Within the batch: a repeated key with the same payload answers the earlier request's event.
        let third = registry
            .append_events("p", vec![step(4).with_replay_key("c"), step(4).with_replay_key("c")])
            .await
            .expect("third batch");
        assert_eq!(third.iter().map(|r| r.event.sequence).collect::<Vec<_>>(), [4, 4], "{}", subject.name);
        // A key reused for another payload refuses the batch, within it or against the log.
        for conflicting in [
            vec![step(5).with_replay_key("d"), step(6).with_replay_key("d")],
            vec![step(5), step(9).with_replay_key("a")],
        ] {
            assert!(
                matches!(registry.append_events("p", conflicting).await, Err(RegistryError::ReplayConflict { .. })),
                "{}",
                subject.name
            );
        }
        assert_eq!(registry.events_after("p", 0).await.expect("log").len(), 4, "{}", subject.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_waiters_are_answered_by_a_batch() {
    for subject in subjects(Limits::default()).await {
        let registry = Arc::clone(&subject.registry);
        registry.register_process(registration("p")).await.expect("register");
        let waiter = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move { registry.wait_event_after("p", "step", 0).await })
        };
        let outcome = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move { registry.await_process("p").await })
        };
        // Still parked before the batch (a bounded wait that must elapse).
        assert!(tokio::time::timeout(Duration::from_millis(50), async {
            while !waiter.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .is_err());
        registry.append_events("p", vec![step(1), step(2), completed(3)]).await.expect("batch");
        let woken = tokio::time::timeout(Duration::from_secs(30), waiter).await.expect("answered").expect("task");
        assert_eq!(woken.expect("event").sequence, 1, "{}: the first matching event", subject.name);
        let output = tokio::time::timeout(Duration::from_secs(30), outcome).await.expect("answered").expect("task");
        assert!(output.is_ok(), "{}: await_process answered by the batch's terminal event", subject.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_batch_commits_nothing_and_names_an_unknown_process() {
    for subject in subjects(Limits::default()).await {
        let registry = &subject.registry;
        let unknown = registry.append_events("nobody", Vec::new()).await;
        assert!(matches!(unknown, Err(RegistryError::UnknownProcess { .. })), "{}: {unknown:?}", subject.name);
        registry.register_process(registration("p")).await.expect("register");
        assert_eq!(registry.append_events("p", Vec::new()).await.expect("empty").len(), 0, "{}", subject.name);
        assert!(registry.events_after("p", 0).await.expect("log").is_empty(), "{}", subject.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_bound_is_refused() {
    let limits = Limits { max_batch_events: 3, ..Limits::default() };
    for subject in subjects(limits).await {
        let registry = &subject.registry;
        registry.register_process(registration("p")).await.expect("register");
        let refused = registry.append_events("p", (0..4).map(step).collect()).await;
        assert!(matches!(refused, Err(RegistryError::LimitExceeded { .. })), "{}: {refused:?}", subject.name);
        assert!(registry.events_after("p", 0).await.expect("log").is_empty());
        assert_eq!(registry.append_events("p", (0..3).map(step).collect()).await.expect("at the bound").len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_payloads_add_up_past_the_byte_bound_is_refused_whole() {
    // Each payload fits the per-event bound; four of them do not fit one batch.
    let limits = Limits { max_payload_bytes: 1_000, max_batch_bytes: 2_000, ..Limits::default() };
    let big = |n: u64| ProcessEventAppendRequest::new("step", json!({"n": n, "pad": "x".repeat(600)}));
    for subject in subjects(limits).await {
        let registry = &subject.registry;
        registry.register_process(registration("p")).await.expect("register");
        let refused = registry.append_events("p", (0..4).map(big).collect()).await;
        match &refused {
            Err(RegistryError::LimitExceeded { what, limit, .. }) => {
                assert_eq!((what.as_str(), *limit), ("payload bytes in one batch", 2_000), "{}", subject.name);
            }
            other => panic!("{}: {other:?}", subject.name),
        }
        assert!(registry.events_after("p", 0).await.expect("log").is_empty(), "{}: nothing appended", subject.name);
        assert_eq!(registry.append_events("p", (0..3).map(big).collect()).await.expect("within").len(), 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_batch_is_one_transaction_and_survives_reopen() {
    let directory = tempfile::tempdir().expect("a directory");
    let path = directory.path().join("one.db");
    let store = Arc::new(SqliteStore::open(&path, SqliteOptions::default()).expect("open"));
    let registry = ActorProcessRegistry::start(RegistryConfig::default().with_store(Arc::clone(&store) as _))
        .await
        .expect("start");
    registry.register_process(registration("p")).await.expect("register");
    let before = store.transactions();
    registry.append_events("p", (0..100).map(step).collect()).await.expect("batch");
    assert_eq!(store.transactions() - before, 1, "100 events, one transaction and one fsync");
    registry.shutdown().await;
    drop(registry);
    drop(store);
    let reopened = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("reopen");
    let log = reopened.events_after("p", 0).await.expect("log");
    assert_eq!(log.len(), 100);
    assert!(log.iter().enumerate().all(|(i, event)| event.sequence == i as u64 + 1 && event.payload["n"] == json!(i)));
    reopened.shutdown().await;
}
