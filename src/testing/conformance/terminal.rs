//! Terminal processes: one outcome, and what a terminal commit changes.
//!
//! Pins steps 7 and 10 of `append_event` in section 4 of the specification,
//! and the closing rule that non-terminal events may still be appended to a
//! terminal process. A second terminal event is refused (`AlreadyTerminal`)
//! while a replay of the first returns the original event; a terminal commit
//! clears the wait state; a repeated cancel request commits once, and one
//! with another reason is a new event.

use serde_json::json;

use crate::error::RegistryError;
use crate::events::{ProcessEventAppendRequest, CANCELLED, CANCEL_REQUESTED, FAILED};
use crate::model::{ProcessListFilter, ProcessStatus, ProcessStatusFilter};

use super::support::{
    append, completed, ensure, ensure_eq, ensure_err, ensure_names, ids, log, note, record, scenario_list, sequences,
    setup, signal_wait, standard, Ctx, Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        terminal_event_on_terminal_process_is_already_terminal,
        replayed_terminal_request_returns_original_event,
        non_terminal_events_are_allowed_after_terminal,
        terminal_event_clears_wait_state,
        cancel_requested_request_repeat_is_idempotent,
    ]
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
