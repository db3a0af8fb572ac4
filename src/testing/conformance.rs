//! The reusable conformance suite: every [`ProcessRegistry`] must pass it.
//!
//! Each [`Scenario`] pins one rule of the specification (section 4, "Behaviour,
//! method by method") and is named after the behaviour it checks. [`run`]
//! gives every scenario a *fresh* registry from the caller's factory, runs it
//! as its own tokio task under a generous timeout (so a lost wakeup shows up as
//! a named failure instead of a hang, and a panicking scenario does not hide
//! the others), and panics at the end listing every failed scenario with its
//! message.
//!
//! ```ignore
//! use std::sync::Arc;
//! use process_registry::ProcessRegistry;
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_registry_conforms() {
//!     process_registry::testing::conformance::run(|| async {
//!         Arc::new(MyRegistry::new()) as Arc<dyn ProcessRegistry>
//!     })
//!     .await;
//! }
//! ```
//!
//! Scenarios only use the trait, so they only see the registry's own clock.
//! Timestamps are therefore checked with `>=`, and lease expiry is exercised
//! with a ttl of 0 (already expired) and large ttls (60 s and more). No
//! scenario sleeps to assert timing: "still parked" is checked with a short
//! timeout that must elapse and with [`JoinHandle::is_finished`].

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::error::RegistryError;
use crate::events::{
    InvocationScope, InvocationSubject, ProcessAwaitOutput, ProcessEvent, ProcessEventAppendRequest,
    ProcessEventAppendResult, ProcessEventType, ProcessTerminalSemantics, ProcessTerminalSpec, ProcessTerminalState,
    ProcessValueSelector, ProcessWakeDedupeKey, ProcessWakeSpec, CANCELLED, CANCEL_REQUESTED, COMPLETED, FAILED,
    RESUMED, WAITING,
};
use crate::model::{
    CausalRef, ProcessExternalRef, ProcessHandleDescriptor, ProcessInput, ProcessLease, ProcessLeaseCompletion,
    ProcessListFilter, ProcessProvenance, ProcessRecord, ProcessRegistration, ProcessStatus, ProcessStatusFilter,
    SessionScope, WaitKind, WaitState, PROCESS_LEASE_SCHEMA_VERSION,
};
use crate::registry::ProcessRegistry;

/// A boxed future yielding a registry.
pub type RegistryFuture = Pin<Box<dyn Future<Output = Arc<dyn ProcessRegistry>> + Send>>;

/// A shareable factory of fresh registries (see [`run_factory`]).
pub type RegistryFactory = Arc<dyn Fn() -> RegistryFuture + Send + Sync>;

/// What a scenario returns: `Err` carries a message saying what went wrong.
pub type ScenarioResult = Result<(), String>;

/// The boxed future of one scenario run.
pub type ScenarioFuture = Pin<Box<dyn Future<Output = ScenarioResult> + Send>>;

/// The body of a scenario: takes a fresh registry.
pub type ScenarioFn = fn(Arc<dyn ProcessRegistry>) -> ScenarioFuture;

/// How long one scenario may take before it is reported as hung.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a call that should complete (a woken waiter, a join) may take
/// inside a scenario before the scenario fails naming it.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a parked waiter is watched to confirm it is still parked.
const PARK_PROBE: Duration = Duration::from_millis(50);

/// One named conformance check.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// The behaviour the scenario pins.
    pub name: &'static str,
    /// The scenario body.
    pub run: ScenarioFn,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario").field("name", &self.name).finish()
    }
}

/// A failed scenario: its name and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioFailure {
    /// The scenario's name.
    pub name: &'static str,
    /// Its failure message (an assertion, a panic, or a timeout).
    pub message: String,
}

impl fmt::Display for ScenarioFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.message)
    }
}

/// Runs every scenario, each on a fresh registry from `make`, and panics
/// listing every failed scenario with its message.
pub async fn run<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ProcessRegistry>>,
{
    run_matching(make, |_| true).await;
}

/// Like [`run`], with a [`RegistryFactory`].
pub async fn run_factory(factory: RegistryFactory) {
    run(move || factory()).await;
}

/// Runs the scenarios whose name passes `select` (for example one scenario
/// while debugging), and panics listing every failure.
pub async fn run_matching<F, Fut, P>(make: F, select: P)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ProcessRegistry>>,
    P: Fn(&str) -> bool,
{
    let chosen: Vec<Scenario> = scenarios().into_iter().filter(|scenario| select(scenario.name)).collect();
    assert!(!chosen.is_empty(), "no conformance scenario matched the selection");
    let total = chosen.len();
    let failures = check(make, &chosen).await;
    if !failures.is_empty() {
        let listing: Vec<String> = failures.iter().map(|failure| format!("  - {failure}")).collect();
        panic!("{} of {total} conformance scenarios failed:\n{}", failures.len(), listing.join("\n"));
    }
}

/// Runs `chosen`, each on a fresh registry from `make`, one after another,
/// and returns the failures without panicking.
pub async fn check<F, Fut>(make: F, chosen: &[Scenario]) -> Vec<ScenarioFailure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn ProcessRegistry>>,
{
    let mut failures = Vec::new();
    for scenario in chosen {
        let registry = make().await;
        if let Err(message) = run_scenario(*scenario, registry).await {
            failures.push(ScenarioFailure { name: scenario.name, message });
        }
    }
    failures
}

/// Runs one scenario on `registry` as its own task, under [`SCENARIO_TIMEOUT`];
/// a panic or a timeout becomes an `Err`.
pub async fn run_scenario(scenario: Scenario, registry: Arc<dyn ProcessRegistry>) -> ScenarioResult {
    let task = tokio::spawn(tokio::time::timeout(SCENARIO_TIMEOUT, (scenario.run)(registry)));
    match task.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_elapsed)) => Err(format!("did not finish within {SCENARIO_TIMEOUT:?} (a lost wakeup or a deadlock?)")),
        Err(join_error) => match join_error.try_into_panic() {
            Ok(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
            Err(join_error) => Err(format!("task failed: {join_error}")),
        },
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}

// ---------------------------------------------------------------------------
// Assertion helpers: a failed check returns `Err(message)` from the scenario.
// ---------------------------------------------------------------------------

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

/// `ensure_eq!(actual, expected, context...)`.
macro_rules! ensure_eq {
    ($actual:expr, $expected:expr, $($msg:tt)+) => {
        match (&$actual, &$expected) {
            (actual, expected) => {
                if actual != expected {
                    return Err(format!(
                        "{}: expected {:?}, got {:?}",
                        format!($($msg)+),
                        expected,
                        actual
                    ));
                }
            }
        }
    };
}

/// Evaluates to the error of `$result`, which must be `Err` matching `$pattern`.
macro_rules! ensure_err {
    ($result:expr, $pattern:pat, $($msg:tt)+) => {
        match $result {
            Ok(value) => {
                return Err(format!(
                    "{}: expected an error matching `{}`, got Ok({:?})",
                    format!($($msg)+),
                    stringify!($pattern),
                    value
                ))
            }
            Err(err) => {
                if !matches!(err, $pattern) {
                    return Err(format!(
                        "{}: expected an error matching `{}`, got {:?} ({})",
                        format!($($msg)+),
                        stringify!($pattern),
                        err,
                        err
                    ));
                }
                err
            }
        }
    };
}

/// The error of `result`, which must be `Err` (of any kind).
fn expect_err<T: fmt::Debug>(result: Result<T, RegistryError>, what: &str) -> Result<RegistryError, String> {
    match result {
        Ok(value) => Err(format!("{what}: expected an error, got Ok({value:?})")),
        Err(err) => Ok(err),
    }
}

/// Turns a registry error into a scenario failure naming the call.
trait Ctx<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T, String>;
}

impl<T> Ctx<T> for Result<T, RegistryError> {
    fn ctx(self, what: impl fmt::Display) -> Result<T, String> {
        self.map_err(|err| format!("{what}: unexpected error {err:?} ({err})"))
    }
}

/// The error must name `process_id` in its message (and in `process_id()`).
fn ensure_names(err: &RegistryError, process_id: &str, what: &str) -> ScenarioResult {
    ensure!(err.to_string().contains(process_id), "{what}: error message `{err}` does not name process `{process_id}`");
    ensure!(
        err.process_id().contains(process_id),
        "{what}: error {err:?} reports process id `{}`, expected `{process_id}`",
        err.process_id()
    );
    Ok(())
}

/// Awaits `future`, failing the scenario (naming `what`) if it takes longer
/// than [`RESOLVE_TIMEOUT`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(RESOLVE_TIMEOUT, future)
        .await
        .map_err(|_| format!("{what}: did not complete within {RESOLVE_TIMEOUT:?} (lost wakeup?)"))
}

/// Joins a spawned task, within [`RESOLVE_TIMEOUT`].
async fn join<T>(what: &str, handle: JoinHandle<T>) -> Result<T, String> {
    match within(what, handle).await? {
        Ok(value) => Ok(value),
        Err(err) => Err(format!("{what}: task failed: {err}")),
    }
}

/// The task must still be running: it must not finish after yielding, nor
/// within [`PARK_PROBE`].
async fn ensure_pending<T>(what: &str, handle: &mut JoinHandle<T>) -> ScenarioResult {
    for _ in 0..16 {
        tokio::task::yield_now().await;
    }
    ensure!(!handle.is_finished(), "{what}: finished, but it should still be parked");
    let probe = tokio::time::timeout(PARK_PROBE, &mut *handle).await;
    ensure!(probe.is_err(), "{what}: finished, but it should still be parked");
    Ok(())
}

/// A call that should park: it must not complete within [`PARK_PROBE`]
/// (its future is then dropped, which is also the "caller gives up" path).
async fn ensure_parks<T: fmt::Debug>(what: &str, future: impl Future<Output = T>) -> ScenarioResult {
    match tokio::time::timeout(PARK_PROBE, future).await {
        Err(_elapsed) => Ok(()),
        Ok(value) => Err(format!("{what}: returned {value:?}, but it should have parked")),
    }
}

// ---------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------

type Reg = Arc<dyn ProcessRegistry>;

fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", Map::new()))
}

fn pointer(path: &str) -> ProcessValueSelector {
    ProcessValueSelector::Pointer(path.to_owned())
}

/// `note`: plain, `{text?: string, count?: integer, items?: [integer]}`.
fn note_type() -> ProcessEventType {
    ProcessEventType::new(
        "note",
        json!({
            "type": "object",
            "properties": {
                "text": {"type": "string"},
                "count": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "integer"}}
            }
        }),
    )
}

/// `alert`: wakes with input `/msg` and event-identity dedupe.
fn alert_type() -> ProcessEventType {
    ProcessEventType::new(
        "alert",
        json!({"type": "object", "properties": {"msg": {"type": "string"}}, "required": ["msg"]}),
    )
    .with_wake(ProcessWakeSpec::new(pointer("/msg")))
}

/// An event type accepting any payload that wakes per `spec`.
fn wake_type(name: &str, spec: ProcessWakeSpec) -> ProcessEventType {
    ProcessEventType::new(name, json!({})).with_wake(spec)
}

/// The registration most scenarios use: core types plus `note` and `alert`.
fn standard(id: &str) -> ProcessRegistration {
    registration(id).with_extra_event_types(vec![note_type(), alert_type()])
}

fn note(text: &str) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("note", json!({ "text": text }))
}

fn alert(msg: &str) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("alert", json!({ "msg": msg }))
}

/// A `process.completed` append carrying `await_output`, with replay key `key`.
fn completed(key: &str, await_output: Value) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new(COMPLETED, json!({ "await_output": await_output })).with_replay_key(key)
}

fn signal_wait(name: &str) -> WaitState {
    WaitState {
        kind: WaitKind::Signal {
            name: name.to_owned(),
            event_type: "note".to_owned(),
            key: format!("wait-key-{name}"),
            ordinal: 1,
        },
        since_ms: 1,
    }
}

fn external_ref(id: &str) -> ProcessExternalRef {
    ProcessExternalRef { backend: "queue".to_owned(), id: id.to_owned(), metadata: Some(json!({"attempt": 1})) }
}

fn label(text: &str) -> ProcessHandleDescriptor {
    ProcessHandleDescriptor { kind: Some("monitor".to_owned()), label: Some(text.to_owned()) }
}

