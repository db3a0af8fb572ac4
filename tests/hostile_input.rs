//! Hostile input gets a typed error or a correct result; never a panic, a
//! stack overflow or a hang, and the process stays usable.
//!
//! Each case runs in a child process (this test binary re-executed with the
//! case's exact name), so a stack overflow or an abort in one case is
//! reported as that case's failure, with the child's stderr, instead of
//! killing every other case. In the child, the registry and every call run
//! inside tasks on a multi-thread runtime whose workers have the default
//! 2 MiB stacks: that is where a recursive walk over a 100,000-level value
//! would overflow. The cases named `..._from_outside_the_runtime_tasks...`
//! make their calls from the `block_on` body instead (a caller that is not
//! a task leaves an append's hash and byte bound to the process actor,
//! which still runs on those workers). Every case is bounded by a timeout,
//! so a hang fails too.
//!
//! After each hostile call the case checks that the process it aimed at
//! still accepts a valid append (its sequence moves on by one).
//!
//! Deep values built here are never dropped recursively by this file: they
//! are either moved into the registry (which must drop them safely) or
//! dismantled iteratively with [`dismantle`].

use std::collections::BTreeMap;
use std::future::Future;
use std::mem::discriminant;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use process_registry::rules::limits::dismantle;
use process_registry::testing::baseline::GlobalLockRegistry;
use process_registry::{
    ActorProcessRegistry, Limits, ManualClock, ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType,
    ProcessExternalRef, ProcessHandleDescriptor, ProcessInput, ProcessLeaseCompletion, ProcessRegistration,
    ProcessRegistry, ProcessValueSelector, ProcessWakeSpec, RegistryConfig, RegistryError, SessionScope,
};
use serde_json::{json, Map, Value};

/// Set in a child process to the name of the one case it runs.
const CHILD_ENV: &str = "PROCESS_REGISTRY_HOSTILE_CASE";
/// How long one case may run in its child before it counts as a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);
/// Worker stack size: tokio's default, stated explicitly because it is the point.
const WORKER_STACK: usize = 2 * 1024 * 1024;
const DEPTH: usize = 100_000;
const HUGE: usize = 64 * 1024 * 1024;
const MIB: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Harness: one child process per case.
// ---------------------------------------------------------------------------

/// Runs `case` in a child process (or, in the child, runs it here).
fn isolated<F, Fut>(name: &str, config: fn() -> RegistryConfig, case: F)
where
    F: FnOnce(ActorProcessRegistry) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    in_child_process(name, move || run_in_child(config, case));
}

/// [`isolated`] for the global-lock baseline, which gets the same fixes.
fn isolated_baseline<F, Fut>(name: &str, case: F)
where
    F: FnOnce(Arc<GlobalLockRegistry>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    in_child_process(name, move || on_small_stacks(async move { case(Arc::new(GlobalLockRegistry::new())).await }));
}

/// Re-executes this test binary to run only `name`, in the child runs `run`.
fn in_child_process(name: &str, run: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        run();
        return;
    }
    let dir = std::env::temp_dir();
    let unique = format!("process-registry-hostile-{}-{name}", std::process::id());
    let (out_path, err_path): (PathBuf, PathBuf) =
        (dir.join(format!("{unique}.out")), dir.join(format!("{unique}.err")));
    let mut child = Command::new(std::env::current_exe().expect("test binary path"))
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ENV, name)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn the case's child process");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if started.elapsed() > CASE_TIMEOUT + Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    let ran = stdout.contains("1 passed");
    match status {
        Some(status) if status.success() && ran => {}
        Some(status) => panic!(
            "case `{name}` failed in its child process ({status}{}):\n--- stderr (tail) ---\n{}\n--- stdout (tail) ---\n{}",
            if status.code().is_none() { "; killed by a signal: a crash such as a stack overflow" } else { "" },
            tail(&stderr),
            tail(&stdout)
        ),
        None => panic!("case `{name}` hung: its child process was killed after {CASE_TIMEOUT:?}\n{}", tail(&stderr)),
    }
}

fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(6_000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// [`isolated`], with every call of the case made from outside the
/// runtime's tasks: the case is the `block_on` body itself. There a single
/// append leaves its payload hash, and the byte bound hashing measures, to
/// the process actor, which runs on a 2 MiB worker.
fn isolated_outside_tasks<F, Fut>(name: &str, config: fn() -> RegistryConfig, case: F)
where
    F: FnOnce(ActorProcessRegistry) -> Fut,
    Fut: Future<Output = ()>,
{
    in_child_process(name, move || {
        small_stack_runtime().block_on(async move {
            assert!(tokio::task::try_id().is_none(), "the case runs outside the runtime's tasks");
            if tokio::time::timeout(CASE_TIMEOUT, with_registry(config, case)).await.is_err() {
                panic!("the case did not finish within {CASE_TIMEOUT:?}: a hang");
            }
        });
    });
}

fn run_in_child<F, Fut>(config: fn() -> RegistryConfig, case: F)
where
    F: FnOnce(ActorProcessRegistry) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    on_small_stacks(with_registry(config, case));
}

/// Starts a registry with `config`, runs `case` on it, and shuts it down.
async fn with_registry<F, Fut>(config: fn() -> RegistryConfig, case: F)
where
    F: FnOnce(ActorProcessRegistry) -> Fut,
    Fut: Future<Output = ()>,
{
    let registry = ActorProcessRegistry::start(config()).await.expect("registry starts");
    case(registry.clone()).await;
    registry.shutdown().await;
}

/// Runs `body` as a task on a multi-thread runtime with 2 MiB worker stacks.
fn on_small_stacks(body: impl Future<Output = ()> + Send + 'static) {
    small_stack_runtime().block_on(async move {
        // Everything, the registry included, runs on the 2 MiB workers.
        let task = tokio::spawn(body);
        match tokio::time::timeout(CASE_TIMEOUT, task).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => std::panic::resume_unwind(err.into_panic()),
            Err(_) => panic!("the case did not finish within {CASE_TIMEOUT:?}: a hang"),
        }
    });
}

/// A multi-thread runtime whose 2 workers have 2 MiB stacks.
fn small_stack_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(WORKER_STACK)
        .enable_all()
        .build()
        .expect("runtime")
}

fn default_config() -> RegistryConfig {
    RegistryConfig::default()
}

fn manual_clock_config() -> RegistryConfig {
    RegistryConfig::default().with_clock(Arc::new(ManualClock::new(1_000)))
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

fn note_type() -> ProcessEventType {
    ProcessEventType::new(
        "note",
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "additionalProperties": true}),
    )
    .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Payload))
}

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", Map::new())).with_extra_event_types(vec![note_type()])
}

async fn register(registry: &ActorProcessRegistry, id: &str) {
    registry.register_process(registration(id)).await.expect("a valid registration");
}

/// The process still takes a valid append, and its log moves on by exactly one.
async fn still_usable(registry: &ActorProcessRegistry, id: &str) {
    let before = registry.events_after(id, 0).await.expect("events_after").len() as u64;
    let appended = registry
        .append_event(id, ProcessEventAppendRequest::new("note", json!({"text": "still fine"})))
        .await
        .expect("a valid append after hostile input");
    assert_eq!(appended.event.sequence, before + 1, "the hostile call must not have committed anything");
    let record = registry.get_process(id).await.expect("the process still exists");
    assert_eq!(record.id, id);
}

