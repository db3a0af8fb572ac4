//! Wakes: whether an event wakes, with what input and key, and where the
//! wake is delivered.
//!
//! Pins the wake rule of step 6 and step 9 of `append_event` in section 4 of
//! the specification. A `when` that selects a falsy value (`null`, `false`,
//! `""`, `[]`, `{}`) means no wake. The wake input renders strings unquoted and other
//! JSON as text; the dedupe key is `{process_id}:{sequence}` for
//! `EventIdentity`, the selected value's string for `Selector`, the constant
//! for `Const`. A delivery needs a materialized wake and a target scope (the
//! request's, else the record's `wake_target`); its `wake_id` is `wake:` +
//! SHA-256 of `(target_scope_id, dedupe_key)`, so equal keys for one target
//! share one id; it carries the event's lineage and the provenance's
//! `caused_by`. A replayed append materializes the delivery again for the
//! replay's own target.

use serde_json::json;

use crate::events::{ProcessEventAppendRequest, ProcessValueSelector, ProcessWakeDedupeKey, ProcessWakeSpec};
use crate::model::{CausalRef, ProcessProvenance, SessionScope};

use super::support::{
    alert, append, ensure, ensure_eq, expected_wake_id, is_lower_hex, log, note, pointer, scenario_list, sequences,
    setup, standard, wake_input, wake_type, Ctx, Reg,
};
use super::{Scenario, ScenarioResult};

/// This file's scenarios, in the order they run.
pub(super) fn scenarios() -> Vec<Scenario> {
    scenario_list![
        wake_when_falsy_suppresses_the_wake,
        wake_input_renders_strings_unquoted_and_other_json_rendered,
        wake_dedupe_key_event_identity_is_process_and_sequence,
        wake_dedupe_key_selector_uses_the_selected_string,
        wake_dedupe_key_const_is_the_constant,
        wake_delivery_requires_a_target_scope,
        wake_delivery_defaults_to_record_wake_target,
        wake_delivery_request_target_overrides_record_target,
        wake_id_is_hash_of_target_scope_and_dedupe_key,
        wake_delivery_carries_event_lineage_and_provenance_caused_by,
        replayed_append_rematerializes_delivery_for_replay_target,
    ]
}

async fn wake_when_falsy_suppresses_the_wake(r: Reg) -> ScenarioResult {
    let id = "proc-when";
    let spec = ProcessWakeSpec::new(ProcessValueSelector::Const(json!("go"))).with_when(pointer("/go"));
    setup(
        &r,
        standard(id)
            .with_extra_event_types(vec![wake_type("w", spec)])
            .with_wake_target(SessionScope::new("sess-when")),
    )
    .await?;
    let mut expected_wakes = Vec::new();
    for falsy in [json!(null), json!(false), json!(""), json!([]), json!({})] {
        let result = append(&r, id, ProcessEventAppendRequest::new("w", json!({ "go": falsy }))).await?;
        ensure!(
            result.event.semantics.wake.is_none(),
            "when = {falsy} is falsy, but a wake materialized: {:?}",
            result.event.semantics.wake
        );
        ensure!(result.wake_delivery.is_none(), "when = {falsy} is falsy, but a wake was delivered");
    }
    for truthy in [json!(0), json!(true), json!("no"), json!([0]), json!({"a": null})] {
        let result = append(&r, id, ProcessEventAppendRequest::new("w", json!({ "go": truthy }))).await?;
        ensure!(result.event.semantics.wake.is_some(), "when = {truthy} is truthy, but no wake materialized");
        ensure!(result.wake_delivery.is_some(), "when = {truthy} is truthy, but no wake was delivered");
        expected_wakes.push(result.event.sequence);
    }
    let wakes = r.wake_events_after(id, 0).await.ctx("wake_events_after")?;
    ensure_eq!(sequences(&wakes), expected_wakes, "wake events (falsy `when` excluded)");
    Ok(())
}