fn status_filter(status: ProcessStatusFilter) -> ProcessListFilter {
    ProcessListFilter { status, ..ProcessListFilter::default() }
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `wake:` + SHA-256 hex of the JSON of `[target_scope_id, dedupe_key]`,
/// computed independently of the crate's hashing module.
fn expected_wake_id(target_scope_id: &str, dedupe_key: &str) -> String {
    let text = json!([target_scope_id, dedupe_key]).to_string();
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("wake:{hex}")
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

fn sequences(events: &[ProcessEvent]) -> Vec<u64> {
    events.iter().map(|event| event.sequence).collect()
}

fn ids(records: &[ProcessRecord]) -> Vec<String> {
    records.iter().map(|record| record.id.clone()).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

async fn setup(registry: &Reg, registration: ProcessRegistration) -> Result<ProcessRecord, String> {
    let id = registration.id.clone();
    registry.register_process(registration).await.ctx(format!("register `{id}`"))
}

async fn append(
    registry: &Reg,
    id: &str,
    request: ProcessEventAppendRequest,
) -> Result<ProcessEventAppendResult, String> {
    let what = format!("append `{}` to `{id}`", request.event_type);
    registry.append_event(id, request).await.ctx(what)
}

async fn log(registry: &Reg, id: &str) -> Result<Vec<ProcessEvent>, String> {
    registry.events_after(id, 0).await.ctx(format!("events_after(`{id}`, 0)"))
}

async fn record(registry: &Reg, id: &str) -> Result<ProcessRecord, String> {
    registry.get_process(id).await.ok_or_else(|| format!("get_process(`{id}`) returned None for a registered process"))
}

async fn wake_input(registry: &Reg, id: &str, event_type: &str, payload: Value) -> Result<Option<String>, String> {
    let result = append(registry, id, ProcessEventAppendRequest::new(event_type, payload)).await?;
    Ok(result.event.semantics.wake.map(|wake| wake.input))
}

macro_rules! scenario_list {
    ($($name:ident),* $(,)?) => {
        vec![$(Scenario { name: stringify!($name), run: |registry| Box::pin($name(registry)) }),*]
    };
}

/// Every scenario, in the order [`run`] runs them.
pub fn scenarios() -> Vec<Scenario> {
    scenario_list![
        // register_process
        register_new_process_is_running_with_equal_timestamps,
        register_adds_missing_core_event_types,
        register_keeps_a_declared_core_event_type_as_declared,
        register_same_registration_returns_existing_record_not_reset,
        register_same_registration_after_completion_returns_terminal_record,
        register_different_registration_same_id_is_a_conflict,
        register_rejects_empty_process_id,
        register_rejects_empty_host_profile_id,
        register_rejects_empty_event_type_name,
        register_rejects_duplicate_event_type_names,
        register_rejects_non_completed_terminal_type_without_selector,
        register_rejects_invalid_json_schema,
        // append_event
        append_assigns_gapless_sequences_from_one,
        append_stamps_invocation_lineage_and_replay_key,
        append_replay_with_same_payload_returns_original_event,
        append_replay_with_different_payload_is_a_replay_conflict,
        append_undeclared_event_type_is_rejected,
        append_terminal_event_requires_non_empty_replay_key,
        append_cancel_requested_requires_non_empty_replay_key,
        append_schema_violation_reports_failing_path,
        selector_payload_selects_whole_payload,
        selector_pointer_selects_the_pointed_value,
        selector_pointer_that_matches_nothing_is_invalid_payload,
        selector_const_selects_the_constant,
        selector_template_replaces_fields_with_their_strings,
        selector_present_reports_true_or_false,
        terminal_output_that_parses_as_await_output_is_used_as_is,
        terminal_completed_wraps_other_values_as_success,
        terminal_failed_wraps_value_as_process_failed,
        terminal_cancelled_wraps_value_as_cancelled,
        terminal_completed_without_selector_uses_whole_payload,
        wake_when_falsy_suppresses_the_wake,
        wake_input_renders_strings_unquoted_and_other_json_rendered,
        wake_dedupe_key_event_identity_is_process_and_sequence,
        wake_dedupe_key_selector_uses_the_selected_string,
        wake_dedupe_key_const_is_the_constant,
        wake_delivery_requires_a_target_scope,
        wake_delivery_defaults_to_record_wake_target,
        wake_delivery_request_target_overrides_record_target,
        wake_id_is_hash_of_target_scope_and_dedupe_key,
        wake_delivery_carries_event_lineage_and_provenance_caused_by,
        replayed_append_rematerializes_delivery_for_replay_target,
        terminal_event_on_terminal_process_is_already_terminal,
        replayed_terminal_request_returns_original_event,
        non_terminal_events_are_allowed_after_terminal,
        terminal_event_clears_wait_state,
        cancel_requested_request_repeat_is_idempotent,
        // reads
        events_after_returns_later_events_ascending,
        count_events_through_counts_one_type_up_to_sequence,
        recent_events_returns_last_events_ascending,
        wake_events_after_lists_unacked_wake_events_only,
        ack_wake_is_idempotent,
        ack_wake_beyond_the_log_is_an_error,
        acks_survive_session_deletion,
        // waiting
        wait_event_after_returns_existing_event_immediately,
        wait_event_after_parks_until_a_matching_append,
        wait_event_after_beyond_the_log_is_not_answered_by_earlier_sequences,
        await_process_parks_until_complete_process,
        await_process_returns_output_of_terminal_process_immediately,
        abandoned_waiters_leave_the_registry_usable,
        // complete_process
        complete_process_appends_terminal_event_with_deterministic_replay_key,
        complete_process_repeat_is_idempotent,
        complete_process_with_different_outcome_afterwards_errors,
        // wait state, external ref
        set_and_clear_process_wait_update_wait_and_updated_at,
        set_process_wait_on_terminal_process_errors,
        set_external_ref_updates_record_and_updated_at,
        // get / list
        get_process_unknown_is_none,
        list_processes_defaults_to_running_ids_ascending,
        list_processes_filters_by_status,
        list_processes_filters_by_definition_and_waiting,
        list_non_terminal_is_ascending_and_excludes_terminal,
        // grants
        grant_handle_unknown_process_errors,
        grant_handle_regrant_replaces_descriptor,
        revoke_handle_removes_grant_and_is_noop_when_missing,
        transfer_handle_grants_moves_grants_keeping_descriptors,
        transfer_handle_grants_is_all_or_nothing,
        list_handle_grants_sorted_by_process_id_with_current_records,
        list_live_handle_grants_excludes_terminal_processes,
        has_handle_grant_only_for_granted_existing_process,
        handle_grants_for_process_sorted_by_session_id,
        grant_changes_never_append_events,
        delete_session_process_state_covers_every_frame_of_the_session,
        delete_session_reports_orphaned_and_preserved_sorted_deduped_non_terminal,
        // leases
        claim_lease_unknown_process_errors,
        claim_lease_terminal_process_errors,
        claim_lease_grants_first_fencing_token_and_expiry,
        claim_lease_held_by_other_owner_errors_already_leased,
        claim_lease_ttl_zero_is_expired_and_can_be_taken_over,
        claim_lease_same_owner_reclaim_bumps_fencing_token,
        renew_lease_extends_and_stale_token_fails_missing_or_expired,
        complete_lease_with_stale_token_is_a_noop,
        complete_lease_then_claim_gets_higher_fencing_token,
        lease_tokens_differ_between_claims,
        // errors
        unknown_process_is_an_error_everywhere_it_is_named,
        every_error_names_the_process_id,
        bad_input_leaves_the_process_usable,
        deeply_nested_payload_never_panics,
        // concurrency
        concurrent_appends_get_gapless_unique_sequences,
        concurrent_registrations_of_one_id_yield_one_record,
        concurrent_conflicting_registrations_resolve_to_one_registration,
        concurrent_replayed_appends_commit_once,
        concurrent_complete_process_same_outcome_commits_once,
        concurrent_lease_claims_have_exactly_one_winner,
        parallel_appends_on_many_processes_stay_independent,
        thousand_waiters_are_answered_by_one_append,
        many_await_process_waiters_all_receive_the_outcome,
        append_does_not_wake_waiters_of_other_processes,
    ]
}

// ---------------------------------------------------------------------------
// register_process
// ---------------------------------------------------------------------------

async fn register_new_process_is_running_with_equal_timestamps(r: Reg) -> ScenarioResult {
    let id = "proc-new";
    let created = setup(&r, standard(id)).await?;
    ensure_eq!(created.id, id, "record id");
    ensure_eq!(created.status, ProcessStatus::Running, "status of a new process");
    ensure!(!created.is_terminal(), "a new process must not be terminal");
    ensure_eq!(
        created.updated_at_ms,
        created.created_at_ms,
        "updated_at_ms of a new record (both timestamps are `now`)"
    );
    ensure!(created.created_at_ms > 0, "created_at_ms must be set, got 0");
    ensure!(
        is_lower_hex(&created.registration_hash, 64),
        "registration_hash must be 64 lowercase hex chars (SHA-256), got `{}`",
        created.registration_hash
    );
    ensure!(created.wait.is_none(), "a new record has no wait state");
    ensure!(created.external_ref.is_none(), "a new record has no external ref");
    ensure_eq!(created.input, ProcessInput::definition("job", Map::new()), "record input");
    ensure_eq!(created.provenance, ProcessProvenance::default(), "record provenance");
    ensure_eq!(r.get_process(id).await, Some(created.clone()), "get_process after register");
    ensure!(log(&r, id).await?.is_empty(), "a new process has an empty log");
    Ok(())
}

async fn register_adds_missing_core_event_types(r: Reg) -> ScenarioResult {
    let id = "proc-core";
    let created = setup(&r, registration(id).with_event_types(vec![note_type()])).await?;
    let names: Vec<&str> = created.event_types.iter().map(|ty| ty.name.as_str()).collect();
    for core in [CANCEL_REQUESTED, WAITING, RESUMED, COMPLETED, FAILED, CANCELLED, "note"] {
        ensure_eq!(names.iter().filter(|name| **name == core).count(), 1, "declarations of `{core}` among {names:?}");
    }
    ensure_eq!(names.len(), 7, "event types after adding the core ones: {names:?}");
    for plain in [CANCEL_REQUESTED, WAITING, RESUMED] {
        let declared = created.event_type(plain).ok_or_else(|| format!("`{plain}` missing"))?;
        ensure!(
            declared.semantics.terminal.is_none() && declared.semantics.wake.is_none(),
            "core type `{plain}` must be plain, got {:?}",
            declared.semantics
        );
    }
    for (name, state) in [
        (COMPLETED, ProcessTerminalState::Completed),
        (FAILED, ProcessTerminalState::Failed),
        (CANCELLED, ProcessTerminalState::Cancelled),
    ] {
        let declared = created.event_type(name).ok_or_else(|| format!("`{name}` missing"))?;
        ensure_eq!(
            declared.semantics.terminal,
            Some(ProcessTerminalSpec { state, await_output: Some(pointer("/await_output")) }),
            "terminal spec of core type `{name}`"
        );
    }
    // The core types are usable.
    let waiting = append(&r, id, ProcessEventAppendRequest::new(WAITING, json!({}))).await?;
    ensure_eq!(waiting.event.sequence, 1, "sequence of a core `process.waiting` event");
    let resumed = append(&r, id, ProcessEventAppendRequest::new(RESUMED, json!({}))).await?;
    ensure_eq!(resumed.event.sequence, 2, "sequence of a core `process.resumed` event");
    Ok(())
}

async fn register_keeps_a_declared_core_event_type_as_declared(r: Reg) -> ScenarioResult {
    let id = "proc-core-custom";
    let custom = ProcessEventType::new(WAITING, json!({"type": "object", "required": ["why"]}));
    let created = setup(&r, registration(id).with_event_types(vec![custom.clone()])).await?;
    ensure_eq!(created.event_types.len(), 6, "event types (custom core type not duplicated)");
    ensure_eq!(created.event_type(WAITING).cloned(), Some(custom), "the declared `process.waiting`");
    let err = ensure_err!(
        r.append_event(id, ProcessEventAppendRequest::new(WAITING, json!({}))).await,
        RegistryError::InvalidPayload { .. },
        "a payload breaking the declared core type's schema"
    );
    ensure_names(&err, id, "invalid payload")?;
    append(&r, id, ProcessEventAppendRequest::new(WAITING, json!({"why": "input"}))).await?;
    Ok(())
}

async fn register_same_registration_returns_existing_record_not_reset(r: Reg) -> ScenarioResult {
    let id = "proc-idem";
    let first = setup(&r, standard(id)).await?;
    append(&r, id, note("progress")).await?;
    r.set_process_wait(id, signal_wait("s")).await.ctx("set_process_wait")?;
    r.set_external_ref(id, external_ref("job-1")).await.ctx("set_external_ref")?;
    let current = record(&r, id).await?;
    let again = r.register_process(standard(id)).await.ctx("re-registering the same registration")?;
    ensure_eq!(again, current, "re-register must return the record as it is now");
    ensure_eq!(again.created_at_ms, first.created_at_ms, "created_at_ms after re-register");
    ensure!(again.updated_at_ms >= first.updated_at_ms, "updated_at_ms went backwards on re-register");
    ensure_eq!(again.registration_hash, first.registration_hash, "registration hash");
    ensure!(again.wait.is_some(), "re-register reset the wait state");
    ensure!(again.external_ref.is_some(), "re-register reset the external ref");
    ensure_eq!(record(&r, id).await?, current, "get_process after re-register");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after re-register");
    ensure_eq!(ids(&r.list_processes(&ProcessListFilter::any()).await.ctx("list")?), strings(&[id]), "processes");
    Ok(())
}

async fn register_same_registration_after_completion_returns_terminal_record(r: Reg) -> ScenarioResult {
    let id = "proc-idem-done";
    setup(&r, standard(id)).await?;
    let done = r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx("complete_process")?;
    let again = r.register_process(standard(id)).await.ctx("re-register")?;
    ensure_eq!(again, done, "re-register of a completed process returns its terminal record");
    ensure!(again.is_terminal(), "re-register reset the terminal status");
    Ok(())
}

async fn register_different_registration_same_id_is_a_conflict(r: Reg) -> ScenarioResult {
    let id = "proc-conflict";
    let original = setup(&r, standard(id)).await?;
    let err = ensure_err!(
        r.register_process(standard(id).with_env_ref("other-env")).await,
        RegistryError::RegistrationConflict { .. },
        "registering another registration under the same id"
    );
    ensure_names(&err, id, "registration conflict")?;
    let err = ensure_err!(
        r.register_process(ProcessRegistration::new(id, ProcessInput::external(json!({"x": 1})))).await,
        RegistryError::RegistrationConflict { .. },
        "registering another input under the same id"
    );
    ensure_names(&err, id, "registration conflict")?;
    ensure_eq!(record(&r, id).await?, original, "the original record after conflicts");
    Ok(())
}

async fn ensure_invalid_registration(r: &Reg, registration: ProcessRegistration, what: &str) -> ScenarioResult {
    let id = registration.id.clone();
    let err = ensure_err!(r.register_process(registration).await, RegistryError::InvalidRegistration { .. }, "{what}");
    if !id.is_empty() {
        ensure_names(&err, &id, what)?;
        ensure!(r.get_process(&id).await.is_none(), "{what}: a rejected registration created `{id}`");
    }
    let all = r.list_processes(&ProcessListFilter::any()).await.ctx("list_processes(any)")?;
    ensure!(all.is_empty(), "{what}: a rejected registration was listed: {:?}", ids(&all));
    Ok(())
}

async fn register_rejects_empty_process_id(r: Reg) -> ScenarioResult {
    ensure_invalid_registration(&r, standard(""), "an empty process id").await
}

async fn register_rejects_empty_host_profile_id(r: Reg) -> ScenarioResult {
    ensure_invalid_registration(&r, standard("proc-no-profile").with_host_profile_id(""), "an empty host profile id")
        .await
}

async fn register_rejects_empty_event_type_name(r: Reg) -> ScenarioResult {
    let registration = standard("proc-empty-type").with_extra_event_types(vec![ProcessEventType::new("", json!({}))]);
    ensure_invalid_registration(&r, registration, "an empty event type name").await
}

async fn register_rejects_duplicate_event_type_names(r: Reg) -> ScenarioResult {
    let twice = standard("proc-dup-type").with_extra_event_types(vec![ProcessEventType::new("note", json!({}))]);
    ensure_invalid_registration(&r, twice, "a custom event type declared twice").await?;
    let core_twice =
        registration("proc-dup-core").with_extra_event_types(vec![ProcessEventType::new(COMPLETED, json!({}))]);
    ensure_invalid_registration(&r, core_twice, "a core event type declared twice").await
}

async fn register_rejects_non_completed_terminal_type_without_selector(r: Reg) -> ScenarioResult {
    for state in [ProcessTerminalState::Failed, ProcessTerminalState::Cancelled] {
        let terminal =
            ProcessEventType::new("end", json!({})).with_terminal(ProcessTerminalSpec { state, await_output: None });
        let registration = standard("proc-no-selector").with_extra_event_types(vec![terminal]);
        ensure_invalid_registration(&r, registration, &format!("a {state:?} terminal type without selector")).await?;
    }
    let done = ProcessEventType::new("end", json!({}))
        .with_terminal(ProcessTerminalSpec { state: ProcessTerminalState::Completed, await_output: None });
    setup(&r, standard("proc-no-selector").with_extra_event_types(vec![done])).await?;
    Ok(())
}

async fn register_rejects_invalid_json_schema(r: Reg) -> ScenarioResult {
    for schema in [json!({"type": 17}), json!({"type": "no-such-type"})] {
        let registration =
            standard("proc-bad-schema").with_extra_event_types(vec![ProcessEventType::new("bad", schema.clone())]);
        ensure_invalid_registration(&r, registration, &format!("payload schema {schema}")).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// append_event
// ---------------------------------------------------------------------------

async fn append_assigns_gapless_sequences_from_one(r: Reg) -> ScenarioResult {
    let id = "proc-seq";
    setup(&r, standard(id)).await?;
    for expected in 1..=5u64 {
        let result = append(&r, id, note(&format!("n{expected}"))).await?;
        ensure_eq!(result.event.sequence, expected, "sequence of append #{expected}");
        ensure_eq!(result.event.process_id, id, "event process_id");
        ensure_eq!(result.event.event_type, "note", "event type");
        ensure_eq!(result.event.payload, json!({"text": format!("n{expected}")}), "event payload");
        ensure!(result.wake_delivery.is_none(), "a plain event has no wake delivery");
    }
    let events = log(&r, id).await?;
    ensure_eq!(sequences(&events), vec![1, 2, 3, 4, 5], "log sequences");
    Ok(())
}

async fn append_stamps_invocation_lineage_and_replay_key(r: Reg) -> ScenarioResult {
    let id = "proc-lineage";
    let created = setup(&r, standard(id)).await?;
    let first = append(&r, id, note("a").with_replay_key("rk-1")).await?.event;
    ensure_eq!(first.invocation.scope, InvocationScope::Runtime, "invocation scope");
    ensure_eq!(
        first.invocation.subject,
        InvocationSubject::ProcessEvent { process_id: id.to_owned(), sequence: 1, event_type: "note".to_owned() },
        "invocation subject"
    );
    ensure_eq!(first.invocation.caused_by, CausalRef::Process { process_id: id.to_owned() }, "invocation caused_by");
    ensure_eq!(first.invocation.replay_key.as_deref(), Some("rk-1"), "invocation replay key");
    ensure!(
        first.occurred_at_ms >= created.created_at_ms,
        "occurred_at_ms {} is before created_at_ms {}",
        first.occurred_at_ms,
        created.created_at_ms
    );
    let second = append(&r, id, note("b")).await?.event;
    ensure_eq!(second.invocation.replay_key, None, "replay key of an unkeyed append");
    ensure!(second.occurred_at_ms >= first.occurred_at_ms, "occurred_at_ms went backwards");
    let after = record(&r, id).await?;
    ensure!(after.updated_at_ms >= created.updated_at_ms, "updated_at_ms went backwards after an append");
    ensure_eq!(log(&r, id).await?, vec![first, second], "the log holds the returned events");
    Ok(())
}

async fn append_replay_with_same_payload_returns_original_event(r: Reg) -> ScenarioResult {
    let id = "proc-replay";
    setup(&r, standard(id)).await?;
    let original = append(&r, id, note("x").with_replay_key("k")).await?;
    append(&r, id, note("y")).await?;
    let replayed = append(&r, id, note("x").with_replay_key("k")).await?;
    ensure_eq!(replayed.event, original.event, "a replay returns the original event");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1, 2], "log after a replay (nothing appended)");
    let next = append(&r, id, note("z")).await?;
    ensure_eq!(next.event.sequence, 3, "sequence after a replay");
    Ok(())
}

async fn append_replay_with_different_payload_is_a_replay_conflict(r: Reg) -> ScenarioResult {
    let id = "proc-replay-conflict";
    setup(&r, standard(id)).await?;
    let payload = json!({"text": "x", "msg": "x"});
    append(&r, id, ProcessEventAppendRequest::new("note", payload.clone()).with_replay_key("k")).await?;
    let err = ensure_err!(
        r.append_event(id, note("other").with_replay_key("k")).await,
        RegistryError::ReplayConflict { .. },
        "same replay key, different payload"
    );
    ensure_names(&err, id, "replay conflict")?;
    let err = ensure_err!(
        r.append_event(id, ProcessEventAppendRequest::new("alert", payload).with_replay_key("k")).await,
        RegistryError::ReplayConflict { .. },
        "same replay key and payload, different event type"
    );
    ensure_names(&err, id, "replay conflict")?;
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after replay conflicts");
    Ok(())
}

async fn append_undeclared_event_type_is_rejected(r: Reg) -> ScenarioResult {
    let id = "proc-undeclared";
    setup(&r, standard(id)).await?;
    let err = ensure_err!(
        r.append_event(id, ProcessEventAppendRequest::new("nope", json!({}))).await,
        RegistryError::UndeclaredEventType { .. },
        "appending an undeclared type"
    );
    ensure_names(&err, id, "undeclared event type")?;
    if let RegistryError::UndeclaredEventType { event_type, .. } = &err {
        ensure_eq!(event_type, "nope", "the error's event type");
    }
    ensure!(log(&r, id).await?.is_empty(), "an undeclared append was committed");
    Ok(())
}

async fn append_terminal_event_requires_non_empty_replay_key(r: Reg) -> ScenarioResult {
    let id = "proc-terminal-key";
    let finish = ProcessEventType::new("finish", json!({}))
        .with_terminal(ProcessTerminalSpec { state: ProcessTerminalState::Completed, await_output: None });
    setup(&r, standard(id).with_extra_event_types(vec![finish])).await?;
    let unkeyed = ProcessEventAppendRequest::new(COMPLETED, json!({"await_output": 1}));
    let requests = [
        ("core terminal type without key", unkeyed.clone()),
        ("core terminal type with empty key", unkeyed.with_replay_key("")),
        ("custom terminal type without key", ProcessEventAppendRequest::new("finish", json!({}))),
        (
            "failed terminal type with empty key",
            ProcessEventAppendRequest::new(FAILED, json!({"await_output": "x"})).with_replay_key(""),
        ),
    ];
    for (what, request) in requests {
        let err = ensure_err!(r.append_event(id, request).await, RegistryError::MissingReplayKey { .. }, "{what}");
        ensure_names(&err, id, what)?;
    }
    ensure_eq!(record(&r, id).await?.status, ProcessStatus::Running, "status after refused terminals");
    ensure!(log(&r, id).await?.is_empty(), "a refused terminal append was committed");
    let done = append(&r, id, ProcessEventAppendRequest::new("finish", json!({})).with_replay_key("f")).await?;
    ensure_eq!(done.event.sequence, 1, "the keyed terminal append");
    Ok(())
}

async fn append_cancel_requested_requires_non_empty_replay_key(r: Reg) -> ScenarioResult {
    let id = "proc-cancel-key";
    setup(&r, standard(id)).await?;
    let request = ProcessEventAppendRequest::new(CANCEL_REQUESTED, json!({"reason": "stop"}));
    for (what, request) in [("no key", request.clone()), ("empty key", request.clone().with_replay_key(""))] {
        let err = ensure_err!(
            r.append_event(id, request).await,
            RegistryError::MissingReplayKey { .. },
            "process.cancel_requested with {what}"
        );
        ensure_names(&err, id, what)?;
    }
    ensure!(log(&r, id).await?.is_empty(), "a refused cancel request was committed");
    let accepted = append(&r, id, request.with_replay_key("cancel-1")).await?;
    ensure_eq!(accepted.event.sequence, 1, "keyed cancel request");
    ensure_eq!(record(&r, id).await?.status, ProcessStatus::Running, "a cancel request is not terminal");
    Ok(())
}

async fn append_schema_violation_reports_failing_path(r: Reg) -> ScenarioResult {
    let id = "proc-schema";
    setup(&r, standard(id)).await?;
    let cases = [
        (json!({"count": "many"}), "/count"),
        (json!({"text": 5}), "/text"),
        (json!({"items": [1, "two", 3]}), "/items/1"),
    ];
    for (payload, expected_path) in cases {
        let err = ensure_err!(
            r.append_event(id, ProcessEventAppendRequest::new("note", payload.clone())).await,
            RegistryError::InvalidPayload { .. },
            "payload {payload}"
        );
        ensure_names(&err, id, "invalid payload")?;
        if let RegistryError::InvalidPayload { path, event_type, .. } = &err {
            ensure_eq!(path, expected_path, "failing path of payload {payload}");
            ensure_eq!(event_type, "note", "event type of the invalid payload error");
        }
    }
    ensure!(log(&r, id).await?.is_empty(), "an invalid payload was committed");
    Ok(())
}

async fn selector_payload_selects_whole_payload(r: Reg) -> ScenarioResult {
    let id = "proc-sel-payload";
    setup(
        &r,
        standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(ProcessValueSelector::Payload))]),
    )
    .await?;
    let input = wake_input(&r, id, "w", json!({"a": 1})).await?;
    ensure_eq!(input.as_deref(), Some(r#"{"a":1}"#), "wake input selected by Payload");
    let input = wake_input(&r, id, "w", json!("plain")).await?;
    ensure_eq!(input.as_deref(), Some("plain"), "wake input of a string payload");
    Ok(())
}

async fn selector_pointer_selects_the_pointed_value(r: Reg) -> ScenarioResult {
    let id = "proc-sel-pointer";
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(pointer("/a/b")))])).await?;
    let input = wake_input(&r, id, "w", json!({"a": {"b": "deep"}, "c": 1})).await?;
    ensure_eq!(input.as_deref(), Some("deep"), "wake input selected by Pointer(/a/b)");
    Ok(())
}