/// Asserts `result` is an error of the same variant as `expected`.
#[track_caller]
fn assert_variant<T: std::fmt::Debug>(what: &str, result: &Result<T, RegistryError>, expected: &RegistryError) {
    match result {
        Err(err) if discriminant(err) == discriminant(expected) => {
            let message = err.to_string();
            assert!(message.len() < 16 * 1024, "{what}: the error message is {} bytes long", message.len());
        }
        other => panic!("{what}: expected {expected:?}-like error, got {:?}", short(other)),
    }
}

/// A Debug rendering of a result that stays readable for huge values.
fn short<T: std::fmt::Debug>(value: &T) -> String {
    let text = format!("{value:?}");
    if text.len() > 2_000 {
        let mut end = 2_000;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &text[..end], text.len())
    } else {
        text
    }
}

fn limit_exceeded() -> RegistryError {
    RegistryError::LimitExceeded { process_id: String::new(), what: String::new(), limit: 0 }
}

fn invalid_registration() -> RegistryError {
    RegistryError::InvalidRegistration { process_id: String::new(), reason: String::new() }
}

fn unknown_process() -> RegistryError {
    RegistryError::UnknownProcess { process_id: String::new() }
}

fn out_of_range() -> RegistryError {
    RegistryError::SequenceOutOfRange { process_id: String::new(), sequence: 0, last_sequence: 0 }
}

/// `depth` levels of single-element arrays around a number, built iteratively.
fn deep_array(depth: usize) -> Value {
    let mut value = json!(0);
    for _ in 1..depth {
        value = Value::Array(vec![value]);
    }
    value
}

/// `depth` levels of `{"a": ...}`, built iteratively.
fn deep_object(depth: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 1..depth {
        value = Value::Object(Map::from_iter([("a".to_owned(), value)]));
    }
    value
}

/// `{key: value}` without `json!`, which would serialize (recursively) a value passed to it.
fn object_with(key: &str, value: Value) -> Value {
    Value::Object(Map::from_iter([(key.to_owned(), value)]))
}

fn huge_string() -> String {
    "x".repeat(HUGE)
}

// ---------------------------------------------------------------------------
// 100,000-level nesting.
// ---------------------------------------------------------------------------

#[test]
fn deep_payloads_are_refused_with_limit_exceeded() {
    isolated("deep_payloads_are_refused_with_limit_exceeded", default_config, deep_payloads_case);
}

#[test]
fn deep_payloads_from_outside_the_runtime_tasks_are_refused_with_limit_exceeded() {
    isolated_outside_tasks(
        "deep_payloads_from_outside_the_runtime_tasks_are_refused_with_limit_exceeded",
        default_config,
        deep_payloads_case,
    );
}

async fn deep_payloads_case(registry: ActorProcessRegistry) {
    register(&registry, "p").await;
    for (shape, deep) in [("array", deep_array(DEPTH)), ("object", deep_object(DEPTH))] {
        let request = ProcessEventAppendRequest::new("note", deep);
        let result = registry.append_event("p", request).await;
        assert_variant(&format!("append of a {DEPTH}-level {shape}"), &result, &limit_exceeded());
        still_usable(&registry, "p").await;
    }
    // A deep payload with a replay key, and on a terminal type.
    let keyed = ProcessEventAppendRequest::new("note", deep_array(DEPTH)).with_replay_key("k");
    assert_variant("keyed deep append", &registry.append_event("p", keyed).await, &limit_exceeded());
    let terminal = ProcessEventAppendRequest::new("process.completed", object_with("await_output", deep_array(DEPTH)))
        .with_replay_key("done");
    assert_variant("deep terminal append", &registry.append_event("p", terminal).await, &limit_exceeded());
    // The refused key was not consumed.
    let keyed = ProcessEventAppendRequest::new("note", json!({"text": "k"})).with_replay_key("k");
    registry.append_event("p", keyed).await.expect("the refused replay key is still free");
    still_usable(&registry, "p").await;
    // On an unknown process the depth check or the lookup may answer first.
    let result = registry.append_event("nobody", ProcessEventAppendRequest::new("note", deep_array(DEPTH))).await;
    assert!(
        matches!(result, Err(RegistryError::LimitExceeded { .. } | RegistryError::UnknownProcess { .. })),
        "{}",
        short(&result)
    );
}

#[test]
fn deep_await_output_in_complete_process_is_refused() {
    isolated("deep_await_output_in_complete_process_is_refused", default_config, |registry| async move {
        register(&registry, "p").await;
        let result = registry.complete_process("p", ProcessAwaitOutput::success(deep_array(DEPTH))).await;
        assert_variant("complete_process with a deep success value", &result, &limit_exceeded());
        let failure =
            ProcessAwaitOutput::Failure { code: "c".into(), message: "m".into(), raw: Some(deep_object(DEPTH)) };
        let result = registry.complete_process("p", failure).await;
        assert_variant("complete_process with a deep failure raw", &result, &limit_exceeded());
        assert!(!registry.get_process("p").await.unwrap().is_terminal(), "a refused completion changes nothing");
        still_usable(&registry, "p").await;
        registry.complete_process("p", ProcessAwaitOutput::success(json!(1))).await.expect("a valid completion");
    });
}

/// A record carrying a 100,000-level value could not be cloned or dropped by
/// any caller on a normal stack, so the metadata must be refused, as the
/// baseline does.
#[test]
fn deep_external_ref_metadata_is_refused() {
    isolated("deep_external_ref_metadata_is_refused", default_config, |registry| async move {
        register(&registry, "p").await;
        let external = ProcessExternalRef { backend: "b".into(), id: "x".into(), metadata: Some(deep_array(DEPTH)) };
        match registry.set_external_ref("p", external).await {
            Err(err) => assert!(matches!(err, RegistryError::LimitExceeded { .. }), "{err}"),
            Ok(record) => {
                record.external_ref.and_then(|external| external.metadata).into_iter().for_each(dismantle);
                panic!("a {DEPTH}-level external ref metadata was accepted");
            }
        }
        assert!(registry.get_process("p").await.expect("exists").external_ref.is_none());
        still_usable(&registry, "p").await;
    });
}

#[test]
fn deep_registration_values_are_refused() {
    isolated("deep_registration_values_are_refused", default_config, |registry| async move {
        let external = ProcessRegistration::new("ext", ProcessInput::external(deep_array(DEPTH)));
        assert_variant("deep external metadata", &registry.register_process(external).await, &limit_exceeded());
        let args = Map::from_iter([("deep".to_owned(), deep_object(DEPTH))]);
        let definition = ProcessRegistration::new("def", ProcessInput::definition("job", args));
        assert_variant("deep definition args", &registry.register_process(definition).await, &limit_exceeded());
        let schema =
            registration("schema").with_extra_event_types(vec![ProcessEventType::new("deep", deep_object(DEPTH))]);
        assert_variant("deep payload schema", &registry.register_process(schema).await, &limit_exceeded());
        let constant = registration("const").with_extra_event_types(vec![ProcessEventType::new("w", json!({}))
            .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Const(deep_array(DEPTH))))]);
        assert_variant("deep selector constant", &registry.register_process(constant).await, &limit_exceeded());
        for id in ["ext", "def", "schema", "const"] {
            assert!(registry.get_process(id).await.is_none(), "refused registration `{id}` left a process behind");
            register(&registry, id).await;
            still_usable(&registry, id).await;
        }
    });
}

