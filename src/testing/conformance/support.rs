//! What every scenario file shares: the assertion macros, the helpers that
//! turn registry errors, timeouts and parked tasks into scenario failures,
//! and the fixtures (registrations, event types, requests) the scenarios
//! build on.
//!
//! A failed check never panics: `ensure!`, `ensure_eq!` and `ensure_err!`
//! return `Err(message)` from the scenario, so [`run`](super::run) can name
//! the scenario and go on with the next one.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::error::RegistryError;
use crate::events::{
    ProcessEvent, ProcessEventAppendRequest, ProcessEventAppendResult, ProcessEventType, ProcessValueSelector,
    ProcessWakeSpec, COMPLETED,
};
use crate::model::{
    ProcessExternalRef, ProcessHandleDescriptor, ProcessInput, ProcessListFilter, ProcessRecord, ProcessRegistration,
    ProcessStatusFilter, WaitKind, WaitState,
};
use crate::registry::ProcessRegistry;

use super::ScenarioResult;

/// How long a call that should complete (a woken waiter, a join) may take
/// inside a scenario before the scenario fails naming it.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a parked waiter is watched to confirm it is still parked.
const PARK_PROBE: Duration = Duration::from_millis(50);

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

pub(super) use ensure;
pub(super) use ensure_eq;
pub(super) use ensure_err;

/// The error of `result`, which must be `Err` (of any kind).
pub(super) fn expect_err<T: fmt::Debug>(result: Result<T, RegistryError>, what: &str) -> Result<RegistryError, String> {
    match result {
        Ok(value) => Err(format!("{what}: expected an error, got Ok({value:?})")),
        Err(err) => Ok(err),
    }
}

/// Turns a registry error into a scenario failure naming the call.
pub(super) trait Ctx<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T, String>;
}

impl<T> Ctx<T> for Result<T, RegistryError> {
    fn ctx(self, what: impl fmt::Display) -> Result<T, String> {
        self.map_err(|err| format!("{what}: unexpected error {err:?} ({err})"))
    }
}

/// The error must name `process_id` in its message (and in `process_id()`).
pub(super) fn ensure_names(err: &RegistryError, process_id: &str, what: &str) -> ScenarioResult {
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
pub(super) async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(RESOLVE_TIMEOUT, future)
        .await
        .map_err(|_| format!("{what}: did not complete within {RESOLVE_TIMEOUT:?} (lost wakeup?)"))
}

/// Joins a spawned task, within [`RESOLVE_TIMEOUT`].
pub(super) async fn join<T>(what: &str, handle: JoinHandle<T>) -> Result<T, String> {
    match within(what, handle).await? {
        Ok(value) => Ok(value),
        Err(err) => Err(format!("{what}: task failed: {err}")),
    }
}

/// The task must still be running: it must not finish after yielding, nor
/// within [`PARK_PROBE`].
pub(super) async fn ensure_pending<T>(what: &str, handle: &mut JoinHandle<T>) -> ScenarioResult {
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
pub(super) async fn ensure_parks<T: fmt::Debug>(what: &str, future: impl Future<Output = T>) -> ScenarioResult {
    match tokio::time::timeout(PARK_PROBE, future).await {
        Err(_elapsed) => Ok(()),
        Ok(value) => Err(format!("{what}: returned {value:?}, but it should have parked")),
    }
}

// ---------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------

pub(super) type Reg = Arc<dyn ProcessRegistry>;

/// A lease ttl no scenario outlives (60 s).
pub(super) const LONG_TTL: u64 = 60_000;

pub(super) fn registration(id: &str) -> ProcessRegistration {
    ProcessRegistration::new(id, ProcessInput::definition("job", Map::new()))
}

pub(super) fn pointer(path: &str) -> ProcessValueSelector {
    ProcessValueSelector::Pointer(path.to_owned())
}

/// `note`: plain, `{text?: string, count?: integer, items?: [integer]}`.
pub(super) fn note_type() -> ProcessEventType {
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
pub(super) fn alert_type() -> ProcessEventType {
    ProcessEventType::new(
        "alert",
        json!({"type": "object", "properties": {"msg": {"type": "string"}}, "required": ["msg"]}),
    )
    .with_wake(ProcessWakeSpec::new(pointer("/msg")))
}

/// An event type accepting any payload that wakes per `spec`.
pub(super) fn wake_type(name: &str, spec: ProcessWakeSpec) -> ProcessEventType {
    ProcessEventType::new(name, json!({})).with_wake(spec)
}

/// The registration most scenarios use: core types plus `note` and `alert`.
pub(super) fn standard(id: &str) -> ProcessRegistration {
    registration(id).with_extra_event_types(vec![note_type(), alert_type()])
}

pub(super) fn note(text: &str) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("note", json!({ "text": text }))
}

pub(super) fn alert(msg: &str) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new("alert", json!({ "msg": msg }))
}