async fn selector_pointer_that_matches_nothing_is_invalid_payload(r: Reg) -> ScenarioResult {
    let id = "proc-sel-missing";
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(pointer("/a/b")))])).await?;
    let err = ensure_err!(
        r.append_event(id, ProcessEventAppendRequest::new("w", json!({"a": {}}))).await,
        RegistryError::InvalidPayload { .. },
        "a wake input pointer matching nothing"
    );
    ensure_names(&err, id, "unmatched pointer")?;
    let err = ensure_err!(
        r.append_event(id, ProcessEventAppendRequest::new(COMPLETED, json!({})).with_replay_key("t")).await,
        RegistryError::InvalidPayload { .. },
        "a terminal await output pointer (/await_output) matching nothing"
    );
    ensure_names(&err, id, "unmatched pointer")?;
    ensure!(
        err.to_string().contains("/await_output"),
        "the error should name the unmatched pointer `/await_output`: {err}"
    );
    ensure!(log(&r, id).await?.is_empty(), "an event with an unmatched pointer was committed");
    ensure_eq!(record(&r, id).await?.status, ProcessStatus::Running, "status after an unmatched terminal pointer");
    Ok(())
}

async fn selector_const_selects_the_constant(r: Reg) -> ScenarioResult {
    let id = "proc-sel-const";
    setup(
        &r,
        standard(id).with_extra_event_types(vec![
            wake_type("w", ProcessWakeSpec::new(ProcessValueSelector::Const(json!("fixed")))),
            wake_type("n", ProcessWakeSpec::new(ProcessValueSelector::Const(json!(7)))),
        ]),
    )
    .await?;
    ensure_eq!(wake_input(&r, id, "w", json!({"x": 1})).await?.as_deref(), Some("fixed"), "Const(\"fixed\")");
    ensure_eq!(wake_input(&r, id, "n", json!({})).await?.as_deref(), Some("7"), "Const(7)");
    Ok(())
}

async fn selector_template_replaces_fields_with_their_strings(r: Reg) -> ScenarioResult {
    let id = "proc-sel-template";
    let template = ProcessValueSelector::Template {
        template: "{name} took {secs}s".to_owned(),
        fields: BTreeMap::from([("name".to_owned(), pointer("/name")), ("secs".to_owned(), pointer("/secs"))]),
    };
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(template))])).await?;
    let input = wake_input(&r, id, "w", json!({"name": "build", "secs": 3})).await?;
    ensure_eq!(input.as_deref(), Some("build took 3s"), "rendered template");
    Ok(())
}

async fn selector_present_reports_true_or_false(r: Reg) -> ScenarioResult {
    let id = "proc-sel-present";
    setup(
        &r,
        standard(id).with_extra_event_types(vec![wake_type(
            "w",
            ProcessWakeSpec::new(ProcessValueSelector::Present("/x".to_owned())),
        )]),
    )
    .await?;
    ensure_eq!(wake_input(&r, id, "w", json!({"x": 5})).await?.as_deref(), Some("true"), "Present(/x), x present");
    ensure_eq!(
        wake_input(&r, id, "w", json!({"x": null})).await?.as_deref(),
        Some("true"),
        "Present(/x), x present with null"
    );
    ensure_eq!(wake_input(&r, id, "w", json!({"y": 1})).await?.as_deref(), Some("false"), "Present(/x), x absent");
    Ok(())
}

/// Appends a terminal request to a fresh standard process and checks the
/// materialized await output on the event, the record, and `await_process`.
async fn ensure_terminal_output(
    r: &Reg,
    id: &str,
    request: ProcessEventAppendRequest,
    state: ProcessTerminalState,
    expected: ProcessAwaitOutput,
) -> ScenarioResult {
    let result = append(r, id, request).await?;
    ensure_eq!(
        result.event.semantics.terminal,
        Some(ProcessTerminalSemantics { state, await_output: expected.clone() }),
        "materialized terminal semantics on `{id}`"
    );
    let expected_status = match state {
        ProcessTerminalState::Completed => ProcessStatus::Completed { await_output: expected.clone() },
        ProcessTerminalState::Failed => ProcessStatus::Failed { await_output: expected.clone() },
        ProcessTerminalState::Cancelled => ProcessStatus::Cancelled { await_output: expected.clone() },
    };
    ensure_eq!(record(r, id).await?.status, expected_status, "status of `{id}`");
    let awaited = within("await_process of a terminal process", r.await_process(id)).await?.ctx("await_process")?;
    ensure_eq!(awaited, expected, "await_process of `{id}`");
    Ok(())
}

async fn terminal_output_that_parses_as_await_output_is_used_as_is(r: Reg) -> ScenarioResult {
    setup(&r, standard("proc-parse-a")).await?;
    ensure_terminal_output(
        &r,
        "proc-parse-a",
        completed("t", json!({"kind": "success", "value": 7})),
        ProcessTerminalState::Completed,
        ProcessAwaitOutput::success(json!(7)),
    )
    .await?;
    setup(&r, standard("proc-parse-b")).await?;
    ensure_terminal_output(
        &r,
        "proc-parse-b",
        ProcessEventAppendRequest::new(
            FAILED,
            json!({"await_output": {"kind": "failure", "code": "oom", "message": "out of memory"}}),
        )
        .with_replay_key("t"),
        ProcessTerminalState::Failed,
        ProcessAwaitOutput::failure("oom", "out of memory"),
    )
    .await?;
    setup(&r, standard("proc-parse-c")).await?;
    ensure_terminal_output(
        &r,
        "proc-parse-c",
        ProcessEventAppendRequest::new(CANCELLED, json!({"await_output": {"kind": "cancelled", "message": "bye"}}))
            .with_replay_key("t"),
        ProcessTerminalState::Cancelled,
        ProcessAwaitOutput::cancelled("bye"),
    )
    .await
}

async fn terminal_completed_wraps_other_values_as_success(r: Reg) -> ScenarioResult {
    for (id, value) in
        [("proc-wrap-num", json!(42)), ("proc-wrap-str", json!("done")), ("proc-wrap-obj", json!({"rows": 3}))]
    {
        setup(&r, standard(id)).await?;
        ensure_terminal_output(
            &r,
            id,
            completed("t", value.clone()),
            ProcessTerminalState::Completed,
            ProcessAwaitOutput::success(value),
        )
        .await?;
    }
    Ok(())
}

