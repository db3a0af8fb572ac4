//! Input hardening: defects found by independent probing, each pinned by
//! the behaviour it broke, on the actor registry and on the global-lock
//! baseline (which decides with the same rules and gets the same fixes).
//!
//! - Scope ids never collide: deleting one session never touches another
//!   session's grants.
//! - A wait on an event type the process does not declare is refused, not
//!   parked until shutdown.
//! - Configurations that could kill the supervisor are refused by `start`.
//! - Caller input cannot grow memory without bound: registration bytes,
//!   materialized template bytes.

use std::sync::Arc;
use std::time::Duration;

use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::{
    ActorProcessRegistry, Limits, MailboxConfig, ManualClock, OverloadPolicy, ProcessEventAppendRequest,
    ProcessEventType, ProcessHandleDescriptor, ProcessInput, ProcessRegistration, ProcessRegistry,
    ProcessValueSelector, ProcessWakeSpec, RegistryConfig, RegistryError, RestartIntensity, SessionScope,
};
use serde_json::{json, Map};

type Registry = Arc<dyn ProcessRegistry>;

/// The actor registry and the baseline, both with `limits`.
async fn registries_with(limits: Limits) -> Vec<(&'static str, Registry)> {
    let actor = ActorProcessRegistry::start(RegistryConfig::default().with_limits(limits.clone()))
        .await
        .expect("the actor registry starts");
    vec![("actor", Arc::new(actor) as Registry), ("baseline", Arc::new(GlobalLockRegistry::new().with_limits(limits)))]
}

async fn registries() -> Vec<(&'static str, Registry)> {
    registries_with(Limits::default()).await
}

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", Map::new()))
        .with_extra_event_types(vec![ProcessEventType::new("note", json!({"type": "object"}))
            .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Payload))])
}

fn label(text: &str) -> ProcessHandleDescriptor {
    ProcessHandleDescriptor { kind: None, label: Some(text.to_owned()) }
}

#[track_caller]
fn assert_invalid_scope<T: std::fmt::Debug>(what: &str, result: Result<T, RegistryError>) {
    match result {
        Err(RegistryError::InvalidScope { .. }) => {}
        other => panic!("{what}: expected InvalidScope, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Scope ids.
// ---------------------------------------------------------------------------

/// Session `a/frame:b` and session `a` with frame `b` would share the scope
/// id `session:a/frame:b`: the first is refused, so the second's grants are
/// its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_session_never_touches_the_grants_of_another_session() {
    for (name, registry) in registries().await {
        registry.register_process(registration("p")).await.expect("registered");
        let framed = SessionScope::with_frame("a", "b");
        let lookalike = SessionScope::new("a/frame:b");
        registry.grant_handle(&framed, "p", label("framed")).await.expect("granted");
        assert_invalid_scope(
            &format!("{name}: grant to `a/frame:b`"),
            registry.grant_handle(&lookalike, "p", label("x")).await,
        );
        assert_invalid_scope(
            &format!("{name}: deleting session `a/frame:b`"),
            registry.delete_session_process_state("a/frame:b").await,
        );
        assert!(registry.has_handle_grant(&framed, "p").await.expect("has"), "{name}: the framed grant is intact");
        let listed = registry.list_handle_grants(&framed).await.expect("listed");
        assert_eq!(listed.len(), 1, "{name}");
        assert_eq!((listed[0].0.session_id.as_str(), &listed[0].0.descriptor), ("a", &label("framed")), "{name}");
        let report = registry.delete_session_process_state("a").await.expect("session `a` is deleted");
        assert_eq!(report.revoked_handle_count, 1, "{name}");
        assert_eq!(report.orphaned_process_ids, ["p"], "{name}");
    }
}

/// Every call that takes a scope or a session id refuses one whose id could
/// be another scope's, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_that_could_share_an_id_are_refused_by_every_call() {
    let refused = [
        SessionScope::new("a/frame:b"),
        SessionScope::with_frame("a/frame:b", "c"),
        SessionScope::with_frame("a", "b/frame:c"),
        SessionScope::new(""),
        SessionScope::with_frame(" ", "f"),
    ];
    for (name, registry) in registries().await {
        registry.register_process(registration("p")).await.expect("registered");
        let good = SessionScope::with_frame("a", "b");
        registry.grant_handle(&good, "p", label("good")).await.expect("granted");
        for scope in &refused {
            let what = |call: &str| format!("{name}: {call} with {scope:?}");
            assert_invalid_scope(&what("grant_handle"), registry.grant_handle(scope, "p", label("x")).await);
            assert_invalid_scope(&what("revoke_handle"), registry.revoke_handle(scope, "p").await);
            let ids = ["p".to_owned()];
            assert_invalid_scope(&what("transfer from"), registry.transfer_handle_grants(scope, &good, &ids).await);
            assert_invalid_scope(&what("transfer to"), registry.transfer_handle_grants(&good, scope, &ids).await);
            assert_invalid_scope(&what("list_handle_grants"), registry.list_handle_grants(scope).await);
            assert_invalid_scope(&what("list_live_handle_grants"), registry.list_live_handle_grants(scope).await);
            assert_invalid_scope(&what("has_handle_grant"), registry.has_handle_grant(scope, "p").await);
            let target = registration("q").with_wake_target(scope.clone());
            assert_invalid_scope(&what("a registration's wake target"), registry.register_process(target).await);
            let request = ProcessEventAppendRequest::new("note", json!({})).with_wake_target_scope(scope.clone());
            assert_invalid_scope(&what("an append's wake target"), registry.append_event("p", request).await);
        }
        for session_id in ["a/frame:b", "", "  "] {
            let deleted = registry.delete_session_process_state(session_id).await;
            assert_invalid_scope(&format!("{name}: deleting session {session_id:?}"), deleted);
        }
        assert!(registry.get_process("q").await.is_none(), "{name}: a refused registration registers nothing");
        assert!(
            registry.events_after("p", 0).await.expect("events").is_empty(),
            "{name}: a refused append appends nothing"
        );
        assert_eq!(registry.list_handle_grants(&good).await.expect("listed").len(), 1, "{name}: grants unchanged");
    }
}

/// Ids that only resemble the separator, and an empty frame (no frame, as
/// the spec says), are scopes like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_misses_of_the_frame_separator_are_ordinary_scopes() {
    for (name, registry) in registries().await {
        registry.register_process(registration("p")).await.expect("registered");
        let scopes = [
            SessionScope::new("a/frame"),
            SessionScope::with_frame("a", "frame:b"),
            SessionScope::with_frame("a/", "/frame"),
            SessionScope::with_frame("a", ""),
        ];
        for scope in &scopes {
            registry
                .grant_handle(scope, "p", label("x"))
                .await
                .unwrap_or_else(|err| panic!("{name}: {scope:?}: {err}"));
            assert!(registry.has_handle_grant(scope, "p").await.expect("has"), "{name}: {scope:?}");
        }
        assert!(registry.has_handle_grant(&SessionScope::new("a"), "p").await.expect("has"), "{name}: empty frame");
        let request = ProcessEventAppendRequest::new("note", json!({})).with_wake_target_scope(scopes[1].clone());
        let delivery = registry.append_event("p", request).await.expect("appended").wake_delivery.expect("a wake");
        assert_eq!(delivery.target_scope_id, "session:a/frame:frame:b", "{name}");
        let report = registry.delete_session_process_state("a").await.expect("deleted");
        assert_eq!(report.revoked_handle_count, 2, "{name}: `a` with frame `frame:b`, and `a` itself");
    }
}

