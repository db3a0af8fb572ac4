//! The workload the benches and the loadgen share: how a benchmark process
//! is registered and what its events look like, so both measure the same
//! thing. Included by path from `benches/registry.rs` and
//! `benches/loadgen/main.rs`.

use process_registry::{ProcessEventAppendRequest, ProcessEventType, ProcessInput, ProcessRegistration};
use serde_json::{json, Map};

/// The plain event type every figure appends.
pub const TICK: &str = "bench.tick";
/// A second event type, every tenth event of a filled log.
pub const SIGNAL: &str = "bench.signal";

/// A benchmark process: the core event types plus [`TICK`] and [`SIGNAL`],
/// each with a small object schema.
pub fn registration(process_id: &str) -> ProcessRegistration {
    let schema = json!({
        "type": "object",
        "properties": { "n": { "type": "integer" } },
        "required": ["n"],
    });
    let mut args = Map::new();
    args.insert("attempt".to_owned(), json!(1));
    ProcessRegistration::new(process_id, ProcessInput::definition("bench.job", args))
        .with_extra_event_types([ProcessEventType::new(TICK, schema.clone()), ProcessEventType::new(SIGNAL, schema)])
}

/// A tick event with payload `{"n": n}`.
pub fn tick(n: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new(TICK, json!({ "n": n }))
}

/// A signal event with payload `{"n": n}`.
pub fn signal(n: u64) -> ProcessEventAppendRequest {
    ProcessEventAppendRequest::new(SIGNAL, json!({ "n": n }))
}
