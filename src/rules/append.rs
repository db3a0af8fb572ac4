//! The append steps of the spec, as one planning function.
//!
//! [`plan_append`] runs steps 2-9 of an append against a read-only view of
//! one process and returns either "replay the original event" or the exact
//! change to commit. It cannot change anything itself, so an error at any
//! step leaves the process as it was; the process actor commits a plan with
//! infallible pushes and inserts only. Step 1 (limits and the payload hash)
//! runs before planning: [`check_and_hash_payload`], in two halves that
//! may run on different threads ([`check_request`], [`hash_checked`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::events::{
    InvocationScope, InvocationSubject, ProcessEvent, ProcessEventAppendRequest, ProcessEventInvocation,
    ProcessTerminalState, ProcessWakeDelivery, CANCEL_REQUESTED,
};
use crate::model::{CausalRef, ProcessRecord, ProcessStatus, SessionScope};
use crate::rules::hashing::{payload_hash, wake_id};
use crate::rules::limits::{limit_exceeded, truncated, Limits};
use crate::rules::schema::{self, CompiledSchema};
use crate::rules::scope::check_scope;
use crate::rules::semantics::{self, SelectError};

/// What the replay index remembers per replay key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayEntry {
    /// The sequence of the event the key committed.
    pub sequence: u64,
    /// The payload hash of that event's request.
    pub payload_hash: String,
}

/// Step 1: bounds the request and returns its payload hash (SHA-256 of the
/// canonical JSON of `[event_type, payload]`): [`check_request`], then
/// [`hash_checked`].
pub fn check_and_hash_payload(
    limits: &Limits,
    process_id: &str,
    request: &ProcessEventAppendRequest,
) -> Result<String, RegistryError> {
    check_request(limits, process_id, request)?;
    hash_checked(limits, process_id, request)
}

/// [`check_and_hash_payload`] for one request of a batch: also adds its
/// payload's canonical bytes to `batch_bytes`, the batch's so far, and
/// refuses the batch once they pass
/// [`Limits::max_batch_bytes`](crate::Limits::max_batch_bytes).
pub fn check_and_hash_batched(
    limits: &Limits,
    process_id: &str,
    request: &ProcessEventAppendRequest,
    batch_bytes: &mut usize,
) -> Result<String, RegistryError> {
    check_request(limits, process_id, request)?;
    let (hash, payload_bytes) = hash_measured(limits, process_id, request)?;
    *batch_bytes = batch_bytes.saturating_add(payload_bytes);
    limits.check_batch_bytes(process_id, *batch_bytes)?;
    Ok(hash)
}

/// Step 1's bounds that need no serialization: the ids, the replay key,
/// the wake target scope (one whose id could be another scope's is refused,
/// [`crate::rules::scope`]) and the payload's depth. O(payload), no
/// allocation. Once they pass, the request can be dropped and hashed
/// without deep recursion.
pub fn check_request(
    limits: &Limits,
    process_id: &str,
    request: &ProcessEventAppendRequest,
) -> Result<(), RegistryError> {
    limits.check_id(process_id, "process id bytes", process_id)?;
    limits.check_id(process_id, "event type bytes", &request.event_type)?;
    if let Some(key) = request.replay_key() {
        limits.check_replay_key(process_id, key)?;
    }
    if let Some(scope) = &request.wake_target_scope {
        check_scope(limits, process_id, scope)?;
    }
    limits.check_depth(process_id, "payload depth", &request.payload)
}

/// The rest of step 1, on a request [`check_request`] passed: the payload
/// hash, and the bound on the payload's canonical bytes that hashing
/// measures. O(payload).
pub fn hash_checked(
    limits: &Limits,
    process_id: &str,
    request: &ProcessEventAppendRequest,
) -> Result<String, RegistryError> {
    hash_measured(limits, process_id, request).map(|(hash, _)| hash)
}

/// [`hash_checked`] with the payload's canonical bytes it measured.
fn hash_measured(
    limits: &Limits,
    process_id: &str,
    request: &ProcessEventAppendRequest,
) -> Result<(String, usize), RegistryError> {
    let (hash, payload_bytes) = payload_hash(&request.event_type, &request.payload);
    limits.check_payload_bytes(process_id, payload_bytes)?;
    Ok((hash, payload_bytes))
}