async fn terminal_failed_wraps_value_as_process_failed(r: Reg) -> ScenarioResult {
    for (id, value, message) in
        [("proc-fail-str", json!("disk full"), "disk full"), ("proc-fail-obj", json!({"errno": 28}), r#"{"errno":28}"#)]
    {
        setup(&r, standard(id)).await?;
        ensure_terminal_output(
            &r,
            id,
            ProcessEventAppendRequest::new(FAILED, json!({ "await_output": value })).with_replay_key("t"),
            ProcessTerminalState::Failed,
            ProcessAwaitOutput::Failure {
                code: "process_failed".to_owned(),
                message: message.to_owned(),
                raw: Some(value.clone()),
            },
        )
        .await?;
    }
    Ok(())
}

async fn terminal_cancelled_wraps_value_as_cancelled(r: Reg) -> ScenarioResult {
    for (id, value, message) in [
        ("proc-cancel-str", json!("user stop"), "user stop"),
        ("proc-cancel-obj", json!({"why": "user"}), r#"{"why":"user"}"#),
    ] {
        setup(&r, standard(id)).await?;
        ensure_terminal_output(
            &r,
            id,
            ProcessEventAppendRequest::new(CANCELLED, json!({ "await_output": value })).with_replay_key("t"),
            ProcessTerminalState::Cancelled,
            ProcessAwaitOutput::Cancelled { message: message.to_owned(), raw: Some(value.clone()) },
        )
        .await?;
    }
    Ok(())
}

async fn terminal_completed_without_selector_uses_whole_payload(r: Reg) -> ScenarioResult {
    let id = "proc-whole-payload";
    let finish = ProcessEventType::new("finish", json!({}))
        .with_terminal(ProcessTerminalSpec { state: ProcessTerminalState::Completed, await_output: None });
    setup(&r, standard(id).with_extra_event_types(vec![finish])).await?;
    ensure_terminal_output(
        &r,
        id,
        ProcessEventAppendRequest::new("finish", json!({"r": 1})).with_replay_key("t"),
        ProcessTerminalState::Completed,
        ProcessAwaitOutput::success(json!({"r": 1})),
    )
    .await
}

async fn wake_when_falsy_suppresses_the_wake(r: Reg) -> ScenarioResult {
    let id = "proc-when";
    let spec = ProcessWakeSpec::new(ProcessValueSelector::Const(json!("go"))).with_when(pointer("/go"));
    setup(
        &r,
        standard(id)
            .with_extra_event_types(vec![wake_type("w", spec)])
            .with_wake_target(SessionScope::new("sess-when")),
    )
    .await?;
    let mut expected_wakes = Vec::new();
    for falsy in [json!(null), json!(false), json!(""), json!([]), json!({})] {
        let result = append(&r, id, ProcessEventAppendRequest::new("w", json!({ "go": falsy }))).await?;
        ensure!(
            result.event.semantics.wake.is_none(),
            "when = {falsy} is falsy, but a wake materialized: {:?}",
            result.event.semantics.wake
        );
        ensure!(result.wake_delivery.is_none(), "when = {falsy} is falsy, but a wake was delivered");
    }
    for truthy in [json!(0), json!(true), json!("no"), json!([0]), json!({"a": null})] {
        let result = append(&r, id, ProcessEventAppendRequest::new("w", json!({ "go": truthy }))).await?;
        ensure!(result.event.semantics.wake.is_some(), "when = {truthy} is truthy, but no wake materialized");
        ensure!(result.wake_delivery.is_some(), "when = {truthy} is truthy, but no wake was delivered");
        expected_wakes.push(result.event.sequence);
    }
    let wakes = r.wake_events_after(id, 0).await.ctx("wake_events_after")?;
    ensure_eq!(sequences(&wakes), expected_wakes, "wake events (falsy `when` excluded)");
    Ok(())
}

async fn wake_input_renders_strings_unquoted_and_other_json_rendered(r: Reg) -> ScenarioResult {
    let id = "proc-render";
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(pointer("/v")))])).await?;
    let cases = [
        (json!("hi"), "hi"),
        (json!(""), ""),
        (json!(42), "42"),
        (json!(-1.5), "-1.5"),
        (json!(true), "true"),
        (json!(null), "null"),
        (json!([1, "a"]), r#"[1,"a"]"#),
        (json!({"k": "v"}), r#"{"k":"v"}"#),
    ];
    for (value, expected) in cases {
        let input = wake_input(&r, id, "w", json!({ "v": value })).await?;
        ensure_eq!(input.as_deref(), Some(expected), "wake input rendered from {value}");
    }
    Ok(())
}

async fn wake_dedupe_key_event_identity_is_process_and_sequence(r: Reg) -> ScenarioResult {
    let id = "proc-dedupe-id";
    setup(&r, standard(id).with_wake_target(SessionScope::new("sess"))).await?;
    append(&r, id, note("plain")).await?;
    let first = append(&r, id, alert("a")).await?;
    let second = append(&r, id, alert("a")).await?;
    for result in [&first, &second] {
        let expected = format!("{id}:{}", result.event.sequence);
        let wake = result.event.semantics.wake.as_ref().ok_or("alert must materialize a wake")?;
        ensure_eq!(wake.dedupe_key, expected, "EventIdentity dedupe key");
        ensure_eq!(wake.input, "a", "wake input");
        let delivery = result.wake_delivery.as_ref().ok_or("alert with a target must deliver")?;
        ensure_eq!(delivery.dedupe_key, expected, "delivery dedupe key");
    }
    let (a, b) = (first.wake_delivery, second.wake_delivery);
    let (a, b) = (a.ok_or("first delivery")?, b.ok_or("second delivery")?);
    ensure!(a.wake_id != b.wake_id, "EventIdentity wakes of different events must have different wake ids");
    Ok(())
}

async fn wake_dedupe_key_selector_uses_the_selected_string(r: Reg) -> ScenarioResult {
    let id = "proc-dedupe-sel";
    let spec = ProcessWakeSpec::new(ProcessValueSelector::Const(json!("x")))
        .with_dedupe_key(ProcessWakeDedupeKey::Selector(pointer("/topic")));
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", spec)])).await?;
    for (topic, expected) in [(json!("build"), "build"), (json!(5), "5"), (json!({"a": 1}), r#"{"a":1}"#)] {
        let result = append(&r, id, ProcessEventAppendRequest::new("w", json!({ "topic": topic }))).await?;
        let wake = result.event.semantics.wake.ok_or("a wake must materialize")?;
        ensure_eq!(wake.dedupe_key, expected, "Selector dedupe key for topic {topic}");
    }
    Ok(())
}

async fn wake_dedupe_key_const_is_the_constant(r: Reg) -> ScenarioResult {
    let id = "proc-dedupe-const";
    let spec = ProcessWakeSpec::new(pointer("/m")).with_dedupe_key(ProcessWakeDedupeKey::Const("singleton".to_owned()));
    setup(
        &r,
        standard(id).with_extra_event_types(vec![wake_type("w", spec)]).with_wake_target(SessionScope::new("sess")),
    )
    .await?;
    let mut wake_ids = Vec::new();
    for m in ["one", "two"] {
        let result = append(&r, id, ProcessEventAppendRequest::new("w", json!({ "m": m }))).await?;
        let wake = result.event.semantics.wake.ok_or("a wake must materialize")?;
        ensure_eq!(wake.dedupe_key, "singleton", "Const dedupe key");
        ensure_eq!(wake.input, m, "wake input");
        wake_ids.push(result.wake_delivery.ok_or("a wake with a target must deliver")?.wake_id);
    }
    ensure_eq!(wake_ids[0], wake_ids[1], "wake ids of equal Const dedupe keys for one target");
    Ok(())
}

async fn wake_delivery_requires_a_target_scope(r: Reg) -> ScenarioResult {
    let id = "proc-no-target";
    setup(&r, standard(id)).await?;
    let result = append(&r, id, alert("hello")).await?;
    ensure!(result.event.semantics.wake.is_some(), "the wake must still materialize on the event");
    ensure!(
        result.wake_delivery.is_none(),
        "no target scope: there must be no delivery, got {:?}",
        result.wake_delivery
    );
    let wakes = r.wake_events_after(id, 0).await.ctx("wake_events_after")?;
    ensure_eq!(sequences(&wakes), vec![1], "a materialized wake without target is still a wake event");
    let targeted = append(&r, id, alert("hello").with_wake_target_scope(SessionScope::new("sess-x"))).await?;
    ensure!(targeted.wake_delivery.is_some(), "a request target scope must produce a delivery");
    let plain = append(&r, id, note("n").with_wake_target_scope(SessionScope::new("sess-x"))).await?;
    ensure!(plain.wake_delivery.is_none(), "an event without wake semantics must not deliver, even with a target");
    Ok(())
}

async fn wake_delivery_defaults_to_record_wake_target(r: Reg) -> ScenarioResult {
    let id = "proc-default-target";
    setup(&r, standard(id).with_wake_target(SessionScope::new("sess-a"))).await?;
    let delivery =
        append(&r, id, alert("hi")).await?.wake_delivery.ok_or("expected a delivery to the record target")?;
    ensure_eq!(delivery.target_session_id, "sess-a", "target_session_id");
    ensure_eq!(delivery.target_scope_id, "session:sess-a", "target_scope_id");
    ensure_eq!(delivery.wake_id, expected_wake_id("session:sess-a", &format!("{id}:1")), "wake_id");
    Ok(())
}

async fn wake_delivery_request_target_overrides_record_target(r: Reg) -> ScenarioResult {
    let id = "proc-override-target";
    setup(&r, standard(id).with_wake_target(SessionScope::new("sess-a"))).await?;
    let request = alert("hi").with_wake_target_scope(SessionScope::with_frame("sess-b", "frame-1"));
    let delivery = append(&r, id, request).await?.wake_delivery.ok_or("expected a delivery to the request target")?;
    ensure_eq!(delivery.target_session_id, "sess-b", "target_session_id");
    ensure_eq!(delivery.target_scope_id, "session:sess-b/frame:frame-1", "target_scope_id");
    ensure_eq!(delivery.wake_id, expected_wake_id("session:sess-b/frame:frame-1", &format!("{id}:1")), "wake_id");
    Ok(())
}

async fn wake_id_is_hash_of_target_scope_and_dedupe_key(r: Reg) -> ScenarioResult {
    let id = "proc-wake-id";
    let spec = ProcessWakeSpec::new(pointer("/m")).with_dedupe_key(ProcessWakeDedupeKey::Selector(pointer("/k")));
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", spec)])).await?;
    let deliver = |key: &str, scope: SessionScope| {
        ProcessEventAppendRequest::new("w", json!({"m": "x", "k": key})).with_wake_target_scope(scope)
    };
    let a1 = append(&r, id, deliver("k1", SessionScope::new("s1"))).await?.wake_delivery.ok_or("delivery a1")?;
    let a2 = append(&r, id, deliver("k1", SessionScope::new("s1"))).await?.wake_delivery.ok_or("delivery a2")?;
    let b = append(&r, id, deliver("k1", SessionScope::new("s2"))).await?.wake_delivery.ok_or("delivery b")?;
    let c = append(&r, id, deliver("k2", SessionScope::new("s1"))).await?.wake_delivery.ok_or("delivery c")?;
    for delivery in [&a1, &a2, &b, &c] {
        let hex = delivery
            .wake_id
            .strip_prefix("wake:")
            .ok_or_else(|| format!("wake id `{}` lacks `wake:`", delivery.wake_id))?;
        ensure!(is_lower_hex(hex, 64), "wake id `{}` is not `wake:` + 64 hex", delivery.wake_id);
        ensure_eq!(
            delivery.wake_id,
            expected_wake_id(&delivery.target_scope_id, &delivery.dedupe_key),
            "wake id = wake: + sha256(json([target_scope_id, dedupe_key]))"
        );
    }
    ensure_eq!(a1.wake_id, a2.wake_id, "equal dedupe key and target give one wake id");
    ensure!(a1.wake_id != b.wake_id, "another target must give another wake id");
    ensure!(a1.wake_id != c.wake_id, "another dedupe key must give another wake id");
    Ok(())
}

async fn wake_delivery_carries_event_lineage_and_provenance_caused_by(r: Reg) -> ScenarioResult {
    let id = "proc-caused";
    let cause = CausalRef::External { kind: "tool_call".to_owned(), id: "call-9".to_owned() };
    let provenance = ProcessProvenance::session(SessionScope::new("origin"), "profile-1").with_caused_by(cause.clone());
    setup(&r, standard(id).with_process_provenance(provenance).with_wake_target(SessionScope::new("sess"))).await?;
    let result = append(&r, id, alert("ping").with_replay_key("rk")).await?;
    let delivery = result.wake_delivery.ok_or("expected a delivery")?;
    let wake = result.event.semantics.wake.clone().ok_or("expected a materialized wake")?;
    ensure_eq!(delivery.process_caused_by, Some(cause), "process_caused_by = provenance caused_by");
    ensure_eq!(delivery.process_id, id, "delivery process_id");
    ensure_eq!(delivery.sequence, result.event.sequence, "delivery sequence");
    ensure_eq!(delivery.event_type, "alert", "delivery event_type");
    ensure_eq!(delivery.event_invocation, result.event.invocation, "delivery event_invocation");
    ensure_eq!(delivery.input, wake.input, "delivery input");
    ensure_eq!(delivery.dedupe_key, wake.dedupe_key, "delivery dedupe_key");
    ensure!(delivery.created_at_ms > 0, "delivery created_at_ms must be set");
    let plain = "proc-uncaused";
    setup(&r, standard(plain).with_wake_target(SessionScope::new("sess"))).await?;
    let delivery = append(&r, plain, alert("ping")).await?.wake_delivery.ok_or("expected a delivery")?;
    ensure_eq!(delivery.process_caused_by, None, "process_caused_by without provenance caused_by");
    Ok(())
}

async fn replayed_append_rematerializes_delivery_for_replay_target(r: Reg) -> ScenarioResult {
    let id = "proc-replay-wake";
    setup(&r, standard(id)).await?;
    let scope_a = SessionScope::new("sess-a");
    let scope_b = SessionScope::with_frame("sess-b", "f");
    let first = append(&r, id, alert("hi").with_replay_key("k").with_wake_target_scope(scope_a)).await?;
    let first_delivery = first.wake_delivery.ok_or("expected a delivery to sess-a")?;
    let replay = append(&r, id, alert("hi").with_replay_key("k").with_wake_target_scope(scope_b)).await?;
    ensure_eq!(replay.event, first.event, "the replay returns the original event");
    let delivery = replay.wake_delivery.ok_or("a replay must re-materialize the delivery for its own target")?;
    ensure_eq!(delivery.target_scope_id, "session:sess-b/frame:f", "replay delivery target");
    ensure_eq!(delivery.sequence, 1, "replay delivery sequence");
    ensure_eq!(delivery.wake_id, expected_wake_id("session:sess-b/frame:f", &format!("{id}:1")), "replay wake id");
    ensure!(delivery.wake_id != first_delivery.wake_id, "another target gives another wake id");
    let untargeted = append(&r, id, alert("hi").with_replay_key("k")).await?;
    ensure_eq!(untargeted.event.sequence, 1, "untargeted replay sequence");
    ensure!(untargeted.wake_delivery.is_none(), "a replay without any target must not deliver");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after replays");
    Ok(())
}

async fn terminal_event_on_terminal_process_is_already_terminal(r: Reg) -> ScenarioResult {
    let id = "proc-twice";
    setup(&r, standard(id)).await?;
    append(&r, id, completed("t1", json!(1))).await?;
    let done = record(&r, id).await?;
    let second = [
        (
            "process.failed after completion",
            ProcessEventAppendRequest::new(FAILED, json!({"await_output": "x"})).with_replay_key("t2"),
        ),
        ("process.completed again with another key", completed("t3", json!(2))),
        (
            "process.cancelled after completion",
            ProcessEventAppendRequest::new(CANCELLED, json!({"await_output": "x"})).with_replay_key("t4"),
        ),
    ];
    for (what, request) in second {
        let err = ensure_err!(r.append_event(id, request).await, RegistryError::AlreadyTerminal { .. }, "{what}");
        ensure_names(&err, id, what)?;
    }
    ensure_eq!(record(&r, id).await?.status, done.status, "status after refused terminals");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after refused terminals");
    Ok(())
}

async fn replayed_terminal_request_returns_original_event(r: Reg) -> ScenarioResult {
    let id = "proc-terminal-replay";
    setup(&r, standard(id)).await?;
    let first = append(&r, id, completed("t", json!("ok"))).await?;
    let again = append(&r, id, completed("t", json!("ok"))).await?;
    ensure_eq!(again.event, first.event, "replaying the terminal request returns the original event");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after replaying the terminal request");
    Ok(())
}

async fn non_terminal_events_are_allowed_after_terminal(r: Reg) -> ScenarioResult {
    let id = "proc-after-terminal";
    setup(&r, standard(id)).await?;
    append(&r, id, completed("t", json!(1))).await?;
    let status = record(&r, id).await?.status;
    let after = append(&r, id, note("late")).await?;
    ensure_eq!(after.event.sequence, 2, "sequence of a note after completion");
    let cancel = append(&r, id, ProcessEventAppendRequest::cancel_requested(id, "late cancel")).await?;
    ensure_eq!(cancel.event.sequence, 3, "sequence of a cancel request after completion");
    ensure_eq!(record(&r, id).await?.status, status, "terminal status after non-terminal events");
    Ok(())
}

async fn terminal_event_clears_wait_state(r: Reg) -> ScenarioResult {
    let id = "proc-clear-on-terminal";
    setup(&r, standard(id)).await?;
    let waiting = r.set_process_wait(id, signal_wait("s")).await.ctx("set_process_wait")?;
    ensure!(waiting.wait.is_some(), "set_process_wait must set the wait state");
    append(&r, id, completed("t", json!(1))).await?;
    let done = record(&r, id).await?;
    ensure!(done.is_terminal(), "the process must be terminal");
    ensure_eq!(done.wait, None, "a terminal event clears the wait state");
    let waiting_filter =
        ProcessListFilter { status: ProcessStatusFilter::Any, waiting: Some(true), ..ProcessListFilter::default() };
    let listed = r.list_processes(&waiting_filter).await.ctx("list_processes(waiting)")?;
    ensure!(listed.is_empty(), "a terminal process is listed as waiting: {:?}", ids(&listed));
    Ok(())
}

async fn cancel_requested_request_repeat_is_idempotent(r: Reg) -> ScenarioResult {
    let id = "proc-cancel-idem";
    setup(&r, standard(id)).await?;
    let first = append(&r, id, ProcessEventAppendRequest::cancel_requested(id, "stop")).await?;
    ensure_eq!(first.event.event_type, CANCEL_REQUESTED, "event type");
    let again = append(&r, id, ProcessEventAppendRequest::cancel_requested(id, "stop")).await?;
    ensure_eq!(again.event, first.event, "a repeated cancel request returns the original event");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after a repeated cancel request");
    let other = append(&r, id, ProcessEventAppendRequest::cancel_requested(id, "another reason")).await?;
    ensure_eq!(other.event.sequence, 2, "a cancel request with another reason is a new event");
    ensure_eq!(record(&r, id).await?.status, ProcessStatus::Running, "cancel requests are not terminal");
    Ok(())
}

// ---------------------------------------------------------------------------
// Reads, wakes and acks
// ---------------------------------------------------------------------------

async fn events_after_returns_later_events_ascending(r: Reg) -> ScenarioResult {
    let id = "proc-after";
    setup(&r, standard(id)).await?;
    ensure!(log(&r, id).await?.is_empty(), "empty log");
    for i in 1..=5 {
        append(&r, id, note(&format!("n{i}"))).await?;
    }
    for (after, expected) in [(0, vec![1, 2, 3, 4, 5]), (2, vec![3, 4, 5]), (4, vec![5]), (5, vec![]), (99, vec![])] {
        let events = r.events_after(id, after).await.ctx(format!("events_after({after})"))?;
        ensure_eq!(sequences(&events), expected, "events_after({after})");
    }
    let all = log(&r, id).await?;
    for (index, event) in all.iter().enumerate() {
        ensure_eq!(event.payload, json!({"text": format!("n{}", index + 1)}), "payload of event {}", index + 1);
    }
    Ok(())
}

async fn count_events_through_counts_one_type_up_to_sequence(r: Reg) -> ScenarioResult {
    let id = "proc-count";
    setup(&r, standard(id)).await?;
    // 1 note, 2 alert, 3 note, 4 note, 5 alert
    append(&r, id, note("a")).await?;
    append(&r, id, alert("b")).await?;
    append(&r, id, note("c")).await?;
    append(&r, id, note("d")).await?;
    append(&r, id, alert("e")).await?;
    let cases = [
        ("note", 0, 0),
        ("note", 1, 1),
        ("note", 2, 1),
        ("note", 3, 2),
        ("note", 5, 3),
        ("note", 1000, 3),
        ("alert", 4, 1),
        ("alert", 5, 2),
        ("missing", 5, 0),
    ];
    for (event_type, through, expected) in cases {
        let count = r
            .count_events_through(id, event_type, through)
            .await
            .ctx(format!("count_events_through({event_type}, {through})"))?;
        ensure_eq!(count, expected, "count_events_through({event_type}, {through})");
    }
    Ok(())
}

async fn recent_events_returns_last_events_ascending(r: Reg) -> ScenarioResult {
    let id = "proc-recent";
    setup(&r, standard(id)).await?;
    ensure!(r.recent_events(id, 3).await.ctx("recent_events on empty log")?.is_empty(), "empty log");
    for i in 1..=5 {
        append(&r, id, note(&format!("n{i}"))).await?;
    }
    for (limit, expected) in
        [(2, vec![4, 5]), (1, vec![5]), (5, vec![1, 2, 3, 4, 5]), (50, vec![1, 2, 3, 4, 5]), (0, vec![])]
    {
        let events = r.recent_events(id, limit).await.ctx(format!("recent_events({limit})"))?;
        ensure_eq!(sequences(&events), expected, "recent_events(limit {limit})");
    }
    let all = log(&r, id).await?;
    ensure_eq!(
        r.recent_events(id, 2).await.ctx("recent_events")?,
        all[3..].to_vec(),
        "recent events are the logged events"
    );
    Ok(())
}

async fn wake_events_after_lists_unacked_wake_events_only(r: Reg) -> ScenarioResult {
    let id = "proc-wakes";
    setup(&r, standard(id)).await?;
    // 1 note, 2 alert, 3 note, 4 alert, 5 alert
    append(&r, id, note("a")).await?;
    append(&r, id, alert("b")).await?;
    append(&r, id, note("c")).await?;
    append(&r, id, alert("d")).await?;
    append(&r, id, alert("e")).await?;
    let wakes = r.wake_events_after(id, 0).await.ctx("wake_events_after(0)")?;
    ensure_eq!(sequences(&wakes), vec![2, 4, 5], "wake events after 0");
    ensure!(wakes.iter().all(ProcessEvent::is_wake), "every listed wake event materialized a wake");
    let wakes = r.wake_events_after(id, 2).await.ctx("wake_events_after(2)")?;
    ensure_eq!(sequences(&wakes), vec![4, 5], "wake events after 2");
    r.ack_wake(id, 4).await.ctx("ack_wake(4)")?;
    let wakes = r.wake_events_after(id, 0).await.ctx("wake_events_after(0)")?;
    ensure_eq!(sequences(&wakes), vec![2, 5], "wake events after acking 4");
    ensure!(r.wake_events_after(id, 5).await.ctx("wake_events_after(5)")?.is_empty(), "nothing after 5");
    Ok(())
}

async fn ack_wake_is_idempotent(r: Reg) -> ScenarioResult {
    let id = "proc-ack";
    setup(&r, standard(id)).await?;
    append(&r, id, alert("a")).await?;
    append(&r, id, alert("b")).await?;
    r.ack_wake(id, 1).await.ctx("first ack_wake(1)")?;
    r.ack_wake(id, 1).await.ctx("second ack_wake(1)")?;
    r.ack_wake(id, 1).await.ctx("third ack_wake(1)")?;
    let wakes = r.wake_events_after(id, 0).await.ctx("wake_events_after")?;
    ensure_eq!(sequences(&wakes), vec![2], "wake events after repeated acks of 1");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1, 2], "acks do not touch the log");
    Ok(())
}