// ---------------------------------------------------------------------------
// Waits and counts.
// ---------------------------------------------------------------------------

/// A guard against hangs only: nothing here measures time.
const GUARD: Duration = Duration::from_secs(20);

/// Declared types never change, so a wait on a type the process does not
/// declare could only be answered by shutdown: it is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_an_undeclared_event_type_is_refused_instead_of_parking() {
    for (name, registry) in registries().await {
        registry.register_process(registration("p")).await.expect("registered");
        for after in [0, 1, u64::MAX] {
            let waited = tokio::time::timeout(GUARD, registry.wait_event_after("p", "ntoe", after)).await;
            match waited.unwrap_or_else(|_| panic!("{name}: wait_event_after on an undeclared type hung")) {
                Err(RegistryError::UndeclaredEventType { process_id, event_type }) => {
                    assert_eq!((process_id.as_str(), event_type.as_str()), ("p", "ntoe"), "{name}");
                }
                other => panic!("{name}: expected UndeclaredEventType, got {other:?}"),
            }
        }
        // A declared type still parks and is answered by the next append.
        let waiter = {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move { registry.wait_event_after("p", "note", 0).await })
        };
        registry.append_event("p", ProcessEventAppendRequest::new("note", json!({}))).await.expect("appended");
        let event = tokio::time::timeout(GUARD, waiter).await.expect("answered").expect("joined").expect("an event");
        assert_eq!((event.event_type.as_str(), event.sequence), ("note", 1), "{name}");
        // Counting an undeclared type is a correct zero, not an error.
        assert_eq!(registry.count_events_through("p", "ntoe", u64::MAX).await.expect("counted"), 0, "{name}");
    }
}

