//! Selectors and the materialization of event semantics.
//!
//! A declared [`ProcessEventSemanticsSpec`] says *how* to find an event's
//! await output and wake input in its payload; [`materialize`] applies it to
//! one payload and returns the concrete [`ProcessEventSemantics`] stored on
//! the event.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::events::{
    ProcessAwaitOutput, ProcessEventSemantics, ProcessEventSemanticsSpec, ProcessTerminalSemantics,
    ProcessTerminalState, ProcessValueSelector, ProcessWakeDedupeKey, ProcessWakeSemantics,
};

/// A selector pointed at something the payload does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnmatchedPointer {
    /// The pointer that matched nothing.
    pub pointer: String,
}

/// Why a selector could not be applied to a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// A pointer matched nothing.
    Unmatched(UnmatchedPointer),
    /// The templates rendered more than their budget.
    TooLarge {
        /// The budget, in bytes.
        limit: usize,
    },
}

/// What the templates of one event may still render, in bytes. Every
/// substitution costs one byte more than it renders, so templates that
/// substitute each other into nothing still run out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateBudget {
    limit: usize,
    left: usize,
}

impl TemplateBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit, left: limit }
    }

    fn spend(&mut self, bytes: usize) -> Result<(), SelectError> {
        self.left = self.left.checked_sub(bytes).ok_or(SelectError::TooLarge { limit: self.limit })?;
        Ok(())
    }
}

/// Applies a selector to a payload, templates rendering within `budget`.
pub fn select(
    selector: &ProcessValueSelector,
    payload: &Value,
    budget: &mut TemplateBudget,
) -> Result<Value, SelectError> {
    select_ref(selector, payload, budget).map(Cow::into_owned)
}

/// [`select`] without copying what the payload or the selector holds.
fn select_ref<'a>(
    selector: &'a ProcessValueSelector,
    payload: &'a Value,
    budget: &mut TemplateBudget,
) -> Result<Cow<'a, Value>, SelectError> {
    match selector {
        ProcessValueSelector::Payload => Ok(Cow::Borrowed(payload)),
        ProcessValueSelector::Pointer(pointer) => payload
            .pointer(pointer)
            .map(Cow::Borrowed)
            .ok_or_else(|| SelectError::Unmatched(UnmatchedPointer { pointer: pointer.clone() })),
        ProcessValueSelector::Const(value) => Ok(Cow::Borrowed(value)),
        ProcessValueSelector::Present(pointer) => Ok(Cow::Owned(Value::Bool(payload.pointer(pointer).is_some()))),
        ProcessValueSelector::Template { template, fields } => {
            render_template(template, fields, payload, budget).map(|text| Cow::Owned(Value::String(text)))
        }
    }
}

/// Replaces each `{name}` of `template` that names a field by the field's
/// selected string; other braces stay as they are.
fn render_template(
    template: &str,
    fields: &BTreeMap<String, ProcessValueSelector>,
    payload: &Value,
    budget: &mut TemplateBudget,
) -> Result<String, SelectError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let literal = &rest[..open];
        budget.spend(literal.len())?;
        out.push_str(literal);
        let after = &rest[open + 1..];
        match after.find('}').map(|close| (&after[..close], close)) {
            Some((name, close)) if fields.contains_key(name) => {
                if let Some(field) = fields.get(name) {
                    let text = render_owned(select_ref(field, payload, budget)?);
                    budget.spend(text.len().saturating_add(1))?;
                    out.push_str(&text);
                }
                rest = &after[close + 1..];
            }
            _ => {
                budget.spend(1)?;
                out.push('{');
                rest = after;
            }
        }
    }
    budget.spend(rest.len())?;
    out.push_str(rest);
    Ok(out)
}

/// [`render`], without copying a string the selector rendered itself.
fn render_owned(value: Cow<'_, Value>) -> String {
    match value {
        Cow::Owned(Value::String(text)) => text,
        other => render(&other),
    }
}

/// A value as a string: strings unquoted, any other JSON rendered.
pub fn render(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Null, false, "", [] and {} are falsy; everything else (0 included) is truthy.
pub fn is_falsy(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Number(_) => false,
    }
}

/// The await output a terminal value stands for: the value itself when it
/// parses as a [`ProcessAwaitOutput`], else the value wrapped by state.
pub fn await_output_from(state: ProcessTerminalState, value: Value) -> ProcessAwaitOutput {
    if value.is_object() {
        if let Ok(parsed) = serde_json::from_value::<ProcessAwaitOutput>(value.clone()) {
            return parsed;
        }
    }
    match state {
        ProcessTerminalState::Completed => ProcessAwaitOutput::Success { value },
        ProcessTerminalState::Failed => {
            ProcessAwaitOutput::Failure { code: "process_failed".to_owned(), message: render(&value), raw: Some(value) }
        }
        ProcessTerminalState::Cancelled => ProcessAwaitOutput::Cancelled { message: render(&value), raw: Some(value) },
    }
}

