//! `complete_process`: the terminal event it appends, and idempotence.
//!
//! Pins the rule for `complete_process` in section 4 of the specification:
//! it appends `process.completed`, `process.failed` or `process.cancelled`
//! with payload `{"await_output": output}` and replay key
//! `process:{p}:terminal:{event_type}`, and returns the record. Repeating the
//! call commits nothing more (and an equal hand-made append replays it); a
//! different outcome afterwards is an error.

use serde_json::json;

use crate::error::RegistryError;
use crate::events::{
    ProcessAwaitOutput, ProcessEventAppendRequest, ProcessTerminalState, CANCELLED, COMPLETED, FAILED,
};
use crate::model::ProcessStatus;

use super::support::{
    append, ensure_eq, ensure_err, ensure_names, log, note, record, scenario_list, sequences, setup, standard, to_json,
    Ctx, Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        complete_process_appends_terminal_event_with_deterministic_replay_key,
        complete_process_repeat_is_idempotent,
        complete_process_with_different_outcome_afterwards_errors,
    ]
}

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
