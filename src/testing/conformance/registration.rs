//! `register_process`: the core event types, validation, and idempotence.
//!
//! Pins the rule for `register_process` in section 4 of the specification.
//! A new process is `Running` with both timestamps equal and a SHA-256
//! registration hash. The core event types a registration does not declare
//! are added (plain `process.cancel_requested`, `process.waiting` and
//! `process.resumed`; terminal `process.completed`, `process.failed` and
//! `process.cancelled` selecting `/await_output`), and a core type it does
//! declare is kept as declared. An empty process id or host profile id, an
//! empty or repeated event type name, a non-`Completed` terminal type without
//! an await output selector, or an invalid JSON Schema is refused and creates
//! nothing. Registering the same registration again returns the record as it
//! is now, terminal or not; another registration under the same id is a
//! conflict.

use serde_json::{json, Map};

use crate::error::RegistryError;
use crate::events::{
    ProcessAwaitOutput, ProcessEventAppendRequest, ProcessEventType, ProcessTerminalSpec, ProcessTerminalState,
    CANCELLED, CANCEL_REQUESTED, COMPLETED, FAILED, RESUMED, WAITING,
};
use crate::model::{ProcessInput, ProcessListFilter, ProcessProvenance, ProcessRegistration, ProcessStatus};

use super::support::{
    append, ensure, ensure_eq, ensure_err, ensure_names, external_ref, ids, is_lower_hex, log, note, note_type,
    pointer, record, registration, scenario_list, sequences, setup, signal_wait, standard, strings, Ctx, Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        register_new_process_is_running_with_equal_timestamps,
        register_adds_missing_core_event_types,
        register_keeps_a_declared_core_event_type_as_declared,
        register_same_registration_returns_existing_record_not_reset,
        register_same_registration_after_completion_returns_terminal_record,
        register_different_registration_same_id_is_a_conflict,
        register_rejects_empty_process_id,
        register_rejects_empty_host_profile_id,
        register_rejects_empty_event_type_name,
        register_rejects_duplicate_event_type_names,
        register_rejects_non_completed_terminal_type_without_selector,
        register_rejects_invalid_json_schema,
    ]
}

async fn register_new_process_is_running_with_equal_timestamps(r: Reg) -> ScenarioResult {
    let id = "proc-new";
    let created = setup(&r, standard(id)).await?;
    ensure_eq!(created.id, id, "record id");
    ensure_eq!(created.status, ProcessStatus::Running, "status of a new process");
    ensure!(!created.is_terminal(), "a new process must not be terminal");
    ensure_eq!(
        created.updated_at_ms,
        created.created_at_ms,
        "updated_at_ms of a new record (both timestamps are `now`)"
    );
    ensure!(created.created_at_ms > 0, "created_at_ms must be set, got 0");
    ensure!(
        is_lower_hex(&created.registration_hash, 64),
        "registration_hash must be 64 lowercase hex chars (SHA-256), got `{}`",
        created.registration_hash
    );
    ensure!(created.wait.is_none(), "a new record has no wait state");
    ensure!(created.external_ref.is_none(), "a new record has no external ref");
    ensure_eq!(created.input, ProcessInput::definition("job", Map::new()), "record input");
    ensure_eq!(created.provenance, ProcessProvenance::default(), "record provenance");
    ensure_eq!(r.get_process(id).await, Some(created.clone()), "get_process after register");
    ensure!(log(&r, id).await?.is_empty(), "a new process has an empty log");
    Ok(())
}

