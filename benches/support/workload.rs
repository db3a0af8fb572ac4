//! The workload: how a benchmark process is registered, what its events look
//! like, and the runtime every figure runs on.

use std::sync::Arc;

use process_registry::{
    ProcessEventAppendRequest, ProcessEventType, ProcessInput, ProcessRegistration, ProcessRegistry,
};
use serde_json::{json, Map};
use tokio::runtime::Runtime;

/// The plain event type every figure appends.
pub const TICK: &str = "bench.tick";
/// A second event type, every tenth event of a filled log.
pub const SIGNAL: &str = "bench.signal";
/// The ttl of the leases the lease figures claim: no lease expires while a
/// figure runs.
pub const LEASE_TTL_MS: u64 = 60_000;

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

/// Registers the benchmark process `process_id` ([`registration`]).
pub async fn register(registry: &Arc<dyn ProcessRegistry>, process_id: &str) -> Result<(), String> {
    registry.register_process(registration(process_id)).await.map_err(|err| format!("register {process_id}: {err}"))?;
    Ok(())
}

/// Registers `process_id` with a log of `len` events: every 10th a
/// [`SIGNAL`], the others [`TICK`]s.
pub async fn fill_log(registry: &Arc<dyn ProcessRegistry>, process_id: &str, len: u64) -> Result<(), String> {
    register(registry, process_id).await?;
    for n in 1..=len {
        let request = if n % 10 == 0 { signal(n) } else { tick(n) };
        registry.append_event(process_id, request).await.map_err(|err| format!("fill the log: {err}"))?;
    }
    Ok(())
}

/// The runtime every figure runs on: multi-thread with 2 workers, shared by
/// the callers and the actors.
pub fn runtime() -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| format!("building the tokio runtime: {err}"))
}
