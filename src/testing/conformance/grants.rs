//! Handle grants, and deleting a session's state.
//!
//! Pins the rule for grants in section 4 of the specification. Grants are
//! keyed by `SessionScope::id()`: granting to an unknown process fails, a
//! re-grant replaces the descriptor, a revoke removes the grant (and is a
//! no-op when there is none), and a transfer moves every named grant with
//! its descriptor or, if one is missing, nothing. The listings are sorted
//! (by process id, or by session id for `handle_grants_for_process`), carry
//! current records, and the live one leaves terminal processes out;
//! `has_handle_grant` is true only for a granted, existing process. Grant
//! changes never append events. `delete_session_process_state` removes the
//! grants of every frame of the session and reports the revoked count and
//! the orphaned and preserved non-terminal processes, sorted and
//! deduplicated.

use serde_json::json;

use crate::error::RegistryError;
use crate::events::ProcessAwaitOutput;
use crate::model::SessionScope;

use super::support::{
    append, ensure, ensure_eq, ensure_err, ensure_names, expect_err, label, log, note, scenario_list, setup, standard,
    strings, Ctx, Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        grant_handle_unknown_process_errors,
        grant_handle_regrant_replaces_descriptor,
        revoke_handle_removes_grant_and_is_noop_when_missing,
        transfer_handle_grants_moves_grants_keeping_descriptors,
        transfer_handle_grants_is_all_or_nothing,
        list_handle_grants_sorted_by_process_id_with_current_records,
        list_live_handle_grants_excludes_terminal_processes,
        has_handle_grant_only_for_granted_existing_process,
        handle_grants_for_process_sorted_by_session_id,
        grant_changes_never_append_events,
        delete_session_process_state_covers_every_frame_of_the_session,
        delete_session_reports_orphaned_and_preserved_sorted_deduped_non_terminal,
    ]
}

async fn grant_handle_unknown_process_errors(r: Reg) -> ScenarioResult {
    let scope = SessionScope::new("sess");
    let err = ensure_err!(
        r.grant_handle(&scope, "proc-ghost", label("x")).await,
        RegistryError::UnknownProcess { .. },
        "grant_handle of an unknown process"
    );
    ensure_names(&err, "proc-ghost", "grant of an unknown process")?;
    ensure!(r.list_handle_grants(&scope).await.ctx("list_handle_grants")?.is_empty(), "a failed grant was stored");
    Ok(())
}

async fn grant_handle_regrant_replaces_descriptor(r: Reg) -> ScenarioResult {
    let id = "proc-grant";
    setup(&r, standard(id)).await?;
    let scope = SessionScope::with_frame("sess", "frame");
    let grant = r.grant_handle(&scope, id, label("first")).await.ctx("grant_handle")?;
    ensure_eq!(grant.session_id, "sess", "grant session_id");
    ensure_eq!(grant.process_id, id, "grant process_id");
    ensure_eq!(grant.descriptor, label("first"), "grant descriptor");
    let regrant = r.grant_handle(&scope, id, label("second")).await.ctx("re-grant")?;
    ensure_eq!(regrant.descriptor, label("second"), "re-grant descriptor");
    let listed = r.list_handle_grants(&scope).await.ctx("list_handle_grants")?;
    ensure_eq!(listed.len(), 1, "a re-grant must not duplicate the grant");
    ensure_eq!(listed[0].0, regrant, "the listed grant carries the new descriptor");
    let for_process = r.handle_grants_for_process(id).await.ctx("handle_grants_for_process")?;
    ensure_eq!(for_process, vec![regrant], "handle_grants_for_process after re-grant");
    Ok(())
}

async fn revoke_handle_removes_grant_and_is_noop_when_missing(r: Reg) -> ScenarioResult {
    let id = "proc-revoke";
    setup(&r, standard(id)).await?;
    let scope = SessionScope::new("sess");
    r.revoke_handle(&scope, "proc-ghost").await.ctx("revoke_handle of an unknown process")?;
    r.revoke_handle(&scope, id).await.ctx("revoke_handle of a grant that does not exist")?;
    r.grant_handle(&scope, id, label("x")).await.ctx("grant_handle")?;
    ensure!(r.has_handle_grant(&scope, id).await.ctx("has_handle_grant")?, "granted");
    r.revoke_handle(&scope, id).await.ctx("revoke_handle")?;
    ensure!(!r.has_handle_grant(&scope, id).await.ctx("has_handle_grant")?, "revoked grant still present");
    ensure!(r.list_handle_grants(&scope).await.ctx("list_handle_grants")?.is_empty(), "revoked grant still listed");
    ensure!(
        r.handle_grants_for_process(id).await.ctx("handle_grants_for_process")?.is_empty(),
        "revoked grant in the process index"
    );
    r.revoke_handle(&scope, id).await.ctx("revoking twice")?;
    Ok(())
}