/// The event type names of waits and counts get the id byte limit, as the
/// names of appends and declarations do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_type_names_of_waits_and_counts_are_bounded_by_the_id_limit() {
    let limits = Limits { max_id_bytes: 40, ..Limits::default() };
    for (name, registry) in registries_with(limits.clone()).await {
        registry.register_process(registration("p")).await.expect("registered");
        let long = "t".repeat(limits.max_id_bytes + 1);
        let waited = tokio::time::timeout(GUARD, registry.wait_event_after("p", &long, 0)).await;
        match waited.unwrap_or_else(|_| panic!("{name}: a wait on an over-long type hung")) {
            Err(RegistryError::LimitExceeded { limit: 40, .. }) => {}
            other => panic!("{name}: wait: expected LimitExceeded, got {other:?}"),
        }
        match registry.count_events_through("p", &long, 1).await {
            Err(RegistryError::LimitExceeded { limit: 40, .. }) => {}
            other => panic!("{name}: count: expected LimitExceeded, got {other:?}"),
        }
        let at_limit = "t".repeat(limits.max_id_bytes);
        assert_eq!(registry.count_events_through("p", &at_limit, 1).await.expect("counted"), 0, "{name}");
    }
}

// ---------------------------------------------------------------------------
// Configuration.
// ---------------------------------------------------------------------------

fn with_capacity(capacity: usize) -> RegistryConfig {
    RegistryConfig::default().with_mailbox(MailboxConfig { capacity, policy: OverloadPolicy::Wait })
}

fn with_limits(limits: Limits) -> RegistryConfig {
    RegistryConfig::default().with_limits(limits)
}

/// A mailbox bound tokio's semaphore refuses would panic the supervisor at
/// the first activation; one above `u32::MAX` would let passivation take
/// every permit while calls are in flight; the rest make the registry
/// refuse everything. `start` refuses them all with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_configurations_that_could_kill_the_supervisor() {
    let limits = Limits::default;
    let cases: Vec<(&str, RegistryConfig)> = vec![
        ("mailbox capacity 0", with_capacity(0)),
        ("mailbox capacity above Semaphore::MAX_PERMITS", with_capacity(tokio::sync::Semaphore::MAX_PERMITS + 1)),
        ("mailbox capacity above u32::MAX", with_capacity(u32::MAX as usize + 1)),
        ("mailbox capacity usize::MAX", with_capacity(usize::MAX)),
        (
            "a restart window of 0 ms",
            RegistryConfig::default().with_restart_intensity(RestartIntensity { max_restarts: 5, within_ms: 0 }),
        ),
        ("passivation after 0", RegistryConfig::default().with_passivation(Some(Duration::ZERO))),
        ("passivation after 500 us", RegistryConfig::default().with_passivation(Some(Duration::from_micros(500)))),
        ("passivation after Duration::MAX", RegistryConfig::default().with_passivation(Some(Duration::MAX))),
        ("0 id bytes", with_limits(Limits { max_id_bytes: 0, ..limits() })),
        ("id bytes below the core event type names", with_limits(Limits { max_id_bytes: 23, ..limits() })),
        ("0 payload bytes", with_limits(Limits { max_payload_bytes: 0, ..limits() })),
        ("JSON depth 0", with_limits(Limits { max_json_depth: 0, ..limits() })),
        ("JSON depth 1, below the core schemas", with_limits(Limits { max_json_depth: 1, ..limits() })),
        ("0 event types", with_limits(Limits { max_event_types: 0, ..limits() })),
        ("fewer event types than the core ones", with_limits(Limits { max_event_types: 5, ..limits() })),
    ];
    for (what, config) in cases {
        match ActorProcessRegistry::start(config).await {
            Err(RegistryError::InvalidConfig { reason }) => assert!(!reason.is_empty(), "{what}"),
            Err(other) => panic!("{what}: expected InvalidConfig, got {other}"),
            Ok(registry) => {
                registry.shutdown().await;
                panic!("{what}: the registry started");
            }
        }
    }
}

/// The bounds are inclusive: the largest mailbox bound works, passivation
/// included, and so do the smallest limits that admit the core types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extreme_accepted_configurations_work() {
    let clock = Arc::new(ManualClock::new(1_000));
    let config = with_capacity(MailboxConfig::MAX_CAPACITY)
        .with_clock(clock.clone())
        .with_passivation(Some(Duration::from_millis(1)));
    let registry = ActorProcessRegistry::start(config).await.expect("the largest mailbox bound is accepted");
    registry.register_process(registration("p")).await.expect("registered");
    registry.append_event("p", ProcessEventAppendRequest::new("note", json!({}))).await.expect("appended");
    clock.advance(10);
    registry.passivate_idle();
    for _ in 0..10_000 {
        if registry.stats().passivations == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(registry.stats().passivations, 1, "{:?}", registry.stats());
    let again = registry.append_event("p", ProcessEventAppendRequest::new("note", json!({}))).await.expect("appended");
    assert_eq!(again.event.sequence, 2);
    registry.shutdown().await;

    let smallest = Limits { max_id_bytes: 24, max_payload_bytes: 1, max_json_depth: 2, max_event_types: 6 };
    let registry = ActorProcessRegistry::start(with_limits(smallest)).await.expect("the smallest limits are accepted");
    let bare = ProcessRegistration::new("p", ProcessInput::definition("job", Map::new()));
    registry.register_process(bare).await.expect("a registration of the core types fits");
    registry.shutdown().await;
}