async fn ack_wake_beyond_the_log_is_an_error(r: Reg) -> ScenarioResult {
    let id = "proc-ack-beyond";
    setup(&r, standard(id)).await?;
    let err = expect_err(r.ack_wake(id, 1).await, "ack_wake(1) on an empty log")?;
    ensure_names(&err, id, "ack beyond an empty log")?;
    append(&r, id, alert("a")).await?;
    append(&r, id, alert("b")).await?;
    for beyond in [3, 1000] {
        let err = expect_err(r.ack_wake(id, beyond).await, &format!("ack_wake({beyond}) with a log of 2"))?;
        ensure_names(&err, id, "ack beyond the log")?;
    }
    r.ack_wake(id, 2).await.ctx("ack_wake(2), the last event")?;
    ensure_eq!(sequences(&r.wake_events_after(id, 0).await.ctx("wake_events_after")?), vec![1], "wakes after acking 2");
    Ok(())
}

async fn acks_survive_session_deletion(r: Reg) -> ScenarioResult {
    let id = "proc-ack-survives";
    let scope = SessionScope::new("sess-ack");
    setup(&r, standard(id).with_wake_target(scope.clone())).await?;
    r.grant_handle(&scope, id, label("h")).await.ctx("grant_handle")?;
    append(&r, id, alert("a")).await?;
    append(&r, id, alert("b")).await?;
    r.ack_wake(id, 1).await.ctx("ack_wake(1)")?;
    let report = r.delete_session_process_state("sess-ack").await.ctx("delete_session_process_state")?;
    ensure_eq!(report.deleted_wake_count, 0, "deleted_wake_count (acks are process-scoped and kept)");
    let wakes = r.wake_events_after(id, 0).await.ctx("wake_events_after")?;
    ensure_eq!(sequences(&wakes), vec![2], "the ack of 1 survives session deletion");
    Ok(())
}

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

async fn wait_event_after_returns_existing_event_immediately(r: Reg) -> ScenarioResult {
    let id = "proc-wait-existing";
    setup(&r, standard(id)).await?;
    // 1 note, 2 alert, 3 note
    append(&r, id, note("a")).await?;
    append(&r, id, alert("b")).await?;
    append(&r, id, note("c")).await?;
    for (event_type, after, expected) in [("note", 0, 1), ("note", 1, 3), ("note", 2, 3), ("alert", 0, 2)] {
        let event = within("wait_event_after for an existing event", r.wait_event_after(id, event_type, after))
            .await?
            .ctx(format!("wait_event_after({event_type}, {after})"))?;
        ensure_eq!(event.sequence, expected, "wait_event_after({event_type}, {after}) returns the first match");
        ensure_eq!(event.event_type, event_type, "event type of the waited event");
    }
    Ok(())
}

async fn wait_event_after_parks_until_a_matching_append(r: Reg) -> ScenarioResult {
    let id = "proc-wait-park";
    setup(&r, standard(id)).await?;
    append(&r, id, note("before")).await?;
    let waiter = {
        let r = r.clone();
        tokio::spawn(async move { r.wait_event_after(id, "note", 1).await })
    };
    let mut waiter = waiter;
    ensure_pending("wait_event_after(note, 1) before any later note", &mut waiter).await?;
    append(&r, id, alert("other type")).await?;
    ensure_pending("wait_event_after(note, 1) after an alert", &mut waiter).await?;
    let appended = append(&r, id, note("after")).await?;
    let event = join("the parked waiter after a matching append", waiter).await?.ctx("wait_event_after")?;
    ensure_eq!(event, appended.event, "the woken waiter receives the appended event");
    ensure_eq!(event.sequence, 3, "woken waiter sequence");
    Ok(())
}

async fn wait_event_after_beyond_the_log_is_not_answered_by_earlier_sequences(r: Reg) -> ScenarioResult {
    let id = "proc-wait-ahead";
    setup(&r, standard(id)).await?;
    let mut waiter = {
        let r = r.clone();
        tokio::spawn(async move { r.wait_event_after(id, "note", 2).await })
    };
    ensure_pending("wait_event_after(note, 2) on an empty log", &mut waiter).await?;
    append(&r, id, note("first")).await?;
    append(&r, id, note("second")).await?;
    ensure_pending("wait_event_after(note, 2) after notes 1 and 2", &mut waiter).await?;
    let third = append(&r, id, note("third")).await?;
    let event = join("the waiter after note 3", waiter).await?.ctx("wait_event_after")?;
    ensure_eq!(event, third.event, "the first note after sequence 2");
    Ok(())
}

async fn await_process_parks_until_complete_process(r: Reg) -> ScenarioResult {
    let id = "proc-await-park";
    setup(&r, standard(id)).await?;
    let mut waiter = {
        let r = r.clone();
        tokio::spawn(async move { r.await_process(id).await })
    };
    ensure_pending("await_process of a running process", &mut waiter).await?;
    append(&r, id, note("progress")).await?;
    append(&r, id, ProcessEventAppendRequest::cancel_requested(id, "please")).await?;
    ensure_pending("await_process after non-terminal events", &mut waiter).await?;
    let output = ProcessAwaitOutput::success(json!({"answer": 42}));
    r.complete_process(id, output.clone()).await.ctx("complete_process")?;
    let awaited = join("await_process after complete_process", waiter).await?.ctx("await_process")?;
    ensure_eq!(awaited, output, "await_process output");
    Ok(())
}

async fn await_process_returns_output_of_terminal_process_immediately(r: Reg) -> ScenarioResult {
    let id = "proc-await-done";
    setup(&r, standard(id)).await?;
    let output = ProcessAwaitOutput::failure("boom", "it broke");
    r.complete_process(id, output.clone()).await.ctx("complete_process")?;
    for attempt in 1..=2 {
        let awaited = within("await_process of a terminal process", r.await_process(id)).await?.ctx("await_process")?;
        ensure_eq!(awaited, output, "await_process attempt {attempt}");
    }
    Ok(())
}

async fn abandoned_waiters_leave_the_registry_usable(r: Reg) -> ScenarioResult {
    let id = "proc-abandon";
    setup(&r, standard(id)).await?;
    // Give up via timeouts (the futures are dropped while parked).
    for _ in 0..3 {
        ensure_parks("wait_event_after with no event yet", r.wait_event_after(id, "note", 0)).await?;
        ensure_parks("await_process of a running process", r.await_process(id)).await?;
    }
    // Give up by aborting parked tasks.
    let mut aborted = Vec::new();
    for _ in 0..8 {
        let r = r.clone();
        aborted.push(tokio::spawn(async move { r.wait_event_after(id, "note", 0).await }));
    }
    for handle in &mut aborted {
        ensure_pending("a waiter about to be aborted", handle).await?;
        handle.abort();
    }
    // The registry still works, and fresh waiters are still woken.
    let mut waiter = {
        let r = r.clone();
        tokio::spawn(async move { r.wait_event_after(id, "note", 0).await })
    };
    ensure_pending("a fresh waiter after abandoned ones", &mut waiter).await?;
    let appended = append(&r, id, note("after")).await?;
    ensure_eq!(appended.event.sequence, 1, "append after abandoned waiters");
    let event = join("a fresh waiter after abandoned ones", waiter).await?.ctx("wait_event_after")?;
    ensure_eq!(event.sequence, 1, "the fresh waiter is woken");
    let mut awaiting = {
        let r = r.clone();
        tokio::spawn(async move { r.await_process(id).await })
    };
    ensure_pending("a fresh await_process", &mut awaiting).await?;
    r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx("complete_process")?;
    let output = join("a fresh await_process", awaiting).await?.ctx("await_process")?;
    ensure_eq!(output, ProcessAwaitOutput::success(json!(1)), "await_process output");
    Ok(())
}

// ---------------------------------------------------------------------------
// complete_process
// ---------------------------------------------------------------------------

async fn complete_process_appends_terminal_event_with_deterministic_replay_key(r: Reg) -> ScenarioResult {
    let cases = [
        ("proc-complete-ok", ProcessAwaitOutput::success(json!({"v": 1})), COMPLETED),
        ("proc-complete-fail", ProcessAwaitOutput::failure("bad", "went bad"), FAILED),
        ("proc-complete-cancel", ProcessAwaitOutput::cancelled("stopped"), CANCELLED),
    ];
    for (id, output, event_type) in cases {
        setup(&r, standard(id)).await?;
        append(&r, id, note("work")).await?;
        let done = r.complete_process(id, output.clone()).await.ctx(format!("complete_process(`{id}`)"))?;
        let expected_status = match output.terminal_state() {
            ProcessTerminalState::Completed => ProcessStatus::Completed { await_output: output.clone() },
            ProcessTerminalState::Failed => ProcessStatus::Failed { await_output: output.clone() },
            ProcessTerminalState::Cancelled => ProcessStatus::Cancelled { await_output: output.clone() },
        };
        ensure_eq!(done.status, expected_status, "status returned by complete_process(`{id}`)");
        ensure_eq!(record(&r, id).await?, done, "get_process after complete_process(`{id}`)");
        let events = log(&r, id).await?;
        ensure_eq!(sequences(&events), vec![1, 2], "log of `{id}`");
        let terminal = &events[1];
        ensure_eq!(terminal.event_type, event_type, "terminal event type of `{id}`");
        ensure_eq!(terminal.payload, json!({ "await_output": to_json(&output) }), "terminal payload of `{id}`");
        ensure_eq!(
            terminal.invocation.replay_key,
            Some(format!("process:{id}:terminal:{event_type}")),
            "terminal replay key of `{id}`"
        );
        ensure_eq!(
            terminal.semantics.terminal.as_ref().map(|t| t.await_output.clone()),
            Some(output.clone()),
            "terminal semantics of `{id}`"
        );
    }
    Ok(())
}

async fn complete_process_repeat_is_idempotent(r: Reg) -> ScenarioResult {
    let id = "proc-complete-idem";
    setup(&r, standard(id)).await?;
    let output = ProcessAwaitOutput::success(json!("result"));
    let first = r.complete_process(id, output.clone()).await.ctx("first complete_process")?;
    let second = r.complete_process(id, output.clone()).await.ctx("repeated complete_process")?;
    ensure_eq!(second.status, first.status, "status after a repeated complete_process");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "one terminal event after repeats");
    // The deterministic key makes an equal append a replay of the same event.
    let replay = ProcessEventAppendRequest::new(COMPLETED, json!({ "await_output": to_json(&output) }))
        .with_replay_key(format!("process:{id}:terminal:{COMPLETED}"));
    let replayed = append(&r, id, replay).await?;
    ensure_eq!(replayed.event.sequence, 1, "append with complete_process's key and payload replays it");
    Ok(())
}

async fn complete_process_with_different_outcome_afterwards_errors(r: Reg) -> ScenarioResult {
    let id = "proc-complete-other";
    setup(&r, standard(id)).await?;
    let done = r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx("complete_process")?;
    let err = ensure_err!(
        r.complete_process(id, ProcessAwaitOutput::success(json!(2))).await,
        RegistryError::ReplayConflict { .. } | RegistryError::AlreadyTerminal { .. },
        "complete_process with another success value"
    );
    ensure_names(&err, id, "another success value")?;
    for other in [ProcessAwaitOutput::failure("x", "y"), ProcessAwaitOutput::cancelled("z")] {
        let err = ensure_err!(
            r.complete_process(id, other.clone()).await,
            RegistryError::AlreadyTerminal { .. },
            "complete_process with {other:?} after success"
        );
        ensure_names(&err, id, "another outcome")?;
    }
    ensure_eq!(record(&r, id).await?.status, done.status, "status after refused outcomes");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after refused outcomes");
    Ok(())
}

// ---------------------------------------------------------------------------
// Wait state and external refs
// ---------------------------------------------------------------------------

async fn set_and_clear_process_wait_update_wait_and_updated_at(r: Reg) -> ScenarioResult {
    let id = "proc-wait-state";
    let created = setup(&r, standard(id)).await?;
    let wait = signal_wait("approval");
    let waiting = r.set_process_wait(id, wait.clone()).await.ctx("set_process_wait")?;
    ensure_eq!(waiting.wait, Some(wait.clone()), "wait returned by set_process_wait");
    ensure!(waiting.updated_at_ms >= created.updated_at_ms, "set_process_wait moved updated_at_ms backwards");
    ensure_eq!(record(&r, id).await?, waiting, "get_process after set_process_wait");
    let other = signal_wait("second");
    let replaced = r.set_process_wait(id, other.clone()).await.ctx("set_process_wait again")?;
    ensure_eq!(replaced.wait, Some(other), "set_process_wait replaces the wait");
    let cleared = r.clear_process_wait(id).await.ctx("clear_process_wait")?;
    ensure_eq!(cleared.wait, None, "wait after clear_process_wait");
    ensure!(cleared.updated_at_ms >= replaced.updated_at_ms, "clear_process_wait moved updated_at_ms backwards");
    ensure_eq!(record(&r, id).await?, cleared, "get_process after clear_process_wait");
    let again = r.clear_process_wait(id).await.ctx("clear_process_wait when not waiting")?;
    ensure_eq!(again.wait, None, "clearing twice");
    ensure!(log(&r, id).await?.is_empty(), "wait changes must not append events");
    Ok(())
}

async fn set_process_wait_on_terminal_process_errors(r: Reg) -> ScenarioResult {
    let id = "proc-wait-terminal";
    setup(&r, standard(id)).await?;
    let done = r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx("complete_process")?;
    let err = ensure_err!(
        r.set_process_wait(id, signal_wait("late")).await,
        RegistryError::AlreadyTerminal { .. },
        "set_process_wait on a terminal process"
    );
    ensure_names(&err, id, "set_process_wait on a terminal process")?;
    ensure_eq!(record(&r, id).await?, done, "record after a refused set_process_wait");
    Ok(())
}

async fn set_external_ref_updates_record_and_updated_at(r: Reg) -> ScenarioResult {
    let id = "proc-ext";
    let created = setup(&r, standard(id)).await?;
    let first = r.set_external_ref(id, external_ref("job-1")).await.ctx("set_external_ref")?;
    ensure_eq!(first.external_ref, Some(external_ref("job-1")), "external ref returned");
    ensure!(first.updated_at_ms >= created.updated_at_ms, "set_external_ref moved updated_at_ms backwards");
    ensure_eq!(record(&r, id).await?, first, "get_process after set_external_ref");
    let second = r.set_external_ref(id, external_ref("job-2")).await.ctx("set_external_ref again")?;
    ensure_eq!(second.external_ref, Some(external_ref("job-2")), "set_external_ref replaces the ref");
    ensure!(second.updated_at_ms >= first.updated_at_ms, "set_external_ref moved updated_at_ms backwards");
    ensure_eq!(second.status, ProcessStatus::Running, "status after set_external_ref");
    ensure!(log(&r, id).await?.is_empty(), "set_external_ref must not append events");
    Ok(())
}

// ---------------------------------------------------------------------------
// get / list
// ---------------------------------------------------------------------------

async fn get_process_unknown_is_none(r: Reg) -> ScenarioResult {
    ensure_eq!(r.get_process("proc-ghost").await, None, "get_process of an unknown id");
    setup(&r, standard("proc-known")).await?;
    ensure_eq!(r.get_process("proc-ghost").await, None, "get_process of an unknown id next to a known one");
    ensure_eq!(r.get_process("").await, None, "get_process(\"\")");
    Ok(())
}

/// Registers `c`, `a`, `b` (running), `d` (completed), `e` (failed), `f`
/// (cancelled) with the given prefix.
async fn mixed_processes(r: &Reg, prefix: &str) -> ScenarioResult {
    for suffix in ["c", "a", "b", "d", "e", "f"] {
        setup(r, standard(&format!("{prefix}{suffix}"))).await?;
    }
    let complete = |suffix: &str, output: ProcessAwaitOutput| {
        let id = format!("{prefix}{suffix}");
        async move { r.complete_process(&id, output).await.ctx(format!("complete_process(`{id}`)")) }
    };
    complete("d", ProcessAwaitOutput::success(json!(1))).await?;
    complete("e", ProcessAwaitOutput::failure("x", "y")).await?;
    complete("f", ProcessAwaitOutput::cancelled("z")).await?;
    Ok(())
}