// ---------------------------------------------------------------------------
// Deep JSON on every refusal path: whichever check refuses a call, the
// value it refuses must be dropped without recursion.
// ---------------------------------------------------------------------------

/// Nesting of the refused values: far past what a recursive drop survives.
const REFUSED_DEPTH: usize = 200_000;
/// A template level costs a map node (about 1 KiB): 50,000 of them overflow
/// a recursive drop on 2 MiB just as surely, in a tenth of the memory.
const TEMPLATE_DEPTH: usize = 50_000;

/// The places a registration carries caller JSON (or a selector tree).
#[derive(Clone, Copy, Debug)]
enum DeepPlace {
    Metadata,
    Args,
    Schema,
    Constant,
    Template,
}

const DEEP_PLACES: [DeepPlace; 5] =
    [DeepPlace::Metadata, DeepPlace::Args, DeepPlace::Schema, DeepPlace::Constant, DeepPlace::Template];

/// `depth` levels of templates, each substituting the next.
fn deep_template(depth: usize) -> ProcessValueSelector {
    let mut selector = ProcessValueSelector::Payload;
    for _ in 1..depth {
        selector = ProcessValueSelector::Template {
            template: "{x}".into(),
            fields: BTreeMap::from([("x".to_owned(), selector)]),
        };
    }
    selector
}

/// `registration` carrying a deep value (or template) at `place`.
fn with_deep_json(registration: ProcessRegistration, place: DeepPlace) -> ProcessRegistration {
    let wake = |name: &str, selector| ProcessEventType::new(name, json!({})).with_wake(ProcessWakeSpec::new(selector));
    match place {
        DeepPlace::Metadata => {
            ProcessRegistration { input: ProcessInput::external(deep_array(REFUSED_DEPTH)), ..registration }
        }
        DeepPlace::Args => {
            let args = Map::from_iter([("deep".to_owned(), deep_object(REFUSED_DEPTH))]);
            ProcessRegistration { input: ProcessInput::definition("job", args), ..registration }
        }
        DeepPlace::Schema => {
            registration.with_extra_event_types(vec![ProcessEventType::new("deep-schema", deep_object(REFUSED_DEPTH))])
        }
        DeepPlace::Constant => registration
            .with_extra_event_types(vec![wake("deep-const", ProcessValueSelector::Const(deep_array(REFUSED_DEPTH)))]),
        DeepPlace::Template => {
            registration.with_extra_event_types(vec![wake("deep-template", deep_template(TEMPLATE_DEPTH))])
        }
    }
}

/// Asserts `result` is an error of one of the `expected` variants.
#[track_caller]
fn assert_one_of<T: std::fmt::Debug>(what: &str, result: &Result<T, RegistryError>, expected: &[RegistryError]) {
    match result {
        Err(err) if expected.iter().any(|variant| discriminant(err) == discriminant(variant)) => {}
        other => panic!("{what}: expected one of {expected:?}, got {:?}", short(other)),
    }
}

fn stopped() -> RegistryError {
    RegistryError::Stopped { process_id: String::new() }
}

/// Registers `refused(place)` with a deep value in every place and expects
/// one of `expected` each time.
async fn refuse_deep_registrations(
    registry: &ActorProcessRegistry,
    what: &str,
    refused: impl Fn(DeepPlace) -> ProcessRegistration,
    expected: &[RegistryError],
) {
    for place in DEEP_PLACES {
        let result = registry.register_process(refused(place)).await;
        assert_one_of(&format!("{what}, deep JSON in the {place:?}"), &result, expected);
    }
}

/// After the refusals the registry still registers and appends.
async fn registry_still_usable(registry: &ActorProcessRegistry, id: &str) {
    register(registry, id).await;
    still_usable(registry, id).await;
}

#[test]
fn deep_json_in_a_registration_refused_for_its_empty_id_is_dropped_safely() {
    isolated(
        "deep_json_in_a_registration_refused_for_its_empty_id_is_dropped_safely",
        default_config,
        |registry| async move {
            let refused = |place| with_deep_json(registration(""), place);
            refuse_deep_registrations(&registry, "empty id", refused, &[invalid_registration(), limit_exceeded()])
                .await;
            registry_still_usable(&registry, "p").await;
        },
    );
}

#[test]
fn deep_json_in_a_registration_refused_for_its_over_long_id_is_dropped_safely() {
    isolated(
        "deep_json_in_a_registration_refused_for_its_over_long_id_is_dropped_safely",
        default_config,
        |registry| async move {
            let long = "i".repeat(MIB);
            let refused = |place| with_deep_json(registration(&long), place);
            refuse_deep_registrations(&registry, "1 MiB id", refused, &[limit_exceeded()]).await;
            registry_still_usable(&registry, "p").await;
        },
    );
}

#[test]
fn deep_json_in_a_registration_refused_for_its_empty_host_profile_is_dropped_safely() {
    isolated(
        "deep_json_in_a_registration_refused_for_its_empty_host_profile_is_dropped_safely",
        default_config,
        |registry| async move {
            let refused = |place| with_deep_json(registration("p").with_host_profile_id(""), place);
            let expected = [invalid_registration(), limit_exceeded()];
            refuse_deep_registrations(&registry, "empty host profile", refused, &expected).await;
            registry_still_usable(&registry, "p").await;
        },
    );
}

#[test]
fn deep_json_in_a_registration_refused_for_duplicate_event_types_is_dropped_safely() {
    isolated(
        "deep_json_in_a_registration_refused_for_duplicate_event_types_is_dropped_safely",
        default_config,
        |registry| async move {
            let refused = |place| with_deep_json(registration("p").with_extra_event_types(vec![note_type()]), place);
            let expected = [invalid_registration(), limit_exceeded()];
            refuse_deep_registrations(&registry, "duplicate event types", refused, &expected).await;
            registry_still_usable(&registry, "p").await;
        },
    );
}

#[test]
fn deep_json_in_a_registration_refused_for_an_invalid_schema_is_dropped_safely() {
    isolated(
        "deep_json_in_a_registration_refused_for_an_invalid_schema_is_dropped_safely",
        default_config,
        |registry| async move {
            let bad = || ProcessEventType::new("bad", json!({"type": 17}));
            let refused = |place| with_deep_json(registration("p").with_extra_event_types(vec![bad()]), place);
            let expected = [invalid_registration(), limit_exceeded()];
            refuse_deep_registrations(&registry, "invalid schema", refused, &expected).await;
            registry_still_usable(&registry, "p").await;
        },
    );
}

#[test]
fn deep_json_in_a_registration_refused_for_too_many_event_types_is_dropped_safely() {
    isolated(
        "deep_json_in_a_registration_refused_for_too_many_event_types_is_dropped_safely",
        default_config,
        |registry| async move {
            let many = || (0..300).map(|index| ProcessEventType::new(format!("t{index}"), json!({})));
            let refused = |place| with_deep_json(registration("p").with_extra_event_types(many()), place);
            refuse_deep_registrations(&registry, "too many event types", refused, &[limit_exceeded()]).await;
            registry_still_usable(&registry, "p").await;
        },
    );
}