async fn transfer_handle_grants_moves_grants_keeping_descriptors(r: Reg) -> ScenarioResult {
    let from = SessionScope::new("sess-from");
    let to = SessionScope::with_frame("sess-to", "f");
    for id in ["proc-t1", "proc-t2", "proc-t3"] {
        setup(&r, standard(id)).await?;
        r.grant_handle(&from, id, label(id)).await.ctx(format!("grant `{id}`"))?;
    }
    r.transfer_handle_grants(&from, &to, &strings(&["proc-t1", "proc-t2"])).await.ctx("transfer_handle_grants")?;
    let moved = r.list_handle_grants(&to).await.ctx("list_handle_grants(to)")?;
    let moved: Vec<_> = moved.into_iter().map(|(grant, _)| grant).collect();
    ensure_eq!(moved.len(), 2, "grants in the target scope");
    for (grant, id) in moved.iter().zip(["proc-t1", "proc-t2"]) {
        ensure_eq!(grant.process_id, id, "moved grant process id");
        ensure_eq!(grant.session_id, "sess-to", "moved grant session id");
        ensure_eq!(grant.descriptor, label(id), "moved grant keeps its descriptor");
    }
    let left = r.list_handle_grants(&from).await.ctx("list_handle_grants(from)")?;
    let left: Vec<_> = left.into_iter().map(|(grant, _)| grant.process_id).collect();
    ensure_eq!(left, strings(&["proc-t3"]), "grants left in the source scope");
    r.transfer_handle_grants(&from, &to, &[]).await.ctx("transferring nothing")?;
    Ok(())
}

async fn transfer_handle_grants_is_all_or_nothing(r: Reg) -> ScenarioResult {
    let from = SessionScope::new("sess-from");
    let to = SessionScope::new("sess-to");
    for id in ["proc-a1", "proc-a2", "proc-a3"] {
        setup(&r, standard(id)).await?;
    }
    r.grant_handle(&from, "proc-a1", label("1")).await.ctx("grant a1")?;
    r.grant_handle(&from, "proc-a2", label("2")).await.ctx("grant a2")?;
    // proc-a3 exists but is not granted to `from`.
    let err = ensure_err!(
        r.transfer_handle_grants(&from, &to, &strings(&["proc-a1", "proc-a3", "proc-a2"])).await,
        RegistryError::HandleNotGranted { .. },
        "transfer including a process not granted to the source"
    );
    ensure_names(&err, "proc-a3", "transfer of an ungranted process")?;
    let err = expect_err(
        r.transfer_handle_grants(&from, &to, &strings(&["proc-a1", "proc-ghost"])).await,
        "transfer including an unknown process",
    )?;
    ensure_names(&err, "proc-ghost", "transfer of an unknown process")?;
    let left: Vec<_> =
        r.list_handle_grants(&from).await.ctx("list from")?.into_iter().map(|(g, _)| g.process_id).collect();
    ensure_eq!(left, strings(&["proc-a1", "proc-a2"]), "source grants after failed transfers (nothing moved)");
    ensure!(r.list_handle_grants(&to).await.ctx("list to")?.is_empty(), "a failed transfer moved grants");
    Ok(())
}

async fn list_handle_grants_sorted_by_process_id_with_current_records(r: Reg) -> ScenarioResult {
    let scope = SessionScope::new("sess");
    for id in ["proc-g3", "proc-g1", "proc-g2"] {
        setup(&r, standard(id)).await?;
        r.grant_handle(&scope, id, label(id)).await.ctx(format!("grant `{id}`"))?;
    }
    append(&r, "proc-g2", note("after grant")).await?;
    r.complete_process("proc-g3", ProcessAwaitOutput::success(json!(1))).await.ctx("complete g3")?;
    let listed = r.list_handle_grants(&scope).await.ctx("list_handle_grants")?;
    let listed_ids: Vec<_> = listed.iter().map(|(grant, _)| grant.process_id.clone()).collect();
    ensure_eq!(listed_ids, strings(&["proc-g1", "proc-g2", "proc-g3"]), "grants sorted by process id");
    for (grant, listed_record) in &listed {
        ensure_eq!(listed_record.id, grant.process_id, "entry record matches its grant");
        ensure_eq!(Some(listed_record.clone()), r.get_process(&grant.process_id).await, "entry record is current");
        ensure_eq!(grant.descriptor, label(&grant.process_id), "entry descriptor");
    }
    ensure!(
        r.list_handle_grants(&SessionScope::new("other")).await.ctx("list other")?.is_empty(),
        "another scope has no grants"
    );
    ensure!(
        r.list_handle_grants(&SessionScope::with_frame("sess", "f")).await.ctx("list frame")?.is_empty(),
        "a frame of the session is another scope"
    );
    Ok(())
}

