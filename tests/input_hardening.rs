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
//!   materialized template bytes, grant descriptors.

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
async fn grant_descriptors_and_granted_ids_are_bounded() {
    let limits = Limits { max_id_bytes: 64, max_payload_bytes: 256, ..Limits::default() };
    for (name, registry) in registries_with(limits).await {
        registry.register_process(registration("p")).await.expect("register");
        let scope = SessionScope::new("s");
        let long_kind = ProcessHandleDescriptor { kind: Some("k".repeat(65)), label: None };
        let refused = registry.grant_handle(&scope, "p", long_kind).await;
        assert!(matches!(refused, Err(RegistryError::LimitExceeded { .. })), "{name}: a long kind: {refused:?}");
        let refused = registry.grant_handle(&scope, "p", label(&"l".repeat(257))).await;
        assert!(matches!(refused, Err(RegistryError::LimitExceeded { .. })), "{name}: a long label: {refused:?}");
        let refused = registry.grant_handle(&scope, &"p".repeat(65), label("x")).await;
        assert!(matches!(refused, Err(RegistryError::LimitExceeded { .. })), "{name}: a long id: {refused:?}");
        let refused = registry.grant_handle(&scope, "p\0q", label("x")).await;
        assert!(matches!(refused, Err(RegistryError::UnknownProcess { .. })), "{name}: a NUL id: {refused:?}");
        assert_eq!(registry.list_handle_grants(&scope).await, Ok(vec![]), "{name}: nothing was granted");
        registry.grant_handle(&scope, "p", label(&"l".repeat(256))).await.expect("at the bounds");
    }
}

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

    let smallest =
        Limits { max_id_bytes: 24, max_payload_bytes: 1, max_json_depth: 2, max_event_types: 6, ..Limits::default() };
    let registry = ActorProcessRegistry::start(with_limits(smallest)).await.expect("the smallest limits are accepted");
    let bare = ProcessRegistration::new("p", ProcessInput::definition("job", Map::new()));
    registry.register_process(bare).await.expect("a registration of the core types fits");
    registry.shutdown().await;
}

// ---------------------------------------------------------------------------
// Growth: registration bytes, template bytes, the schema cache.
// ---------------------------------------------------------------------------

/// A registration's JSON is bounded like a payload's, core event types
/// included; the refused one leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_beyond_the_byte_limit_are_refused() {
    let limits = Limits { max_registration_bytes: 64 * 1024, ..Limits::default() };
    for (name, registry) in registries_with(limits).await {
        let blob = |bytes: usize| ProcessInput::external(json!({ "blob": "b".repeat(bytes) }));
        let big = ProcessRegistration { input: blob(64 * 1024), ..registration("big") };
        match registry.register_process(big).await {
            Err(RegistryError::LimitExceeded { what, limit, .. }) => {
                assert_eq!((what.as_str(), limit), ("registration bytes", 64 * 1024), "{name}");
            }
            other => panic!("{name}: expected LimitExceeded, got {other:?}"),
        }
        assert!(registry.get_process("big").await.is_none(), "{name}");
        let many_schemas = registration("schemas").with_extra_event_types(
            (0..100).map(|index| ProcessEventType::new(format!("t{index}"), json!({"description": "d".repeat(1024)}))),
        );
        let refused = registry.register_process(many_schemas).await;
        assert!(matches!(refused, Err(RegistryError::LimitExceeded { .. })), "{name}: {refused:?}");
        let fits = ProcessRegistration { input: blob(60 * 1024), ..registration("big") };
        registry.register_process(fits).await.unwrap_or_else(|err| panic!("{name}: {err}"));
    }
}

fn template(
    text: &str,
    fields: impl IntoIterator<Item = (&'static str, ProcessValueSelector)>,
) -> ProcessValueSelector {
    ProcessValueSelector::Template {
        template: text.to_owned(),
        fields: fields.into_iter().map(|(name, field)| (name.to_owned(), field)).collect(),
    }
}

/// A template substituting a payload field many times over renders at most
/// `max_template_bytes`; past it the append is refused and nothing commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_cannot_multiply_a_payload_beyond_the_template_limit() {
    for (name, registry) in registries().await {
        let echo = template(&"{blob}".repeat(1_000), [("blob", ProcessValueSelector::Pointer("/blob".into()))]);
        let echo_type = ProcessEventType::new("echo", json!({"type": "object"})).with_wake(ProcessWakeSpec::new(echo));
        let echoing =
            registration("p").with_extra_event_types(vec![echo_type]).with_wake_target(SessionScope::new("s"));
        registry.register_process(echoing).await.expect("registered");
        // 1,000 copies of 8 KiB: 8 MiB from a payload of 8 KiB.
        let request = ProcessEventAppendRequest::new("echo", json!({ "blob": "x".repeat(8 * 1024) }));
        match registry.append_event("p", request).await {
            Err(RegistryError::LimitExceeded { what, limit, .. }) => {
                assert_eq!((what.as_str(), limit), ("template bytes", Limits::default().max_template_bytes as u64));
            }
            other => panic!("{name}: expected LimitExceeded, got {:?}", other.map(|result| result.event.sequence)),
        }
        assert!(registry.events_after("p", 0).await.expect("events").is_empty(), "{name}: nothing committed");
        let small = registry.append_event("p", ProcessEventAppendRequest::new("echo", json!({"blob": "y"}))).await;
        let wake = small.expect("a small payload renders").wake_delivery.expect("a wake");
        assert_eq!((wake.input.len(), wake.sequence), (1_000, 1), "{name}");
    }
}

