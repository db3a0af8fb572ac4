//! The actor registry agrees with a sequential model of the specification,
//! step by step, over random histories (a model-based property test).
//!
//! Random histories of trait operations over three process ids, four
//! session scopes (two sessions, with and without frames, and an empty
//! frame that names the same scope as no frame) and two lease owners,
//! including invalid input and lease expiry through a shared
//! [`ManualClock`], are applied step by step to an [`ActorProcessRegistry`]
//! and to [`Model`], a plain sequential reference model written here from
//! SPEC.md. The model owns its own state and sequencing; it borrows only the
//! crate's pure rules for registration preparation (validation and hash),
//! payload limits and hashing, JSON Schema validation, semantic
//! materialization and wake ids.
//!
//! After every step the observable results must agree: `Ok` values are
//! compared whole (leases without the random `lease_token`, which the model
//! adopts from the registry so later renewals and completions can present
//! it), errors by variant. Waits that the model says must park are kept
//! pending; after every later step, the ones the model says are now
//! satisfied must answer exactly the model's value, and the others must not
//! have answered. At the end, `stats()` must match the model, and shutdown
//! must answer every still-parked caller with `Stopped`.
//!
//! Cases: `PROPTEST_CASES` (default 256; the nightly size is 10,000).
//! Shrunk failures are kept below as plain regression tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::mem::discriminant;
use std::sync::Arc;
use std::time::Duration;