#[test]
fn deep_json_in_a_conflicting_re_registration_is_dropped_safely() {
    isolated("deep_json_in_a_conflicting_re_registration_is_dropped_safely", default_config, |registry| async move {
        register(&registry, "p").await;
        let refused = |place| with_deep_json(registration("p").with_env_ref("elsewhere"), place);
        let expected = [
            RegistryError::RegistrationConflict {
                process_id: String::new(),
                existing_hash: String::new(),
                requested_hash: String::new(),
            },
            limit_exceeded(),
        ];
        refuse_deep_registrations(&registry, "conflicting re-registration", refused, &expected).await;
        still_usable(&registry, "p").await;
    });
}

#[test]
fn deep_json_in_a_registration_after_shutdown_is_dropped_safely() {
    isolated("deep_json_in_a_registration_after_shutdown_is_dropped_safely", default_config, |registry| async move {
        registry.shutdown().await;
        let refused = |place| with_deep_json(registration("p"), place);
        refuse_deep_registrations(&registry, "registration after shutdown", refused, &[stopped(), limit_exceeded()])
            .await;
    });
}

#[test]
fn deep_payloads_of_refused_appends_are_dropped_safely() {
    isolated("deep_payloads_of_refused_appends_are_dropped_safely", default_config, |registry| async move {
        register(&registry, "p").await;
        let undeclared = RegistryError::UndeclaredEventType { process_id: String::new(), event_type: String::new() };
        let missing_key = RegistryError::MissingReplayKey { process_id: String::new(), event_type: String::new() };
        let invalid = RegistryError::InvalidPayload {
            process_id: String::new(),
            event_type: String::new(),
            path: String::new(),
            message: String::new(),
        };
        let cases: [(&str, &str, ProcessEventAppendRequest, RegistryError); 4] = [
            ("undeclared type", "p", ProcessEventAppendRequest::new("nope", deep_array(REFUSED_DEPTH)), undeclared),
            (
                "unknown process",
                "nobody",
                ProcessEventAppendRequest::new("note", deep_object(REFUSED_DEPTH)),
                unknown_process(),
            ),
            (
                "missing replay key",
                "p",
                ProcessEventAppendRequest::new(
                    "process.completed",
                    object_with("await_output", deep_array(REFUSED_DEPTH)),
                ),
                missing_key,
            ),
            ("invalid payload", "p", ProcessEventAppendRequest::new("note", deep_array(REFUSED_DEPTH)), invalid),
        ];
        for (what, id, request, expected) in cases {
            let result = registry.append_event(id, request).await;
            assert_one_of(&format!("append refused for its {what}"), &result, &[expected, limit_exceeded()]);
            still_usable(&registry, "p").await;
        }
    });
}

#[test]
fn deep_payloads_of_appends_after_shutdown_are_dropped_safely() {
    isolated("deep_payloads_of_appends_after_shutdown_are_dropped_safely", default_config, |registry| async move {
        register(&registry, "p").await;
        registry.shutdown().await;
        for id in ["p", "nobody"] {
            let request = ProcessEventAppendRequest::new("note", deep_object(REFUSED_DEPTH)).with_replay_key("k");
            let result = registry.append_event(id, request).await;
            assert_one_of(&format!("append to `{id}` after shutdown"), &result, &[stopped(), limit_exceeded()]);
        }
    });
}

/// Await outputs carrying a deep value in each place one can.
fn deep_outputs() -> [ProcessAwaitOutput; 3] {
    [
        ProcessAwaitOutput::success(deep_array(REFUSED_DEPTH)),
        ProcessAwaitOutput::Failure { code: "c".into(), message: "m".into(), raw: Some(deep_object(REFUSED_DEPTH)) },
        ProcessAwaitOutput::Cancelled { message: "m".into(), raw: Some(deep_array(REFUSED_DEPTH)) },
    ]
}

#[test]
fn deep_outputs_of_refused_completions_are_dropped_safely() {
    isolated("deep_outputs_of_refused_completions_are_dropped_safely", default_config, |registry| async move {
        register(&registry, "p").await;
        register(&registry, "done").await;
        registry.complete_process("done", ProcessAwaitOutput::success(json!(1))).await.expect("completes");
        let terminal = RegistryError::AlreadyTerminal { process_id: String::new() };
        let replay = RegistryError::ReplayConflict { process_id: String::new(), replay_key: String::new() };
        for output in deep_outputs() {
            let result = registry.complete_process("nobody", output).await;
            assert_one_of("completion of an unknown process", &result, &[unknown_process(), limit_exceeded()]);
        }
        for output in deep_outputs() {
            let result = registry.complete_process("done", output).await;
            assert_one_of(
                "completion of a terminal process",
                &result,
                &[terminal.clone(), replay.clone(), limit_exceeded()],
            );
        }
        still_usable(&registry, "p").await;
        registry.shutdown().await;
        for output in deep_outputs() {
            let result = registry.complete_process("p", output).await;
            assert_one_of("completion after shutdown", &result, &[stopped(), limit_exceeded()]);
        }
    });
}

/// `set_process_wait` takes a `WaitState`, which carries strings only: no
/// deep value can reach it. External references carry JSON metadata.
#[test]
fn deep_metadata_of_refused_external_refs_is_dropped_safely() {
    isolated("deep_metadata_of_refused_external_refs_is_dropped_safely", default_config, |registry| async move {
        register(&registry, "p").await;
        let deep_ref =
            || ProcessExternalRef { backend: "b".into(), id: "x".into(), metadata: Some(deep_object(REFUSED_DEPTH)) };
        let result = registry.set_external_ref("nobody", deep_ref()).await;
        assert_one_of("external ref of an unknown process", &result, &[unknown_process(), limit_exceeded()]);
        still_usable(&registry, "p").await;
        registry.shutdown().await;
        let result = registry.set_external_ref("p", deep_ref()).await;
        assert_one_of("external ref after shutdown", &result, &[stopped(), limit_exceeded()]);
    });
}

/// Builds a registration refused for one reason.
type RefusedRegistration = Box<dyn Fn() -> ProcessRegistration + Send>;

/// The baseline prepares registrations with the same rules: each refusal
/// path, with a deep value in each place, is dropped safely there too.
#[test]
fn the_baseline_drops_deep_json_of_refused_registrations_safely() {
    isolated_baseline("the_baseline_drops_deep_json_of_refused_registrations_safely", |registry| async move {
        registry.register_process(registration("taken")).await.expect("a valid registration");
        let long = "i".repeat(MIB);
        let refusals: [(&str, RefusedRegistration); 7] = [
            ("empty id", Box::new(|| registration(""))),
            ("1 MiB id", Box::new(move || registration(&long))),
            ("empty host profile", Box::new(|| registration("p").with_host_profile_id(""))),
            ("duplicate event types", Box::new(|| registration("p").with_extra_event_types(vec![note_type()]))),
            (
                "invalid schema",
                Box::new(|| {
                    registration("p").with_extra_event_types(vec![ProcessEventType::new("bad", json!({"type": 17}))])
                }),
            ),
            (
                "too many event types",
                Box::new(|| {
                    registration("p")
                        .with_extra_event_types((0..300).map(|i| ProcessEventType::new(format!("t{i}"), json!({}))))
                }),
            ),
            ("conflicting re-registration", Box::new(|| registration("taken").with_env_ref("elsewhere"))),
        ];
        for (what, refused) in refusals {
            for place in DEEP_PLACES {
                match registry.register_process(with_deep_json(refused(), place)).await {
                    Err(_) => {}
                    Ok(record) => {
                        panic!("baseline, {what}, deep JSON in the {place:?}: registered `{}`", short(&record.id))
                    }
                }
            }
        }
        registry.register_process(registration("p")).await.expect("the baseline still registers");
        let appended = registry.append_event("p", ProcessEventAppendRequest::new("note", json!({}))).await;
        assert_eq!(appended.expect("and appends").event.sequence, 1);
    });
}