async fn list_live_handle_grants_excludes_terminal_processes(r: Reg) -> ScenarioResult {
    let scope = SessionScope::new("sess");
    for id in ["proc-l1", "proc-l2", "proc-l3"] {
        setup(&r, standard(id)).await?;
        r.grant_handle(&scope, id, label(id)).await.ctx(format!("grant `{id}`"))?;
    }
    r.complete_process("proc-l2", ProcessAwaitOutput::cancelled("x")).await.ctx("complete l2")?;
    let live = r.list_live_handle_grants(&scope).await.ctx("list_live_handle_grants")?;
    let live_ids: Vec<_> = live.iter().map(|(grant, _)| grant.process_id.clone()).collect();
    ensure_eq!(live_ids, strings(&["proc-l1", "proc-l3"]), "live grants");
    ensure_eq!(r.list_handle_grants(&scope).await.ctx("list_handle_grants")?.len(), 3, "all grants still listed");
    Ok(())
}

async fn has_handle_grant_only_for_granted_existing_process(r: Reg) -> ScenarioResult {
    let id = "proc-has";
    setup(&r, standard(id)).await?;
    setup(&r, standard("proc-has-other")).await?;
    let scope = SessionScope::with_frame("sess", "f");
    r.grant_handle(&scope, id, label("x")).await.ctx("grant_handle")?;
    ensure!(r.has_handle_grant(&scope, id).await.ctx("has_handle_grant")?, "the granted process");
    ensure!(!r.has_handle_grant(&scope, "proc-has-other").await.ctx("has other")?, "an ungranted process");
    ensure!(
        !r.has_handle_grant(&SessionScope::new("sess"), id).await.ctx("has whole session")?,
        "the whole session is another scope"
    );
    ensure!(
        !r.has_handle_grant(&SessionScope::with_frame("sess", "g"), id).await.ctx("has other frame")?,
        "another frame"
    );
    match r.has_handle_grant(&scope, "proc-ghost").await {
        Ok(false) => {}
        Err(err @ RegistryError::UnknownProcess { .. }) => ensure_names(&err, "proc-ghost", "has_handle_grant")?,
        other => {
            return Err(format!(
                "has_handle_grant of an unknown process: expected Ok(false) or UnknownProcess, got {other:?}"
            ))
        }
    }
    Ok(())
}

async fn handle_grants_for_process_sorted_by_session_id(r: Reg) -> ScenarioResult {
    let id = "proc-by-session";
    setup(&r, standard(id)).await?;
    ensure!(r.handle_grants_for_process(id).await.ctx("no grants yet")?.is_empty(), "no grants yet");
    for session in ["zeta", "alpha", "mid"] {
        r.grant_handle(&SessionScope::new(session), id, label(session)).await.ctx(format!("grant to {session}"))?;
    }
    let grants = r.handle_grants_for_process(id).await.ctx("handle_grants_for_process")?;
    let sessions: Vec<_> = grants.iter().map(|grant| grant.session_id.clone()).collect();
    ensure_eq!(sessions, strings(&["alpha", "mid", "zeta"]), "grants sorted by session id");
    for grant in &grants {
        ensure_eq!(grant.process_id, id, "grant process id");
        ensure_eq!(grant.descriptor, label(&grant.session_id), "grant descriptor");
    }
    Ok(())
}

async fn grant_changes_never_append_events(r: Reg) -> ScenarioResult {
    let id = "proc-grant-events";
    setup(&r, standard(id).with_wake_target(SessionScope::new("a"))).await?;
    let (a, b) = (SessionScope::new("a"), SessionScope::with_frame("b", "f"));
    r.grant_handle(&a, id, label("1")).await.ctx("grant")?;
    r.grant_handle(&a, id, label("2")).await.ctx("re-grant")?;
    r.transfer_handle_grants(&a, &b, &strings(&[id])).await.ctx("transfer")?;
    r.grant_handle(&a, id, label("3")).await.ctx("grant again")?;
    r.revoke_handle(&a, id).await.ctx("revoke")?;
    r.delete_session_process_state("b").await.ctx("delete session")?;
    ensure!(log(&r, id).await?.is_empty(), "grant changes appended events");
    ensure!(r.wake_events_after(id, 0).await.ctx("wake_events_after")?.is_empty(), "grant changes produced wakes");
    Ok(())
}

