//! Graceful shutdown under load: every call in flight and every parked
//! caller is answered within a bound, and no task is left behind.
//!
//! With [`CALLS`] calls in flight (appends and reads across [`PROCESSES`]
//! processes) and [`WAITERS`] callers parked (`wait_event_after` on a type
//! nothing appends, and `await_process` on processes nothing completes),
//! `shutdown()` must return, and every one of those tasks must finish,
//! within [`BOUND`] of shutdown starting. Every call gets its result or
//! `RegistryError::Stopped`; every parked caller gets `Stopped`. Afterwards
//! no tokio task the registry started is left: the runtime's alive-task
//! count is back to what it was before the registry started.
//!
//! The test builds its own fresh multi-thread runtime, so the task count and
//! the timing see nothing but this registry and its callers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::{
    ActorProcessRegistry, ProcessEventAppendRequest, ProcessEventType, ProcessInput, ProcessRegistration,
    ProcessRegistry, RegistryConfig, RegistryError,
};
use serde_json::json;
use tokio::sync::Semaphore;

const PROCESSES: usize = 100;
const CALLS: usize = 10_000;
const WAITERS: usize = 10_000;
/// The bound shutdown is held to, from its start to the last task finishing.
const BOUND: Duration = Duration::from_secs(1);

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("load", serde_json::Map::new())).with_extra_event_types(vec![
        ProcessEventType::new("tick", json!({"type": "object"})),
        ProcessEventType::new("never", json!({"type": "object"})),
    ])
}

/// What one task saw.
#[derive(Debug)]
enum Outcome {
    Answered,
    Stopped,
    Other(String),
}

fn outcome<T>(result: Result<T, RegistryError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Answered,
        Err(RegistryError::Stopped { .. }) => Outcome::Stopped,
        Err(err) => Outcome::Other(err.to_string()),
    }
}

/// One call in flight: a mix of appends and reads.
async fn call(registry: ActorProcessRegistry, index: usize) -> Outcome {
    let id = format!("p{}", index % PROCESSES);
    match index % 5 {
        0 | 1 => outcome(registry.append_event(&id, ProcessEventAppendRequest::new("tick", json!({"i": index}))).await),
        2 => outcome(registry.events_after(&id, 0).await),
        3 => outcome(registry.count_events_through(&id, "tick", u64::MAX).await),
        _ => outcome(registry.recent_events(&id, 10).await),
    }
}

async fn alive_tasks_settle_to(expected: usize) -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    for _ in 0..200 {
        if metrics.num_alive_tasks() == expected {
            return expected;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    metrics.num_alive_tasks()
}

async fn shutdown_under_load() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();

    let registry = ActorProcessRegistry::start(RegistryConfig::default()).await.expect("registry starts");
    for index in 0..PROCESSES {
        registry.register_process(registration(&format!("p{index}"))).await.expect("register");
    }

    // 10k parked callers, half on an event type nothing appends, half on an outcome nothing completes.
    let waiters: Vec<_> = (0..WAITERS)
        .map(|index| {
            let registry = registry.clone();
            let id = format!("p{}", index % PROCESSES);
            tokio::spawn(async move {
                if index % 2 == 0 {
                    outcome(registry.wait_event_after(&id, "never", 0).await)
                } else {
                    outcome(registry.await_process(&id).await)
                }
            })
        })
        .collect();
    let parking = Instant::now();
    while registry.stats().parked_waiters < WAITERS as u64 {
        assert!(
            parking.elapsed() < Duration::from_secs(60),
            "only {} of {WAITERS} callers parked: {:?}",
            registry.stats().parked_waiters,
            registry.stats()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // 10k calls, all released at once just before shutdown.
    let gate = Arc::new(Semaphore::new(0));
    let calls: Vec<_> = (0..CALLS)
        .map(|index| {
            let (registry, gate) = (registry.clone(), Arc::clone(&gate));
            tokio::spawn(async move {
                let _permit = gate.acquire().await.expect("gate");
                call(registry, index).await
            })
        })
        .collect();
    gate.add_permits(CALLS);
    tokio::task::yield_now().await;
    let in_flight_at_start = calls.iter().filter(|task| !task.is_finished()).count();

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), registry.shutdown()).await.expect("shutdown returns");
    let shutdown_took = started.elapsed();
    let mut answered = 0;
    let mut stopped = 0;
    let mut other = Vec::new();
    for task in calls {
        match tokio::time::timeout(Duration::from_secs(30), task).await.expect("a call finishes").expect("call task") {
            Outcome::Answered => answered += 1,
            Outcome::Stopped => stopped += 1,
            Outcome::Other(err) => other.push(err),
        }
    }
    let mut waiters_stopped = 0;
    let mut waiters_other = Vec::new();
    for task in waiters {
        match tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a waiter finishes")
            .expect("waiter task")
        {
            Outcome::Stopped => waiters_stopped += 1,
            seen => waiters_other.push(format!("{seen:?}")),
        }
    }
    let all_done = started.elapsed();

    let after = registry.append_event("p0", ProcessEventAppendRequest::new("tick", json!({}))).await;
    assert!(matches!(after, Err(RegistryError::Stopped { .. })), "a call after shutdown: {after:?}");
    let tasks_after = alive_tasks_settle_to(tasks_before).await;
    eprintln!(
        "shutdown with {in_flight_at_start} of {CALLS} calls still in flight and {WAITERS} callers parked: \
         shutdown() returned after {shutdown_took:?}, every task finished after {all_done:?}; \
         calls answered {answered}, stopped {stopped}; waiters stopped {waiters_stopped}; \
         alive tokio tasks {tasks_before} before, {tasks_after} after; stats {:?}",
        registry.stats()
    );

    assert!(other.is_empty(), "{} calls got neither a result nor Stopped, e.g. {:?}", other.len(), &other[..1]);
    assert_eq!(answered + stopped, CALLS);
    assert!(
        waiters_other.is_empty(),
        "{} parked callers did not get Stopped, e.g. {:?}",
        waiters_other.len(),
        &waiters_other[..1]
    );
    assert_eq!(waiters_stopped, WAITERS);
    assert!(shutdown_took <= BOUND, "shutdown() took {shutdown_took:?} (bound {BOUND:?})");
    assert!(all_done <= BOUND, "the last caller finished {all_done:?} after shutdown started (bound {BOUND:?})");
    assert_eq!(tasks_after, tasks_before, "tokio tasks leaked by the registry");
    assert_eq!(registry.stats().parked_waiters, 0, "{:?}", registry.stats());
    assert_eq!(registry.stats().live_actors, 0, "{:?}", registry.stats());
}

#[test]
fn shutdown_under_load_ends_within_a_second_and_leaks_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a fresh runtime");
    runtime.block_on(shutdown_under_load());
}