async fn list_processes_defaults_to_running_ids_ascending(r: Reg) -> ScenarioResult {
    mixed_processes(&r, "p-").await?;
    let listed = r.list_processes(&ProcessListFilter::default()).await.ctx("list_processes(default)")?;
    ensure_eq!(ids(&listed), strings(&["p-a", "p-b", "p-c"]), "default filter lists running ids ascending");
    for listed_record in &listed {
        ensure_eq!(Some(listed_record.clone()), r.get_process(&listed_record.id).await, "listed record is current");
    }
    Ok(())
}

async fn list_processes_filters_by_status(r: Reg) -> ScenarioResult {
    mixed_processes(&r, "p-").await?;
    let cases = [
        (ProcessStatusFilter::Running, vec!["p-a", "p-b", "p-c"]),
        (ProcessStatusFilter::Completed, vec!["p-d"]),
        (ProcessStatusFilter::Failed, vec!["p-e"]),
        (ProcessStatusFilter::Cancelled, vec!["p-f"]),
        (ProcessStatusFilter::Any, vec!["p-a", "p-b", "p-c", "p-d", "p-e", "p-f"]),
    ];
    for (status, expected) in cases {
        let listed = r.list_processes(&status_filter(status)).await.ctx(format!("list_processes({status:?})"))?;
        ensure_eq!(ids(&listed), strings(&expected), "list_processes(status {status:?})");
    }
    Ok(())
}

async fn list_processes_filters_by_definition_and_waiting(r: Reg) -> ScenarioResult {
    let build = |id: &str, name: &str| {
        ProcessRegistration::new(id, ProcessInput::definition(name, Map::new()))
            .with_extra_event_types(vec![note_type()])
    };
    setup(&r, build("p-3", "build")).await?;
    setup(&r, build("p-1", "build")).await?;
    setup(&r, build("p-2", "deploy")).await?;
    setup(&r, ProcessRegistration::new("p-4", ProcessInput::external(json!({"name": "build"})))).await?;
    setup(&r, build("p-5", "build")).await?;
    r.complete_process("p-5", ProcessAwaitOutput::success(json!(1))).await.ctx("complete p-5")?;
    r.set_process_wait("p-3", signal_wait("w")).await.ctx("set_process_wait p-3")?;
    r.set_process_wait("p-2", signal_wait("w")).await.ctx("set_process_wait p-2")?;
    let filter = |definition: Option<&str>, status, waiting| ProcessListFilter {
        definition: definition.map(str::to_owned),
        status,
        waiting,
    };
    let cases = [
        (filter(Some("build"), ProcessStatusFilter::Running, None), vec!["p-1", "p-3"]),
        (filter(Some("build"), ProcessStatusFilter::Any, None), vec!["p-1", "p-3", "p-5"]),
        (filter(Some("deploy"), ProcessStatusFilter::Running, None), vec!["p-2"]),
        (filter(Some("nothing"), ProcessStatusFilter::Any, None), vec![]),
        (filter(None, ProcessStatusFilter::Running, Some(true)), vec!["p-2", "p-3"]),
        (filter(None, ProcessStatusFilter::Running, Some(false)), vec!["p-1", "p-4"]),
        (filter(None, ProcessStatusFilter::Any, Some(false)), vec!["p-1", "p-4", "p-5"]),
        (filter(Some("build"), ProcessStatusFilter::Running, Some(true)), vec!["p-3"]),
    ];
    for (filter, expected) in cases {
        let listed = r.list_processes(&filter).await.ctx(format!("list_processes({filter:?})"))?;
        ensure_eq!(ids(&listed), strings(&expected), "list_processes({filter:?})");
    }
    Ok(())
}

async fn list_non_terminal_is_ascending_and_excludes_terminal(r: Reg) -> ScenarioResult {
    ensure!(r.list_non_terminal().await.ctx("list_non_terminal on empty")?.is_empty(), "empty registry");
    mixed_processes(&r, "w-").await?;
    append(&r, "w-b", note("progress")).await?;
    let listed = r.list_non_terminal().await.ctx("list_non_terminal")?;
    ensure_eq!(ids(&listed), strings(&["w-a", "w-b", "w-c"]), "list_non_terminal ids");
    ensure!(listed.iter().all(|listed| !listed.is_terminal()), "list_non_terminal returned a terminal record");
    ensure_eq!(Some(listed[1].clone()), r.get_process("w-b").await, "list_non_terminal returns current records");
    Ok(())
}

// ---------------------------------------------------------------------------
// Grants
// ---------------------------------------------------------------------------

async fn grant_handle_unknown_process_errors(r: Reg) -> ScenarioResult {
    let scope = SessionScope::new("sess");
    let err = ensure_err!(
        r.grant_handle(&scope, "proc-ghost", label("x")).await,
        RegistryError::UnknownProcess { .. },
        "grant_handle of an unknown process"
    );
    ensure_names(&err, "proc-ghost", "grant of an unknown process")?;
    ensure!(r.list_handle_grants(&scope).await.ctx("list_handle_grants")?.is_empty(), "a failed grant was stored");
    Ok(())
}

async fn grant_handle_regrant_replaces_descriptor(r: Reg) -> ScenarioResult {
    let id = "proc-grant";
    setup(&r, standard(id)).await?;
    let scope = SessionScope::with_frame("sess", "frame");
    let grant = r.grant_handle(&scope, id, label("first")).await.ctx("grant_handle")?;
    ensure_eq!(grant.session_id, "sess", "grant session_id");
    ensure_eq!(grant.process_id, id, "grant process_id");
    ensure_eq!(grant.descriptor, label("first"), "grant descriptor");
    let regrant = r.grant_handle(&scope, id, label("second")).await.ctx("re-grant")?;
    ensure_eq!(regrant.descriptor, label("second"), "re-grant descriptor");
    let listed = r.list_handle_grants(&scope).await.ctx("list_handle_grants")?;
    ensure_eq!(listed.len(), 1, "a re-grant must not duplicate the grant");
    ensure_eq!(listed[0].0, regrant, "the listed grant carries the new descriptor");
    let for_process = r.handle_grants_for_process(id).await.ctx("handle_grants_for_process")?;
    ensure_eq!(for_process, vec![regrant], "handle_grants_for_process after re-grant");
    Ok(())
}

async fn revoke_handle_removes_grant_and_is_noop_when_missing(r: Reg) -> ScenarioResult {
    let id = "proc-revoke";
    setup(&r, standard(id)).await?;
    let scope = SessionScope::new("sess");
    r.revoke_handle(&scope, "proc-ghost").await.ctx("revoke_handle of an unknown process")?;
    r.revoke_handle(&scope, id).await.ctx("revoke_handle of a grant that does not exist")?;
    r.grant_handle(&scope, id, label("x")).await.ctx("grant_handle")?;
    ensure!(r.has_handle_grant(&scope, id).await.ctx("has_handle_grant")?, "granted");
    r.revoke_handle(&scope, id).await.ctx("revoke_handle")?;
    ensure!(!r.has_handle_grant(&scope, id).await.ctx("has_handle_grant")?, "revoked grant still present");
    ensure!(r.list_handle_grants(&scope).await.ctx("list_handle_grants")?.is_empty(), "revoked grant still listed");
    ensure!(
        r.handle_grants_for_process(id).await.ctx("handle_grants_for_process")?.is_empty(),
        "revoked grant in the process index"
    );
    r.revoke_handle(&scope, id).await.ctx("revoking twice")?;
    Ok(())
}

async fn transfer_handle_grants_moves_grants_keeping_descriptors(r: Reg) -> ScenarioResult {
    let from = SessionScope::new("sess-from");
    let to = SessionScope::with_frame("sess-to", "f");
    for id in ["proc-t1", "proc-t2", "proc-t3"] {
        setup(&r, standard(id)).await?;
        r.grant_handle(&from, id, label(id)).await.ctx(format!("grant `{id}`"))?;
    }
    r.transfer_handle_grants(&from, &to, &strings(&["proc-t1", "proc-t2"])).await.ctx("transfer_handle_grants")?;
    let moved = r.list_handle_grants(&to).await.ctx("list_handle_grants(to)")?;
    let moved: Vec<_> = moved.into_iter().map(|(grant, _)| grant).collect();
    ensure_eq!(moved.len(), 2, "grants in the target scope");
    for (grant, id) in moved.iter().zip(["proc-t1", "proc-t2"]) {
        ensure_eq!(grant.process_id, id, "moved grant process id");
        ensure_eq!(grant.session_id, "sess-to", "moved grant session id");
        ensure_eq!(grant.descriptor, label(id), "moved grant keeps its descriptor");
    }
    let left = r.list_handle_grants(&from).await.ctx("list_handle_grants(from)")?;
    let left: Vec<_> = left.into_iter().map(|(grant, _)| grant.process_id).collect();
    ensure_eq!(left, strings(&["proc-t3"]), "grants left in the source scope");
    r.transfer_handle_grants(&from, &to, &[]).await.ctx("transferring nothing")?;
    Ok(())
}

async fn transfer_handle_grants_is_all_or_nothing(r: Reg) -> ScenarioResult {
    let from = SessionScope::new("sess-from");
    let to = SessionScope::new("sess-to");
    for id in ["proc-a1", "proc-a2", "proc-a3"] {
        setup(&r, standard(id)).await?;
    }
    r.grant_handle(&from, "proc-a1", label("1")).await.ctx("grant a1")?;
    r.grant_handle(&from, "proc-a2", label("2")).await.ctx("grant a2")?;
    // proc-a3 exists but is not granted to `from`.
    let err = ensure_err!(
        r.transfer_handle_grants(&from, &to, &strings(&["proc-a1", "proc-a3", "proc-a2"])).await,
        RegistryError::HandleNotGranted { .. },
        "transfer including a process not granted to the source"
    );
    ensure_names(&err, "proc-a3", "transfer of an ungranted process")?;
    let err = expect_err(
        r.transfer_handle_grants(&from, &to, &strings(&["proc-a1", "proc-ghost"])).await,
        "transfer including an unknown process",
    )?;
    ensure_names(&err, "proc-ghost", "transfer of an unknown process")?;
    let left: Vec<_> =
        r.list_handle_grants(&from).await.ctx("list from")?.into_iter().map(|(g, _)| g.process_id).collect();
    ensure_eq!(left, strings(&["proc-a1", "proc-a2"]), "source grants after failed transfers (nothing moved)");
    ensure!(r.list_handle_grants(&to).await.ctx("list to")?.is_empty(), "a failed transfer moved grants");
    Ok(())
}

async fn list_handle_grants_sorted_by_process_id_with_current_records(r: Reg) -> ScenarioResult {
    let scope = SessionScope::new("sess");
    for id in ["proc-g3", "proc-g1", "proc-g2"] {
        setup(&r, standard(id)).await?;
        r.grant_handle(&scope, id, label(id)).await.ctx(format!("grant `{id}`"))?;
    }
    append(&r, "proc-g2", note("after grant")).await?;
    r.complete_process("proc-g3", ProcessAwaitOutput::success(json!(1))).await.ctx("complete g3")?;
    let listed = r.list_handle_grants(&scope).await.ctx("list_handle_grants")?;
    let listed_ids: Vec<_> = listed.iter().map(|(grant, _)| grant.process_id.clone()).collect();
    ensure_eq!(listed_ids, strings(&["proc-g1", "proc-g2", "proc-g3"]), "grants sorted by process id");
    for (grant, listed_record) in &listed {
        ensure_eq!(listed_record.id, grant.process_id, "entry record matches its grant");
        ensure_eq!(Some(listed_record.clone()), r.get_process(&grant.process_id).await, "entry record is current");
        ensure_eq!(grant.descriptor, label(&grant.process_id), "entry descriptor");
    }
    ensure!(
        r.list_handle_grants(&SessionScope::new("other")).await.ctx("list other")?.is_empty(),
        "another scope has no grants"
    );
    ensure!(
        r.list_handle_grants(&SessionScope::with_frame("sess", "f")).await.ctx("list frame")?.is_empty(),
        "a frame of the session is another scope"
    );
    Ok(())
}

async fn list_live_handle_grants_excludes_terminal_processes(r: Reg) -> ScenarioResult {
    let scope = SessionScope::new("sess");
    for id in ["proc-l1", "proc-l2", "proc-l3"] {
        setup(&r, standard(id)).await?;
        r.grant_handle(&scope, id, label(id)).await.ctx(format!("grant `{id}`"))?;
    }
    r.complete_process("proc-l2", ProcessAwaitOutput::cancelled("x")).await.ctx("complete l2")?;
    let live = r.list_live_handle_grants(&scope).await.ctx("list_live_handle_grants")?;
    let live_ids: Vec<_> = live.iter().map(|(grant, _)| grant.process_id.clone()).collect();
    ensure_eq!(live_ids, strings(&["proc-l1", "proc-l3"]), "live grants");
    ensure_eq!(r.list_handle_grants(&scope).await.ctx("list_handle_grants")?.len(), 3, "all grants still listed");
    Ok(())
}

async fn has_handle_grant_only_for_granted_existing_process(r: Reg) -> ScenarioResult {
    let id = "proc-has";
    setup(&r, standard(id)).await?;
    setup(&r, standard("proc-has-other")).await?;
    let scope = SessionScope::with_frame("sess", "f");
    r.grant_handle(&scope, id, label("x")).await.ctx("grant_handle")?;
    ensure!(r.has_handle_grant(&scope, id).await.ctx("has_handle_grant")?, "the granted process");
    ensure!(!r.has_handle_grant(&scope, "proc-has-other").await.ctx("has other")?, "an ungranted process");
    ensure!(
        !r.has_handle_grant(&SessionScope::new("sess"), id).await.ctx("has whole session")?,
        "the whole session is another scope"
    );
    ensure!(
        !r.has_handle_grant(&SessionScope::with_frame("sess", "g"), id).await.ctx("has other frame")?,
        "another frame"
    );
    match r.has_handle_grant(&scope, "proc-ghost").await {
        Ok(false) => {}
        Err(err @ RegistryError::UnknownProcess { .. }) => ensure_names(&err, "proc-ghost", "has_handle_grant")?,
        other => {
            return Err(format!(
                "has_handle_grant of an unknown process: expected Ok(false) or UnknownProcess, got {other:?}"
            ))
        }
    }
    Ok(())
}

async fn handle_grants_for_process_sorted_by_session_id(r: Reg) -> ScenarioResult {
    let id = "proc-by-session";
    setup(&r, standard(id)).await?;
    ensure!(r.handle_grants_for_process(id).await.ctx("no grants yet")?.is_empty(), "no grants yet");
    for session in ["zeta", "alpha", "mid"] {
        r.grant_handle(&SessionScope::new(session), id, label(session)).await.ctx(format!("grant to {session}"))?;
    }
    let grants = r.handle_grants_for_process(id).await.ctx("handle_grants_for_process")?;
    let sessions: Vec<_> = grants.iter().map(|grant| grant.session_id.clone()).collect();
    ensure_eq!(sessions, strings(&["alpha", "mid", "zeta"]), "grants sorted by session id");
    for grant in &grants {
        ensure_eq!(grant.process_id, id, "grant process id");
        ensure_eq!(grant.descriptor, label(&grant.session_id), "grant descriptor");
    }
    Ok(())
}

async fn grant_changes_never_append_events(r: Reg) -> ScenarioResult {
    let id = "proc-grant-events";
    setup(&r, standard(id).with_wake_target(SessionScope::new("a"))).await?;
    let (a, b) = (SessionScope::new("a"), SessionScope::with_frame("b", "f"));
    r.grant_handle(&a, id, label("1")).await.ctx("grant")?;
    r.grant_handle(&a, id, label("2")).await.ctx("re-grant")?;
    r.transfer_handle_grants(&a, &b, &strings(&[id])).await.ctx("transfer")?;
    r.grant_handle(&a, id, label("3")).await.ctx("grant again")?;
    r.revoke_handle(&a, id).await.ctx("revoke")?;
    r.delete_session_process_state("b").await.ctx("delete session")?;
    ensure!(log(&r, id).await?.is_empty(), "grant changes appended events");
    ensure!(r.wake_events_after(id, 0).await.ctx("wake_events_after")?.is_empty(), "grant changes produced wakes");
    Ok(())
}

async fn delete_session_process_state_covers_every_frame_of_the_session(r: Reg) -> ScenarioResult {
    for id in ["proc-d1", "proc-d2", "proc-d3", "proc-d4"] {
        setup(&r, standard(id)).await?;
    }
    let whole = SessionScope::new("s");
    let frame_one = SessionScope::with_frame("s", "f1");
    let frame_two = SessionScope::with_frame("s", "f2");
    let other = SessionScope::new("s2");
    let prefix = SessionScope::new("ss");
    r.grant_handle(&whole, "proc-d1", label("")).await.ctx("grant")?;
    r.grant_handle(&frame_one, "proc-d2", label("")).await.ctx("grant")?;
    r.grant_handle(&frame_two, "proc-d3", label("")).await.ctx("grant")?;
    r.grant_handle(&frame_two, "proc-d1", label("")).await.ctx("grant")?;
    r.grant_handle(&other, "proc-d4", label("")).await.ctx("grant")?;
    r.grant_handle(&prefix, "proc-d4", label("")).await.ctx("grant")?;
    let report = r.delete_session_process_state("s").await.ctx("delete_session_process_state")?;
    ensure_eq!(report.session_id, "s", "report session id");
    ensure_eq!(report.revoked_handle_count, 4, "grants revoked over every frame of `s`");
    ensure_eq!(report.deleted_wake_count, 0, "deleted_wake_count");
    for scope in [&whole, &frame_one, &frame_two] {
        ensure!(r.list_handle_grants(scope).await.ctx("list")?.is_empty(), "scope {scope:?} still has grants");
    }
    for scope in [&other, &prefix] {
        ensure_eq!(r.list_handle_grants(scope).await.ctx("list")?.len(), 1, "grants of another session {scope:?}");
    }
    let again = r.delete_session_process_state("s").await.ctx("deleting again")?;
    ensure_eq!(again.revoked_handle_count, 0, "a second deletion revokes nothing");
    ensure!(
        again.orphaned_process_ids.is_empty() && again.preserved_process_ids.is_empty(),
        "a second deletion reports nothing"
    );
    let unknown = r.delete_session_process_state("never-seen").await.ctx("deleting an unknown session")?;
    ensure_eq!(unknown.revoked_handle_count, 0, "an unknown session revokes nothing");
    Ok(())
}

