//! Concurrency: the rules hold under racing callers.
//!
//! Racing appends get gapless, unique sequences; racing registrations of one
//! id end in one record (and conflicting ones in one registration); racing
//! replays, racing `complete_process` calls with one outcome and racing
//! lease claims each commit once. Appends on many processes stay
//! independent, one append answers a thousand parked waiters, one completion
//! answers every `await_process` caller, and no commit wakes a waiter of
//! another process.

use std::collections::BTreeMap;

use serde_json::json;

use crate::error::RegistryError;
use crate::events::ProcessAwaitOutput;
use crate::model::ProcessListFilter;

use super::support::{
    append, ensure, ensure_eq, ensure_pending, ids, join, log, note, scenario_list, sequences, setup, standard,
    strings, Ctx, Reg, LONG_TTL,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
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