// ---------------------------------------------------------------------------
// 64 MiB strings.
// ---------------------------------------------------------------------------

#[test]
fn huge_strings_in_payloads_exceed_the_payload_limit() {
    isolated("huge_strings_in_payloads_exceed_the_payload_limit", default_config, huge_strings_case);
}

/// From outside the runtime's tasks the actor measures the payload's bytes.
#[test]
fn huge_strings_in_payloads_from_outside_the_runtime_tasks_exceed_the_payload_limit() {
    isolated_outside_tasks(
        "huge_strings_in_payloads_from_outside_the_runtime_tasks_exceed_the_payload_limit",
        default_config,
        huge_strings_case,
    );
}

async fn huge_strings_case(registry: ActorProcessRegistry) {
    register(&registry, "p").await;
    let request = ProcessEventAppendRequest::new("note", json!({"text": huge_string()}));
    assert_variant("64 MiB payload string", &registry.append_event("p", request).await, &limit_exceeded());
    still_usable(&registry, "p").await;
    let mut key = Map::new();
    key.insert(huge_string(), json!(1));
    let request = ProcessEventAppendRequest::new("note", Value::Object(key));
    assert_variant("64 MiB object key", &registry.append_event("p", request).await, &limit_exceeded());
    let output = ProcessAwaitOutput::failure("code", huge_string());
    assert_variant("64 MiB failure message", &registry.complete_process("p", output).await, &limit_exceeded());
    assert!(!registry.get_process("p").await.unwrap().is_terminal());
    still_usable(&registry, "p").await;
}

#[test]
fn huge_strings_elsewhere_get_a_typed_error_or_are_kept_intact() {
    isolated("huge_strings_elsewhere_get_a_typed_error_or_are_kept_intact", default_config, |registry| async move {
        register(&registry, "p").await;
        let external = ProcessExternalRef { backend: "b".into(), id: "x".into(), metadata: Some(json!(huge_string())) };
        match registry.set_external_ref("p", external).await {
            Ok(record) => {
                let metadata = record.external_ref.and_then(|r| r.metadata).expect("kept");
                assert_eq!(metadata.as_str().map(str::len), Some(HUGE));
            }
            Err(err) => assert!(matches!(err, RegistryError::LimitExceeded { .. }), "{err}"),
        }
        still_usable(&registry, "p").await;
        let big = ProcessRegistration::new("big", ProcessInput::external(json!({"blob": huge_string()})));
        match registry.register_process(big).await {
            Ok(record) => {
                assert_eq!(record.id, "big");
                still_usable_without_note(&registry, "big").await;
            }
            Err(err) => assert!(matches!(err, RegistryError::LimitExceeded { .. }), "{err}"),
        }
        let request = ProcessEventAppendRequest::cancel_requested("p", huge_string());
        assert_variant("64 MiB cancel reason", &registry.append_event("p", request).await, &limit_exceeded());
        still_usable(&registry, "p").await;
    });
}

/// [`still_usable`] for a process with only the core event types.
async fn still_usable_without_note(registry: &ActorProcessRegistry, id: &str) {
    let before = registry.events_after(id, 0).await.expect("events_after").len() as u64;
    let appended = registry
        .append_event(id, ProcessEventAppendRequest::new("process.waiting", json!({})))
        .await
        .expect("a valid append");
    assert_eq!(appended.event.sequence, before + 1);
}

// ---------------------------------------------------------------------------
// Schemas.
// ---------------------------------------------------------------------------

#[test]
fn invalid_json_schemas_are_refused_at_registration() {
    isolated("invalid_json_schemas_are_refused_at_registration", default_config, |registry| async move {
        let bad = [
            json!({"type": 17}),
            json!({"type": "no-such-type"}),
            json!({"minimum": "ten"}),
            json!({"required": "name"}),
            json!({"properties": []}),
            json!({"pattern": "(unclosed"}),
            json!({"enum": 5}),
            json!({"items": 3}),
            json!(42),
            json!("a string"),
            json!(null),
            json!({"$ref": "#/definitions/missing"}),
            json!({"$ref": "http://example.invalid/schema.json"}),
        ];
        for (index, schema) in bad.into_iter().enumerate() {
            let id = format!("bad-{index}");
            let shown = schema.to_string();
            let declared = ProcessEventType::new("x", schema);
            let result = tokio::time::timeout(
                Duration::from_secs(30),
                registry.register_process(registration(&id).with_extra_event_types(vec![declared])),
            )
            .await
            .unwrap_or_else(|_| panic!("registering schema {shown} hung"));
            assert_variant(&format!("schema {shown}"), &result, &invalid_registration());
            assert!(registry.get_process(&id).await.is_none(), "schema {shown} left a process behind");
            register(&registry, &id).await;
            still_usable(&registry, &id).await;
        }
    });
}

#[test]
fn recursive_ref_schemas_never_overflow_or_hang() {
    isolated("recursive_ref_schemas_never_overflow_or_hang", default_config, |registry| async move {
        let schemas = [
            ("self", json!({"$ref": "#"})),
            ("property", json!({"type": "object", "properties": {"child": {"$ref": "#"}}})),
            ("items", json!({"type": "array", "items": {"$ref": "#"}})),
            ("mutual", json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})),
            ("any_of_self", json!({"anyOf": [{"$ref": "#"}, {"type": "object"}]})),
        ];
        for (name, schema) in schemas {
            let id = format!("ref-{name}");
            let declared = ProcessEventType::new("rec", schema);
            let registered = tokio::time::timeout(
                Duration::from_secs(30),
                registry.register_process(registration(&id).with_extra_event_types(vec![declared])),
            )
            .await
            .unwrap_or_else(|_| panic!("registering the `{name}` schema hung"));
            match registered {
                Err(err) => {
                    assert!(matches!(err, RegistryError::InvalidRegistration { .. }), "`{name}`: {err}");
                    continue;
                }
                Ok(record) => assert_eq!(record.id, id),
            }
            // Payloads up to the depth limit: each gets an answer, typed or not.
            for payload in [json!({}), json!([]), json!(1), nest_children(100), nest_items(100)] {
                let shown = short(&payload);
                let appended = tokio::time::timeout(
                    Duration::from_secs(30),
                    registry.append_event(&id, ProcessEventAppendRequest::new("rec", payload)),
                )
                .await
                .unwrap_or_else(|_| panic!("appending {shown} under the `{name}` schema hung"));
                if let Err(err) = appended {
                    assert!(matches!(err, RegistryError::InvalidPayload { .. }), "`{name}` with {shown}: {err}");
                }
            }
            still_usable(&registry, &id).await;
        }
        // The property-recursive schema validates as it should.
        let id = "ref-property";
        let ok =
            registry.append_event(id, ProcessEventAppendRequest::new("rec", json!({"child": {"child": {}}}))).await;
        assert!(ok.is_ok(), "{ok:?}");
        let bad =
            registry.append_event(id, ProcessEventAppendRequest::new("rec", json!({"child": {"child": 3}}))).await;
        match bad {
            Err(RegistryError::InvalidPayload { path, .. }) => assert_eq!(path, "/child/child"),
            other => panic!("expected InvalidPayload at /child/child, got {other:?}"),
        }
    });
}

