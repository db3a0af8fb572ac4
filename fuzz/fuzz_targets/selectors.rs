//! Selectors and materialization: each selector kind selects what the spec
//! says, templates stay within their budget, and materialized semantics
//! follow their spec.

#![no_main]

use arbitrary::Unstructured;
use fuzz_inputs::{payload, selector, semantics};
use libfuzzer_sys::fuzz_target;
use process_registry::rules::semantics::{materialize, select, SelectError, TemplateBudget};
use process_registry::{ProcessAwaitOutput, ProcessTerminalState, ProcessValueSelector, ProcessWakeDedupeKey};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(chosen), Ok(payload), Ok(limit)) = (selector(&mut u, 4), payload(&mut u), u.int_in_range(0..=512usize))
    else {
        return;
    };
    match select(&chosen, &payload, &mut TemplateBudget::new(limit)) {
        Ok(value) => match &chosen {
            ProcessValueSelector::Payload => assert_eq!(value, payload),
            ProcessValueSelector::Pointer(pointer) => assert_eq!(Some(&value), payload.pointer(pointer)),
            ProcessValueSelector::Const(constant) => assert_eq!(&value, constant),
            ProcessValueSelector::Present(pointer) => {
                assert_eq!(value, Value::Bool(payload.pointer(pointer).is_some()))
            }
            ProcessValueSelector::Template { .. } => {
                let text = value.as_str().expect("a template renders a string");
                assert!(text.len() <= limit, "{} bytes rendered within a budget of {limit}", text.len());
            }
        },
        Err(SelectError::TooLarge { limit: reported }) => {
            assert_eq!(reported, limit);
            assert!(matches!(chosen, ProcessValueSelector::Template { .. }), "only templates spend the budget");
        }
        Err(SelectError::Unmatched(unmatched)) => assert!(payload.pointer(&unmatched.pointer).is_none()),
    }

    let Ok(spec) = semantics(&mut u) else {
        return;
    };
    let sequence = u.arbitrary::<u64>().unwrap_or(1);
    let Ok(materialized) = materialize(&spec, "p", sequence, &payload, limit) else {
        return;
    };
    assert_eq!(materialized.terminal.is_some(), spec.terminal.is_some());
    if let (Some(declared), Some(terminal)) = (&spec.terminal, &materialized.terminal) {
        assert_eq!(declared.state, terminal.state);
        if declared.state == ProcessTerminalState::Completed && declared.await_output.is_none() {
            let wrapped = ProcessAwaitOutput::success(payload.clone());
            let parsed = serde_json::from_value::<ProcessAwaitOutput>(payload.clone()).ok();
            assert!(terminal.await_output == wrapped || Some(&terminal.await_output) == parsed.as_ref());
        }
    }
    match (&spec.wake, &materialized.wake) {
        (None, Some(_)) => panic!("a wake without a wake spec"),
        (Some(declared), Some(wake)) => {
            if let ProcessWakeDedupeKey::EventIdentity = declared.dedupe_key {
                assert_eq!(wake.dedupe_key, format!("p:{sequence}"));
            }
            if let ProcessWakeDedupeKey::Const(key) = &declared.dedupe_key {
                assert_eq!(&wake.dedupe_key, key);
            }
        }
        (Some(declared), None) => assert!(declared.when.is_some(), "only `when` suppresses a wake"),
        (None, None) => {}
    }
});