async fn delete_session_reports_orphaned_and_preserved_sorted_deduped_non_terminal(r: Reg) -> ScenarioResult {
    // orphan-b, orphan-a: only granted in `s` (orphan-a in two frames).
    // keep-z, keep-y: granted in `s` and elsewhere. done: terminal, only in `s`.
    // done-kept: terminal, in `s` and elsewhere. untouched: not granted in `s`.
    for id in ["orphan-b", "orphan-a", "keep-z", "keep-y", "done", "done-kept", "untouched"] {
        setup(&r, standard(id)).await?;
    }
    let s = SessionScope::new("s");
    let s_frame = SessionScope::with_frame("s", "f");
    let elsewhere = SessionScope::new("t");
    let grants = [
        (&s, "orphan-b"),
        (&s, "orphan-a"),
        (&s_frame, "orphan-a"),
        (&s_frame, "keep-z"),
        (&elsewhere, "keep-z"),
        (&s, "keep-y"),
        (&s_frame, "keep-y"),
        (&SessionScope::with_frame("t", "g"), "keep-y"),
        (&s, "done"),
        (&s, "done-kept"),
        (&elsewhere, "done-kept"),
        (&elsewhere, "untouched"),
    ];
    for (scope, id) in grants {
        r.grant_handle(scope, id, label("")).await.ctx(format!("grant `{id}` to {scope:?}"))?;
    }
    for id in ["done", "done-kept"] {
        r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx(format!("complete `{id}`"))?;
    }
    let report = r.delete_session_process_state("s").await.ctx("delete_session_process_state")?;
    ensure_eq!(report.revoked_handle_count, 8, "revoked grants");
    ensure_eq!(report.deleted_wake_count, 0, "deleted_wake_count");
    ensure_eq!(
        report.orphaned_process_ids,
        strings(&["orphan-a", "orphan-b"]),
        "orphaned ids (sorted, deduped, non-terminal)"
    );
    ensure_eq!(
        report.preserved_process_ids,
        strings(&["keep-y", "keep-z"]),
        "preserved ids (sorted, deduped, non-terminal)"
    );
    ensure!(
        r.handle_grants_for_process("orphan-a").await.ctx("grants of orphan-a")?.is_empty(),
        "orphan-a still granted"
    );
    ensure_eq!(r.handle_grants_for_process("keep-y").await.ctx("grants of keep-y")?.len(), 1, "keep-y grants left");
    Ok(())
}

// ---------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------

const LONG_TTL: u64 = 60_000;

async fn claim_lease_unknown_process_errors(r: Reg) -> ScenarioResult {
    let err = ensure_err!(
        r.claim_process_lease("proc-ghost", "worker-1", LONG_TTL).await,
        RegistryError::UnknownProcess { .. },
        "claiming a lease on an unknown process"
    );
    ensure_names(&err, "proc-ghost", "claim on an unknown process")
}

async fn claim_lease_terminal_process_errors(r: Reg) -> ScenarioResult {
    let id = "proc-lease-done";
    setup(&r, standard(id)).await?;
    r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx("complete_process")?;
    let err = ensure_err!(
        r.claim_process_lease(id, "worker-1", LONG_TTL).await,
        RegistryError::AlreadyTerminal { .. },
        "claiming a lease on a terminal process"
    );
    ensure_names(&err, id, "claim on a terminal process")
}

async fn claim_lease_grants_first_fencing_token_and_expiry(r: Reg) -> ScenarioResult {
    let id = "proc-lease";
    setup(&r, standard(id)).await?;
    let lease = r.claim_process_lease(id, "worker-1", LONG_TTL).await.ctx("claim")?;
    ensure_eq!(lease.schema_version, PROCESS_LEASE_SCHEMA_VERSION, "schema_version");
    ensure_eq!(lease.process_id, id, "lease process_id");
    ensure_eq!(lease.owner_id, "worker-1", "lease owner_id");
    ensure_eq!(lease.fencing_token, 1, "the first fencing token");
    ensure!(!lease.lease_token.is_empty(), "the lease token must not be empty");
    ensure!(lease.claimed_at_epoch_ms > 0, "claimed_at_epoch_ms must be set");
    ensure_eq!(lease.expires_at_epoch_ms, lease.claimed_at_epoch_ms + LONG_TTL, "expires_at = claimed_at + ttl");
    ensure!(log(&r, id).await?.is_empty(), "claiming a lease must not append events");
    Ok(())
}

async fn claim_lease_held_by_other_owner_errors_already_leased(r: Reg) -> ScenarioResult {
    let id = "proc-lease-held";
    setup(&r, standard(id)).await?;
    let held = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("claim by worker-a")?;
    let err = ensure_err!(
        r.claim_process_lease(id, "worker-b", LONG_TTL).await,
        RegistryError::LeaseHeld { .. },
        "claiming a live lease of another owner"
    );
    ensure_names(&err, id, "lease held")?;
    let message = err.to_string();
    ensure!(message.contains("already leased"), "the message must contain `already leased`: {message}");
    ensure!(message.contains("worker-a"), "the message should name the current owner: {message}");
    ensure!(
        message.contains(&held.expires_at_epoch_ms.to_string()),
        "the message should name the expiry {}: {message}",
        held.expires_at_epoch_ms
    );
    // The holder's lease is intact.
    r.renew_process_lease(&held, LONG_TTL).await.ctx("renewing the held lease after a refused claim")?;
    Ok(())
}

async fn claim_lease_ttl_zero_is_expired_and_can_be_taken_over(r: Reg) -> ScenarioResult {
    let id = "proc-lease-zero";
    setup(&r, standard(id)).await?;
    let expired = r.claim_process_lease(id, "worker-a", 0).await.ctx("claim with ttl 0")?;
    ensure_eq!(expired.expires_at_epoch_ms, expired.claimed_at_epoch_ms, "ttl 0 expires at claim time");
    let taken = r.claim_process_lease(id, "worker-b", LONG_TTL).await.ctx("taking over an expired lease")?;
    ensure_eq!(taken.owner_id, "worker-b", "new owner");
    ensure!(
        taken.fencing_token > expired.fencing_token,
        "the takeover's fencing token {} must exceed {}",
        taken.fencing_token,
        expired.fencing_token
    );
    ensure!(taken.lease_token != expired.lease_token, "the takeover must get a new lease token");
    let err = ensure_err!(
        r.renew_process_lease(&expired, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing the superseded lease"
    );
    ensure_names(&err, id, "superseded renew")?;
    Ok(())
}

async fn claim_lease_same_owner_reclaim_bumps_fencing_token(r: Reg) -> ScenarioResult {
    let id = "proc-lease-reclaim";
    setup(&r, standard(id)).await?;
    let first = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("first claim")?;
    let second = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("reclaim by the same owner")?;
    ensure_eq!(second.fencing_token, first.fencing_token + 1, "reclaim bumps the fencing token");
    ensure_eq!(second.owner_id, "worker-a", "reclaim owner");
    ensure!(second.lease_token != first.lease_token, "reclaim issues a new lease token");
    ensure_err!(
        r.renew_process_lease(&first, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing the lease replaced by the reclaim"
    );
    r.renew_process_lease(&second, LONG_TTL).await.ctx("renewing the reclaimed lease")?;
    let err = ensure_err!(
        r.claim_process_lease(id, "worker-b", LONG_TTL).await,
        RegistryError::LeaseHeld { .. },
        "another owner while the reclaimed lease is live"
    );
    ensure_names(&err, id, "lease held")?;
    Ok(())
}

async fn renew_lease_extends_and_stale_token_fails_missing_or_expired(r: Reg) -> ScenarioResult {
    let id = "proc-lease-renew";
    setup(&r, standard(id)).await?;
    let lease = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("claim")?;
    let renewed = r.renew_process_lease(&lease, 2 * LONG_TTL).await.ctx("renew")?;
    ensure_eq!(renewed.process_id, id, "renewed process id");
    ensure_eq!(renewed.owner_id, "worker-a", "renewed owner");
    ensure_eq!(renewed.fencing_token, lease.fencing_token, "renew keeps the fencing token");
    ensure!(
        renewed.expires_at_epoch_ms >= lease.expires_at_epoch_ms + LONG_TTL,
        "renew with twice the ttl must extend the expiry: {} -> {}",
        lease.expires_at_epoch_ms,
        renewed.expires_at_epoch_ms
    );
    let renewed_again = r.renew_process_lease(&renewed, LONG_TTL).await.ctx("renewing the renewed lease")?;
    ensure_eq!(renewed_again.fencing_token, lease.fencing_token, "fencing token after two renews");
    let mut forged = renewed_again.clone();
    forged.lease_token = "forged-token".to_owned();
    let err = ensure_err!(
        r.renew_process_lease(&forged, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing with a stale token"
    );
    ensure_names(&err, id, "stale renew")?;
    ensure!(err.to_string().contains("missing or expired"), "the message must contain `missing or expired`: {err}");
    // An expired lease cannot be renewed.
    let other = "proc-lease-renew-expired";
    setup(&r, standard(other)).await?;
    let expired = r.claim_process_lease(other, "worker-a", 0).await.ctx("claim with ttl 0")?;
    let err = ensure_err!(
        r.renew_process_lease(&expired, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing an expired lease"
    );
    ensure!(err.to_string().contains("missing or expired"), "the message must contain `missing or expired`: {err}");
    // A released lease cannot be renewed.
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&renewed_again)).await.ctx("release")?;
    ensure_err!(
        r.renew_process_lease(&renewed_again, LONG_TTL).await,
        RegistryError::LeaseMissingOrExpired { .. },
        "renewing a released lease"
    );
    Ok(())
}

async fn complete_lease_with_stale_token_is_a_noop(r: Reg) -> ScenarioResult {
    let id = "proc-lease-stale";
    setup(&r, standard(id)).await?;
    let stale = r.claim_process_lease(id, "worker-a", 0).await.ctx("claim with ttl 0")?;
    let current = r.claim_process_lease(id, "worker-b", LONG_TTL).await.ctx("takeover")?;
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&stale))
        .await
        .ctx("stale completion (must be a silent no-op)")?;
    let forged = ProcessLeaseCompletion { process_id: id.to_owned(), lease_token: "forged".to_owned() };
    r.complete_process_lease(&forged).await.ctx("forged completion (must be a silent no-op)")?;
    let err = ensure_err!(
        r.claim_process_lease(id, "worker-c", LONG_TTL).await,
        RegistryError::LeaseHeld { .. },
        "the current lease must still block others after a stale completion"
    );
    ensure!(err.to_string().contains("worker-b"), "the current owner is still worker-b: {err}");
    r.renew_process_lease(&current, LONG_TTL).await.ctx("the current lease still renews")?;
    Ok(())
}

async fn complete_lease_then_claim_gets_higher_fencing_token(r: Reg) -> ScenarioResult {
    let id = "proc-lease-release";
    setup(&r, standard(id)).await?;
    let first = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("claim")?;
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&first)).await.ctx("release")?;
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&first)).await.ctx("releasing again (idempotent)")?;
    let second = r.claim_process_lease(id, "worker-b", LONG_TTL).await.ctx("claim after release")?;
    ensure!(
        second.fencing_token > first.fencing_token,
        "fencing tokens are never reused: {} after {}",
        second.fencing_token,
        first.fencing_token
    );
    r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&second)).await.ctx("release second")?;
    let third = r.claim_process_lease(id, "worker-a", LONG_TTL).await.ctx("claim again")?;
    ensure!(
        third.fencing_token > second.fencing_token,
        "fencing token {} after {}",
        third.fencing_token,
        second.fencing_token
    );
    Ok(())
}

