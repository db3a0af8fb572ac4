//! Waiting: `wait_event_after` and `await_process` park until satisfied.
//!
//! Pins the rules for `wait_event_after` and `await_process` in section 4 of
//! the specification. An answer that already exists is returned at once;
//! otherwise the caller parks until the commit that satisfies it (checked
//! with a probe that must time out, never with a sleep), and events at or
//! below the requested sequence never answer it. Callers that give up, by
//! dropping the future or by having their task aborted, leave the registry
//! usable, and fresh waiters are still woken.

use serde_json::json;

use crate::error::RegistryError;
use crate::events::{ProcessAwaitOutput, ProcessEventAppendRequest, COMPLETED, FAILED};

use super::support::{
    alert, append, ensure_eq, ensure_parks, ensure_pending, join, note, scenario_list, setup, standard, within, Ctx,
    Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        wait_event_after_returns_existing_event_immediately,
        wait_event_after_parks_until_a_matching_append,
        wait_event_after_beyond_the_log_is_not_answered_by_earlier_sequences,
        await_process_parks_until_complete_process,
        await_process_returns_output_of_terminal_process_immediately,
        abandoned_waiters_leave_the_registry_usable,
        a_wait_for_a_terminal_event_that_cannot_come_is_refused,
    ]
}

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

/// A terminal process takes no further terminal event (spec step 7), so a
/// wait for one could only end at shutdown: it is refused with
/// `AlreadyTerminal`, whether it was parked when the process completed or
/// asked after. A terminal event already in the log still answers, and a
/// wait for a non-terminal type still parks.
async fn a_wait_for_a_terminal_event_that_cannot_come_is_refused(r: Reg) -> ScenarioResult {
    let id = "proc-wait-terminal";
    setup(&r, standard(id)).await?;
    let mut parked = {
        let r = r.clone();
        tokio::spawn(async move { r.wait_event_after(id, FAILED, 0).await })
    };
    ensure_pending("a wait for process.failed on a running process", &mut parked).await?;
    let done = r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx("complete_process")?;
    let completion = r.recent_events(id, 1).await.ctx("recent_events")?;
    let completed_at = completion.first().map(|event| event.sequence).ok_or("no completion event")?;
    let refused = |what: &str, answer: Result<_, RegistryError>| match answer {
        Err(RegistryError::AlreadyTerminal { .. }) => Ok(()),
        other => Err(format!("{what}: expected AlreadyTerminal, got {other:?}")),
    };
    refused("the parked wait for process.failed", join("the parked wait", parked).await?)?;
    refused("a wait for process.failed after completion", within("wait", r.wait_event_after(id, FAILED, 0)).await?)?;
    refused(
        "a wait for a second process.completed",
        within("wait", r.wait_event_after(id, COMPLETED, completed_at)).await?,
    )?;
    let first = within("wait", r.wait_event_after(id, COMPLETED, 0)).await?.ctx("the completion in the log")?;
    ensure_eq!(first.sequence, completed_at, "the completion answers a wait from before it");
    ensure_eq!(done.id, id, "the completed record");
    ensure_parks("a wait for a non-terminal event", r.wait_event_after(id, "note", completed_at)).await?;
    Ok(())
}
