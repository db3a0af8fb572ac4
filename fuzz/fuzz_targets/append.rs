//! Append planning over a sequence of requests, against a prepared
//! registration: sequences stay gapless, replays return the original
//! event, a process ends once, and refusals change nothing.

#![no_main]

use std::collections::HashMap;

use arbitrary::Unstructured;
use fuzz_inputs::{is_sha256_hex, limits, registration, request};
use libfuzzer_sys::fuzz_target;
use process_registry::rules::append::{
    check_and_hash_payload, plan_append, wake_delivery, AppendPlan, AppendView, ReplayEntry,
};
use process_registry::rules::registration::prepare_registration;
use process_registry::rules::schema::CompileEach;
use process_registry::{ProcessEvent, ProcessRegistration};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (Ok(limits), Ok(registration)) = (limits(&mut u), registration(&mut u)) else {
        return;
    };
    let registration: ProcessRegistration = registration;
    let Ok(prepared) = prepare_registration(registration, &limits, &CompileEach) else {
        return;
    };
    let declared: Vec<String> = prepared.event_types.iter().map(|ty| ty.name.clone()).collect();
    let id = prepared.registration.id.clone();
    let mut record = prepared.new_record(1);
    let mut events: Vec<ProcessEvent> = Vec::new();
    let mut replay: HashMap<String, ReplayEntry> = HashMap::new();
    for now in 2..20u64 {
        let Ok(request) = request(&mut u, &declared) else {
            break;
        };
        let Ok(payload_hash) = check_and_hash_payload(&limits, &id, &request) else {
            continue;
        };
        assert!(is_sha256_hex(&payload_hash));
        let last_sequence = events.len() as u64;
        let view = AppendView {
            record: &record,
            last_sequence,
            schemas: &prepared.schemas,
            replayed: request.replay_key().and_then(|key| replay.get(key)),
            limits: &limits,
        };
        match plan_append(view, request.clone(), payload_hash.clone(), now) {
            Ok(AppendPlan::Replay { sequence }) => {
                let original = &events[(sequence - 1) as usize];
                assert_eq!((&original.event_type, &original.payload), (&request.event_type, &request.payload));
                assert_eq!(original.invocation.replay_key.as_deref(), request.replay_key());
            }
            Ok(AppendPlan::Commit(planned)) => {
                let planned = *planned;
                let event = &planned.event;
                assert_eq!(event.sequence, last_sequence + 1, "gapless");
                assert_eq!((event.occurred_at_ms, planned.record.updated_at_ms), (now, now));
                assert!(declared.contains(&event.event_type), "only declared types commit");
                assert!(!(record.is_terminal() && event.is_terminal()), "a process ends once");
                if event.is_terminal() {
                    assert!(planned.record.is_terminal() && planned.record.wait.is_none());
                    assert!(request.replay_key().is_some_and(|key| !key.is_empty()), "terminal events are keyed");
                } else {
                    assert_eq!(planned.record.status, record.status);
                }
                if let Some(wake) = &event.semantics.wake {
                    // Rendered from the payload, a template or a constant of the registration.
                    let bound =
                        limits.max_template_bytes.max(limits.max_payload_bytes).max(limits.max_registration_bytes);
                    assert!(wake.input.len() <= bound, "{} bytes of wake input", wake.input.len());
                    let target = request.wake_target_scope.as_ref().or(record.wake_target.as_ref());
                    let delivery = wake_delivery(&planned.record, event, request.wake_target_scope.as_ref());
                    assert_eq!(delivery.is_some(), target.is_some());
                    if let Some(delivery) = delivery {
                        assert!(delivery.wake_id.strip_prefix("wake:").is_some_and(is_sha256_hex));
                        assert_eq!(delivery.dedupe_key, wake.dedupe_key);
                    }
                }
                match (&planned.replay, request.replay_key()) {
                    (Some((key, entry)), Some(requested)) => {
                        assert_eq!((key.as_str(), entry.sequence), (requested, event.sequence));
                        assert_eq!(entry.payload_hash, payload_hash);
                    }
                    (None, key) => assert!(key.is_none_or(str::is_empty)),
                    (Some(_), None) => panic!("a replay entry without a replay key"),
                }
                if let Some((key, entry)) = planned.replay {
                    replay.insert(key, entry);
                }
                record = planned.record;
                events.push(planned.event);
            }
            Err(err) => {
                assert!(!err.to_string().is_empty());
            }
        }
    }
});