/// The parts of one process an append plan reads.
#[derive(Clone, Copy, Debug)]
pub struct AppendView<'a> {
    /// The current record.
    pub record: &'a ProcessRecord,
    /// The last committed sequence (0 for an empty log).
    pub last_sequence: u64,
    /// Compiled payload schemas by event type.
    pub schemas: &'a HashMap<String, CompiledSchema>,
    /// The replay entry for the request's key, when the key was used before.
    pub replayed: Option<&'a ReplayEntry>,
    /// The registry's input limits (materialization is bounded by
    /// `max_template_bytes`).
    pub limits: &'a Limits,
}

/// What an append resolves to.
#[derive(Clone, Debug)]
pub enum AppendPlan {
    /// The replay key was used for an equal payload: return that event.
    Replay {
        /// Its sequence.
        sequence: u64,
    },
    /// Commit a new event.
    Commit(Box<PlannedEvent>),
}

/// A new event and every change that commits with it.
#[derive(Clone, Debug)]
pub struct PlannedEvent {
    /// The event, sequenced, stamped and materialized.
    pub event: ProcessEvent,
    /// The replay index entry to add.
    pub replay: Option<(String, ReplayEntry)>,
    /// The record after the event (`updated_at_ms`, terminal status), or
    /// `None` when it is the record the event was planned on: planned in
    /// the millisecond of the last change, and not terminal. Then nothing
    /// is copied, which is the common case for a fast appender and for
    /// every event of a batch but the first.
    pub record: Option<ProcessRecord>,
}

impl PlannedEvent {
    /// The record after the event, given the one it was planned on.
    #[cfg(any(test, feature = "testing"))]
    pub fn record_after<'a>(&'a self, planned_on: &'a ProcessRecord) -> &'a ProcessRecord {
        self.record.as_ref().unwrap_or(planned_on)
    }
}

/// Steps 2-8 of an append.
pub fn plan_append(
    view: AppendView<'_>,
    request: ProcessEventAppendRequest,
    payload_hash: String,
    now_ms: u64,
) -> Result<AppendPlan, RegistryError> {
    let record = view.record;
    let process_id = record.id.as_str();
    // 2. Replay.
    if let (Some(key), Some(entry)) = (request.replay_key(), view.replayed) {
        if entry.payload_hash == payload_hash {
            return Ok(AppendPlan::Replay { sequence: entry.sequence });
        }
        return Err(RegistryError::ReplayConflict { process_id: process_id.to_owned(), replay_key: key.to_owned() });
    }
    // 3. Declared type.
    let declared = record.event_type(&request.event_type).ok_or_else(|| RegistryError::UndeclaredEventType {
        process_id: process_id.to_owned(),
        event_type: truncated(&request.event_type),
    })?;
    // 4. Required replay keys.
    let needs_key = declared.semantics.terminal.is_some() || request.event_type == CANCEL_REQUESTED;
    if needs_key && request.replay_key().is_none() {
        return Err(RegistryError::MissingReplayKey {
            process_id: process_id.to_owned(),
            event_type: request.event_type.clone(),
        });
    }
    // 5. Payload schema.
    let invalid = |path: String, message: String| RegistryError::InvalidPayload {
        process_id: process_id.to_owned(),
        event_type: request.event_type.clone(),
        path,
        message,
    };
    let compiled = view
        .schemas
        .get(&request.event_type)
        .ok_or_else(|| invalid(String::new(), "no compiled schema for the declared type".to_owned()))?;
    schema::validate(compiled, &request.payload).map_err(|(path, message)| invalid(path, message))?;
    // 6. Semantics.
    let sequence = view.last_sequence.saturating_add(1);
    let max_template_bytes = view.limits.max_template_bytes;
    let materialized =
        semantics::materialize(&declared.semantics, process_id, sequence, &request.payload, max_template_bytes)
            .map_err(|err| match err {
                SelectError::Unmatched(unmatched) => {
                    invalid(unmatched.pointer, "selector pointer matched nothing".to_owned())
                }
                SelectError::TooLarge { limit } => limit_exceeded(process_id, "template bytes", limit),
            })?;
    // 7. Terminal twice.
    if materialized.terminal.is_some() && record.is_terminal() {
        return Err(RegistryError::AlreadyTerminal { process_id: process_id.to_owned() });
    }
    // 8. Sequence, time, invocation; the record after the event (a copy
    // only when something in it changes).
    let next = (record.updated_at_ms != now_ms || materialized.terminal.is_some()).then(|| {
        let mut next = record.clone();
        next.updated_at_ms = now_ms;
        if let Some(terminal) = &materialized.terminal {
            let await_output = terminal.await_output.clone();
            next.status = match terminal.state {
                ProcessTerminalState::Completed => ProcessStatus::Completed { await_output },
                ProcessTerminalState::Failed => ProcessStatus::Failed { await_output },
                ProcessTerminalState::Cancelled => ProcessStatus::Cancelled { await_output },
            };
            next.wait = None;
        }
        next
    });
    let replay_key = request.replay.filter(|key| !key.is_empty());
    let event = ProcessEvent {
        process_id: process_id.to_owned(),
        sequence,
        invocation: invocation(process_id, sequence, &request.event_type, replay_key.clone()),
        event_type: request.event_type,
        payload: request.payload,
        semantics: materialized,
        occurred_at_ms: now_ms,
    };
    let replay = replay_key.map(|key| (key, ReplayEntry { sequence, payload_hash }));
    Ok(AppendPlan::Commit(Box::new(PlannedEvent { event, replay, record: next })))
}