fn nest_children(depth: usize) -> Value {
    let mut value = json!({});
    for _ in 1..depth {
        value = json!({ "child": value });
    }
    value
}

fn nest_items(depth: usize) -> Value {
    let mut value = json!([]);
    for _ in 1..depth {
        value = json!([value]);
    }
    value
}

// ---------------------------------------------------------------------------
// Ids of 1 MiB.
// ---------------------------------------------------------------------------

#[test]
fn megabyte_ids_are_refused_with_limit_exceeded() {
    isolated("megabyte_ids_are_refused_with_limit_exceeded", manual_clock_config, |registry| async move {
        let long = "i".repeat(MIB);
        register(&registry, "p").await;
        assert_variant("1 MiB process id", &registry.register_process(registration(&long)).await, &limit_exceeded());
        assert!(registry.get_process(&long).await.is_none());
        let named = registration("named").with_extra_event_types(vec![ProcessEventType::new(long.clone(), json!({}))]);
        assert_variant("1 MiB event type name", &registry.register_process(named).await, &limit_exceeded());
        let request = ProcessEventAppendRequest::new("note", json!({})).with_replay_key(long.clone());
        assert_variant("1 MiB replay key", &registry.append_event("p", request).await, &limit_exceeded());
        let request = ProcessEventAppendRequest::new(long.clone(), json!({}));
        assert_variant("1 MiB event type", &registry.append_event("p", request).await, &limit_exceeded());
        assert_variant("1 MiB owner id", &registry.claim_process_lease("p", &long, 1_000).await, &limit_exceeded());
        still_usable(&registry, "p").await;
        // Calls naming an unknown 1 MiB process id: a typed error with a short message.
        let request = ProcessEventAppendRequest::new("note", json!({}));
        let result = registry.append_event(&long, request).await;
        assert!(
            matches!(result, Err(RegistryError::LimitExceeded { .. } | RegistryError::UnknownProcess { .. })),
            "{}",
            short(&result)
        );
        let events = registry.events_after(&long, 0).await;
        assert!(
            matches!(events, Err(RegistryError::UnknownProcess { .. } | RegistryError::LimitExceeded { .. })),
            "{}",
            short(&events)
        );
        if let Err(err) = &events {
            assert!(err.to_string().len() < 16 * 1024, "error messages must not echo a 1 MiB id");
        }
        let count = registry.count_events_through(&long, "note", 1).await;
        assert!(count.is_err(), "{}", short(&count));
        let lease = registry.claim_process_lease(&long, "w", 1_000).await;
        assert!(lease.is_err(), "{}", short(&lease));
        // A 1 MiB session id and descriptor in grants: kept intact or refused with a typed error.
        let scope = SessionScope::with_frame(long.clone(), long.clone());
        let descriptor = ProcessHandleDescriptor { kind: Some(long.clone()), label: Some(long.clone()) };
        match registry.grant_handle(&scope, "p", descriptor).await {
            Ok(grant) => {
                assert_eq!(grant.session_id.len(), MIB);
                assert!(registry.has_handle_grant(&scope, "p").await.unwrap());
                let report = registry.delete_session_process_state(&long).await.unwrap();
                assert_eq!(report.revoked_handle_count, 1);
                assert_eq!(report.orphaned_process_ids, vec!["p".to_owned()]);
            }
            Err(err) => assert!(matches!(err, RegistryError::LimitExceeded { .. }), "{err}"),
        }
        // A 1 MiB event type in a wait or a count: the id limit, at once.
        let waited = tokio::time::timeout(Duration::from_secs(10), registry.wait_event_after("p", &long, 0))
            .await
            .expect("a wait on a 1 MiB event type answers at once");
        assert_variant("1 MiB event type in a wait", &waited, &limit_exceeded());
        assert_variant(
            "1 MiB event type in a count",
            &registry.count_events_through("p", &long, 1).await,
            &limit_exceeded(),
        );
        settle_parked(&registry).await;
        still_usable(&registry, "p").await;
    });
}

/// Waits until no caller is parked (a timed-out wait leaves nothing behind).
async fn settle_parked(registry: &ActorProcessRegistry) {
    for _ in 0..2_000 {
        if registry.stats().parked_waiters == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("a caller that gave up is still parked: {:?}", registry.stats());
}

// ---------------------------------------------------------------------------
// Escapes, control characters, unicode.
// ---------------------------------------------------------------------------

#[test]
fn escapes_control_characters_and_unicode_round_trip() {
    isolated("escapes_control_characters_and_unicode_round_trip", default_config, |registry| async move {
        // Ids and keys carry every character but NUL, which no store keeps
        // as text (refused as `ContainsNul`, below); JSON values keep NUL too.
        let weird = [
            "del\u{7f}byte\u{1}",
            "line\nbreak\ttab\r\u{7}\u{1b}[31m",
            "quote\"back\\slash/",
            "\\u0000\\ud800\\xff\\x00 (escape-looking text)",
            "\u{202e}rtl-override\u{200b}zero-width\u{feff}",
            "é\u{301}😀𝄞\u{10ffff}",
            "%s%n{}{0}$'`",
            " leading-space",
        ];
        for (index, text) in weird.iter().enumerate() {
            let id = format!("{text}#{index}");
            let event_type = format!("t{text}");
            let declared = ProcessEventType::new(event_type.clone(), json!({"type": "object"}))
                .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Pointer(format!("/{}", escape_pointer(text)))));
            let registration = registration(&id)
                .with_extra_event_types(vec![declared])
                .with_wake_target(SessionScope::with_frame(*text, *text));
            let record = registry.register_process(registration.clone()).await.expect("register a weird id");
            assert_eq!(record.id, id);
            assert_eq!(
                registry.register_process(registration).await.expect("idempotent").registration_hash,
                record.registration_hash
            );
            let payload = json!({ *text: *text, "nested": [text, {"k": text}] });
            let request = ProcessEventAppendRequest::new(event_type.clone(), payload.clone()).with_replay_key(*text);
            let first = registry.append_event(&id, request.clone()).await.expect("append with weird strings");
            assert_eq!(first.event.payload, payload);
            assert_eq!(first.event.invocation.replay_key.as_deref(), Some(*text));
            let wake = first.wake_delivery.as_ref().expect("a wake for the weird target");
            assert_eq!(wake.input, *text);
            assert_eq!(wake.target_session_id, *text);
            let replayed = registry.append_event(&id, request).await.expect("replay");
            assert_eq!(replayed.event, first.event, "the same weird request replays the original event");
            let conflicting =
                ProcessEventAppendRequest::new(event_type.clone(), json!({ *text: "other" })).with_replay_key(*text);
            assert_variant(
                "conflicting replay",
                &registry.append_event(&id, conflicting).await,
                &RegistryError::ReplayConflict { process_id: String::new(), replay_key: String::new() },
            );
            assert_eq!(registry.events_after(&id, 0).await.unwrap(), vec![first.event.clone()]);
            assert_eq!(registry.count_events_through(&id, &event_type, u64::MAX).await.unwrap(), 1);
            let scope = SessionScope::with_frame(*text, "frame\u{1}");
            registry.grant_handle(&scope, &id, ProcessHandleDescriptor::default()).await.expect("grant");
            assert!(registry.has_handle_grant(&scope, &id).await.unwrap());
            let listed = registry.list_handle_grants(&scope).await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].0.process_id, id);
            let lease = registry.claim_process_lease(&id, text, 1_000).await.expect("claim with a weird owner");
            assert_eq!(lease.owner_id, *text);
            registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await.unwrap();
            still_usable(&registry, &id).await;
            let output = ProcessAwaitOutput::failure(*text, *text);
            let done = registry.complete_process(&id, output.clone()).await.expect("complete with weird strings");
            assert_eq!(done.status.await_output(), Some(&output));
            assert_eq!(registry.await_process(&id).await.unwrap(), output);
        }
        let report = registry.delete_session_process_state(weird[0]).await.unwrap();
        assert_eq!(report.revoked_handle_count, 1);
        // NUL: refused in an id, kept in a payload's keys and strings.
        assert_variant(
            "a NUL in a process id",
            &registry.register_process(registration("nul\u{0}byte")).await,
            &RegistryError::ContainsNul { process_id: String::new(), what: String::new() },
        );
        registry.register_process(registration("nul-payload")).await.expect("register");
        let payload = json!({ "text": "nul\u{0}value", "nul\u{0}key": "\u{0}" });
        let appended =
            registry.append_event("nul-payload", ProcessEventAppendRequest::new("note", payload.clone())).await;
        assert_eq!(appended.expect("a payload with NUL").event.payload, payload);
        assert_eq!(registry.events_after("nul-payload", 0).await.unwrap()[0].payload, payload);
    });
}