async fn wake_input_renders_strings_unquoted_and_other_json_rendered(r: Reg) -> ScenarioResult {
    let id = "proc-render";
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", ProcessWakeSpec::new(pointer("/v")))])).await?;
    let cases = [
        (json!("hi"), "hi"),
        (json!(""), ""),
        (json!(42), "42"),
        (json!(-1.5), "-1.5"),
        (json!(true), "true"),
        (json!(null), "null"),
        (json!([1, "a"]), r#"[1,"a"]"#),
        (json!({"k": "v"}), r#"{"k":"v"}"#),
    ];
    for (value, expected) in cases {
        let input = wake_input(&r, id, "w", json!({ "v": value })).await?;
        ensure_eq!(input.as_deref(), Some(expected), "wake input rendered from {value}");
    }
    Ok(())
}

async fn wake_dedupe_key_event_identity_is_process_and_sequence(r: Reg) -> ScenarioResult {
    let id = "proc-dedupe-id";
    setup(&r, standard(id).with_wake_target(SessionScope::new("sess"))).await?;
    append(&r, id, note("plain")).await?;
    let first = append(&r, id, alert("a")).await?;
    let second = append(&r, id, alert("a")).await?;
    for result in [&first, &second] {
        let expected = format!("{id}:{}", result.event.sequence);
        let wake = result.event.semantics.wake.as_ref().ok_or("alert must materialize a wake")?;
        ensure_eq!(wake.dedupe_key, expected, "EventIdentity dedupe key");
        ensure_eq!(wake.input, "a", "wake input");
        let delivery = result.wake_delivery.as_ref().ok_or("alert with a target must deliver")?;
        ensure_eq!(delivery.dedupe_key, expected, "delivery dedupe key");
    }
    let (a, b) = (first.wake_delivery, second.wake_delivery);
    let (a, b) = (a.ok_or("first delivery")?, b.ok_or("second delivery")?);
    ensure!(a.wake_id != b.wake_id, "EventIdentity wakes of different events must have different wake ids");
    Ok(())
}

async fn wake_dedupe_key_selector_uses_the_selected_string(r: Reg) -> ScenarioResult {
    let id = "proc-dedupe-sel";
    let spec = ProcessWakeSpec::new(ProcessValueSelector::Const(json!("x")))
        .with_dedupe_key(ProcessWakeDedupeKey::Selector(pointer("/topic")));
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", spec)])).await?;
    for (topic, expected) in [(json!("build"), "build"), (json!(5), "5"), (json!({"a": 1}), r#"{"a":1}"#)] {
        let result = append(&r, id, ProcessEventAppendRequest::new("w", json!({ "topic": topic }))).await?;
        let wake = result.event.semantics.wake.ok_or("a wake must materialize")?;
        ensure_eq!(wake.dedupe_key, expected, "Selector dedupe key for topic {topic}");
    }
    Ok(())
}

async fn wake_dedupe_key_const_is_the_constant(r: Reg) -> ScenarioResult {
    let id = "proc-dedupe-const";
    let spec = ProcessWakeSpec::new(pointer("/m")).with_dedupe_key(ProcessWakeDedupeKey::Const("singleton".to_owned()));
    setup(
        &r,
        standard(id).with_extra_event_types(vec![wake_type("w", spec)]).with_wake_target(SessionScope::new("sess")),
    )
    .await?;
    let mut wake_ids = Vec::new();
    for m in ["one", "two"] {
        let result = append(&r, id, ProcessEventAppendRequest::new("w", json!({ "m": m }))).await?;
        let wake = result.event.semantics.wake.ok_or("a wake must materialize")?;
        ensure_eq!(wake.dedupe_key, "singleton", "Const dedupe key");
        ensure_eq!(wake.input, m, "wake input");
        wake_ids.push(result.wake_delivery.ok_or("a wake with a target must deliver")?.wake_id);
    }
    ensure_eq!(wake_ids[0], wake_ids[1], "wake ids of equal Const dedupe keys for one target");
    Ok(())
}

async fn wake_delivery_requires_a_target_scope(r: Reg) -> ScenarioResult {
    let id = "proc-no-target";
    setup(&r, standard(id)).await?;
    let result = append(&r, id, alert("hello")).await?;
    ensure!(result.event.semantics.wake.is_some(), "the wake must still materialize on the event");
    ensure!(
        result.wake_delivery.is_none(),
        "no target scope: there must be no delivery, got {:?}",
        result.wake_delivery
    );
    let wakes = r.wake_events_after(id, 0).await.ctx("wake_events_after")?;
    ensure_eq!(sequences(&wakes), vec![1], "a materialized wake without target is still a wake event");
    let targeted = append(&r, id, alert("hello").with_wake_target_scope(SessionScope::new("sess-x"))).await?;
    ensure!(targeted.wake_delivery.is_some(), "a request target scope must produce a delivery");
    let plain = append(&r, id, note("n").with_wake_target_scope(SessionScope::new("sess-x"))).await?;
    ensure!(plain.wake_delivery.is_none(), "an event without wake semantics must not deliver, even with a target");
    Ok(())
}

async fn wake_delivery_defaults_to_record_wake_target(r: Reg) -> ScenarioResult {
    let id = "proc-default-target";
    setup(&r, standard(id).with_wake_target(SessionScope::new("sess-a"))).await?;
    let delivery =
        append(&r, id, alert("hi")).await?.wake_delivery.ok_or("expected a delivery to the record target")?;
    ensure_eq!(delivery.target_session_id, "sess-a", "target_session_id");
    ensure_eq!(delivery.target_scope_id, "session:sess-a", "target_scope_id");
    ensure_eq!(delivery.wake_id, expected_wake_id("session:sess-a", &format!("{id}:1")), "wake_id");
    Ok(())
}

async fn wake_delivery_request_target_overrides_record_target(r: Reg) -> ScenarioResult {
    let id = "proc-override-target";
    setup(&r, standard(id).with_wake_target(SessionScope::new("sess-a"))).await?;
    let request = alert("hi").with_wake_target_scope(SessionScope::with_frame("sess-b", "frame-1"));
    let delivery = append(&r, id, request).await?.wake_delivery.ok_or("expected a delivery to the request target")?;
    ensure_eq!(delivery.target_session_id, "sess-b", "target_session_id");
    ensure_eq!(delivery.target_scope_id, "session:sess-b/frame:frame-1", "target_scope_id");
    ensure_eq!(delivery.wake_id, expected_wake_id("session:sess-b/frame:frame-1", &format!("{id}:1")), "wake_id");
    Ok(())
}

async fn wake_id_is_hash_of_target_scope_and_dedupe_key(r: Reg) -> ScenarioResult {
    let id = "proc-wake-id";
    let spec = ProcessWakeSpec::new(pointer("/m")).with_dedupe_key(ProcessWakeDedupeKey::Selector(pointer("/k")));
    setup(&r, standard(id).with_extra_event_types(vec![wake_type("w", spec)])).await?;
    let deliver = |key: &str, scope: SessionScope| {
        ProcessEventAppendRequest::new("w", json!({"m": "x", "k": key})).with_wake_target_scope(scope)
    };
    let a1 = append(&r, id, deliver("k1", SessionScope::new("s1"))).await?.wake_delivery.ok_or("delivery a1")?;
    let a2 = append(&r, id, deliver("k1", SessionScope::new("s1"))).await?.wake_delivery.ok_or("delivery a2")?;
    let b = append(&r, id, deliver("k1", SessionScope::new("s2"))).await?.wake_delivery.ok_or("delivery b")?;
    let c = append(&r, id, deliver("k2", SessionScope::new("s1"))).await?.wake_delivery.ok_or("delivery c")?;
    for delivery in [&a1, &a2, &b, &c] {
        let hex = delivery
            .wake_id
            .strip_prefix("wake:")
            .ok_or_else(|| format!("wake id `{}` lacks `wake:`", delivery.wake_id))?;
        ensure!(is_lower_hex(hex, 64), "wake id `{}` is not `wake:` + 64 hex", delivery.wake_id);
        ensure_eq!(
            delivery.wake_id,
            expected_wake_id(&delivery.target_scope_id, &delivery.dedupe_key),
            "wake id = wake: + sha256(json([target_scope_id, dedupe_key]))"
        );
    }
    ensure_eq!(a1.wake_id, a2.wake_id, "equal dedupe key and target give one wake id");
    ensure!(a1.wake_id != b.wake_id, "another target must give another wake id");
    ensure!(a1.wake_id != c.wake_id, "another dedupe key must give another wake id");
    Ok(())
}

async fn wake_delivery_carries_event_lineage_and_provenance_caused_by(r: Reg) -> ScenarioResult {
    let id = "proc-caused";
    let cause = CausalRef::External { kind: "tool_call".to_owned(), id: "call-9".to_owned() };
    let provenance = ProcessProvenance::session(SessionScope::new("origin"), "profile-1").with_caused_by(cause.clone());
    setup(&r, standard(id).with_process_provenance(provenance).with_wake_target(SessionScope::new("sess"))).await?;
    let result = append(&r, id, alert("ping").with_replay_key("rk")).await?;
    let delivery = result.wake_delivery.ok_or("expected a delivery")?;
    let wake = result.event.semantics.wake.clone().ok_or("expected a materialized wake")?;
    ensure_eq!(delivery.process_caused_by, Some(cause), "process_caused_by = provenance caused_by");
    ensure_eq!(delivery.process_id, id, "delivery process_id");
    ensure_eq!(delivery.sequence, result.event.sequence, "delivery sequence");
    ensure_eq!(delivery.event_type, "alert", "delivery event_type");
    ensure_eq!(delivery.event_invocation, result.event.invocation, "delivery event_invocation");
    ensure_eq!(delivery.input, wake.input, "delivery input");
    ensure_eq!(delivery.dedupe_key, wake.dedupe_key, "delivery dedupe_key");
    ensure!(delivery.created_at_ms > 0, "delivery created_at_ms must be set");
    let plain = "proc-uncaused";
    setup(&r, standard(plain).with_wake_target(SessionScope::new("sess"))).await?;
    let delivery = append(&r, plain, alert("ping")).await?.wake_delivery.ok_or("expected a delivery")?;
    ensure_eq!(delivery.process_caused_by, None, "process_caused_by without provenance caused_by");
    Ok(())
}

async fn replayed_append_rematerializes_delivery_for_replay_target(r: Reg) -> ScenarioResult {
    let id = "proc-replay-wake";
    setup(&r, standard(id)).await?;
    let scope_a = SessionScope::new("sess-a");
    let scope_b = SessionScope::with_frame("sess-b", "f");
    let first = append(&r, id, alert("hi").with_replay_key("k").with_wake_target_scope(scope_a)).await?;
    let first_delivery = first.wake_delivery.ok_or("expected a delivery to sess-a")?;
    let replay = append(&r, id, alert("hi").with_replay_key("k").with_wake_target_scope(scope_b)).await?;
    ensure_eq!(replay.event, first.event, "the replay returns the original event");
    let delivery = replay.wake_delivery.ok_or("a replay must re-materialize the delivery for its own target")?;
    ensure_eq!(delivery.target_scope_id, "session:sess-b/frame:f", "replay delivery target");
    ensure_eq!(delivery.sequence, 1, "replay delivery sequence");
    ensure_eq!(delivery.wake_id, expected_wake_id("session:sess-b/frame:f", &format!("{id}:1")), "replay wake id");
    ensure!(delivery.wake_id != first_delivery.wake_id, "another target gives another wake id");
    let untargeted = append(&r, id, alert("hi").with_replay_key("k")).await?;
    ensure_eq!(untargeted.event.sequence, 1, "untargeted replay sequence");
    ensure!(untargeted.wake_delivery.is_none(), "a replay without any target must not deliver");
    ensure_eq!(sequences(&log(&r, id).await?), vec![1], "log after replays");
    Ok(())
}