/// One request of a batch, as planned by [`plan_batch`].
#[derive(Clone, Debug)]
pub enum BatchItem {
    /// Its replay key names an event already in the log, or planned
    /// earlier in the same batch, for an equal payload: answer with it.
    Replay {
        /// The event's sequence.
        sequence: u64,
    },
    /// A new event.
    Commit(Box<PlannedEvent>),
}

/// Plans `requests` in order as one change (the batch append): each is
/// planned by [`plan_append`] on the record and log as the requests before
/// it left them, and its replay key is looked up among the batch's earlier
/// requests, then in the process's index (`replayed`). The first refusal
/// refuses the whole batch, so a batch commits all of its new events or
/// none. O(requests + their payloads).
pub fn plan_batch<'a>(
    record: &ProcessRecord,
    last_sequence: u64,
    schemas: &HashMap<String, CompiledSchema>,
    limits: &Limits,
    replayed: impl Fn(&str) -> Option<&'a ReplayEntry>,
    requests: Vec<(ProcessEventAppendRequest, String)>,
    now_ms: u64,
) -> Result<Vec<BatchItem>, RegistryError> {
    let mut last = last_sequence;
    let mut keys: HashMap<String, ReplayEntry> = HashMap::new();
    let mut items: Vec<BatchItem> = Vec::with_capacity(requests.len());
    // The item whose record the next request is planned on (none yet: the
    // process's own), so no record is copied beyond the ones planned
    // events carry (at most the first and a terminal one: the batch is
    // planned in one millisecond).
    let mut latest: Option<usize> = None;
    for (request, payload_hash) in requests {
        let entry = request.replay_key().and_then(|key| keys.get(key).cloned().or_else(|| replayed(key).cloned()));
        let current = match latest.and_then(|index| items.get(index)) {
            Some(BatchItem::Commit(planned)) => planned.record.as_ref().unwrap_or(record),
            _ => record,
        };
        let view = AppendView { record: current, last_sequence: last, schemas, replayed: entry.as_ref(), limits };
        match plan_append(view, request, payload_hash, now_ms)? {
            AppendPlan::Replay { sequence } => items.push(BatchItem::Replay { sequence }),
            AppendPlan::Commit(planned) => {
                last = planned.event.sequence;
                if let Some((key, entry)) = &planned.replay {
                    keys.insert(key.clone(), entry.clone());
                }
                if planned.record.is_some() {
                    latest = Some(items.len());
                }
                items.push(BatchItem::Commit(planned));
            }
        }
    }
    Ok(items)
}

/// The lineage stamped on event `sequence` of `process_id` (step 8): it
/// follows from the event itself, so a store need not keep it.
pub fn invocation(
    process_id: &str,
    sequence: u64,
    event_type: &str,
    replay_key: Option<String>,
) -> ProcessEventInvocation {
    ProcessEventInvocation {
        scope: InvocationScope::Runtime,
        subject: InvocationSubject::ProcessEvent {
            process_id: process_id.to_owned(),
            sequence,
            event_type: event_type.to_owned(),
        },
        caused_by: CausalRef::Process { process_id: process_id.to_owned() },
        replay_key,
    }
}