async fn register_adds_missing_core_event_types(r: Reg) -> ScenarioResult {
    let id = "proc-core";
    let created = setup(&r, registration(id).with_event_types(vec![note_type()])).await?;
    let names: Vec<&str> = created.event_types.iter().map(|ty| ty.name.as_str()).collect();
    for core in [CANCEL_REQUESTED, WAITING, RESUMED, COMPLETED, FAILED, CANCELLED, "note"] {
        ensure_eq!(names.iter().filter(|name| **name == core).count(), 1, "declarations of `{core}` among {names:?}");
    }
    ensure_eq!(names.len(), 7, "event types after adding the core ones: {names:?}");
    for plain in [CANCEL_REQUESTED, WAITING, RESUMED] {
        let declared = created.event_type(plain).ok_or_else(|| format!("`{plain}` missing"))?;
        ensure!(
            declared.semantics.terminal.is_none() && declared.semantics.wake.is_none(),
            "core type `{plain}` must be plain, got {:?}",
            declared.semantics
        );
    }
    for (name, state) in [
        (COMPLETED, ProcessTerminalState::Completed),
        (FAILED, ProcessTerminalState::Failed),
        (CANCELLED, ProcessTerminalState::Cancelled),
    ] {
        let declared = created.event_type(name).ok_or_else(|| format!("`{name}` missing"))?;
        ensure_eq!(
            declared.semantics.terminal,
            Some(ProcessTerminalSpec { state, await_output: Some(pointer("/await_output")) }),
            "terminal spec of core type `{name}`"
        );
    }
    // The core types are usable.
    let waiting = append(&r, id, ProcessEventAppendRequest::new(WAITING, json!({}))).await?;
    ensure_eq!(waiting.event.sequence, 1, "sequence of a core `process.waiting` event");
    let resumed = append(&r, id, ProcessEventAppendRequest::new(RESUMED, json!({}))).await?;
    ensure_eq!(resumed.event.sequence, 2, "sequence of a core `process.resumed` event");
    Ok(())
}

async fn register_keeps_a_declared_core_event_type_as_declared(r: Reg) -> ScenarioResult {
    let id = "proc-core-custom";
    let custom = ProcessEventType::new(WAITING, json!({"type": "object", "required": ["why"]}));
    let created = setup(&r, registration(id).with_event_types(vec![custom.clone()])).await?;
    ensure_eq!(created.event_types.len(), 6, "event types (custom core type not duplicated)");
    ensure_eq!(created.event_type(WAITING).cloned(), Some(custom), "the declared `process.waiting`");
    let err = ensure_err!(
        r.append_event(id, ProcessEventAppendRequest::new(WAITING, json!({}))).await,
        RegistryError::InvalidPayload { .. },
        "a payload breaking the declared core type's schema"
    );
    ensure_names(&err, id, "invalid payload")?;
    append(&r, id, ProcessEventAppendRequest::new(WAITING, json!({"why": "input"}))).await?;
    Ok(())
}

async fn register_same_registration_returns_existing_record_not_reset(r: Reg) -> ScenarioResult {
    let id = "proc-idem";
    let first = setup(&r, standard(id)).await?;
    append(&r, id, note("progress")).await?;
    r.set_process_wait(id, signal_wait("s")).await.ctx("set_process_wait")?;
    r.set_external_ref(id, external_ref("job-1")).await.ctx("set_external_ref")?;
    let current = record(&r, id).await?;
    let again = r.register_process(standard(id)).await.ctx("re-registering the same registration")?;
    ensure_eq!(again, current, "re-register must return the record as it is now");
    ensure_eq!(again.created_at_ms, first.created_at_ms, "created_at_ms after re-register");
    ensure!(again.updated_at_ms >= first.updated_at_ms, "updated_at_ms went backwards on re-register");
    ensure_eq!(again.registration_hash, first.registration_hash, "registration hash");
    ensure!(again.wait.is_some(), "re-register reset the wait state");
    ensure!(again.external_ref.is_some(), "re-register reset the external ref");
    ensure_eq!(record(&r, id).await?, current, "get_process after re-register");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after re-register");
    ensure_eq!(ids(&r.list_processes(&ProcessListFilter::any()).await.ctx("list")?), strings(&[id]), "processes");
    Ok(())
}

async fn register_same_registration_after_completion_returns_terminal_record(r: Reg) -> ScenarioResult {
    let id = "proc-idem-done";
    setup(&r, standard(id)).await?;
    let done = r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx("complete_process")?;
    let again = r.register_process(standard(id)).await.ctx("re-register")?;
    ensure_eq!(again, done, "re-register of a completed process returns its terminal record");
    ensure!(again.is_terminal(), "re-register reset the terminal status");
    Ok(())
}