use process_registry::rules::append::check_and_hash_payload;
use process_registry::rules::hashing::wake_id;
use process_registry::rules::registration::prepare_registration;
use process_registry::rules::schema::{self, CompileEach, CompiledSchemas};
use process_registry::rules::semantics::{materialize, SelectError};
use process_registry::{
    ActorProcessRegistry, CausalRef, InvocationScope, InvocationSubject, Limits, ManualClock, ProcessAwaitOutput,
    ProcessEvent, ProcessEventAppendRequest, ProcessEventAppendResult, ProcessEventInvocation, ProcessEventType,
    ProcessExternalRef, ProcessHandleDescriptor, ProcessHandleGrant, ProcessHandleGrantEntry, ProcessInput,
    ProcessLease, ProcessLeaseCompletion, ProcessListFilter, ProcessProvenance, ProcessRecord, ProcessRegistration,
    ProcessRegistry, ProcessSessionDeleteReport, ProcessStatus, ProcessStatusFilter, ProcessTerminalSpec,
    ProcessTerminalState, ProcessValueSelector, ProcessWakeDedupeKey, ProcessWakeDelivery, ProcessWakeSpec,
    RegistryConfig, RegistryError, SessionScope, SqliteOptions, SyncMode, WaitKind, WaitState, CANCEL_REQUESTED,
    PROCESS_LEASE_SCHEMA_VERSION,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

const DEFAULT_CASES: u32 = 256;
const MAX_OPS: usize = 64;
const START_MS: u64 = 1_000;
/// How long an answer the model expects may take to arrive.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The universe: ids, registrations, payloads.
// ---------------------------------------------------------------------------

const PROCESSES: [&str; 3] = ["p0", "p1", "p2"];
const OWNERS: [&str; 2] = ["o0", "o1"];
const SESSIONS: [&str; 3] = ["s0", "s1", "s2"];

fn scope(index: usize) -> SessionScope {
    match index % 4 {
        0 => SessionScope::new("s0"),
        1 => SessionScope::with_frame("s0", "f"),
        // An empty frame names the same scope as no frame.
        2 => SessionScope::with_frame("s1", ""),
        _ => SessionScope::new("s1"),
    }
}

fn descriptor(index: usize) -> ProcessHandleDescriptor {
    match index % 3 {
        0 => ProcessHandleDescriptor::default(),
        1 => ProcessHandleDescriptor { kind: Some("tool".into()), label: None },
        _ => ProcessHandleDescriptor { kind: Some("tool".into()), label: Some("second".into()) },
    }
}

fn object_schema() -> Value {
    json!({"type": "object"})
}

fn custom_types() -> Vec<ProcessEventType> {
    vec![
        ProcessEventType::new("note", json!({"type": "object", "properties": {"text": {"type": "string"}}})),
        ProcessEventType::new("ping", json!({"type": "object", "required": ["msg"]}))
            .with_wake(ProcessWakeSpec::new(ProcessValueSelector::Pointer("/msg".into()))),
        ProcessEventType::new("poke", object_schema()).with_wake(
            ProcessWakeSpec::new(ProcessValueSelector::Template {
                template: "{m}!".into(),
                fields: BTreeMap::from([("m".to_owned(), ProcessValueSelector::Pointer("/msg".into()))]),
            })
            .with_when(ProcessValueSelector::Pointer("/go".into()))
            .with_dedupe_key(ProcessWakeDedupeKey::Const("poke".into())),
        ),
        ProcessEventType::new("halt", object_schema()).with_terminal(ProcessTerminalSpec {
            state: ProcessTerminalState::Failed,
            await_output: Some(ProcessValueSelector::Pointer("/why".into())),
        }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegKind {
    /// Definition `job`, wake target `s1`, caused by an external ref.
    Standard,
    /// Another valid registration: same id, other hash.
    Variant,
    EmptyId,
    BlankHostProfile,
    InvalidSchema,
    DuplicateType,
    FailedTerminalWithoutSelector,
}

fn registration(process: &str, kind: RegKind) -> ProcessRegistration {
    let standard = ProcessRegistration::new(process, ProcessInput::definition("job", Map::new()))
        .with_extra_event_types(custom_types())
        .with_wake_target(SessionScope::new("s1"))
        .with_process_provenance(
            ProcessProvenance::host("host")
                .with_caused_by(CausalRef::External { kind: "test".into(), id: format!("cause-{process}") }),
        );
    match kind {
        RegKind::Standard => standard,
        RegKind::Variant => ProcessRegistration::new(
            process,
            ProcessInput::definition("other", Map::from_iter([("a".to_owned(), json!(1))])),
        )
        .with_extra_event_types(custom_types())
        .with_env_ref("alt"),
        RegKind::EmptyId => ProcessRegistration { id: String::new(), ..standard },
        RegKind::BlankHostProfile => standard.with_host_profile_id(" "),
        RegKind::InvalidSchema => {
            standard.with_extra_event_types(vec![ProcessEventType::new("broken", json!({"type": 17}))])
        }
        RegKind::DuplicateType => standard.with_extra_event_types(vec![ProcessEventType::new("note", object_schema())]),
        RegKind::FailedTerminalWithoutSelector => {
            standard.with_extra_event_types(vec![ProcessEventType::new("oops", object_schema())
                .with_terminal(ProcessTerminalSpec { state: ProcessTerminalState::Failed, await_output: None })])
        }
    }
}

const EVENT_TYPES: [&str; 10] = [
    "note",
    "ping",
    "poke",
    "halt",
    "process.cancel_requested",
    "process.waiting",
    "process.completed",
    "process.failed",
    "process.cancelled",
    "undeclared",
];

/// Payload `index` for an append of `event_type`: 0-11 from a fixed list
/// (valid for some types, invalid for others), 12 and up one that fits.
fn payload(event_type: &str, index: usize) -> Value {
    if index >= 12 {
        return match event_type {
            "note" => json!({"text": "hi"}),
            "ping" => json!({"msg": "m1"}),
            "poke" => json!({"msg": "m2", "go": true}),
            "halt" => json!({"why": "broke"}),
            "process.cancel_requested" => json!({"reason": "r"}),
            "process.completed" => json!({"await_output": {"kind": "success", "value": 2}}),
            "process.failed" => json!({"await_output": "bad"}),
            "process.cancelled" => json!({"await_output": {"kind": "cancelled", "message": "stop"}}),
            _ => json!({}),
        };
    }
    match index {
        0 => json!({}),
        1 => json!({"text": "hello"}),
        2 => json!({"text": 5}),
        3 => json!({"msg": "m1"}),
        4 => json!({"msg": "m2", "go": true}),
        5 => json!({"msg": "m3", "go": false}),
        6 => json!({"msg": "", "go": "yes"}),
        7 => json!({"why": "broke"}),
        8 => json!({"await_output": {"kind": "success", "value": 1}}),
        9 => json!({"await_output": "plain"}),
        10 => json!("not an object"),
        _ => json!({"await_output": {"kind": "failure", "code": "c", "message": "m"}}),
    }
}

fn replay_key(index: Option<usize>) -> Option<String> {
    index.map(|index| match index % 3 {
        0 => String::new(),
        1 => "k1".to_owned(),
        _ => "k2".to_owned(),
    })
}

fn outcome(index: usize) -> ProcessAwaitOutput {
    match index % 4 {
        0 => ProcessAwaitOutput::success(json!(1)),
        1 => ProcessAwaitOutput::success(json!({"a": [1, 2]})),
        2 => ProcessAwaitOutput::failure("c", "m"),
        _ => ProcessAwaitOutput::cancelled("bye"),
    }
}

fn filter(index: usize) -> ProcessListFilter {
    let status = |status| ProcessListFilter { status, ..ProcessListFilter::default() };
    match index % 9 {
        0 => ProcessListFilter::any(),
        1 => ProcessListFilter::default(),
        2 => status(ProcessStatusFilter::Completed),
        3 => status(ProcessStatusFilter::Failed),
        4 => status(ProcessStatusFilter::Cancelled),
        5 => ProcessListFilter { definition: Some("job".into()), ..ProcessListFilter::any() },
        6 => ProcessListFilter { definition: Some("other".into()), ..ProcessListFilter::default() },
        7 => ProcessListFilter { waiting: Some(true), ..ProcessListFilter::any() },
        _ => ProcessListFilter { waiting: Some(false), ..ProcessListFilter::default() },
    }
}

fn sequence(index: u64) -> u64 {
    if index >= 9 {
        u64::MAX
    } else {
        index
    }
}

// ---------------------------------------------------------------------------
// Operations.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Register {
        p: usize,
        kind: RegKind,
    },
    Append {
        p: usize,
        event_type: usize,
        payload: usize,
        replay: Option<usize>,
        target: Option<usize>,
    },
    CancelRequested {
        p: usize,
        reason: usize,
    },
    Complete {
        p: usize,
        outcome: usize,
    },
    SetWait {
        p: usize,
        ordinal: u64,
    },
    ClearWait {
        p: usize,
    },
    SetExternalRef {
        p: usize,
        n: u64,
    },
    AckWake {
        p: usize,
        sequence: u64,
    },
    EventsAfter {
        p: usize,
        after: u64,
    },
    CountThrough {
        p: usize,
        event_type: usize,
        up_to: u64,
    },
    Recent {
        p: usize,
        limit: usize,
    },
    WakeEventsAfter {
        p: usize,
        after: u64,
    },
    Wait {
        p: usize,
        event_type: usize,
        after: u64,
    },
    Await {
        p: usize,
    },
    /// Drops the oldest pending wait (a caller that gives up).
    GiveUp,
    Grant {
        scope: usize,
        p: usize,
        descriptor: usize,
    },
    Revoke {
        scope: usize,
        p: usize,
    },
    Transfer {
        from: usize,
        to: usize,
        ps: Vec<usize>,
    },
    ListGrants {
        scope: usize,
    },
    ListLiveGrants {
        scope: usize,
    },
    HasGrant {
        scope: usize,
        p: usize,
    },
    GrantsOfProcess {
        p: usize,
    },
    DeleteSession {
        session: usize,
    },
    Claim {
        p: usize,
        owner: usize,
        ttl: usize,
    },
    /// Renews the `lease`-th lease seen so far (a forged one when none).
    Renew {
        lease: usize,
        ttl: usize,
    },
    CompleteLease {
        lease: usize,
    },
    AdvanceClock {
        ms: usize,
    },
    /// Asks idle actors (by the registry clock) to passivate now.
    PassivateIdle,
    Get {
        p: usize,
    },
    List {
        filter: usize,
    },
    ListNonTerminal,
    /// Durable runs only: shut the registry down (every parked caller gets
    /// `Stopped`) and open a new one on the same file.
    Reopen,
}

const TTLS: [u64; 5] = [0, 1, 50, 1_000, u64::MAX];
const ADVANCES: [u64; 6] = [0, 1, 49, 50, 1_000, 30_000];

/// Histories: most processes registered up front (so later calls find
/// them), then random operations, registrations included.
fn history_strategy() -> impl Strategy<Value = Vec<Op>> {
    histories(op_strategy().boxed())
}

/// Histories for a durable store: the same operations, with reopens among them.
fn durable_history_strategy() -> impl Strategy<Value = Vec<Op>> {
    histories(prop_oneof![12 => op_strategy(), 1 => Just(Op::Reopen)].boxed())
}

fn histories(ops: BoxedStrategy<Op>) -> impl Strategy<Value = Vec<Op>> {
    let upfront = proptest::collection::vec(
        (0..PROCESSES.len(), prop_oneof![3 => Just(RegKind::Standard), 1 => Just(RegKind::Variant)]),
        0..=PROCESSES.len(),
    );
    (upfront, proptest::collection::vec(ops, 1..MAX_OPS)).prop_map(|(upfront, mut ops)| {
        let mut history: Vec<Op> = upfront.into_iter().map(|(p, kind)| Op::Register { p, kind }).collect();
        history.append(&mut ops);
        history
    })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let p = || 0..PROCESSES.len();
    let seq = || 0..10u64;
    let reg_kind = prop_oneof![
        6 => Just(RegKind::Standard),
        2 => Just(RegKind::Variant),
        1 => Just(RegKind::EmptyId),
        1 => Just(RegKind::BlankHostProfile),
        1 => Just(RegKind::InvalidSchema),
        1 => Just(RegKind::DuplicateType),
        1 => Just(RegKind::FailedTerminalWithoutSelector),
    ];
    prop_oneof![
        8 => (p(), reg_kind).prop_map(|(p, kind)| Op::Register { p, kind }),
        14 => (p(), 0..EVENT_TYPES.len(), 0..20usize, proptest::option::of(0..3usize), proptest::option::of(0..4usize))
            .prop_map(|(p, event_type, payload, replay, target)| Op::Append { p, event_type, payload, replay, target }),
        2 => (p(), 0..2usize).prop_map(|(p, reason)| Op::CancelRequested { p, reason }),
        3 => (p(), 0..4usize).prop_map(|(p, outcome)| Op::Complete { p, outcome }),
        2 => (p(), 0..3u64).prop_map(|(p, ordinal)| Op::SetWait { p, ordinal }),
        1 => p().prop_map(|p| Op::ClearWait { p }),
        1 => (p(), 0..3u64).prop_map(|(p, n)| Op::SetExternalRef { p, n }),
        3 => (p(), prop_oneof![3 => 0..4u64, 1 => seq()]).prop_map(|(p, sequence)| Op::AckWake { p, sequence }),
        2 => (p(), seq()).prop_map(|(p, after)| Op::EventsAfter { p, after }),
        2 => (p(), 0..EVENT_TYPES.len(), seq()).prop_map(|(p, event_type, up_to)| Op::CountThrough { p, event_type, up_to }),
        2 => (p(), 0..6usize).prop_map(|(p, limit)| Op::Recent { p, limit }),
        2 => (p(), seq()).prop_map(|(p, after)| Op::WakeEventsAfter { p, after }),
        3 => (p(), 0..EVENT_TYPES.len(), seq()).prop_map(|(p, event_type, after)| Op::Wait { p, event_type, after }),
        2 => p().prop_map(|p| Op::Await { p }),
        1 => Just(Op::GiveUp),
        4 => (0..4usize, p(), 0..3usize).prop_map(|(scope, p, descriptor)| Op::Grant { scope, p, descriptor }),
        2 => (0..4usize, p()).prop_map(|(scope, p)| Op::Revoke { scope, p }),
        2 => (0..4usize, 0..4usize, proptest::collection::vec(p(), 0..3))
            .prop_map(|(from, to, ps)| Op::Transfer { from, to, ps }),
        1 => (0..4usize).prop_map(|scope| Op::ListGrants { scope }),
        1 => (0..4usize).prop_map(|scope| Op::ListLiveGrants { scope }),
        1 => (0..4usize, p()).prop_map(|(scope, p)| Op::HasGrant { scope, p }),
        1 => p().prop_map(|p| Op::GrantsOfProcess { p }),
        2 => (0..SESSIONS.len()).prop_map(|session| Op::DeleteSession { session }),
        4 => (p(), 0..OWNERS.len(), 0..TTLS.len()).prop_map(|(p, owner, ttl)| Op::Claim { p, owner, ttl }),
        2 => (0..4usize, 0..TTLS.len()).prop_map(|(lease, ttl)| Op::Renew { lease, ttl }),
        2 => (0..4usize).prop_map(|lease| Op::CompleteLease { lease }),
        4 => (0..ADVANCES.len()).prop_map(|ms| Op::AdvanceClock { ms }),
        2 => Just(Op::PassivateIdle),
        1 => p().prop_map(|p| Op::Get { p }),
        1 => (0..9usize).prop_map(|filter| Op::List { filter }),
        1 => Just(Op::ListNonTerminal),
    ]
}

// ---------------------------------------------------------------------------
// The sequential reference model.
// ---------------------------------------------------------------------------

type Res<T> = Result<T, RegistryError>;

struct ModelProcess {
    record: ProcessRecord,
    events: Vec<ProcessEvent>,
    /// Replay key -> (sequence, payload hash).
    replay: HashMap<String, (u64, String)>,
    acked: BTreeSet<u64>,
    lease: Option<ProcessLease>,
    last_fencing_token: u64,
    schemas: CompiledSchemas,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelGrant {
    session_id: String,
    descriptor: ProcessHandleDescriptor,
}

struct Model {
    clock: Arc<ManualClock>,
    limits: Limits,
    schemas: CompileEach,
    processes: BTreeMap<String, ModelProcess>,
    /// Scope id -> process id -> grant.
    grants: BTreeMap<String, BTreeMap<String, ModelGrant>>,
}

fn unknown(process_id: &str) -> RegistryError {
    RegistryError::UnknownProcess { process_id: process_id.to_owned() }
}

fn invalid_payload(process_id: &str, event_type: &str, path: String, message: String) -> RegistryError {
    RegistryError::InvalidPayload {
        process_id: process_id.to_owned(),
        event_type: event_type.to_owned(),
        path,
        message,
    }
}

impl Model {
    fn new(clock: Arc<ManualClock>) -> Self {
        Self {
            clock,
            limits: Limits::default(),
            schemas: CompileEach,
            processes: BTreeMap::new(),
            grants: BTreeMap::new(),
        }
    }

    fn now(&self) -> u64 {
        use process_registry::Clock;
        self.clock.now_ms()
    }

    fn process(&self, process_id: &str) -> Res<&ModelProcess> {
        self.processes.get(process_id).ok_or_else(|| unknown(process_id))
    }

    fn process_mut(&mut self, process_id: &str) -> Res<&mut ModelProcess> {
        self.processes.get_mut(process_id).ok_or_else(|| unknown(process_id))
    }

    fn register(&mut self, registration: ProcessRegistration) -> Res<ProcessRecord> {
        let prepared = prepare_registration(registration, &self.limits, &self.schemas)?;
        let id = prepared.registration.id.clone();
        if let Some(existing) = self.processes.get(&id) {
            if existing.record.registration_hash == prepared.hash {
                return Ok(existing.record.clone());
            }
            return Err(RegistryError::RegistrationConflict {
                process_id: id,
                existing_hash: existing.record.registration_hash.clone(),
                requested_hash: prepared.hash,
            });
        }
        let now = self.now();
        let registration = prepared.registration;
        let record = ProcessRecord {
            id: id.clone(),
            registration_hash: prepared.hash,
            input: registration.input,
            event_types: Arc::new(registration.event_types),
            provenance: registration.provenance,
            env_ref: registration.env_ref,
            wake_target: registration.wake_target,
            created_at_ms: now,
            updated_at_ms: now,
            external_ref: None,
            wait: None,
            status: ProcessStatus::Running,
        };
        self.processes.insert(
            id,
            ModelProcess {
                record: record.clone(),
                events: Vec::new(),
                replay: HashMap::new(),
                acked: BTreeSet::new(),
                lease: None,
                last_fencing_token: 0,
                schemas: prepared.schemas,
            },
        );
        Ok(record)
    }

    fn delivery(
        record: &ProcessRecord,
        event: &ProcessEvent,
        target: Option<&SessionScope>,
    ) -> Option<ProcessWakeDelivery> {
        let wake = event.semantics.wake.as_ref()?;
        let target = target.or(record.wake_target.as_ref())?;
        let target_scope_id = target.id().0;
        Some(ProcessWakeDelivery {
            wake_id: wake_id(&target_scope_id, &wake.dedupe_key),
            target_session_id: target.session_id.clone(),
            target_scope_id,
            process_id: event.process_id.clone(),
            sequence: event.sequence,
            event_type: event.event_type.clone(),
            event_invocation: event.invocation.clone(),
            process_caused_by: record.provenance.caused_by.clone(),
            dedupe_key: wake.dedupe_key.clone(),
            input: wake.input.clone(),
            created_at_ms: event.occurred_at_ms,
        })
    }

    /// SPEC §4 append_event, steps 1-10, in order.
    fn append(&mut self, process_id: &str, request: ProcessEventAppendRequest) -> Res<ProcessEventAppendResult> {
        // 1. Limits and the payload hash.
        let payload_hash = check_and_hash_payload(&self.limits, process_id, &request)?;
        let now = self.now();
        let max_template_bytes = self.limits.max_template_bytes;
        let process = self.process_mut(process_id)?;
        let key = request.replay.clone().filter(|key| !key.is_empty());
        let target = request.wake_target_scope.clone();
        // 2. Replay.
        if let Some(key) = &key {
            if let Some((sequence, hash)) = process.replay.get(key) {
                if *hash != payload_hash {
                    return Err(RegistryError::ReplayConflict {
                        process_id: process_id.to_owned(),
                        replay_key: key.clone(),
                    });
                }
                let event = process.events[(*sequence - 1) as usize].clone();
                let wake_delivery = Self::delivery(&process.record, &event, target.as_ref());
                return Ok(ProcessEventAppendResult { event, wake_delivery });
            }
        }
        // 3. Declared.
        let event_type = request.event_type.clone();
        let declared = process.record.event_type(&event_type).cloned().ok_or_else(|| {
            RegistryError::UndeclaredEventType { process_id: process_id.to_owned(), event_type: event_type.clone() }
        })?;
        // 4. Terminal types and cancel requests need a key.
        if (declared.semantics.terminal.is_some() || event_type == CANCEL_REQUESTED) && key.is_none() {
            return Err(RegistryError::MissingReplayKey {
                process_id: process_id.to_owned(),
                event_type: event_type.clone(),
            });
        }
        // 5. Schema.
        let compiled = process.schemas.get(&event_type).expect("every declared type has a compiled schema");
        schema::validate(compiled, &request.payload)
            .map_err(|(path, message)| invalid_payload(process_id, &event_type, path, message))?;
        // 6. Semantics.
        let sequence = process.events.len() as u64 + 1;
        let semantics = materialize(&declared.semantics, process_id, sequence, &request.payload, max_template_bytes)
            .map_err(|err| match err {
                SelectError::Unmatched(unmatched) => {
                    invalid_payload(process_id, &event_type, unmatched.pointer, "unmatched".into())
                }
                SelectError::TooLarge { limit } => RegistryError::LimitExceeded {
                    process_id: process_id.to_owned(),
                    what: "template bytes".into(),
                    limit: limit as u64,
                },
            })?;
        // 7. No second terminal.
        if semantics.terminal.is_some() && process.record.is_terminal() {
            return Err(RegistryError::AlreadyTerminal { process_id: process_id.to_owned() });
        }
        // 8. Sequence, time, invocation.
        let event = ProcessEvent {
            process_id: process_id.to_owned(),
            sequence,
            event_type: event_type.clone(),
            payload: request.payload,
            invocation: ProcessEventInvocation {
                scope: InvocationScope::Runtime,
                subject: InvocationSubject::ProcessEvent {
                    process_id: process_id.to_owned(),
                    sequence,
                    event_type: event_type.clone(),
                },
                caused_by: CausalRef::Process { process_id: process_id.to_owned() },
                replay_key: key.clone(),
            },
            semantics,
            occurred_at_ms: now,
        };
        // 10. Commit.
        process.record.updated_at_ms = now;
        if let Some(terminal) = &event.semantics.terminal {
            let await_output = terminal.await_output.clone();
            process.record.status = match terminal.state {
                ProcessTerminalState::Completed => ProcessStatus::Completed { await_output },
                ProcessTerminalState::Failed => ProcessStatus::Failed { await_output },
                ProcessTerminalState::Cancelled => ProcessStatus::Cancelled { await_output },
            };
            process.record.wait = None;
        }
        if let Some(key) = key {
            process.replay.insert(key, (sequence, payload_hash));
        }
        process.events.push(event.clone());
        // 9. Wake delivery.
        let wake_delivery = Self::delivery(&process.record, &event, target.as_ref());
        Ok(ProcessEventAppendResult { event, wake_delivery })
    }

    fn complete(&mut self, process_id: &str, output: ProcessAwaitOutput) -> Res<ProcessRecord> {
        let event_type = output.terminal_state().event_type();
        let payload = json!({ "await_output": serde_json::to_value(&output).expect("outputs are JSON") });
        let request = ProcessEventAppendRequest::new(event_type, payload)
            .with_replay_key(format!("process:{process_id}:terminal:{event_type}"));
        self.append(process_id, request)?;
        Ok(self.process(process_id)?.record.clone())
    }

    fn update_record(&mut self, process_id: &str, update: impl FnOnce(&mut ProcessRecord)) -> Res<ProcessRecord> {
        let now = self.now();
        let process = self.process_mut(process_id)?;
        update(&mut process.record);
        process.record.updated_at_ms = now;
        Ok(process.record.clone())
    }

    fn set_wait(&mut self, process_id: &str, wait: WaitState) -> Res<ProcessRecord> {
        if self.process(process_id)?.record.is_terminal() {
            return Err(RegistryError::AlreadyTerminal { process_id: process_id.to_owned() });
        }
        self.update_record(process_id, |record| record.wait = Some(wait))
    }

    fn ack_wake(&mut self, process_id: &str, sequence: u64) -> Res<()> {
        let process = self.process_mut(process_id)?;
        let last_sequence = process.events.len() as u64;
        if sequence == 0 || sequence > last_sequence {
            return Err(RegistryError::SequenceOutOfRange {
                process_id: process_id.to_owned(),
                sequence,
                last_sequence,
            });
        }
        process.acked.insert(sequence);
        Ok(())
    }

    fn events_after(&self, process_id: &str, after: u64) -> Res<Vec<ProcessEvent>> {
        Ok(self.process(process_id)?.events.iter().filter(|event| event.sequence > after).cloned().collect())
    }

    fn count_through(&self, process_id: &str, event_type: &str, up_to: u64) -> Res<u64> {
        let events = &self.process(process_id)?.events;
        Ok(events.iter().filter(|event| event.sequence <= up_to && event.event_type == event_type).count() as u64)
    }

    fn recent(&self, process_id: &str, limit: usize) -> Res<Vec<ProcessEvent>> {
        let events = &self.process(process_id)?.events;
        Ok(events[events.len().saturating_sub(limit)..].to_vec())
    }

    fn wake_events_after(&self, process_id: &str, after: u64) -> Res<Vec<ProcessEvent>> {
        let process = self.process(process_id)?;
        Ok(process
            .events
            .iter()
            .filter(|event| event.sequence > after && event.is_wake() && !process.acked.contains(&event.sequence))
            .cloned()
            .collect())
    }

    /// `Some(answer)` when `wait_event_after` answers now; `None` when it parks.
    fn wait_answer(&self, process_id: &str, event_type: &str, after: u64) -> Option<Res<ProcessEvent>> {
        match self.process(process_id) {
            Err(err) => Some(Err(err)),
            Ok(process) if process.record.event_type(event_type).is_none() => {
                Some(Err(RegistryError::UndeclaredEventType {
                    process_id: process_id.to_owned(),
                    event_type: event_type.to_owned(),
                }))
            }
            Ok(process) => {
                let found =
                    process.events.iter().find(|event| event.sequence > after && event.event_type == event_type);
                match found {
                    Some(event) => Some(Ok(event.clone())),
                    // No terminal event follows the terminal one (step 7).
                    None if process.record.is_terminal()
                        && process.record.event_type(event_type).is_some_and(ProcessEventType::is_terminal) =>
                    {
                        Some(Err(RegistryError::AlreadyTerminal { process_id: process_id.to_owned() }))
                    }
                    None => None,
                }
            }
        }
    }

    fn await_answer(&self, process_id: &str) -> Option<Res<ProcessAwaitOutput>> {
        match self.process(process_id) {
            Err(err) => Some(Err(err)),
            Ok(process) => process.record.status.await_output().map(|output| Ok(output.clone())),
        }
    }

    // Grants.

    fn grant(
        &mut self,
        scope: &SessionScope,
        process_id: &str,
        descriptor: ProcessHandleDescriptor,
    ) -> Res<ProcessHandleGrant> {
        self.process(process_id)?;
        self.grants.entry(scope.id().0).or_default().insert(
            process_id.to_owned(),
            ModelGrant { session_id: scope.session_id.clone(), descriptor: descriptor.clone() },
        );
        Ok(ProcessHandleGrant { session_id: scope.session_id.clone(), process_id: process_id.to_owned(), descriptor })
    }

    fn revoke(&mut self, scope_id: &str, process_id: &str) -> Option<ModelGrant> {
        let grants = self.grants.get_mut(scope_id)?;
        let removed = grants.remove(process_id);
        if grants.is_empty() {
            self.grants.remove(scope_id);
        }
        removed
    }

    fn transfer(&mut self, from: &SessionScope, to: &SessionScope, process_ids: &[String]) -> Res<()> {
        let from_id = from.id().0;
        for process_id in process_ids {
            if !self.grants.get(&from_id).is_some_and(|grants| grants.contains_key(process_id)) {
                return Err(RegistryError::HandleNotGranted { process_id: process_id.clone(), scope_id: from_id });
            }
        }
        for process_id in process_ids {
            if let Some(grant) = self.revoke(&from_id, process_id) {
                self.grants.entry(to.id().0).or_default().insert(
                    process_id.clone(),
                    ModelGrant { session_id: to.session_id.clone(), descriptor: grant.descriptor },
                );
            }
        }
        Ok(())
    }

    fn list_grants(&self, scope: &SessionScope, live_only: bool) -> Res<Vec<ProcessHandleGrantEntry>> {
        let Some(grants) = self.grants.get(&scope.id().0) else {
            return Ok(Vec::new());
        };
        Ok(grants
            .iter()
            .filter_map(|(process_id, grant)| {
                let record = &self.processes.get(process_id)?.record;
                (!live_only || !record.is_terminal()).then(|| {
                    (
                        ProcessHandleGrant {
                            session_id: grant.session_id.clone(),
                            process_id: process_id.clone(),
                            descriptor: grant.descriptor.clone(),
                        },
                        record.clone(),
                    )
                })
            })
            .collect())
    }

    fn has_grant(&self, scope: &SessionScope, process_id: &str) -> bool {
        self.processes.contains_key(process_id)
            && self.grants.get(&scope.id().0).is_some_and(|grants| grants.contains_key(process_id))
    }

    fn grants_of_process(&self, process_id: &str) -> Res<Vec<ProcessHandleGrant>> {
        self.process(process_id)?;
        let mut found: Vec<(String, String, ProcessHandleGrant)> = self
            .grants
            .iter()
            .filter_map(|(scope_id, grants)| {
                let grant = grants.get(process_id)?;
                Some((
                    grant.session_id.clone(),
                    scope_id.clone(),
                    ProcessHandleGrant {
                        session_id: grant.session_id.clone(),
                        process_id: process_id.to_owned(),
                        descriptor: grant.descriptor.clone(),
                    },
                ))
            })
            .collect();
        found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(found.into_iter().map(|(_, _, grant)| grant).collect())
    }

    fn delete_session(&mut self, session_id: &str) -> Res<ProcessSessionDeleteReport> {
        let mut revoked = 0;
        let mut affected = BTreeSet::new();
        for grants in self.grants.values_mut() {
            grants.retain(|process_id, grant| {
                if grant.session_id == session_id {
                    revoked += 1;
                    affected.insert(process_id.clone());
                    false
                } else {
                    true
                }
            });
        }
        self.grants.retain(|_, grants| !grants.is_empty());
        let mut report = ProcessSessionDeleteReport {
            session_id: session_id.to_owned(),
            revoked_handle_count: revoked,
            deleted_wake_count: 0,
            orphaned_process_ids: Vec::new(),
            preserved_process_ids: Vec::new(),
        };
        for process_id in affected {
            let live = self.processes.get(&process_id).is_some_and(|process| !process.record.is_terminal());
            if !live {
                continue;
            }
            if self.grants.values().any(|grants| grants.contains_key(&process_id)) {
                report.preserved_process_ids.push(process_id);
            } else {
                report.orphaned_process_ids.push(process_id);
            }
        }
        Ok(report)
    }

    // Leases. The model's `lease_token`s are adopted from the registry.

    fn claim(&mut self, process_id: &str, owner_id: &str, ttl: u64) -> Res<ProcessLease> {
        let now = self.now();
        let process = self.process_mut(process_id)?;
        if process.record.is_terminal() {
            return Err(RegistryError::AlreadyTerminal { process_id: process_id.to_owned() });
        }
        if let Some(current) = &process.lease {
            if current.owner_id != owner_id && current.expires_at_epoch_ms > now {
                return Err(RegistryError::LeaseHeld {
                    process_id: process_id.to_owned(),
                    owner_id: current.owner_id.clone(),
                    expires_at_epoch_ms: current.expires_at_epoch_ms,
                });
            }
        }
        process.last_fencing_token += 1;
        let lease = ProcessLease {
            schema_version: PROCESS_LEASE_SCHEMA_VERSION,
            process_id: process_id.to_owned(),
            owner_id: owner_id.to_owned(),
            lease_token: String::new(),
            fencing_token: process.last_fencing_token,
            claimed_at_epoch_ms: now,
            expires_at_epoch_ms: now.saturating_add(ttl),
        };
        process.lease = Some(lease.clone());
        Ok(lease)
    }

    fn renew(&mut self, presented: &ProcessLease, ttl: u64) -> Res<ProcessLease> {
        let now = self.now();
        let process = self.process_mut(&presented.process_id)?;
        match &mut process.lease {
            Some(current)
                if current.lease_token == presented.lease_token
                    && current.owner_id == presented.owner_id
                    && current.fencing_token == presented.fencing_token
                    && current.expires_at_epoch_ms > now =>
            {
                current.expires_at_epoch_ms = now.saturating_add(ttl);
                Ok(current.clone())
            }
            _ => Err(RegistryError::LeaseMissingOrExpired { process_id: presented.process_id.clone() }),
        }
    }

    fn complete_lease(&mut self, completion: &ProcessLeaseCompletion) -> Res<()> {
        let process = self.process_mut(&completion.process_id)?;
        if process.lease.as_ref().is_some_and(|current| current.lease_token == completion.lease_token) {
            process.lease = None;
        }
        Ok(())
    }

    /// Records the registry's token for the lease the model just granted or renewed.
    fn adopt_token(&mut self, process_id: &str, token: &str) {
        if let Some(lease) = self.processes.get_mut(process_id).and_then(|process| process.lease.as_mut()) {
            lease.lease_token = token.to_owned();
        }
    }

    fn list(&self, filter: &ProcessListFilter) -> Vec<ProcessRecord> {
        self.processes
            .values()
            .map(|process| &process.record)
            .filter(|record| filter.matches(record))
            .cloned()
            .collect()
    }

    /// `(running, completed, failed, cancelled, parked waiters)`, as `stats()` reports them.
    fn stats(&self, parked: usize) -> (u64, u64, u64, u64, u64) {
        let mut stats = (0, 0, 0, 0, parked as u64);
        for process in self.processes.values() {
            match process.record.status {
                ProcessStatus::Running => stats.0 += 1,
                ProcessStatus::Completed { .. } => stats.1 += 1,
                ProcessStatus::Failed { .. } => stats.2 += 1,
                ProcessStatus::Cancelled { .. } => stats.3 += 1,
            }
        }
        stats
    }
}

// ---------------------------------------------------------------------------
// Running a history against both.
// ---------------------------------------------------------------------------

type Task<T> = JoinHandle<Res<T>>;

/// A caller the model says is parked, running in its own task.
enum PendingWait {
    Event { p: String, event_type: String, after: u64, task: Task<ProcessEvent> },
    Output { p: String, task: Task<ProcessAwaitOutput> },
}

impl PendingWait {
    fn is_finished(&self) -> bool {
        match self {
            Self::Event { task, .. } => task.is_finished(),
            Self::Output { task, .. } => task.is_finished(),
        }
    }

    fn abort(&self) {
        match self {
            Self::Event { task, .. } => task.abort(),
            Self::Output { task, .. } => task.abort(),
        }
    }
}

fn agree<T: PartialEq + Debug>(step: usize, op: &Op, actual: &Res<T>, expected: &Res<T>) -> Result<(), TestCaseError> {
    let same = match (actual, expected) {
        (Ok(actual), Ok(expected)) => actual == expected,
        (Err(actual), Err(expected)) => discriminant(actual) == discriminant(expected),
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(TestCaseError::fail(format!(
            "step {step} {op:?}: the registry and the model disagree\n  registry: {actual:?}\n  model:    {expected:?}"
        )))
    }
}

/// A lease with the registry's token swapped for the model's (empty) one.
fn without_token(lease: &Res<ProcessLease>) -> Res<ProcessLease> {
    lease.clone().map(|lease| ProcessLease { lease_token: String::new(), ..lease })
}

struct Run {
    registry: ActorProcessRegistry,
    /// The file of a durable run (its directory lives as long as the run).
    durable: Option<(tempfile::TempDir, std::path::PathBuf)>,
    model: Model,
    clock: Arc<ManualClock>,
    leases: Vec<ProcessLease>,
    tokens: BTreeSet<String>,
    pending: Vec<PendingWait>,
}

impl Run {
    async fn start(durable: bool) -> Self {
        let clock = Arc::new(ManualClock::new(START_MS));
        let durable = durable.then(|| {
            let directory = tempfile::tempdir().expect("a temporary directory");
            let path = directory.path().join("registry.db");
            (directory, path)
        });
        let registry = Self::open(durable.as_ref().map(|(_, path)| path.as_path()), &clock).await;
        Self {
            registry,
            durable,
            model: Model::new(Arc::clone(&clock)),
            clock,
            leases: Vec::new(),
            tokens: BTreeSet::new(),
            pending: Vec::new(),
        }
    }

    /// A registry on the memory store, or on the SQLite file at `path`
    /// (relaxed sync: what is checked here is what a reopen answers, not
    /// the fsync, and the relaxed mode survives a clean close alike).
    async fn open(path: Option<&std::path::Path>, clock: &Arc<ManualClock>) -> ActorProcessRegistry {
        let config = RegistryConfig::default().with_clock(clock.clone());
        match path {
            None => ActorProcessRegistry::start(config).await.expect("registry starts"),
            Some(path) => {
                let options = SqliteOptions::default().with_sync(SyncMode::Normal);
                ActorProcessRegistry::open_with(path, options, config).await.expect("registry opens")
            }
        }
    }

    /// Shuts the registry down (parked callers must get `Stopped`) and
    /// opens its file again.
    async fn reopen(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let Some((_, path)) = &self.durable else {
            return Ok(());
        };
        let path = path.clone();
        self.shut_down(&format!("step {step} {op:?}")).await?;
        self.registry = Self::open(Some(&path), &self.clock).await;
        Ok(())
    }

    fn lease(&self, index: usize) -> ProcessLease {
        self.leases.get(index % self.leases.len().max(1)).cloned().unwrap_or_else(|| ProcessLease {
            schema_version: PROCESS_LEASE_SCHEMA_VERSION,
            process_id: PROCESSES[index % PROCESSES.len()].to_owned(),
            owner_id: OWNERS[0].to_owned(),
            lease_token: "forged".to_owned(),
            fencing_token: 1,
            claimed_at_epoch_ms: START_MS,
            expires_at_epoch_ms: u64::MAX,
        })
    }

    /// Keeps a lease the registry handed out, checking its token is fresh.
    fn remember(
        &mut self,
        step: usize,
        op: &Op,
        lease: &Res<ProcessLease>,
        renewal: bool,
    ) -> Result<(), TestCaseError> {
        if let Ok(lease) = lease {
            prop_assert!(!lease.lease_token.is_empty(), "step {step} {op:?}: empty lease token");
            let fresh = self.tokens.insert(lease.lease_token.clone());
            prop_assert!(fresh || renewal, "step {step} {op:?}: a claim reused lease token {}", lease.lease_token);
            self.model.adopt_token(&lease.process_id, &lease.lease_token);
            self.leases.push(lease.clone());
        }
        Ok(())
    }

    async fn step(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let registry = self.registry.clone();
        let model = &mut self.model;
        match op {
            Op::Register { p, kind } => {
                let registration = registration(PROCESSES[*p], *kind);
                let expected = model.register(registration.clone());
                if !matches!(kind, RegKind::Standard | RegKind::Variant) {
                    prop_assert!(
                        matches!(expected, Err(RegistryError::InvalidRegistration { .. })),
                        "the model must refuse {kind:?}: {expected:?}"
                    );
                }
                agree(step, op, &registry.register_process(registration).await, &expected)?;
            }
            Op::Append { p, event_type, payload: index, replay, target } => {
                let mut request =
                    ProcessEventAppendRequest::new(EVENT_TYPES[*event_type], payload(EVENT_TYPES[*event_type], *index));
                request.replay = replay_key(*replay);
                request.wake_target_scope = target.map(scope);
                let expected = model.append(PROCESSES[*p], request.clone());
                agree(step, op, &registry.append_event(PROCESSES[*p], request).await, &expected)?;
            }
            Op::CancelRequested { p, reason } => {
                let request = ProcessEventAppendRequest::cancel_requested(PROCESSES[*p], format!("reason {reason}"));
                let expected = model.append(PROCESSES[*p], request.clone());
                agree(step, op, &registry.append_event(PROCESSES[*p], request).await, &expected)?;
            }
            Op::Complete { p, outcome: index } => {
                let expected = model.complete(PROCESSES[*p], outcome(*index));
                agree(step, op, &registry.complete_process(PROCESSES[*p], outcome(*index)).await, &expected)?;
            }
            Op::SetWait { p, ordinal } => {
                let wait = WaitState {
                    kind: WaitKind::Signal {
                        name: "signal".into(),
                        event_type: "note".into(),
                        key: format!("key-{ordinal}"),
                        ordinal: *ordinal,
                    },
                    since_ms: START_MS + ordinal,
                };
                let expected = model.set_wait(PROCESSES[*p], wait.clone());
                agree(step, op, &registry.set_process_wait(PROCESSES[*p], wait).await, &expected)?;
            }
            Op::ClearWait { p } => {
                let expected = model.update_record(PROCESSES[*p], |record| record.wait = None);
                agree(step, op, &registry.clear_process_wait(PROCESSES[*p]).await, &expected)?;
            }
            Op::SetExternalRef { p, n } => {
                let external = ProcessExternalRef {
                    backend: "queue".into(),
                    id: format!("job-{n}"),
                    metadata: Some(json!({"n": n})),
                };
                let expected =
                    model.update_record(PROCESSES[*p], |record| record.external_ref = Some(external.clone()));
                agree(step, op, &registry.set_external_ref(PROCESSES[*p], external).await, &expected)?;
            }
            Op::AckWake { p, sequence: index } => {
                let expected = model.ack_wake(PROCESSES[*p], sequence(*index));
                agree(step, op, &registry.ack_wake(PROCESSES[*p], sequence(*index)).await, &expected)?;
            }
            Op::EventsAfter { p, after } => {
                let expected = model.events_after(PROCESSES[*p], sequence(*after));
                agree(step, op, &registry.events_after(PROCESSES[*p], sequence(*after)).await, &expected)?;
            }
            Op::CountThrough { p, event_type, up_to } => {
                let (p, event_type, up_to) = (PROCESSES[*p], EVENT_TYPES[*event_type], sequence(*up_to));
                let expected = model.count_through(p, event_type, up_to);
                agree(step, op, &registry.count_events_through(p, event_type, up_to).await, &expected)?;
            }
            Op::Recent { p, limit } => {
                let limit = if *limit == 5 { usize::MAX } else { *limit };
                let expected = model.recent(PROCESSES[*p], limit);
                agree(step, op, &registry.recent_events(PROCESSES[*p], limit).await, &expected)?;
            }
            Op::WakeEventsAfter { p, after } => {
                let expected = model.wake_events_after(PROCESSES[*p], sequence(*after));
                agree(step, op, &registry.wake_events_after(PROCESSES[*p], sequence(*after)).await, &expected)?;
            }
            Op::Wait { p, event_type, after } => {
                let (p, event_type, after) =
                    (PROCESSES[*p].to_owned(), EVENT_TYPES[*event_type].to_owned(), sequence(*after));
                match model.wait_answer(&p, &event_type, after) {
                    Some(expected) => {
                        let actual = answer_within(registry.wait_event_after(&p, &event_type, after)).await?;
                        agree(step, op, &actual, &expected)?;
                    }
                    None => {
                        let task = tokio::spawn({
                            let (registry, p, event_type) = (registry.clone(), p.clone(), event_type.clone());
                            async move { registry.wait_event_after(&p, &event_type, after).await }
                        });
                        self.pending.push(PendingWait::Event { p, event_type, after, task });
                        self.until_parked(step, op).await?;
                    }
                }
            }
            Op::Await { p } => {
                let p = PROCESSES[*p].to_owned();
                match model.await_answer(&p) {
                    Some(expected) => {
                        let actual = answer_within(registry.await_process(&p)).await?;
                        agree(step, op, &actual, &expected)?;
                    }
                    None => {
                        let task = tokio::spawn({
                            let (registry, p) = (registry.clone(), p.clone());
                            async move { registry.await_process(&p).await }
                        });
                        self.pending.push(PendingWait::Output { p, task });
                        self.until_parked(step, op).await?;
                    }
                }
            }
            Op::GiveUp => {
                if !self.pending.is_empty() {
                    self.pending.remove(0).abort();
                    self.until_parked(step, op).await?;
                }
            }
            Op::PassivateIdle => registry.passivate_idle(),
            Op::Reopen => self.reopen(step, op).await?,
            Op::Grant { scope: s, p, descriptor: d } => {
                let expected = model.grant(&scope(*s), PROCESSES[*p], descriptor(*d));
                agree(step, op, &registry.grant_handle(&scope(*s), PROCESSES[*p], descriptor(*d)).await, &expected)?;
            }
            Op::Revoke { scope: s, p } => {
                model.revoke(&scope(*s).id().0, PROCESSES[*p]);
                agree(step, op, &registry.revoke_handle(&scope(*s), PROCESSES[*p]).await, &Ok(()))?;
            }
            Op::Transfer { from, to, ps } => {
                let ids: Vec<String> = ps.iter().map(|p| PROCESSES[*p].to_owned()).collect();
                let expected = model.transfer(&scope(*from), &scope(*to), &ids);
                agree(step, op, &registry.transfer_handle_grants(&scope(*from), &scope(*to), &ids).await, &expected)?;
            }
            Op::ListGrants { scope: s } => {
                let expected = model.list_grants(&scope(*s), false);
                agree(step, op, &registry.list_handle_grants(&scope(*s)).await, &expected)?;
            }
            Op::ListLiveGrants { scope: s } => {
                let expected = model.list_grants(&scope(*s), true);
                agree(step, op, &registry.list_live_handle_grants(&scope(*s)).await, &expected)?;
            }
            Op::HasGrant { scope: s, p } => {
                let expected = Ok(model.has_grant(&scope(*s), PROCESSES[*p]));
                agree(step, op, &registry.has_handle_grant(&scope(*s), PROCESSES[*p]).await, &expected)?;
            }
            Op::GrantsOfProcess { p } => {
                let expected = model.grants_of_process(PROCESSES[*p]);
                agree(step, op, &registry.handle_grants_for_process(PROCESSES[*p]).await, &expected)?;
            }
            Op::DeleteSession { session } => {
                let expected = model.delete_session(SESSIONS[*session]);
                agree(step, op, &registry.delete_session_process_state(SESSIONS[*session]).await, &expected)?;
            }
            Op::Claim { p, owner, ttl } => {
                let expected = model.claim(PROCESSES[*p], OWNERS[*owner], TTLS[*ttl]);
                let actual = registry.claim_process_lease(PROCESSES[*p], OWNERS[*owner], TTLS[*ttl]).await;
                agree(step, op, &without_token(&actual), &expected)?;
                self.remember(step, op, &actual, false)?;
            }
            Op::Renew { lease, ttl } => {
                let presented = self.lease(*lease);
                let expected = self.model.renew(&presented, TTLS[*ttl]);
                let actual = registry.renew_process_lease(&presented, TTLS[*ttl]).await;
                agree(step, op, &actual, &expected)?;
                self.remember(step, op, &actual, true)?;
            }
            Op::CompleteLease { lease } => {
                let completion = ProcessLeaseCompletion::from_lease(&self.lease(*lease));
                let expected = self.model.complete_lease(&completion);
                agree(step, op, &registry.complete_process_lease(&completion).await, &expected)?;
            }
            Op::AdvanceClock { ms } => self.clock.advance(ADVANCES[*ms]),
            Op::Get { p } => {
                let expected = model.process(PROCESSES[*p]).ok().map(|process| process.record.clone());
                let actual = registry.get_process(PROCESSES[*p]).await;
                prop_assert_eq!(actual, expected, "step {} {:?}", step, op);
            }
            Op::List { filter: index } => {
                let expected = Ok(model.list(&filter(*index)));
                agree(step, op, &registry.list_processes(&filter(*index)).await, &expected)?;
            }
            Op::ListNonTerminal => {
                let expected = Ok(model.list(&ProcessListFilter::default()));
                agree(step, op, &registry.list_non_terminal().await, &expected)?;
            }
        }
        self.settle_waits(step, op).await
    }

    /// Waits until exactly the pending callers are parked: a new wait has
    /// reached its actor, a caller that gave up has been forgotten.
    async fn until_parked(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let started = std::time::Instant::now();
        loop {
            let parked = self.registry.stats().parked_waiters;
            if parked == self.pending.len() as u64 {
                return Ok(());
            }
            if let Some(last) = self.pending.last() {
                if last.is_finished() {
                    let answer = match self.pending.pop() {
                        Some(PendingWait::Event { task, .. }) => format!("{:?}", task.await),
                        Some(PendingWait::Output { task, .. }) => format!("{:?}", task.await),
                        None => unreachable!(),
                    };
                    return Err(TestCaseError::fail(format!(
                        "step {step} {op:?}: answered {answer}, but the model parks"
                    )));
                }
            }
            if started.elapsed() > ANSWER_TIMEOUT {
                return Err(TestCaseError::fail(format!(
                    "step {step} {op:?}: {parked} callers parked, the model has {}",
                    self.pending.len()
                )));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Pending waits the model now answers must answer exactly that; the
    /// others must still be parked, and the registry must count exactly them.
    async fn settle_waits(&mut self, step: usize, op: &Op) -> Result<(), TestCaseError> {
        let mut still = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            match pending {
                PendingWait::Event { p, event_type, after, task } => {
                    let what = format!("wait_event_after({p}, {event_type}, {after}) parked before step {step} {op:?}");
                    match self.model.wait_answer(&p, &event_type, after) {
                        Some(expected) => agree_parked(&what, joined_within(task).await?, expected)?,
                        None if task.is_finished() => {
                            let answer = joined_within(task).await?;
                            prop_assert!(false, "{}: answered {:?}, but the model still parks", what, answer);
                        }
                        None => still.push(PendingWait::Event { p, event_type, after, task }),
                    }
                }
                PendingWait::Output { p, task } => {
                    let what = format!("await_process({p}) parked before step {step} {op:?}");
                    match self.model.await_answer(&p) {
                        Some(expected) => agree_parked(&what, joined_within(task).await?, expected)?,
                        None if task.is_finished() => {
                            let answer = joined_within(task).await?;
                            prop_assert!(false, "{}: answered {:?}, but the model still parks", what, answer);
                        }
                        None => still.push(PendingWait::Output { p, task }),
                    }
                }
            }
        }
        self.pending = still;
        // The waiters joined above were uncounted before they were answered (an
        // actor answers them right after the call that satisfied them); the rest
        // are still parked and counted.
        let parked = self.registry.stats().parked_waiters;
        if parked != self.pending.len() as u64 {
            // Name the caller that was answered too early, if that is what happened.
            for _ in 0..1_000 {
                if let Some(index) = self.pending.iter().position(PendingWait::is_finished) {
                    let (what, answer) = match self.pending.remove(index) {
                        PendingWait::Event { p, event_type, after, task } => {
                            (format!("wait_event_after({p}, {event_type}, {after})"), format!("{:?}", task.await))
                        }
                        PendingWait::Output { p, task } => (format!("await_process({p})"), format!("{:?}", task.await)),
                    };
                    prop_assert!(
                        false,
                        "step {} {:?}: {} answered {}, but the model still parks",
                        step,
                        op,
                        what,
                        answer
                    );
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            prop_assert_eq!(
                parked,
                self.pending.len() as u64,
                "step {} {:?}: parked callers (registry) vs pending waits (model)",
                step,
                op
            );
        }
        Ok(())
    }

    /// End of a history: stats agree, and shutdown answers parked callers with `Stopped`.
    async fn finish(mut self) -> Result<(), TestCaseError> {
        let expected = self.model.stats(self.pending.len());
        let stats = self.registry.stats();
        let actual = (stats.running, stats.completed, stats.failed, stats.cancelled, stats.parked_waiters);
        prop_assert_eq!(
            actual,
            expected,
            "stats (running, completed, failed, cancelled, parked) at the end: {:?}",
            stats
        );
        prop_assert_eq!(stats.restarts, 0, "no actor crashed: {:?}", stats);
        self.shut_down("the end").await
    }

    /// Shuts the registry down: every parked caller must get `Stopped`.
    async fn shut_down(&mut self, when: &str) -> Result<(), TestCaseError> {
        self.registry.shutdown().await;
        for pending in std::mem::take(&mut self.pending) {
            let stopped = match pending {
                PendingWait::Event { task, .. } => joined_within(task).await?.map(drop),
                PendingWait::Output { task, .. } => joined_within(task).await?.map(drop),
            };
            prop_assert!(
                matches!(stopped, Err(RegistryError::Stopped { .. })),
                "{}: a caller parked at shutdown got {:?}",
                when,
                stopped
            );
        }
        Ok(())
    }
}

fn agree_parked<T: PartialEq + Debug>(what: &str, actual: Res<T>, expected: Res<T>) -> Result<(), TestCaseError> {
    let same = match (&actual, &expected) {
        (Ok(actual), Ok(expected)) => actual == expected,
        (Err(actual), Err(expected)) => discriminant(actual) == discriminant(expected),
        _ => false,
    };
    prop_assert!(same, "{}: the registry answered {:?}, the model {:?}", what, actual, expected);
    Ok(())
}

async fn answer_within<T>(call: impl Future<Output = Res<T>>) -> Result<Res<T>, TestCaseError> {
    tokio::time::timeout(ANSWER_TIMEOUT, call)
        .await
        .map_err(|_| TestCaseError::fail(format!("a call the model answers got nothing within {ANSWER_TIMEOUT:?}")))
}

async fn joined_within<T>(task: Task<T>) -> Result<Res<T>, TestCaseError> {
    match tokio::time::timeout(ANSWER_TIMEOUT, task).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(TestCaseError::fail(format!("a parked caller's task failed: {err}"))),
        Err(_) => Err(TestCaseError::fail(format!("a caller the model answers got nothing within {ANSWER_TIMEOUT:?}"))),
    }
}

async fn run_history(ops: &[Op]) -> Result<(), TestCaseError> {
    run_history_on(ops, false).await
}

async fn run_history_on(ops: &[Op], durable: bool) -> Result<(), TestCaseError> {
    let mut run = Run::start(durable).await;
    for (step, op) in ops.iter().enumerate() {
        if let Err(err) = run.step(step, op).await {
            run.registry.shutdown().await;
            run.pending.iter().for_each(PendingWait::abort);
            return Err(err);
        }
    }
    run.finish().await
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.trim().parse().ok()).unwrap_or(DEFAULT_CASES)
}

#[test]
fn actor_registry_agrees_with_the_sequential_model() {
    let runtime = runtime();
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let histories = history_strategy();
    let result = runner.run(&histories, |ops| runtime.block_on(run_history(&ops)));
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// The same histories, with reopens among them, on the SQLite store: a
/// reopened registry answers as the closed one did. `PROPTEST_CASES`
/// applies here too, at a quarter of it (each case writes a file).
#[test]
fn durable_registry_with_reopens_agrees_with_the_sequential_model() {
    let runtime = runtime();
    let config = Config { cases: (cases() / 4).max(1), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let histories = durable_history_strategy();
    let result = runner.run(&histories, |ops| runtime.block_on(run_history_on(&ops, true)));
    if let Err(err) = result {
        panic!("{err}");
    }
}

/// Replays one fixed history (regression tests below).
fn replay(ops: &[Op]) {
    if let Err(err) = runtime().block_on(run_history(ops)) {
        panic!("{err}");
    }
}

// ---------------------------------------------------------------------------
// Regression tests: shrunk histories.
// ---------------------------------------------------------------------------

#[test]
fn regression_model_sanity_history() {
    replay(&[
        Op::Register { p: 0, kind: RegKind::Standard },
        Op::Append { p: 0, event_type: 1, payload: 3, replay: Some(1), target: None },
        Op::Append { p: 0, event_type: 1, payload: 3, replay: Some(1), target: Some(1) },
        Op::Claim { p: 0, owner: 0, ttl: 2 },
        Op::AdvanceClock { ms: 3 },
        Op::Claim { p: 0, owner: 1, ttl: 2 },
        Op::Renew { lease: 0, ttl: 2 },
        Op::Complete { p: 0, outcome: 2 },
        Op::Await { p: 0 },
    ]);
}

/// SPEC §4: `wait_event_after(p, type, n)` answers the first event of that
/// type with sequence > n. A caller that parks with `n` beyond the end of
/// the log must not be woken by an event at or below `n`. The actor
/// registry answers every parked waiter of the type on the next commit,
/// whatever `n` was: here `wait_event_after(p2, "poke", 1)` on an empty log
/// is answered with the event of sequence 1.
#[test]
fn regression_wait_after_beyond_the_log_is_not_woken_by_an_earlier_sequence() {
    replay(&[
        Op::Register { p: 2, kind: RegKind::Standard },
        Op::Wait { p: 2, event_type: 2, after: 1 },
        Op::Append { p: 2, event_type: 2, payload: 4, replay: None, target: None },
    ]);
}