/// Escapes a key for a JSON pointer (RFC 6901).
fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

// ---------------------------------------------------------------------------
// u64::MAX sequences and TTLs, usize::MAX limits.
// ---------------------------------------------------------------------------

#[test]
fn extreme_sequences_are_answered_correctly() {
    isolated("extreme_sequences_are_answered_correctly", default_config, |registry| async move {
        register(&registry, "p").await;
        for _ in 0..3 {
            registry.append_event("p", ProcessEventAppendRequest::new("note", json!({"text": "n"}))).await.unwrap();
        }
        assert_eq!(registry.events_after("p", u64::MAX).await.unwrap(), vec![]);
        assert_eq!(registry.events_after("p", u64::MAX - 1).await.unwrap(), vec![]);
        assert_eq!(registry.wake_events_after("p", u64::MAX).await.unwrap(), vec![]);
        assert_eq!(registry.count_events_through("p", "note", u64::MAX).await.unwrap(), 3);
        assert_eq!(registry.count_events_through("p", "note", 0).await.unwrap(), 0);
        assert_eq!(registry.count_events_through("p", "no-such-type", u64::MAX).await.unwrap(), 0);
        assert_variant("ack_wake(u64::MAX)", &registry.ack_wake("p", u64::MAX).await, &out_of_range());
        assert_variant("ack_wake(4) beyond the log", &registry.ack_wake("p", 4).await, &out_of_range());
        assert_eq!(registry.recent_events("p", usize::MAX).await.unwrap().len(), 3);
        assert_eq!(registry.recent_events("p", 0).await.unwrap(), vec![]);
        // Nothing can come after u64::MAX: the wait must park, not answer and not spin.
        let parked =
            tokio::time::timeout(Duration::from_millis(200), registry.wait_event_after("p", "note", u64::MAX)).await;
        assert!(parked.is_err(), "wait_event_after(u64::MAX) answered: {parked:?}");
        settle_parked(&registry).await;
        // And a wait after the last sequence is woken by the next append.
        let waiter = {
            let registry = registry.clone();
            tokio::spawn(async move { registry.wait_event_after("p", "note", 3).await })
        };
        still_usable(&registry, "p").await;
        let woken = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("woken").unwrap().unwrap();
        assert_eq!(woken.sequence, 4);
        // Unknown processes stay unknown for every extreme argument.
        assert_variant("events_after on unknown", &registry.events_after("nobody", u64::MAX).await, &unknown_process());
        assert_variant("ack_wake on unknown", &registry.ack_wake("nobody", u64::MAX).await, &unknown_process());
        assert_variant("recent on unknown", &registry.recent_events("nobody", usize::MAX).await, &unknown_process());
        assert_variant(
            "wait on unknown",
            &tokio::time::timeout(Duration::from_secs(10), registry.wait_event_after("nobody", "note", u64::MAX))
                .await
                .expect("an unknown process answers at once"),
            &unknown_process(),
        );
    });
}

/// Nothing can come after `u64::MAX`: a caller waiting after it must stay
/// parked while events of its type are appended (SPEC: the first event of
/// that type with sequence > n), and leave nothing behind when it gives up.
#[test]
fn a_wait_after_u64_max_stays_parked_through_appends() {
    isolated("a_wait_after_u64_max_stays_parked_through_appends", default_config, |registry| async move {
        register(&registry, "p").await;
        let waiter = {
            let registry = registry.clone();
            tokio::spawn(async move { registry.wait_event_after("p", "note", u64::MAX).await })
        };
        for _ in 0..2_000 {
            if registry.stats().parked_waiters == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(registry.stats().parked_waiters, 1, "the wait parks");
        still_usable(&registry, "p").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiter.is_finished(), "wait_event_after(u64::MAX) was answered by sequence 1: {:?}", waiter.await);
        waiter.abort();
        settle_parked(&registry).await;
        still_usable(&registry, "p").await;
    });
}

#[test]
fn extreme_ttls_saturate_instead_of_overflowing() {
    isolated("extreme_ttls_saturate_instead_of_overflowing", manual_clock_config, |registry| async move {
        register(&registry, "p").await;
        let lease = registry.claim_process_lease("p", "a", u64::MAX).await.expect("claim with ttl u64::MAX");
        assert_eq!(lease.expires_at_epoch_ms, u64::MAX);
        assert_eq!(lease.claimed_at_epoch_ms, 1_000);
        let held = registry.claim_process_lease("p", "b", u64::MAX).await;
        assert_variant(
            "another owner against a lease that never expires",
            &held,
            &RegistryError::LeaseHeld { process_id: String::new(), owner_id: String::new(), expires_at_epoch_ms: 0 },
        );
        let renewed = registry.renew_process_lease(&lease, u64::MAX).await.expect("renew with ttl u64::MAX");
        assert_eq!(renewed.expires_at_epoch_ms, u64::MAX);
        assert_eq!(renewed.fencing_token, lease.fencing_token);
        let again = registry.claim_process_lease("p", "a", u64::MAX).await.expect("the owner re-claims");
        assert_eq!(again.fencing_token, lease.fencing_token + 1);
        registry.complete_process_lease(&ProcessLeaseCompletion::from_lease(&again)).await.unwrap();
        let zero = registry.claim_process_lease("p", "c", 0).await.expect("ttl 0");
        assert_eq!(zero.expires_at_epoch_ms, zero.claimed_at_epoch_ms, "ttl 0 is already expired");
        let renew_expired = registry.renew_process_lease(&zero, u64::MAX).await;
        assert_variant(
            "renewing an already expired lease",
            &renew_expired,
            &RegistryError::LeaseMissingOrExpired { process_id: String::new() },
        );
        let taken = registry.claim_process_lease("p", "d", u64::MAX - 1).await.expect("an expired lease is free");
        assert_eq!(taken.expires_at_epoch_ms, u64::MAX);
        assert_eq!(taken.fencing_token, again.fencing_token + 2);
        still_usable(&registry, "p").await;
    });
}