/// A `process.completed` append carrying `await_output`, with replay key `key`.
pub(super) fn completed(key: &str, await_output: Value) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new(COMPLETED, json!({ "await_output": await_output })).with_replay_key(key)
}

pub(super) fn signal_wait(name: &str) -> WaitState {
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

pub(super) fn external_ref(id: &str) -> ProcessExternalRef {
    ProcessExternalRef { backend: "queue".to_owned(), id: id.to_owned(), metadata: Some(json!({"attempt": 1})) }
}

pub(super) fn label(text: &str) -> ProcessHandleDescriptor {
    ProcessHandleDescriptor { kind: Some("monitor".to_owned()), label: Some(text.to_owned()) }
}

pub(super) fn status_filter(status: ProcessStatusFilter) -> ProcessListFilter {
    ProcessListFilter { status, ..ProcessListFilter::default() }
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `wake:` + SHA-256 hex of the JSON of `[target_scope_id, dedupe_key]`,
/// computed independently of the crate's hashing module.
pub(super) fn expected_wake_id(target_scope_id: &str, dedupe_key: &str) -> String {
    let text = json!([target_scope_id, dedupe_key]).to_string();
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("wake:{hex}")
}

pub(super) fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

pub(super) fn sequences(events: &[ProcessEvent]) -> Vec<u64> {
    events.iter().map(|event| event.sequence).collect()
}

pub(super) fn ids(records: &[ProcessRecord]) -> Vec<String> {
    records.iter().map(|record| record.id.clone()).collect()
}

pub(super) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

pub(super) async fn setup(registry: &Reg, registration: ProcessRegistration) -> Result<ProcessRecord, String> {
    let id = registration.id.clone();
    registry.register_process(registration).await.ctx(format!("register `{id}`"))
}

pub(super) async fn append(
    registry: &Reg,
    id: &str,
    request: ProcessEventAppendRequest,
) -> Result<ProcessEventAppendResult, String> {
    let what = format!("append `{}` to `{id}`", request.event_type);
    registry.append_event(id, request).await.ctx(what)
}

pub(super) async fn log(registry: &Reg, id: &str) -> Result<Vec<ProcessEvent>, String> {
    registry.events_after(id, 0).await.ctx(format!("events_after(`{id}`, 0)"))
}

pub(super) async fn record(registry: &Reg, id: &str) -> Result<ProcessRecord, String> {
    registry.get_process(id).await.ok_or_else(|| format!("get_process(`{id}`) returned None for a registered process"))
}

pub(super) async fn wake_input(
    registry: &Reg,
    id: &str,
    event_type: &str,
    payload: Value,
) -> Result<Option<String>, String> {
    let result = append(registry, id, ProcessEventAppendRequest::new(event_type, payload)).await?;
    Ok(result.event.semantics.wake.map(|wake| wake.input))
}

/// `scenario_list![a, b, ...]`: a [`Scenario`](super::Scenario) per scenario function, named
/// after it, in the order given. Each section file lists its own.
macro_rules! scenario_list {
    ($($name:ident),* $(,)?) => {
        vec![$($crate::testing::conformance::Scenario {
            name: stringify!($name),
            run: |registry| Box::pin($name(registry)),
        }),*]
    };
}

pub(super) use scenario_list;