/// Materializes the declared semantics for the event `process_id:sequence`;
/// all its templates together render at most `max_template_bytes`.
pub fn materialize(
    spec: &ProcessEventSemanticsSpec,
    process_id: &str,
    sequence: u64,
    payload: &Value,
    max_template_bytes: usize,
) -> Result<ProcessEventSemantics, SelectError> {
    let budget = &mut TemplateBudget::new(max_template_bytes);
    let terminal = match &spec.terminal {
        None => None,
        Some(terminal) => {
            let value = match &terminal.await_output {
                Some(selector) => select(selector, payload, budget)?,
                None => payload.clone(),
            };
            Some(ProcessTerminalSemantics {
                state: terminal.state,
                await_output: await_output_from(terminal.state, value),
            })
        }
    };
    let wake = match &spec.wake {
        None => None,
        Some(wake) => {
            let suppressed = match &wake.when {
                Some(when) => is_falsy(select_ref(when, payload, budget)?.as_ref()),
                None => false,
            };
            if suppressed {
                None
            } else {
                let input = render_owned(select_ref(&wake.input, payload, budget)?);
                let dedupe_key = match &wake.dedupe_key {
                    ProcessWakeDedupeKey::EventIdentity => format!("{process_id}:{sequence}"),
                    ProcessWakeDedupeKey::Selector(selector) => render_owned(select_ref(selector, payload, budget)?),
                    ProcessWakeDedupeKey::Const(key) => key.clone(),
                };
                Some(ProcessWakeSemantics { input, dedupe_key })
            }
        }
    };
    Ok(ProcessEventSemantics { terminal, wake })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ProcessTerminalSpec, ProcessWakeSpec};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn pointer(path: &str) -> ProcessValueSelector {
        ProcessValueSelector::Pointer(path.to_owned())
    }

    const BUDGET: usize = 1 << 20;

    fn select(selector: &ProcessValueSelector, payload: &Value) -> Result<Value, SelectError> {
        super::select(selector, payload, &mut TemplateBudget::new(BUDGET))
    }

    fn materialize(
        spec: &ProcessEventSemanticsSpec,
        process_id: &str,
        sequence: u64,
        payload: &Value,
    ) -> Result<ProcessEventSemantics, SelectError> {
        super::materialize(spec, process_id, sequence, payload, BUDGET)
    }

    fn template(
        text: &str,
        fields: impl IntoIterator<Item = (&'static str, ProcessValueSelector)>,
    ) -> ProcessValueSelector {
        ProcessValueSelector::Template {
            template: text.into(),
            fields: fields.into_iter().map(|(name, field)| (name.to_owned(), field)).collect(),
        }
    }

    #[test]
    fn every_selector_kind_selects() {
        let payload = json!({"a": {"b": 2}, "s": "x"});
        assert_eq!(select(&ProcessValueSelector::Payload, &payload).unwrap(), payload);
        assert_eq!(select(&pointer("/a/b"), &payload).unwrap(), json!(2));
        assert_eq!(
            select(&pointer("/missing"), &payload).unwrap_err(),
            SelectError::Unmatched(UnmatchedPointer { pointer: "/missing".into() })
        );
        assert_eq!(select(&ProcessValueSelector::Const(json!([1])), &payload).unwrap(), json!([1]));
        assert_eq!(select(&ProcessValueSelector::Present("/s".into()), &payload).unwrap(), json!(true));
        assert_eq!(select(&ProcessValueSelector::Present("/t".into()), &payload).unwrap(), json!(false));
        let template = ProcessValueSelector::Template {
            template: "{s}-{b}-{unknown}-{".into(),
            fields: BTreeMap::from([("s".into(), pointer("/s")), ("b".into(), pointer("/a"))]),
        };
        assert_eq!(select(&template, &payload).unwrap(), json!(r#"x-{"b":2}-{unknown}-{"#));
    }

    #[test]
    fn template_fields_are_not_substituted_twice() {
        let payload = json!({"v": "{w}", "w": "no"});
        let template = ProcessValueSelector::Template {
            template: "{v}{w}".into(),
            fields: BTreeMap::from([("v".into(), pointer("/v")), ("w".into(), pointer("/w"))]),
        };
        assert_eq!(select(&template, &payload).unwrap(), json!("{w}no"));
    }

    #[test]
    fn falsiness_follows_the_spec() {
        for falsy in [json!(null), json!(false), json!(""), json!([]), json!({})] {
            assert!(is_falsy(&falsy), "{falsy}");
        }
        for truthy in [json!(0), json!(true), json!("0"), json!([0]), json!({"a": null})] {
            assert!(!is_falsy(&truthy), "{truthy}");
        }
    }

    #[test]
    fn terminal_values_parse_as_await_outputs_or_are_wrapped() {
        let parsed = await_output_from(ProcessTerminalState::Completed, json!({"kind": "success", "value": 1}));
        assert_eq!(parsed, ProcessAwaitOutput::success(json!(1)));
        assert_eq!(await_output_from(ProcessTerminalState::Completed, json!(3)), ProcessAwaitOutput::success(json!(3)));
        assert_eq!(
            await_output_from(ProcessTerminalState::Failed, json!("disk full")),
            ProcessAwaitOutput::Failure {
                code: "process_failed".into(),
                message: "disk full".into(),
                raw: Some(json!("disk full"))
            }
        );
        assert_eq!(
            await_output_from(ProcessTerminalState::Cancelled, json!({"why": 1})),
            ProcessAwaitOutput::Cancelled { message: r#"{"why":1}"#.into(), raw: Some(json!({"why": 1})) }
        );
    }

    #[test]
    fn completed_without_selector_uses_the_whole_payload() {
        let spec = ProcessEventSemanticsSpec {
            terminal: Some(ProcessTerminalSpec { state: ProcessTerminalState::Completed, await_output: None }),
            wake: None,
        };
        let semantics = materialize(&spec, "p", 1, &json!({"r": 1})).unwrap();
        assert_eq!(semantics.terminal.unwrap().await_output, ProcessAwaitOutput::success(json!({"r": 1})));
    }

    #[test]
    fn wakes_materialize_input_and_each_dedupe_kind() {
        let payload = json!({"msg": "hi", "n": 4, "go": true});
        let base = ProcessWakeSpec::new(pointer("/msg"));
        let wake = |spec: ProcessWakeSpec| {
            let spec = ProcessEventSemanticsSpec { terminal: None, wake: Some(spec) };
            materialize(&spec, "p", 7, &payload).unwrap().wake
        };
        let identity = wake(base.clone()).unwrap();
        assert_eq!((identity.input.as_str(), identity.dedupe_key.as_str()), ("hi", "p:7"));
        let selected = wake(base.clone().with_dedupe_key(ProcessWakeDedupeKey::Selector(pointer("/n")))).unwrap();
        assert_eq!(selected.dedupe_key, "4");
        let constant = wake(base.clone().with_dedupe_key(ProcessWakeDedupeKey::Const("k".into()))).unwrap();
        assert_eq!(constant.dedupe_key, "k");
        let rendered = wake(ProcessWakeSpec::new(pointer("/n"))).unwrap();
        assert_eq!(rendered.input, "4");
        assert!(wake(base.clone().with_when(pointer("/go"))).is_some());
        assert!(wake(base.clone().with_when(ProcessValueSelector::Present("/nope".into()))).is_none());
    }

    #[test]
    fn templates_render_within_their_budget_and_count_every_substitution() {
        let payload = json!({"big": "x".repeat(1000)});
        let many = template(&"{b}".repeat(100), [("b", pointer("/big"))]);
        let limit = |bytes| super::select(&many, &payload, &mut TemplateBudget::new(bytes));
        assert_eq!(limit(100 * 1001).unwrap().as_str().map(str::len), Some(100_000), "each substitution: 1000 + 1");
        assert_eq!(limit(100 * 1001 - 1), Err(SelectError::TooLarge { limit: 100 * 1001 - 1 }));
        // Templates substituting each other into nothing: 2^40 substitutions
        // of "" without the per-substitution byte, refused at once with it.
        let mut nested = ProcessValueSelector::Const(json!(""));
        for _ in 0..40 {
            nested = template("{a}{a}", [("a", nested)]);
        }
        assert_eq!(
            super::select(&nested, &payload, &mut TemplateBudget::new(10_000)),
            Err(SelectError::TooLarge { limit: 10_000 })
        );
        // One budget for the whole event: await output and wake together.
        let spec = ProcessEventSemanticsSpec {
            terminal: Some(ProcessTerminalSpec {
                state: ProcessTerminalState::Failed,
                await_output: Some(template("{b}", [("b", pointer("/big"))])),
            }),
            wake: Some(ProcessWakeSpec::new(template("{b}", [("b", pointer("/big"))]))),
        };
        assert!(super::materialize(&spec, "p", 1, &payload, 2 * 1001).is_ok());
        assert_eq!(
            super::materialize(&spec, "p", 1, &payload, 2 * 1001 - 1),
            Err(SelectError::TooLarge { limit: 2001 })
        );
    }

    #[test]
    fn an_unmatched_pointer_in_any_selector_is_an_error() {
        let spec = ProcessEventSemanticsSpec { terminal: None, wake: Some(ProcessWakeSpec::new(pointer("/absent"))) };
        assert!(materialize(&spec, "p", 1, &json!({})).is_err());
    }
}
