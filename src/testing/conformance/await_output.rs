//! Terminal events: how the await output is materialized.
//!
//! Pins the terminal rule of step 6 of `append_event` in section 4 of the
//! specification. A selected value that parses as an await output is used as
//! it is; any other value is wrapped by the terminal state (`Completed` ->
//! `Success` with the value, `Failed` -> `Failure` with code
//! `process_failed`, `Cancelled` -> `Cancelled`, the message being the value
//! as a string and `raw` the value); a `Completed` spec without a selector
//! uses the whole payload. Every scenario checks the output in three places:
//! the event's semantics, the record's status, and `await_process`.

use serde_json::json;

use crate::events::{
    ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessTerminalSemantics, ProcessTerminalSpec,
    ProcessTerminalState, CANCELLED, FAILED,
};
use crate::model::ProcessStatus;

use super::support::{append, completed, ensure_eq, record, scenario_list, setup, standard, within, Ctx, Reg};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        terminal_output_that_parses_as_await_output_is_used_as_is,
        terminal_completed_wraps_other_values_as_success,
        terminal_failed_wraps_value_as_process_failed,
        terminal_cancelled_wraps_value_as_cancelled,
        terminal_completed_without_selector_uses_whole_payload,
    ]
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
