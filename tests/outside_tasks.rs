//! A caller outside the runtime's tasks (the body of `block_on`,
//! `#[tokio::main]` or `#[tokio::test]`) leaves a single append's payload
//! hash and the copy of its answer to the process actor. These tests pin
//! that the answers are the ones a task gets: the same events, the same
//! replays, fences and refusals, on the memory store and on SQLite, with
//! calls from both kinds of caller interleaved on one process.

use process_registry::{
    ActorProcessRegistry, FencedProcessRegistry, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType,
    ProcessInput, ProcessLeaseCompletion, ProcessRegistration, ProcessRegistry, RegistryConfig, RegistryError,
};
use serde_json::json;

fn registration(id: &str) -> ProcessRegistration {
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new()))
        .with_extra_event_types(vec![ProcessEventType::new("tick", schema)])
}

fn tick(n: i64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("tick", json!({ "n": n }))
}

/// Appends from this `block_on` body and from a spawned task, in turns;
/// every answer equals the log's event, and replays, conflicts and
/// refusals are the same from either caller.
async fn both_callers_get_the_same_answers(registry: ActorProcessRegistry) {
    assert!(tokio::task::try_id().is_none(), "the test body is not a task");
    registry.register_process(registration("p")).await.expect("registered");
    let mut answers = Vec::new();
    for n in 0..6 {
        let appended = if n % 2 == 0 {
            registry.append_event("p", tick(n)).await
        } else {
            let in_task = registry.clone();
            tokio::spawn(async move { in_task.append_event("p", tick(n)).await }).await.expect("the task ran")
        };
        answers.push(appended.expect("appended").event);
    }
    assert_eq!(registry.events_after("p", 0).await.expect("read"), answers, "every answer is the logged event");

    let keyed = || ProcessEventAppendRequest::new("tick", json!({"n": 99})).with_replay_key("k");
    let first = registry.append_event("p", keyed()).await.expect("keyed append").event;
    let in_task = registry.clone();
    let from_task = tokio::spawn(async move { in_task.append_event("p", keyed()).await }).await.expect("ran");
    assert_eq!(from_task.expect("a replay from a task").event, first);
    assert_eq!(registry.append_event("p", keyed()).await.expect("a replay from outside").event, first);

    let conflicting = ProcessEventAppendRequest::new("tick", json!({"n": 100})).with_replay_key("k");
    let conflict = registry.append_event("p", conflicting).await;
    assert!(matches!(conflict, Err(RegistryError::ReplayConflict { .. })), "{conflict:?}");
    let invalid = registry.append_event("p", ProcessEventAppendRequest::new("tick", json!({"n": "x"}))).await;
    assert!(matches!(invalid, Err(RegistryError::InvalidPayload { .. })), "{invalid:?}");
    let unknown = registry.append_event("nobody", tick(1)).await;
    assert!(matches!(unknown, Err(RegistryError::UnknownProcess { .. })), "{unknown:?}");
    assert_eq!(registry.events_after("p", 0).await.expect("read").len(), 7, "refusals appended nothing");

    // Fenced: the current lease's append commits, a released one's is refused.
    let lease = registry.claim_process_lease("p", "worker", 60_000).await.expect("claimed");
    let fenced = registry.append_event_fenced(&lease, tick(7)).await.expect("a fenced append").event;
    assert_eq!(registry.events_after("p", 7).await.expect("read"), vec![fenced], "the fenced answer is logged");
    registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await.expect("released");
    let stale = registry.append_event_fenced(&lease, tick(8)).await;
    assert!(matches!(stale, Err(RegistryError::LeaseFenced { .. })), "{stale:?}");
    assert_eq!(registry.events_after("p", 0).await.expect("read").len(), 8, "the stale append appended nothing");

    let completed = registry.complete_process("p", ProcessAwaitOutput::success(json!("done"))).await;
    assert!(completed.expect("completed").is_terminal());
    assert_eq!(registry.await_process("p").await.expect("awaited"), ProcessAwaitOutput::success(json!("done")));
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_outside_the_runtime_tasks_answer_as_from_a_task_on_memory() {
    let registry = ActorProcessRegistry::start(RegistryConfig::default()).await.expect("started");
    both_callers_get_the_same_answers(registry).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_outside_the_runtime_tasks_answer_as_from_a_task_on_sqlite() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("outside.db");
    let registry = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("opened");
    both_callers_get_the_same_answers(registry).await;
    let reopened = ActorProcessRegistry::open(&path, RegistryConfig::default()).await.expect("reopened");
    let events = reopened.events_after("p", 0).await.expect("read after reopen");
    assert_eq!(events.len(), 9, "six ticks, one keyed, one fenced and the completion are durable");
    reopened.shutdown().await;
}