async fn lease_tokens_differ_between_claims(r: Reg) -> ScenarioResult {
    let mut tokens = std::collections::BTreeSet::new();
    for (index, id) in ["proc-tok-1", "proc-tok-2"].into_iter().enumerate() {
        setup(&r, standard(id)).await?;
        for claim in 0..4 {
            let owner = format!("worker-{index}-{claim}");
            let lease = r.claim_process_lease(id, &owner, 0).await.ctx(format!("claim {claim} on `{id}`"))?;
            ensure!(tokens.insert(lease.lease_token.clone()), "lease token `{}` was issued twice", lease.lease_token);
            ensure!(
                lease.lease_token.len() >= 16,
                "lease token `{}` is too short to be unguessable",
                lease.lease_token
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Errors and bad input
// ---------------------------------------------------------------------------

async fn unknown_process_is_an_error_everywhere_it_is_named(r: Reg) -> ScenarioResult {
    let ghost = "proc-ghost-7";
    setup(&r, standard("proc-real")).await?;
    let scope = SessionScope::new("sess");
    let results: Vec<(&str, Result<String, RegistryError>)> = vec![
        ("set_external_ref", r.set_external_ref(ghost, external_ref("x")).await.map(|v| format!("{v:?}"))),
        ("grant_handle", r.grant_handle(&scope, ghost, label("x")).await.map(|v| format!("{v:?}"))),
        ("handle_grants_for_process", r.handle_grants_for_process(ghost).await.map(|v| format!("{v:?}"))),
        ("append_event", r.append_event(ghost, note("x")).await.map(|v| format!("{v:?}"))),
        ("events_after", r.events_after(ghost, 0).await.map(|v| format!("{v:?}"))),
        ("count_events_through", r.count_events_through(ghost, "note", 10).await.map(|v| format!("{v:?}"))),
        ("recent_events", r.recent_events(ghost, 10).await.map(|v| format!("{v:?}"))),
        ("wake_events_after", r.wake_events_after(ghost, 0).await.map(|v| format!("{v:?}"))),
        (
            "wait_event_after",
            within("wait_event_after of an unknown process", r.wait_event_after(ghost, "note", 0))
                .await?
                .map(|v| format!("{v:?}")),
        ),
        (
            "await_process",
            within("await_process of an unknown process", r.await_process(ghost)).await?.map(|v| format!("{v:?}")),
        ),
        (
            "complete_process",
            r.complete_process(ghost, ProcessAwaitOutput::success(json!(1))).await.map(|v| format!("{v:?}")),
        ),
        ("set_process_wait", r.set_process_wait(ghost, signal_wait("w")).await.map(|v| format!("{v:?}"))),
        ("clear_process_wait", r.clear_process_wait(ghost).await.map(|v| format!("{v:?}"))),
        ("ack_wake", r.ack_wake(ghost, 1).await.map(|v| format!("{v:?}"))),
        ("claim_process_lease", r.claim_process_lease(ghost, "w", LONG_TTL).await.map(|v| format!("{v:?}"))),
    ];
    for (call, result) in results {
        let err = ensure_err!(result, RegistryError::UnknownProcess { .. }, "{call} of an unknown process");
        ensure_names(&err, ghost, call)?;
    }
    let lease = ProcessLease {
        schema_version: PROCESS_LEASE_SCHEMA_VERSION,
        process_id: ghost.to_owned(),
        owner_id: "w".to_owned(),
        lease_token: "t".to_owned(),
        fencing_token: 1,
        claimed_at_epoch_ms: 0,
        expires_at_epoch_ms: u64::MAX,
    };
    let err = ensure_err!(
        r.renew_process_lease(&lease, LONG_TTL).await,
        RegistryError::UnknownProcess { .. } | RegistryError::LeaseMissingOrExpired { .. },
        "renew_process_lease of an unknown process"
    );
    ensure_names(&err, ghost, "renew_process_lease")?;
    let err = ensure_err!(
        r.complete_process_lease(&ProcessLeaseCompletion::from_lease(&lease)).await,
        RegistryError::UnknownProcess { .. } | RegistryError::LeaseMissingOrExpired { .. },
        "complete_process_lease of an unknown process"
    );
    ensure_names(&err, ghost, "complete_process_lease")?;
    ensure!(r.get_process(ghost).await.is_none(), "calls on an unknown id created it");
    ensure_eq!(
        ids(&r.list_processes(&ProcessListFilter::any()).await.ctx("list")?),
        strings(&["proc-real"]),
        "calls on an unknown id created processes"
    );
    Ok(())
}

async fn every_error_names_the_process_id(r: Reg) -> ScenarioResult {
    let live = "proc-named-live-3f";
    let done = "proc-named-done-9c";
    setup(&r, standard(live)).await?;
    setup(&r, standard(done)).await?;
    append(&r, live, note("x").with_replay_key("k")).await?;
    r.complete_process(done, ProcessAwaitOutput::success(json!(1))).await.ctx("complete")?;
    let lease = r.claim_process_lease(live, "worker-a", LONG_TTL).await.ctx("claim")?;
    let mut stale = lease.clone();
    stale.lease_token = "stale".to_owned();
    let errors: Vec<(&str, &str, Result<String, RegistryError>)> = vec![
        (
            "registration conflict",
            live,
            r.register_process(standard(live).with_env_ref("e")).await.map(|v| format!("{v:?}")),
        ),
        (
            "invalid registration",
            "proc-named-invalid",
            r.register_process(standard("proc-named-invalid").with_host_profile_id("")).await.map(|v| format!("{v:?}")),
        ),
        (
            "undeclared type",
            live,
            r.append_event(live, ProcessEventAppendRequest::new("nope", json!({}))).await.map(|v| format!("{v:?}")),
        ),
        (
            "invalid payload",
            live,
            r.append_event(live, ProcessEventAppendRequest::new("note", json!({"count": "x"})))
                .await
                .map(|v| format!("{v:?}")),
        ),
        (
            "missing replay key",
            live,
            r.append_event(live, ProcessEventAppendRequest::new(COMPLETED, json!({"await_output": 1})))
                .await
                .map(|v| format!("{v:?}")),
        ),
        ("replay conflict", live, r.append_event(live, note("y").with_replay_key("k")).await.map(|v| format!("{v:?}"))),
        ("already terminal", done, r.append_event(done, completed("again", json!(2))).await.map(|v| format!("{v:?}"))),
        ("wait on terminal", done, r.set_process_wait(done, signal_wait("w")).await.map(|v| format!("{v:?}"))),
        ("ack beyond log", live, r.ack_wake(live, 99).await.map(|v| format!("{v:?}"))),
        ("lease held", live, r.claim_process_lease(live, "worker-b", LONG_TTL).await.map(|v| format!("{v:?}"))),
        ("lease missing", live, r.renew_process_lease(&stale, LONG_TTL).await.map(|v| format!("{v:?}"))),
        ("lease on terminal", done, r.claim_process_lease(done, "worker-a", LONG_TTL).await.map(|v| format!("{v:?}"))),
        (
            "handle not granted",
            live,
            r.transfer_handle_grants(&SessionScope::new("a"), &SessionScope::new("b"), &strings(&[live]))
                .await
                .map(|v| format!("{v:?}")),
        ),
    ];
    for (what, id, result) in errors {
        let err = expect_err(result, what)?;
        ensure_names(&err, id, what)?;
    }
    Ok(())
}

async fn bad_input_leaves_the_process_usable(r: Reg) -> ScenarioResult {
    let id = "proc-resilient";
    setup(&r, standard(id)).await?;
    let mut expected = 0u64;
    // After each refused call, a valid append must get the next sequence.
    macro_rules! refused_then_usable {
        ($what:expr, $call:expr) => {{
            let what: &str = $what;
            let err = expect_err($call.await, what)?;
            ensure_names(&err, id, what)?;
            expected += 1;
            let result =
                append(&r, id, note(&format!("ok-{expected}"))).await.map_err(|m| format!("after {what}: {m}"))?;
            ensure_eq!(result.event.sequence, expected, "after {what}: a valid append keeps the log gapless");
            ensure_eq!(record(&r, id).await?.status, ProcessStatus::Running, "after {what}: status");
        }};
    }
    expected += 1;
    append(&r, id, note("first")).await?;
    expected += 1;
    append(&r, id, note("keyed").with_replay_key("k")).await?;
    refused_then_usable!("undeclared type", r.append_event(id, ProcessEventAppendRequest::new("nope", json!({}))));
    refused_then_usable!(
        "schema violation",
        r.append_event(id, ProcessEventAppendRequest::new("note", json!({"count": 1.5})))
    );
    refused_then_usable!(
        "non-object payload",
        r.append_event(id, ProcessEventAppendRequest::new("note", json!([1, 2])))
    );
    refused_then_usable!(
        "missing required field",
        r.append_event(id, ProcessEventAppendRequest::new("alert", json!({"other": 1})))
    );
    refused_then_usable!(
        "terminal without key",
        r.append_event(id, ProcessEventAppendRequest::new(COMPLETED, json!({"await_output": 1})))
    );
    refused_then_usable!(
        "terminal whose await output pointer matches nothing",
        r.append_event(id, ProcessEventAppendRequest::new(FAILED, json!({"oops": 1})).with_replay_key("f"))
    );
    refused_then_usable!("replay conflict", r.append_event(id, note("different").with_replay_key("k")));
    refused_then_usable!("ack beyond log", r.ack_wake(id, 1_000));
    refused_then_usable!("conflicting registration", r.register_process(standard(id).with_env_ref("x")));
    refused_then_usable!(
        "transfer of an ungranted handle",
        r.transfer_handle_grants(&SessionScope::new("a"), &SessionScope::new("b"), &strings(&[id]))
    );
    // Waits and completion still work.
    let event =
        within("wait_event_after after bad input", r.wait_event_after(id, "note", 0)).await?.ctx("wait_event_after")?;
    ensure_eq!(event.sequence, 1, "wait_event_after after bad input");
    r.complete_process(id, ProcessAwaitOutput::success(json!("fine"))).await.ctx("complete after bad input")?;
    let output = within("await_process after bad input", r.await_process(id)).await?.ctx("await_process")?;
    ensure_eq!(output, ProcessAwaitOutput::success(json!("fine")), "await_process after bad input");
    ensure_eq!(sequences(&log(&r, id).await?), (1..=expected + 1).collect::<Vec<u64>>(), "log after bad input");
    Ok(())
}

async fn deeply_nested_payload_never_panics(r: Reg) -> ScenarioResult {
    let id = "proc-deep";
    setup(&r, standard(id)).await?;
    let mut deep = json!("leaf");
    for _ in 0..1_000 {
        deep = json!({ "d": deep });
    }
    let mut expected = 0;
    // Either a typed error (a depth limit) or an accepted event; never a panic.
    match r.append_event(id, ProcessEventAppendRequest::new("note", json!({ "nested": deep }))).await {
        Ok(result) => {
            expected += 1;
            ensure_eq!(result.event.sequence, expected, "sequence of the deep event");
        }
        Err(err) => ensure_names(&err, id, "deep payload")?,
    }
    expected += 1;
    let next = append(&r, id, note("after")).await?;
    ensure_eq!(next.event.sequence, expected, "a valid append after a deep payload");
    Ok(())
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

async fn concurrent_appends_get_gapless_unique_sequences(r: Reg) -> ScenarioResult {
    let id = "proc-concurrent";
    setup(&r, standard(id)).await?;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move { r.append_event(id, note(&format!("task-{i}"))).await })
        })
        .collect();
    let mut by_sequence = BTreeMap::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let result = join("a concurrent append", task).await?.ctx(format!("concurrent append {i}"))?;
        if let Some(previous) = by_sequence.insert(result.event.sequence, result.event.clone()) {
            return Err(format!(
                "sequence {} was returned twice: {previous:?} and {:?}",
                result.event.sequence, result.event
            ));
        }
    }
    ensure_eq!(by_sequence.keys().copied().collect::<Vec<_>>(), (1..=64).collect::<Vec<u64>>(), "returned sequences");
    let events = log(&r, id).await?;
    ensure_eq!(sequences(&events), (1..=64).collect::<Vec<u64>>(), "log sequences");
    for event in &events {
        ensure_eq!(
            Some(event),
            by_sequence.get(&event.sequence),
            "logged event {} equals the returned one",
            event.sequence
        );
    }
    let texts: std::collections::BTreeSet<_> = events.iter().map(|event| event.payload.to_string()).collect();
    ensure_eq!(texts.len(), 64, "distinct payloads in the log");
    Ok(())
}

async fn concurrent_registrations_of_one_id_yield_one_record(r: Reg) -> ScenarioResult {
    let id = "proc-race";
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.register_process(standard(id)).await })
        })
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        records.push(join("a concurrent registration", task).await?.ctx("concurrent registration")?);
    }
    let first = &records[0];
    for other in &records {
        ensure_eq!(other.registration_hash, first.registration_hash, "registration hash of racing registrations");
        ensure_eq!(other.created_at_ms, first.created_at_ms, "created_at_ms of racing registrations (one record)");
    }
    let listed = r.list_processes(&ProcessListFilter::any()).await.ctx("list")?;
    ensure_eq!(ids(&listed), strings(&[id]), "processes after racing registrations");
    append(&r, id, note("x")).await?;
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "the one process has one log");
    Ok(())
}

async fn concurrent_conflicting_registrations_resolve_to_one_registration(r: Reg) -> ScenarioResult {
    let id = "proc-race-conflict";
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move { r.register_process(standard(id).with_env_ref(format!("env-{}", i % 2))).await })
        })
        .collect();
    let mut winners = std::collections::BTreeSet::new();
    let mut conflicts = 0;
    for task in tasks {
        match join("a racing registration", task).await? {
            Ok(registered) => {
                winners.insert(registered.env_ref.clone());
            }
            Err(RegistryError::RegistrationConflict { .. }) => conflicts += 1,
            Err(other) => return Err(format!("racing registration: unexpected error {other:?}")),
        }
    }
    ensure_eq!(winners.len(), 1, "successful racing registrations must all be the same registration: {winners:?}");
    ensure_eq!(conflicts, 16, "registrations of the losing variant must all conflict");
    let listed = r.list_processes(&ProcessListFilter::any()).await.ctx("list")?;
    ensure_eq!(ids(&listed), strings(&[id]), "processes after racing registrations");
    ensure_eq!(Some(listed[0].env_ref.clone()), winners.into_iter().next(), "the stored registration is the winner");
    Ok(())
}

async fn concurrent_replayed_appends_commit_once(r: Reg) -> ScenarioResult {
    let id = "proc-race-replay";
    setup(&r, standard(id)).await?;
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.append_event(id, note("same").with_replay_key("once")).await })
        })
        .collect();
    let mut events = Vec::new();
    for task in tasks {
        events.push(join("a racing replay", task).await?.ctx("racing replayed append")?.event);
    }
    ensure!(events.iter().all(|event| *event == events[0]), "racing replays returned different events");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after racing replays");
    Ok(())
}

async fn concurrent_complete_process_same_outcome_commits_once(r: Reg) -> ScenarioResult {
    let id = "proc-race-complete";
    setup(&r, standard(id)).await?;
    let output = ProcessAwaitOutput::success(json!({"done": true}));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (r, output) = (r.clone(), output.clone());
            tokio::spawn(async move { r.complete_process(id, output).await })
        })
        .collect();
    for task in tasks {
        let done = join("a racing complete_process", task).await?.ctx("racing complete_process")?;
        ensure_eq!(done.status.await_output(), Some(&output), "status of a racing complete_process");
    }
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "one terminal event after racing completions");
    Ok(())
}

async fn concurrent_lease_claims_have_exactly_one_winner(r: Reg) -> ScenarioResult {
    let id = "proc-race-lease";
    setup(&r, standard(id)).await?;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move { r.claim_process_lease(id, &format!("worker-{i}"), LONG_TTL).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match join("a racing claim", task).await? {
            Ok(lease) => winners.push(lease),
            Err(RegistryError::LeaseHeld { .. }) => {}
            Err(other) => return Err(format!("racing claim: unexpected error {other:?}")),
        }
    }
    ensure_eq!(winners.len(), 1, "exactly one racing claim must win: {winners:?}");
    ensure_eq!(winners[0].fencing_token, 1, "the winner's fencing token");
    Ok(())
}

async fn parallel_appends_on_many_processes_stay_independent(r: Reg) -> ScenarioResult {
    let process_ids: Vec<String> = (0..16).map(|i| format!("proc-par-{i:02}")).collect();
    for id in &process_ids {
        setup(&r, standard(id)).await?;
    }
    let mut tasks = Vec::new();
    for id in &process_ids {
        for n in 0..16 {
            let (r, id) = (r.clone(), id.clone());
            tasks.push(tokio::spawn(async move { r.append_event(&id, note(&format!("{id}-{n}"))).await }));
        }
    }
    for task in tasks {
        join("a parallel append", task).await?.ctx("parallel append")?;
    }
    for id in &process_ids {
        let events = log(&r, id).await?;
        ensure_eq!(sequences(&events), (1..=16).collect::<Vec<u64>>(), "log of `{id}`");
        for event in &events {
            ensure_eq!(event.process_id, *id, "event process id in `{id}`");
            let text = event.payload["text"].as_str().unwrap_or_default();
            ensure!(text.starts_with(&format!("{id}-")), "`{id}` holds another process's event: {text}");
        }
    }
    Ok(())
}

async fn thousand_waiters_are_answered_by_one_append(r: Reg) -> ScenarioResult {
    let id = "proc-crowd";
    setup(&r, standard(id)).await?;
    let mut waiters: Vec<_> = (0..1_000)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.wait_event_after(id, "note", 0).await })
        })
        .collect();
    ensure_pending("the first of 1,000 parked waiters", &mut waiters[0]).await?;
    ensure!(waiters.iter().all(|waiter| !waiter.is_finished()), "a waiter finished before any append");
    let appended = append(&r, id, note("for everyone")).await?;
    for (index, waiter) in waiters.into_iter().enumerate() {
        let event = join("one of 1,000 parked waiters", waiter).await?.ctx(format!("waiter {index}"))?;
        ensure_eq!(event, appended.event, "waiter {index} receives the appended event");
    }
    Ok(())
}

async fn many_await_process_waiters_all_receive_the_outcome(r: Reg) -> ScenarioResult {
    let id = "proc-crowd-await";
    setup(&r, standard(id)).await?;
    let mut waiters: Vec<_> = (0..200)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.await_process(id).await })
        })
        .collect();
    ensure_pending("the first of 200 await_process waiters", &mut waiters[0]).await?;
    let output = ProcessAwaitOutput::cancelled("stopped by test");
    r.complete_process(id, output.clone()).await.ctx("complete_process")?;
    for (index, waiter) in waiters.into_iter().enumerate() {
        let awaited = join("one of 200 await_process waiters", waiter).await?.ctx(format!("await_process {index}"))?;
        ensure_eq!(awaited, output, "await_process waiter {index}");
    }
    Ok(())
}

async fn append_does_not_wake_waiters_of_other_processes(r: Reg) -> ScenarioResult {
    for id in ["proc-iso-1", "proc-iso-2", "proc-iso-3"] {
        setup(&r, standard(id)).await?;
    }
    let spawn_wait = |id: &'static str| {
        let r = r.clone();
        tokio::spawn(async move { r.wait_event_after(id, "note", 0).await })
    };
    let spawn_await = |id: &'static str| {
        let r = r.clone();
        tokio::spawn(async move { r.await_process(id).await })
    };
    let mut wait_2 = spawn_wait("proc-iso-2");
    let mut await_3 = spawn_await("proc-iso-3");
    let mut wait_3 = spawn_wait("proc-iso-3");
    let wait_1 = spawn_wait("proc-iso-1");
    let await_1 = spawn_await("proc-iso-1");
    ensure_pending("waiter on proc-iso-2", &mut wait_2).await?;
    append(&r, "proc-iso-1", note("one")).await?;
    r.complete_process("proc-iso-1", ProcessAwaitOutput::success(json!(1))).await.ctx("complete proc-iso-1")?;
    let event = join("waiter on proc-iso-1", wait_1).await?.ctx("wait on proc-iso-1")?;
    ensure_eq!(event.process_id, "proc-iso-1", "event of the proc-iso-1 waiter");
    join("await on proc-iso-1", await_1).await?.ctx("await on proc-iso-1")?;
    ensure_pending("waiter on proc-iso-2 after proc-iso-1 events", &mut wait_2).await?;
    ensure_pending("await_process on proc-iso-3 after proc-iso-1 events", &mut await_3).await?;
    ensure_pending("waiter on proc-iso-3 after proc-iso-1 events", &mut wait_3).await?;
    let appended = append(&r, "proc-iso-2", note("two")).await?;
    let event = join("waiter on proc-iso-2", wait_2).await?.ctx("wait on proc-iso-2")?;
    ensure_eq!(event, appended.event, "the proc-iso-2 waiter gets its own event");
    ensure_pending("await_process on proc-iso-3 after proc-iso-2 events", &mut await_3).await?;
    ensure_pending("waiter on proc-iso-3 after proc-iso-2 events", &mut wait_3).await?;
    r.complete_process("proc-iso-3", ProcessAwaitOutput::success(json!(3))).await.ctx("complete proc-iso-3")?;
    let output = join("await on proc-iso-3", await_3).await?.ctx("await on proc-iso-3")?;
    ensure_eq!(output, ProcessAwaitOutput::success(json!(3)), "proc-iso-3 outcome");
    ensure_pending("note waiter on proc-iso-3 after its completion", &mut wait_3).await?;
    let appended = append(&r, "proc-iso-3", note("three")).await?;
    let event = join("waiter on proc-iso-3", wait_3).await?.ctx("wait on proc-iso-3")?;
    ensure_eq!(event, appended.event, "the proc-iso-3 waiter gets its own event");
    Ok(())
}
