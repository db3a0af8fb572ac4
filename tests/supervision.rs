//! Supervision, passivation and mailbox bounds of the actor runtime.

use std::sync::Arc;
use std::time::Duration;

use process_registry::runtime::{MailboxConfig, OverloadPolicy, RestartIntensity};
use process_registry::testing::until;
use process_registry::{
    ActorProcessRegistry, ManualClock, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType,
    ProcessExternalRef, ProcessInput, ProcessListFilter, ProcessRegistration, ProcessRegistry, ProcessValueSelector,
    ProcessWakeSpec, RegistryConfig, RegistryError,
};
use serde_json::json;

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new()))
        .with_extra_event_types(vec![ProcessEventType::new("tick", json!({"type": "object"}))])
}

fn tick() -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("tick", json!({}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_restarts_than_the_intensity_quarantines_only_that_process() {
    let clock = Arc::new(ManualClock::new(1_000));
    let config = RegistryConfig::default()
        .with_clock(clock.clone())
        .with_restart_intensity(RestartIntensity { max_restarts: 2, within_ms: 1_000 });
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    registry.register_process(registration("crashy")).await.unwrap();
    registry.register_process(registration("calm")).await.unwrap();
    registry.append_event("crashy", tick()).await.unwrap();
    for restarts in 1..=2 {
        registry.inject_panic("crashy").await.unwrap();
        until(|| registry.stats().restarts == restarts).await;
    }
    assert_eq!(registry.events_after("crashy", 0).await.unwrap().len(), 1, "state intact after restarts");
    registry.inject_panic("crashy").await.unwrap();
    until(|| !registry.stats().quarantined.is_empty()).await;
    assert_eq!(registry.stats().quarantined, vec!["crashy".to_owned()]);
    let refused = registry.append_event("crashy", tick()).await;
    assert!(matches!(refused, Err(RegistryError::Quarantined { .. })), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("crashy"));
    assert!(registry.get_process("crashy").await.is_some(), "its record stays readable");
    assert_eq!(registry.append_event("calm", tick()).await.unwrap().event.sequence, 1);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_spread_beyond_the_window_never_quarantine() {
    let clock = Arc::new(ManualClock::new(1_000));
    let config = RegistryConfig::default()
        .with_clock(clock.clone())
        .with_restart_intensity(RestartIntensity { max_restarts: 1, within_ms: 100 });
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    for restarts in 1..=4 {
        registry.inject_panic("p").await.unwrap();
        until(|| registry.stats().restarts == restarts).await;
        clock.advance(101);
    }
    assert!(registry.stats().quarantined.is_empty());
    registry.append_event("p", tick()).await.unwrap();
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_actors_passivate_and_reactivate_with_their_state() {
    let clock = Arc::new(ManualClock::new(1_000));
    let config = RegistryConfig::default().with_clock(clock.clone()).with_passivation(Some(Duration::from_secs(60)));
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    assert_eq!(registry.stats().live_actors, 1, "registration started the actor");
    registry.append_event("p", tick()).await.unwrap();
    let lease = registry.claim_process_lease("p", "worker", 3_600_000).await.unwrap();
    assert_eq!(registry.stats().live_actors, 1);
    registry.passivate_idle();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(registry.stats().passivations, 0, "not idle long enough yet");
    clock.advance(60_000);
    registry.passivate_idle();
    until(|| registry.stats().live_actors == 0).await;
    assert_eq!(registry.stats().passivations, 1);
    let held = registry.claim_process_lease("p", "other", 1_000).await;
    assert!(matches!(held, Err(RegistryError::LeaseHeld { .. })), "the lease survives passivation: {held:?}");
    assert_eq!(registry.renew_process_lease(&lease, 1_000).await.unwrap().fencing_token, lease.fencing_token);
    assert_eq!(registry.append_event("p", tick()).await.unwrap().event.sequence, 2);
    assert_eq!(registry.stats().activations, 2);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_starts_actors_only_while_the_ready_bound_has_a_place() {
    let clock = Arc::new(ManualClock::new(1_000));
    let config = RegistryConfig::default()
        .with_clock(clock.clone())
        .with_passivation(Some(Duration::from_secs(60)))
        .with_ready_on_register(2);
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    for id in ["a", "b", "c"] {
        registry.register_process(registration(id)).await.unwrap();
    }
    let stats = registry.stats();
    assert_eq!((stats.live_actors, stats.activations), (2, 2), "c found both places held: {stats:?}");

    registry.append_event("a", tick()).await.unwrap();
    assert_eq!(registry.stats().activations, 2, "a's first call found its actor running");
    registry.register_process(registration("d")).await.unwrap();
    assert_eq!(registry.stats().activations, 3, "a's first call gave its place back, so d started");
    registry.register_process(registration("e")).await.unwrap();
    assert_eq!(registry.stats().activations, 3, "b and d hold both places");
    registry.register_process(registration("b")).await.unwrap();
    assert_eq!(registry.stats().activations, 3, "registering b again starts nothing");

    // Passivation gives an uncalled actor's place back too.
    clock.advance(60_000);
    registry.passivate_idle();
    until(|| registry.stats().live_actors == 0).await;
    registry.register_process(registration("f")).await.unwrap();
    let stats = registry.stats();
    assert_eq!((stats.live_actors, stats.activations), (1, 4), "{stats:?}");

    // A process that started passive activates on its first call, as before.
    assert_eq!(registry.append_event("c", tick()).await.unwrap().event.sequence, 1);
    assert_eq!(registry.stats().activations, 5);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_and_first_calls_give_every_ready_place_back() {
    let config = RegistryConfig::default().with_passivation(None).with_ready_on_register(4);
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let id = format!("racer-{i}");
                registry.register_process(registration(&id)).await.unwrap();
                registry.append_event(&id, tick()).await.unwrap().event.sequence
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 1);
    }
    let activations = registry.stats().activations;
    assert_eq!(activations, 64, "each process started once, at registration or at its first call");
    for i in 0..5 {
        registry.register_process(registration(&format!("later-{i}"))).await.unwrap();
    }
    assert_eq!(registry.stats().activations, activations + 4, "all four places were free again, and only four");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_bound_of_zero_starts_no_actor_at_registration() {
    let config = RegistryConfig::default().with_passivation(None).with_ready_on_register(0);
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    assert_eq!(registry.stats().live_actors, 0, "registration starts no actor");
    registry.append_event("p", tick()).await.unwrap();
    assert_eq!((registry.stats().live_actors, registry.stats().activations), (1, 1), "the first call did");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_waiters_keep_their_actor_alive() {
    let clock = Arc::new(ManualClock::new(1_000));
    let config = RegistryConfig::default().with_clock(clock.clone()).with_passivation(Some(Duration::from_secs(60)));
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.wait_event_after("p", "tick", 0).await })
    };
    until(|| registry.stats().parked_waiters == 1).await;
    clock.advance(120_000);
    registry.passivate_idle();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(registry.stats().passivations, 0);
    assert_eq!(registry.stats().live_actors, 1);
    registry.append_event("p", tick()).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap().sequence, 1);
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_racing_passivation_are_never_lost() {
    const ROUNDS_AT_MOST: u64 = 20_000;
    let clock = Arc::new(ManualClock::new(1_000));
    let config = RegistryConfig::default().with_clock(clock.clone()).with_passivation(Some(Duration::from_millis(1)));
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    for id in 0..8 {
        registry.register_process(registration(&format!("p{id}"))).await.unwrap();
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (registry, clock, done) = (registry.clone(), clock.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                clock.advance(5);
                registry.passivate_idle();
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        })
    };
    let workers: Vec<_> = (0..8)
        .map(|id| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let process = format!("p{id}");
                // At least 200 rounds, and on until the sweeper has passivated
                // actors under them: a fast run must not finish before the race.
                for n in 1..=ROUNDS_AT_MOST {
                    let appended = registry.append_event(&process, tick()).await.unwrap();
                    assert_eq!(appended.event.sequence, n);
                    let seen = registry.wait_event_after(&process, "tick", n - 1).await.unwrap();
                    assert_eq!(seen.sequence, n);
                    if n >= 200 && registry.stats().passivations >= 8 {
                        break;
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sweeper.await.unwrap();
    assert!(registry.stats().passivations >= 8, "the race was exercised");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejecting_mailbox_refuses_beyond_its_bound_and_completes_the_rest() {
    let mailbox = MailboxConfig { capacity: 4, policy: OverloadPolicy::Reject };
    let registry = ActorProcessRegistry::start(RegistryConfig::default().with_mailbox(mailbox)).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    let calls: Vec<_> = (0..2_000)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.append_event("p", tick()).await })
        })
        .collect();
    let (mut accepted, mut refused) = (0u64, 0u64);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(RegistryError::Overloaded { capacity: 4, .. }) => refused += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted + refused, 2_000);
    assert_eq!(registry.events_after("p", 0).await.unwrap().len() as u64, accepted, "every accepted call completed");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_100k_callers_on_one_process_waits_at_the_bound_and_completes_every_call() {
    let mailbox = MailboxConfig { capacity: 8, policy: OverloadPolicy::Wait };
    let registry = ActorProcessRegistry::start(RegistryConfig::default().with_mailbox(mailbox)).await.unwrap();
    registry.register_process(registration("p")).await.unwrap();
    let calls: Vec<_> = (0..100_000)
        .map(|_| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.append_event("p", tick()).await.map(|result| result.event.sequence) })
        })
        .collect();
    let mut sequences = Vec::new();
    for call in calls {
        sequences.push(call.await.unwrap().unwrap());
    }
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=100_000).collect::<Vec<u64>>());
    registry.shutdown().await;
}