async fn register_different_registration_same_id_is_a_conflict(r: Reg) -> ScenarioResult {
    let id = "proc-conflict";
    let original = setup(&r, standard(id)).await?;
    let err = ensure_err!(
        r.register_process(standard(id).with_env_ref("other-env")).await,
        RegistryError::RegistrationConflict { .. },
        "registering another registration under the same id"
    );
    ensure_names(&err, id, "registration conflict")?;
    let err = ensure_err!(
        r.register_process(ProcessRegistration::new(id, ProcessInput::external(json!({"x": 1})))).await,
        RegistryError::RegistrationConflict { .. },
        "registering another input under the same id"
    );
    ensure_names(&err, id, "registration conflict")?;
    ensure_eq!(record(&r, id).await?, original, "the original record after conflicts");
    Ok(())
}

async fn ensure_invalid_registration(r: &Reg, registration: ProcessRegistration, what: &str) -> ScenarioResult {
    let id = registration.id.clone();
    let err = ensure_err!(r.register_process(registration).await, RegistryError::InvalidRegistration { .. }, "{what}");
    if !id.is_empty() {
        ensure_names(&err, &id, what)?;
        ensure!(r.get_process(&id).await.is_none(), "{what}: a rejected registration created `{id}`");
    }
    let all = r.list_processes(&ProcessListFilter::any()).await.ctx("list_processes(any)")?;
    ensure!(all.is_empty(), "{what}: a rejected registration was listed: {:?}", ids(&all));
    Ok(())
}

async fn register_rejects_empty_process_id(r: Reg) -> ScenarioResult {
    ensure_invalid_registration(&r, standard(""), "an empty process id").await
}

async fn register_rejects_empty_host_profile_id(r: Reg) -> ScenarioResult {
    ensure_invalid_registration(&r, standard("proc-no-profile").with_host_profile_id(""), "an empty host profile id")
        .await
}

async fn register_rejects_empty_event_type_name(r: Reg) -> ScenarioResult {
    let registration = standard("proc-empty-type").with_extra_event_types(vec![ProcessEventType::new("", json!({}))]);
    ensure_invalid_registration(&r, registration, "an empty event type name").await
}

async fn register_rejects_duplicate_event_type_names(r: Reg) -> ScenarioResult {
    let twice = standard("proc-dup-type").with_extra_event_types(vec![ProcessEventType::new("note", json!({}))]);
    ensure_invalid_registration(&r, twice, "a custom event type declared twice").await?;
    let core_twice =
        registration("proc-dup-core").with_extra_event_types(vec![ProcessEventType::new(COMPLETED, json!({}))]);
    ensure_invalid_registration(&r, core_twice, "a core event type declared twice").await
}

async fn register_rejects_non_completed_terminal_type_without_selector(r: Reg) -> ScenarioResult {
    for state in [ProcessTerminalState::Failed, ProcessTerminalState::Cancelled] {
        let terminal =
            ProcessEventType::new("end", json!({})).with_terminal(ProcessTerminalSpec { state, await_output: None });
        let registration = standard("proc-no-selector").with_extra_event_types(vec![terminal]);
        ensure_invalid_registration(&r, registration, &format!("a {state:?} terminal type without selector")).await?;
    }
    let done = ProcessEventType::new("end", json!({}))
        .with_terminal(ProcessTerminalSpec { state: ProcessTerminalState::Completed, await_output: None });
    setup(&r, standard("proc-no-selector").with_extra_event_types(vec![done])).await?;
    Ok(())
}

async fn register_rejects_invalid_json_schema(r: Reg) -> ScenarioResult {
    for schema in [json!({"type": 17}), json!({"type": "no-such-type"})] {
        let registration =
            standard("proc-bad-schema").with_extra_event_types(vec![ProcessEventType::new("bad", schema.clone())]);
        ensure_invalid_registration(&r, registration, &format!("payload schema {schema}")).await?;
    }
    Ok(())
}
