//! Value selectors: how an event type picks a value out of a payload.
//!
//! Pins the selector rules of step 6 of `append_event` in section 4 of the
//! specification, observed through wake inputs: `Payload` selects the whole
//! payload, `Pointer` the pointed value, `Const` the constant, `Template`
//! replaces each `{name}` by its field's string, and `Present` gives `true`
//! or `false`. A pointer that matches nothing makes the payload invalid, for
//! a wake input and for a terminal await output alike, and nothing is
//! committed.

use std::collections::BTreeMap;

use serde_json::json;

use crate::error::RegistryError;
use crate::events::{ProcessEventAppendRequest, ProcessValueSelector, ProcessWakeSpec, COMPLETED};
use crate::model::ProcessStatus;

use super::support::{
    ensure, ensure_eq, ensure_err, ensure_names, log, pointer, record, scenario_list, setup, standard, wake_input,
    wake_type, Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        selector_payload_selects_whole_payload,
        selector_pointer_selects_the_pointed_value,
        selector_pointer_that_matches_nothing_is_invalid_payload,
        selector_const_selects_the_constant,
        selector_template_replaces_fields_with_their_strings,
        selector_present_reports_true_or_false,
    ]
}

async fn selector_payload_selects_whole_payload(r: Reg) -> ScenarioResult {
    let id = "proc-sel-payload";
    setup(
        &r,
        standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(ProcessValueSelector::Payload))]),
    )
    .await?;
    let input = wake_input(&r, id, "w", json!({"a": 1})).await?;
    ensure_eq!(input.as_deref(), Some(r#"{"a":1}"#), "wake input selected by Payload");
    let input = wake_input(&r, id, "w", json!("plain")).await?;
    ensure_eq!(input.as_deref(), Some("plain"), "wake input of a string payload");
    Ok(())
}

async fn selector_pointer_selects_the_pointed_value(r: Reg) -> ScenarioResult {
    let id = "proc-sel-pointer";
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(pointer("/a/b")))])).await?;
    let input = wake_input(&r, id, "w", json!({"a": {"b": "deep"}, "c": 1})).await?;
    ensure_eq!(input.as_deref(), Some("deep"), "wake input selected by Pointer(/a/b)");
    Ok(())
}

async fn selector_pointer_that_matches_nothing_is_invalid_payload(r: Reg) -> ScenarioResult {
    let id = "proc-sel-missing";
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(pointer("/a/b")))])).await?;
    let err = ensure_err!(
        r.append_event(id, ProcessEventAppendRequest::new("w", json!({"a": {}}))).await,
        RegistryError::InvalidPayload { .. },
        "a wake input pointer matching nothing"
    );
    ensure_names(&err, id, "unmatched pointer")?;
    let err = ensure_err!(
        r.append_event(id, ProcessEventAppendRequest::new(COMPLETED, json!({})).with_replay_key("t")).await,
        RegistryError::InvalidPayload { .. },
        "a terminal await output pointer (/await_output) matching nothing"
    );
    ensure_names(&err, id, "unmatched pointer")?;
    ensure!(
        err.to_string().contains("/await_output"),
        "the error should name the unmatched pointer `/await_output`: {err}"
    );
    ensure!(log(&r, id).await?.is_empty(), "an event with an unmatched pointer was committed");
    ensure_eq!(record(&r, id).await?.status, ProcessStatus::Running, "status after an unmatched terminal pointer");
    Ok(())
}

async fn selector_const_selects_the_constant(r: Reg) -> ScenarioResult {
    let id = "proc-sel-const";
    setup(
        &r,
        standard(id).with_extra_event_types(vec![
            wake_type("w", ProcessWakeSpec::new(ProcessValueSelector::Const(json!("fixed")))),
            wake_type("n", ProcessWakeSpec::new(ProcessValueSelector::Const(json!(7)))),
        ]),
    )
    .await?;
    ensure_eq!(wake_input(&r, id, "w", json!({"x": 1})).await?.as_deref(), Some("fixed"), "Const(\"fixed\")");
    ensure_eq!(wake_input(&r, id, "n", json!({})).await?.as_deref(), Some("7"), "Const(7)");
    Ok(())
}

async fn selector_template_replaces_fields_with_their_strings(r: Reg) -> ScenarioResult {
    let id = "proc-sel-template";
    let template = ProcessValueSelector::Template {
        template: "{name} took {secs}s".to_owned(),
        fields: BTreeMap::from([("name".to_owned(), pointer("/name")), ("secs".to_owned(), pointer("/secs"))]),
    };
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(template))])).await?;
    let input = wake_input(&r, id, "w", json!({"name": "build", "secs": 3})).await?;
    ensure_eq!(input.as_deref(), Some("build took 3s"), "rendered template");
    Ok(())
}

async fn selector_present_reports_true_or_false(r: Reg) -> ScenarioResult {
    let id = "proc-sel-present";
    setup(
        &r,
        standard(id).with_extra_event_types(vec![wake_type(
            "w",
            ProcessWakeSpec::new(ProcessValueSelector::Present("/x".to_owned())),
        )]),
    )
    .await?;
    ensure_eq!(wake_input(&r, id, "w", json!({"x": 5})).await?.as_deref(), Some("true"), "Present(/x), x present");
    ensure_eq!(
        wake_input(&r, id, "w", json!({"x": null})).await?.as_deref(),
        Some("true"),
        "Present(/x), x present with null"
    );
    ensure_eq!(wake_input(&r, id, "w", json!({"y": 1})).await?.as_deref(), Some("false"), "Present(/x), x absent");
    Ok(())
}
