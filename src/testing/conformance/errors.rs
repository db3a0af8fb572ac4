//! Errors and bad input.
//!
//! Pins the opening rule of section 4 of the specification (an unknown
//! process id is an error everywhere it is named, except `get_process` and
//! `revoke_handle`) and the last rule of section 5 (bad input gets a typed
//! error that names the process, never a panic, and the process stays
//! usable: a valid append after each refused call still gets the next
//! sequence).

use serde_json::json;

use crate::error::RegistryError;
use crate::events::{ProcessAwaitOutput, ProcessEventAppendRequest, COMPLETED, FAILED};
use crate::model::{
    ProcessLease, ProcessLeaseCompletion, ProcessListFilter, ProcessStatus, SessionScope, PROCESS_LEASE_SCHEMA_VERSION,
};

use super::support::{
    append, completed, ensure, ensure_eq, ensure_err, ensure_names, expect_err, external_ref, ids, label, log, note,
    record, scenario_list, sequences, setup, signal_wait, standard, strings, within, Ctx, Reg, LONG_TTL,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        unknown_process_is_an_error_everywhere_it_is_named,
        every_error_names_the_process_id,
        bad_input_leaves_the_process_usable,
        deeply_nested_payload_never_panics,
        nul_characters_in_ids_and_keys_are_refused,
    ]
}

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

/// Ids and keys are text every store can keep: one with a NUL character is
/// refused with `ContainsNul` before anything is written, on every store
/// (a shared store's batch never sees it), and the process stays usable.
async fn nul_characters_in_ids_and_keys_are_refused(r: Reg) -> ScenarioResult {
    let id = "proc-nul";
    setup(&r, standard(id)).await?;
    let refused = |what: &str, result: Result<String, RegistryError>| match result {
        Err(RegistryError::ContainsNul { .. }) => Ok(()),
        other => Err(format!("{what}: expected ContainsNul, got {other:?}")),
    };
    refused("a process id", r.register_process(standard("proc\0nul")).await.map(|record| format!("{record:?}")))?;
    refused(
        "a replay key",
        r.append_event(id, note("x").with_replay_key("key\0")).await.map(|appended| format!("{appended:?}")),
    )?;
    refused(
        "a session id",
        r.grant_handle(&SessionScope::new("sess\0ion"), id, label("x")).await.map(|grant| format!("{grant:?}")),
    )?;
    refused("a lease owner", r.claim_process_lease(id, "owner\0", LONG_TTL).await.map(|lease| format!("{lease:?}")))?;
    ensure!(log(&r, id).await?.is_empty(), "a refused append was committed");
    ensure_eq!(append(&r, id, note("after")).await?.event.sequence, 1, "a valid append after the refusals");
    Ok(())
}
