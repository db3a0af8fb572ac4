//! `append_event`: sequencing, stamping, replay keys and validation.
//!
//! Pins steps 2 to 5 and 8 of the rule for `append_event` in section 4 of
//! the specification. Sequences run 1, 2, 3, ... without gaps; each event is
//! stamped with its time, its invocation lineage and its replay key. A replay
//! key used again with an equal payload returns the original event and
//! appends nothing; with another payload or event type it is a replay
//! conflict. An undeclared event type is refused, terminal types and
//! `process.cancel_requested` need a non-empty replay key, and a payload that
//! breaks its type's schema is refused naming the failing path. A refused
//! append commits nothing.

use serde_json::json;

use crate::error::RegistryError;
use crate::events::{
    InvocationScope, InvocationSubject, ProcessEventAppendRequest, ProcessEventType, ProcessTerminalSpec,
    ProcessTerminalState, CANCEL_REQUESTED, COMPLETED, FAILED,
};
use crate::model::{CausalRef, ProcessStatus};

use super::support::{
    append, ensure, ensure_eq, ensure_err, ensure_names, log, note, record, scenario_list, sequences, setup, standard,
    Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        append_assigns_gapless_sequences_from_one,
        append_stamps_invocation_lineage_and_replay_key,
        append_replay_with_same_payload_returns_original_event,
        append_replay_with_different_payload_is_a_replay_conflict,
        append_undeclared_event_type_is_rejected,
        append_terminal_event_requires_non_empty_replay_key,
        append_cancel_requested_requires_non_empty_replay_key,
        append_schema_violation_reports_failing_path,
    ]
}

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
