//! `get_process`, `list_processes` and `list_non_terminal`.
//!
//! Pins their rule in section 4 of the specification: `get_process` of an
//! unknown id is `None`; `list_processes` returns current records with ids
//! ascending, running ones by default, filtered by status, definition and
//! waiting; `list_non_terminal` returns the non-terminal ones, ids
//! ascending.

use serde_json::{json, Map};

use crate::events::ProcessAwaitOutput;
use crate::model::{ProcessInput, ProcessListFilter, ProcessRegistration, ProcessStatusFilter};

use super::support::{
    append, ensure, ensure_eq, ids, note, note_type, scenario_list, setup, signal_wait, standard, status_filter,
    strings, Ctx, Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        get_process_unknown_is_none,
        list_processes_defaults_to_running_ids_ascending,
        list_processes_filters_by_status,
        list_processes_filters_by_definition_and_waiting,
        list_non_terminal_is_ascending_and_excludes_terminal,
    ]
}

async fn get_process_unknown_is_none(r: Reg) -> ScenarioResult {
    ensure_eq!(r.get_process("proc-ghost").await, None, "get_process of an unknown id");
    setup(&r, standard("proc-known")).await?;
    ensure_eq!(r.get_process("proc-ghost").await, None, "get_process of an unknown id next to a known one");
    ensure_eq!(r.get_process("").await, None, "get_process(\"\")");
    Ok(())
}

/// Registers `c`, `a`, `b` (running), `d` (completed), `e` (failed), `f`
/// (cancelled) with the given prefix.
async fn mixed_processes(r: &Reg, prefix: &str) -> ScenarioResult {
    for suffix in ["c", "a", "b", "d", "e", "f"] {
        setup(r, standard(&format!("{prefix}{suffix}"))).await?;
    }
    let complete = |suffix: &str, output: ProcessAwaitOutput| {
        let id = format!("{prefix}{suffix}");
        async move { r.complete_process(&id, output).await.ctx(format!("complete_process(`{id}`)")) }
    };
    complete("d", ProcessAwaitOutput::success(json!(1))).await?;
    complete("e", ProcessAwaitOutput::failure("x", "y")).await?;
    complete("f", ProcessAwaitOutput::cancelled("z")).await?;
    Ok(())
}

async fn list_processes_defaults_to_running_ids_ascending(r: Reg) -> ScenarioResult {
    mixed_processes(&r, "p-").await?;
    let listed = r.list_processes(&ProcessListFilter::default()).await.ctx("list_processes(default)")?;
    ensure_eq!(ids(&listed), strings(&["p-a", "p-b", "p-c"]), "default filter lists running ids ascending");
    for listed_record in &listed {
        ensure_eq!(Some(listed_record.clone()), r.get_process(&listed_record.id).await, "listed record is current");
    }
    Ok(())
}

async fn list_processes_filters_by_status(r: Reg) -> ScenarioResult {
    mixed_processes(&r, "p-").await?;
    let cases = [
        (ProcessStatusFilter::Running, vec!["p-a", "p-b", "p-c"]),
        (ProcessStatusFilter::Completed, vec!["p-d"]),
        (ProcessStatusFilter::Failed, vec!["p-e"]),
        (ProcessStatusFilter::Cancelled, vec!["p-f"]),
        (ProcessStatusFilter::Any, vec!["p-a", "p-b", "p-c", "p-d", "p-e", "p-f"]),
    ];
    for (status, expected) in cases {
        let listed = r.list_processes(&status_filter(status)).await.ctx(format!("list_processes({status:?})"))?;
        ensure_eq!(ids(&listed), strings(&expected), "list_processes(status {status:?})");
    }
    Ok(())
}

async fn list_processes_filters_by_definition_and_waiting(r: Reg) -> ScenarioResult {
    let build = |id: &str, name: &str| {
        ProcessRegistration::new(id, ProcessInput::definition(name, Map::new()))
            .with_extra_event_types(vec![note_type()])
    };
    setup(&r, build("p-3", "build")).await?;
    setup(&r, build("p-1", "build")).await?;
    setup(&r, build("p-2", "deploy")).await?;
    setup(&r, ProcessRegistration::new("p-4", ProcessInput::external(json!({"name": "build"})))).await?;
    setup(&r, build("p-5", "build")).await?;
    r.complete_process("p-5", ProcessAwaitOutput::success(json!(1))).await.ctx("complete p-5")?;
    r.set_process_wait("p-3", signal_wait("w")).await.ctx("set_process_wait p-3")?;
    r.set_process_wait("p-2", signal_wait("w")).await.ctx("set_process_wait p-2")?;
    let filter = |definition: Option<&str>, status, waiting| ProcessListFilter {
        definition: definition.map(str::to_owned),
        status,
        waiting,
    };
    let cases = [
        (filter(Some("build"), ProcessStatusFilter::Running, None), vec!["p-1", "p-3"]),
        (filter(Some("build"), ProcessStatusFilter::Any, None), vec!["p-1", "p-3", "p-5"]),
        (filter(Some("deploy"), ProcessStatusFilter::Running, None), vec!["p-2"]),
        (filter(Some("nothing"), ProcessStatusFilter::Any, None), vec![]),
        (filter(None, ProcessStatusFilter::Running, Some(true)), vec!["p-2", "p-3"]),
        (filter(None, ProcessStatusFilter::Running, Some(false)), vec!["p-1", "p-4"]),
        (filter(None, ProcessStatusFilter::Any, Some(false)), vec!["p-1", "p-4", "p-5"]),
        (filter(Some("build"), ProcessStatusFilter::Running, Some(true)), vec!["p-3"]),
    ];
    for (filter, expected) in cases {
        let listed = r.list_processes(&filter).await.ctx(format!("list_processes({filter:?})"))?;
        ensure_eq!(ids(&listed), strings(&expected), "list_processes({filter:?})");
    }
    Ok(())
}

async fn list_non_terminal_is_ascending_and_excludes_terminal(r: Reg) -> ScenarioResult {
    ensure!(r.list_non_terminal().await.ctx("list_non_terminal on empty")?.is_empty(), "empty registry");
    mixed_processes(&r, "w-").await?;
    append(&r, "w-b", note("progress")).await?;
    let listed = r.list_non_terminal().await.ctx("list_non_terminal")?;
    ensure_eq!(ids(&listed), strings(&["w-a", "w-b", "w-c"]), "list_non_terminal ids");
    ensure!(listed.iter().all(|listed| !listed.is_terminal()), "list_non_terminal returned a terminal record");
    ensure_eq!(Some(listed[1].clone()), r.get_process("w-b").await, "list_non_terminal returns current records");
    Ok(())
}