fn wake_registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new())).with_extra_event_types(vec![
        ProcessEventType::new("tick", json!({"type": "object"})),
        ProcessEventType::new("poke", json!({"type": "object"}))
            .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Const(json!("poked")))),
    ])
}

/// A registry that quarantines a process on its second crash within a minute.
async fn quarantining_registry() -> ActorProcessRegistry {
    ActorProcessRegistry::start(quarantining_config()).await.unwrap()
}

fn quarantining_config() -> RegistryConfig {
    RegistryConfig::default()
        .with_clock(Arc::new(ManualClock::new(1_000)))
        .with_restart_intensity(RestartIntensity { max_restarts: 1, within_ms: 60_000 })
}

async fn crash_until_quarantined(registry: &ActorProcessRegistry, process_id: &str) {
    let restarts = registry.stats().restarts;
    registry.inject_panic(process_id).await.unwrap();
    until(|| registry.stats().restarts == restarts + 1).await;
    registry.inject_panic(process_id).await.unwrap();
    until(|| registry.stats().quarantined.iter().any(|id| id == process_id)).await;
}

fn is_quarantined<T: std::fmt::Debug>(result: &Result<T, RegistryError>) -> bool {
    matches!(result, Err(RegistryError::Quarantined { process_id }) if process_id == "crashy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_process_answers_reads_of_its_committed_state_and_refuses_mutations_and_waits() {
    quarantined_reads_and_refusals(quarantining_registry().await).await;
}

/// The same on SQLite, which answers reads from what it keeps of running
/// actors: a quarantined process has none (the quarantine releases it), so
/// the first read comes from its read-only view, loaded from the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_process_on_sqlite_answers_reads_from_its_committed_view() {
    let directory = tempfile::tempdir().unwrap();
    let registry =
        ActorProcessRegistry::open(directory.path().join("registry.db"), quarantining_config()).await.unwrap();
    quarantined_reads_and_refusals(registry).await;
}

