//! `set_process_wait`, `clear_process_wait` and `set_external_ref`.
//!
//! Pins their rule in section 4 of the specification: each updates its
//! field and `updated_at_ms` and returns the record, without appending an
//! event; `set_process_wait` on a terminal process is an error.

use serde_json::json;

use crate::error::RegistryError;
use crate::events::ProcessAwaitOutput;
use crate::model::ProcessStatus;

use super::support::{
    ensure, ensure_eq, ensure_err, ensure_names, external_ref, log, record, scenario_list, setup, signal_wait,
    standard, Ctx, Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        set_and_clear_process_wait_update_wait_and_updated_at,
        set_process_wait_on_terminal_process_errors,
        set_external_ref_updates_record_and_updated_at,
    ]
}

async fn set_and_clear_process_wait_update_wait_and_updated_at(r: Reg) -> ScenarioResult {
    let id = "proc-wait-state";
    let created = setup(&r, standard(id)).await?;
    let wait = signal_wait("approval");
    let waiting = r.set_process_wait(id, wait.clone()).await.ctx("set_process_wait")?;
    ensure_eq!(waiting.wait, Some(wait.clone()), "wait returned by set_process_wait");
    ensure!(waiting.updated_at_ms >= created.updated_at_ms, "set_process_wait moved updated_at_ms backwards");
    ensure_eq!(record(&r, id).await?, waiting, "get_process after set_process_wait");
    let other = signal_wait("second");
    let replaced = r.set_process_wait(id, other.clone()).await.ctx("set_process_wait again")?;
    ensure_eq!(replaced.wait, Some(other), "set_process_wait replaces the wait");
    let cleared = r.clear_process_wait(id).await.ctx("clear_process_wait")?;
    ensure_eq!(cleared.wait, None, "wait after clear_process_wait");
    ensure!(cleared.updated_at_ms >= replaced.updated_at_ms, "clear_process_wait moved updated_at_ms backwards");
    ensure_eq!(record(&r, id).await?, cleared, "get_process after clear_process_wait");
    let again = r.clear_process_wait(id).await.ctx("clear_process_wait when not waiting")?;
    ensure_eq!(again.wait, None, "clearing twice");
    ensure!(log(&r, id).await?.is_empty(), "wait changes must not append events");
    Ok(())
}

async fn set_process_wait_on_terminal_process_errors(r: Reg) -> ScenarioResult {
    let id = "proc-wait-terminal";
    setup(&r, standard(id)).await?;
    let done = r.complete_process(id, ProcessAwaitOutput::success(json!(1))).await.ctx("complete_process")?;
    let err = ensure_err!(
        r.set_process_wait(id, signal_wait("late")).await,
        RegistryError::AlreadyTerminal { .. },
        "set_process_wait on a terminal process"
    );
    ensure_names(&err, id, "set_process_wait on a terminal process")?;
    ensure_eq!(record(&r, id).await?, done, "record after a refused set_process_wait");
    Ok(())
}

async fn set_external_ref_updates_record_and_updated_at(r: Reg) -> ScenarioResult {
    let id = "proc-ext";
    let created = setup(&r, standard(id)).await?;
    let first = r.set_external_ref(id, external_ref("job-1")).await.ctx("set_external_ref")?;
    ensure_eq!(first.external_ref, Some(external_ref("job-1")), "external ref returned");
    ensure!(first.updated_at_ms >= created.updated_at_ms, "set_external_ref moved updated_at_ms backwards");
    ensure_eq!(record(&r, id).await?, first, "get_process after set_external_ref");
    let second = r.set_external_ref(id, external_ref("job-2")).await.ctx("set_external_ref again")?;
    ensure_eq!(second.external_ref, Some(external_ref("job-2")), "set_external_ref replaces the ref");
    ensure!(second.updated_at_ms >= first.updated_at_ms, "set_external_ref moved updated_at_ms backwards");
    ensure_eq!(second.status, ProcessStatus::Running, "status after set_external_ref");
    ensure!(log(&r, id).await?.is_empty(), "set_external_ref must not append events");
    Ok(())
}