// ---------------------------------------------------------------------------
// Configurable limits.
// ---------------------------------------------------------------------------

fn tight_limits() -> Limits {
    // Ids must fit the core event type names (`process.cancel_requested` is 24 bytes) and
    // `complete_process`'s replay key for process `p` (`process:p:terminal:process.completed`, 36 bytes).
    Limits { max_id_bytes: 40, max_payload_bytes: 64, max_json_depth: 4, max_event_types: 8, ..Limits::default() }
}

fn tight_config() -> RegistryConfig {
    RegistryConfig::default().with_limits(tight_limits())
}

#[test]
fn configured_limits_produce_limit_exceeded() {
    isolated("configured_limits_produce_limit_exceeded", tight_config, configured_limits_case);
}

#[test]
fn configured_limits_produce_limit_exceeded_from_outside_the_runtime_tasks() {
    isolated_outside_tasks(
        "configured_limits_produce_limit_exceeded_from_outside_the_runtime_tasks",
        tight_config,
        configured_limits_case,
    );
}

async fn configured_limits_case(registry: ActorProcessRegistry) {
    let limits = tight_limits();
    let expect_limit = |what: &str, result: Result<(), RegistryError>, limit: usize| match result {
        Err(RegistryError::LimitExceeded { limit: reported, .. }) => {
            assert_eq!(reported, limit as u64, "{what}: the error names the configured limit")
        }
        other => panic!("{what}: expected LimitExceeded, got {other:?}"),
    };
    // Ids.
    let long_id = "x".repeat(limits.max_id_bytes + 1);
    let exact_id = "y".repeat(limits.max_id_bytes);
    expect_limit("process id", registry.register_process(registration(&long_id)).await.map(drop), limits.max_id_bytes);
    register(&registry, &exact_id).await;
    register(&registry, "p").await;
    expect_limit("owner id", registry.claim_process_lease("p", &long_id, 10).await.map(drop), limits.max_id_bytes);
    registry.claim_process_lease("p", &exact_id, 10).await.expect("an owner id at the limit");
    // Replay keys get room beyond the id limit for the keys the registry derives from
    // an id; a key far past that is refused, naming a limit of at least the id limit.
    let keyed = ProcessEventAppendRequest::new("note", json!({})).with_replay_key("k".repeat(64 * 1024));
    match registry.append_event("p", keyed).await {
        Err(RegistryError::LimitExceeded { limit, .. }) => assert!(limit >= limits.max_id_bytes as u64),
        other => panic!("a 64 KiB replay key: expected LimitExceeded, got {other:?}"),
    }
    // Event types per process: 6 core types + 1 note = 7 fits; 3 more do not.
    let many = (0..3).map(|index| ProcessEventType::new(format!("e{index}"), json!({})));
    let crowded = registration("crowded").with_extra_event_types(many);
    expect_limit("event types", registry.register_process(crowded).await.map(drop), limits.max_event_types);
    // Payload bytes and depth.
    let big = ProcessEventAppendRequest::new("note", json!({"text": "z".repeat(limits.max_payload_bytes)}));
    expect_limit("payload bytes", registry.append_event("p", big).await.map(drop), limits.max_payload_bytes);
    let deep = ProcessEventAppendRequest::new("note", json!({"a": {"b": {"c": {"d": 1}}}}));
    expect_limit("payload depth", registry.append_event("p", deep).await.map(drop), limits.max_json_depth);
    let shallow = ProcessEventAppendRequest::new("note", json!({"a": {"b": [1]}}));
    registry.append_event("p", shallow).await.expect("a payload at the depth limit");
    let output = ProcessAwaitOutput::success(json!("w".repeat(limits.max_payload_bytes)));
    expect_limit(
        "await output bytes",
        registry.complete_process("p", output).await.map(drop),
        limits.max_payload_bytes,
    );
    let deep_args = Map::from_iter([("a".to_owned(), json!({"b": {"c": {"d": {"e": 1}}}}))]);
    let registration = ProcessRegistration::new("deep-args", ProcessInput::definition("job", deep_args));
    expect_limit("input depth", registry.register_process(registration).await.map(drop), limits.max_json_depth);
    still_usable(&registry, "p").await;
    still_usable(&registry, &exact_id).await;
}

#[test]
fn default_limits_are_sensible() {
    let limits = Limits::default();
    assert!(limits.max_id_bytes >= 256 && limits.max_id_bytes < MIB, "{limits:?}");
    assert!(limits.max_payload_bytes >= 64 * 1024 && limits.max_payload_bytes < HUGE, "{limits:?}");
    assert!(limits.max_json_depth >= 32 && limits.max_json_depth <= 1_000, "{limits:?}");
    assert!(limits.max_event_types >= 16, "{limits:?}");
    assert!(limits.max_registration_bytes >= 64 * 1024 && limits.max_registration_bytes < HUGE, "{limits:?}");
    assert!(limits.max_template_bytes >= 64 * 1024 && limits.max_template_bytes < HUGE, "{limits:?}");
    assert!(limits.max_cached_schemas >= 64 && limits.max_cached_schemas <= 1 << 20, "{limits:?}");
    assert_eq!(limits.validate(), Ok(()));
}

/// `complete_process` and `ProcessEventAppendRequest::cancel_requested` derive
/// their replay keys from the process id (`process:{p}:terminal:{type}`,
/// `process:{p}:cancel_requested:{sha256}`). A process whose id is within the
/// id limit must still be completable and cancellable: the caller passed no
/// oversized input, so a `LimitExceeded` on a key the registry made up is
/// wrong.
#[test]
fn a_process_id_at_the_limit_can_still_be_completed_and_cancelled() {
    isolated("a_process_id_at_the_limit_can_still_be_completed_and_cancelled", default_config, |registry| async move {
        let id = "p".repeat(Limits::default().max_id_bytes);
        register(&registry, &id).await;
        let cancel = ProcessEventAppendRequest::cancel_requested(&id, "stop");
        let requested = registry.append_event(&id, cancel).await;
        assert!(requested.is_ok(), "cancel_requested on a process id at the limit: {}", short(&requested));
        let completed = registry.complete_process(&id, ProcessAwaitOutput::success(json!(1))).await;
        assert!(completed.is_ok(), "complete_process on a process id at the limit: {}", short(&completed));
        assert_eq!(registry.await_process(&id).await.unwrap(), ProcessAwaitOutput::success(json!(1)));
    });
}