/// A quarantine is recorded by a durable store: a registry reopened on the
/// file keeps the process quarantined (reads answer, mutations are
/// refused, the worklist leaves it out) until an operator releases it, and
/// a release is recorded too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_on_sqlite_survives_reopen_until_it_is_released() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("registry.db");
    let open = || ActorProcessRegistry::open(&path, quarantining_config());
    quarantine_survives_reopen(open).await;
}

/// The same on PostgreSQL: a node connecting later finds the quarantine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_on_postgres_survives_reconnect_until_it_is_released() {
    let Some(server) = process_registry::testing::postgres::server() else {
        return;
    };
    let url = process_registry::testing::postgres::fresh_database(&server).await;
    let open = || ActorProcessRegistry::connect(&url, quarantining_config());
    quarantine_survives_reopen(open).await;
}

async fn quarantine_survives_reopen<F, O>(open: O)
where
    O: Fn() -> F,
    F: std::future::Future<Output = Result<ActorProcessRegistry, RegistryError>>,
{
    let registry = open().await.unwrap();
    registry.register_process(registration("crashy")).await.unwrap();
    registry.register_process(registration("calm")).await.unwrap();
    registry.append_event("crashy", tick()).await.unwrap();
    crash_until_quarantined(&registry, "crashy").await;
    registry.shutdown().await;

    let reopened = open().await.unwrap();
    assert_eq!(reopened.stats().quarantined, vec!["crashy".to_owned()], "the quarantine was recorded");
    assert!(is_quarantined(&reopened.append_event("crashy", tick()).await));
    assert_eq!(reopened.events_after("crashy", 0).await.unwrap().len(), 1, "its log still answers");
    let worklist: Vec<String> = reopened.list_non_terminal().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(worklist, vec!["calm".to_owned()]);
    reopened.release_quarantine("crashy").await.unwrap();
    reopened.shutdown().await;

    let released = open().await.unwrap();
    assert!(released.stats().quarantined.is_empty(), "the release was recorded");
    assert_eq!(released.append_event("crashy", tick()).await.unwrap().event.sequence, 2);
    released.shutdown().await;
}