async fn delete_session_process_state_covers_every_frame_of_the_session(r: Reg) -> ScenarioResult {
    for id in ["proc-d1", "proc-d2", "proc-d3", "proc-d4"] {
        setup(&r, standard(id)).await?;
    }
    let whole = SessionScope::new("s");
    let frame_one = SessionScope::with_frame("s", "f1");
    let frame_two = SessionScope::with_frame("s", "f2");
    let other = SessionScope::new("s2");
    let prefix = SessionScope::new("ss");
    r.grant_handle(&whole, "proc-d1", label("")).await.ctx("grant")?;
    r.grant_handle(&frame_one, "proc-d2", label("")).await.ctx("grant")?;
    r.grant_handle(&frame_two, "proc-d3", label("")).await.ctx("grant")?;
    r.grant_handle(&frame_two, "proc-d1", label("")).await.ctx("grant")?;
    r.grant_handle(&other, "proc-d4", label("")).await.ctx("grant")?;
    r.grant_handle(&prefix, "proc-d4", label("")).await.ctx("grant")?;
    let report = r.delete_session_process_state("s").await.ctx("delete_session_process_state")?;
    ensure_eq!(report.session_id, "s", "report session id");
    ensure_eq!(report.revoked_handle_count, 4, "grants revoked over every frame of `s`");
    ensure_eq!(report.deleted_wake_count, 0, "deleted_wake_count");
    for scope in [&whole, &frame_one, &frame_two] {
        ensure!(r.list_handle_grants(scope).await.ctx("list")?.is_empty(), "scope {scope:?} still has grants");
    }
    for scope in [&other, &prefix] {
        ensure_eq!(r.list_handle_grants(scope).await.ctx("list")?.len(), 1, "grants of another session {scope:?}");
    }
    let again = r.delete_session_process_state("s").await.ctx("deleting again")?;
    ensure_eq!(again.revoked_handle_count, 0, "a second deletion revokes nothing");
    ensure!(
        again.orphaned_process_ids.is_empty() && again.preserved_process_ids.is_empty(),
        "a second deletion reports nothing"
    );
    let unknown = r.delete_session_process_state("never-seen").await.ctx("deleting an unknown session")?;
    ensure_eq!(unknown.revoked_handle_count, 0, "an unknown session revokes nothing");
    Ok(())
}

async fn delete_session_reports_orphaned_and_preserved_sorted_deduped_non_terminal(r: Reg) -> ScenarioResult {
    // orphan-b, orphan-a: only granted in `s` (orphan-a in two frames).
    // keep-z, keep-y: granted in `s` and elsewhere. done: terminal, only in `s`.
    // done-kept: terminal, in `s` and elsewhere. untouched: not granted in `s`.
    for id in ["orphan-b", "orphan-a", "keep-z", "keep-y", "done", "done-kept", "untouched"] {
        setup(&r, standard(id)).await?;
    }
    let s = SessionScope::new("s");
    let s_frame = SessionScope::with_frame("s", "f");
    let elsewhere = SessionScope::new("t");
    let grants = [
        (&s, "orphan-b"),
        (&s, "orphan-a"),
        (&s_frame, "orphan-a"),
        (&s_frame, "keep-z"),
        (&elsewhere, "keep-z"),
        (&s, "keep-y"),
        (&s_frame, "keep-y"),
        (&SessionScope::with_frame("t", "g"), "keep-y"),
        (&s, "done"),
        (&s, "done-kept"),
        (&elsewhere, "done-kept"),
        (&elsewhere, "untouched"),
    ];
    for (scope, id) in grants {
        r.grant_handle(scope, id, label("")).await.ctx(format!("grant `{id}` to {scope:?}"))?;
    }
    for id in ["done", "done-kept"] {
        r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx(format!("complete `{id}`"))?;
    }
    let report = r.delete_session_process_state("s").await.ctx("delete_session_process_state")?;
    ensure_eq!(report.revoked_handle_count, 8, "revoked grants");
    ensure_eq!(report.deleted_wake_count, 0, "deleted_wake_count");
    ensure_eq!(
        report.orphaned_process_ids,
        strings(&["orphan-a", "orphan-b"]),
        "orphaned ids (sorted, deduped, non-terminal)"
    );
    ensure_eq!(
        report.preserved_process_ids,
        strings(&["keep-y", "keep-z"]),
        "preserved ids (sorted, deduped, non-terminal)"
    );
    ensure!(
        r.handle_grants_for_process("orphan-a").await.ctx("grants of orphan-a")?.is_empty(),
        "orphan-a still granted"
    );
    ensure_eq!(r.handle_grants_for_process("keep-y").await.ctx("grants of keep-y")?.len(), 1, "keep-y grants left");
    Ok(())
}