/// Templates that substitute each other into nothing render no byte at
/// all, but 2^40 substitutions would never end: each one counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_substituting_each_other_into_nothing_are_refused_not_run_forever() {
    let limits = Limits { max_template_bytes: 64 * 1024, ..Limits::default() };
    for (name, registry) in registries_with(limits).await {
        let mut nested = ProcessValueSelector::Const(json!(""));
        for _ in 0..40 {
            nested = template("{a}{a}", [("a", nested)]);
        }
        let spinning = registration("p").with_extra_event_types(vec![
            ProcessEventType::new("spin", json!({})).with_wake(ProcessWakeSpec::new(nested))
        ]);
        registry.register_process(spinning).await.expect("registered");
        let appended =
            tokio::time::timeout(GUARD, registry.append_event("p", ProcessEventAppendRequest::new("spin", json!({}))))
                .await
                .unwrap_or_else(|_| panic!("{name}: materializing the nested templates never ended"));
        assert!(matches!(appended, Err(RegistryError::LimitExceeded { limit: 65_536, .. })), "{name}: {appended:?}");
        let note = registry.append_event("p", ProcessEventAppendRequest::new("note", json!({}))).await;
        assert_eq!(note.expect("the process stays usable").event.sequence, 1, "{name}");
    }
}

/// With a schema cache of two entries, the processes registered past it
/// validate against their own schemas, before and after passivation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_past_the_schema_cache_cap_validate_their_own_schemas() {
    let limits = Limits { max_cached_schemas: 2, ..Limits::default() };
    let clock = Arc::new(ManualClock::new(1_000));
    let config = with_limits(limits.clone()).with_clock(clock.clone()).with_passivation(Some(Duration::from_secs(1)));
    let actor = ActorProcessRegistry::start(config).await.expect("starts");
    let registries: [(&str, Registry); 2] =
        [("actor", Arc::new(actor.clone())), ("baseline", Arc::new(GlobalLockRegistry::new().with_limits(limits)))];
    let field = |index: usize| format!("f{index}");
    let check = |registry: Registry, name: &'static str, round: &'static str| async move {
        for index in 0..10 {
            let id = format!("p{index}");
            let missing = registry.append_event(&id, ProcessEventAppendRequest::new("typed", json!({}))).await;
            assert!(matches!(missing, Err(RegistryError::InvalidPayload { .. })), "{name} {round} {id}: {missing:?}");
            let other = registry
                .append_event(&id, ProcessEventAppendRequest::new("typed", json!({ field((index + 1) % 10): 1 })));
            assert!(
                matches!(other.await, Err(RegistryError::InvalidPayload { .. })),
                "{name} {round} {id}: another's field"
            );
            let own =
                registry.append_event(&id, ProcessEventAppendRequest::new("typed", json!({ field(index): 1 }))).await;
            own.unwrap_or_else(|err| panic!("{name} {round} {id}: {err}"));
        }
    };
    for (name, registry) in &registries {
        for index in 0..10 {
            let typed = ProcessEventType::new("typed", json!({"type": "object", "required": [field(index)]}));
            let registration = registration(&format!("p{index}")).with_extra_event_types(vec![typed]);
            registry.register_process(registration).await.unwrap_or_else(|err| panic!("{name}: {err}"));
        }
        check(Arc::clone(registry), name, "first").await;
    }
    clock.advance(5_000);
    actor.passivate_idle();
    for _ in 0..10_000 {
        if actor.stats().live_actors == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(actor.stats().live_actors, 0, "{:?}", actor.stats());
    check(Arc::clone(&registries[0].1), "actor", "reactivated").await;
    actor.shutdown().await;
}