async fn quarantined_reads_and_refusals(registry: ActorProcessRegistry) {
    registry.register_process(wake_registration("crashy")).await.unwrap();
    registry.register_process(wake_registration("calm")).await.unwrap();
    registry.append_event("crashy", tick()).await.unwrap();
    registry.append_event("crashy", ProcessEventAppendRequest::new("poke", json!({}))).await.unwrap();
    registry.append_event("crashy", ProcessEventAppendRequest::new("poke", json!({}))).await.unwrap();
    registry.ack_wake("crashy", 2).await.unwrap();
    let lease = registry.claim_process_lease("crashy", "worker", 60_000).await.unwrap();
    let parked = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.wait_event_after("crashy", "tick", 1).await })
    };
    until(|| registry.stats().parked_waiters == 1).await;

    crash_until_quarantined(&registry, "crashy").await;
    assert!(is_quarantined(&parked.await.unwrap()), "a parked waiter learns of the quarantine");
    let (activations, live_actors) = (registry.stats().activations, registry.stats().live_actors);

    let events = registry.events_after("crashy", 0).await.unwrap();
    assert_eq!(events.iter().map(|event| event.sequence).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(registry.events_after("crashy", 2).await.unwrap().len(), 1);
    assert_eq!(registry.count_events_through("crashy", "poke", 3).await.unwrap(), 2);
    assert_eq!(registry.recent_events("crashy", 1).await.unwrap()[0].sequence, 3);
    let unacked = registry.wake_events_after("crashy", 0).await.unwrap();
    assert_eq!(unacked.iter().map(|event| event.sequence).collect::<Vec<_>>(), vec![3], "acks are kept");
    assert!(registry.get_process("crashy").await.is_some());
    assert!(
        matches!(registry.events_after("nobody", 0).await, Err(RegistryError::UnknownProcess { .. })),
        "unknown ids stay unknown"
    );
    let stats = registry.stats();
    assert_eq!(stats.activations, activations, "reads of a quarantined process start no actor");
    assert_eq!(stats.live_actors, live_actors);

    assert!(is_quarantined(&registry.append_event("crashy", tick()).await));
    assert!(is_quarantined(&registry.complete_process("crashy", ProcessAwaitOutput::success(json!(1))).await));
    assert!(is_quarantined(&registry.ack_wake("crashy", 3).await));
    assert!(is_quarantined(&registry.clear_process_wait("crashy").await));
    let external = ProcessExternalRef { backend: "queue".into(), id: "1".into(), metadata: None };
    assert!(is_quarantined(&registry.set_external_ref("crashy", external).await));
    assert!(is_quarantined(&registry.claim_process_lease("crashy", "other", 1_000).await));
    assert!(is_quarantined(&registry.renew_process_lease(&lease, 1_000).await));
    assert!(is_quarantined(&registry.wait_event_after("crashy", "tick", 0).await), "even an answerable wait");
    assert!(is_quarantined(&registry.await_process("crashy").await));
    assert_eq!(registry.events_after("crashy", 0).await.unwrap().len(), 3, "refusals changed nothing");

    assert_eq!(registry.stats().quarantined, vec!["crashy".to_owned()]);
    let worklist: Vec<String> = registry.list_non_terminal().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(worklist, vec!["calm".to_owned()], "no worker can claim it, so the worklist leaves it out");
    let running: Vec<String> =
        registry.list_processes(&ProcessListFilter::default()).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(running, vec!["calm".to_owned(), "crashy".to_owned()], "the inventory still lists it");
    registry.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_a_quarantine_makes_the_process_usable_again_with_a_fresh_failure_history() {
    let registry = quarantining_registry().await;
    registry.register_process(wake_registration("crashy")).await.unwrap();
    registry.append_event("crashy", tick()).await.unwrap();
    crash_until_quarantined(&registry, "crashy").await;

    registry.release_quarantine("crashy").await.unwrap();
    assert!(registry.stats().quarantined.is_empty());
    let worklist: Vec<String> = registry.list_non_terminal().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(worklist, vec!["crashy".to_owned()], "back on the worklist");
    assert_eq!(registry.append_event("crashy", tick()).await.unwrap().event.sequence, 2, "the log continues");

    // One crash is within the intensity (max 1): with the failures from
    // before the release forgotten, it restarts instead of quarantining.
    let restarts = registry.stats().restarts;
    registry.inject_panic("crashy").await.unwrap();
    until(|| registry.stats().restarts == restarts + 1).await;
    assert!(registry.stats().quarantined.is_empty());
    assert_eq!(registry.append_event("crashy", tick()).await.unwrap().event.sequence, 3);

    let again = registry.release_quarantine("crashy").await;
    assert!(matches!(&again, Err(RegistryError::NotQuarantined { process_id }) if process_id == "crashy"), "{again:?}");
    let unknown = registry.release_quarantine("nobody").await;
    assert!(matches!(unknown, Err(RegistryError::UnknownProcess { .. })), "{unknown:?}");
    registry.shutdown().await;
    let stopped = registry.release_quarantine("crashy").await;
    assert!(matches!(stopped, Err(RegistryError::Stopped { .. })), "{stopped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_reject_a_call_on_an_idle_process_racing_passivation_is_never_overloaded() {
    // Each process has one sequential caller, so a call never finds another
    // in flight and any `Overloaded` is spurious. Before each call the
    // caller makes its process idle long enough and asks for a sweep, so
    // calls keep racing passivations.
    let clock = Arc::new(ManualClock::new(1_000));
    let mailbox = MailboxConfig { capacity: 2, policy: OverloadPolicy::Reject };
    let config = RegistryConfig::default()
        .with_clock(clock.clone())
        .with_mailbox(mailbox)
        .with_passivation(Some(Duration::from_millis(1)));
    let registry = ActorProcessRegistry::start(config).await.unwrap();
    const PROCESSES: usize = 4;
    for id in 0..PROCESSES {
        registry.register_process(registration(&format!("p{id}"))).await.unwrap();
    }
    let callers: Vec<_> = (0..PROCESSES)
        .map(|id| {
            let (registry, clock) = (registry.clone(), clock.clone());
            tokio::spawn(async move {
                let process = format!("p{id}");
                for n in 1..=6_000u64 {
                    clock.advance(5);
                    registry.passivate_idle();
                    tokio::task::yield_now().await;
                    if n % 8 == 0 {
                        let appended = registry.append_event(&process, tick()).await;
                        assert_eq!(appended.unwrap().event.sequence, n / 8, "append {n} on {process}");
                    } else {
                        let read = registry.count_events_through(&process, "tick", n).await;
                        assert_eq!(read.unwrap(), n / 8, "read {n} on {process}");
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    assert!(registry.stats().passivations > 20, "the race was exercised: {:?}", registry.stats());
    registry.shutdown().await;
}
