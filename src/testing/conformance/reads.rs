//! Reads of the log, and wake acknowledgements.
//!
//! Pins the rules for `events_after`, `count_events_through`,
//! `recent_events`, `wake_events_after` and `ack_wake` in section 4 of the
//! specification: later events in ascending order, counts of one type up to
//! a sequence, the last `limit` events in ascending order, the wake events
//! not yet acked. `ack_wake` is idempotent, refuses a sequence beyond the
//! log, and its acks survive the deletion of a session's state.

use serde_json::json;

use crate::events::ProcessEvent;
use crate::model::SessionScope;

use super::support::{
    alert, append, ensure, ensure_eq, ensure_names, expect_err, label, log, note, scenario_list, sequences, setup,
    standard, Ctx, Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        events_after_returns_later_events_ascending,
        count_events_through_counts_one_type_up_to_sequence,
        recent_events_returns_last_events_ascending,
        wake_events_after_lists_unacked_wake_events_only,
        ack_wake_is_idempotent,
        ack_wake_beyond_the_log_is_an_error,
        acks_survive_session_deletion,
    ]
}

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