/// Step 9: the wake delivery of `event` for the request's target (else the
/// record's `wake_target`), when the event materialized a wake.
pub fn wake_delivery(
    record: &ProcessRecord,
    event: &ProcessEvent,
    request_target: Option<&SessionScope>,
) -> Option<ProcessWakeDelivery> {
    let wake = event.semantics.wake.as_ref()?;
    let target = request_target.or(record.wake_target.as_ref())?;
    let target_scope_id = target.id().0;
    Some(ProcessWakeDelivery {
        wake_id: wake_id(&target_scope_id, &wake.dedupe_key),
        target_session_id: target.session_id.clone(),
        target_scope_id,
        process_id: event.process_id.clone(),
        sequence: event.sequence,
        event_type: event.event_type.clone(),
        event_invocation: event.invocation.clone(),
        process_caused_by: record.provenance.caused_by.clone(),
        dedupe_key: wake.dedupe_key.clone(),
        input: wake.input.clone(),
        created_at_ms: event.occurred_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ProcessEventType, ProcessValueSelector, ProcessWakeSpec, COMPLETED};
    use crate::model::{ProcessInput, ProcessRegistration};
    use crate::rules::registration::{no_args, prepare_registration, PreparedRegistration};
    use crate::rules::schema::CompileEach;
    use serde_json::json;

    fn prepared() -> PreparedRegistration {
        let note = ProcessEventType::new(
            "note",
            json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        )
        .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Pointer("/text".into())));
        let registration = ProcessRegistration::new("p", ProcessInput::definition("job", no_args()))
            .with_extra_event_types(vec![note])
            .with_wake_target(SessionScope::new("s"));
        prepare_registration(registration, &Limits::default(), &CompileEach).unwrap()
    }

    fn plan(
        prepared: &PreparedRegistration,
        record: &ProcessRecord,
        replayed: Option<&ReplayEntry>,
        request: ProcessEventAppendRequest,
    ) -> Result<AppendPlan, RegistryError> {
        let hash = check_and_hash_payload(&Limits::default(), "p", &request)?;
        let view =
            AppendView { record, last_sequence: 3, schemas: &prepared.schemas, replayed, limits: &Limits::default() };
        plan_append(view, request, hash, 99)
    }

    fn committed(plan: AppendPlan) -> PlannedEvent {
        match plan {
            AppendPlan::Commit(planned) => *planned,
            AppendPlan::Replay { .. } => panic!("expected a commit"),
        }
    }

    #[test]
    fn an_append_in_the_millisecond_of_the_last_change_copies_no_record() {
        let prepared = prepared();
        let mut record = prepared.new_record(1);
        let note = || ProcessEventAppendRequest::new("note", json!({"text": "hi"}));
        let later = committed(plan(&prepared, &record, None, note()).unwrap());
        assert_eq!(later.record.as_ref().map(|after| after.updated_at_ms), Some(99), "a later millisecond stamps it");
        record.updated_at_ms = 99;
        let same = committed(plan(&prepared, &record, None, note()).unwrap());
        assert!(same.record.is_none(), "nothing in the record changes");
        assert_eq!(same.record_after(&record), &record);
        let done = ProcessEventAppendRequest::new(COMPLETED, json!({"await_output": {"kind": "success", "value": 7}}))
            .with_replay_key("t");
        let terminal = committed(plan(&prepared, &record, None, done).unwrap());
        assert!(terminal.record.as_ref().is_some_and(ProcessRecord::is_terminal), "a terminal event always does");
    }

    #[test]
    fn a_valid_append_is_sequenced_stamped_and_materialized() {
        let prepared = prepared();
        let record = prepared.new_record(1);
        let planned = committed(
            plan(&prepared, &record, None, ProcessEventAppendRequest::new("note", json!({"text": "hi"}))).unwrap(),
        );
        assert_eq!(planned.event.sequence, 4);
        assert_eq!(planned.event.occurred_at_ms, 99);
        assert_eq!(planned.record_after(&record).updated_at_ms, 99);
        assert_eq!(planned.event.semantics.wake.as_ref().unwrap().input, "hi");
        assert_eq!(planned.event.invocation.caused_by, CausalRef::Process { process_id: "p".into() });
        let delivery = wake_delivery(planned.record_after(&record), &planned.event, None).unwrap();
        assert_eq!(delivery.target_scope_id, "session:s");
        assert_eq!(delivery.dedupe_key, "p:4");
        assert_eq!(delivery.wake_id, wake_id("session:s", "p:4"));
        let elsewhere = SessionScope::with_frame("t", "f");
        let redirected = wake_delivery(planned.record_after(&record), &planned.event, Some(&elsewhere)).unwrap();
        assert_eq!(redirected.target_scope_id, "session:t/frame:f");
    }

    #[test]
    fn replay_returns_the_original_or_conflicts() {
        let prepared = prepared();
        let record = prepared.new_record(1);
        let request = ProcessEventAppendRequest::new("note", json!({"text": "hi"})).with_replay_key("k");
        let hash = check_and_hash_payload(&Limits::default(), "p", &request).unwrap();
        let entry = ReplayEntry { sequence: 2, payload_hash: hash };
        assert!(matches!(plan(&prepared, &record, Some(&entry), request).unwrap(), AppendPlan::Replay { sequence: 2 }));
        let other = ProcessEventAppendRequest::new("note", json!({"text": "ho"})).with_replay_key("k");
        assert!(matches!(plan(&prepared, &record, Some(&entry), other), Err(RegistryError::ReplayConflict { .. })));
    }

    #[test]
    fn each_failing_step_has_its_error() {
        let prepared = prepared();
        let record = prepared.new_record(1);
        let undeclared = ProcessEventAppendRequest::new("nope", json!({}));
        assert!(matches!(plan(&prepared, &record, None, undeclared), Err(RegistryError::UndeclaredEventType { .. })));
        let unkeyed = ProcessEventAppendRequest::new(COMPLETED, json!({"await_output": 1}));
        assert!(matches!(plan(&prepared, &record, None, unkeyed), Err(RegistryError::MissingReplayKey { .. })));
        let empty_key = ProcessEventAppendRequest::new(CANCEL_REQUESTED, json!({})).with_replay_key("");
        assert!(matches!(plan(&prepared, &record, None, empty_key), Err(RegistryError::MissingReplayKey { .. })));
        let invalid = ProcessEventAppendRequest::new("note", json!({"text": 5}));
        match plan(&prepared, &record, None, invalid) {
            Err(RegistryError::InvalidPayload { path, .. }) => assert_eq!(path, "/text"),
            other => panic!("unexpected {other:?}"),
        }
        let no_output = ProcessEventAppendRequest::new(COMPLETED, json!({})).with_replay_key("t");
        match plan(&prepared, &record, None, no_output) {
            Err(RegistryError::InvalidPayload { path, .. }) => assert_eq!(path, "/await_output"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn terminal_events_set_status_clear_wait_and_refuse_a_second_terminal() {
        let prepared = prepared();
        let mut record = prepared.new_record(1);
        record.wait = Some(crate::model::WaitState {
            kind: crate::model::WaitKind::Signal {
                name: "n".into(),
                event_type: "note".into(),
                key: "k".into(),
                ordinal: 1,
            },
            since_ms: 1,
        });
        let done = ProcessEventAppendRequest::new(COMPLETED, json!({"await_output": {"kind": "success", "value": 7}}))
            .with_replay_key("t");
        let planned = committed(plan(&prepared, &record, None, done.clone()).unwrap());
        let after = planned.record_after(&record);
        assert!(after.is_terminal());
        assert!(after.wait.is_none());
        let again = done.with_replay_key("t2");
        assert!(matches!(plan(&prepared, after, None, again), Err(RegistryError::AlreadyTerminal { .. })));
        let note = ProcessEventAppendRequest::new("note", json!({"text": "after"}));
        assert!(plan(&prepared, after, None, note).is_ok(), "non-terminal events may follow");
    }

    #[test]
    fn oversized_and_deep_payloads_are_refused_before_hashing() {
        let limits = Limits { max_payload_bytes: 16, ..Limits::default() };
        let big = ProcessEventAppendRequest::new("note", json!({"text": "x".repeat(64)}));
        assert!(matches!(check_and_hash_payload(&limits, "p", &big), Err(RegistryError::LimitExceeded { .. })));
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let deep = ProcessEventAppendRequest::new("note", deep);
        assert!(matches!(
            check_and_hash_payload(&Limits::default(), "p", &deep),
            Err(RegistryError::LimitExceeded { .. })
        ));
    }
}
