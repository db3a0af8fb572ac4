//! Supervision, passivation and mailbox bounds of the actor runtime.

use std::sync::Arc;
use std::time::Duration;

use process_registry::runtime::{MailboxConfig, OverloadPolicy, RestartIntensity};
use process_registry::{
    ActorProcessRegistry, ManualClock, ProcessEventAppendRequest, ProcessEventType, ProcessInput, ProcessRegistration,
    ProcessRegistry, RegistryConfig, RegistryError,
};
use serde_json::json;

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", serde_json::Map::new()))
        .with_extra_event_types(vec![ProcessEventType::new("tick", json!({"type": "object"}))])
}

fn tick() -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("tick", json!({}))
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
    assert_eq!(registry.stats().live_actors, 0, "registration starts no actor");
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
                for n in 1..=200u64 {
                    let appended = registry.append_event(&process, tick()).await.unwrap();
                    assert_eq!(appended.event.sequence, n);
                    let seen = registry.wait_event_after(&process, "tick", n - 1).await.unwrap();
                    assert_eq!(seen.sequence, n);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sweeper.await.unwrap();
    assert!(registry.stats().passivations > 0, "the race was exercised");
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
